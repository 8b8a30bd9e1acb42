package qshape

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"

	"sluice/internal/spool"
)

// maxBuckets bounds -b. The script accepts any count and builds that many
// columns (or loops forever on "inf"); we refuse counts no screen shows.
const maxBuckets = 1 << 20

// worker is one reading goroutine's state, reused from file to file.
type worker struct {
	file spool.FD
	rr   spool.Reader // its window is reused from file to file
	msg  message      // the current file's envelope
	md   []byte       // room for MAILER-DAEMON
	name []byte       // room for the name of the file to open
	// tbl holds this worker's counts, merged when the scan ends. With
	// interim results the counting happens in file order instead (emit).
	tbl *table
}

// result is what a worker hands back for one file.
type result struct {
	warn    string
	counted bool     // the file counts as a message
	bucket  int      // interim mode only: the message's age bucket,
	naddr   int      // its number of addresses,
	keys    []string // and the rows to bump
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
	interim := opt.BatchMsgs.F > 0
	batch := int64(math.Min(math.Max(opt.BatchMsgs.F, 0), math.MaxInt64))

	n := opt.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	workers := make([]*worker, n)
	free := make(chan *worker, n)
	for i := range workers {
		workers[i] = &worker{md: make([]byte, 0, len(mailerDaemon)), tbl: newTable(&opt)}
		free <- workers[i]
	}
	files := candidates(queues, warnf)
	defer files.close()

	work := func(e spool.Entry) (result, bool) {
		w := <-free
		defer func() { free <- w }()
		return w.count(files, e, &opt, now, interim)
	}
	t := newTable(&opt)
	var counted int64
	emit := func(_ spool.Entry, r result) error {
		if r.warn != "" {
			warnf("%s", r.warn)
		}
		if !r.counted || !interim {
			return nil
		}
		t.total.add(r.bucket, int64(r.naddr))
		for _, k := range r.keys {
			t.bump([]byte(k), r.bucket)
		}
		counted++
		if batch == 0 {
			return errors.New("illegal modulus zero: -N must be at least 1")
		}
		if counted%batch == 0 {
			return t.write(out)
		}
		return nil
	}
	if err := spool.ForEach(files.entries, n, work, emit); err != nil {
		return err
	}
	for _, w := range workers {
		t.merge(w.tbl)
	}
	return t.write(out)
}

// count reads one file and counts its addresses into the worker's table,
// or, in interim mode, returns them for emit to count in file order.
func (w *worker) count(files *listing, e spool.Entry, opt *Options, now int64, interim bool) (result, bool) {
	var r result
	m := &w.msg
	dirfd, name := files.open(e)
	if err := w.readMessage(dirfd, name, m); err != nil {
		if errors.Is(err, errSkip) {
			return r, false
		}
		r.warn = fmt.Sprintf("%s/%s: %v", e.Queue, e.ID, err)
		if !m.bogus {
			return r, true
		}
	}
	r.counted = true
	b := opt.bucket(m.arrival, now)
	naddr := len(m.ends)
	if opt.Senders {
		naddr = 1
	}
	if interim {
		r.bucket, r.naddr = b, naddr
	} else {
		w.tbl.total.add(b, int64(naddr))
	}
	for i := 0; i < naddr; i++ {
		a := m.sender
		if !opt.Senders {
			a = m.recipient(i)
		}
		d := domain(a, w.md)
		for {
			if interim {
				r.keys = append(r.keys, string(d))
			} else {
				w.tbl.bump(d, b)
			}
			if !opt.Parents {
				break
			}
			p, ok := parent(d)
			if !ok {
				break
			}
			d = p
		}
	}
	return r, true
}
