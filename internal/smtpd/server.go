// Package smtpd is sluice's SMTP server (RFC 5321), built on go-smtp. It
// accepts mail from clients and hands each message to cleanup; it knows
// nothing of the queue's inside.
//
// # What it offers
//
// EHLO with PIPELINING, SIZE (message_size_limit), 8BITMIME, SMTPUTF8,
// DSN (RET, ENVID, NOTIFY, ORCPT; RFC 3461), CHUNKING, ENHANCEDSTATUSCODES,
// and STARTTLS when a certificate is configured (smtpd_tls_cert_file,
// smtpd_tls_key_file).
//
// # Who may relay
//
// A recipient is accepted when the client is in mynetworks, or when the
// recipient's domain is in mydestination (exactly) or relay_domains (the
// domain or a subdomain). Any other recipient is refused with Postfix's
// "554 5.7.1 <addr>: Relay access denied", so the server is never an open
// relay. Addresses without a domain are taken as local (they are
// qualified with myorigin).
//
// # When mail is accepted
//
// "250 2.0.0 Ok: queued as ID" is sent only after cleanup.Submit
// returned, that is after the queue file and its directory entry are
// fsynced. A message over message_size_limit gets 552 5.3.4; a queue that
// cannot be written (disk full, broken spool) gets 451 4.3.0 and keeps
// nothing of the message.
//
// # Mail log
//
// As Postfix's smtpd: "connect from name[addr]", "ID: client=name[addr]",
// "NOQUEUE: reject: RCPT from ...", "lost connection after CMD from ...",
// and "disconnect from name[addr] helo=1 mail=1 rcpt=1 data=1 quit=1
// commands=5".
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"sluice/internal/cleanup"
	"sluice/internal/maillog"
)

// Config is the server's configuration. Listen and the relay lists come
// from main.cf (see FromConfig); Cleanup and Log from the process.
type Config struct {
	// Listen holds the addresses to listen on (smtpd_listen), host:port.
	Listen []string
	// Listeners are already bound listeners to serve as well (tests,
	// sendmail -bs).
	Listeners []net.Listener

	Hostname         string // myhostname: the greeting and EHLO reply
	MyOrigin         string // myorigin: qualifies addresses without a domain
	MyNetworks       []netip.Prefix
	MyDestination    []string // domains delivered here
	RelayDomains     []string // domains relayed for any client (and their subdomains)
	MessageSizeLimit int64    // message_size_limit; 0 means none
	RecipientLimit   int      // smtpd_recipient_limit; 0 means none
	Timeout          time.Duration
	// LocalHeaderRewrite decides for which clients cleanup adds missing
	// Message-Id:, Date: and From: headers (local_header_rewrite_clients);
	// nil means clients connecting from our own address or loopback.
	LocalHeaderRewrite func(client, server netip.Addr) bool

	Cleanup *cleanup.Cleanup
	// Submit, when set, queues messages instead of Cleanup.Submit, with
	// the same contract (return a queue ID only once the message is
	// durable). sendmail -bs uses it to queue through maildrop/.
	Submit func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error)
	Log    *maillog.Logger
	TLS    *tls.Config // STARTTLS is offered when set
	// LookupAddr finds a client's name (reverse DNS); nil leaves every
	// client "unknown". net.DefaultResolver.LookupAddr fits.
	LookupAddr func(ctx context.Context, addr string) ([]string, error)
	// ErrorLog receives go-smtp's internal errors; nil discards them.
	ErrorLog *log.Logger
	// Service is the name in mail log lines ("smtpd" when empty).
	Service string
}

// Server is an SMTP server.
type Server struct {
	cfg       Config
	smtp      *gosmtp.Server
	mydest    domainList
	relay     domainList
	mu        sync.Mutex
	listeners []net.Listener
	serving   bool
}

