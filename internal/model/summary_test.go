package model

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// testAges are the age groups the tests summarize by (manage's, which
// this package does not import).
var testKeys = SummaryKeys{NoReason: "(no reason yet)", Ages: []AgeGroup{
	{5 * time.Minute, "< 5m"}, {time.Hour, "5m-1h"}, {4 * time.Hour, "1h-4h"},
	{24 * time.Hour, "4h-1d"}, {3 * 24 * time.Hour, "1d-3d"}, {1<<63 - 1, ">= 3d"},
}}

var summaryKeys = []string{"reason", "domain", "sender", "age", "queue"}

// sameSummaries fails t unless Summarize (from the groups kept as
// messages change) equals summarizeWalk (a walk of every message) for
// every key.
func sameSummaries(t *testing.T, m *Model, now time.Time, step string) {
	t.Helper()
	for _, by := range summaryKeys {
		fast, fm, fr := m.Summarize(by, now, testKeys)
		slow, sm, sr := m.summarizeWalk(by, now, testKeys)
		byKey := func(rows []SummaryRow) {
			sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
		}
		byKey(fast)
		byKey(slow)
		if fm != sm || fr != sr || (len(fast)+len(slow) > 0 && !reflect.DeepEqual(fast, slow)) {
			t.Fatalf("%s: summary by %s: groups %d/%d, walk %d/%d\ngroups %+v\nwalk   %+v", step, by, fm, fr, sm, sr, fast, slow)
		}
	}
}

// TestSummarizeEqualsWalk applies random sequences of events (intake,
// activation, deliveries of each outcome, deferral, hold, release,
// deletion, corruption) and checks after every one that the summary the
// model answers from its groups is the one a walk of every message gives.
// Arrivals are few distinct seconds, so examples are chosen between
// messages of the same second; addresses mix case and forms without a
// domain.
func TestSummarizeEqualsWalk(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	domains := []string{"a.test", "A.Test", "b.test", "c..test", ""}
	senders := []string{"", "alice@a.test", "ALICE@a.test", "bob@b.test"}
	classes := event.ClassNames()
	ages := []time.Duration{0, time.Minute, 5 * time.Minute, 5*time.Minute - time.Second, time.Hour, 10 * time.Minute, 2 * time.Hour, 24 * time.Hour, 30 * time.Hour, 3 * 24 * time.Hour, 5 * 24 * time.Hour, -time.Minute}
	for seed := int64(1); seed <= 6; seed++ {
		rnd := rand.New(rand.NewSource(seed))
		m := New(Config{Now: func() time.Time { return now }})
		var ids []string
		for step := 0; step < 400; step++ {
			var e event.Event
			id := ""
			if len(ids) > 0 {
				id = ids[rnd.Intn(len(ids))]
			}
			switch k := rnd.Intn(10); {
			case k < 3 || id == "":
				id = fmt.Sprintf("%05X%06X", rnd.Intn(1<<20), step)
				ids = append(ids, id)
				rec := &event.Received{ID: id, Queue: spool.Incoming, Arrival: now.Add(-ages[rnd.Intn(len(ages))]),
					Size: int64(rnd.Intn(5000)), Sender: senders[rnd.Intn(len(senders))]}
				if rnd.Intn(4) == 0 {
					rec.Queue = spool.Hold
				}
				for i := 0; i <= rnd.Intn(4); i++ {
					addr := fmt.Sprintf("u%d", rnd.Intn(3))
					if d := domains[rnd.Intn(len(domains))]; d != "" {
						addr += "@" + d
					}
					rec.Recipients = append(rec.Recipients, event.Recipient{Address: addr, Offset: int64(100 + i)})
				}
				e = rec
			case k == 3:
				x, ok := m.Message(id)
				if !ok || x.Unreadable {
					continue
				}
				act := &event.Activated{ID: id, Arrival: x.Arrival, Size: x.Size, Sender: x.Sender, LogCleared: rnd.Intn(2) == 0}
				for i, r := range x.Recipients {
					act.Recipients = append(act.Recipients, event.Recipient{Address: r.Address, Offset: int64(100 + i), Done: r.Done})
				}
				e = act
			case k == 4 || k == 5:
				a := event.Attempt{ID: id, Time: now, Offset: int64(100 + rnd.Intn(4)), DSN: "4.0.0",
					Reason: fmt.Sprintf("reason %d", rnd.Intn(3)), Class: classes[rnd.Intn(len(classes))]}
				switch rnd.Intn(3) {
				case 0:
					e = &event.Sent{Attempt: a}
				case 1:
					e = &event.Bounced{Attempt: a}
				default:
					e = &event.Deferred{Attempt: a}
				}
			case k == 6:
				e = &event.Moved{ID: id, To: []string{spool.Deferred, spool.Active, spool.Incoming}[rnd.Intn(3)], Forced: rnd.Intn(3) == 0, Next: now.Add(time.Hour)}
			case k == 7:
				if rnd.Intn(2) == 0 {
					e = &event.Held{ID: id}
				} else {
					e = &event.Released{ID: id, To: spool.Deferred}
				}
			case k == 8:
				e = &event.Deleted{ID: id}
			default:
				e = &event.Corrupt{ID: id}
			}
			m.Observe(e)
			sameSummaries(t, m, now, fmt.Sprintf("seed %d step %d (%T %s)", seed, step, e, id))
		}
	}
}

