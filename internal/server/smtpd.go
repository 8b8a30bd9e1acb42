package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/config"
	"sluice/internal/milter"
	"sluice/internal/pickup"
	"sluice/internal/smtpd"
)

// smtpdGen is one generation of SMTP servers, one per smtpd service
// (smtp, submission, smtps): the one built at start, or one built by a
// reload. A reload starts a new generation on the daemon's sockets and
// lets the previous one finish its sessions with the configuration they
// began with, as Postfix's old smtpd processes do after postfix reload.
type smtpdGen struct {
	srvs     []*smtpd.Server
	handoffs map[string]*handoff // by configured address
	timeout  time.Duration       // smtpd_timeout: how long a session may idle
	served   chan struct{}       // closed when every Serve has returned
	cut      chan struct{}       // closed to end the drain at once
	cutOnce  sync.Once
}

// newGen builds (but does not start) the SMTP servers for cfg's
// services, fed by ports.
func (s *Server) newGen(cfg *config.Config, set *settings, clean *cleanup.Cleanup, ports map[string]*port) (*smtpdGen, error) {
	g := &smtpdGen{handoffs: map[string]*handoff{}, served: make(chan struct{}), cut: make(chan struct{})}
	for _, svc := range set.services {
		scfg, err := smtpd.FromConfig(svc.Config)
		if err != nil {
			if svc.Name != "smtp" {
				err = fmt.Errorf("%s service: %w", svc.Name, err)
			}
			return nil, err
		}
		if scfg.Timeout > g.timeout {
			g.timeout = scfg.Timeout
		}
		if svc.Name != "smtp" {
			scfg.Service = svc.Name + "/smtpd"
		}
		scfg.Listen = nil
		scfg.Listeners = nil
		for _, a := range svc.Listen {
			p := ports[a]
			if p == nil || g.handoffs[a] != nil {
				continue
			}
			h := newHandoff(p.ln.Addr())
			g.handoffs[a] = h
			scfg.Listeners = append(scfg.Listeners, s.stats.Listener(h))
		}
		if len(scfg.Listeners) == 0 {
			continue
		}
		scfg.Cleanup, scfg.Log = clean, s.log
		scfg.KnownRecipient = func(addr string) (bool, error) { return s.local.Load().KnownRecipient(addr) }
		scfg.FlushSite = s.flushSiteAsync
		scfg.Submit = s.stats.Submit(s.submitter(clean))
		srv, err := smtpd.New(scfg)
		if err != nil {
			return nil, err
		}
		g.srvs = append(g.srvs, srv)
	}
	return g, nil
}

// serve starts the servers and points the ports at them.
func (s *Server) serveGen(g *smtpdGen, ports []*port) {
	var wg sync.WaitGroup
	for _, srv := range g.srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(context.Background()); err != nil {
				s.log.Warn("smtpd", "%v", err)
			}
		}()
	}
	go func() { wg.Wait(); close(g.served) }()
	for _, p := range ports {
		p.attach(g.handoffs[p.addr])
	}
}

// drain stops the servers' accepting and waits for their sessions to
// end: for at most wait, or until cut. Sessions still open then are
// dropped; a message whose data was being received then gets no 250 and
// is not queued, so its client still has it.
func (g *smtpdGen) drain(wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		select {
		case <-g.cut:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, h := range g.handoffs {
		h.Close()
	}
	var wg sync.WaitGroup
	for _, srv := range g.srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
	<-g.served
}

func (g *smtpdGen) cutNow() { g.cutOnce.Do(func() { close(g.cut) }) }

// pickupRun is pickup on maildrop/ (sluice sendmail's path) with one
// cleanup; a reload replaces it.
type pickupRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startPickup(clean *cleanup.Cleanup, cfg *config.Config) *pickupRun {
	pc := pickup.Config{Spool: s.sp, Cleanup: clean, Log: s.log}
	// non_smtpd_milters: a bad list was refused when smtpd read its own.
	if mc, err := milter.FromConfig(cfg, "non_smtpd_milters"); err != nil {
		s.log.Warn("pickup", "%v", err)
	} else if len(mc.Milters) > 0 {
		pc.Milters = &mc
	}
	p := pickup.New(pc)
	ctx, cancel := context.WithCancel(context.Background())
	r := &pickupRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := p.Run(ctx); err != nil {
			s.log.Warn("pickup", "%v", err)
		}
	}()
	return r
}

// stop ends pickup between files: a maildrop file is removed only after
// its queue file is committed, so a file cut short is picked up again.
func (r *pickupRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// flushSiteAsync is ETRN's flush of one domain's deferred mail. It scans
// the deferred queue, so at most one runs at a time: an ETRN while one
// runs is answered all the same, and the running scan serves it.
func (s *Server) flushSiteAsync(site string) {
	if !s.etrnBusy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.etrnBusy.Store(false)
		if _, err := s.qm.FlushSite(site); err != nil {
			s.log.Warn("smtpd", "ETRN %s: %v", site, err)
		}
	}()
}
