// Package manage is the only door through which anything outside the
// queue manager looks at or changes the queue: the selector, Select,
// summaries and actions (delete, hold, release, requeue, retry, expire).
// The CLI, the control socket, the HTTP API and the dashboard all use it,
// so one selector means the same thing everywhere.
package manage

import "time"

// Message is what manage knows about one queued message: enough to
// select it, summarize it and render it.
//
// Its JSON form (snake_case) is the wire form of the control socket and the
// HTTP API.
type Message struct {
	Queue        string      `json:"queue"`
	ID           string      `json:"id"`
	Arrival      time.Time   `json:"arrival"`
	NextAttempt  time.Time   `json:"next_attempt,omitzero"` // a deferred file's mtime
	Size         int64       `json:"size"`
	ForcedExpire bool        `json:"force_expired,omitempty"`
	Sender       string      `json:"sender"`
	Recipients   []Recipient `json:"recipients"`
	Attempts     int         `json:"attempts"`
}

// Recipient is one recipient with the outcome of its latest attempt.
type Recipient struct {
	Address string `json:"address"`
	Done    bool   `json:"done"`
	Reason  string `json:"reason,omitempty"` // latest deferral reason, "" if none
	Status  string `json:"dsn,omitempty"`    // DSN status of that attempt, e.g. 4.4.1
	// Class is the reason class (event.Classify) of that attempt, from
	// the structured failure; see ReasonClass.
	Class string `json:"class,omitempty"`
}
