package model

import (
	"strings"
	"sync/atomic"
	"time"
)

// SummaryKeys are the rules of a summary that belong to its caller
// (package manage's): the age groups and the key of recipients without a
// reason yet.
type SummaryKeys struct {
	// Ages are the age groups, youngest first: a message is in the first
	// group whose Below its age is under; the last group takes every
	// older one whatever its Below.
	Ages []AgeGroup
	// NoReason is the key of pending recipients with no reason yet.
	NoReason string
}

// AgeGroup is one age group of a summary by age.
type AgeGroup struct {
	Below time.Duration
	Label string
}

func (k *SummaryKeys) age(d time.Duration) string {
	for _, g := range k.Ages[:len(k.Ages)-1] {
		if d < g.Below {
			return g.Label
		}
	}
	return k.Ages[len(k.Ages)-1].Label
}

// SummaryRow is one group of a summary of every message: the messages and
// pending recipients that share a key, the oldest arrival, and what the
// caller needs to describe the group's example.
//
// The example is the group's oldest message: the earliest arrival, and
// among messages that arrived in the same second the smallest queue ID;
// a message whose arrival is unknown (an unreadable file) is the example
// only of a group with no other. So the example's arrival is the row's
// Oldest, and the same messages give the same summary in any order.
type SummaryRow struct {
	Key        string
	Messages   int
	Recipients int
	Oldest     time.Time // the earliest known arrival; zero when none is known
	ExampleID  string    // "" for the no-reason group, which has no example
	// Sender and Rcpt are the example's sender and its first pending
	// recipient in the group (by domain: in the domain; otherwise: of
	// the message); More counts its other pending recipients (not by
	// domain or reason). Reason is the first pending recipient's reason
	// of the group's class, "" when the model keeps it on disk only.
	Sender, Rcpt, Reason string
	More                 int
}

// exampleBefore reports whether x comes before y as a group's example
// (see SummaryRow).
func exampleBefore(x, y *msg) bool {
	if (x.arrival == 0) != (y.arrival == 0) {
		return y.arrival == 0
	}
	if x.arrival != y.arrival {
		return x.arrival < y.arrival
	}
	return x.id < y.id
}

// group is one group of a summary, kept as messages change: its
// messages, their pending recipients in the group, and its messages by
// arrival (for the oldest, and the second where the example is).
type group struct {
	msgs, rcpts int64
	arrivals    timeSet
	memo        exampleMemo
}

// exampleMemo keeps a group's example as a summary last found it, until
// the group changes: a message joins or leaves it, or one of its
// messages changes (every change of a message counts it out and back
// in). Most groups of a large queue are the same from one summary to
// the next, and finding an example is most of a summary's cost. It is
// written under the model's read lock by summaries, which may run side
// by side (atomic), and cleared under the write lock.
type exampleMemo struct{ p atomic.Pointer[exMemo] }

// exMemo is a found example; ex is nil for a group with none.
type exMemo struct{ ex *msg }

func (e *exampleMemo) clear() { e.p.Store(nil) }

// summaryAgg holds a summary's groups for every key, so that a summary of
// the whole queue costs O(groups), not a walk of every message (a walk of
// a million takes hundreds of milliseconds under the model's lock):
// reason classes, recipient domains and senders as groups; per queue the
// queue's own aggregates; age groups, whose bounds move with the clock,
// as ranges of the queues' histograms of arrivals and of allRcpts, the
// pending recipients by arrival. byArrival lists the
// messages of each arrival second: a group's example is among the
// messages of its first second.
type summaryAgg struct {
	classes   []group // by class index (classNames)
	domains   map[string]*group
	senders   map[string]*group
	allRcpts  hist // pending recipients by their message's arrival
	byArrival arrivalIndex
}

func (s *summaryAgg) init() {
	s.classes = make([]group, len(classNames))
	s.domains, s.senders = map[string]*group{}, map[string]*group{}
}

// index and unindex add and remove a message in byArrival (its arrival
// never changes while it is in the index).
func (s *summaryAgg) index(x *msg)   { s.byArrival.add(x) }
func (s *summaryAgg) unindex(x *msg) { s.byArrival.remove(x) }

