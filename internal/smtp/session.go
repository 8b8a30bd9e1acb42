package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"sluice/internal/event"
)

// timedConn gives every read and write a deadline: CommandTimeout from
// now, or the context's deadline when that is sooner. A cancelled context
// makes the pending and every later operation fail at once.
type timedConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	deadline time.Time // the bound context's deadline, zero if none
	stopped  bool      // the bound context is done
	set      time.Time // the deadline set last by arm (zero: none)
}

// arm sets the connection's deadline: the timeout from now, or the bound
// context's deadline if that is sooner. It is moved only when it would
// move later by more than a 32nd of the timeout, not at every read and
// write: moving it costs a timer update each time.
func (c *timedConn) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		c.Conn.SetDeadline(time.Unix(1, 0))
		c.set = time.Time{}
		return
	}
	t := time.Now().Add(c.timeout)
	if !c.deadline.IsZero() && c.deadline.Before(t) {
		t = c.deadline
	}
	if c.set.IsZero() || c.set.After(t) || t.Sub(c.set) > c.timeout/32 {
		c.Conn.SetDeadline(t)
		c.set = t
	}
}

func (c *timedConn) Read(p []byte) (int, error) {
	c.arm()
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	c.arm()
	return c.Conn.Write(p)
}

// session is one connection to one server.
type session struct {
	c      *Client
	raw    *timedConn
	conn   net.Conn // raw, or TLS over raw
	r      *bufio.Reader
	w      *bufio.Writer
	t      target
	relay  string // host[ip]:port
	key    string // connection-cache key
	esmtp  bool
	ext    map[string]string // EHLO keywords (upper case) and their parameters
	tls    bool
	uses   int
	born   time.Time
	broken bool   // the conversation is in an unknown state: never reuse
	banner string // the greeting's text (sluice probe shows it)
	timer  *time.Timer
	// nexthop is the next hop the session was opened for, as
	// configured, for "mail for … loops back to myself".
	nexthop string
}

// bind ties the session's I/O to ctx until the returned function is
// called.
func (s *session) bind(ctx context.Context) func() {
	dl, _ := ctx.Deadline()
	s.raw.mu.Lock()
	s.raw.deadline, s.raw.stopped = dl, false
	s.raw.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.raw.mu.Lock()
		s.raw.stopped = true
		s.raw.Conn.SetDeadline(time.Unix(1, 0))
		s.raw.set = time.Time{}
		s.raw.mu.Unlock()
	})
	return func() {
		if !stop() {
			// The context ended during the delivery; whatever was
			// going on was cut off.
			s.broken = true
		}
		s.raw.mu.Lock()
		s.raw.deadline, s.raw.stopped = time.Time{}, false
		s.raw.mu.Unlock()
	}
}

func (s *session) namaddr() string { return s.t.namaddr() }

// cmd queues one command line; flush sends what is queued.
func (s *session) cmd(format string, args ...any) {
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

func (s *session) flush() error { return s.w.Flush() }

// chat sends one command and reads its reply.
func (s *session) chat(format string, args ...any) (reply, error) {
	s.cmd(format, args...)
	if err := s.flush(); err != nil {
		return reply{}, err
	}
	return s.read()
}

func (s *session) read() (reply, error) {
	rep, err := readReply(s.r)
	if err == nil && rep.code == 421 {
		s.broken = true
	}
	return rep, err
}

// ioFailure words an I/O error during stage as Postfix does.
func (s *session) ioFailure(err error, stage string) failure {
	s.broken = true
	f := failure{soft: true, dsn: "4.4.2", relay: s.relay, kind: event.KindLost}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		f.kind = event.KindTimeout
		f.reason = fmt.Sprintf("conversation with %s timed out while %s", s.namaddr(), stage)
	case errors.Is(err, errReplyTooLong):
		f.dsn, f.kind = "4.5.0", event.KindUnknown
		f.reason = fmt.Sprintf("remote protocol error in reply from %s while %s", s.namaddr(), stage)
	default:
		f.reason = fmt.Sprintf("lost connection with %s while %s", s.namaddr(), stage)
	}
	return f
}

// replyFailure words a failure reply to a command.
func (s *session) replyFailure(rep reply, command string) failure {
	f := failure{
		soft: rep.soft(), dsn: rep.dsn(), relay: s.relay, reply: rep.text(),
		reason: fmt.Sprintf("host %s said: %s (in reply to %s)", s.namaddr(), rep.text(), command),
		kind:   event.KindReply, code: rep.code,
	}
	if f.soft && f.dsn[0] != '4' {
		// An unexpected 2xx or 3xx reply: a failure worth a retry.
		f.dsn = "4" + f.dsn[1:]
	}
	return f
}

