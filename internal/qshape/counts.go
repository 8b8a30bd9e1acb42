package qshape

import (
	"errors"
	"fmt"
	"io"
)

// Counts is qshape's input already counted, as the daemon's model of the
// queue keeps it: each calls add once for every (domain, arrival second,
// count) — recipients by recipient domain, or with Options.Senders
// messages by sender domain — of the queues asked for.
type Counts func(add func(domain string, arrival, n int64))

// RunCounts writes the table of counts as Run writes that of the files:
// the same age buckets, parent rows (-p), column widths and row order.
// Interim tables (-N) need the messages one by one, in file order, which
// counts do not have: they are an error, and the caller reads the files.
func RunCounts(opt Options, counts Counts, out io.Writer) error {
	if opt.BatchMsgs.F > 0 {
		return errors.New("qshape: interim tables (-N) need the files")
	}
	if opt.Buckets.F > maxBuckets {
		return fmt.Errorf("bucket count %s is too large (at most %d)", perlFloat(opt.Buckets.F), maxBuckets)
	}
	if opt.Now == nil {
		opt.Now = Defaults().Now
	}
	now := opt.Now().Unix()
	t := newTable(&opt)
	ages := newAgeBuckets(&opt, now)
	// Counts come domain by domain: the rows of the last domain (itself
	// and, with -p, its parents) are kept for the next count.
	var lastD string
	var rows []*row
	counts(func(d string, arrival, n int64) {
		b := ages.bucket(arrival)
		t.total.add(b, n)
		if rows == nil || d != lastD {
			lastD, rows = d, rows[:0]
			key := []byte(d)
			for {
				r := t.rows[string(key)]
				if r == nil {
					r = &row{}
					t.rows[string(key)] = r
				}
				rows = append(rows, r)
				if !opt.Parents {
					break
				}
				p, ok := parent(key)
				if !ok {
					break
				}
				key = p
			}
		}
		for _, r := range rows {
			r.add(b, n)
		}
	})
	return t.write(out)
}

// ageBuckets answers Options.bucket for whole-second arrivals from the
// ages at which the bucket steps, found once by bisection of bucket
// itself: a bucket never falls as a message ages, so between two steps
// it is constant. A million counts then cost a few comparisons each
// instead of a logarithm, and give bucket's own answers, Perl's float
// arithmetic included (TestAgeBuckets compares them age by age).
type ageBuckets struct {
	opt   *Options
	now   int64
	first int     // the bucket of age 0
	steps []int64 // steps[i]: the least age whose bucket is vals[i]
	vals  []int
}

func newAgeBuckets(o *Options, now int64) *ageBuckets {
	a := &ageBuckets{opt: o, now: now}
	at := func(age int64) int { return o.bucket(float64(now-age), now) }
	a.first = at(0)
	cur, lo := a.first, int64(0)
	for len(a.steps) < 256 {
		// at(lo) is cur; find an age past lo where it is not.
		hi := lo + 1
		for at(hi) == cur {
			if hi-lo > 1<<42 { // no step for a hundred thousand years
				return a
			}
			hi = lo + 2*(hi-lo)
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			if at(mid) == cur {
				lo = mid
			} else {
				hi = mid
			}
		}
		cur, lo = at(hi), hi
		a.steps, a.vals = append(a.steps, hi), append(a.vals, cur)
	}
	return a
}

// bucket is Options.bucket of a message that arrived at arrival.
func (a *ageBuckets) bucket(arrival int64) int {
	age := a.now - arrival
	if age < 0 || len(a.steps) == 256 {
		return a.opt.bucket(float64(arrival), a.now)
	}
	b := a.first
	for i, s := range a.steps {
		if age < s {
			break
		}
		b = a.vals[i]
	}
	return b
}
