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
// them, but for reasons it keeps on disk: see fillReasons).
func (s *Service) Each(ctx context.Context, sel *manage.Selector, full bool, fn func(*manage.Message) error) (Source, error) {
	src := s.source(sel)
	if src == SourceFiles {
		return src, s.eachFile(ctx, sel, full, fn)
	}
	// The walk holds the model's lock: collect the matches, then hand
	// them out, so a slow caller never holds up the model's events.
	var matched []*manage.Message
	s.eachModel(sel, func(m *manage.Message) {
		matched = append(matched, clone(m))
	})
	for _, m := range matched {
		if err := ctx.Err(); err != nil {
			return src, err
		}
		if err := fn(m); err != nil {
			return src, err
		}
	}
	return src, nil
}

// eachFile is Each on the files.
func (s *Service) eachFile(ctx context.Context, sel *manage.Selector, full bool, fn func(*manage.Message) error) error {
	return s.Queue.Each(ctx, sel, manage.SelectOptions{Full: full, Envelope: true}, func(m *manage.Message) error {
		// Times as the model keeps them: whole seconds (all Postfix
		// schedules by), in UTC.
		m.Arrival = m.Arrival.UTC().Truncate(time.Second)
		if !m.NextAttempt.IsZero() {
			m.NextAttempt = m.NextAttempt.UTC().Truncate(time.Second)
		}
		return fn(m)
	})
}

// eachModel calls fn with every message of the model sel selects, under
// the model's read lock, in one reused Message: fn must not keep it, nor
// call the model.
func (s *Service) eachModel(sel *manage.Selector, fn func(*manage.Message)) {
	now := s.now()
	var buf manage.Message
	visit := func(v *model.Message) {
		fromModel(&buf, v)
		if sel.Match(&buf, now) {
			fn(&buf)
		}
	}
	if ids, ok := sel.IDs(); ok {
		for _, id := range ids {
			if v, ok := s.Model.Message(id); ok {
				visit(&v)
			}
		}
		return
	}
	// Reasons past the model's in-memory cap are on disk: read them only
	// when the selector compares reason texts (views fill in what they
	// show: fillReasons).
	if sel.UsesKey("reason") {
		for _, v := range s.Model.Messages() {
			visit(&v)
		}
		return
	}
	s.Model.EachInMemory(visit)
}

// fromModel makes m the model's view v of a message, reusing m's
// recipients.
func fromModel(m *manage.Message, v *model.Message) {
	rs := m.Recipients[:0]
	*m = manage.Message{
		Queue: v.Queue, ID: v.ID, Arrival: v.Arrival, NextAttempt: v.Next,
		Size: v.Size, ForcedExpire: v.Forced, Sender: v.Sender,
	}
	for _, r := range v.Recipients {
		rs = append(rs, manage.Recipient{Address: r.Address, Done: r.Done, Reason: r.Reason, Status: r.DSN, Class: r.Class})
		// An attempt is made for every pending recipient at once, so
		// the message's attempts are its most tried recipient's.
		m.Attempts = max(m.Attempts, r.Attempts)
	}
	m.Recipients = rs
}

