package qshape

import (
	"errors"
	"fmt"
	"io"
	"math"

	"sluice/internal/spool"
)

// maxBuckets bounds -b. The script accepts any count and builds that many
// columns (or loops forever on "inf"); we refuse counts no screen shows.
const maxBuckets = 1 << 20

// result is what a worker hands back for one file.
type result struct {
	warn    string
	counted bool // the file counts as a message
	bucket  int
	naddr   int      // addresses counted into TOTAL
	keys    []string // rows to bump: each address's domain and, with -p, its parents
}

// Run reads the queue files under the given directories (absolute, or
// relative to the working directory) and writes the table to out.
func Run(opt Options, queues []string, out io.Writer) error {
	if opt.Buckets.F > maxBuckets {
		return fmt.Errorf("bucket count %s is too large (at most %d)", perlFloat(opt.Buckets.F), maxBuckets)
	}
	warnf := opt.Warnf
	if warnf == nil {
		warnf = func(string, ...any) {}
	}
	if opt.Now == nil {
		opt.Now = Defaults().Now
	}
	now := opt.Now().Unix()
	batch := int64(0)
	if opt.BatchMsgs.F > 0 {
		batch = int64(math.Min(opt.BatchMsgs.F, math.MaxInt64))
	}
	t := newTable(&opt)
	rd := newReader()
	entries := candidates(queues, warnf)
	work := func(e spool.Entry) (result, bool) {
		m, err := rd.readMessage(e.Rel)
		var r result
		if err != nil {
			if errors.Is(err, errSkip) {
				return r, false
			}
			r.warn = fmt.Sprintf("%s: %v", e.Rel, err)
			if m == nil || !m.bogus {
				return r, true
			}
		}
		r.counted = true
		r.bucket = opt.bucket(m.arrival, now)
		addrs := m.rcpts
		if opt.Senders {
			addrs = []string{m.sender}
		}
		r.naddr = len(addrs)
		for _, a := range addrs {
			d := domain(a)
			r.keys = append(r.keys, d)
			for opt.Parents {
				p, ok := parent(d)
				if !ok {
					break
				}
				r.keys = append(r.keys, p)
				d = p
			}
		}
		return r, true
	}
	var counted int64
	emit := func(_ spool.Entry, r result) error {
		if r.warn != "" {
			warnf("%s", r.warn)
		}
		if !r.counted {
			return nil
		}
		for i := 0; i < r.naddr; i++ {
			t.bump(total, r.bucket)
		}
		for _, k := range r.keys {
			t.bump(k, r.bucket)
		}
		if opt.BatchMsgs.F > 0 {
			counted++
			if batch == 0 {
				return errors.New("illegal modulus zero: -N must be at least 1")
			}
			if counted%batch == 0 {
				return t.write(out)
			}
		}
		return nil
	}
	if err := spool.ForEach(entries, opt.Workers, work, emit); err != nil {
		return err
	}
	return t.write(out)
}