// refused words a refused greeting, EHLO or HELO. A 5xx greeting is taken
// as 4xx (smtp_skip_5xx_greeting), so another server may be tried.
func (s *session) refused(rep reply, soften bool) failure {
	f := failure{
		soft: rep.soft(), dsn: rep.dsn(), relay: s.relay, reply: rep.text(),
		reason: fmt.Sprintf("host %s refused to talk to me: %s", s.namaddr(), rep.text()),
		kind:   event.KindReply, code: rep.code,
	}
	if soften && !f.soft {
		f.soft, f.dsn = true, "4"+f.dsn[1:]
	}
	return f
}

// close ends the connection without a word.
func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

// quit ends the conversation politely, waiting briefly for the reply.
func (s *session) quit() {
	if !s.broken {
		s.raw.mu.Lock()
		s.raw.deadline = time.Now().Add(5 * time.Second)
		s.raw.mu.Unlock()
		s.chat("QUIT")
	}
	s.close()
}

// probe checks a cached connection with RSET before it is used again.
func (s *session) probe() error {
	rep, err := s.chat("RSET")
	if err != nil {
		s.broken = true
		return err
	}
	if rep.class() != 2 {
		s.broken = true
		return fmt.Errorf("RSET probe: %s", rep.text())
	}
	return nil
}

// connect opens a session to t and performs the greeting, EHLO and, by
// the TLS level, STARTTLS. On failure it returns the failure, the session
// if one was established (closed), and whether the caller should retry
// over plaintext.
func (c *Client) connect(ctx context.Context, t target, plaintext bool, nexthop string) (*session, *failure, bool) {
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout())
	nc, err := dial(dctx, "tcp", net.JoinHostPort(t.ip.String(), strconv.Itoa(t.port)))
	cancel()
	if err != nil {
		return nil, &failure{soft: true, dsn: "4.4.1", reason: fmt.Sprintf("connect to %s:%d: %s", t.namaddr(), t.port, dialError(err)), kind: dialKind(err)}, false
	}
	raw := &timedConn{Conn: nc, timeout: c.commandTimeout()}
	s := &session{
		c: c, raw: raw, conn: raw, t: t, relay: t.relay(), born: time.Now(), nexthop: nexthop,
		r: bufio.NewReader(raw), w: bufio.NewWriterSize(raw, writeBuffer),
	}
	unbind := s.bind(ctx)
	f, retryPlain := s.handshake(plaintext)
	unbind()
	if f != nil {
		s.quit() // only closes when the conversation is broken
		return s, f, retryPlain
	}
	return s, nil, false
}

// handshake reads the greeting, says EHLO and negotiates TLS.
func (s *session) handshake(plaintext bool) (*failure, bool) {
	rep, err := s.read()
	if err != nil {
		f := s.ioFailure(err, "receiving the initial server greeting")
		return &f, false
	}
	s.banner = strings.Join(rep.lines, " / ")
	if rep.class() != 2 {
		f := s.refused(rep, true)
		return &f, false
	}
	if len(rep.lines) > 0 && len(rep.lines[0]) > 4 && s.namesMe(rep.lines[0][4:]) {
		s.c.warn("host %s greeted me with my own hostname %s", s.relay, s.c.MyHostname)
	}
	if f := s.hello(); f != nil {
		return f, false
	}
	level := strings.ToLower(s.c.TLSLevel)
	if level != "may" && level != "encrypt" {
		return nil, false
	}
	if plaintext && level == "may" {
		return nil, false
	}
	_, offered := s.ext["STARTTLS"]
	if !offered {
		if level == "encrypt" {
			return &failure{soft: true, dsn: "4.7.4", relay: s.relay, kind: event.KindTLS,
				reason: fmt.Sprintf("TLS is required, but was not offered by host %s", s.namaddr())}, false
		}
		return nil, false
	}
	rep, err = s.chat("STARTTLS")
	if err != nil {
		f := s.ioFailure(err, "receiving the STARTTLS response")
		return &f, false
	}
	if rep.class() != 2 {
		if level == "encrypt" {
			f := s.refused(rep, false)
			f.reason = fmt.Sprintf("TLS is required, but host %s refused to start TLS: %s", s.namaddr(), rep.text())
			f.kind = event.KindTLS
			return &f, false
		}
		return nil, false // continue in plaintext
	}
	if err := s.startTLS(); err != nil {
		s.broken = true
		return &failure{soft: true, dsn: "4.7.5", relay: s.relay, reason: "Cannot start TLS: handshake failure", kind: event.KindTLS}, level == "may"
	}
	if f := s.hello(); f != nil {
		return f, false
	}
	return nil, false
}

