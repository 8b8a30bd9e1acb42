// Package event defines what happens to mail in sluice as typed values,
// and the one interface through which they are observed.
//
// The parts that change the queue publish events after the change is on
// disk: cleanup for a new queue file (Received), the queue manager when
// it takes a message (Activated), when a delivery attempt
// for a recipient ends (Sent, Deferred, Bounced), when a message is
// returned or removed (Expired, Deleted) and when it moves between queues
// (Moved, Corrupt); bounce when it has sent a notice (Notified); the
// operator's actions (Deleted, Held, Released, Requeued). Subscribers —
// the mail log, the queue model, later the metrics and the API's stream
// — each implement Observer and are joined by a Bus.
//
// An event is a snapshot: a publisher does not change it after Observe,
// and a subscriber must not change it either (several see the same
// value). Observe is called on the publisher's goroutine, in the order
// of the changes for any one message; a subscriber must be quick and
// must not call back into the publisher.
//
// One exception to "after": cleanup publishes Received just before it
// makes the new file ready (the queue manager skips files that are not),
// so no subscriber sees a message taken before it was received; if the
// commit then fails, a Withdrawn follows.
//
// Delivery outcomes carry their reason class, decided once where the
// reply is known (see Classify), so no subscriber parses log text.
package event

import (
	"sync"
	"time"
)

// Event is one of the types below.
type Event interface {
	// QueueID is the message the event is about.
	QueueID() string
}

// Observer receives events.
type Observer interface {
	Observe(Event)
}

// Func adapts a function to Observer.
type Func func(Event)

// Observe calls f(e).
func (f Func) Observe(e Event) { f(e) }

// Bus passes every event to each of its subscribers in the order they
// subscribed. The zero Bus has no subscribers; a nil *Bus discards.
type Bus struct {
	mu   sync.RWMutex
	subs []Observer
}

// Subscribe adds o; it sees the events published from now on.
func (b *Bus) Subscribe(o Observer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, o)
}

// Observe publishes e to every subscriber.
func (b *Bus) Observe(e Event) {
	if b == nil {
		return
	}
	b.mu.RLock()
	subs := b.subs
	b.mu.RUnlock()
	for _, s := range subs {
		s.Observe(e)
	}
}

// Publish sends e to o when o is not nil: publishers keep an optional
// Observer and call this.
func Publish(o Observer, e Event) {
	if o != nil {
		o.Observe(e)
	}
}

// Recipient is a recipient as a queue file holds it.
type Recipient struct {
	Address string
	Orig    string // the original recipient (O record), "" when none
	Offset  int64  // the R/D record's offset; 0 when not yet known
	Done    bool
}

// Received: cleanup wrote a new queue file and is about to commit it
// (make it ready and sync it); a Withdrawn follows if that fails.
type Received struct {
	ID         string
	Queue      string // incoming or hold
	Time       time.Time
	Arrival    time.Time
	Size       int64 // the message length (C record)
	Sender     string
	Recipients []Recipient // in file order; offsets are not known yet
	Service    string      // who handed it over: smtpd, pickup, bounce, ...
}

// Withdrawn: a file announced by Received was not committed after all
// (a write or sync failed); it is gone.
type Withdrawn struct {
	ID, Queue string
}

// Activated: the queue manager moved a message into active/ and read it.
// It carries the recipients with their offsets and done marks, the file's
// truth at the start of the round.
type Activated struct {
	ID         string
	From       string // the queue it came from
	Time       time.Time
	Arrival    time.Time
	Size       int64 // what the log's size= says
	Nrcpt      int64 // the C record's recipient count, for the log
	Sender     string
	Recipients []Recipient
	Forced     bool // g+x: force-expired, not delivered again
	LogCleared bool // its old defer log was removed
}

// Moved: a message moved from one queue to another without being read:
// into deferred/ at the end of a round (Next is the next attempt; Forced
// tells whether the file has its force-expiry bit), back to incoming/ on
// a flush or at start (the file's mode is unchanged; Forced means
// nothing then).
type Moved struct {
	ID       string
	From, To string
	Time     time.Time
	Next     time.Time // the file's new mtime; zero when unchanged
	Forced   bool
}

// Attempt is what the three delivery outcomes share: one delivery
// attempt for one recipient of a message in active/.
type Attempt struct {
	ID      string
	Time    time.Time
	Service string // the mail log's service name: smtp, local, error, ...
	To      string
	OrigTo  string
	Offset  int64 // the recipient's R record
	Relay   string
	ConnUse int
	Delay   time.Duration
	Delays  [4]time.Duration
	DSN     string
	Reason  string
	Class   string // the reason class (see Classify); "" for sent
	// Finals are the final deliveries a local alias or .forward made of
	// the recipient; the mail log prints them instead of the recipient.
	Finals []Final
}

// Final is one final delivery of an expanded recipient.
type Final struct {
	To     string
	Status string // sent, deferred, bounced
	DSN    string
	Reason string
}

// QueueID implements Event.
func (a *Attempt) QueueID() string { return a.ID }

// Sent: the recipient was accepted (and marked done).
type Sent struct{ Attempt }

// Deferred: the recipient's attempt failed for now; its defer log entry
// is written.
type Deferred struct{ Attempt }

// Bounced: the recipient failed for good; its bounce log entry is
// written and it is marked done.
type Bounced struct{ Attempt }

// Expired: a message past its lifetime (or force-expired) is returned to
// its sender; a Deleted follows when its file is removed.
type Expired struct {
	ID     string
	Time   time.Time
	Sender string
	Forced bool
}

// Deleted: a message's queue file and logs were removed: by the queue
// manager when nothing was left to do (Service "qmgr"), or by an
// operator (Service "postsuper", "sluice").
type Deleted struct {
	ID      string
	Queue   string
	Time    time.Time
	Service string
}

// Held: an operator moved a message to hold/.
type Held struct {
	ID, From string
	Time     time.Time
	Service  string
}

// Released: an operator moved a message from hold/ back to the queue To.
type Released struct {
	ID, To  string
	Time    time.Time
	Service string
}

// Requeued: an operator re-queued a message; it leaves From and comes back
// as NewID (the same as ID when it keeps its queue file).
type Requeued struct {
	ID, From, NewID string
	Time            time.Time
	Service         string
}

// Corrupt: an unreadable queue file was moved to corrupt/.
type Corrupt struct {
	ID, From string
	Time     time.Time
	Why      string
}

// Notified: bounce sent a notice (Kind "non-delivery", "delay", ...)
// about ID to its sender, queued as NoticeID.
type Notified struct {
	ID, Kind, NoticeID string
	Time               time.Time
}

// QueueID implements Event.
func (e *Received) QueueID() string  { return e.ID }
func (e *Activated) QueueID() string { return e.ID }
func (e *Withdrawn) QueueID() string { return e.ID }
func (e *Moved) QueueID() string     { return e.ID }
func (e *Expired) QueueID() string   { return e.ID }
func (e *Deleted) QueueID() string   { return e.ID }
func (e *Held) QueueID() string      { return e.ID }
func (e *Released) QueueID() string  { return e.ID }
func (e *Requeued) QueueID() string  { return e.ID }
func (e *Corrupt) QueueID() string   { return e.ID }
func (e *Notified) QueueID() string  { return e.ID }
