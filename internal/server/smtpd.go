package server

import (
	"context"
	"time"

	"sluice/internal/pickup"
	"sluice/internal/smtpd"
)

// startSMTPD opens the smtpd_listen addresses and serves them.
func (s *Server) startSMTPD(in *intake) error {
	cfg, err := smtpd.FromConfig(s.opt.Config)
	if err != nil {
		return err
	}
	cfg.Cleanup, cfg.Log = s.clean, s.log
	if err := s.inheritListeners(&cfg); err != nil {
		return err
	}
	srv, err := smtpd.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	in.listens = srv.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx); err != nil {
			s.log.Warn("smtpd", "%v", err)
		}
	}()
	in.stops = append(in.stops, func(stopCtx context.Context) {
		// Stop accepting; sessions in progress may finish their
		// transaction for a few seconds, then they are cut.
		sctx, scancel := context.WithTimeout(stopCtx, 3*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		cancel()
		<-done
	})
	return nil
}

// startPickup runs pickup on maildrop/ (sluice sendmail's path).
func (s *Server) startPickup(in *intake) error {
	p := pickup.New(pickup.Config{Spool: s.sp, Cleanup: s.clean, Log: s.log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			s.log.Warn("pickup", "%v", err)
		}
	}()
	in.stops = append(in.stops, func(context.Context) {
		cancel()
		<-done
	})
	return nil
}
