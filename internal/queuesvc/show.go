package queuesvc

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"time"

	"sluice/internal/manage"
	"sluice/internal/spool"
)

// Detail is everything about one message: what `sluice queue show` and
// GET /api/v1/messages/{id} answer.
type Detail struct {
	Source       Source    `json:"source"`
	ID           string    `json:"id"`
	Queue        string    `json:"queue"`
	Path         string    `json:"path"` // relative to the queue directory
	Sender       string    `json:"sender"`
	Size         int64     `json:"size"`
	Arrival      time.Time `json:"arrival"`
	CreateTime   time.Time `json:"create_time,omitzero"`
	ForceExpired bool      `json:"force_expired"`
	Attempts     int       `json:"attempts"`
	// NextState says when the next attempt is: "scheduled" (at
	// NextAttempt, in deferred/), "waiting" (incoming/: as soon as the
	// queue manager takes it), "delivering" (active/), "hold" (never
	// while on hold), "corrupt" (never: set aside as unreadable).
	NextState   string            `json:"next_attempt_state"`
	NextAttempt time.Time         `json:"next_attempt,omitzero"`
	Expires     time.Time         `json:"expires,omitzero"` // zero: never (hold, corrupt)
	Recipients  []RecipientDetail `json:"recipients"`
	Headers     []Header          `json:"headers"`
	History     []spool.Attempt   `json:"history"`
}

// RecipientDetail is one recipient of a Detail.
type RecipientDetail struct {
	Address     string    `json:"address"`
	Orig        string    `json:"original_recipient,omitempty"`
	State       string    `json:"state"` // done, deferred, pending, corrupt
	Reason      string    `json:"reason,omitempty"`
	DSN         string    `json:"dsn,omitempty"`
	Class       string    `json:"class,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

// Header is one header field of the message, unfolded.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ErrNotFound reports a message in none of the queues.
var ErrNotFound = manage.ErrNotFound

// maxHeaderBytes bounds the headers Show reads.
const maxHeaderBytes = 256 << 10

// Show returns everything about the message id.
func (s *Service) Show(ctx context.Context, id string) (*Detail, error) {
	if !spool.ValidID(id) {
		return nil, BadRequest("invalid mail queue id: %s", id)
	}
	sel, err := manage.ParseSelector("id=" + id)
	if err != nil {
		return nil, &badRequest{err.Error()}
	}
	var m *manage.Message
	src, err := s.Each(ctx, sel, true, func(x *manage.Message) error {
		m = x
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, ErrNotFound
	}
	sp := s.Queue.Spool
	d := &Detail{
		Source: src, ID: m.ID, Queue: m.Queue, Path: sp.RelPath(m.Queue, m.ID),
		Sender: m.Sender, Size: m.Size, Arrival: m.Arrival, ForceExpired: m.ForcedExpire,
		Attempts: m.Attempts, Headers: []Header{}, History: []spool.Attempt{},
	}
	env, _, rerr := spool.ReadFile(sp.Path(m.Queue, m.ID), spool.ReadOptions{SkipContent: true})
	if rerr != nil && errors.Is(rerr, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if h, err := sp.ReadHistory(m.ID, m.Arrival.Unix()); err == nil && h != nil {
		d.History = h
		if m.Attempts == 0 {
			d.Attempts = spool.CountAttempts(h)
		}
	}
	if env == nil || m.Queue == spool.Corrupt {
		// A file set aside as unreadable is never scheduled and never
		// expires: show what could be read of it, and no times.
		d.NextState = "corrupt"
		if env != nil {
			for _, r := range env.Recipients {
				d.Recipients = append(d.Recipients, RecipientDetail{Address: r.Address, Orig: r.Orig, State: "corrupt"})
			}
		}
		if d.Recipients == nil {
			d.Recipients = []RecipientDetail{}
		}
		return d, nil
	}
	d.CreateTime = time.Unix(env.CreateTime, 0).UTC()
	d.NextState, d.NextAttempt = nextAttempt(m)
	d.Expires = s.expiry(m, d.CreateTime)
	last := lastAttempts(d.History)
	for i, r := range env.Recipients {
		rd := RecipientDetail{Address: r.Address, Orig: r.Orig, State: "pending"}
		if i < len(m.Recipients) && m.Recipients[i].Address == r.Address {
			mr := m.Recipients[i]
			rd.Reason, rd.DSN = mr.Reason, mr.Status
			if mr.Reason != "" {
				rd.State, rd.Class = "deferred", mr.ReasonClass()
			}
		}
		if a, ok := last[r.Address]; ok {
			rd.Attempts, rd.LastAttempt = a.n, a.last
		}
		if r.Done {
			rd.State, rd.Reason, rd.DSN, rd.Class = "done", "", "", ""
		}
		d.Recipients = append(d.Recipients, rd)
	}
	d.Headers = readHeaders(sp.Path(m.Queue, m.ID))
	return d, nil
}

// nextAttempt is the rule for when a message is tried next: deferred
// mail at its file's time; incoming mail as soon as the queue manager
// takes it; active mail is being delivered; held and corrupt mail never.
func nextAttempt(m *manage.Message) (string, time.Time) {
	switch m.Queue {
	case spool.Deferred:
		return "scheduled", m.NextAttempt
	case spool.Active:
		return "delivering", time.Time{}
	case spool.Hold:
		return "hold", time.Time{}
	case spool.Corrupt:
		return "corrupt", time.Time{}
	}
	return "waiting", time.Time{}
}

// expiry is when the queue manager returns the message to its sender:
// its create time plus maximal_queue_lifetime (bounce_queue_lifetime for
// a bounce, whose sender is null). Mail on hold does not expire while it
// is held (Postfix counts the lifetime again from its release).
func (s *Service) expiry(m *manage.Message, created time.Time) time.Time {
	life := s.MaxLifetime
	if m.Sender == "" {
		life = s.BounceLifetime
	}
	if life <= 0 || m.Queue == spool.Hold || m.Queue == spool.Corrupt {
		return time.Time{}
	}
	return created.Add(life)
}

type attempts struct {
	n    int
	last time.Time
}

// lastAttempts counts each recipient's attempts in a history.
func lastAttempts(h []spool.Attempt) map[string]attempts {
	out := map[string]attempts{}
	for _, a := range h {
		x := out[a.Recipient]
		x.n++
		if a.Time.After(x.last) {
			x.last = a.Time
		}
		out[a.Recipient] = x
	}
	return out
}

// readHeaders reads the message's header fields (up to maxHeaderBytes),
// unfolded; nil when the content cannot be read.
func readHeaders(path string) []Header {
	c, err := spool.OpenContent(path)
	if err != nil {
		return []Header{}
	}
	defer c.Close()
	br := bufio.NewReader(io.LimitReader(c, maxHeaderBytes))
	out := []Header{}
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Value += " " + strings.TrimSpace(line)
		} else if name, val, ok := strings.Cut(line, ":"); ok {
			out = append(out, Header{Name: name, Value: strings.TrimSpace(val)})
		}
		if err != nil {
			break
		}
	}
	return out
}
