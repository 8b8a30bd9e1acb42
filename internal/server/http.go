package server

import (
	"context"
	"time"

	"sluice/internal/httpapi"
)

// startHTTP opens the HTTP API, metrics and dashboard listener (packages
// httpapi and dashboard) when sluice_http_listen is set. A listener that cannot start — the
// address is taken, the token file cannot be made — is a warning: mail
// keeps flowing without the API.
func (s *Server) startHTTP() {
	cfg := httpapi.FromConfig(s.cfg)
	if cfg.Listen == "" {
		return
	}
	token, err := httpapi.LoadToken(cfg.TokenFile)
	if err != nil {
		s.log.Warn("master", "HTTP API disabled: sluice_http_token_file: %v", err)
		return
	}
	s.metrics = httpapi.NewRegistry()
	s.stats.Register(s.metrics)
	api := s.apiHandler()
	dash, err := s.newDashboard(token, cfg.CertFile != "")
	if err != nil {
		s.log.Warn("master", "HTTP API disabled: dashboard: %v", err)
		return
	}
	srv, err := httpapi.Start(cfg, nil, httpapi.Handler(cfg, token, api, httpapi.MetricsHandler(s.metrics), dash))
	if err != nil {
		s.log.Warn("master", "HTTP API disabled: %v", err)
		return
	}
	s.http = srv
	s.log.Log("master", "HTTP API and metrics on %s", srv.Addr())
}

// stopHTTP ends the HTTP listener, giving requests in flight a moment.
func (s *Server) stopHTTP() {
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.http.Shutdown(ctx)
}

// HTTPAddr is where the HTTP API listens, "" when it does not.
func (s *Server) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.Addr().String()
}