// count adds (d = 1) or removes (d = -1) a message's part in the groups;
// sender is its sender, pending its pending recipients.
func (s *summaryAgg) count(x *msg, sender string, pending int, d int32) {
	t := int64(x.arrival)
	s.allRcpts.add(t, d*int32(pending))
	bumpGroup(s.senders, senderKey(sender), t, d, pending, true)
	if pending == 0 {
		return
	}
	var seen uint64 // classes seen in this message (fewer than 64)
	var doms map[string]bool
	if pending > 16 {
		doms = make(map[string]bool, pending)
	}
	for i := range x.rs() {
		r := &x.rs()[i]
		if r.done {
			continue
		}
		g := &s.classes[r.class]
		g.memo.clear()
		g.rcpts += int64(d)
		if seen&(1<<r.class) == 0 {
			seen |= 1 << r.class
			g.msgs += int64(d)
			g.arrivals.bump(x.arrival, d)
		}
		key := summaryDomain(r.addr)
		first := true
		if doms != nil {
			first = !doms[key]
			doms[key] = true
		} else {
			for j := range i {
				if !x.rs()[j].done && summaryDomain(x.rs()[j].addr) == key {
					first = false
					break
				}
			}
		}
		bumpGroup(s.domains, key, t, d, 1, first)
	}
}

// bumpGroup adds d times rcpts recipients to the group key, and the
// message (arrival t) when newMsg; a group with nothing left goes.
func bumpGroup(tab map[string]*group, key string, t int64, d int32, rcpts int, newMsg bool) {
	g := tab[key]
	if g == nil {
		g = &group{}
		tab[key] = g
	}
	g.memo.clear()
	g.rcpts += int64(d) * int64(rcpts)
	if newMsg {
		g.msgs += int64(d)
		g.arrivals.bump(clampSeconds(t), d)
	}
	if g.msgs == 0 && g.rcpts == 0 {
		delete(tab, key)
	}
}

func (s *summaryAgg) trim() {
	for i := range s.classes {
		s.classes[i].arrivals.trim()
	}
	for _, g := range s.domains {
		g.arrivals.trim()
	}
	for _, g := range s.senders {
		g.arrivals.trim()
	}
	s.allRcpts.trim()
	s.byArrival.trim()
}

// seconds is what firstIn and example search: a hist, or a timeSet.
type seconds interface {
	firstFrom(lo uint32) (uint32, bool)
}

// allQueues is every message by arrival: the queues' histograms
// together.
type allQueues []*hist

func (a allQueues) firstFrom(lo uint32) (uint32, bool) {
	var first uint32
	found := false
	for _, h := range a {
		if t, ok := h.firstFrom(lo); ok && (!found || t < first) {
			first, found = t, true
		}
	}
	return first, found
}

func (a allQueues) sumRange(lo, hi int64) int64 {
	var n int64
	for _, h := range a {
		n += h.sumRange(lo, hi)
	}
	return n
}

// firstIn is the first second in [lo, hi) that h counts.
func firstIn(h seconds, lo, hi int64) (uint32, bool) {
	lo = max(lo, 0)
	if lo >= hi || lo > 1<<32-1 {
		return 0, false
	}
	t, ok := h.firstFrom(uint32(lo))
	return t, ok && int64(t) < hi
}

// example returns the example of a group whose messages h counts by
// arrival, within arrivals [lo, hi), member telling its messages; oldest
// is the group's first known second, when found.
func (s *summaryAgg) example(h seconds, lo, hi int64, oldest uint32, found bool, member func(*msg) bool) *msg {
	t, ok := oldest, found
	if !ok {
		if t, ok = firstIn(h, lo, min(hi, 1)); !ok {
			return nil
		}
	}
	var ex *msg
	s.byArrival.each(t, func(x *msg) {
		if member(x) && (ex == nil || x.id < ex.id) {
			ex = x
		}
	})
	return ex
}

func memoOf(m *exampleMemo) *exMemo {
	if m == nil {
		return nil
	}
	return m.p.Load()
}