// hello sends EHLO, or HELO when EHLO is refused with anything but 421,
// and records the server's extensions.
func (s *session) hello() *failure {
	name := s.c.heloName()
	rep, err := s.chat("EHLO %s", name)
	if err != nil {
		f := s.ioFailure(err, "performing the EHLO handshake")
		return &f
	}
	s.ext = map[string]string{}
	if rep.class() == 2 {
		if f := s.helloNamesMe(rep); f != nil {
			return f
		}
		s.esmtp = true
		for _, l := range rep.lines[1:] {
			if len(l) < 4 {
				continue
			}
			kw, param, _ := strings.Cut(strings.TrimSpace(l[4:]), " ")
			if kw != "" {
				s.ext[strings.ToUpper(kw)] = strings.TrimSpace(param)
			}
		}
		return nil
	}
	if rep.code == 421 {
		f := s.refused(rep, false)
		return &f
	}
	s.esmtp = false
	rep, err = s.chat("HELO %s", name)
	if err != nil {
		f := s.ioFailure(err, "performing the HELO handshake")
		return &f
	}
	if rep.class() != 2 {
		f := s.refused(rep, false)
		return &f
	}
	return s.helloNamesMe(rep)
}

// helloNamesMe fails a session whose server answered EHLO or HELO with
// our own name (see loop.go).
func (s *session) helloNamesMe(rep reply) *failure {
	if len(rep.lines) == 0 || len(rep.lines[0]) <= 4 || !s.namesMe(rep.lines[0][4:]) {
		return nil
	}
	s.c.warn("host %s replied to HELO/EHLO with my own hostname %s", s.relay, s.c.MyHostname)
	f := loopFailure(s.nexthop, s.relay)
	return &f
}

func (s *session) startTLS() error {
	conf := &tls.Config{InsecureSkipVerify: true}
	if s.c.TLSConfig != nil {
		conf = s.c.TLSConfig.Clone()
	}
	if conf.ServerName == "" && net.ParseIP(s.t.host) == nil {
		conf.ServerName = s.t.host
	}
	tc := tls.Client(s.raw, conf)
	if err := tc.Handshake(); err != nil {
		return err
	}
	s.conn, s.tls = tc, true
	s.r, s.w = bufio.NewReader(tc), bufio.NewWriterSize(tc, writeBuffer)
	return nil
}

// dialError gives the text Postfix's %m would: the C library's wording of
// the error number.
func dialError(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.ECONNREFUSED:
		return "Connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &errno) && errno == syscall.ETIMEDOUT:
		return "Connection timed out"
	case errors.As(err, &errno) && errno == syscall.EHOSTUNREACH:
		return "No route to host"
	case errors.As(err, &errno) && errno == syscall.ENETUNREACH:
		return "Network is unreachable"
	case errors.As(err, &errno) && errno == syscall.ECONNRESET:
		return "Connection reset by peer"
	case errors.As(err, &errno):
		return capitalize(errno.Error())
	case errors.Is(err, context.Canceled):
		return "Operation canceled"
	case errors.Is(err, io.EOF):
		return "Connection closed"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	return err.Error()
}

// dialKind is the kind of a failed connect, for the reason class.
func dialKind(err error) event.Kind {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.ECONNREFUSED:
		return event.KindRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &errno) && errno == syscall.ETIMEDOUT:
		return event.KindTimeout
	case errors.As(err, &errno) && (errno == syscall.EHOSTUNREACH || errno == syscall.ENETUNREACH):
		return event.KindUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return event.KindTimeout
	}
	return event.KindLost
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// endData reads the reply to a DATA sent ahead of its recipients' replies
// when no recipient was accepted. A server should refuse that DATA; one
// that answers 354 gets an empty text, ended at once, and the session is
// not used again, since what the server made of it is unknown.
func (s *session) endData() {
	rep, err := s.read()
	if err != nil {
		s.broken = true
		return
	}
	if rep.class() == 3 {
		s.broken = true
		s.w.WriteString(".\r\n")
		if s.flush() == nil {
			s.read()
		}
	}
}
