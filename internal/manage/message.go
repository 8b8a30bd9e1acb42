// Package manage is the only door through which anything outside the
// queue manager looks at or changes the queue: the selector, Select,
// summaries and actions (delete, hold, release, requeue, retry, expire).
// The CLI, the control socket, the HTTP API and the dashboard all use it,
// so one selector means the same thing everywhere.
package manage

import "time"

// Message is what manage knows about one queued message: enough to
// select it, summarize it and render it.
type Message struct {
	Queue        string
	ID           string
	Arrival      time.Time
	NextAttempt  time.Time // a deferred file's mtime
	Size         int64
	ForcedExpire bool
	Sender       string
	Recipients   []Recipient
	Attempts     int
}

// Recipient is one recipient with the outcome of its latest attempt.
type Recipient struct {
	Address string
	Done    bool
	Reason  string // latest deferral reason, "" if none
	Status  string // DSN status of that attempt, e.g. 4.4.1
	// Class, when set, is the reason class decided where the reply was
	// known (event.Classify); class= then uses it instead of
	// classifying Reason's text.
	Class string `json:"class,omitempty"`
}
