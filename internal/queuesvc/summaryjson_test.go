package queuesvc

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"sluice/internal/manage"
)

// TestSummaryJSON: AppendJSON writes what encoding/json writes, for
// strings with every kind of character JSON escapes and times with and
// without fractions, zones and zero.
func TestSummaryJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "é", "<", ">", "&", `"`, `\`, "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
		"\u2028", "\u2029", "\xff", "\xe2\x82", "→", "😀", " ", "MAILER-DAEMON", ""}
	str := func() string {
		s := ""
		for range rnd.IntN(6) {
			s += pieces[rnd.IntN(len(pieces))]
		}
		return s
	}
	times := []time.Time{{}, time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 12, 0, 0, 5000, time.UTC),
		time.Date(2026, 12, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))}
	for round := 0; round < 300; round++ {
		n := 5
		if round%50 == 0 {
			n = 3000 // past WriteJSON's flushes
		}
		r := SummaryResult{Source: SourceModel, By: str(), Select: str(), Messages: rnd.IntN(1e6), Recipients: rnd.IntN(1e6)}
		if round%7 != 0 {
			r.Groups = []manage.Group{}
		}
		for range rnd.IntN(n) {
			r.Groups = append(r.Groups, manage.Group{Key: str(), Messages: rnd.IntN(100), Recipients: rnd.IntN(100),
				Oldest: times[rnd.IntN(len(times))], Example: str(), ExampleID: str(), Detail: str()})
		}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("round %d:\n got %s\nwant %s", round, got, want)
		}
		// Read back: the fast reader of AppendJSON's shape and
		// encoding/json make the same (times compare with Equal).
		var back SummaryResult
		if err := json.Unmarshal(want, &back); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		type plain SummaryResult
		var std plain
		json.Unmarshal(want, &std)
		if !sameResult(back, SummaryResult(std)) {
			t.Fatalf("round %d: read back\n%+v\nencoding/json\n%+v", round, back, std)
		}
		// Another spacing takes encoding/json's way, to the same.
		spaced := strings.Replace(string(want), `"groups":`, `"groups" : `, 1)
		var back2 SummaryResult
		if err := json.Unmarshal([]byte(spaced), &back2); err != nil || !sameResult(back2, back) {
			t.Fatalf("round %d: spaced: %v", round, err)
		}
		var enc, w strings.Builder
		json.NewEncoder(&enc).Encode(&r)
		if err := r.WriteJSON(&w); err != nil || w.String() != enc.String() {
			t.Fatalf("round %d: WriteJSON %v:\n got %s\nwant %s", round, err, w.String(), enc.String())
		}
	}
}

func sameResult(a, b SummaryResult) bool {
	if a.Source != b.Source || a.By != b.By || a.Select != b.Select || a.Messages != b.Messages ||
		a.Recipients != b.Recipients || len(a.Groups) != len(b.Groups) || (a.Groups == nil) != (b.Groups == nil) {
		return false
	}
	for i := range a.Groups {
		g, h := a.Groups[i], b.Groups[i]
		if !g.Oldest.Equal(h.Oldest) {
			return false
		}
		g.Oldest, h.Oldest = time.Time{}, time.Time{}
		if g != h {
			return false
		}
	}
	return true
}

// TestSummaryFastRead: what AppendJSON writes of plain text is read by
// the fast reader, not handed to encoding/json.
func TestSummaryFastRead(t *testing.T) {
	r := SummaryResult{Source: SourceModel, By: "sender", Messages: 3, Recipients: 4, Groups: []manage.Group{
		{Key: "alice@a.test", Messages: 2, Recipients: 3, Oldest: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Example: "alice@a.test → b@c.test (+1)", ExampleID: "ABC"},
		{Key: "mailbox-full", Messages: 1, Recipients: 1, Detail: "over quota"},
	}}
	got, ok := parseSummary(r.AppendJSON(nil))
	if !ok || !sameResult(got, r) {
		t.Fatalf("fast read: %v %+v", ok, got)
	}
	if _, ok := parseSummary([]byte(`{"source":"model","by":"a\"b"}`)); ok {
		t.Error("an escaped string was read by the fast reader")
	}
}
