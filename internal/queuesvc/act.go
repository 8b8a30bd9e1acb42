package queuesvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"sluice/internal/manage"
	"sluice/internal/spool"
)

// ActRequest asks for an action on the messages a selector picks.
type ActRequest struct {
	Action manage.Op `json:"action"`
	Select string    `json:"select"`
	DryRun bool      `json:"dry_run"`
	// All allows an empty selector (every message): an empty selector
	// is refused otherwise, so that a forgotten selector changes nothing.
	All bool `json:"all,omitempty"`
	// IDs, when given, restricts the action to these messages (those a
	// dry run found and an operator confirmed); the selector must still
	// match each of them. It spares a second walk of a large queue.
	IDs []string `json:"ids,omitempty"`
}

// ActResult is what an action did, or would do (dry run).
type ActResult struct {
	Source  Source    `json:"source"`
	Action  manage.Op `json:"action"`
	Select  string    `json:"select"`
	DryRun  bool      `json:"dry_run"`
	Matched int       `json:"matched"` // messages the selector picked
	Changed int       `json:"changed"` // changed, or would be
	Skipped int       `json:"skipped"` // left alone; see SkippedReasons
	Failed  int       `json:"failed"`
	// SkippedReasons counts the skipped messages by why.
	SkippedReasons map[string]int `json:"skipped_reasons"`
	// Results has one entry per matched message: what happened to it
	// (error says why it was skipped or failed).
	Results []manage.Outcome `json:"results"`
}

// Why a selected message is left alone.
const (
	SkipNotApplicable = "not in a queue the action applies to"
	SkipAlready       = "already so"
	SkipGone          = "gone (delivered, deleted or moved meanwhile)"
)

// CheckAction returns an error for an unknown action.
func CheckAction(op manage.Op) error {
	if !slices.Contains(manage.Ops, op) {
		names := make([]string, len(manage.Ops))
		for i, o := range manage.Ops {
			names[i] = string(o)
		}
		return BadRequest("unknown action %q (want %s)", op, strings.Join(names, ", "))
	}
	return nil
}

// Act runs req. progress, when not nil, is called after each message.
func (s *Service) Act(ctx context.Context, req ActRequest, progress func(done, total int)) (ActResult, error) {
	if err := CheckAction(req.Action); err != nil {
		return ActResult{}, err
	}
	sel, err := ParseSelector(req.Select)
	if err != nil {
		return ActResult{}, err
	}
	if sel.Empty() && !req.All {
		return ActResult{}, BadRequest("no selector: give terms (e.g. rcpt=user@example.com), or all for every message")
	}
	res := ActResult{Action: req.Action, Select: sel.String(), DryRun: req.DryRun, SkippedReasons: map[string]int{}, Results: []manage.Outcome{}}
	skip := func(m *manage.Message, why string) {
		res.Skipped++
		res.SkippedReasons[why]++
		res.Results = append(res.Results, manage.Outcome{ID: m.ID, From: m.Queue, Error: why})
	}
	// Candidates come from the model (or the files); the action looks
	// at each file again.
	qs := manage.DefaultQueues(req.Action)
	var todo []*manage.Message
	each := s.Each
	if len(req.IDs) > 0 {
		each = func(ctx context.Context, sel *manage.Selector, full bool, fn func(*manage.Message) error) (Source, error) {
			return s.eachOf(ctx, sel, req.IDs, fn)
		}
	}
	res.Source, err = each(ctx, sel, false, func(m *manage.Message) error {
		res.Matched++
		switch {
		case !slices.Contains(qs, m.Queue):
			skip(m, fmt.Sprintf("%s (%s applies to %s)", SkipNotApplicable, req.Action, strings.Join(qs, ", ")))
		case req.Action == manage.OpExpire && m.ForcedExpire:
			skip(m, SkipAlready)
		default:
			todo = append(todo, m)
		}
		return nil
	})
	if err != nil {
		return ActResult{}, err
	}
	slices.SortFunc(todo, func(a, b *manage.Message) int { return strings.Compare(a.ID, b.ID) })
	if req.DryRun {
		for _, m := range todo {
			res.Changed++
			res.Results = append(res.Results, manage.Outcome{ID: m.ID, From: m.Queue, Changed: true})
		}
		return res, nil
	}
	for i, m := range todo {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		out, err := s.Queue.Act(ctx, req.Action, m.ID, nil)
		switch {
		case errors.Is(err, manage.ErrNotFound):
			skip(m, SkipGone)
		case err != nil:
			res.Failed++
			out.Error = err.Error()
			res.Results = append(res.Results, out)
		case !out.Changed:
			res.Skipped++
			res.SkippedReasons[SkipAlready]++
			out.Error = SkipAlready
			res.Results = append(res.Results, out)
		default:
			res.Changed++
			res.Results = append(res.Results, out)
		}
		if progress != nil {
			progress(i+1, len(todo))
		}
	}
	return res, nil
}

// eachOf calls fn for each of ids that sel selects.
func (s *Service) eachOf(ctx context.Context, sel *manage.Selector, ids []string, fn func(*manage.Message) error) (Source, error) {
	for _, id := range ids {
		if !spool.ValidID(id) {
			return "", BadRequest("invalid mail queue id: %s", id)
		}
	}
	byID := make([]string, len(ids))
	for i, id := range ids {
		byID[i] = "id=" + id
	}
	only, err := manage.ParseSelector(byID...)
	if err != nil {
		return "", &badRequest{err.Error()}
	}
	now := s.now()
	return s.Each(ctx, only, true, func(m *manage.Message) error {
		if !sel.Match(m, now) {
			return nil
		}
		return fn(m)
	})
}
