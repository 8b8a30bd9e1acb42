// Package sasl is smtpd's client for Dovecot's authentication protocol
// (smtpd_sasl_type = dovecot): sluice checks no password itself, it
// relays the client's SASL exchange to Dovecot's auth service and takes
// its verdict, as Postfix's xsasl_dovecot does.
//
// # Where
//
// smtpd_sasl_path names the auth socket: a unix-domain socket path
// ("unix:PATH" too; smtpd makes a relative one relative to the queue
// directory, as Postfix takes "private/auth"), or "inet:host:port" for
// Dovecot's inet_listener.
//
// # The protocol (Dovecot auth protocol 1.x, client side)
//
// Lines end with LF; fields are separated by TAB; a field's TAB, LF, CR,
// NUL and the escape byte itself are written as 0x01 followed by 't',
// 'n', 'r', '0' or '1'. On connect both sides send their handshake at
// once:
//
//	C: VERSION 1 2          S: VERSION 1 <minor>
//	C: CPID <our pid>       S: MECH <name> [flags...]   (one per mechanism)
//	                        S: SPID <pid>, CUID <n>, COOKIE <hex>
//	                        S: DONE
//
// A major version other than 1 is refused. MECH flags say what a
// mechanism is (anonymous, plaintext, dictionary, active,
// forward-secrecy, mutual-auth, private); unknown lines and flags are
// ignored, as the protocol asks.
//
// An authentication is a request with an ID, unique on the connection:
//
//	C: AUTH <id> <mech> service=smtp nologin lip=<server ip> rip=<client ip> [secured] [resp=<base64>]
//	S: CONT <id> <base64 challenge>     C: CONT <id> <base64 response>
//	S: OK <id> user=<name> ...          (success; the exchange ends)
//	S: FAIL <id> [user=<name>] [reason=<text>] [temp] ...
//
// "nologin" says we only verify (no login process follows); "secured"
// says the client's channel is under TLS, which Dovecot's
// disable_plaintext_auth wants before it takes plaintext mechanisms;
// resp= carries the SMTP client's initial response (an empty one as an
// empty value). "temp" in a FAIL is a temporary failure (Dovecot's
// backend is down): smtpd answers 454 rather than 535.
//
// # Connections
//
// One Conn serves one SMTP session: it is dialled on the first need
// (the EHLO that advertises AUTH, or AUTH itself), handshakes once and
// runs one exchange at a time. A cancelled exchange (the client's "*")
// cannot be withdrawn in this protocol, so the session closes the
// connection instead and dials anew if it authenticates again. Every
// read has a deadline (Timeout), so a hung auth service costs a session
// a temporary failure, never a stuck server.
//
// # Mechanisms offered
//
// Mechanisms returns what Dovecot offers minus what cannot be relayed
// or is not wanted: "private" mechanisms (not for clients), channel
// binding (*-PLUS: the binding is of our TLS session, which Dovecot
// cannot see), EXTERNAL (needs the client certificate), and anonymous
// ones unless allowed (smtpd_sasl_security_options = noanonymous, as
// Postfix's default). Every other mechanism is a transparent base64
// exchange and is relayed as it is; PLAIN and LOGIN are the ones tested.
package sasl

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mech is one mechanism Dovecot offers.
type Mech struct {
	Name  string
	Flags []string // anonymous, plaintext, dictionary, active, ...
}

