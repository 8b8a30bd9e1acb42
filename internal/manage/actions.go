package manage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// Op is an action on messages.
type Op string

// The actions, with postsuper's and postqueue's meanings.
const (
	OpDelete  Op = "delete"  // postsuper -d: remove the file and its logs
	OpHold    Op = "hold"    // postsuper -h: move to hold/, never scheduled
	OpRelease Op = "release" // postsuper -H: move hold/ to deferred/, mtime kept
	OpRequeue Op = "requeue" // postsuper -r: back through pickup and cleanup, new ID
	OpExpire  Op = "expire"  // postsuper -e: forced expiry at the next attempt
	OpRetry   Op = "retry"   // postqueue -i: deliver now, same ID
)

// Ops lists the actions.
var Ops = []Op{OpDelete, OpHold, OpRelease, OpRequeue, OpExpire, OpRetry}

// DefaultQueues are the queues each action looks in when the caller names
// none, as postsuper's (delete also searches maildrop, as its code does).
func DefaultQueues(op Op) []string {
	switch op {
	case OpDelete:
		return []string{spool.Hold, spool.Incoming, spool.Active, spool.Deferred, spool.Maildrop, spool.Corrupt}
	case OpHold:
		return []string{spool.Incoming, spool.Active, spool.Deferred}
	case OpRelease:
		return []string{spool.Hold}
	case OpRetry:
		return []string{spool.Deferred, spool.Incoming}
	case OpRequeue:
		// Requeue is also the way out of corrupt/ for a file that parses
		// after all (set aside by an older pickup, or mended by hand).
		return []string{spool.Hold, spool.Incoming, spool.Active, spool.Deferred, spool.Corrupt}
	default: // expire
		return []string{spool.Hold, spool.Incoming, spool.Active, spool.Deferred}
	}
}

// PostsuperVerb is what Postfix's postsuper says of a message an action
// changed, on stderr and in the mail log ("ID: removed"); "" for an
// action postsuper does not have (retry).
func PostsuperVerb(op Op) string {
	switch op {
	case OpDelete:
		return "removed"
	case OpHold:
		return "placed on hold"
	case OpRelease:
		return "released from hold"
	case OpExpire:
		return "expired"
	case OpRequeue:
		return "requeued"
	}
	return ""
}

