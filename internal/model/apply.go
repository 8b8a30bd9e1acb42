package model

import (
	"sluice/internal/event"
	"sluice/internal/spool"
)

// Observe applies an event (the model is an event.Observer). Events
// about messages the model does not hold change nothing but the ones that
// create a message (Received, Activated); a reconcile pass catches what
// was missed.
func (m *Model) Observe(e event.Event) {
	var fromFile *scanned
	if a, ok := e.(*event.Activated); ok {
		// A message the model does not know yet (it is loading, or
		// missed an event): its attempts and reasons are in its logs,
		// which the event does not carry, so read the files once.
		m.mu.RLock()
		known := m.msgs.get(a.ID) != nil
		m.mu.RUnlock()
		if !known {
			if s, ok := m.read(spool.Entry{Queue: spool.Active, ID: a.ID, Rel: m.cfg.Spool.RelPath(spool.Active, a.ID)}); ok && !s.bare {
				fromFile = &s
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events.Add(1)
	id := e.QueueID()
	if m.scanning > 0 {
		m.touched[id] = true
	}
	switch e := e.(type) {
	case *event.Received:
		q, ok := queueIndex(e.Queue)
		if !ok {
			return
		}
		x := m.newMsg(e.ID, q, e.Sender, e.Size, e.Arrival.Unix())
		x.setRcpts(make([]rcpt, len(e.Recipients)))
		for i, r := range e.Recipients {
			x.rs()[i] = m.newRcpt(r.Address, r.Offset, r.Done)
		}
		m.put(e.ID, x)
	case *event.Activated:
		old := m.msgs.get(e.ID)
		if old == nil && fromFile != nil {
			m.put(e.ID, m.toMsg(e.ID, fromFile))
			return
		}
		x := m.newMsg(e.ID, queueActive, e.Sender, e.Size, e.Arrival.Unix())
		x.forced = e.Forced
		x.setRcpts(make([]rcpt, len(e.Recipients)))
		for i, r := range e.Recipients {
			x.rs()[i] = m.newRcpt(r.Address, r.Offset, r.Done)
			if old != nil && !e.LogCleared && i < len(old.rs()) && old.rs()[i].addr == r.Address {
				p := &old.rs()[i]
				x.rs()[i].class, x.rs()[i].reason, x.rs()[i].dsn = p.class, p.reason, p.dsn
				m.syms.retain(p.reason)
				m.syms.retain(p.dsn)
			}
			if old != nil && i < len(old.rs()) && old.rs()[i].addr == r.Address {
				x.rs()[i].attempts, x.rs()[i].last = old.rs()[i].attempts, old.rs()[i].last
			}
		}
		m.put(e.ID, x)
	case *event.Sent:
		m.attempt(&e.Attempt, true, false)
	case *event.Bounced:
		m.attempt(&e.Attempt, true, false)
	case *event.Deferred:
		m.attempt(&e.Attempt, false, true)
	case *event.Moved:
		q, ok := queueIndex(e.To)
		if !ok {
			m.put(e.ID, nil)
			return
		}
		m.change(e.ID, func(x *msg) {
			x.queue = q
			if e.To == spool.Deferred {
				x.forced = e.Forced
			}
			if !e.Next.IsZero() {
				x.next = clampSeconds(e.Next.Unix())
			}
		})
	case *event.Deleted:
		m.put(e.ID, nil)
	case *event.Withdrawn:
		m.put(e.ID, nil)
	case *event.Requeued:
		m.put(e.ID, nil)
	case *event.Held:
		m.change(e.ID, func(x *msg) { x.queue = queueHold })
	case *event.Released:
		if q, ok := queueIndex(e.To); ok {
			m.change(e.ID, func(x *msg) { x.queue = q })
		}
	case *event.Corrupt:
		m.put(e.ID, &msg{id: e.ID, queue: queueCorrupt, bare: true})
	}
}

// Queue indexes (as Queues).
const (
	queueIncoming uint8 = iota
	queueActive
	queueDeferred
	queueHold
	queueCorrupt
)

func (m *Model) newMsg(id string, q uint8, sender string, size, arrival int64) *msg {
	x := m.makeMsg(id, q, sender, size, arrival)
	return &x
}

func (m *Model) makeMsg(id string, q uint8, sender string, size, arrival int64) msg {
	s := m.syms.get(sender)
	return msg{id: id, queue: q, sender: s, sdom: m.syms.get(qshapeDomain(sender)), size: uint32(min(max(size, 0), 1<<32-1)), arrival: clampSeconds(arrival)}
}

func (m *Model) newRcpt(addr string, offset int64, done bool) rcpt {
	return rcpt{addr: addr, domain: m.syms.get(qshapeDomain(addr)), offset: uint32(min(max(offset, 0), 1<<32-1)), done: done}
}

// attempt applies one recipient's outcome.
func (m *Model) attempt(a *event.Attempt, done, deferred bool) {
	m.change(a.ID, func(x *msg) {
		for i := range x.rs() {
			r := &x.rs()[i]
			if int64(r.offset) != a.Offset {
				continue
			}
			r.done = r.done || done
			if deferred {
				r.class = classIndex(a.Class)
				m.syms.release(r.reason)
				m.syms.release(r.dsn)
				r.reason, r.dsn = m.syms.getCapped(a.Reason), m.syms.get(a.DSN)
				if r.attempts < 1<<16-1 {
					r.attempts++
				}
				r.last = clampSeconds(a.Time.Unix())
			}
			return
		}
	})
}
