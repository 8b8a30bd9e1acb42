package control_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/qshape"
	"sluice/internal/spool"
)

// TestQshapeFromModel: with a loaded model the daemon answers qshape
// from it, and the bytes are those of qshape reading the files; a file
// changed behind the model's back shows which source answered.
func TestQshapeFromModel(t *testing.T) {
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	f := &cacheFixture{t: t, sp: sp, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	for i := 0; i < 30; i++ {
		f.inject([]string{spool.Deferred, spool.Hold, spool.Incoming}[i%3], 1+i%4)
	}
	m := model.New(model.Config{Spool: f.sp, Now: func() time.Time { return f.now }})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := control.Listen(f.sp.Root, control.Backend{
		Queue: &manage.Queue{Spool: f.sp}, Model: m,
		Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c, err := control.Dial(f.sp.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(flags map[byte]*string, queues []string) string {
		req := control.QshapeRequest{Flags: map[string]*string{}, Queues: queues}
		for k, v := range flags {
			req.Flags[string(rune(k))] = v
		}
		var out bytes.Buffer
		if _, err := c.Qshape(req, &out, func(w string) { t.Logf("warning: %s", w) }); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	for _, flags := range qshapeOptionSets {
		queues := []string{f.sp.Root + "/deferred", f.sp.Root + "/hold"}
		o := qshape.FromFlags(flags, false)
		o.Now = func() time.Time { return f.now }
		var files bytes.Buffer
		if err := qshape.Run(o, queues, &files); err != nil {
			t.Fatal(err)
		}
		if got := ask(flags, queues); got != files.String() {
			t.Errorf("flags %v: daemon\n%s\nfiles\n%s", flags, got, files.String())
		}
	}
	// Behind the model's back: the daemon's answer is the model's.
	f.inject(spool.Deferred, 3)
	queues := []string{f.sp.Root + "/deferred"}
	o := qshape.Defaults()
	o.Now = func() time.Time { return f.now }
	var files bytes.Buffer
	qshape.Run(o, queues, &files)
	if got := ask(map[byte]*string{}, queues); got == files.String() {
		t.Errorf("the daemon read the files, not its model:\n%s", got)
	}
}
