package qmgr

import (
	"container/heap"
	"time"
)

// The manager sleeps on one timer set to the earliest of its events, kept
// in a heap; no goroutine sleeps per message or per destination.

type eventKind int

const (
	evScan       eventKind = iota // scan deferred/ (and incoming/), every queue_run_delay
	evRevive                      // a dead destination's time is up
	evSuspension                  // a parked message's suspension may have ended
)

type event struct {
	when time.Time
	kind eventKind
	dest string
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (m *Manager) schedule(e event) { heap.Push(&m.events, e) }

func (m *Manager) scheduleScan(at time.Time) { m.schedule(event{when: at, kind: evScan}) }

// armTimer sets the timer to the earliest event, if that changed.
func (m *Manager) armTimer() {
	if len(m.events) == 0 {
		return
	}
	next := m.events[0].when
	if next.Equal(m.timerAt) {
		return
	}
	m.timer.Stop()
	select {
	case <-m.timer.C():
	default:
	}
	m.timerAt = next
	m.timer.Reset(max(next.Sub(m.clk.Now()), 0))
}

// runEvents handles every event that is due.
func (m *Manager) runEvents() {
	now := m.clk.Now()
	for len(m.events) > 0 && !m.events[0].when.After(now) {
		e := heap.Pop(&m.events).(event)
		switch e.kind {
		case evScan:
			m.scanIncoming()
			m.scanDeferred(false)
			m.scheduleScan(now.Add(m.cfg.QueueRunDelay))
		case evSuspension:
			m.unpark(now, false)
		case evRevive:
			if d := m.dests[e.dest]; d != nil && d.dead() && !d.deadUntil.After(now) {
				d.revive()
			}
		}
	}
	m.forgetIdle()
}

// forgetIdle drops destinations that are alive and have nothing queued
// or running, so the map does not grow with every domain ever seen.
func (m *Manager) forgetIdle() {
	if len(m.dests) < 1000 {
		return
	}
	for name, d := range m.dests {
		if !d.dead() && d.running == 0 && len(d.queue) == 0 {
			delete(m.dests, name)
		}
	}
}

// backoff is how long a message waits in deferred/ after an attempt:
// its age, clamped to [minimal_backoff_time, maximal_backoff_time], so
// retries come at roughly doubling intervals (reference §8.2).
func (m *Manager) backoff(now time.Time, created int64) time.Duration {
	age := now.Sub(time.Unix(created, 0))
	m.timesMu.RLock() // finish calls this off the loop; Reconfigure writes
	defer m.timesMu.RUnlock()
	return min(max(age, m.cfg.MinBackoff), m.cfg.MaxBackoff)
}

// expired reports whether a message with pending recipients is out of
// time (reference §8.3).
func (m *Manager) expired(now time.Time, msg *message) bool {
	if msg.forced {
		return true
	}
	m.timesMu.RLock() // finish calls this off the loop; Reconfigure writes
	life := m.cfg.MaxLifetime
	if msg.env.Sender == "" {
		life = m.cfg.BounceLifetime
	}
	m.timesMu.RUnlock()
	return !now.Before(time.Unix(msg.env.CreateTime, 0).Add(life))
}