// Has reports whether the mechanism has a flag.
func (m Mech) Has(flag string) bool {
	for _, f := range m.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// Dialer opens the connection to the auth service.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Config says where Dovecot is and how long to wait for it.
type Config struct {
	// Path is smtpd_sasl_path: a socket path, unix:PATH or inet:host:port.
	Path string
	// Timeout bounds the dial and every wait for a reply; 0 means 60 s.
	// Dovecot delays failures on purpose (auth_failure_delay, 2 s by
	// default), so it must be generous.
	Timeout time.Duration
	// Dial opens connections; nil means net.Dialer.
	Dial Dialer
	// PID is sent as CPID; 0 means this process's.
	PID int
}

// ParsePath splits smtpd_sasl_path into a network and an address.
func ParsePath(path string) (network, addr string, err error) {
	switch {
	case path == "":
		return "", "", errors.New("sasl: smtpd_sasl_path is empty")
	case strings.HasPrefix(path, "inet:"):
		addr = strings.TrimPrefix(path, "inet:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("sasl: smtpd_sasl_path %q: want inet:host:port", path)
		}
		return "tcp", addr, nil
	case strings.HasPrefix(path, "unix:"):
		return "unix", strings.TrimPrefix(path, "unix:"), nil
	}
	return "unix", path, nil
}

// Info describes the SMTP session an exchange is for.
type Info struct {
	Service    string // "smtp"
	LocalAddr  net.IP // our address (lip)
	RemoteAddr net.IP // the client's (rip)
	Secured    bool   // under TLS
	LocalPort  int    // lport, 0 when unknown
	RemotePort int    // rport, 0 when unknown
}

// Status is where an exchange stands.
type Status int

const (
	// Continue: Dovecot sent a challenge; send the client's response.
	Continue Status = iota
	// OK: authenticated as Result.User.
	OK
	// Fail: refused (Result.Temp: for now only).
	Fail
)

// Result is Dovecot's answer to one step.
type Result struct {
	Status    Status
	Challenge []byte // Continue: the decoded challenge
	User      string // OK: the authenticated name; Fail: the name tried, if Dovecot says
	Reason    string // Fail: Dovecot's reason, "" when it gives none
	Temp      bool   // Fail: a temporary failure
}

// Conn is one connection to the auth service.
type Conn struct {
	cfg   Config
	c     net.Conn
	br    *bufio.Reader
	mechs []Mech
	next  int // the next request ID
	cur   int // the request in progress, 0 for none
}

// Dial connects to the auth service and does the handshake.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	if cfg.PID == 0 {
		cfg.PID = os.Getpid()
	}
	network, addr, err := ParsePath(cfg.Path)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	nc, err := cfg.Dial(dctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("sasl: connect to %s: %w", cfg.Path, err)
	}
	c := &Conn{cfg: cfg, c: nc, br: bufio.NewReaderSize(nc, 16384), next: 1}
	if err := c.handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("sasl: %s: %w", cfg.Path, err)
	}
	return c, nil
}

func (c *Conn) handshake() error {
	if err := c.send("VERSION", "1", "2"); err != nil {
		return err
	}
	if err := c.send("CPID", strconv.Itoa(c.cfg.PID)); err != nil {
		return err
	}
	sawVersion := false
	for {
		f, err := c.readLine()
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		switch f[0] {
		case "VERSION":
			if len(f) < 2 || f[1] != "1" {
				return fmt.Errorf("handshake: unsupported protocol version %q", strings.Join(f[1:], "."))
			}
			sawVersion = true
		case "MECH":
			if len(f) >= 2 && f[1] != "" {
				c.mechs = append(c.mechs, Mech{Name: strings.ToUpper(f[1]), Flags: f[2:]})
			}
		case "DONE":
			if !sawVersion {
				return errors.New("handshake: DONE before VERSION")
			}
			return nil
		}
		// SPID, CUID, COOKIE: for login processes; not needed here.
	}
}

// AllMechanisms returns every mechanism Dovecot announced.
func (c *Conn) AllMechanisms() []Mech { return append([]Mech(nil), c.mechs...) }

// Mechanisms returns the names of the mechanisms to offer SMTP clients
// (see the package comment); anonymous ones only when allowAnonymous,
// plaintext ones only when allowPlaintext.
func (c *Conn) Mechanisms(allowAnonymous, allowPlaintext bool) []string {
	var out []string
	for _, m := range c.mechs {
		switch {
		case m.Has("private"),
			strings.HasSuffix(m.Name, "-PLUS"),
			m.Name == "EXTERNAL",
			m.Has("anonymous") && !allowAnonymous,
			m.Has("plaintext") && !allowPlaintext:
			continue
		}
		out = append(out, m.Name)
	}
	return out
}

// Offers reports whether Dovecot announced mech.
func (c *Conn) Offers(mech string) bool {
	for _, m := range c.mechs {
		if strings.EqualFold(m.Name, mech) {
			return true
		}
	}
	return false
}