func clone(m *manage.Message) *manage.Message {
	c := *m
	c.Recipients = append([]manage.Recipient{}, m.Recipients...)
	return &c
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
	res := SummaryResult{Source: s.source(sel), By: by, Select: sel.String()}
	if res.Source == SourceModel && sel.Empty() {
		return s.summaryOfAll(res), nil
	}
	sum := manage.NewSummarizer(by, s.now())
	add := func(m *manage.Message) {
		res.Messages++
		res.Recipients += pending(m)
		sum.Add(m)
	}
	// A reason class whose reasons the model keeps on disk only may get
	// its example from the file of a message whose reason the model does
	// not hold: the first such message by the example rule.
	type candidate struct {
		id string
		at time.Time
	}
	onDisk := map[string]candidate{}
	if res.Source == SourceFiles {
		if err := s.eachFile(ctx, sel, by == "reason", func(m *manage.Message) error { add(m); return nil }); err != nil {
			return SummaryResult{}, err
		}
	} else {
		s.eachModel(sel, func(m *manage.Message) {
			add(m)
			if by != "reason" {
				return
			}
			for _, r := range m.Recipients {
				if !r.Done && r.Class != "" && r.Reason == "" {
					if c, ok := onDisk[r.Class]; !ok || manage.ExampleBefore(m.Arrival, m.ID, c.at, c.id) {
						onDisk[r.Class] = candidate{m.ID, m.Arrival}
					}
				}
			}
		})
	}
	for class, c := range onDisk {
		if !sum.Before(class, c.at, c.id) {
			continue
		}
		if v, ok := s.Model.Message(c.id); ok {
			for _, r := range v.Recipients {
				if !r.Done && r.Class == class && r.Reason != "" {
					sum.SetExample(class, r.Reason, c.id, c.at)
					break
				}
			}
		}
	}
	res.Groups = sum.Groups()
	return res, ctx.Err()
}

// hasOnDisk reports whether a model message lacks a pending recipient's
// reason text (kept on disk only; its class is known).
func hasOnDisk(m *manage.Message) bool {
	for _, r := range m.Recipients {
		if !r.Done && r.Class != "" && r.Reason == "" {
			return true
		}
	}
	return false
}

// fillReasons reads the reasons the model keeps on disk for m.
func (s *Service) fillReasons(m *manage.Message) {
	if !hasOnDisk(m) {
		return
	}
	v, ok := s.Model.Message(m.ID)
	if !ok || len(v.Recipients) != len(m.Recipients) {
		return
	}
	for i, r := range v.Recipients {
		if m.Recipients[i].Reason == "" {
			m.Recipients[i].Reason = r.Reason
		}
	}
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
	c := CountResult{Source: s.source(sel)}
	add := func(m *manage.Message) {
		c.Messages++
		c.Recipients += pending(m)
	}
	if c.Source == SourceModel {
		s.eachModel(sel, add)
		return c, ctx.Err()
	}
	err := s.eachFile(ctx, sel, false, func(m *manage.Message) error { add(m); return nil })
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
	if src == SourceModel {
		for _, m := range res.Messages {
			s.fillReasons(m)
		}
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

// summaryOfAll is the summary of every message from the model's own
// records (model.Summarize), with no view made of each message: the
// common "why is it stuck" of a large queue answers in milliseconds. It
// gives what the Summarizer gives for the same messages.
func (s *Service) summaryOfAll(res SummaryResult) SummaryResult {
	keys := model.SummaryKeys{NoReason: manage.NoReason}
	below, labels := manage.AgeBuckets()
	for i := range below {
		keys.Ages = append(keys.Ages, model.AgeGroup{Below: below[i], Label: labels[i]})
	}
	rows, msgs, rcpts := s.Model.Summarize(res.By, s.now(), keys)
	res.Messages, res.Recipients = msgs, rcpts
	res.Groups = make([]manage.Group, 0, len(rows))
	for _, r := range rows {
		g := manage.Group{Key: r.Key, Messages: r.Messages, Recipients: r.Recipients, Oldest: r.Oldest}
		if r.ExampleID != "" {
			g.ExampleID = r.ExampleID
			switch res.By {
			case "reason":
				g.Example = r.Reason
				if g.Example == "" {
					// A reason the model keeps on disk only.
					if v, ok := s.Model.Message(r.ExampleID); ok {
						for _, rc := range v.Recipients {
							if !rc.Done && rc.Class == r.Key && rc.Reason != "" {
								g.Example = rc.Reason
								break
							}
						}
					}
				}
				if g.Example == "" {
					g.ExampleID = ""
				}
			default:
				g.Example = manage.ExampleText(r.Sender, r.Rcpt, r.More)
			}
		}
		res.Groups = append(res.Groups, g)
	}
	res.Groups = manage.FinishGroups(res.By, res.Groups)
	return res
}
