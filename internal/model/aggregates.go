package model

// aggregates are the counts kept as messages change. Every change to a
// message is unaccount, change, account, so the counts are always those
// of the messages in the map.
type aggregates struct {
	queue [nQueues]queueAgg
	// By reason class (index as classNames): pending recipients, and
	// messages with at least one pending recipient of the class.
	classRcpts, classMsgs [][nQueues]int64
	// The groups of a summary of every message (summary.go).
	sum summaryAgg
}

type queueAgg struct {
	msgs, rcpts, bytes int64
	arrivals           hist // every message, for the oldest
	// qshape: pending recipients by recipient domain and messages by
	// sender domain, at the message's arrival; force-expired messages
	// and messages with nothing pending are left out, as qshape does.
	rcptDomains   map[sym]*hist
	senderDomains map[sym]*hist
	memo          exampleMemo // the queue's example in a summary by queue
}

func (a *aggregates) init() {
	for i := range a.queue {
		a.queue[i].rcptDomains = map[sym]*hist{}
		a.queue[i].senderDomains = map[sym]*hist{}
	}
	a.classRcpts = make([][nQueues]int64, len(classNames))
	a.classMsgs = make([][nQueues]int64, len(classNames))
	a.sum.init()
}

func bump(m map[sym]*hist, k sym, t int64, d int32) {
	h := m[k]
	if h == nil {
		if d < 0 {
			return
		}
		h = &hist{}
		m[k] = h
	}
	h.add(t, d)
	if h.total == 0 {
		delete(m, k)
	}
}

// count adds (d = 1) or removes (d = -1) a message's contributions.
func (m *Model) count(x *msg, d int32) {
	if m.bulk {
		return // counted at the end of the first build (Build)
	}
	m.bumpDir(x)
	q := &m.agg.queue[x.queue]
	q.memo.clear()
	q.msgs += int64(d)
	q.arrivals.add(int64(x.arrival), d)
	pending := 0
	for i := range x.rs() {
		if !x.rs()[i].done {
			pending++
		}
	}
	m.agg.sum.count(x, m.syms.str(x.sender), pending, d)
	if x.bare {
		return
	}
	q.bytes += int64(d) * int64(x.size)
	var seen uint64 // classes seen in this message (fewer than 64)
	for i := range x.rs() {
		r := &x.rs()[i]
		if r.done {
			continue
		}
		m.agg.classRcpts[r.class][x.queue] += int64(d)
		if seen&(1<<r.class) == 0 {
			seen |= 1 << r.class
			m.agg.classMsgs[r.class][x.queue] += int64(d)
		}
		if !x.forced {
			bump(q.rcptDomains, r.domain, int64(x.arrival), d)
		}
	}
	q.rcpts += int64(d) * int64(pending)
	if pending > 0 && !x.forced {
		bump(q.senderDomains, x.sdom, int64(x.arrival), d)
	}
}

// put replaces (or adds, or with x nil removes) the message id.
func (m *Model) put(id string, x *msg) {
	if old := m.msgs.get(id); old != nil {
		m.count(old, -1)
		m.msgs.del(id)
		if !m.bulk {
			m.agg.sum.unindex(old)
		}
		m.drop(old)
	}
	if x != nil {
		m.msgs.set(x)
		if !m.bulk {
			m.agg.sum.index(x)
		}
		m.count(x, 1)
	}
}

// change applies f to the message id between unaccount and account; it
// does nothing when the model does not hold id.
func (m *Model) change(id string, f func(x *msg)) bool {
	x := m.msgs.get(id)
	if x == nil {
		return false
	}
	m.count(x, -1)
	f(x)
	m.count(x, 1)
	return true
}

// trim gives back the spare capacity the histograms grew while a scan
// filled them out of order.
func (a *aggregates) trim() {
	for i := range a.queue {
		q := &a.queue[i]
		q.arrivals.trim()
		for _, h := range q.rcptDomains {
			h.trim()
		}
		for _, h := range q.senderDomains {
			h.trim()
		}
	}
	a.sum.trim()
}
