package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// timedConn sets a deadline before every read and every write: the read
// deadline is Timeout from now, and never later than limit, the end of
// the current request; so neither a silent client nor one that trickles
// a byte at a time holds a session longer than the limits allow.
//
// A deadline is moved only when it would move later by more than a
// 32nd of the timeout (so a 300 s timeout may end up to 9 s early), not
// at every read and write: moving it costs a timer update each time.
type timedConn struct {
	net.Conn
	timeout time.Duration
	limit   time.Time // zero: no request limit

	read, write time.Time // the deadlines set last
}

func (c *timedConn) Read(p []byte) (int, error) {
	d := time.Now().Add(c.timeout)
	if !c.limit.IsZero() && c.limit.Before(d) {
		d = c.limit
	}
	if c.stale(c.read, d) {
		// A connection that takes no deadlines (sendmail -bs's
		// standard input) simply blocks; its other end is a local user.
		_ = c.Conn.SetReadDeadline(d)
		c.read = d
	}
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	if d := time.Now().Add(c.timeout); c.stale(c.write, d) {
		_ = c.Conn.SetWriteDeadline(d)
		c.write = d
	}
	return c.Conn.Write(p)
}

// stale reports whether the deadline set, set, must move to want: it
// is later than want, or earlier by more than the slack.
func (c *timedConn) stale(set, want time.Time) bool {
	return set.IsZero() || set.After(want) || want.Sub(set) > c.timeout/32
}

// Commands counted in the disconnect line, in the order Postfix's smtpd
// lists them.
const (
	cmdHelo = iota
	cmdEhlo
	cmdStartTLS
	cmdAuth
	cmdMail
	cmdRcpt
	cmdData
	cmdBdat
	cmdRset
	cmdNoop
	cmdVrfy
	cmdEtrn
	cmdQuit
	cmdUnknown
	numCommands
)

