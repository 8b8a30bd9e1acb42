// Package httpapi is sluice serve's HTTP listener: the queue API under
// /api/v1/ and Prometheus metrics at /metrics.
//
// It listens on sluice_http_listen (off when empty; the embedded default
// is 127.0.0.1:8025), over TLS when sluice_http_tls_cert_file and
// sluice_http_tls_key_file are set. Every /api/ request needs the bearer
// token in sluice_http_token_file ("Authorization: Bearer TOKEN"), which
// is compared in constant time; the file is created, mode 0600, with a
// random token when it is missing, by the user the daemon runs as (the
// mail owner). /metrics is open to loopback clients, and to everyone when
// sluice_http_open_metrics = yes; other clients need the token.
//
// The server bounds what a client can make it hold: header size and read
// time, request bodies (1 MB), and idle connections. Responses are JSON;
// errors are {"error": "..."} with a 4xx or 5xx status.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"sluice/internal/config"
)

// Config is the listener's part of main.cf.
type Config struct {
	Listen      string // sluice_http_listen; "" turns the listener off
	CertFile    string // sluice_http_tls_cert_file
	KeyFile     string // sluice_http_tls_key_file
	TokenFile   string // sluice_http_token_file
	OpenMetrics bool   // sluice_http_open_metrics
}

// FromConfig reads the listener's parameters.
func FromConfig(c *config.Config) Config {
	return Config{
		Listen:      strings.TrimSpace(c.Get("sluice_http_listen")),
		CertFile:    c.Get("sluice_http_tls_cert_file"),
		KeyFile:     c.Get("sluice_http_tls_key_file"),
		TokenFile:   c.Get("sluice_http_token_file"),
		OpenMetrics: c.Bool("sluice_http_open_metrics"),
	}
}

// Limits on what one client can make the server hold.
const (
	maxHeaderBytes    = 16 << 10
	maxBodyBytes      = 1 << 20
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
)

// LoadToken returns the token in path, creating the file (mode 0600, a
// random 256-bit token) when it does not exist. A file that exists but
// is empty, or readable by others, is an error: the token guards every
// change to the queue.
func LoadToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("sluice_http_token_file is empty")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		rand.Read(raw)
		tok := base64.RawURLEncoding.EncodeToString(raw)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("create token file: %w", err)
		}
		_, werr := f.WriteString(tok + "\n")
		serr := f.Sync()
		if cerr := f.Close(); werr == nil && serr == nil {
			werr = cerr
		} else if werr == nil {
			werr = serr
		}
		if werr != nil {
			os.Remove(path)
			return "", fmt.Errorf("write token file: %w", werr)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("token file %s is readable by others (mode %#o); chmod 600 it", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// auth checks bearer tokens. It keeps only the token's hash, and
// compares hashes, so the comparison takes the same time whatever the
// length or content of what a client sends.
type auth struct{ sum [sha256.Size]byte }

func newAuth(token string) auth { return auth{sha256.Sum256([]byte(token))} }

func (a auth) ok(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], a.sum[:]) == 1
}

// Server is the running listener.
type Server struct {
	cfg  Config
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Start listens on cfg.Listen and serves h. ln, when not nil, is a
// listener opened for it already (a root master's).
func Start(cfg Config, ln net.Listener, h http.Handler) (*Server, error) {
	var tlsConf *tls.Config
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sluice_http_tls_cert_file/sluice_http_tls_key_file: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("sluice_http_listen: %w", err)
		}
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s := &Server{cfg: cfg, ln: ln, done: make(chan error, 1)}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          nil,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting, lets requests in flight finish until ctx
// ends, then closes what is left (event streams).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// Handler assembles the routes: api needs the token; metrics is open to
// loopback clients (and to all with open metrics); dashboard, when not
// nil, has every other path (it keeps its own sessions: package
// dashboard).
func Handler(cfg Config, token string, api http.Handler, metrics http.Handler, dashboard http.Handler) http.Handler {
	a := newAuth(token)
	mux := http.NewServeMux()
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.ok(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			Error(w, http.StatusUnauthorized, "missing or wrong bearer token (see sluice_http_token_file)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		api.ServeHTTP(w, r)
	}))
	if metrics != nil {
		mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !cfg.OpenMetrics && !loopback(r) && !a.ok(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
				Error(w, http.StatusUnauthorized, "metrics need the bearer token from a non-loopback client (or sluice_http_open_metrics = yes)")
				return
			}
			metrics.ServeHTTP(w, r)
		}))
	}
	if dashboard != nil {
		mux.Handle("/", dashboard)
	}
	return securityHeaders(mux)
}

// loopback reports whether the request came from 127.0.0.0/8 or ::1.
func loopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// securityHeaders keeps browsers from sniffing JSON as HTML or framing
// the pages.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// Error writes {"error": msg} with status.
func Error(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// JSON writes v with status 200.
func JSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
