// Package queuesvc is the one service layer over the queue: every view
// and action that the CLI (sluice queue, mailq, postqueue, qshape), the
// control socket and the HTTP API offer is a method here, so the
// interfaces cannot drift apart.
//
// # Where answers come from
//
// Inside the daemon a Service has the live model (package model): views
// answer from it, and an action's selection takes its candidates from
// it; the action itself then goes through manage and the queue manager's
// coordinator, which looks at the file again (it may have moved or gone
// since). While the model is still loading, and in a tool that runs
// without a daemon, the Service reads the files (manage.Queue, the same
// code the tools have always used). Which one answers is decided in one
// place, source().
//
// # Views
//
//   - Summary: the selected messages grouped by reason class, recipient
//     domain, sender, age or queue (manage.Summarize).
//   - List: the selected messages in queue-ID order, with a limit and a
//     cursor (after=ID) for paging.
//   - Count: selected messages and their pending recipients.
//   - Show: one message: envelope, headers, each recipient's state and
//     attempt history, the next attempt and the expiry (show.go holds
//     those rules).
//   - QShape: qshape's table from the model's aggregates.
//
// # Actions
//
// Act applies delete, hold, release, requeue, retry or expire to the
// messages a selector picks, or says what it would do (dry run). Each
// selected message is either changed, or skipped with a reason: not in a
// queue the action applies to, already so (a hold of held mail, an
// expiry of expired mail), or gone meanwhile. Every change is published
// as an event and written to the mail log in postsuper's words (see
// manage.Queue.Events), whatever interface asked.
package queuesvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/spool"
)

// Service answers views and runs actions.
type Service struct {
	// Queue is the spool seen through manage; inside the daemon its
	// Coord is the queue manager and its Events the daemon's bus.
	Queue *manage.Queue
	// Model is the daemon's live model; nil in a tool without a daemon.
	Model *model.Model
	// Lifetimes are maximal_queue_lifetime and bounce_queue_lifetime,
	// for the expiry Show reports; zero means none is reported.
	MaxLifetime, BounceLifetime time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ErrBadRequest marks an error in what the caller asked (a bad selector,
// an unknown action): the HTTP API answers it 400.
var ErrBadRequest = errors.New("bad request")

type badRequest struct{ msg string }

func (e *badRequest) Error() string        { return e.msg }
func (e *badRequest) Is(target error) bool { return target == ErrBadRequest }

// BadRequest wraps a message as an ErrBadRequest.
func BadRequest(format string, args ...any) error {
	return &badRequest{fmt.Sprintf(format, args...)}
}

// ParseSelector parses a selector written as one string (terms separated
// by white space, as on the command line); its error is the CLI's.
func ParseSelector(text string) (*manage.Selector, error) {
	sel, err := manage.ParseSelector(text)
	if err != nil {
		return nil, &badRequest{err.Error()}
	}
	return sel, nil
}

// Source says where an answer came from.
type Source string

const (
	SourceModel Source = "model" // the daemon's live model
	SourceFiles Source = "files" // a read of the queue files
)

// source decides where views and selections come from: the model when
// there is one and it has loaded, else the files. A selector that names
// maildrop/ needs the files: the model does not hold mail that pickup
// has not taken yet.
func (s *Service) source(sel *manage.Selector) Source {
	if s.Model == nil || s.Model.Loading() {
		return SourceFiles
	}
	if slices.Contains(sel.Queues(), spool.Maildrop) {
		return SourceFiles
	}
	return SourceModel
}

// Each calls fn for every message sel selects. full asks for reasons
// and attempt counts even when sel needs none (the model always has
// them).
func (s *Service) Each(ctx context.Context, sel *manage.Selector, full bool, fn func(*manage.Message) error) (Source, error) {
	src := s.source(sel)
	if src == SourceFiles {
		return src, s.Queue.Each(ctx, sel, manage.SelectOptions{Full: full, Envelope: true}, func(m *manage.Message) error {
			// Times as the model keeps them: whole seconds (all
			// Postfix schedules by), in UTC.
			m.Arrival = m.Arrival.UTC().Truncate(time.Second)
			if !m.NextAttempt.IsZero() {
				m.NextAttempt = m.NextAttempt.UTC().Truncate(time.Second)
			}
			return fn(m)
		})
	}
	now := s.now()
	if ids, ok := sel.IDs(); ok {
		for _, id := range ids {
			v, ok := s.Model.Message(id)
			if !ok {
				continue
			}
			if m := fromModel(&v); sel.Match(m, now) {
				if err := fn(m); err != nil {
					return src, err
				}
			}
		}
		return src, nil
	}
	for _, v := range s.Model.Messages() {
		if err := ctx.Err(); err != nil {
			return src, err
		}
		m := fromModel(&v)
		if !sel.Match(m, now) {
			continue
		}
		if err := fn(m); err != nil {
			return src, err
		}
	}
	return src, nil
}

// fromModel turns the model's view of a message into manage's.
func fromModel(v *model.Message) *manage.Message {
	m := &manage.Message{
		Queue: v.Queue, ID: v.ID, Arrival: v.Arrival, NextAttempt: v.Next,
		Size: v.Size, ForcedExpire: v.Forced, Sender: v.Sender,
		Recipients: make([]manage.Recipient, len(v.Recipients)),
	}
	for i, r := range v.Recipients {
		m.Recipients[i] = manage.Recipient{Address: r.Address, Done: r.Done, Reason: r.Reason, Status: r.DSN, Class: r.Class}
		// An attempt is made for every pending recipient at once, so
		// the message's attempts are its most tried recipient's.
		m.Attempts = max(m.Attempts, r.Attempts)
	}
	return m
}

// SummaryResult is a summary's answer.
type SummaryResult struct {
	Source     Source         `json:"source"`
	By         string         `json:"by"`
	Select     string         `json:"select"`
	Messages   int            `json:"messages"`
	Recipients int            `json:"recipients"`
	Groups     []manage.Group `json:"groups"`
}

// CheckBy returns an error for a summary key manage does not know.
func CheckBy(by string) error {
	if !slices.Contains(manage.SummaryBy, by) {
		return BadRequest("--by %s: want one of %s", by, strings.Join(manage.SummaryBy, ", "))
	}
	return nil
}

// Summary groups the selected messages by by ("" is reason).
func (s *Service) Summary(ctx context.Context, sel *manage.Selector, by string) (SummaryResult, error) {
	if by == "" {
		by = "reason"
	}
	if err := CheckBy(by); err != nil {
		return SummaryResult{}, err
	}
	var msgs []*manage.Message
	rcpts := 0
	src, err := s.Each(ctx, sel, by == "reason", func(m *manage.Message) error {
		msgs = append(msgs, m)
		rcpts += pending(m)
		return nil
	})
	if err != nil {
		return SummaryResult{}, err
	}
	// In ID order, so each group's example is the same whichever
	// source answered.
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].ID < msgs[j].ID })
	groups := manage.Summarize(msgs, by, s.now())
	if groups == nil {
		groups = []manage.Group{}
	}
	return SummaryResult{Source: src, By: by, Select: sel.String(), Messages: len(msgs), Recipients: rcpts, Groups: groups}, nil
}