// maxArrival bounds arrivals from above (exclusive).
const maxArrival = int64(1) << 32

// Summarize groups every message by reason class, recipient domain,
// sender, age or queue, as package manage's Summarizer does for the
// messages it is given, from the groups the model keeps as messages
// change (summaryAgg): it costs O(groups), whatever the number of
// messages. Rows come in no particular order. It is the summary of an
// empty selection; a selection that picks messages goes through the
// views.
func (m *Model) Summarize(by string, now time.Time, keys SummaryKeys) (rows []SummaryRow, messages, recipients int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := &m.agg.sum
	all := make(allQueues, len(m.agg.queue))
	for i := range m.agg.queue {
		all[i] = &m.agg.queue[i].arrivals
		messages += int(m.agg.queue[i].msgs)
	}
	recipients = int(s.allRcpts.total)
	// memo is nil for the age groups, whose bounds move with the
	// clock.
	add := func(key string, msgs, rcpts int64, h seconds, lo, hi int64, memo *exampleMemo, member func(*msg) bool) {
		r := SummaryRow{Key: key, Messages: int(msgs), Recipients: int(rcpts)}
		t, ok := firstIn(h, max(lo, 1), hi)
		if ok {
			r.Oldest = time.Unix(int64(t), 0).UTC()
		}
		if member != nil {
			var x *msg
			if e := memoOf(memo); e != nil {
				x = e.ex
			} else {
				x = s.example(h, lo, hi, t, ok, member)
				if memo != nil {
					memo.p.Store(&exMemo{x})
				}
			}
			if x != nil {
				m.describe(&r, x, by)
			}
		}
		rows = append(rows, r)
	}
	switch by {
	case "sender":
		rows = make([]SummaryRow, 0, len(s.senders))
		for k, g := range s.senders {
			add(k, g.msgs, g.rcpts, &g.arrivals, 0, maxArrival, &g.memo, func(x *msg) bool { return senderKey(m.syms.str(x.sender)) == k })
		}
	case "domain":
		rows = make([]SummaryRow, 0, len(s.domains))
		for k, g := range s.domains {
			add(k, g.msgs, g.rcpts, &g.arrivals, 0, maxArrival, &g.memo, func(x *msg) bool {
				for i := range x.rs() {
					if !x.rs()[i].done && summaryDomain(x.rs()[i].addr) == k {
						return true
					}
				}
				return false
			})
		}
	case "queue":
		for qi := range m.agg.queue {
			q := &m.agg.queue[qi]
			if q.msgs > 0 {
				add(Queues[qi], q.msgs, q.rcpts, &q.arrivals, 0, maxArrival, &q.memo, func(x *msg) bool { return int(x.queue) == qi })
			}
		}
	case "age":
		// Group i takes ages in [Below of i-1, Below of i): arrivals in
		// (now - Below of i, now - Below of i-1].
		nowSec := now.Unix()
		hi := maxArrival
		for i, g := range keys.Ages {
			lo := int64(0)
			if i < len(keys.Ages)-1 {
				lo = max(nowSec-ceilSeconds(g.Below)+1, 0)
			}
			if msgs := all.sumRange(lo, hi); msgs > 0 {
				add(g.Label, msgs, s.allRcpts.sumRange(lo, hi), all, lo, hi, nil, func(*msg) bool { return true })
			}
			hi = lo
			if hi <= 0 {
				break
			}
		}
	default: // reason
		for c := range s.classes {
			g := &s.classes[c]
			if g.msgs == 0 {
				continue
			}
			if c == 0 {
				add(keys.NoReason, g.msgs, g.rcpts, &g.arrivals, 0, maxArrival, nil, nil)
				continue
			}
			add(classNames[c], g.msgs, g.rcpts, &g.arrivals, 0, maxArrival, &g.memo, func(x *msg) bool {
				for i := range x.rs() {
					if !x.rs()[i].done && int(x.rs()[i].class) == c {
						return true
					}
				}
				return false
			})
		}
	}
	return rows, messages, recipients
}

