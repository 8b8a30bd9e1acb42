package qmgr

import (
	"context"
	"errors"
	"os"
	"sync"

	"sluice/internal/spool"
)

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// The queue manager is the coordinator of actions from outside
// (manage.Coordinator): before postsuper-like actions change a message
// they Acquire it, which waits for its deliveries in flight to end and
// keeps the scheduler off it until release. So a message deleted or held
// while it is being delivered is not delivered after the action is
// acknowledged.

// errNotRunning is not returned to callers: without a running manager
// there is nothing to coordinate with.
var errNotRunning = errors.New("qmgr: not running")

// onLoop runs f on the loop goroutine and reports false when the loop is
// not running.
func (m *Manager) onLoop(ctx context.Context, f func()) error {
	if !m.running.Load() {
		return errNotRunning
	}
	select {
	case m.ctl <- f:
		return nil
	case <-m.stopped:
		return errNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Acquire waits until no delivery of id is in flight and keeps the
// scheduler from starting one until release is called. Deliveries of id
// that were queued but not started are dropped. After release the
// scheduler looks at the file again: still in active/ it is scheduled
// anew, in incoming/ it is taken, anywhere else it is forgotten.
func (m *Manager) Acquire(ctx context.Context, id string) (release func(), err error) {
	ready := make(chan struct{})
	err = m.onLoop(ctx, func() { m.acquire(id, ready) })
	if errors.Is(err, errNotRunning) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if m.onLoop(context.Background(), func() { m.release(id) }) != nil {
				return
			}
		})
	}
	select {
	case <-ready:
		return release, nil
	case <-ctx.Done():
		go func() { <-ready; release() }()
		return nil, ctx.Err()
	}
}

// Retry schedules id, which an action has put in incoming/, now.
func (m *Manager) Retry(id string) { m.Notify(id) }

// acquire runs on the loop.
func (m *Manager) acquire(id string, ready chan struct{}) {
	if m.held == nil {
		m.held = map[string]int{}
	}
	m.held[id]++
	msg := m.active[id]
	if msg == nil {
		close(ready)
		return
	}
	msg.acquired = true
	// Drop the deliveries that have not started.
	for _, d := range m.dests {
		keep := d.queue[:0]
		for _, j := range d.queue {
			if j.msg == msg {
				msg.jobs--
				continue
			}
			keep = append(keep, j)
		}
		for i := len(keep); i < len(d.queue); i++ {
			d.queue[i] = nil
		}
		d.queue = keep
	}
	if msg.jobs == 0 && !msg.finishing {
		close(ready)
		return
	}
	msg.waiters = append(msg.waiters, ready)
}

// release runs on the loop.
func (m *Manager) release(id string) {
	if m.held[id]--; m.held[id] > 0 {
		return
	}
	delete(m.held, id)
	if msg := m.active[id]; msg != nil && msg.acquired && msg.jobs == 0 && !msg.finishing {
		// The action had the file: what cleanup kept of it is stale.
		m.dropKept(msg.kept)
		msg.kept = nil
		delete(m.active, id)
		m.stats.active.Store(int64(len(m.active)))
	}
	if _, busy := m.active[id]; busy {
		return
	}
	for _, q := range []string{spool.Active, spool.Incoming} {
		if exists(m.sp.Path(q, id)) {
			m.take([]spool.Entry{{Queue: q, ID: id, Rel: m.sp.RelPath(q, id)}})
			return
		}
	}
}
