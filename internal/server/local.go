package server

import (
	"context"
	"io"

	"sluice/internal/cleanup"
	"sluice/internal/config"
	"sluice/internal/local"
	"sluice/internal/qmgr"
	"sluice/internal/spool"
)

// newLocal makes the local delivery agent; its forwarded copies are
// queued through cleanup like any local submission.
func (s *Server) newLocal(c *config.Config) (*local.Agent, error) {
	cfg, err := local.FromConfig(c)
	if err != nil {
		return nil, err
	}
	cfg.Users = s.opt.Users
	cfg.Now = s.clk.Now
	cfg.Warn = func(f string, a ...any) { s.log.Warn("local", f, a...) }
	cfg.Forward = func(ctx context.Context, sender string, rcpts []string, r io.Reader) (string, error) {
		m := &cleanup.Message{Sender: sender}
		for _, rc := range rcpts {
			m.Recipients = append(m.Recipients, cleanup.Recipient{Address: rc})
		}
		return s.clean.Load().Submit(ctx, m, r)
	}
	return local.New(cfg)
}

// router sends each delivery to the local agent or the SMTP client, by
// the transport the queue manager chose.
type router struct {
	smtp qmgr.Deliverer
	s    *Server // its local agent, the one of the latest configuration
}

func (r *router) Deliver(ctx context.Context, req *qmgr.Delivery) []qmgr.Result {
	if req.Transport != "local" {
		return r.smtp.Deliver(ctx, req)
	}
	m := &local.Message{
		QueueID: req.QueueID,
		Sender:  req.Envelope.Sender,
		Open:    func() (io.ReadCloser, error) { return spool.OpenContent(req.Path) },
	}
	for _, rc := range req.Recipients {
		m.Recipients = append(m.Recipients, local.Recipient{Address: rc.Address, Orig: rc.Orig})
	}
	res := r.s.local.Load().Deliver(ctx, m)
	out := make([]qmgr.Result, len(res))
	for i, lr := range res {
		q := qmgr.Result{Offset: req.Recipients[i].Offset, Status: qmgrStatus(lr.Status), DSN: lr.DSN, Reason: lr.Reason, Relay: "local"}
		for _, f := range lr.Finals {
			q.Finals = append(q.Finals, qmgr.Final{To: f.To, Status: qmgrStatus(f.Status), DSN: f.DSN, Reason: f.Text})
		}
		out[i] = q
	}
	return out
}

func qmgrStatus(s local.Status) qmgr.Status {
	switch s {
	case local.Sent:
		return qmgr.Sent
	case local.Bounced:
		return qmgr.Bounced
	}
	return qmgr.Deferred
}

// Local returns the local delivery agent: smtpd's RCPT check calls its
// KnownRecipient (local_recipient_maps).
func (s *Server) Local() *local.Agent { return s.local.Load() }
