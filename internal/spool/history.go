package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// History is sluice's own per-message record of delivery attempts, kept in
// history/ID beside the queue (hashed like defer/). Postfix's tools never
// look there. Unlike the defer log, which the queue manager empties each
// time the message is retried, the history keeps every attempt, so an
// operator can see what happened on each try and when the next one is due.
//
// Each line is one JSON object (one recipient's outcome of one attempt).
// Arrival is the message's arrival time; entries whose arrival does not
// match the queue file's are stale (the ID was reused after Postfix's own
// postsuper deleted the message without knowing about history/) and are
// ignored by readers.
const History = "history"

// Attempt is one recipient's outcome of one delivery attempt.
type Attempt struct {
	Time      time.Time `json:"time"`
	Arrival   int64     `json:"arrival"` // the message's T seconds
	Recipient string    `json:"recipient"`
	Relay     string    `json:"relay,omitempty"` // host[ip]:port tried, or "none"
	Status    string    `json:"status"`          // sent, deferred, bounced, expired
	DSN       string    `json:"dsn,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// AppendHistory appends attempts to the history of id.
func (s *Spool) AppendHistory(id string, attempts ...Attempt) error {
	if len(attempts) == 0 {
		return nil
	}
	path := s.Path(History, id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("spool: open history of %s: %w", id, err)
	}
	defer f.Close()
	var b []byte
	for _, a := range attempts {
		line, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("spool: encode history of %s: %w", id, err)
		}
		b = append(append(b, line...), '\n')
	}
	// One write with O_APPEND keeps concurrent appenders' lines whole.
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("spool: write history of %s: %w", id, err)
	}
	return nil
}

// ParseHistory returns the attempts of a history's contents whose
// arrival matches arrival (0 accepts all), as ReadHistory does, for a
// caller that has read the file itself (the model's scan).
func ParseHistory(data []byte, arrival int64) []Attempt {
	var out []Attempt
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		var a Attempt
		if json.Unmarshal(line, &a) != nil {
			continue
		}
		if arrival != 0 && a.Arrival != 0 && a.Arrival != arrival {
			continue
		}
		out = append(out, a)
	}
	return out
}

// ReadHistory returns the attempts recorded for id whose arrival matches
// arrival (0 accepts all). A missing history is no error. Lines that do
// not parse are skipped: the history is advisory, the queue file is the
// record of truth.
func (s *Spool) ReadHistory(id string, arrival int64) ([]Attempt, error) {
	data, err := os.ReadFile(s.Path(History, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read history of %s: %w", id, err)
	}
	return ParseHistory(data, arrival), nil
}

// CountAttempts returns the number of distinct attempts (attempt times)
// in a history.
func CountAttempts(h []Attempt) int {
	n := 0
	var last time.Time
	for _, a := range h {
		if !a.Time.Equal(last) {
			n++
			last = a.Time
		}
	}
	return n
}
