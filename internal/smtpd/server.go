// Package smtpd is sluice's SMTP server (RFC 5321): it accepts mail from
// clients and hands each message to cleanup; it knows nothing of the
// queue's inside.
//
// # Why the protocol layer is our own
//
// The server must answer as Postfix's smtpd answers, reply for reply, and
// it must be safe against clients that lie about timing, length and
// sequence. A general SMTP library decides both for us: its texts, its
// sequencing (MAIL before HELO, nested MAIL), and how it reads (a
// deadline per command line, message data read as commands after a data
// error). So the reading, the state machine and every reply live here.
//
// # Reading
//
// One bufio.Reader per connection (4 KB). Before every read from the
// network a deadline is set: smtpd_timeout (Timeout, 300 s) from now,
// and never later than the end of the current request: a command line
// must be complete within smtpd_timeout of its first byte, and a DATA or
// BDAT transfer within DataTimeLimit (sluice_smtpd_data_time_limit, 1 h)
// of its start. A command line is at most line_length_limit (2048)
// bytes: a longer one is cut there, the rest of it read and discarded,
// "warning: name[addr]: request longer than 2048: ..." is logged and the
// cut line is run, as Postfix does. A line ends at LF (CRLF or bare LF).
// A last line without its LF before the connection closes is never run.
//
// A command line is cut at its first NUL, as Postfix's C strings cut it
// (so "RCPT TO:<a\0b>" is "501 5.1.3 Bad recipient address syntax"). A
// command line holding a bare CR is refused: "500 5.5.2 Error: bad
// syntax" (Postfix accepts it; a CR has no business in a HELO name or
// address that ends up in headers). A command line that is not valid
// UTF-8 gets Postfix's "500 5.5.2 Error: bad UTF-8 syntax"; valid UTF-8
// is accepted, with or without SMTPUTF8 on MAIL, as Postfix does with
// smtputf8_enable = yes. Neither is counted as a command; both count as
// errors.
//
// Message data is never held whole: DATA is unstuffed line by line into
// the reader cleanup's Submit reads, through a 4 KB buffer; BDAT chunks
// are copied through a pipe to a Submit that runs for the whole
// transfer. Long body lines pass through in pieces. A BDAT whose size
// cannot be parsed gets "521 5.5.4 Syntax: BDAT count [LAST]" and the
// connection is closed (where its chunk ends is unknowable); a refused
// BDAT still has its chunk read and dropped; chunks after a failed one
// get "551 5.0.0 Discarded N bytes after earlier error"; MAIL, RCPT and
// DATA between chunks are refused ("503 5.5.1 Error: RCPT after BDAT");
// RSET, HELO, EHLO and STARTTLS end the transfer unqueued.
// DATA ends only at CRLF "." CRLF: a "." line after a bare LF is content
// (no SMTP smuggling through "\n.\n"). A message larger than
// message_size_limit is read to its end and refused with "552 5.3.4
// Error: message file too big".
//
// On any failure while reading message data (timeout, EOF, read error),
// the message is not queued (Submit sees the reader fail), the client
// gets "421 4.4.2 <myhostname> Error: timeout exceeded" after a timeout,
// the mail log says "timeout after DATA (N bytes) from name[addr]" (or
// "lost connection after ..."), and the connection is closed. What
// follows the failure is never read as commands.
//
// # States and replies
//
// Replies and sequencing are Postfix 3.7's (checked against a running
// Postfix): the greeting is "220 " + smtpd_banner ("$myhostname ESMTP
// $mail_name"). HELO/EHLO may be given any time and reset the
// transaction; MAIL needs none unless smtpd_helo_required ("503 5.5.1
// Error: send HELO/EHLO first"). A second MAIL is "503 5.5.1 Error:
// nested MAIL command"; RCPT without MAIL "503 5.5.1 Error: need MAIL
// command"; DATA without recipients "503 5.5.1 Error: need RCPT command",
// or "554 5.5.1 Error: no valid recipients" when all were refused. EHLO
// lists PIPELINING, SIZE, VRFY, ETRN, STARTTLS (with a certificate, before
// TLS), ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8 and CHUNKING, in
// Postfix's order, minus smtpd_discard_ehlo_keywords (a discarded
// CHUNKING, STARTTLS, DSN or SMTPUTF8 is refused when used). MAIL takes
// SIZE, BODY, RET, ENVID, SMTPUTF8 (and AUTH, ignored); RCPT takes
// NOTIFY and ORCPT; anything else is "555 5.5.4 Unsupported option: X".
// "RCPT TO:<postmaster>" and other addresses without a domain are local
// (qualified with myorigin). After smtpd_recipient_limit recipients:
// "452 4.5.3 Error: too many recipients". "250 2.0.0 Ok: queued as ID"
// is sent only after Submit returned, that is when the message is
// durable; a queue that cannot be written gets "451 4.3.0 Error: queue
// file write error" and keeps nothing.
//
// # Who may relay
//
// RCPT resolves the address as Postfix's trivial-rewrite does
// (internal/rewrite: the percent hack, bang paths, quoted local parts
// holding an @, route addresses, literals) and decides on what it
// resolved to, as permit_mynetworks, reject_unauth_destination: a client
// in mynetworks may send anywhere; any other client only to addresses
// that resolve to mydestination, our own address literals or
// relay_domains. Anything else is "554 5.7.1 <addr>: Relay access
// denied", so no address form makes the server an open relay. A
// malformed destination is "501 5.1.3 Bad recipient address syntax".
// Then, for addresses that resolve here, KnownRecipient
// (local_recipient_maps) refuses unknown users: "550 5.1.1 <addr>:
// Recipient address rejected: User unknown in local recipient table".
//
// # Hops
//
// cleanup counts Received: headers; past hopcount_limit Submit fails with
// a cleanup.Reject, and the client gets its reply at the end of DATA:
// "554 5.4.0 Error: too many hops". Nothing is queued.
//
// # Errors, junk and pipelining
//
// As Postfix: each command that fails adds one error; after
// smtpd_junk_command_limit (100) HELO, EHLO, NOOP, VRFY, ETRN and RSET
// commands, each further one adds an error too. Once the session has
// smtpd_soft_error_limit (10) errors, every reply waits
// smtpd_error_sleep_time (1 s) first; at smtpd_hard_error_limit (20) the
// next command gets "421 4.7.0 <myhostname> Error: too many errors" and
// the connection is closed ("too many errors after CMD from ..."). A
// delivered message clears the error count.
//
// A client that sends before the greeting, after a command that must end
// a pipelined group (HELO, EHLO, NOOP, VRFY, DATA, STARTTLS), or at all
// without having seen PIPELINING in an EHLO reply, is logged once per
// session (known commands only, as Postfix): "improper command pipelining after CMD from name[addr]:
// <the pending input, escaped>". With smtpd_forbid_unauth_pipelining
// (Postfix 3.7's default: no) it also gets "554 5.5.0 Error: SMTP
// protocol synchronization" and is disconnected. Plain text pipelined
// after STARTTLS is always discarded (no command injection into TLS).
// Replies to pipelined commands are sent together, when the input holds
// no further complete command. CONNECT, GET, POST or a line that starts
// with neither a letter nor white space is not SMTP: "221 2.7.0 Error: I
// can break rules, too. Goodbye." and the connection is closed, as
// Postfix's smtpd_forbidden_commands does. Client text echoed in a reply
// has its control characters replaced by '?'.
//
// # Connection limits (limits.go)
//
// Per client address, as Postfix's anvil: at most
// smtpd_client_connection_count_limit (50) sessions at once and
// smtpd_client_connection_rate_limit (0: off) new sessions per
// anvil_rate_time_unit (60 s); clients in smtpd_client_event_limit_exceptions
// ($mynetworks) are exempt. A refused client gets "421 4.7.0
// <myhostname> Error: too many connections from <addr>" instead of the
// greeting, and the log says "warning: Connection concurrency limit
// exceeded: N from name[addr] for service smtp". All clients together
// are limited to default_process_limit (100) sessions; past it a new
// client gets "421 4.3.2 All server ports are busy". Sessions in progress
// are never disturbed by a refused one.
//
// # Mail log
//
// As Postfix's smtpd: "connect from name[addr]", "ID: client=name[addr]",
// "NOQUEUE: reject: RCPT from ...", "lost connection after CMD from ...",
// "timeout after CMD from ...", and "disconnect from name[addr] helo=1
// mail=1 rcpt=0/1 data=1 quit=1 commands=4/5". Every line goes through
// maillog, which replaces non-printable bytes with '?'.
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
	"syscall"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/gopool"
	"sluice/internal/maillog"
	"sluice/internal/milter"
	"sluice/internal/rewrite"
)