var commandNames = [numCommands]string{"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

// tally counts one command's uses and successes.
type tally struct{ ok, total int }

func (t tally) String() string {
	if t.ok == t.total {
		return strconv.Itoa(t.total)
	}
	return strconv.Itoa(t.ok) + "/" + strconv.Itoa(t.total)
}

// serveConn runs one session on c; limited says whether the connection
// limits apply (connections from listeners).
func (s *Server) serveConn(c net.Conn, limited bool) {
	defer s.untrack(c)
	ss := newSession(s, c)
	defer func() {
		if p := recover(); p != nil {
			s.cfg.ErrorLog.Printf("smtpd: panic serving %s: %v", ss.origin(), p)
			ss.abortBDAT()
			c.Close()
		}
	}()
	if limited {
		if r := s.limits.admit(ss.addr, s.cfg.Hostname); r != nil {
			ss.ident()
			s.log("connect from %s", ss.origin())
			if r.warning != "" {
				s.warn(r.warning, ss.origin())
			}
			ss.writeLine(r.reply)
			ss.flush()
			s.log("disconnect from %s%s", ss.origin(), ss.summary())
			c.Close()
			return
		}
	}
	released := !limited
	defer func() {
		if !released {
			s.limits.release(ss.addr)
		}
	}()
	ss.ident()
	s.log("connect from %s", ss.origin())
	ss.run(limited)
	ss.closeSASL()
	ss.abortBDAT()
	ss.flush()
	c.Close()
	// The session's slot is free before the log says it ended.
	if !released {
		s.limits.release(ss.addr)
		released = true
	}
	s.log("disconnect from %s%s", ss.origin(), ss.summary())
}

// newSession wraps c; nothing is read or written yet.
func newSession(s *Server, c net.Conn) *session {
	tc := &timedConn{Conn: c, timeout: s.cfg.Timeout}
	ss := &session{
		s:       s,
		cfg:     &s.cfg,
		raw:     c,
		tc:      tc,
		br:      bufio.NewReaderSize(tc, readBufferSize),
		bw:      bufio.NewWriterSize(tc, 1024),
		name:    "unknown",
		rev:     "unknown",
		lastCmd: "CONNECT",
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		ss.addr = ap.Addr().Unmap()
		ss.port = strconv.Itoa(int(ap.Port()))
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		ss.serverAddr = ap.Addr().Unmap().String()
		ss.serverPort = strconv.Itoa(int(ap.Port()))
	}
	return ss
}

// ident looks up the client's name, once, before the greeting.
func (ss *session) ident() {
	lookup := ss.cfg.LookupAddr
	if lookup == nil || !ss.addr.IsValid() {
		return
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, 10*time.Second)
	names, err := lookup(ctx, ss.addr.String())
	cancel()
	if err == nil && len(names) > 0 {
		n := strings.TrimSuffix(names[0], ".")
		ss.rev, ss.name = n, n
	}
}

// origin is "name[addr]" as Postfix logs a client.
func (ss *session) origin() string {
	return ss.name + "[" + ss.addrString() + "]"
}

func (ss *session) addrString() string {
	if !ss.addr.IsValid() {
		return "unknown"
	}
	return ss.addr.String()
}

// run is the session: greeting, then commands until the end.
func (ss *session) run(limited bool) {
	if ss.cfg.TLSWrapper {
		// smtps: the client speaks first, its TLS handshake; there is
		// no pregreet to detect.
		if !ss.wrapTLS() {
			return
		}
	} else if limited {
		ss.checkPregreet()
		if ss.closing { // smtpd_forbid_unauth_pipelining
			return
		}
	}
	ss.writeLine("220 " + ss.cfg.Banner)
	ss.milterConnect()
	defer ss.milterClose()
	for !ss.closing {
		if ss.errors >= ss.cfg.HardErrorLimit {
			ss.reply("421 4.7.0 " + ss.cfg.Hostname + " Error: too many errors")
			ss.s.log("too many errors after %s from %s", ss.lastCmd, ss.origin())
			return
		}
		line, tooLong, err := ss.readLine()
		if err != nil {
			ss.readFailed(err, "")
			return
		}
		if tooLong {
			ss.s.warn("%s: request longer than %d: %.30s...", ss.origin(), lineLengthLimit, line)
		}
		ss.command(line)
		if ss.writeErr != nil {
			ss.s.log("lost connection after %s from %s", ss.lastCmd, ss.origin())
			return
		}
	}
}

// checkPregreet notes a client that talks before the greeting (as
// Postfix, "improper command pipelining after CONNECT"). Like Postfix's
// smtpd it looks at what has come by the time of the greeting, without
// waiting for more: a wait, however short, would delay every session.
func (ss *session) checkPregreet() {
	if ss.br.Buffered() == 0 {
		if !inputWaiting(ss.raw) {
			return
		}
		ss.br.Peek(1) // there: for the log line
	}
	ss.improperPipelining()
}

// inputWaiting reports whether c has bytes to read now, without waiting
// (false for a connection it cannot look into).
func inputWaiting(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		waiting = err == nil && n > 0
		return true // done, whatever it found: never wait
	})
	return waiting
}

// readFailed ends the session after a failed read; what names the data
// phase ("DATA (12 bytes)") or is empty for a command.
func (ss *session) readFailed(err error, what string) {
	after := ss.lastCmd
	if what != "" {
		after = what
	}
	switch {
	case isTimeout(err):
		ss.reply("421 4.4.2 " + ss.cfg.Hostname + " Error: timeout exceeded")
		ss.s.log("timeout after %s from %s", after, ss.origin())
	case ss.s.isClosed() && errors.Is(err, net.ErrClosed):
		// Close dropped the connection: nothing was lost by the client.
	default:
		ss.s.log("lost connection after %s from %s", after, ss.origin())
	}
	ss.closing = true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// readLine reads the next command line, without its line end. A line
// longer than lineLengthLimit is cut there (tooLong); the rest of it is
// read and discarded. The whole line must arrive within Timeout of its
// start. A last line without a line end is an error (io.EOF), never a
// command.
func (ss *session) readLine() (line []byte, tooLong bool, err error) {
	ss.flushIfIdle()
	if ss.writeErr != nil {
		return nil, false, ss.writeErr
	}
	ss.tc.limit = time.Now().Add(ss.cfg.Timeout)
	defer func() { ss.tc.limit = time.Time{} }()
	buf := ss.line[:0]
	total := 0
	for {
		chunk, err := ss.br.ReadSlice('\n')
		if err == nil {
			chunk = chunk[:len(chunk)-1] // the LF
		}
		total += len(chunk)
		if room := lineLengthLimit + 1 - len(buf); room > 0 {
			buf = append(buf, chunk[:min(room, len(chunk))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		ss.line = buf
		if err != nil {
			if errors.Is(err, io.EOF) && total > 0 {
				err = io.ErrUnexpectedEOF // a partial line: never run
			}
			return nil, false, err
		}
		break
	}
	// The CR of CRLF, when it is the line's last byte.
	if total == len(buf) && len(buf) > 0 && buf[len(buf)-1] == '\r' {
		buf = buf[:len(buf)-1]
		total--
	}
	if total > lineLengthLimit {
		return buf[:min(len(buf), lineLengthLimit)], true, nil
	}
	return buf, false, nil
}

// flushIfIdle sends the replies written so far unless the input already
// holds another complete command: replies to a pipelined group go out
// together (RFC 2920 §3.2), and nothing waits on a reply we hold back.
func (ss *session) flushIfIdle() {
	if n := ss.br.Buffered(); n > 0 {
		if buffered, _ := ss.br.Peek(n); bytes.IndexByte(buffered, '\n') >= 0 {
			return
		}
	}
	ss.flush()
}

func (ss *session) flush() {
	if ss.writeErr != nil {
		return
	}
	if err := ss.bw.Flush(); err != nil {
		ss.writeErr = err
	}
}

// writeLine queues one reply line (CRLF added). Client text echoed in a
// reply ("Unsupported option: X") has its control characters replaced
// by '?': a reply is one line, and no terminal escapes go back.
func (ss *session) writeLine(s string) {
	if ss.writeErr != nil {
		return
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			s = strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return '?'
				}
				return r
			}, s)
			break
		}
	}
	ss.bw.WriteString(s)
	if _, err := ss.bw.WriteString("\r\n"); err != nil {
		ss.writeErr = err
	}
}

