package model

import (
	"math"
	"sort"
	"strings"
	"time"

	"sluice/internal/spool"
)

// Summary is the model's aggregates: what "sluice queue summary" shows.
type Summary struct {
	Loading bool           `json:"loading"`
	Queues  []QueueSummary `json:"queues"`
	Classes []ClassSummary `json:"classes"`
	Drift   int64          `json:"drift"`
	Events  int64          `json:"events"`
}

// QueueSummary is one queue's counts.
type QueueSummary struct {
	Queue      string    `json:"queue"`
	Messages   int64     `json:"messages"`
	Recipients int64     `json:"recipients"` // pending
	Bytes      int64     `json:"bytes"`
	Oldest     time.Time `json:"oldest,omitzero"`
}

// ClassSummary counts the pending recipients whose last reason is of a
// class, and their messages, over all queues.
type ClassSummary struct {
	Class      string `json:"class"` // "" for recipients without a reason yet
	Messages   int64  `json:"messages"`
	Recipients int64  `json:"recipients"`
}

// Summary returns the aggregates; it costs O(queues + classes).
func (m *Model) Summary() Summary {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := Summary{Loading: m.Loading(), Drift: m.Drift(), Events: m.Events()}
	for i, q := range Queues {
		a := &m.agg.queue[i]
		qs := QueueSummary{Queue: q, Messages: a.msgs, Recipients: a.rcpts, Bytes: a.bytes}
		if t, ok := a.arrivals.min(); ok {
			qs.Oldest = time.Unix(t, 0).UTC()
		}
		s.Queues = append(s.Queues, qs)
	}
	for c, name := range classNames {
		var cs ClassSummary
		for q := range Queues {
			cs.Messages += m.agg.classMsgs[c][q]
			cs.Recipients += m.agg.classRcpts[c][q]
		}
		if cs.Recipients > 0 {
			cs.Class = name
			s.Classes = append(s.Classes, cs)
		}
	}
	sort.SliceStable(s.Classes, func(i, j int) bool { return s.Classes[i].Recipients > s.Classes[j].Recipients })
	return s
}

// QShapeOptions are qshape's options that the model answers.
type QShapeOptions struct {
	Queues  []string `json:"queues"`  // default incoming and active, as qshape
	Senders bool     `json:"senders"` // -s: by sender domain, counting messages
	Tick    float64  `json:"tick"`    // -t minutes (5)
	Buckets int      `json:"buckets"` // -b (10)
	Linear  bool     `json:"linear"`  // -l
}

// QShape is a qshape table: each row's counts by age bucket, the total
// first. Rows are sorted by total, then name, after the TOTAL row.
type QShape struct {
	Loading bool `json:"loading"`
	// Bounds are the upper bounds in minutes of every column but the
	// last, which is open ("640+" in qshape's heading).
	Bounds []float64   `json:"bounds"`
	Rows   []QShapeRow `json:"rows"`
}

// QShapeRow is one domain.
type QShapeRow struct {
	Domain string  `json:"domain"`
	Total  int64   `json:"total"`
	Counts []int64 `json:"counts"`
}

// bucket is qshape's age column of an arrival at now: 0 for less than one
// tick, then 1+int(log2 m) (or int(m) with -l), capped at the last.
func (o *QShapeOptions) bucket(arrival, now int64) int {
	m := (float64(now) - float64(arrival)) / (60 * o.Tick)
	if m < 1 {
		return 0
	}
	var b float64
	if o.Linear {
		b = math.Trunc(m)
	} else {
		b = 1 + math.Trunc(math.Log(m)/math.Log(2))
	}
	if !(b < float64(o.Buckets-1)) {
		b = float64(o.Buckets - 1)
	}
	return int(b)
}

