package qmgr

import (
	"context"
	"time"

	evt "sluice/internal/event"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// Deliverer hands one message's recipients for one next hop to a peer
// and says what became of each. The SMTP client is one; tests use fakes.
type Deliverer interface {
	Deliver(ctx context.Context, d *Delivery) []Result
}

// Delivery is one delivery request.
type Delivery struct {
	QueueID    string
	Path       string // the queue file, in active/
	Nexthop    string // relayhost or the recipients' domain; LocalNexthop for local delivery
	Transport  string // "local" or "smtp": which deliverer, and the mail log's service name
	Envelope   *spool.Envelope
	Recipients []spool.Recipient // all for Nexthop, sorted
	// Image is the queue file as cleanup wrote it, to read the text
	// from (spool.ContentOf); nil when the file must be read.
	Image []byte
}

// Status is what became of one recipient.
type Status int

// The outcomes of a delivery attempt for one recipient.
const (
	Sent     Status = iota // the peer accepted it (2xx)
	Deferred               // try again later (4xx, no connection, DNS, unknown)
	Bounced                // the peer refused it for good (5xx)
)

func (s Status) String() string {
	switch s {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Bounced:
		return "bounced"
	}
	return "unknown"
}

// Result is the outcome for one recipient of a Delivery.
type Result struct {
	Offset  int64  // the recipient's R record offset: which recipient this is
	Status  Status //
	DSN     string // enhanced status code, e.g. 2.0.0, 4.4.1, 5.1.1
	Reason  string // for the log, defer log and mailq: "host x[1.2.3.4] said: 550 ..." or "connect to ...: Connection refused"
	Relay   string // "host[addr]:port", or "" when no server was reached
	ConnUse int    // uses of the connection, counting this one
	// Setup is connection setup (DNS, connect, HELO, TLS); Transfer is
	// the rest of the transaction.
	Setup, Transfer time.Duration
	// DiagText is the peer's reply, e.g. "550 5.1.1 No such user", when a
	// peer gave one; RemoteMTA the name of that peer. Both go into DSNs.
	DiagText  string
	RemoteMTA string
	// Class is the reason class of a failure (event.Classify), decided
	// by the deliverer from the structured reply or error. When it is
	// empty, qmgr decides it from DSN, DiagText and Reason with
	// event.LogFailure, as the model does from a defer log.
	Class string
	// Finals, when set, are logged in place of the recipient's one line:
	// the final deliveries that local aliases and .forward files made of
	// it (to=<root@host>, orig_to=<postmaster@host>, ...).
	Finals []Final
}

// Final is one final delivery of an expanded recipient, for the log.
type Final struct {
	To     string
	Status Status
	DSN    string
	Reason string
}

// job is one delivery: a message's recipients for one destination.
type job struct {
	msg   *message
	dest  *destination
	rcpts []spool.Recipient

	suspended    string // when non-empty the destination is dead: defer with this reason, no connection
	suspendedDSN string

	// Filled in by the worker.
	sent, deferred, bounced int
	siteFailure             bool // no server reached: the destination is dead
	aborted                 bool // cut short by shutdown
	failReason, failDSN     string
}

// start runs a delivery on its own goroutine.
func (m *Manager) start(j *job) {
	if j.suspended == "" {
		j.dest.running++
		m.inFlight++
	}
	m.wg.Add(1)
	m.stats.deliveries.Add(1)
	handoff := m.clk.Now()
	m.workers.Go(func() {
		m.deliver(m.jobCtx, j, handoff)
		m.done <- j
	})
}

// deliver runs on the worker goroutine: it asks the Deliverer, then
// writes what became of each recipient to the queue file, the defer and
// bounce logs, and the mail log.
func (m *Manager) deliver(ctx context.Context, j *job, handoff time.Time) {
	msg := j.msg
	var results []Result
	service := "smtp"
	if j.dest.name == LocalNexthop {
		service = "local"
	}
	if j.suspended != "" {
		service = "error"
		dsn := j.suspendedDSN
		if dsn == "" {
			dsn = "4.4.1"
		}
		for _, r := range j.rcpts {
			results = append(results, Result{Offset: r.Offset, Status: Deferred, DSN: dsn, Reason: "delivery temporarily suspended: " + j.suspended})
		}
	} else {
		results = m.cfg.Deliverer.Deliver(ctx, &Delivery{
			QueueID: msg.id, Path: msg.path, Nexthop: j.dest.name, Transport: service, Envelope: msg.env, Recipients: j.rcpts, Image: msg.imageBytes(),
		})
	}
	byOffset := make(map[int64]*Result, len(results))
	for i := range results {
		byOffset[results[i].Offset] = &results[i]
	}
	aborted := ctx.Err() != nil
	j.aborted = aborted
	now := m.clk.Now()
	var deferLog, bounceLog []spool.LogEntry
	var done []int64
	var lines []maillog.Delivery
	var events []evt.Event
	reached := false
	for _, rc := range j.rcpts {
		r := byOffset[rc.Offset]
		if r == nil {
			// A recipient the deliverer said nothing about: unknown
			// errors count as temporary.
			r = &Result{Offset: rc.Offset, Status: Deferred, DSN: "4.3.0", Reason: "mail system error: no delivery result"}
		}
		if r.Relay != "" || r.Status != Deferred {
			reached = true
		}
		if r.Status == Deferred && aborted {
			continue // cut short by shutdown: not an attempt worth recording
		}
		class := ""
		if r.Status != Sent {
			class = r.Class
			if j.suspended != "" {
				class = evt.ClassSuspended
			}
			if class == "" {
				diagType := ""
				if r.DiagText != "" {
					diagType = "smtp"
				}
				class = evt.Classify(evt.LogFailure(r.DSN, diagType, r.DiagText, r.Reason))
			}
		}
		entry := spool.LogEntry{
			Recipient: spool.QuoteAddress(rc.Address), OrigRcpt: rc.Orig, Offset: rc.Offset, DSNOrigRcpt: rc.DSNOrig,
			NotifyFlags: rc.Notify, Status: r.DSN, Reason: r.Reason,
		}
		if r.DiagText != "" {
			entry.DiagType, entry.DiagText = "smtp", r.DiagText
		}
		if r.RemoteMTA != "" {
			entry.MTAType, entry.MTAName = "dns", r.RemoteMTA
		}
		switch r.Status {
		case Sent:
			done = append(done, rc.Offset)
			j.sent++
		case Bounced:
			entry.Action = "failed"
			bounceLog = append(bounceLog, entry)
			done = append(done, rc.Offset)
			j.bounced++
		default:
			entry.Action = "delayed"
			deferLog = append(deferLog, entry)
			j.deferred++
			if j.failReason == "" {
				j.failReason, j.failDSN = r.Reason, r.DSN
			}
		}
		line := maillog.Delivery{
			QueueID: msg.id, To: rc.Address, OrigTo: rc.Orig, Relay: r.Relay, ConnUse: r.ConnUse,
			Delay:  now.Sub(msg.arrival),
			Delays: [4]time.Duration{msg.activeAt.Sub(msg.arrival), handoff.Sub(msg.activeAt), r.Setup, r.Transfer},
			DSN:    r.DSN, Status: r.Status.String(), Text: r.Reason,
		}
		events = append(events, attemptEvent(msg.id, now, service, line, rc.Offset, class, r))
		if len(r.Finals) == 0 {
			lines = append(lines, line)
		}
		for _, f := range r.Finals {
			l := line
			l.To, l.DSN, l.Status, l.Text = f.To, f.DSN, f.Status.String(), f.Reason
			if l.OrigTo == "" {
				l.OrigTo = rc.Address
			}
			lines = append(lines, l)
		}
	}
	j.siteFailure = j.suspended == "" && !reached && j.deferred > 0 && !aborted
	// The bounce log first, then the D marks: a crash in between
	// bounces a recipient twice at worst, never loses the bounce.
	if len(bounceLog) > 0 {
		if err := m.sp.AppendLog(spool.Bounce, msg.id, bounceLog...); err != nil {
			m.log.Warn("qmgr", "%s: %v", msg.id, err)
		}
	}
	for _, off := range done {
		if err := msg.kept.MarkDone(msg.path, off, false); err != nil {
			m.log.Warn("qmgr", "%s: %v", msg.id, err)
		}
	}
	if len(deferLog) > 0 {
		if err := m.sp.AppendLog(spool.Defer, msg.id, deferLog...); err != nil {
			m.log.Warn("qmgr", "%s: %v", msg.id, err)
		}
	}
	if j.deferred > 0 || j.bounced > 0 {
		// sluice's own attempt history (spool.History) for "why is it
		// stuck"; a first-time success needs none, its file is removed.
		hist := make([]spool.Attempt, len(lines))
		for i, l := range lines {
			hist[i] = spool.Attempt{Time: now, Arrival: msg.arrival.Unix(), Recipient: l.To, Relay: l.Relay, Status: l.Status, DSN: l.DSN, Reason: l.Text}
			if hist[i].Relay == "" {
				hist[i].Relay = "none"
			}
		}
		if err := m.sp.AppendHistory(msg.id, hist...); err != nil {
			m.log.Warn("qmgr", "%s: %v", msg.id, err)
		}
	}
	for _, e := range events {
		m.publish(e)
	}
}

// attemptEvent is the event of one recipient's outcome; line is its
// delivery line as the mail log prints it.
func attemptEvent(id string, now time.Time, service string, line maillog.Delivery, offset int64, class string, r *Result) evt.Event {
	a := evt.Attempt{
		ID: id, Time: now, Service: service, To: line.To, OrigTo: line.OrigTo, Offset: offset,
		Relay: line.Relay, ConnUse: line.ConnUse, Delay: line.Delay, Delays: line.Delays,
		DSN: line.DSN, Reason: line.Text, Class: class,
	}
	for _, f := range r.Finals {
		a.Finals = append(a.Finals, evt.Final{To: f.To, Status: f.Status.String(), DSN: f.DSN, Reason: f.Reason})
	}
	switch r.Status {
	case Sent:
		return &evt.Sent{Attempt: a}
	case Bounced:
		return &evt.Bounced{Attempt: a}
	}
	return &evt.Deferred{Attempt: a}
}

// jobDone runs on the loop when a delivery has ended.
func (m *Manager) jobDone(j *job) {
	m.jobEnded(j)
}

func (m *Manager) jobEnded(j *job) {
	defer m.wg.Done()
	m.stats.deliveries.Add(-1)
	d, msg := j.dest, j.msg
	if j.suspended == "" {
		d.running--
		m.inFlight--
		switch {
		case j.siteFailure:
			if !d.dead() {
				m.throttle(d, j.failReason, j.failDSN, m.clk.Now().Add(m.cfg.MinBackoff))
			}
		case j.sent > 0 || j.bounced > 0:
			m.success(d)
		}
	}
	msg.aborted = msg.aborted || j.aborted
	msg.sent += j.sent
	msg.deferred += j.deferred
	msg.bounced += j.bounced
	msg.jobs--
	if msg.jobs == 0 {
		if msg.acquired {
			for _, w := range msg.waiters {
				close(w)
			}
			msg.waiters = nil
			return
		}
		m.startFinish(msg)
	}
}
