package qmgr

import (
	"os"
	"path/filepath"
	"time"

	"sluice/internal/spool"
)

// Suspensions pause delivery of the mail they match (package suspend has
// the set; this is what the manager asks of it).
//
// A message whose pending recipients are all suspended is not taken: it
// stays where it is (incoming/ or deferred/), its file, mtime and logs
// untouched, and the manager remembers it (parked) until the earliest end
// of its recipients' suspensions, or until the set changes
// (SuspensionsChanged), then looks at it again: it becomes due at once.
// Leaving such a message alone, rather than deferring it as Postfix
// defers the mail of a suspended destination, keeps a suspension cheap
// (no rename, no log write, no fsync per message per scan) and means
// nothing about the message changes: no attempt is counted, no delay
// warning is sent because of a pause the administrator asked for, and
// lifting the suspension finds the mail exactly as it was.
//
// A message with some recipients suspended has the others delivered; the
// suspended ones are deferred without a connection, with "delivery
// temporarily suspended: suspension N (reason)" in the defer log, and the
// message's next attempt is no later than the end of the suspension (nor
// later than its backoff). They stay R records throughout: nothing is
// lost, and they are delivered once the suspension ends.
//
// Expiry still applies: a message that outlives maximal_queue_lifetime
// while suspended is returned to its sender at its next attempt (after
// the suspension), as any other message.
//
// A delivery queued in active/ is looked at again when it is about to
// start, so a suspension made while mail waits there for a connection
// slot applies to it too; deliveries already running go on.
type Suspensions interface {
	// Any reports whether some suspension is in force at now. While none
	// is, the manager reads nothing more before taking mail.
	Any(now time.Time) bool
	// Suspended reports whether delivery of message id to rcpt is
	// suspended at now, until when and why (for the defer log).
	Suspended(now time.Time, id string, env *spool.Envelope, rcpt string) (until time.Time, why string, ok bool)
}

// parked is a message the manager leaves where it is because of a
// suspension, or a message deferred partly because of one.
type parked struct {
	queue string
	until time.Time // when to look at it again
	// whole: every pending recipient was suspended, so it is not taken
	// before until without reading it again. A partly suspended
	// message (whole false) is only remembered so that it is taken at
	// until rather than at the next deferred scan.
	whole bool
}

// SuspensionsChanged tells the manager that a suspension started or
// ended: every message it holds back is looked at again now.
func (m *Manager) SuspensionsChanged() {
	m.trigMu.Lock()
	m.unparkAll = true
	m.trigMu.Unlock()
	m.poke()
}

// holdBack decides, before a message is taken, whether a suspension
// keeps it where it is. It reads the envelope only when a suspension is
// in force; the envelope it read, if any, is returned for activate.
func (m *Manager) holdBack(e spool.Entry, now time.Time) (keep bool, env *spool.Envelope) {
	if m.cfg.Suspensions == nil || !m.cfg.Suspensions.Any(now) {
		return false, nil
	}
	if p, ok := m.parked[e.ID]; ok && p.whole && p.queue == e.Queue && now.Before(p.until) {
		return true, nil
	}
	path := filepath.Join(m.sp.Root, e.Rel)
	fi, err := os.Lstat(path)
	if err != nil || !spool.IsReady(fi.Mode()) {
		// Gone, or still being written: skipped now, taken (and
		// checked) once it is ready. Letting take look again could
		// find it ready and deliver it without this check.
		return true, nil
	}
	if spool.IsForcedExpire(fi.Mode()) {
		return false, nil // postsuper -e: expiry is not delivery, it goes on
	}
	env, _, err = spool.ReadFile(path, spool.ReadOptions{SkipContent: true})
	if err != nil {
		return false, nil // activate reports it (corrupt, I/O)
	}
	until, all := m.suspendedUntil(now, e.ID, env)
	if !all {
		delete(m.parked, e.ID)
		return false, env
	}
	if _, was := m.parked[e.ID]; !was {
		m.log.Log("qmgr", "%s: delivery suspended until %s", e.ID, until.UTC().Format(time.RFC3339))
	}
	m.park(e.ID, e.Queue, until, true)
	return true, nil
}

// suspendedUntil reports whether every pending recipient of env is
// suspended, and the earliest end among them: then some recipient may
// be delivered again.
func (m *Manager) suspendedUntil(now time.Time, id string, env *spool.Envelope) (time.Time, bool) {
	pending := env.Pending()
	if len(pending) == 0 {
		return time.Time{}, false
	}
	var first time.Time
	for _, r := range pending {
		until, _, ok := m.cfg.Suspensions.Suspended(now, id, env, r.Address)
		if !ok {
			return time.Time{}, false
		}
		if first.IsZero() || until.Before(first) {
			first = until
		}
	}
	return first, true
}

func (m *Manager) park(id, queue string, until time.Time, whole bool) {
	if m.parked == nil {
		m.parked = map[string]parked{}
	}
	m.parked[id] = parked{queue: queue, until: until, whole: whole}
	m.schedule(event{when: until, kind: evSuspension})
}

// unpark takes the parked messages whose time has come (all of them when
// all is set: the set of suspensions changed). take reads each again and
// parks it anew if it is still suspended.
func (m *Manager) unpark(now time.Time, all bool) {
	var entries []spool.Entry
	for id, p := range m.parked {
		if all || !now.Before(p.until) {
			entries = append(entries, spool.Entry{Queue: p.queue, ID: id, Rel: m.sp.RelPath(p.queue, id)})
			delete(m.parked, id)
		}
	}
	if len(entries) > 0 {
		m.take(entries)
	}
}

// splitSuspended removes the suspended recipients from pending, when a
// suspension is in force, and returns them grouped by reason.
func (m *Manager) splitSuspended(msg *message, pending []spool.Recipient, now time.Time) ([]spool.Recipient, map[string][]spool.Recipient) {
	if m.cfg.Suspensions == nil || !m.cfg.Suspensions.Any(now) {
		return pending, nil
	}
	var held map[string][]spool.Recipient
	keep := pending[:0:0]
	for _, r := range pending {
		until, why, ok := m.cfg.Suspensions.Suspended(now, msg.id, msg.env, r.Address)
		if !ok {
			keep = append(keep, r)
			continue
		}
		if held == nil {
			held = map[string][]spool.Recipient{}
		}
		held[why] = append(held[why], r)
		if msg.suspendUntil.IsZero() || until.Before(msg.suspendUntil) {
			msg.suspendUntil = until
		}
	}
	return keep, held
}

// suspendQueued looks at a queued delivery just before it starts: its
// recipients suspended since it was queued are deferred instead (in a
// delivery of their own, started here), and j keeps the others; when
// none are left, j itself becomes that deferral.
func (m *Manager) suspendQueued(j *job) {
	if j.suspended != "" {
		return
	}
	free, held := m.splitSuspended(j.msg, j.rcpts, m.clk.Now())
	if len(held) == 0 {
		return
	}
	j.rcpts = free
	for why, rs := range held {
		if len(j.rcpts) == 0 {
			j.rcpts, j.suspended, j.suspendedDSN = rs, why, suspendedDSN
			continue
		}
		j.msg.jobs++
		m.start(&job{msg: j.msg, dest: j.dest, rcpts: rs, suspended: why, suspendedDSN: suspendedDSN})
	}
}

// suspendedDSN is the status of a recipient deferred by a suspension:
// RFC 3463 X.3.2, "system not accepting network messages" — the
// administrator said so.
const suspendedDSN = "4.3.2"