// thresholds are, for each bucket b but the last, the oldest arrival
// (in seconds) that still falls in bucket b or a younger one; found by
// binary search with the bucket function itself, so the counts agree
// with qshape's at every boundary.
func (o *QShapeOptions) thresholds(now int64) []int64 {
	thr := make([]int64, o.Buckets-1)
	for b := range thr {
		// bucket(t) is non-increasing in t: search the first t
		// (from 200 years back to now+1) with bucket(t) <= b.
		lo, hi := now-200*365*86400, now+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			if o.bucket(mid, now) <= b {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		thr[b] = lo
	}
	return thr
}

// QShape answers qshape from the aggregates: one walk over each row's
// distinct arrival seconds, whatever the message count.
func (m *Model) QShape(o QShapeOptions, now time.Time) QShape {
	if len(o.Queues) == 0 {
		o.Queues = []string{"incoming", "active"}
	}
	if o.Tick <= 0 {
		o.Tick = 5
	}
	if o.Buckets < 2 {
		o.Buckets = 10
	}
	t := QShape{Loading: m.Loading()}
	for i := 0; i < o.Buckets-1; i++ {
		if o.Linear {
			t.Bounds = append(t.Bounds, float64(i+1)*o.Tick)
		} else {
			t.Bounds = append(t.Bounds, math.Ldexp(o.Tick, i))
		}
	}
	n := now.Unix()
	thr := o.thresholds(n)
	m.mu.RLock()
	rows := map[sym][]int64{}
	for _, qn := range o.Queues {
		q, ok := queueIndex(qn)
		if !ok {
			continue
		}
		src := m.agg.queue[q].rcptDomains
		if o.Senders {
			src = m.agg.queue[q].senderDomains
		}
		for d, h := range src {
			r := rows[d]
			if r == nil {
				r = make([]int64, o.Buckets)
				rows[d] = r
			}
			h.countInto(r, thr)
		}
	}
	total := QShapeRow{Domain: "TOTAL", Counts: make([]int64, o.Buckets)}
	for d, c := range rows {
		row := QShapeRow{Domain: m.syms.str(d), Counts: c}
		for i, v := range c {
			row.Total += v
			total.Counts[i] += v
		}
		total.Total += row.Total
		t.Rows = append(t.Rows, row)
	}
	m.mu.RUnlock()
	sort.Slice(t.Rows, func(i, j int) bool {
		if t.Rows[i].Total != t.Rows[j].Total {
			return t.Rows[i].Total > t.Rows[j].Total
		}
		return t.Rows[i].Domain < t.Rows[j].Domain
	})
	t.Rows = append([]QShapeRow{total}, t.Rows...)
	return t
}

// Message is one message as the model knows it.
type Message struct {
	ID         string      `json:"id"`
	Queue      string      `json:"queue"`
	Unreadable bool        `json:"unreadable,omitempty"`
	Forced     bool        `json:"force_expired,omitempty"`
	Size       int64       `json:"size"`
	Arrival    time.Time   `json:"arrival"`
	Sender     string      `json:"sender"`
	Next       time.Time   `json:"next_attempt,omitzero"` // deferred/ only
	Recipients []Recipient `json:"recipients"`
}

// Recipient is one recipient of a Message.
type Recipient struct {
	Address     string    `json:"address"`
	Done        bool      `json:"done"`
	Reason      string    `json:"reason,omitempty"`
	DSN         string    `json:"dsn,omitempty"`
	Class       string    `json:"class,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

func (m *Model) view(x *msg) Message {
	v := Message{ID: x.id, Queue: Queues[x.queue], Unreadable: x.bare}
	if x.bare {
		return v
	}
	v.Forced, v.Size, v.Sender = x.forced, int64(x.size), m.syms.str(x.sender)
	v.Arrival = time.Unix(int64(x.arrival), 0).UTC()
	if x.queue == queueDeferred {
		v.Next = time.Unix(int64(x.next), 0).UTC()
	}
	v.Recipients = make([]Recipient, len(x.rs()))
	var logged map[int64]string // reasons left in the defer log (onDisk)
	for i, r := range x.rs() {
		rv := Recipient{Address: r.addr, Done: r.done}
		if !r.done {
			rv.Reason, rv.DSN, rv.Class = m.syms.str(r.reason), m.syms.str(r.dsn), classNames[r.class]
			if r.reason == onDisk {
				if logged == nil {
					logged = map[int64]string{}
					entries, _ := m.cfg.Spool.ReadLog(spool.Defer, x.id)
					for _, e := range entries {
						logged[e.Offset] = e.Reason
					}
				}
				rv.Reason = logged[int64(r.offset)]
			}
			rv.Attempts = int(r.attempts)
			if r.last != 0 {
				rv.LastAttempt = time.Unix(int64(r.last), 0).UTC()
			}
		}
		v.Recipients[i] = rv
	}
	return v
}

// Message returns the message id, and false when the model has none.
func (m *Model) Message(id string) (Message, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	x := m.msgs.get(id)
	if x == nil {
		return Message{}, false
	}
	return m.view(x), true
}

// Messages returns every message, sorted by ID.
func (m *Model) Messages() []Message {
	m.mu.RLock()
	out := make([]Message, 0, m.msgs.len())
	m.msgs.each(func(x *msg) { out = append(out, m.view(x)) })
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ID, out[j].ID) < 0 })
	return out
}
