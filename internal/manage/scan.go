package manage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// Queue is a spool seen through manage: selection, summaries and actions.
// Without a daemon it works on the files directly; inside the daemon the
// queue manager is its Coordinator, so an action and a delivery never race.
type Queue struct {
	Spool *spool.Spool
	Now   func() time.Time
	// Coord, when set, is the running queue manager. Actions take each
	// message out of its hands before they change it.
	Coord Coordinator
	// Warn receives problems with single files (corrupt, unreadable);
	// they never stop a scan.
	Warn func(format string, args ...any)
	// Events, when set, receives an event for every change an action
	// makes (Deleted, Held, Released, Requeued; Moved for retry and
	// expire), after the change is on disk: the daemon's bus (its model
	// and its mail log), or a tool's mail log when it acts on the files.
	// The mail log writes postsuper's lines from them.
	Events event.Observer
	// Log, when set, writes the mail-log line of a change no event makes
	// a line of (postsuper's "ID: expired").
	Log func(service, format string, args ...any)
}

// Coordinator is the queue manager's side of an action.
type Coordinator interface {
	// Acquire waits until no delivery of id is in flight and keeps the
	// scheduler from starting one until release is called. After release
	// the scheduler looks at the file again (it may have moved or gone).
	Acquire(ctx context.Context, id string) (release func(), err error)
	// Retry schedules id (now in incoming/) for delivery now.
	Retry(id string)
}

// ScanQueues are the queues a selection looks at by default, in showq's
// order, then corrupt.
var ScanQueues = []string{spool.Maildrop, spool.Active, spool.Incoming, spool.Deferred, spool.Hold, spool.Corrupt}

// need says what a scan must read beyond the envelope.
type need struct {
	reasons  bool // defer logs
	attempts bool // history
	envelope bool
}

func (s *Selector) needs() need {
	var n need
	if s.Empty() {
		return need{envelope: true}
	}
	for _, t := range s.Terms {
		switch t.Key {
		case "reason", "class":
			n.reasons, n.envelope = true, true
		case "attempts":
			n.attempts = true
		case "id", "queue":
		default:
			n.envelope = true
		}
	}
	return n
}

// SelectOptions adjusts Select.
type SelectOptions struct {
	// Full reads everything (reasons and attempt counts) for display, not
	// only what the selector needs.
	Full bool
	// Envelope reads every message's envelope (sender, recipients) even
	// when the selector needs none, as a count of recipients does.
	Envelope bool
}

// Select returns the messages the selector picks, in showq's order.
func (q *Queue) Select(ctx context.Context, sel *Selector, opt SelectOptions) ([]*Message, error) {
	var out []*Message
	err := q.Each(ctx, sel, opt, func(m *Message) error {
		out = append(out, m)
		return nil
	})
	return out, err
}

// Each calls fn for every selected message in showq's order.
func (q *Queue) Each(ctx context.Context, sel *Selector, opt SelectOptions, fn func(*Message) error) error {
	now := q.now()
	nd := sel.needs()
	if opt.Full {
		nd = need{reasons: true, attempts: true, envelope: true}
	}
	if opt.Envelope {
		nd.envelope = true
	}
	entries, err := q.candidates(sel)
	if err != nil {
		return err
	}
	return spool.ForEach(entries, 0, func(e spool.Entry) (*Message, bool) {
		if ctx.Err() != nil {
			return nil, false
		}
		m, err := q.load(e, nd)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				q.warn("%s: %v", e.Rel, err)
			}
			return nil, false
		}
		if m == nil || !sel.Match(m, now) {
			return nil, false
		}
		return m, true
	}, func(_ spool.Entry, m *Message) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(m)
	})
}

