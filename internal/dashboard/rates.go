package dashboard

import (
	"sync"
	"time"
)

// rateMinutes is how far back the delivery rates reach: an hour, one
// counter per minute.
const rateMinutes = 60

// The outcomes that the rates count.
var rateKinds = []string{"sent", "deferred", "bounced"}

// Rates counts delivery outcomes per minute over the last hour, in a ring
// of per-minute counters: the daemon feeds it from the events (Add) and
// the overview reads it (Snapshot), both in O(1) and O(minutes).
type Rates struct {
	mu     sync.Mutex
	minute [rateMinutes]int64 // the Unix minute each slot counts
	counts [rateMinutes][3]int64
}

func rateIndex(kind string) int {
	for i, k := range rateKinds {
		if k == kind {
			return i
		}
	}
	return -1
}

// Add counts one outcome (sent, deferred or bounced) at t; other kinds
// are ignored.
func (r *Rates) Add(kind string, t time.Time) {
	k := rateIndex(kind)
	if k < 0 {
		return
	}
	m := t.Unix() / 60
	i := int(m % rateMinutes)
	r.mu.Lock()
	if r.minute[i] != m {
		r.minute[i], r.counts[i] = m, [3]int64{}
	}
	r.counts[i][k]++
	r.mu.Unlock()
}

// RateSeries is the last hour's counts, oldest minute first: Counts[k][i]
// is kind Kinds[k] in the minute that ends rateMinutes-1-i minutes
// before now's.
type RateSeries struct {
	Kinds  []string
	Counts [][]int64
	Totals []int64
}

// Snapshot returns the counts of the hour up to now.
func (r *Rates) Snapshot(now time.Time) RateSeries {
	s := RateSeries{Kinds: rateKinds, Counts: make([][]int64, len(rateKinds)), Totals: make([]int64, len(rateKinds))}
	for k := range s.Counts {
		s.Counts[k] = make([]int64, rateMinutes)
	}
	cur := now.Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	for j := range rateMinutes {
		m := cur - int64(rateMinutes-1-j)
		i := int(((m % rateMinutes) + rateMinutes) % rateMinutes)
		if r.minute[i] != m {
			continue
		}
		for k := range rateKinds {
			s.Counts[k][j] = r.counts[i][k]
			s.Totals[k] += r.counts[i][k]
		}
	}
	return s
}
