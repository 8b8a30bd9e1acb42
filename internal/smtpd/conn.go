package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// commandNames are the commands counted in the disconnect line, in the
// order Postfix's smtpd lists them.
var commandNames = []string{"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

var knownCommand = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range commandNames {
		m[n] = true
	}
	return m
}()

// tally counts one command's uses and successes.
type tally struct{ ok, total int }

// clientConn wraps an accepted connection. It logs "connect from" and
// "disconnect from", and it watches the plain-text dialogue (commands on
// the way in, replies on the way out) to count commands the way Postfix's
// disconnect line does: "helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
// or "rcpt=0/1" when some failed. After STARTTLS the bytes are encrypted;
// from then on the session counts what it sees itself (ehlo, mail, rcpt,
// data).
type clientConn struct {
	net.Conn
	srv *Server

	// Fixed at accept time.
	addr       netip.Addr
	port       string
	serverAddr string
	serverPort string
	name       string // verified client name or "unknown"
	rev        string // PTR name or "unknown"
	identOnce  sync.Once

	mu       sync.Mutex
	counts   map[string]*tally
	pending  []string // commands whose reply has not been seen
	inLine   []byte   // partial command line read so far
	outLine  []byte   // partial reply line written so far
	mode     int      // modeCommand, modeData, modeBDAT, modeTLS
	bdatLeft int64
	lastCmd  string
	quit     bool
	greeting string // "helo" or "ehlo": the client's last greeting
	tls      bool
	readErr  error
	closed   bool
}

const (
	modeCommand = iota
	modeData
	modeBDAT
	modeTLS
)

func newClientConn(c net.Conn, srv *Server) *clientConn {
	cc := &clientConn{Conn: c, srv: srv, counts: map[string]*tally{}, name: "unknown", rev: "unknown"}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cc.addr = ap.Addr().Unmap()
		cc.port = strconv.Itoa(int(ap.Port()))
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		cc.serverAddr = ap.Addr().Unmap().String()
		cc.serverPort = strconv.Itoa(int(ap.Port()))
	}
	return cc
}

// ident looks up the client's name (once, in the connection's own
// goroutine, before the greeting) and logs "connect from".
func (cc *clientConn) ident() {
	cc.identOnce.Do(func() {
		if lookup := cc.srv.cfg.LookupAddr; lookup != nil && cc.addr.IsValid() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			names, err := lookup(ctx, cc.addr.String())
			cancel()
			if err == nil && len(names) > 0 {
				n := strings.TrimSuffix(names[0], ".")
				cc.rev, cc.name = n, n
			}
		}
		cc.srv.log("connect from %s", cc.origin())
	})
}

// origin is "name[addr]" as Postfix logs a client.
func (cc *clientConn) origin() string {
	return cc.name + "[" + cc.addrString() + "]"
}

func (cc *clientConn) addrString() string {
	if !cc.addr.IsValid() {
		return "unknown"
	}
	return cc.addr.String()
}

func (cc *clientConn) Read(p []byte) (int, error) {
	cc.ident()
	n, err := cc.Conn.Read(p)
	cc.mu.Lock()
	if n > 0 && cc.mode != modeTLS {
		cc.scanIn(p[:n])
	}
	if err != nil && cc.readErr == nil {
		cc.readErr = err
	}
	cc.mu.Unlock()
	return n, err
}

func (cc *clientConn) Write(p []byte) (int, error) {
	cc.ident()
	cc.mu.Lock()
	if cc.mode != modeTLS {
		cc.scanOut(p)
	}
	cc.mu.Unlock()
	return cc.Conn.Write(p)
}

// scanIn follows the client's bytes: command lines, message data after
// a 354 reply, BDAT chunks.
func (cc *clientConn) scanIn(p []byte) {
	for len(p) > 0 {
		switch cc.mode {
		case modeBDAT:
			n := int64(len(p))
			if n > cc.bdatLeft {
				n = cc.bdatLeft
			}
			cc.bdatLeft -= n
			p = p[n:]
			if cc.bdatLeft == 0 {
				cc.mode = modeCommand
			}
			continue
		case modeTLS:
			return
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(cc.inLine) < 1024 { // only the verb matters
				cc.inLine = append(cc.inLine, p...)
			}
			return
		}
		if len(cc.inLine) < 1024 {
			cc.inLine = append(cc.inLine, p[:i]...)
		}
		p = p[i+1:]
		line := strings.TrimRight(string(cc.inLine), "\r")
		cc.inLine = cc.inLine[:0]
		if cc.mode == modeData {
			if line == "." {
				cc.mode = modeCommand
			}
			continue
		}
		cc.command(line)
	}
}

