package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"sluice/internal/cleanup"
	"sluice/internal/config"
	"sluice/internal/local"
	"sluice/internal/privsep"
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
// the transport the queue manager chose. Under a root master the local
// agent runs in `sluice local-deliver`, as root, one process per
// delivery (deliverByMaster); otherwise in this process, which delivers
// as any user when it is root and as itself only when it is not.
type router struct {
	smtp qmgr.Deliverer
	s    *Server // its local agent, the one of the latest configuration
}

func (r *router) Deliver(ctx context.Context, req *qmgr.Delivery) []qmgr.Result {
	if req.Transport != "local" {
		return r.smtp.Deliver(ctx, req)
	}
	if r.s.opt.LocalMaster != nil {
		return r.s.deliverByMaster(ctx, req)
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

// deliverByMaster hands a local delivery to the root master, which runs
// `sluice local-deliver` on the queue file opened here (read-only) and
// the request (package privsep, deliver.go); what it reports is logged
// here, as in-process deliveries are. A request that fails as a whole
// (refused, the helper died, the daemon stopping) defers its recipients.
func (s *Server) deliverByMaster(ctx context.Context, req *qmgr.Delivery) []qmgr.Result {
	out := make([]qmgr.Result, len(req.Recipients))
	for i, rc := range req.Recipients {
		out[i] = qmgr.Result{Offset: rc.Offset, Status: qmgr.Deferred, DSN: "4.3.0", Relay: "local"}
	}
	f, err := os.Open(req.Path)
	if err != nil {
		for i := range out {
			out[i].Reason = fmt.Sprintf("cannot open queue file: %v", err)
		}
		return out
	}
	defer f.Close()
	rcpts := make([]privsep.DeliveryRecipient, len(req.Recipients))
	for i, rc := range req.Recipients {
		rcpts[i] = privsep.DeliveryRecipient{Address: rc.Address, Orig: rc.Orig}
	}
	done := 0
	for _, batch := range privsep.RequestBatches(rcpts) {
		res := out[done : done+len(batch)]
		done += len(batch)
		o, err := s.opt.LocalMaster.Deliver(ctx, privsep.DeliveryRequest{QueueID: req.QueueID, Sender: req.Envelope.Sender, Recipients: batch}, f)
		if err != nil {
			if ctx.Err() != nil {
				err = errors.New("delivery interrupted")
			}
			for i := range res {
				res[i].Reason = err.Error()
			}
			continue
		}
		for _, w := range o.Warnings {
			s.log.Warn("local", "%s", w)
		}
		for i, lr := range o.Results {
			q := &res[i]
			q.Status, q.DSN, q.Reason = wireStatus(lr.Status), lr.DSN, lr.Reason
			for _, f := range lr.Finals {
				q.Finals = append(q.Finals, qmgr.Final{To: f.To, Status: wireStatus(f.Status), DSN: f.DSN, Reason: f.Text})
			}
		}
	}
	return out
}

// wireStatus reads a status local-deliver reported; anything else than
// sent or bounced defers.
func wireStatus(s string) qmgr.Status {
	switch s {
	case local.Sent.String():
		return qmgr.Sent
	case local.Bounced.String():
		return qmgr.Bounced
	}
	return qmgr.Deferred
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
