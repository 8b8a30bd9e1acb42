package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"sluice/internal/smtpd"
)

// startSMTPD opens the smtpd_listen addresses and serves them.
func (s *Server) startSMTPD(in *intake) error {
	nets, err := smtpd.ParseNetworks(s.set.mynetworks)
	if err != nil {
		return fmt.Errorf("mynetworks: %w", err)
	}
	var tlsConf *tls.Config
	if cert, key := s.opt.Config.Get("smtpd_tls_cert_file"), s.opt.Config.Get("smtpd_tls_key_file"); cert != "" && key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("smtpd_tls_cert_file: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	srv, err := smtpd.New(smtpd.Config{
		Listen:           s.set.listen,
		Hostname:         s.set.myHostname,
		MyOrigin:         s.set.myOrigin,
		MyNetworks:       nets,
		RelayDomains:     s.opt.Config.List("relay_domains"),
		MessageSizeLimit: s.set.sizeLimit,
		Cleanup:          s.clean,
		Log:              s.log,
		TLS:              tlsConf,
	})
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

// startPickup starts pickup on maildrop/. (Wired to internal/pickup when
// it lands.)
func (s *Server) startPickup(in *intake) error { return nil }