// candidates lists the files a selector can match: the named IDs when it
// names only IDs, else every file in the queues it allows.
func (q *Queue) candidates(sel *Selector) ([]spool.Entry, error) {
	queues := ScanQueues
	if qs := sel.Queues(); len(qs) > 0 {
		queues = qs
	}
	if ids, ok := sel.IDs(); ok {
		var out []spool.Entry
		for _, id := range ids {
			for _, qn := range queues {
				if _, err := os.Lstat(q.Spool.Path(qn, id)); err == nil {
					out = append(out, spool.Entry{Queue: qn, ID: id, Rel: q.Spool.RelPath(qn, id)})
					break
				}
			}
		}
		return out, nil
	}
	var out []spool.Entry
	for _, qn := range queues {
		ents, err := q.Spool.List(qn)
		if err != nil {
			return nil, err
		}
		out = append(out, ents...)
	}
	return out, nil
}

// Load reads one message by queue and ID with everything shown by
// `sluice queue show`.
func (q *Queue) Load(queue, id string) (*Message, error) {
	return q.load(spool.Entry{Queue: queue, ID: id, Rel: q.Spool.RelPath(queue, id)}, need{reasons: true, attempts: true, envelope: true})
}

func (q *Queue) load(e spool.Entry, nd need) (*Message, error) {
	path := q.Spool.Root + "/" + e.Rel
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Only complete files are messages; corrupt/ holds whatever it holds.
	if !fi.Mode().IsRegular() || (e.Queue != spool.Corrupt && !spool.IsReady(fi.Mode())) {
		return nil, nil
	}
	m := &Message{
		Queue: e.Queue, ID: e.ID, Size: fi.Size(), Arrival: fi.ModTime(),
		ForcedExpire: spool.IsForcedExpire(fi.Mode()),
	}
	if e.Queue == spool.Deferred {
		m.NextAttempt = fi.ModTime()
	}
	if !nd.envelope && !nd.attempts {
		return m, nil
	}
	rd := readerPool.Get().(*spool.Reader)
	rd.Reset(f, fi.Size())
	env, rerr := spool.ReadEnvelope(rd, spool.ReadOptions{SkipContent: true})
	readerPool.Put(rd)
	if rerr != nil && e.Queue != spool.Corrupt {
		return nil, fmt.Errorf("%w", rerr)
	}
	if env.HasArrival {
		m.Arrival = env.Arrival
	}
	if env.HasSize {
		m.Size = env.Size.MessageLen
	}
	m.Sender = env.Sender
	m.Recipients = make([]Recipient, 0, len(env.Recipients))
	for _, r := range env.Recipients {
		m.Recipients = append(m.Recipients, Recipient{Address: r.Address, Done: r.Done})
	}
	if nd.reasons {
		ents, err := q.Spool.ReadLog(spool.Defer, e.ID)
		if err != nil {
			q.warn("%s: defer log: %v", e.ID, err)
		}
		// An entry names its recipient by the R record's offset, and by
		// address in the log's quoted form.
		for _, le := range ents {
			for i, er := range env.Recipients {
				r := &m.Recipients[i]
				if r.Done {
					continue
				}
				if (le.Offset > 0 && le.Offset == er.Offset) || (le.Offset <= 0 && spool.QuoteAddress(er.Address) == le.Recipient) {
					r.Reason, r.Status = le.Reason, le.Status
					r.Class = classOf(le.Status, le.DiagType, le.DiagText, le.Reason)
				}
			}
		}
	}
	if nd.attempts {
		h, err := q.Spool.ReadHistory(e.ID, m.Arrival.Unix())
		if err != nil {
			q.warn("%s: history: %v", e.ID, err)
		}
		m.Attempts = spool.CountAttempts(h)
	}
	return m, nil
}

// readerPool keeps record readers, and their buffers, across the files
// of a scan: one buffer per file would be most of a large scan's work.
var readerPool = sync.Pool{New: func() any { return spool.NewReader(nil, 0) }}

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

func (q *Queue) warn(format string, args ...any) {
	if q.Warn != nil {
		q.Warn(format, args...)
	}
}

// lockFile takes an exclusive lock (flock) on a queue file, so tools that
// act on the files without a daemon take turns. It returns the open file.
func lockFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