// reply sends a reply; a client with smtpd_soft_error_limit errors
// waits smtpd_error_sleep_time first, as Postfix's smtpd makes it wait
// before every reply.
func (ss *session) reply(s string) {
	if ss.errors >= ss.cfg.SoftErrorLimit && ss.cfg.ErrorSleep > 0 {
		ss.flush()
		ss.cfg.Sleep(ss.cfg.ErrorSleep)
	}
	if code, err := strconv.Atoi(s[:3]); err == nil {
		ss.code = code
	}
	ss.writeLine(s)
}

// improperPipelining logs, once per session, that the client sent
// ahead of time, with the first 100 bytes it sent, escaped; with
// smtpd_forbid_unauth_pipelining it refuses and ends the session.
func (ss *session) improperPipelining() {
	if ss.illPipelining {
		return
	}
	ss.illPipelining = true
	n := min(ss.br.Buffered(), 100)
	pending, _ := ss.br.Peek(n)
	ss.s.log("improper command pipelining after %s from %s: %s", ss.lastCmd, ss.origin(), escapeInput(pending))
	if ss.cfg.ForbidUnauthPipelining {
		ss.reply("554 5.5.0 Error: SMTP protocol synchronization")
		ss.closing = true
	}
}

// escapeInput renders client bytes as Postfix logs them: printable
// ASCII as is, a backslash doubled, CR, LF and TAB as \r, \n, \t, and
// every other byte as a three-digit octal escape.
func escapeInput(p []byte) string {
	var b strings.Builder
	for _, c := range p {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + c>>3&7)
			b.WriteByte('0' + c&7)
		}
	}
	return b.String()
}

// summary renders the command counts: " helo=1 mail=1 ... commands=5".
func (ss *session) summary() string {
	var b strings.Builder
	var all tally
	for i, t := range ss.counts {
		if t.total == 0 {
			continue
		}
		all.ok += t.ok
		all.total += t.total
		b.WriteString(" " + commandNames[i] + "=" + t.String())
	}
	if all.total == 0 {
		// Postfix writes a session without commands this way.
		b.WriteString(" commands=0/0")
		return b.String()
	}
	b.WriteString(" commands=" + all.String())
	return b.String()
}

// protocol is the name the Received: header and the log show: SMTP
// after HELO (or none), ESMTP after EHLO, UTF8SMTP for an SMTPUTF8
// message, with S appended under TLS.
func (ss *session) protocol(utf8 bool) string {
	p := "SMTP"
	if ss.ehlo {
		p = "ESMTP"
	}
	if utf8 {
		p = "UTF8SMTP"
	}
	if ss.tls {
		if p == "SMTP" {
			p = "ESMTP"
		}
		p += "S"
	}
	return p
}
