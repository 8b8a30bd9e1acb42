package model

import "time"

// EachQShape calls fn for every (domain, arrival second, count) of the
// qshape counts of the named queues: pending recipients by recipient
// domain, or messages by sender domain (senders). It lets a renderer with
// its own bucket rules (package qshape's, Perl numbers and all) build
// qshape's table from the model without reading a file. fn runs under the
// model's read lock: it must not call back into the model.
func (m *Model) EachQShape(queues []string, senders bool, fn func(domain string, arrival, n int64)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, qn := range queues {
		q, ok := queueIndex(qn)
		if !ok {
			continue
		}
		src := m.agg.queue[q].rcptDomains
		if senders {
			src = m.agg.queue[q].senderDomains
		}
		for d, h := range src {
			name := m.syms.str(d)
			h.each(func(k uint32, c int32) { fn(name, int64(k), int64(c)) })
		}
	}
}

// MessagesInMemory returns every message as Message does, in no order,
// without touching the file system: a reason the model does not keep in
// memory (past maxReasonBytes of texts) is left empty, while its Class
// is set. A caller that shows reasons asks Message for those it shows.
func (m *Model) MessagesInMemory() []Message {
	out := make([]Message, 0, m.msgs.len())
	m.EachInMemory(func(v *Message) {
		c := *v
		c.Recipients = append([]Recipient(nil), v.Recipients...)
		out = append(out, c)
	})
	return out
}

// EachInMemory calls fn for every message as MessagesInMemory has it,
// under the model's read lock, with one Message reused from call to call:
// fn must neither keep v nor call the model. It lets a count or a summary
// walk a million messages without making a million views.
func (m *Model) EachInMemory(fn func(v *Message)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var v Message
	m.msgs.each(func(x *msg) {
		rs := v.Recipients[:0]
		v = Message{ID: x.id, Queue: Queues[x.queue], Unreadable: x.bare}
		if !x.bare {
			v.Forced, v.Size, v.Sender = x.forced, int64(x.size), m.syms.str(x.sender)
			v.Arrival = time.Unix(int64(x.arrival), 0).UTC()
			if x.queue == queueDeferred {
				v.Next = time.Unix(int64(x.next), 0).UTC()
			}
			for _, r := range x.rs() {
				rv := Recipient{Address: r.addr, Done: r.done}
				if !r.done {
					rv.Reason, rv.DSN, rv.Class = m.syms.str(r.reason), m.syms.str(r.dsn), classNames[r.class]
					rv.Attempts = int(r.attempts)
					if r.last != 0 {
						rv.LastAttempt = time.Unix(int64(r.last), 0).UTC()
					}
				}
				rs = append(rs, rv)
			}
		}
		v.Recipients = rs
		fn(&v)
	})
}