// Start begins an exchange with mech. initial is the client's initial
// response, decoded (nil: none given; empty: the empty response "=").
func (c *Conn) Start(mech string, initial []byte, info Info) (Result, error) {
	if c.cur != 0 {
		return Result{}, errors.New("sasl: an exchange is already in progress")
	}
	id := c.next
	c.next++
	f := []string{"AUTH", strconv.Itoa(id), mech, "service=" + orDefault(info.Service, "smtp"), "nologin"}
	if info.LocalAddr != nil {
		f = append(f, "lip="+info.LocalAddr.String())
	}
	if info.RemoteAddr != nil {
		f = append(f, "rip="+info.RemoteAddr.String())
	}
	if info.LocalPort > 0 {
		f = append(f, "lport="+strconv.Itoa(info.LocalPort))
	}
	if info.RemotePort > 0 {
		f = append(f, "rport="+strconv.Itoa(info.RemotePort))
	}
	if info.Secured {
		f = append(f, "secured")
	}
	if initial != nil {
		f = append(f, "resp="+base64.StdEncoding.EncodeToString(initial))
	}
	if err := c.send(f...); err != nil {
		return Result{}, err
	}
	c.cur = id
	return c.result()
}

// Continue sends the client's response (decoded) to the last challenge.
func (c *Conn) Continue(resp []byte) (Result, error) {
	if c.cur == 0 {
		return Result{}, errors.New("sasl: no exchange in progress")
	}
	if err := c.send("CONT", strconv.Itoa(c.cur), base64.StdEncoding.EncodeToString(resp)); err != nil {
		return Result{}, err
	}
	return c.result()
}

// result reads the reply to the exchange in progress.
func (c *Conn) result() (Result, error) {
	for {
		f, err := c.readLine()
		if err != nil {
			c.cur = 0
			return Result{}, fmt.Errorf("sasl: %s: %w", c.cfg.Path, err)
		}
		if len(f) < 2 || f[1] != strconv.Itoa(c.cur) {
			continue // not ours (or not a reply): ignore, as the protocol allows
		}
		switch f[0] {
		case "CONT":
			var data string
			if len(f) >= 3 {
				data = f[2]
			}
			ch, err := base64.StdEncoding.DecodeString(data)
			if err != nil {
				c.cur = 0
				return Result{}, fmt.Errorf("sasl: %s: bad base64 in challenge", c.cfg.Path)
			}
			return Result{Status: Continue, Challenge: ch}, nil
		case "OK":
			c.cur = 0
			r := Result{Status: OK}
			for _, p := range f[2:] {
				if v, ok := strings.CutPrefix(p, "user="); ok {
					r.User = v
				}
			}
			if r.User == "" {
				return Result{}, fmt.Errorf("sasl: %s: OK without user", c.cfg.Path)
			}
			return r, nil
		case "FAIL":
			c.cur = 0
			r := Result{Status: Fail}
			for _, p := range f[2:] {
				switch {
				case p == "temp":
					r.Temp = true
				case strings.HasPrefix(p, "user="):
					r.User = p[len("user="):]
				case strings.HasPrefix(p, "reason="):
					r.Reason = p[len("reason="):]
				}
			}
			return r, nil
		}
	}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) send(fields ...string) error {
	for i := range fields {
		fields[i] = escape(fields[i])
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(c.cfg.Timeout))
	if _, err := c.c.Write([]byte(strings.Join(fields, "\t") + "\n")); err != nil {
		return fmt.Errorf("sasl: write to %s: %w", c.cfg.Path, err)
	}
	return nil
}

// maxLine bounds a line from the auth service (the protocol expects
// lines to fit 16 KB; a longer one is not Dovecot).
const maxLine = 65536

func (c *Conn) readLine() ([]string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(c.cfg.Timeout))
	var line []byte
	for {
		chunk, err := c.br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errors.New("line too long")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	line = line[:len(line)-1]
	fields := strings.Split(string(line), "\t")
	for i := range fields {
		fields[i] = unescape(fields[i])
	}
	return fields, nil
}

// escape applies Dovecot's tab-escaping to one field.
func escape(s string) string {
	if !strings.ContainsAny(s, "\x00\x01\t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape undoes escape; an unknown escape stands for the byte itself.
func unescape(s string) string {
	if !strings.Contains(s, "\x01") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 1 || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n', 'l':
			b.WriteByte('\n')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