func pending(m *manage.Message) int {
	n := 0
	for _, r := range m.Recipients {
		if !r.Done {
			n++
		}
	}
	return n
}

// CountResult is a count's answer.
type CountResult struct {
	Source     Source `json:"source"`
	Messages   int    `json:"messages"`
	Recipients int    `json:"recipients"` // pending
}

// Count counts the selected messages and their pending recipients.
func (s *Service) Count(ctx context.Context, sel *manage.Selector) (CountResult, error) {
	var c CountResult
	src, err := s.Each(ctx, sel, false, func(m *manage.Message) error {
		c.Messages++
		c.Recipients += pending(m)
		return nil
	})
	c.Source = src
	return c, err
}

// ListResult is one page of a listing.
type ListResult struct {
	Source   Source            `json:"source"`
	Messages []*manage.Message `json:"messages"`
	// Next is the cursor of the next page (pass it as after), "" on the
	// last page.
	Next string `json:"next,omitempty"`
}

// List returns the selected messages in queue-ID order: those after the
// ID after ("" from the start), at most limit (0: all).
func (s *Service) List(ctx context.Context, sel *manage.Selector, limit int, after string) (ListResult, error) {
	if limit < 0 {
		return ListResult{}, BadRequest("limit must be 0 (no limit) or more, not %d", limit)
	}
	var out []*manage.Message
	src, err := s.Each(ctx, sel, true, func(m *manage.Message) error {
		if after == "" || m.ID > after {
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return ListResult{}, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	res := ListResult{Source: src, Messages: out}
	if limit > 0 && len(out) > limit {
		res.Messages, res.Next = out[:limit], out[limit-1].ID
	}
	if res.Messages == nil {
		res.Messages = []*manage.Message{}
	}
	return res, nil
}

// QShape is qshape's table from the model; ok is false when there is no
// model (a tool without a daemon renders qshape from the files itself).
func (s *Service) QShape(o model.QShapeOptions) (model.QShape, bool) {
	if s.Model == nil {
		return model.QShape{}, false
	}
	return s.Model.QShape(o, s.now()), true
}