// TestArrivalIndex checks the index of messages by arrival against a
// map, over random additions and removals in and out of time order,
// across chunk splits and a trim.
func TestArrivalIndex(t *testing.T) {
	rnd := rand.New(rand.NewSource(3))
	var a arrivalIndex
	want := map[*msg]bool{}
	var all []*msg
	check := func(step int) {
		got := map[*msg]bool{}
		n := 0
		for k := uint32(0); k < 400; k++ {
			a.each(k, func(x *msg) {
				if x.arrival != k || got[x] {
					t.Fatalf("step %d: second %d lists %v", step, k, x)
				}
				got[x] = true
				n++
			})
		}
		if len(a.firsts) != len(a.chunks) {
			t.Fatalf("step %d: %d firsts for %d chunks", step, len(a.firsts), len(a.chunks))
		}
		for i, c := range a.chunks {
			if len(c.keys) == 0 || a.firsts[i] != c.keys[0] || (i > 0 && a.chunks[i-1].keys[len(a.chunks[i-1].keys)-1] > c.keys[0]) {
				t.Fatalf("step %d: chunk %d malformed", step, i)
			}
		}
		if n != len(want) || !reflect.DeepEqual(got, want) && len(want) > 0 {
			t.Fatalf("step %d: %d listed, want %d", step, n, len(want))
		}
	}
	for step := 0; step < 20000; step++ {
		if len(all) > 0 && rnd.Intn(3) == 0 {
			i := rnd.Intn(len(all))
			x := all[i]
			all[i] = all[len(all)-1]
			all = all[:len(all)-1]
			a.remove(x)
			delete(want, x)
		} else {
			x := &msg{arrival: uint32(rnd.Intn(400))}
			if step%2 == 0 {
				x.arrival = uint32(min(step/40, 399))
			}
			a.add(x)
			want[x] = true
			all = append(all, x)
		}
		if step%1999 == 0 {
			check(step)
		}
		if step == 10000 {
			a.trim()
			check(step)
		}
	}
	check(-1)
}

// TestTimeSet checks the multiset of seconds against a map of counts,
// over random additions and removals across chunk splits.
func TestTimeSet(t *testing.T) {
	rnd := rand.New(rand.NewSource(5))
	var s timeSet
	want := map[uint32]int{}
	for step := 0; step < 30000; step++ {
		k := uint32(rnd.Intn(3000))
		if step%2 == 0 {
			k = uint32(3000 + step/4) // in time order
		}
		if want[k] > 0 && rnd.Intn(3) == 0 {
			s.remove(k)
			want[k]--
		} else {
			s.add(k)
			want[k]++
		}
		if step%997 != 0 {
			continue
		}
		lo := uint32(rnd.Intn(12000))
		first, found := uint32(0), false
		n := 0
		for k, c := range want {
			n += c
			if c > 0 && k >= lo && (!found || k < first) {
				first, found = k, true
			}
		}
		if got, ok := s.firstFrom(lo); ok != found || got != first {
			t.Fatalf("step %d: first from %d: %d %v, want %d %v", step, lo, got, ok, first, found)
		}
		total := 0
		for i, c := range s.chunks {
			total += len(c)
			if len(c) == 0 || s.firsts[i] != c[0] || (i > 0 && s.chunks[i-1][len(s.chunks[i-1])-1] > c[0]) {
				t.Fatalf("step %d: chunk %d malformed", step, i)
			}
		}
		if total != n || len(s.firsts) != len(s.chunks) {
			t.Fatalf("step %d: %d seconds held, want %d", step, total, n)
		}
	}
}
