package server

import (
	"net"
	"time"

	"sluice/internal/smtp"
)

// newSMTPClient is the delivery client for settings set. A reload makes a
// new one; deliveries in flight finish on the one they began with.
func (s *Server) newSMTPClient(set *settings) *smtp.Client {
	var res smtp.Resolver = net.DefaultResolver
	if s.opt.Resolver != nil {
		res = s.opt.Resolver
	}
	return &smtp.Client{
		Resolver:       res,
		HeloName:       set.myHostname,
		RelayHost:      set.relayHost,
		Port:           s.opt.SMTPPort,
		ConnectTimeout: set.connectTimeout,
		TLSLevel:       set.tlsLevel,
		// Loop detection (see smtp/loop.go).
		MyHostname: set.myHostname,
		IsSelf:     s.isSelf,
		Warn:       func(f string, a ...any) { s.log.Warn("smtp", f, a...) },
		// Keep connections for the next message to the same place, as
		// Postfix's connection cache does for busy destinations.
		MaxIdle: 2 * time.Second,
	}
}
