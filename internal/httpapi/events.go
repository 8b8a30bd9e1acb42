package httpapi

// The live event stream (GET /api/v1/events, and /v1/events on the
// control socket): the model's typed events (package event) as
// Server-Sent Events, filtered by a selector, resumable.
//
// Every event the daemon publishes enters a Ring, a bounded buffer of the
// last events (RingSize by default) in publishing order, each numbered.
// The publisher only appends: it never waits for a reader, however slow.
// Each stream reads the ring from its own position; a reader that falls
// more than the ring's size behind has lost events, and is told so by a
// "lost" event with their count before it continues with the oldest event
// the ring still holds. A client that cannot take what is written within
// writeWait is disconnected.
//
// Event IDs are "BOOT-SEQ": BOOT names this run of the daemon, SEQ counts
// its events from 1. A client that reconnects with Last-Event-ID (as
// EventSource does on its own) gets every event after it that the ring
// still holds; with an ID of an earlier run it gets a "restart" event,
// then every event of this run the ring holds. Without one it gets the
// events from now on.
//
// The selector is the one of package manage, applied to what an event
// says about its message: id, queue (the queue the message is in after
// the event), sender, sender_domain, sender_ci, and for the recipients it
// names (all of a received or activated message's pending ones; the one
// recipient of a sent, deferred or bounced event; none for the others):
// rcpt, rcpt_ci, domain, reason, class (the class decided when the reply
// came). age, size, attempts and rcpts describe a queued message, not an
// event, and are refused.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"sluice/internal/event"
	"sluice/internal/manage"
)

// RingSize is how many events a Ring keeps by default: at the relay
// bench's few thousand deliveries a second, a few seconds; at a busy
// server's usual rate, many minutes of reconnects.
const RingSize = 10000

// StreamEvent is one event as the stream sends it (JSON, snake_case).
// Which fields are set depends on Type.
type StreamEvent struct {
	// Type is received, withdrawn, activated, sent, deferred, bounced,
	// expired, deleted, moved, held, released, requeued, corrupt or
	// notified.
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	QueueID string    `json:"queue_id"`
	// Queue is the queue the message is in after the event (for
	// deleted, withdrawn and requeued: the one it left).
	Queue     string `json:"queue,omitempty"`
	FromQueue string `json:"from_queue,omitempty"`
	// Sender is the envelope sender ("" for the null sender); absent
	// when the daemon does not know it.
	Sender *string `json:"sender,omitempty"`
	// Recipients are a received or activated message's pending
	// recipients; Recipient is the one a delivery attempt was for.
	Recipients    []string `json:"recipients,omitempty"`
	Recipient     string   `json:"recipient,omitempty"`
	OrigRecipient string   `json:"orig_recipient,omitempty"`
	Service       string   `json:"service,omitempty"`
	Relay         string   `json:"relay,omitempty"`
	DSN           string   `json:"dsn,omitempty"`
	// Reason is the reply or error of an attempt, or why a file was
	// corrupt; Class the reason class of a deferral or bounce.
	Reason string `json:"reason,omitempty"`
	Class  string `json:"class,omitempty"`
	// Delay is the time since arrival in seconds (the log's delay=),
	// Delays its four parts (delays=a/b/c/d).
	Delay   *float64    `json:"delay,omitempty"`
	Delays  *[4]float64 `json:"delays,omitempty"`
	Size    int64       `json:"size,omitempty"`
	Arrival time.Time   `json:"arrival,omitzero"`
	// NextAttempt is when a message moved to deferred/ is tried again.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Forced      bool      `json:"force_expired,omitempty"`
	NewQueueID  string    `json:"new_queue_id,omitempty"` // requeued
	Notice      string    `json:"notice,omitempty"`       // notified: non-delivery, delay, ...
	NoticeID    string    `json:"notice_id,omitempty"`
	Finals      []Final   `json:"finals,omitempty"`
}

