package model

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// scanned is what a scan read of one queue file, before interning (the
// scan's workers do not touch the model).
type scanned struct {
	queue   uint8
	bare    bool
	forced  bool
	sender  string
	size    int64
	arrival int64
	next    int64
	rcpts   []scannedRcpt
}

type scannedRcpt struct {
	addr        string
	offset      int64
	done        bool
	reason, dsn string
	class       string
	attempts    int
	last        int64
}

// read reads one queue file and its defer and history logs. ok is false
// for a file that is gone or not yet complete.
func (m *Model) read(e spool.Entry) (s scanned, ok bool) {
	q, known := queueIndex(e.Queue)
	if !known {
		return s, false
	}
	s.queue = q
	path := filepath.Join(m.cfg.Spool.Root, e.Rel)
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return s, false
	}
	if q == queueCorrupt {
		s.bare = true
		return s, true
	}
	if !spool.IsReady(fi.Mode()) {
		return s, false // still being written
	}
	s.forced = spool.IsForcedExpire(fi.Mode())
	if q == queueDeferred {
		s.next = fi.ModTime().Unix()
	}
	env, _, err := spool.ReadFile(path, spool.ReadOptions{SkipContent: true})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s, false
		}
		s.bare = true
		return s, true
	}
	s.sender, s.size, s.arrival = env.Sender, envSize(env), env.Arrival.Unix()
	s.rcpts = make([]scannedRcpt, len(env.Recipients))
	pending := 0
	for i, r := range env.Recipients {
		s.rcpts[i] = scannedRcpt{addr: r.Address, offset: r.Offset, done: r.Done}
		if !r.Done {
			pending++
		}
	}
	if pending == 0 {
		return s, true
	}
	entries, _ := m.cfg.Spool.ReadLog(spool.Defer, e.ID)
	for _, le := range entries {
		for i := range s.rcpts {
			r := &s.rcpts[i]
			if r.offset == le.Offset && !r.done {
				r.reason, r.dsn = le.Reason, le.Status
				r.class = event.Classify(event.LogFailure(le.Status, le.DiagType, le.DiagText, le.Reason))
			}
		}
	}
	hist, _ := m.cfg.Spool.ReadHistory(e.ID, s.arrival)
	for _, a := range hist {
		if a.Status != "deferred" {
			continue
		}
		// The entry is one attempt of one recipient: with the same
		// address twice, of the one with fewer attempts so far.
		var r *scannedRcpt
		for i := range s.rcpts {
			c := &s.rcpts[i]
			if c.addr == a.Recipient && !c.done && (r == nil || c.attempts < r.attempts) {
				r = c
			}
		}
		if r != nil {
			r.attempts++
			r.last = max(r.last, a.Time.Unix())
		}
	}
	return s, true
}

// envSize is the size the queue manager logs: the C record's content
// length, or its message length when that is 0.
func envSize(env *spool.Envelope) int64 {
	if env.Size.ContentLen > 0 {
		return env.Size.ContentLen
	}
	return env.Size.MessageLen
}

// toMsg interns a scanned file; the caller holds the write lock.
func (m *Model) toMsg(id string, s *scanned) *msg {
	if s.bare {
		return &msg{id: id, queue: s.queue, bare: true}
	}
	x := m.newMsg(id, s.queue, s.sender, s.size, s.arrival)
	x.forced, x.next = s.forced, clampSeconds(s.next)
	x.rcpts = make([]rcpt, len(s.rcpts))
	for i, r := range s.rcpts {
		x.rcpts[i] = m.newRcpt(r.addr, r.offset, r.done)
		if r.reason != "" || r.dsn != "" {
			x.rcpts[i].class = classIndex(r.class)
			x.rcpts[i].reason, x.rcpts[i].dsn = m.syms.getCapped(r.reason), m.syms.get(r.dsn)
		}
		x.rcpts[i].attempts = uint16(min(r.attempts, 1<<16-1))
		x.rcpts[i].last = clampSeconds(r.last)
	}
	return x
}

// Build fills the model from the spool: one parallel scan. Events that
// arrive meanwhile are applied, and win. Loading is false afterwards.
func (m *Model) Build(ctx context.Context) error {
	_, err := m.pass(ctx, false, m.cfg.Workers)
	if m.loading.CompareAndSwap(true, false) {
		close(m.loaded)
	}
	return err
}

// Reconcile compares the model with a fresh scan of the spool, fixes
// what differs, logs each difference and returns how many there were
// (they are added to Drift). workers bounds the scan's readers (0: one
// per CPU; the periodic pass uses 1, to stay in the background).
func (m *Model) Reconcile(ctx context.Context, workers int) (int, error) {
	return m.pass(ctx, true, workers)
}

