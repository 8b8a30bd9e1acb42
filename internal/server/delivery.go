package server

import (
	"context"
	"io"
	"net"
	"strings"
	"time"

	"sluice/internal/qmgr"
	"sluice/internal/smtp"
	"sluice/internal/spool"
)

// smtpDeliverer adapts the SMTP client to the queue manager.
type smtpDeliverer struct{ c *smtp.Client }

func (s *Server) newDeliverer() (qmgr.Deliverer, error) {
	var res smtp.Resolver = net.DefaultResolver
	if s.opt.Resolver != nil {
		res = s.opt.Resolver
	}
	return &smtpDeliverer{c: &smtp.Client{
		Resolver:       res,
		HeloName:       s.set.myHostname,
		RelayHost:      s.set.relayHost,
		Port:           s.opt.SMTPPort,
		ConnectTimeout: s.set.connectTimeout,
		TLSLevel:       s.set.tlsLevel,
		// Loop detection (see smtp/loop.go).
		MyHostname: s.set.myHostname,
		IsSelf:     s.isSelf,
		Warn:       func(f string, a ...any) { s.log.Warn("smtp", f, a...) },
		// Keep connections for the next message to the same place, as
		// Postfix's connection cache does for busy destinations.
		MaxIdle: 2 * time.Second,
	}}, nil
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
			return spool.OpenContent(req.Path)
		},
	}
	if v, ok := env.Attr("encoding"); ok && v == "8bit" {
		m.EightBit = true
	}
	for _, r := range req.Recipients {
		m.Recipients = append(m.Recipients, smtp.Recipient{Address: r.Address, ORCPT: r.DSNOrig, Notify: r.Notify, Offset: r.Offset})
	}
	results := d.c.Deliver(ctx, req.Nexthop, m)
	out := make([]qmgr.Result, 0, len(results))
	for _, r := range results {
		q := qmgr.Result{
			Offset: r.Recipient.Offset, DSN: r.DSN, Reason: r.Reason, ConnUse: r.ConnUse,
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