func (cc *clientConn) command(line string) {
	verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	name := strings.ToLower(verb)
	if !knownCommand[name] || name == "unknown" {
		name = "unknown"
	}
	switch name {
	case "helo", "ehlo":
		cc.greeting = name
	case "quit":
		cc.quit = true
	case "data":
		// Data follows only if the reply is 354; see reply.
		cc.mode = modeData
	case "bdat":
		f := strings.Fields(arg)
		if len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n > 0 {
				cc.mode, cc.bdatLeft = modeBDAT, n
			}
		}
	}
	cc.lastCmd = strings.ToUpper(verb)
	if name == "unknown" {
		cc.lastCmd = "UNKNOWN"
	}
	cc.pending = append(cc.pending, name)
}

// scanOut follows the server's replies and pairs each final reply line
// with the oldest command that waits for one.
func (cc *clientConn) scanOut(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			cc.outLine = append(cc.outLine, p...)
			return
		}
		cc.outLine = append(cc.outLine, p[:i]...)
		p = p[i+1:]
		line := string(cc.outLine)
		cc.outLine = cc.outLine[:0]
		if len(line) < 4 || line[3] == '-' {
			continue // a continuation line of a multi-line reply
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			continue
		}
		cc.reply(code)
	}
}

func (cc *clientConn) reply(code int) {
	if len(cc.pending) == 0 {
		return // the greeting, or a reply to the end of message data
	}
	cmd := cc.pending[0]
	switch {
	case cmd == "data" && code == 354:
		// The command goes on: its outcome is the reply after the data.
		cc.pending[0] = "data-end"
		return
	case cmd == "data":
		cc.mode = modeCommand // rejected: no data follows
	case cmd == "data-end":
		cmd = "data"
	case cmd == "starttls" && code == 220:
		cc.mode = modeTLS
		cc.tls = true
	}
	cc.pending = cc.pending[1:]
	cc.count(cmd, code < 400)
}

func (cc *clientConn) count(cmd string, ok bool) {
	t := cc.counts[cmd]
	if t == nil {
		t = &tally{}
		cc.counts[cmd] = t
	}
	t.total++
	if ok {
		t.ok++
	}
}

// countTLS records a command the session saw after STARTTLS, when the
// connection can no longer read the dialogue.
func (cc *clientConn) countTLS(cmd string, ok bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.mode == modeTLS {
		cc.count(cmd, ok)
	}
}

// protocol is the name the Received: header shows: SMTP after HELO,
// ESMTP after EHLO, with S appended under TLS.
func (cc *clientConn) protocol(utf8 bool) string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := "ESMTP"
	if cc.greeting == "helo" && !cc.tls {
		p = "SMTP"
	}
	if utf8 {
		p = "UTF8SMTP"
	}
	if cc.tls {
		p += "S"
	}
	return p
}

func (cc *clientConn) isTLS() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.tls
}

func (cc *clientConn) Close() error {
	err := cc.Conn.Close()
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return err
	}
	cc.closed = true
	summary := cc.summary()
	lost := ""
	if !cc.quit && cc.readErr != nil {
		after := cc.lastCmd
		if after == "" {
			after = "CONNECT"
		}
		if cc.mode == modeData {
			after = "DATA"
		}
		var ne net.Error
		if errors.As(cc.readErr, &ne) && ne.Timeout() || errors.Is(cc.readErr, os.ErrDeadlineExceeded) {
			lost = "timeout after " + after
		} else if errors.Is(cc.readErr, io.EOF) || !errors.Is(cc.readErr, net.ErrClosed) {
			lost = "lost connection after " + after
		}
	}
	cc.mu.Unlock()
	cc.ident() // a connection closed before any I/O still logs its connect line first
	if lost != "" {
		cc.srv.log("%s from %s", lost, cc.origin())
	}
	cc.srv.log("disconnect from %s%s", cc.origin(), summary)
	return err
}

// summary renders the command counts: " helo=1 mail=1 ... commands=5".
func (cc *clientConn) summary() string {
	var b strings.Builder
	var all tally
	for _, name := range commandNames {
		t := cc.counts[name]
		if t == nil {
			continue
		}
		all.ok += t.ok
		all.total += t.total
		b.WriteString(" " + name + "=" + t.String())
	}
	b.WriteString(" commands=" + all.String())
	return b.String()
}

func (t tally) String() string {
	if t.ok == t.total {
		return strconv.Itoa(t.total)
	}
	return strconv.Itoa(t.ok) + "/" + strconv.Itoa(t.total)
}

// listener wraps accepted connections in clientConns.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newClientConn(c, l.srv), nil
}
