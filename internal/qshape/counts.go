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
	counts(func(d string, arrival, n int64) {
		b := opt.bucket(float64(arrival), now)
		t.total.add(b, n)
		key := []byte(d)
		for {
			r := t.rows[string(key)]
			if r == nil {
				r = &row{}
				t.rows[string(key)] = r
			}
			r.add(b, n)
			if !opt.Parents {
				break
			}
			p, ok := parent(key)
			if !ok {
				break
			}
			key = p
		}
	})
	return t.write(out)
}
