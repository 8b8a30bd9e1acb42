package qmgr

import (
	"time"
)

// destination is one next hop: its queue of deliveries, how many run,
// how many may run, and whether it is dead (throttled after a failure).
type destination struct {
	name    string
	queue   []*job
	running int
	window  float64 // concurrency now; grows to the limit with successes

	deadUntil  time.Time // zero when alive
	deadReason string
	deadDSN    string
}

// destination returns the destination named hop, making it if needed.
func (m *Manager) destination(hop string) *destination {
	d := m.dests[hop]
	if d == nil {
		d = &destination{name: hop, window: float64(m.cfg.InitialConcurrency)}
		m.dests[hop] = d
	}
	return d
}

func (d *destination) enqueue(j *job) { d.queue = append(d.queue, j) }

func (d *destination) dead() bool { return !d.deadUntil.IsZero() }

// revive brings a dead destination back.
func (d *destination) revive() {
	d.deadUntil, d.deadReason, d.deadDSN = time.Time{}, "", ""
}

// throttle marks the destination dead until until, with the reason of
// the failure that killed it. Its concurrency starts again from the
// initial value when it comes back.
func (m *Manager) throttle(d *destination, reason, dsn string, until time.Time) {
	d.deadUntil, d.deadReason, d.deadDSN = until, reason, dsn
	d.window = float64(m.cfg.InitialConcurrency)
	m.schedule(event{when: until, kind: evRevive, dest: d.name})
}

// success is positive feedback: +1/concurrency per successful delivery.
func (m *Manager) success(d *destination) {
	if d.window < float64(m.cfg.ConcurrencyLimit) {
		d.window += 1 / d.window
		if d.window > float64(m.cfg.ConcurrencyLimit) {
			d.window = float64(m.cfg.ConcurrencyLimit)
		}
	}
}

// dispatch starts queued deliveries while the limits allow, one per
// destination per round so that no destination starves the others. The
// deliveries of a dead destination are deferred at once, without a
// connection.
func (m *Manager) dispatch() {
	for progress := true; progress && len(m.waiting) > 0; {
		progress = false
		keep := m.waiting[:0]
		for _, d := range m.waiting {
			if len(d.queue) == 0 {
				continue
			}
			switch {
			case d.dead():
				for _, j := range d.queue {
					j.suspended = d.deadReason
					j.suspendedDSN = d.deadDSN
					m.start(j)
				}
				d.queue = nil
				progress = true
			case d.running < int(d.window) && m.inFlight < m.cfg.ProcessLimit:
				j := d.queue[0]
				d.queue[0] = nil
				d.queue = d.queue[1:]
				m.suspendQueued(j)
				m.start(j)
				progress = true
			}
			if len(d.queue) > 0 {
				keep = append(keep, d)
			}
		}
		for i := len(keep); i < len(m.waiting); i++ {
			m.waiting[i] = nil
		}
		m.waiting = keep
	}
}