// ceilSeconds is d in whole seconds, rounded up: an age of n seconds is
// under d when n < ceilSeconds(d).
func ceilSeconds(d time.Duration) int64 {
	return int64(d/time.Second) + int64(min(d%time.Second, 1))
}

// senderKey is a message's group in a summary by sender, as manage's:
// the lower-cased sender, MAILER-DAEMON for the null sender.
func senderKey(sender string) string {
	if sender == "" {
		return "MAILER-DAEMON"
	}
	return strings.ToLower(sender)
}

// summaryAcc is a row being counted by summarizeWalk.
type summaryAcc struct {
	SummaryRow
	oldest uint32
	ex     *msg // the example so far
	last   *msg // the last message counted, so each counts once
}

// summarizeWalk is Summarize by a walk of every message: the plain
// statement of what Summarize answers from its groups, kept for the
// tests that check the two agree.
func (m *Model) summarizeWalk(by string, now time.Time, keys SummaryKeys) (rows []SummaryRow, messages, recipients int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	table := map[string]*summaryAcc{}
	var order []*summaryAcc
	acc := func(key string) *summaryAcc {
		a := table[key]
		if a == nil {
			a = &summaryAcc{SummaryRow: SummaryRow{Key: key}}
			table[key] = a
			order = append(order, a)
		}
		return a
	}
	nowSec := now.Unix()
	count := func(a *summaryAcc, x *msg, rcpts int, example bool) {
		a.Recipients += rcpts
		if a.last == x {
			return
		}
		a.last = x
		a.Messages++
		if x.arrival != 0 && (a.oldest == 0 || x.arrival < a.oldest) {
			a.oldest = x.arrival
		}
		if example && (a.ex == nil || exampleBefore(x, a.ex)) {
			a.ex = x
		}
	}
	m.msgs.each(func(x *msg) {
		messages++
		pending := 0
		for i := range x.rs() {
			if !x.rs()[i].done {
				pending++
			}
		}
		recipients += pending
		switch by {
		case "sender":
			count(acc(senderKey(m.syms.str(x.sender))), x, pending, true)
		case "age":
			count(acc(keys.age(time.Duration(nowSec-int64(x.arrival))*time.Second)), x, pending, true)
		case "queue":
			count(acc(Queues[x.queue]), x, pending, true)
		default: // reason, domain
			for i := range x.rs() {
				r := &x.rs()[i]
				if r.done {
					continue
				}
				if by == "domain" {
					count(acc(summaryDomain(r.addr)), x, 1, true)
					continue
				}
				key := keys.NoReason
				if r.class != 0 {
					key = classNames[r.class]
				}
				count(acc(key), x, 1, r.class != 0)
			}
		}
	})
	rows = make([]SummaryRow, 0, len(order))
	for _, a := range order {
		if a.oldest != 0 {
			a.Oldest = time.Unix(int64(a.oldest), 0).UTC()
		}
		if a.ex != nil {
			m.describe(&a.SummaryRow, a.ex, by)
		}
		rows = append(rows, a.SummaryRow)
	}
	return rows, messages, recipients
}

// describe fills in row's example from x (under the read lock).
func (m *Model) describe(row *SummaryRow, x *msg, by string) {
	row.ExampleID, row.Sender = x.id, m.syms.str(x.sender)
	n := 0
	for i := range x.rs() {
		r := &x.rs()[i]
		if r.done {
			continue
		}
		switch by {
		case "domain":
			if summaryDomain(r.addr) == row.Key {
				row.Rcpt = r.addr
				return
			}
			continue
		case "reason":
			if classNames[r.class] == row.Key {
				row.Rcpt, row.Reason = r.addr, m.syms.str(r.reason)
				return
			}
			continue
		}
		if n == 0 {
			row.Rcpt = r.addr
		}
		n++
	}
	row.More = max(n-1, 0)
}

// summaryDomain is a recipient's group in a summary by domain, as
// manage's: the lower-cased domain, "(local)" when there is none.
func summaryDomain(addr string) string {
	if j := strings.LastIndexByte(addr, '@'); j >= 0 && j+1 < len(addr) {
		return strings.ToLower(addr[j+1:])
	}
	return "(local)"
}
