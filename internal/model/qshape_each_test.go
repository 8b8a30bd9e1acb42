package model

import (
	"bytes"
	"context"
	"testing"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/spool"
)

// TestQShapeTextFromModel: qshape's text rendered from the model's counts
// (qshape.RunCounts over EachQShape) is byte for byte the text qshape
// prints from the files, whatever the options.
func TestQShapeTextFromModel(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 300, now, 11)
	m := New(Config{Spool: sp, Now: func() time.Time { return now }})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	for _, flags := range []map[byte]*string{
		{},
		{'s': nil},
		{'p': nil, 'm': str("1")},
		{'l': nil, 't': str("60"), 'b': str("12")},
		{'t': str("0.5"), 'b': str("3.5"), 'w': str("120")},
		{'s': nil, 'p': nil, 'w': str("95")},
	} {
		for _, queues := range [][]string{{spool.Deferred}, {spool.Incoming, spool.Hold}, {spool.Deferred, spool.Hold, spool.Incoming}} {
			o := qshape.FromFlags(flags, false)
			o.Now = func() time.Time { return now }
			var dirs []string
			for _, q := range queues {
				dirs = append(dirs, sp.Root+"/"+q)
			}
			var files, model bytes.Buffer
			if err := qshape.Run(o, dirs, &files); err != nil {
				t.Fatal(err)
			}
			err := qshape.RunCounts(o, func(add func(string, int64, int64)) { m.EachQShape(queues, o.Senders, add) }, &model)
			if err != nil {
				t.Fatal(err)
			}
			if files.String() != model.String() {
				t.Errorf("flags %v queues %v:\nfiles:\n%s\nmodel:\n%s", flags, queues, files.String(), model.String())
			}
		}
	}
}
