package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"sluice/internal/bounce"
	evt "sluice/internal/event"
	"sluice/internal/spool"
)

// startFinish decides, on its own goroutine, what becomes of a message
// whose deliveries have all ended; the loop learns through m.finished
// that it has left active/.
func (m *Manager) startFinish(msg *message) {
	msg.finishing = true
	m.wg.Add(1)
	go func() {
		m.finish(msg)
		m.finished <- msg
	}()
}

// notifyTimeout bounds the submission of one notice.
const notifyTimeout = 30 * time.Second

// finish runs after the last delivery of a message's round. The queue
// file, re-read now, is the truth about which recipients are pending.
func (m *Manager) finish(msg *message) {
	if msg.aborted {
		return // shutdown: the file stays in active/, back to incoming/ at start
	}
	id := msg.id
	if msg.pending > 0 && msg.sent == msg.pending && msg.deferred == 0 && msg.bounced == 0 && !msg.past {
		// Every recipient was sent in this, its first round: nothing
		// to report, nothing left; no need to read the file again.
		m.remove(msg)
		return
	}
	env, _, err := spool.ReadFile(msg.path, spool.ReadOptions{SkipContent: true})
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("qmgr", "%s: read queue file: %v", id, err)
		}
		return
	}
	now := m.clk.Now()
	pending := env.Pending()
	bounced, err := m.sp.ReadLog(spool.Bounce, id)
	if err != nil {
		m.log.Warn("qmgr", "%s: read bounce log: %v", id, err)
	}

	if len(pending) > 0 && m.expired(now, msg) {
		m.publish(&evt.Expired{ID: id, Time: now, Sender: env.Sender, Forced: msg.forced})
		entries := append(bounced, m.expiryEntries(msg, pending)...)
		if !m.notify(bounce.Failure, id, env, entries) {
			m.deferMessage(msg, env, now)
			return
		}
		m.remove(msg)
		return
	}
	if len(bounced) > 0 {
		if !m.notify(bounce.Failure, id, env, bounced) {
			m.deferMessage(msg, env, now)
			return
		}
		if err := m.sp.RemoveLog(spool.Bounce, id); err != nil {
			m.log.Warn("qmgr", "%s: %v", id, err)
		}
	}
	if len(pending) == 0 {
		m.remove(msg)
		return
	}
	if env.WarnTime > 0 && now.Unix() >= env.WarnTime-1 {
		entries, _ := m.sp.ReadLog(spool.Defer, id)
		if m.notify(bounce.Delay, id, env, delayed(entries)) || env.Sender == "" {
			if err := spool.UpdateWarnTime(msg.path, env.WarnOffset, -1); err != nil {
				m.log.Warn("qmgr", "%s: %v", id, err)
			}
		}
	}
	m.deferMessage(msg, env, now)
}

// expiryEntries are the reasons an expired message is returned with:
// each pending recipient's latest defer log entry, as a failure.
func (m *Manager) expiryEntries(msg *message, pending []spool.Recipient) []spool.LogEntry {
	logged, _ := m.sp.ReadLog(spool.Defer, msg.id)
	if len(logged) == 0 {
		logged = msg.expireLog
	}
	last := map[int64]spool.LogEntry{}
	for _, e := range logged {
		last[e.Offset] = e
	}
	out := make([]spool.LogEntry, 0, len(pending))
	for _, r := range pending {
		e, ok := last[r.Offset]
		if !ok {
			e = spool.LogEntry{
				Recipient: spool.QuoteAddress(r.Address), OrigRcpt: r.Orig, Offset: r.Offset, DSNOrigRcpt: r.DSNOrig,
				NotifyFlags: r.Notify, Status: "4.7.0", Reason: "message is administratively expired",
			}
		}
		e.Action = "failed"
		out = append(out, e)
	}
	return out
}

func delayed(entries []spool.LogEntry) []spool.LogEntry {
	for i := range entries {
		entries[i].Action = "delayed"
	}
	return entries
}

// notify sends a notice about id to its sender. It reports whether the
// message may go on as if the notice was sent: true when it was, or when
// the sender is <> (no notice is ever sent to it).
func (m *Manager) notify(kind bounce.Kind, id string, env *spool.Envelope, entries []spool.LogEntry) bool {
	if env.Sender == "" {
		if kind == bounce.Failure {
			m.log.Log("qmgr", "%s: undeliverable mail from the null sender: no notification sent", id)
		}
		return true
	}
	if m.cfg.Notifier == nil {
		m.log.Warn("qmgr", "%s: no bounce service: notification to <%s> not sent", id, env.Sender)
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	_, err := m.cfg.Notifier.Send(ctx, &bounce.Report{
		Kind: kind, QueueID: id, Path: m.sp.Path(spool.Active, id), Envelope: env, Entries: entries,
	})
	if err != nil {
		m.log.Warn("qmgr", "%s: %v", id, err)
		return false
	}
	return true
}

// deferMessage sets the time of the next attempt and moves the file to
// deferred/.
func (m *Manager) deferMessage(msg *message, env *spool.Envelope, now time.Time) {
	id := msg.id
	if m.cfg.SyncBeforeDefer {
		// The D marks of this round must survive a system crash before
		// the file waits for hours in deferred/.
		if f, err := os.OpenFile(msg.path, os.O_RDWR, 0); err == nil {
			if err := f.Sync(); err != nil {
				m.log.Warn("qmgr", "%s: sync: %v", id, err)
			}
			f.Close()
		}
	}
	next := now.Add(m.backoff(now, env.CreateTime))
	if u := msg.suspendUntil; !u.IsZero() && u.Before(next) && u.After(now) {
		next = u // the suspension ends before the backoff: try then
	}
	if err := m.sp.SetTimes(spool.Active, id, next); err != nil {
		m.log.Warn("qmgr", "%s: %v", id, err)
	}
	if err := m.sp.Move(id, spool.Active, spool.Deferred); err != nil {
		m.log.Warn("qmgr", "%s: %v", id, err)
		return
	}
	m.publish(&evt.Moved{ID: id, From: spool.Active, To: spool.Deferred, Time: now, Next: next, Forced: msg.forced})
}

// remove deletes a message that is finished, its logs first. The
// directory is not synced: should a system crash undo the unlink, the
// file comes back with its recipients marked done, or is delivered once
// more — never lost.
func (m *Manager) remove(msg *message) {
	id := msg.id
	logs := []string{spool.Bounce, spool.Defer, spool.Trace, spool.History}
	if !msg.past {
		// A fresh message has only the logs of this round.
		logs = logs[:0]
		if msg.bounced > 0 {
			logs = append(logs, spool.Bounce)
		}
		if msg.deferred > 0 {
			logs = append(logs, spool.Defer)
		}
		if msg.deferred > 0 || msg.bounced > 0 {
			logs = append(logs, spool.History)
		}
	}
	for _, l := range logs {
		if err := os.Remove(m.sp.Path(l, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("qmgr", "%s: remove %s log: %v", id, l, err)
		}
	}
	// A message new from cleanup is small (its image is the file); its
	// file is kept for the next one (spool.Recycle).
	kept := msg.kept != nil && m.sp.Recycle(spool.Active, id, int64(len(msg.kept.Image)), msg.kept)
	if !kept {
		if err := os.Remove(m.sp.Path(spool.Active, id)); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				m.log.Warn("qmgr", "%s: remove: %v", id, err)
			}
			return
		}
	}
	m.publish(&evt.Deleted{ID: id, Queue: spool.Active, Time: m.clk.Now(), Service: "qmgr"})
}
