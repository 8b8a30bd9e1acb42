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
		var enc, w strings.Builder
		json.NewEncoder(&enc).Encode(&r)
		if err := r.WriteJSON(&w); err != nil || w.String() != enc.String() {
			t.Fatalf("round %d: WriteJSON %v:\n got %s\nwant %s", round, err, w.String(), enc.String())
		}
	}
}