// Config is the server's configuration. Listen and the relay lists come
// from main.cf (see FromConfig); Cleanup and Log from the process. Zero
// values of the Postfix limits mean Postfix's defaults, except the
// connection limits, where zero means none (sendmail -bs has none).
type Config struct {
	// Listen holds the addresses to listen on (smtpd_listen), host:port.
	Listen []string
	// Listeners are already bound listeners to serve as well (tests,
	// sendmail -bs).
	Listeners []net.Listener

	Hostname      string // myhostname: the greeting and EHLO reply
	MyOrigin      string // myorigin: qualifies addresses without a domain
	MyNetworks    []netip.Prefix
	MyDestination []string // domains delivered here
	RelayDomains  []string // domains relayed for any client (and their subdomains)
	// Rewrite resolves recipients for the relay decision; nil means
	// Postfix's default switches over Hostname, MyOrigin, MyDestination
	// and RelayDomains.
	Rewrite *rewrite.Resolver
	// KnownRecipient says whether a recipient that resolves to this host
	// exists (local_recipient_maps); nil accepts every one. An error is a
	// lookup that failed: the client is told to try again.
	KnownRecipient func(addr string) (bool, error)
	// FlushSite, when set, is how ETRN asks for a domain's deferred mail
	// now; only domains in FlushDomains (fast_flush_domains, and their
	// subdomains) qualify. It must not wait for the flush.
	FlushSite        func(domain string)
	FlushDomains     []string
	MessageSizeLimit int64 // message_size_limit; 0 means none
	RecipientLimit   int   // smtpd_recipient_limit; 0 means none
	Timeout          time.Duration
	// DataTimeLimit bounds one DATA or BDAT transfer as a whole
	// (sluice_smtpd_data_time_limit); 0 means one hour.
	DataTimeLimit time.Duration
	// LocalHeaderRewrite decides for which clients cleanup adds missing
	// Message-Id:, Date: and From: headers (local_header_rewrite_clients);
	// nil means clients connecting from our own address or loopback.
	LocalHeaderRewrite func(client, server netip.Addr) bool

	// Banner is the greeting's text after "220 " (smtpd_banner,
	// expanded); empty means Hostname + " ESMTP " + MailName.
	Banner   string
	MailName string // mail_name; "sluice" when empty
	// HeloRequired refuses MAIL before HELO/EHLO (smtpd_helo_required).
	HeloRequired bool
	// DiscardEHLOKeywords are EHLO keywords not to announce, lower case
	// (smtpd_discard_ehlo_keywords).
	DiscardEHLOKeywords []string
	// ForbidUnauthPipelining disconnects clients that pipeline
	// improperly (smtpd_forbid_unauth_pipelining).
	ForbidUnauthPipelining bool
	SoftErrorLimit         int           // smtpd_soft_error_limit; 0: 10
	HardErrorLimit         int           // smtpd_hard_error_limit; 0: 20
	ErrorSleep             time.Duration // smtpd_error_sleep_time; 0: 1 s, negative: none
	JunkCommandLimit       int           // smtpd_junk_command_limit; 0: 100

	Limits Limits

	// Milters are smtpd_milters and their settings; nil means none.
	Milters *milter.Config

	Cleanup *cleanup.Cleanup
	// Submit, when set, queues messages instead of Cleanup.Submit, with
	// the same contract (return a queue ID only once the message is
	// durable, and fail when r fails). sendmail -bs uses it to queue
	// through maildrop/.
	Submit func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error)
	Log    *maillog.Logger
	TLS    *tls.Config // STARTTLS is offered when set
	// TLSLevel is smtpd_tls_security_level ("", may, none, encrypt);
	// TLSWrapper smtpd_tls_wrappermode; TLSAuthOnly smtpd_tls_auth_only
	// (submission.go).
	TLSLevel    string
	TLSWrapper  bool
	TLSAuthOnly bool
	// SASL enables AUTH through Dovecot; nil: smtpd_sasl_auth_enable = no.
	SASL *SASL
	// The restriction lists checked at RCPT (auth.go); a nil
	// RelayRestrictions means sluice's default.
	ClientRestrictions, SenderRestrictions, RelayRestrictions, RecipientRestrictions []string
	// SenderLogins looks a key up in smtpd_sender_login_maps: the
	// logins that own it; nil for no table.
	SenderLogins func(key string) (owners []string, found bool, err error)
	// LookupAddr finds a client's name (reverse DNS); nil leaves every
	// client "unknown". net.DefaultResolver.LookupAddr fits.
	LookupAddr func(ctx context.Context, addr string) ([]string, error)
	// ErrorLog receives internal errors (a recovered panic); nil
	// discards them.
	ErrorLog *log.Logger
	// Service is the name in mail log lines ("smtpd" when empty).
	Service string
	// Now and Sleep are the clock; nil means the real one.
	Now   func() time.Time
	Sleep func(time.Duration)
}