// Final is one final delivery of a recipient that local aliases or a
// .forward expanded.
type Final struct {
	To     string `json:"to"`
	Status string `json:"status"`
	DSN    string `json:"dsn,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Lookup tells the queue and sender of a queued message (the model's
// Envelope), for events that do not carry them; ok is false when unknown.
type Lookup func(id string) (queue, sender string, ok bool)

// entry is one event in the ring: the event, its JSON (made once, by the
// first stream that sends it, so that a daemon nobody watches does not
// pay for it on the publisher's goroutine), and the message view the
// selector matches.
type entry struct {
	seq     uint64
	ev      StreamEvent
	once    sync.Once
	data    []byte
	msg     manage.Message
	hasFrom bool // the sender is known
}

// json returns the event's JSON.
func (e *entry) json() []byte {
	e.once.Do(func() {
		// A StreamEvent has only plain fields: Marshal cannot fail.
		e.data, _ = json.Marshal(&e.ev)
	})
	return e.data
}

// Ring is the bounded buffer of recent events that streams read. It is
// an event.Observer: subscribe it to the daemon's bus.
type Ring struct {
	now    func() time.Time
	lookup Lookup
	boot   string

	mu     sync.Mutex
	buf    []*entry // buf[seq % len(buf)]
	last   uint64   // the newest event's seq; 0 before the first
	wake   chan struct{}
	closed bool
	// Counters for metrics: events dropped for slow readers, and
	// streams open now.
	lost    uint64
	streams int
}

// NewRing returns a ring of size events (RingSize when 0). now stamps
// events that carry no time; lookup (may be nil)
// supplies the sender of events that lack it. Subscribe the ring to the
// bus before the model, so that lookup still knows a message that the
// event removes.
func NewRing(size int, now func() time.Time, lookup Lookup) *Ring {
	if size <= 0 {
		size = RingSize
	}
	if now == nil {
		now = time.Now
	}
	return &Ring{
		now: now, lookup: lookup, buf: make([]*entry, size), wake: make(chan struct{}),
		boot: newBoot(),
	}
}

// newBoot names a run of the daemon: random, so that two runs never
// share one even when their clocks agree (a test's fake clock, a clock
// set back).
func newBoot() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Observe adds e to the ring; it never blocks on a reader.
func (r *Ring) Observe(e event.Event) {
	en := r.entry(e)
	if en == nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.last++
	en.seq = r.last
	r.buf[en.seq%uint64(len(r.buf))] = en
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// Close ends every stream (the daemon is stopping); events after it are
// discarded.
func (r *Ring) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.wake)
	}
}

// Stats returns how many events streams lost by falling behind, and how
// many streams are open.
func (r *Ring) Stats() (lost uint64, streams int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost, r.streams
}

// ID is the event ID of seq in this run.
func (r *Ring) ID(seq uint64) string { return r.boot + "-" + strconv.FormatUint(seq, 10) }

// position returns the seq after which a stream resuming from the
// Last-Event-ID id starts, and whether id came from an earlier run.
// Without an ID a stream starts at the newest event.
func (r *Ring) position(id string) (after uint64, restarted bool, err error) {
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	if id == "" {
		return last, false, nil
	}
	boot, seqs, ok := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(seqs, 10, 64)
	if !ok || err != nil {
		return 0, false, fmt.Errorf("bad Last-Event-ID %q: want an id the stream sent (RUN-NUMBER)", id)
	}
	if boot != r.boot {
		return 0, true, nil
	}
	return min(seq, last), false, nil
}

// read returns up to max entries after seq, and how many were lost
// between seq and the oldest entry the ring still holds; wake is closed
// when there is something new (or the ring closed).
func (r *Ring) read(after uint64, max int, out []*entry) (_ []*entry, lost uint64, wake <-chan struct{}, closed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := uint64(len(r.buf))
	if r.last > n && after < r.last-n {
		lost = r.last - n - after
		after = r.last - n
		r.lost += lost
	}
	for s := after + 1; s <= r.last && len(out) < max; s++ {
		out = append(out, r.buf[s%n])
	}
	return out, lost, r.wake, r.closed
}

func (r *Ring) stream(d int) {
	r.mu.Lock()
	r.streams += d
	r.mu.Unlock()
}

// entry converts e; nil for an event type the stream does not know.
func (r *Ring) entry(e event.Event) *entry {
	se := StreamEvent{QueueID: e.QueueID()}
	var rcpts []manage.Recipient
	sender, hasSender := "", false
	attempt := func(typ string, a *event.Attempt) {
		se.Type, se.Time, se.Queue, se.Service = typ, a.Time, "active", a.Service
		se.Recipient, se.OrigRecipient, se.Relay, se.DSN, se.Reason, se.Class = a.To, a.OrigTo, a.Relay, a.DSN, a.Reason, a.Class
		d := a.Delay.Seconds()
		se.Delay = &d
		var ds [4]float64
		for i, x := range a.Delays {
			ds[i] = x.Seconds()
		}
		se.Delays = &ds
		for _, f := range a.Finals {
			se.Finals = append(se.Finals, Final{To: f.To, Status: f.Status, DSN: f.DSN, Reason: f.Reason})
		}
		rcpts = []manage.Recipient{{Address: a.To, Reason: a.Reason, Status: a.DSN, Class: a.Class}}
	}
	pending := func(rs []event.Recipient) {
		for _, rc := range rs {
			if !rc.Done {
				se.Recipients = append(se.Recipients, rc.Address)
				rcpts = append(rcpts, manage.Recipient{Address: rc.Address})
			}
		}
	}
	switch e := e.(type) {
	case *event.Received:
		se.Type, se.Time, se.Queue, se.Size, se.Arrival, se.Service = "received", e.Time, e.Queue, e.Size, e.Arrival, e.Service
		sender, hasSender = e.Sender, true
		pending(e.Recipients)
	case *event.Withdrawn:
		se.Type, se.Queue = "withdrawn", e.Queue
	case *event.Activated:
		se.Type, se.Time, se.Queue, se.FromQueue, se.Size, se.Arrival, se.Forced = "activated", e.Time, "active", e.From, e.Size, e.Arrival, e.Forced
		sender, hasSender = e.Sender, true
		pending(e.Recipients)
	case *event.Sent:
		attempt("sent", &e.Attempt)
	case *event.Deferred:
		attempt("deferred", &e.Attempt)
	case *event.Bounced:
		attempt("bounced", &e.Attempt)
	case *event.Expired:
		se.Type, se.Time, se.Forced = "expired", e.Time, e.Forced
		sender, hasSender = e.Sender, true
	case *event.Deleted:
		se.Type, se.Time, se.Queue, se.Service = "deleted", e.Time, e.Queue, e.Service
	case *event.Moved:
		se.Type, se.Time, se.Queue, se.FromQueue, se.NextAttempt, se.Forced = "moved", e.Time, e.To, e.From, e.Next, e.Forced
	case *event.Held:
		se.Type, se.Time, se.Queue, se.FromQueue, se.Service = "held", e.Time, "hold", e.From, e.Service
	case *event.Released:
		se.Type, se.Time, se.Queue, se.FromQueue, se.Service = "released", e.Time, e.To, "hold", e.Service
	case *event.Requeued:
		se.Type, se.Time, se.Queue, se.NewQueueID, se.Service = "requeued", e.Time, e.From, e.NewID, e.Service
	case *event.Corrupt:
		se.Type, se.Time, se.Queue, se.FromQueue, se.Reason = "corrupt", e.Time, "corrupt", e.From, e.Why
	case *event.Notified:
		se.Type, se.Time, se.Notice, se.NoticeID = "notified", e.Time, e.Kind, e.NoticeID
	default:
		return nil
	}
	if se.Time.IsZero() {
		se.Time = r.now()
	}
	if !hasSender || se.Queue == "" {
		// Subscribed before the model, the lookup still knows the
		// message an event removes or moves: its queue before the
		// event, which the event itself names when it changes it.
		if r.lookup != nil {
			if q, s, ok := r.lookup(se.QueueID); ok {
				if !hasSender {
					sender, hasSender = s, true
				}
				if se.Queue == "" {
					se.Queue = q
				}
			}
		}
	}
	if hasSender {
		se.Sender = &sender
	}
	return &entry{
		ev: se, hasFrom: hasSender,
		msg: manage.Message{ID: se.QueueID, Queue: se.Queue, Sender: sender, Recipients: rcpts, Arrival: se.Arrival, Size: se.Size},
	}
}

// eventKeys are the selector keys that apply to events (see above).
var eventKeys = map[string]bool{
	"id": true, "queue": true, "sender": true, "sender_ci": true, "sender_domain": true,
	"rcpt": true, "rcpt_ci": true, "domain": true, "reason": true, "class": true,
}

// eventFilter is a selector checked for events.
type eventFilter struct {
	sel        *manage.Selector
	needSender bool
}

// newEventFilter parses the selector terms for events: keys that
// describe a queued message rather than an event are an error.
func newEventFilter(terms ...string) (*eventFilter, error) {
	sel, err := manage.ParseSelector(terms...)
	if err != nil {
		return nil, err
	}
	f := &eventFilter{sel: sel}
	for _, t := range sel.Terms {
		if !eventKeys[t.Key] {
			return nil, fmt.Errorf("selector: bad term %q: %s describes a queued message, not an event (event keys: id queue sender sender_domain sender_ci rcpt rcpt_ci domain reason class)", t.Text, t.Key)
		}
		if strings.HasPrefix(t.Key, "sender") {
			f.needSender = true
		}
	}
	return f, nil
}

func (f *eventFilter) match(e *entry) bool {
	if f.sel.Empty() {
		return true
	}
	if f.needSender && !e.hasFrom {
		return false // an unknown sender is not the null sender
	}
	// The time only matters to age, which events refuse.
	return f.sel.Match(&e.msg, time.Time{})
}
