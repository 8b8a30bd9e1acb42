package server

import (
	"context"
	"net/http"

	"sluice/internal/httpapi"
	"sluice/internal/manage"
	"sluice/internal/queuesvc"
	"sluice/internal/smtp"
)

// manageQueue is the spool as manage sees it inside the daemon: actions
// wait for the queue manager (its coordinator) and publish their events
// on the bus, where the model and the mail log (postsuper's lines) take
// them.
func (s *Server) manageQueue() *manage.Queue {
	return &manage.Queue{
		Spool: s.sp, Now: s.clk.Now, Coord: s.qm, Events: s.events,
		Warn: func(f string, a ...any) { s.log.Warn("qmgr", f, a...) },
		Log:  func(svc, f string, a ...any) { s.log.Log(svc, f, a...) },
	}
}

// queueService answers the queue's views from the model and runs
// actions through manageQueue (package queuesvc).
func (s *Server) queueService() *queuesvc.Service {
	return &queuesvc.Service{
		Queue: s.manageQueue(), Model: s.model, Now: s.clk.Now,
		MaxLifetime: s.set.maxLifetime, BounceLifetime: s.set.bounceLifetime,
	}
}

// apiHandler is the one API handler set, served both by the HTTP
// listener (bearer token) and on the control socket (peer uid).
func (s *Server) apiHandler() http.Handler {
	return httpapi.API(httpapi.Backend{
		Probe: func(ctx context.Context, target string, opt smtp.ProbeOptions) *smtp.ProbeReport {
			return s.deliv.c.Load().Probe(ctx, target, opt)
		},
		Flush:       s.qm.FlushAll,
		Queue:       s.queueService(),
		Suspensions: s.susp, AuditPath: s.auditPath(),
		Events: s.stream,
	})
}