// Postfix's defaults.
const (
	defaultTimeout       = 300 * time.Second
	defaultDataTimeLimit = time.Hour
	defaultSoftErrors    = 10
	defaultHardErrors    = 20
	defaultErrorSleep    = time.Second
	defaultJunkLimit     = 100
	lineLengthLimit      = 2048 // line_length_limit, for command lines
	readBufferSize       = 4096
)

// Server is an SMTP server.
type Server struct {
	cfg      Config
	limits   *limiter
	authRate *authLimiter // smtpd_client_auth_rate_limit

	// ctx is canceled by Close: submissions in progress give up.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	serving   bool
	closed    bool
	conns     map[net.Conn]struct{}
	sessions  sync.WaitGroup
	idle      chan struct{} // closed and replaced when sessions reach zero
	// workers run the sessions: a goroutine kept from an earlier
	// session has the stack a session needs grown already.
	workers *gopool.Pool
}

// sessionWorkers bounds the goroutines kept waiting for the next
// session (gopool).
const sessionWorkers = 64

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
	if cfg.MailName == "" {
		cfg.MailName = "sluice"
	}
	if cfg.Banner == "" {
		cfg.Banner = cfg.Hostname + " ESMTP " + cfg.MailName
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.DataTimeLimit <= 0 {
		cfg.DataTimeLimit = defaultDataTimeLimit
	}
	if cfg.SoftErrorLimit <= 0 {
		cfg.SoftErrorLimit = defaultSoftErrors
	}
	if cfg.HardErrorLimit <= 0 {
		cfg.HardErrorLimit = defaultHardErrors
	}
	if cfg.ErrorSleep == 0 {
		cfg.ErrorSleep = defaultErrorSleep
	}
	if cfg.JunkCommandLimit <= 0 {
		cfg.JunkCommandLimit = defaultJunkLimit
	}
	if cfg.Service == "" {
		cfg.Service = "smtpd"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = time.Sleep
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = log.New(io.Discard, "", 0)
	}
	if cfg.LocalHeaderRewrite == nil {
		cfg.LocalHeaderRewrite = func(client, server netip.Addr) bool {
			return client.IsLoopback() || client == server
		}
	}
	if cfg.Rewrite == nil {
		rc := rewrite.DefaultConfig(cfg.Hostname, cfg.MyDestination)
		rc.MyOrigin, rc.RelayDomains = cfg.MyOrigin, cfg.RelayDomains
		cfg.Rewrite = rewrite.New(rc)
	}
	if cfg.Limits.Exceptions == nil {
		cfg.Limits.Exceptions = cfg.MyNetworks
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		limits:   newLimiter(cfg.Limits, cfg.Now),
		authRate: newAuthLimiter(cfg.Limits.AuthRate, cfg.Limits.RateTimeUnit, cfg.Limits.Exceptions, cfg.Now),
		ctx:      ctx,
		cancel:   cancel,
		conns:    map[net.Conn]struct{}{},
		idle:     make(chan struct{}),
		workers:  gopool.New(sessionWorkers),
	}
	close(s.idle) // no sessions yet
	s.listeners = append(s.listeners, cfg.Listeners...)
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
		s.listeners = append(s.listeners, l)
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
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.serving = true
	ls := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("smtpd: nothing to listen on")
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- s.acceptLoop(l) }()
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			defer cancel()
			if err := s.Shutdown(sctx); err != nil {
				s.Close()
			}
		case <-stop:
		}
	}()
	var first error
	for range ls {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.Close()
		}
	}
	// Listeners are closed; wait for the sessions, which Shutdown or
	// Close end.
	s.waitIdle(context.Background())
	return first
}