// Outcome is what an action did to one message.
type Outcome struct {
	ID      string `json:"queue_id"`
	From    string `json:"queue"`              // the queue it was in
	To      string `json:"to_queue,omitempty"` // where it went; "" when removed
	Changed bool   `json:"changed"`            // false: nothing to do (e.g. already expired)
	// Delivered lists recipients that were already delivered when the
	// action took the message (a delivery finished while we waited).
	Delivered []string `json:"delivered,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// ErrNotFound reports an ID that is in none of the queues searched.
var ErrNotFound = errors.New("no such message")

// Act applies op to the message id, looking for it in queues (the
// action's defaults when empty). It takes the message out of the
// scheduler's hands first, so no delivery of it starts or is in flight
// while it changes.
func (q *Queue) Act(ctx context.Context, op Op, id string, queues []string) (Outcome, error) {
	if !spool.ValidID(id) {
		return Outcome{ID: id}, fmt.Errorf("invalid mail queue id: %s", id)
	}
	if len(queues) == 0 {
		queues = DefaultQueues(op)
	}
	// Look before taking the message from the scheduler: taking it stops
	// its delivery round (the jobs not started are dropped, and it is
	// scheduled afresh on release), which only a real change may cost.
	// A message in none of the action's queues (retry or release of mail
	// being delivered), or one the action would leave as it is, is not
	// taken at all.
	from, err := q.Spool.Locate(id, queues...)
	if err != nil {
		return Outcome{ID: id}, ErrNotFound
	}
	if q.noOp(op, id, from) {
		return Outcome{ID: id, From: from}, nil
	}
	if q.Coord != nil {
		release, err := q.Coord.Acquire(ctx, id)
		if err != nil {
			return Outcome{ID: id}, err
		}
		defer release()
		// It may have moved while a delivery finished.
		if from, err = q.Spool.Locate(id, queues...); err != nil {
			return Outcome{ID: id}, ErrNotFound
		}
	}
	out := Outcome{ID: id, From: from}
	path := q.Spool.Path(from, id)
	if q.Coord == nil {
		// No daemon: only other tools can touch the file. Two of them
		// acting on one message take turns through the file's lock.
		f, err := lockFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return out, ErrNotFound
			}
			return out, err
		}
		defer f.Close()
	}
	if op == OpDelete {
		if env, _, err := spool.ReadFile(path, spool.ReadOptions{SkipContent: true}); err == nil {
			for _, r := range env.Recipients {
				if r.Done {
					out.Delivered = append(out.Delivered, r.Address)
				}
			}
		}
	}
	err = q.apply(op, id, from, &out)
	if err != nil {
		out.Error = err.Error()
	}
	if err == nil && out.Changed {
		q.publish(op, out)
	}
	return out, err
}

// publish tells Events (and the mail log) of a change made. Postfix's
// postsuper logs "ID: removed", "placed on hold", "released from hold",
// "requeued" and "expired"; sluice logs the same lines, whatever
// interface asked.
func (q *Queue) publish(op Op, out Outcome) {
	now := q.now()
	var e event.Event
	switch op {
	case OpDelete:
		e = &event.Deleted{ID: out.ID, Queue: out.From, Time: now, Service: "postsuper"}
	case OpHold:
		e = &event.Held{ID: out.ID, From: out.From, Time: now, Service: "postsuper"}
	case OpRelease:
		e = &event.Released{ID: out.ID, To: out.To, Time: now, Service: "postsuper"}
	case OpRequeue:
		e = &event.Requeued{ID: out.ID, From: out.From, Time: now, Service: "postsuper"}
	case OpRetry:
		e = &event.Moved{ID: out.ID, From: out.From, To: out.To, Time: now, Next: now}
	case OpExpire:
		e = &event.Moved{ID: out.ID, From: out.From, To: out.From, Time: now, Forced: true}
		if q.Log != nil {
			q.Log("postsuper", "%s: %s", out.ID, PostsuperVerb(op))
		}
	}
	if q.Events != nil && e != nil {
		event.Publish(q.Events, e)
	}
}

// noOp reports whether op would leave the message id in from as it is.
func (q *Queue) noOp(op Op, id, from string) bool {
	switch op {
	case OpHold:
		return from == spool.Hold
	case OpExpire:
		fi, err := os.Stat(q.Spool.Path(from, id))
		return err == nil && spool.IsForcedExpire(fi.Mode())
	}
	return false
}

func (q *Queue) apply(op Op, id, from string, out *Outcome) error {
	sp := q.Spool
	switch op {
	case OpDelete:
		if err := sp.Remove(from, id); err != nil {
			return err
		}
		out.Changed = true
	case OpHold:
		if from == spool.Hold {
			return nil
		}
		if err := sp.Move(id, from, spool.Hold); err != nil {
			return err
		}
		out.To, out.Changed = spool.Hold, true
	case OpRelease:
		if err := sp.Move(id, from, spool.Deferred); err != nil {
			return err
		}
		out.To, out.Changed = spool.Deferred, true
	case OpExpire:
		path := sp.Path(from, id)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if spool.IsForcedExpire(fi.Mode()) {
			return nil
		}
		if err := os.Chmod(path, fi.Mode().Perm()|spool.ModeExpire); err != nil {
			return fmt.Errorf("set forced expiry on %s: %w", id, err)
		}
		out.Changed = true
	case OpRequeue:
		// As postsuper -r: into maildrop/ with a fresh time stamp, where
		// pickup gives it a new ID, a new create_time (so a new lifetime)
		// and redoes the address rewriting; its arrival time stays.
		if from == spool.Corrupt {
			env, _, err := spool.ReadFile(sp.Path(from, id), spool.ReadOptions{})
			if err != nil {
				return fmt.Errorf("still unreadable, left in corrupt/: %w", err)
			}
			if len(env.Pending()) == 0 {
				return errors.New("no recipient left to deliver to, left in corrupt/")
			}
		}
		if err := sp.SetTimes(from, id, q.now()); err != nil {
			return err
		}
		if err := sp.Move(id, from, spool.Maildrop); err != nil {
			return err
		}
		out.To, out.Changed = spool.Maildrop, true
	case OpRetry:
		// As the flush service does for postqueue -i: due now, with the
		// unthrottle bit, back into incoming/ under the same ID.
		path := sp.Path(from, id)
		if err := sp.SetTimes(from, id, q.now()); err != nil {
			return err
		}
		if fi, err := os.Stat(path); err == nil && spool.IsReady(fi.Mode()) {
			if err := os.Chmod(path, fi.Mode().Perm()|spool.ModeUnthrottle); err != nil {
				return fmt.Errorf("set unthrottle on %s: %w", id, err)
			}
		}
		if from != spool.Incoming {
			if err := sp.Move(id, from, spool.Incoming); err != nil {
				return err
			}
		}
		out.To, out.Changed = spool.Incoming, true
		if q.Coord != nil {
			q.Coord.Retry(id)
		}
	default:
		return fmt.Errorf("unknown action %q", op)
	}
	return nil
}

// ActAll applies op to each of ids in turn and reports each outcome to fn;
// an error for one message (ErrNotFound among them) does not stop the
// others. It stops early only when ctx is done.
func (q *Queue) ActAll(ctx context.Context, op Op, ids []string, queues []string, fn func(Outcome, error)) error {
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		out, err := q.Act(ctx, op, id, queues)
		fn(out, err)
	}
	return nil
}
