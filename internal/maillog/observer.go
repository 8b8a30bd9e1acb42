package maillog

import "sluice/internal/event"

// Observe makes the Logger a subscriber of the events (package event):
// it writes the lines Postfix's programs write for them. Delivery
// outcomes become delivery lines (one per final delivery of an expanded
// recipient), a message taken into active/ the qmgr's "from=<>, size=,
// nrcpt= (queue active)" line, and the lifetime and action events their
// one-line notes. Events without a line of their own (Received, Moved,
// Corrupt, whose warnings are written where they happen) write nothing.
func (l *Logger) Observe(e event.Event) {
	if l == nil {
		return
	}
	switch e := e.(type) {
	case *event.Sent:
		l.attempt(&e.Attempt, "sent")
	case *event.Deferred:
		l.attempt(&e.Attempt, "deferred")
	case *event.Bounced:
		l.attempt(&e.Attempt, "bounced")
	case *event.Activated:
		l.Log("qmgr", "%s: from=<%s>, size=%d, nrcpt=%d (queue active)", e.ID, e.Sender, e.Size, e.Nrcpt)
	case *event.Expired:
		status := "expired"
		if e.Forced {
			status = "force-expired"
		}
		l.Log("qmgr", "%s: from=<%s>, status=%s, returned to sender", e.ID, e.Sender, status)
	case *event.Deleted:
		l.Log(service(e.Service, "qmgr"), "%s: removed", e.ID)
	case *event.Held:
		l.Log(service(e.Service, "postsuper"), "%s: placed on hold", e.ID)
	case *event.Released:
		l.Log(service(e.Service, "postsuper"), "%s: released from hold", e.ID)
	case *event.Requeued:
		l.Log(service(e.Service, "postsuper"), "%s: requeued", e.ID)
	case *event.Notified:
		l.Log("bounce", "%s: sender %s notification: %s", e.ID, e.Kind, e.NoticeID)
	}
}

func service(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// attempt writes the delivery lines of one recipient's attempt.
func (l *Logger) attempt(a *event.Attempt, status string) {
	d := Delivery{
		QueueID: a.ID, To: a.To, OrigTo: a.OrigTo, Relay: a.Relay, ConnUse: a.ConnUse,
		Delay: a.Delay, Delays: a.Delays, DSN: a.DSN, Status: status, Text: a.Reason,
	}
	if len(a.Finals) == 0 {
		l.Delivery(a.Service, d)
		return
	}
	for _, f := range a.Finals {
		fd := d
		fd.To, fd.DSN, fd.Status, fd.Text = f.To, f.DSN, f.Status, f.Reason
		if fd.OrigTo == "" {
			fd.OrigTo = a.To
		}
		l.Delivery(a.Service, fd)
	}
}