// acceptLoop accepts connections on l until it is closed.
func (s *Server) acceptLoop(l net.Listener) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if temporaryAcceptError(err) {
				// Out of file descriptors and the like: wait, as
				// net/http does, rather than spin.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				s.cfg.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpd: accept on %s: %w", l.Addr(), err)
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.workers.Go(func() { s.serveConn(c, true) })
	}
}

// temporaryAcceptError reports whether an accept failure will pass:
// out of file descriptors, a connection aborted before it was accepted.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// track registers a connection for Close; false once the server closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.conns) == 0 {
		s.idle = make(chan struct{})
	}
	s.conns[c] = struct{}{}
	s.sessions.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.sessions.Done()
	if len(s.conns) == 0 {
		close(s.idle)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ListenAndServe binds the configured addresses and serves them.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// closeListeners stops accepting; it reports whether this call did it.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
}

// Close stops listening and drops every connection at once. A message
// whose data was being received gets no reply and is not queued.
func (s *Server) Close() error {
	s.closeListeners()
	s.cancel()
	s.workers.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

// Shutdown stops listening and waits for the sessions in progress to
// end, or for ctx to be done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	err := s.waitIdle(ctx)
	if err == nil {
		s.workers.Close()
	}
	return err
}

func (s *Server) waitIdle(ctx context.Context) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeConn serves one connection that did not come from a listener
// (sendmail -bs: standard input and output) and returns when its session
// ends. Connection limits do not apply to it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	if !s.track(c) {
		return nil
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-stop:
		}
	}()
	s.serveConn(c, false)
	return nil
}

func (s *Server) log(format string, args ...any) {
	s.cfg.Log.Log(s.cfg.Service, format, args...)
}

func (s *Server) warn(format string, args ...any) {
	s.cfg.Log.Warn(s.cfg.Service, format, args...)
}
