package dashboard

import (
	"context"
	"errors"
	"time"

	"sluice/internal/smtp"
)

// Source is everything the dashboard reads and changes. The daemon
// implements it over its queue model and queue manager; the tests use a
// fake. Methods that the overview calls on every render and every live
// update (Summary, HeatMap) must cost O(queues + classes) and
// O(domains × buckets), never O(messages): the overview is drawn at a
// million queued messages.
type Source interface {
	// Summary is the per-queue counts and the deferral classes.
	Summary(now time.Time) Summary
	// HeatMap is qshape's table for one queue: rows by recipient domain,
	// or by sender domain when senders is set.
	HeatMap(queue string, senders bool, now time.Time) HeatMap
	// Messages lists the messages that sel selects, in ID order, at most
	// limit of them after the cursor after (an ID; "" starts at the
	// beginning). A selector that does not parse is a *SelectorError.
	Messages(ctx context.Context, sel string, limit int, after string) (MessagePage, error)
	// Message is one message in full; ErrNotFound when it is not queued.
	Message(ctx context.Context, id string) (*MessageDetail, error)
	// Destinations is the recipient domains with deferred mail, most
	// deferred first.
	Destinations(ctx context.Context, now time.Time) ([]Destination, error)
	// Act runs an action on the messages sel selects, or only counts
	// them when req.DryRun is set.
	Act(ctx context.Context, req ActRequest) (ActResult, error)
	// Probe probes a destination as a delivery would (smtp.Client.Probe).
	Probe(ctx context.Context, target string) (*smtp.ProbeReport, error)
	// Suspend pauses delivery to target (a domain or a selector) for d;
	// Resume ends it. Both return ErrUnavailable when the daemon has no
	// suspensions; Capabilities says so beforehand, so that the pages
	// offer only what works.
	Suspend(ctx context.Context, target string, d time.Duration, reason, who string) error
	Resume(ctx context.Context, target, who string) error
	// Capabilities says which optional parts the daemon has.
	Capabilities() Capabilities
}

// Capabilities are the optional parts of a Source.
type Capabilities struct {
	Probe   bool
	Suspend bool
}

// ErrNotFound is a message that is not (or no longer) in the queue.
var ErrNotFound = errors.New("no such message in the queue")

// ErrUnavailable is a feature the daemon does not have.
var ErrUnavailable = errors.New("not available in this daemon")

// SelectorError is a selector that does not parse; its text is the one
// "sluice queue" prints, shown beside the selector box.
type SelectorError struct{ Err error }

func (e *SelectorError) Error() string { return e.Err.Error() }
func (e *SelectorError) Unwrap() error { return e.Err }

// Summary is the queue at a glance.
type Summary struct {
	Loading bool         // the model is still being built
	Queues  []QueueCount // in the order Postfix lists its queues
	Classes []ClassCount // most recipients first
}

// QueueCount is one queue's size.
type QueueCount struct {
	Queue      string
	Messages   int64
	Recipients int64
	Bytes      int64
	Oldest     time.Time // zero when the queue is empty
}

// ClassCount is one reason class of the pending recipients.
type ClassCount struct {
	Class       string // "" for recipients not tried yet
	Description string
	Messages    int64
	Recipients  int64
	Example     string // one reason of this class, "" when none is known
}

// HeatMap is a qshape table: Bounds are the upper age bounds in minutes
// of every column but the last, which is open.
type HeatMap struct {
	Queue   string
	Senders bool
	Bounds  []float64
	Total   []int64 // the TOTAL row
	Rows    []HeatRow
}

// HeatRow is one domain's counts by age column.
type HeatRow struct {
	Domain string
	Total  int64
	Counts []int64
}

// MessagePage is one page of a listing.
type MessagePage struct {
	Messages []MessageRow
	// Next is the cursor of the following page, "" on the last.
	Next string
}

// MessageRow is one message in a listing.
type MessageRow struct {
	ID         string
	Queue      string
	Arrival    time.Time
	Size       int64
	Sender     string
	Recipients []string // pending
	Reason     string   // the last deferral reason, if any
}

// MessageDetail is one message as the message page shows it.
type MessageDetail struct {
	ID      string
	Queue   string
	Size    int64
	Arrival time.Time
	Sender  string
	Next    time.Time // the next attempt; zero when none is planned
	Expiry  time.Time // when it is returned to its sender; zero when unknown
	Headers []Header
	// Body is the start of the body as text; the page shows it in a
	// <pre>, escaped, never as HTML.
	Body          string
	BodyTruncated bool
	Recipients    []RecipientDetail
	// Error is why the file could not be read in full ("" when it could).
	Error string
}

// Header is one message header field, unfolded.
type Header struct{ Name, Value string }

// RecipientDetail is one recipient and its delivery history.
type RecipientDetail struct {
	Address     string
	Original    string // the address before rewriting, when it differs
	State       string // "pending", "delivered", ...
	DSN         string
	Class       string
	Reason      string
	LastAttempt time.Time
	AttemptN    int
	Attempts    []Attempt // what is known of each attempt, oldest first
}

// Attempt is one delivery attempt.
type Attempt struct {
	Time   time.Time
	Relay  string // the host tried, "" when none was reached
	Status string // sent, deferred, bounced
	DSN    string
	Reply  string
}

// Destination is one recipient domain with mail waiting for it.
type Destination struct {
	Domain     string
	Messages   int64 // deferred messages with a pending recipient there
	Recipients int64
	Oldest     time.Time
	Classes    []ClassCount // Description and Example unused
	Reasons    []string     // the last distinct reasons, newest first
	Suspension *Suspension  // nil when not suspended
}

// Suspension is a pause of delivery to a destination.
type Suspension struct {
	Until  time.Time
	Reason string
	By     string
}

// The actions, with the names of "sluice queue".
var actions = []string{"hold", "release", "requeue", "retry", "expire", "delete"}

// ActRequest is one action on a selection.
type ActRequest struct {
	Action   string
	Selector string
	DryRun   bool
	Who      string // the token's name: "dashboard"
}

// ActResult is what an action did, or would do.
type ActResult struct {
	Action   string
	Selector string
	DryRun   bool
	Matched  int
	Changed  int // for a dry run: would change
	Skipped  int
	Reasons  []string     // why messages were skipped, one line each
	Sample   []MessageRow // a few of the matched messages
}

// AuditRecord is one change made through the dashboard. The audit log
// is designed apart; the daemon passes Options.Audit to write it.
type AuditRecord struct {
	Time      time.Time
	Who       string // the token's name
	Interface string // "dashboard"
	Remote    string // the client's address
	Action    string // hold, ..., suspend, resume
	Selector  string
	Matched   int
	Changed   int
	Skipped   int
	Err       string
}
