package server

import (
	"context"
	"io"
	"strings"
	"sync/atomic"

	"sluice/internal/qmgr"
	"sluice/internal/smtp"
	"sluice/internal/spool"
)

// smtpDeliverer adapts the SMTP client to the queue manager. The client
// is swapped on reload.
type smtpDeliverer struct{ c atomic.Pointer[smtp.Client] }

// swap makes c the client of new deliveries and closes the old one's
// idle connections (its deliveries in flight go on).
func (d *smtpDeliverer) swap(c *smtp.Client) {
	if old := d.c.Swap(c); old != nil {
		old.Close()
	}
}

func (d *smtpDeliverer) Deliver(ctx context.Context, req *qmgr.Delivery) []qmgr.Result {
	env := req.Envelope
	m := &smtp.Message{
		QueueID:  req.QueueID,
		Sender:   env.Sender,
		Size:     size(env),
		SMTPUTF8: env.Size.SMTPUTF8 != 0,
		EnvID:    env.DSNEnvID,
		Ret:      env.DSNRet,
		Open: func() (io.ReadCloser, error) {
			if req.Image != nil {
				return spool.ContentWith(req.Image, env)
			}
			return spool.OpenContent(req.Path)
		},
	}
	if v, ok := env.Attr("encoding"); ok && v == "8bit" {
		m.EightBit = true
	}
	for _, r := range req.Recipients {
		m.Recipients = append(m.Recipients, smtp.Recipient{Address: r.Address, ORCPT: r.DSNOrig, Notify: r.Notify, Offset: r.Offset})
	}
	results := d.c.Load().Deliver(ctx, req.Nexthop, m)
	out := make([]qmgr.Result, 0, len(results))
	for _, r := range results {
		q := qmgr.Result{
			Offset: r.Recipient.Offset, DSN: r.DSN, Reason: r.Reason, ConnUse: r.ConnUse, Class: r.Class,
			Setup: r.Delays[0], Transfer: r.Delays[1],
		}
		if r.Relay != "none" {
			q.Relay = r.Relay
		}
		switch r.Status {
		case smtp.Sent:
			q.Status = qmgr.Sent
		case smtp.Bounced:
			q.Status = qmgr.Bounced
		default:
			q.Status = qmgr.Deferred
		}
		q.DiagText, q.RemoteMTA = diagnostic(r.Reason, r.Relay)
		out = append(out, q)
	}
	return out
}

func size(env *spool.Envelope) int64 {
	if env.Size.ContentLen > 0 {
		return env.Size.ContentLen
	}
	return env.Size.MessageLen
}

// diagnostic takes the peer's reply and name out of a Postfix-style
// reason ("host mx[1.2.3.4] said: 550 5.1.1 no (in reply to RCPT TO
// command)"), for the DSN's Diagnostic-Code and Remote-MTA fields.
func diagnostic(reason, relay string) (text, mta string) {
	if i := strings.Index(reason, " said: "); i >= 0 {
		text = reason[i+len(" said: "):]
		if j := strings.LastIndex(text, " (in reply to "); j >= 0 {
			text = text[:j]
		}
	}
	if relay != "" && relay != "none" {
		if i := strings.IndexByte(relay, '['); i > 0 {
			mta = relay[:i]
		}
	}
	return text, mta
}