// New checks cfg and returns a Server. It binds nothing yet.
func New(cfg Config) (*Server, error) {
	if cfg.Submit == nil {
		if cfg.Cleanup == nil {
			return nil, errors.New("smtpd: no cleanup")
		}
		cfg.Submit = cfg.Cleanup.Submit
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MyOrigin == "" {
		cfg.MyOrigin = cfg.Hostname
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Second
	}
	if cfg.Service == "" {
		cfg.Service = "smtpd"
	}
	if cfg.LocalHeaderRewrite == nil {
		cfg.LocalHeaderRewrite = func(client, server netip.Addr) bool {
			return client.IsLoopback() || client == server
		}
	}
	s := &Server{
		cfg:    cfg,
		mydest: newDomainList(cfg.MyDestination, false),
		relay:  newDomainList(cfg.RelayDomains, true),
	}
	gs := gosmtp.NewServer(backend{s})
	gs.Domain = cfg.Hostname
	gs.MaxMessageBytes = cfg.MessageSizeLimit
	gs.MaxRecipients = cfg.RecipientLimit
	// Postfix stores lines of any length (splitting them at 2048); allow
	// long lines, but bound what one command line may cost.
	gs.MaxLineLength = 1 << 18
	gs.ReadTimeout = cfg.Timeout
	gs.WriteTimeout = cfg.Timeout
	gs.EnableSMTPUTF8 = true
	gs.EnableDSN = true
	gs.TLSConfig = cfg.TLS
	if cfg.ErrorLog != nil {
		gs.ErrorLog = cfg.ErrorLog
	} else {
		gs.ErrorLog = log.New(io.Discard, "", 0)
	}
	s.smtp = gs
	for _, l := range cfg.Listeners {
		s.listeners = append(s.listeners, &listener{Listener: l, srv: s})
	}
	return s, nil
}

// Listen binds the configured addresses. Serve calls it when needed;
// call it first to learn the bound addresses (Addrs) before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) > len(s.cfg.Listeners) {
		return nil // already bound
	}
	for _, a := range s.cfg.Listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, b := range s.listeners[len(s.cfg.Listeners):] {
				b.Close()
			}
			s.listeners = s.listeners[:len(s.cfg.Listeners)]
			return fmt.Errorf("smtpd: listen on %s: %w", a, err)
		}
		s.listeners = append(s.listeners, &listener{Listener: l, srv: s})
	}
	return nil
}

// Addrs returns the addresses the server listens on (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Serve accepts connections on every listener until ctx is done (then it
// shuts down gracefully, waiting for sessions in progress up to their
// timeout) or Close or Shutdown is called. It returns nil after a clean
// stop.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("smtpd: already serving")
	}
	s.serving = true
	ls := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("smtpd: nothing to listen on")
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- s.smtp.Serve(l) }()
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			defer cancel()
			if err := s.smtp.Shutdown(sctx); err != nil {
				s.smtp.Close()
			}
		case <-stop:
		}
	}()
	var first error
	for range ls {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.smtp.Close()
		}
	}
	return first
}

// ListenAndServe binds the configured addresses and serves them.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Close stops listening and drops every connection at once. A message
// whose data was being received gets no reply and is not queued.
func (s *Server) Close() error {
	s.closeUnserved()
	err := s.smtp.Close()
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops listening and waits for the sessions in progress to
// end, or for ctx to be done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeUnserved()
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeConn serves one connection that did not come from a listener
// (sendmail -bs: standard input and output) and returns when its session
// ends.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	l := &oneShot{conn: c, closed: make(chan struct{})}
	l.conn = &closeNotify{Conn: c, l: l}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-stop:
		}
	}()
	err := s.smtp.Serve(&listener{Listener: l, srv: s})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// oneShot is a listener that yields one connection, then waits for it to
// be closed and reports itself closed.
type oneShot struct {
	conn   net.Conn
	taken  bool
	closed chan struct{}
	once   sync.Once
}

func (l *oneShot) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.conn, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneShot) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneShot) Addr() net.Addr { return l.conn.LocalAddr() }

// closeNotify closes its one-shot listener when the connection closes.
type closeNotify struct {
	net.Conn
	l *oneShot
}

func (c *closeNotify) Close() error {
	err := c.Conn.Close()
	c.l.Close()
	return err
}

// closeUnserved closes listeners that were bound but never served.
func (s *Server) closeUnserved() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving {
		for _, l := range s.listeners {
			l.Close()
		}
	}
}

func (s *Server) log(format string, args ...any) {
	s.cfg.Log.Log(s.cfg.Service, format, args...)
}

// backend makes sessions for go-smtp.
type backend struct{ s *Server }

func (b backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	cc := findClientConn(c.Conn())
	if cc == nil {
		return nil, errors.New("smtpd: connection of unknown kind")
	}
	cc.countTLS("ehlo", true)
	return &session{s: b.s, cc: cc, conn: c}, nil
}

// findClientConn returns our wrapper under a connection, which is the
// connection itself or, after STARTTLS, the one under the TLS layer.
func findClientConn(c net.Conn) *clientConn {
	switch v := c.(type) {
	case *clientConn:
		return v
	case *tls.Conn:
		return findClientConn(v.NetConn())
	}
	return nil
}