// pass is a scan that makes the model match the files, except for the
// messages that events changed while it ran. A difference found by a
// reconcile pass is looked at once more after the scan (the queue
// manager renames a file first and publishes the event afterwards, so a
// scan can catch a file between the two): only one that is still there
// counts as drift.
func (m *Model) pass(ctx context.Context, report bool, workers int) (int, error) {
	m.mu.Lock()
	if m.scanning == 0 {
		m.touched = map[string]bool{}
	}
	m.scanning++
	seen := make(map[string]struct{}, len(m.msgs))
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.scanning--
		if m.scanning == 0 {
			m.touched = nil
		}
		m.mu.Unlock()
	}()
	var suspects []string
	for _, q := range Queues {
		entries, err := m.cfg.Spool.List(q)
		if err != nil {
			return 0, fmt.Errorf("model: %w", err)
		}
		err = spool.ForEach(entries, workers, func(e spool.Entry) (scanned, bool) {
			if ctx.Err() != nil {
				return scanned{}, false
			}
			return m.read(e)
		}, func(e spool.Entry, s scanned) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			seen[e.ID] = struct{}{}
			if m.touched[e.ID] {
				return nil
			}
			x := m.toMsg(e.ID, &s)
			if !report {
				m.put(e.ID, x)
				return nil
			}
			if m.diff(m.msgs[e.ID], x) != "" {
				suspects = append(suspects, e.ID)
			} else {
				m.keepOffsets(e.ID, x)
			}
			m.drop(x)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("model: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("model: scan: %w", err)
		}
	}
	m.mu.RLock()
	for id := range m.msgs {
		if _, ok := seen[id]; !ok && !m.touched[id] {
			suspects = append(suspects, id)
		}
	}
	m.mu.RUnlock()
	if !report {
		// The first build: what the scan did not see is not there.
		m.mu.Lock()
		for _, id := range suspects {
			if !m.touched[id] {
				m.put(id, nil)
			}
		}
		m.mu.Unlock()
		return 0, nil
	}
	if len(suspects) > 0 {
		time.Sleep(settle)
	}
	drift := 0
	for _, id := range suspects {
		var x *msg
		s, ok := m.readID(id)
		m.mu.Lock()
		if !m.touched[id] {
			if ok {
				x = m.toMsg(id, &s)
			}
			if what := m.diff(m.msgs[id], x); what != "" {
				drift++
				m.cfg.Log.Warn("model", "%s: drift: %s", id, what)
				m.put(id, x)
			} else {
				m.drop(x)
			}
		}
		m.mu.Unlock()
	}
	m.drift.Add(int64(drift))
	return drift, nil
}

// settle is how long a reconcile pass waits before it looks at a
// difference again.
const settle = 50 * time.Millisecond

// readID reads the file id wherever it is; ok is false when it is in no
// queue.
func (m *Model) readID(id string) (scanned, bool) {
	for _, q := range Queues {
		if s, ok := m.read(spool.Entry{Queue: q, ID: id, Rel: m.cfg.Spool.RelPath(q, id)}); ok {
			return s, true
		}
	}
	return scanned{}, false
}

// keepOffsets takes the recipient offsets of the file for a message that
// agrees with it otherwise: cleanup's event cannot know them.
func (m *Model) keepOffsets(id string, x *msg) {
	old := m.msgs[id]
	if old == nil || len(old.rcpts) != len(x.rcpts) {
		return
	}
	for i := range old.rcpts {
		old.rcpts[i].offset = x.rcpts[i].offset
	}
}

// diff describes the first difference between the model's message a
// and the file's b, "" when they agree. Recipient offsets are not
// compared: cleanup's event does not know them.
func (m *Model) diff(a, b *msg) string {
	switch {
	case a == nil && b == nil:
		return ""
	case b == nil:
		return "gone from " + Queues[a.queue]
	case a == nil:
		return "not in the model, found in " + Queues[b.queue]
	case a.queue != b.queue:
		return "queue " + Queues[a.queue] + ", file in " + Queues[b.queue]
	case a.bare != b.bare:
		return "readability changed"
	case a.bare:
		return ""
	case a.forced != b.forced:
		return "force-expiry flag changed"
	case a.sender != b.sender, a.size != b.size, a.arrival != b.arrival:
		return "envelope changed"
	case a.queue == queueDeferred && a.next != b.next:
		return fmt.Sprintf("next attempt %s, file says %s", time.Unix(int64(a.next), 0).UTC().Format(time.RFC3339), time.Unix(int64(b.next), 0).UTC().Format(time.RFC3339))
	case len(a.rcpts) != len(b.rcpts):
		return "recipients changed"
	}
	for i := range a.rcpts {
		ra, rb := &a.rcpts[i], &b.rcpts[i]
		if ra.addr != rb.addr || ra.done != rb.done {
			return "recipient " + rb.addr + " changed"
		}
		if ra.done {
			continue
		}
		if ra.class != rb.class || ra.dsn != rb.dsn || (ra.reason != rb.reason && ra.reason != onDisk && rb.reason != onDisk) {
			return "reason of " + rb.addr + " changed"
		}
		if ra.attempts != rb.attempts || ra.last != rb.last {
			return "attempts of " + rb.addr + " changed"
		}
	}
	return ""
}

// Run reconciles every interval until ctx ends, with one reader, so the
// pass stays in the background.
func (m *Model) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.Reconcile(ctx, 1); err != nil && ctx.Err() == nil {
				m.cfg.Log.Warn("model", "reconcile: %v", err)
			}
		}
	}
}
