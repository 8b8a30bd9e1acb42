// Package fakesmtp is a receiving SMTP server on 127.0.0.1 for tests of a
// delivery client. It records every session (HELO/EHLO name, STARTTLS,
// every command line, each transaction's MAIL FROM and its parameters,
// every RCPT TO, the DATA bytes exactly as they came over the wire) and
// answers from defaults that a test can override per stage and per
// recipient: another reply text, a delay, or a dropped connection. Its
// EHLO capabilities can be switched (PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
// DSN, STARTTLS with a generated self-signed certificate, or a STARTTLS
// whose handshake always fails).
//
// It is written on net/textproto-style line handling of its own rather
// than on an SMTP server library, so that a test can make it misbehave in
// ways a library would not allow.
//
// Every fact a session records is recorded before the server answers the
// command, so once the client has read a reply the test can see what the
// server saw.
package fakesmtp

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Stages whose reply a test can set with Server.Reply.
const (
	Greeting = "GREETING" // the banner on connect
	EHLO     = "EHLO"
	HELO     = "HELO"
	STARTTLS = "STARTTLS"
	MAIL     = "MAIL"
	RCPT     = "RCPT" // every RCPT without a per-recipient reply
	DATA     = "DATA" // the reply to the DATA command (354)
	DOT      = "DOT"  // the reply after the message's final dot
	RSET     = "RSET"
	QUIT     = "QUIT"
	NOOP     = "NOOP"
)

// Options are the server's advertised features.
type Options struct {
	Hostname     string // in the banner and EHLO reply; default "fake.test"
	NoESMTP      bool   // answer EHLO with 502, so the client must use HELO
	NoPipelining bool
	No8BitMIME   bool
	NoSMTPUTF8   bool
	NoDSN        bool
	// SizeLimit is advertised as "SIZE n" and enforced; 0 advertises
	// "SIZE" without a limit, unless NoSize.
	SizeLimit int64
	NoSize    bool
	// TLS offers STARTTLS with a generated self-signed certificate.
	TLS bool
	// TLSBroken offers STARTTLS, answers it with 220 and then writes
	// garbage instead of a TLS handshake.
	TLSBroken bool
	// Extra capabilities to advertise, e.g. "AUTH PLAIN".
	Extra []string
}

// Reply is an injected answer. An empty Text keeps the default reply; a
// Text may hold several lines separated by "\n", written as they are (so
// a test can send a malformed reply).
type Reply struct {
	Text  string
	Delay time.Duration // wait this long before answering
	Drop  bool          // close the connection instead of answering
}

// Rcpt is one RCPT TO command.
type Rcpt struct {
	Addr     string
	Params   []string
	Reply    string
	Accepted bool
}

// Mail is one transaction, from MAIL FROM to the end of data or RSET.
type Mail struct {
	From       string
	FromParams []string
	Rcpts      []Rcpt
	// Data is the message with dot-stuffing removed and line ends kept as
	// received; Raw is every byte between the 354 reply and the final
	// ".\r\n" line.
	Data, Raw []byte
	BareLF    bool   // some line of the data ended with LF alone
	DataReply string // the reply to the final dot; empty if none was sent
}

// Session is one connection.
type Session struct {
	ID        int
	Remote    string
	Helo      string // name given in the last EHLO or HELO
	Ehlo      bool   // the last greeting was EHLO
	EhloCount int    // EHLO and HELO commands seen
	TLS       bool   // STARTTLS completed
	Commands  []string
	Mails     []Mail
	// Pipelined: some command arrived while the server had not answered
	// the one before it (the client did not wait for replies).
	Pipelined bool
	Quit      bool // the client sent QUIT
	Closed    bool // the connection has ended
}

// Server is a running fake SMTP server.
type Server struct {
	Addr string // 127.0.0.1:port
	Host string // 127.0.0.1
	Port int

	ln      net.Listener
	tlsConf *tls.Config
	certDER []byte
	done    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	opts     Options
	replies  map[string]Reply
	rcpt     map[string]Reply
	sessions []*Session
	conns    map[net.Conn]bool
	seq      int
}

// Start starts a server with opts and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("fakesmtp: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server on 127.0.0.1 with a free port; the caller must
// Close it.
func New(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakesmtp: listen: %w", err)
	}
	cert, der, err := selfSigned()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("fakesmtp: certificate: %w", err)
	}
	a := ln.Addr().(*net.TCPAddr)
	s := &Server{
		Addr: a.String(), Host: a.IP.String(), Port: a.Port,
		ln:      ln,
		tlsConf: &tls.Config{Certificates: []tls.Certificate{cert}},
		certDER: der,
		done:    make(chan struct{}),
		opts:    opts,
		replies: map[string]Reply{},
		rcpt:    map[string]Reply{},
		conns:   map[net.Conn]bool{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops the server and ends every open session.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// DropConnections closes every open connection without a word, as a
// server does that times out idle clients.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// CertPool holds the server's self-signed certificate, for clients that
// verify it.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	if c, err := x509.ParseCertificate(s.certDER); err == nil {
		p.AddCert(c)
	}
	return p
}

// SetOptions changes the advertised features for sessions that start
// afterwards.
func (s *Server) SetOptions(opts Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = opts
}

// Reply sets the answer for a stage (Greeting, EHLO, MAIL, RCPT, DATA,
// DOT, ...); the zero Reply restores the default.
func (s *Server) Reply(stage string, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r == (Reply{}) {
		delete(s.replies, stage)
		return
	}
	s.replies[stage] = r
}

// RcptReply sets the answer to RCPT TO for one address (compared without
// regard to case).
func (s *Server) RcptReply(addr string, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpt[strings.ToLower(addr)] = r
}

// Sessions returns a copy of every session so far, in the order they
// connected.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, len(s.sessions))
	for i, ss := range s.sessions {
		c := *ss
		c.Commands = append([]string(nil), ss.Commands...)
		c.Mails = make([]Mail, len(ss.Mails))
		for j, m := range ss.Mails {
			m.FromParams = append([]string(nil), m.FromParams...)
			m.Rcpts = append([]Rcpt(nil), m.Rcpts...)
			m.Data = append([]byte(nil), m.Data...)
			m.Raw = append([]byte(nil), m.Raw...)
			c.Mails[j] = m
		}
		out[i] = c
	}
	return out
}

// Delivered returns every transaction that got a 2xx reply to its final
// dot, across all sessions.
func (s *Server) Delivered() []Mail {
	var out []Mail
	for _, ss := range s.Sessions() {
		for _, m := range ss.Mails {
			if positive(m.DataReply, '2') {
				out = append(out, m)
			}
		}
	}
	return out
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.seq++
		ss := &Session{ID: s.seq, Remote: c.RemoteAddr().String()}
		s.sessions = append(s.sessions, ss)
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sess := &session{srv: s, rec: ss, conn: c}
			sess.serve()
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			ss.Closed = true
			s.mu.Unlock()
		}()
	}
}

// session is the server side of one connection.
type session struct {
	srv  *Server
	rec  *Session
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	opts Options
	tls  bool
	helo bool
	// The current transaction: inMail after an accepted MAIL FROM, its
	// index in rec.Mails, and how many recipients were accepted.
	inMail   bool
	mailIdx  int
	accepted int
}

var errDrop = errors.New("connection dropped")

// record changes the session record under the server's lock.
func (ss *session) record(f func(*Session)) {
	ss.srv.mu.Lock()
	defer ss.srv.mu.Unlock()
	f(ss.rec)
}

// injected returns the reply set for stage, if any.
func (ss *session) injected(stage string) (Reply, bool) {
	ss.srv.mu.Lock()
	defer ss.srv.mu.Unlock()
	r, ok := ss.srv.replies[stage]
	return r, ok
}

// answer sends the injected reply for stage if there is one, else def. It
// returns the text sent.
func (ss *session) answer(stage, def string) (string, error) {
	r, ok := ss.injected(stage)
	if !ok {
		r = Reply{}
	}
	return ss.send(r, def)
}

func (ss *session) send(r Reply, def string) (string, error) {
	if r.Delay > 0 {
		select {
		case <-time.After(r.Delay):
		case <-ss.srv.done:
			return "", errDrop
		}
	}
	if r.Drop {
		return "", errDrop
	}
	text := def
	if r.Text != "" {
		text = r.Text
	}
	for _, l := range strings.Split(text, "\n") {
		ss.w.WriteString(l)
		ss.w.WriteString("\r\n")
	}
	return text, ss.w.Flush()
}

func (ss *session) serve() {
	ss.srv.mu.Lock()
	ss.opts = ss.srv.opts
	ss.srv.mu.Unlock()
	if ss.opts.Hostname == "" {
		ss.opts.Hostname = "fake.test"
	}
	ss.r = bufio.NewReader(ss.conn)
	ss.w = bufio.NewWriter(ss.conn)
	if _, err := ss.answer(Greeting, "220 "+ss.opts.Hostname+" ESMTP fakesmtp"); err != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			return
		}
		pipelined := ss.r.Buffered() > 0
		ss.record(func(r *Session) {
			r.Commands = append(r.Commands, line)
			if pipelined {
				r.Pipelined = true
			}
		})
		verb, arg, _ := strings.Cut(line, " ")
		if err := ss.command(strings.ToUpper(verb), strings.TrimSpace(arg)); err != nil {
			return
		}
	}
}

// readLine reads one command line without its CRLF; lines are limited
// to 64 KiB.
func (ss *session) readLine() (string, error) {
	var b []byte
	for {
		frag, err := ss.r.ReadSlice('\n')
		b = append(b, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
		if len(b) > 64<<10 {
			return "", fmt.Errorf("line too long")
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (ss *session) command(verb, arg string) error {
	var err error
	switch verb {
	case "EHLO", "HELO":
		err = ss.hello(verb, arg)
	case "STARTTLS":
		err = ss.startTLS()
	case "MAIL":
		err = ss.mailFrom(arg)
	case "RCPT":
		err = ss.rcptTo(arg)
	case "DATA":
		err = ss.data()
	case "RSET":
		ss.inMail = false
		_, err = ss.answer(RSET, "250 2.0.0 Ok")
	case "NOOP":
		_, err = ss.answer(NOOP, "250 2.0.0 Ok")
	case "QUIT":
		ss.record(func(r *Session) { r.Quit = true })
		if _, err := ss.answer(QUIT, "221 2.0.0 Bye"); err != nil {
			return err
		}
		return io.EOF
	default:
		_, err = ss.send(Reply{}, "502 5.5.2 Error: command not recognized")
	}
	return err
}

func (ss *session) hello(verb, arg string) error {
	ss.record(func(r *Session) { r.Helo, r.Ehlo = arg, verb == "EHLO"; r.EhloCount++ })
	if arg == "" {
		_, err := ss.send(Reply{}, "501 Syntax: "+verb+" hostname")
		return err
	}
	ss.inMail = false
	if verb == "HELO" {
		ss.helo = true
		_, err := ss.answer(HELO, "250 "+ss.opts.Hostname)
		return err
	}
	if ss.opts.NoESMTP {
		_, err := ss.answer(EHLO, "502 5.5.2 Error: command not recognized")
		return err
	}
	caps := []string{ss.opts.Hostname}
	if !ss.opts.NoPipelining {
		caps = append(caps, "PIPELINING")
	}
	switch {
	case ss.opts.NoSize:
	case ss.opts.SizeLimit > 0:
		caps = append(caps, "SIZE "+strconv.FormatInt(ss.opts.SizeLimit, 10))
	default:
		caps = append(caps, "SIZE")
	}
	if (ss.opts.TLS || ss.opts.TLSBroken) && !ss.tls {
		caps = append(caps, "STARTTLS")
	}
	caps = append(caps, "ENHANCEDSTATUSCODES")
	if !ss.opts.No8BitMIME {
		caps = append(caps, "8BITMIME")
	}
	if !ss.opts.NoDSN {
		caps = append(caps, "DSN")
	}
	if !ss.opts.NoSMTPUTF8 {
		caps = append(caps, "SMTPUTF8")
	}
	caps = append(caps, ss.opts.Extra...)
	var b strings.Builder
	for i, c := range caps {
		sep := "-"
		if i == len(caps)-1 {
			sep = " "
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("250" + sep + c)
	}
	r, ok := ss.injected(EHLO)
	if !ok {
		r = Reply{}
	}
	if _, err := ss.send(r, b.String()); err != nil {
		return err
	}
	if r.Text == "" || positive(r.Text, '2') {
		ss.helo = true
	}
	return nil
}

func (ss *session) startTLS() error {
	if !(ss.opts.TLS || ss.opts.TLSBroken) || ss.tls {
		_, err := ss.send(Reply{}, "502 5.5.1 Error: command not implemented")
		return err
	}
	text, err := ss.answer(STARTTLS, "220 2.0.0 Ready to start TLS")
	if err != nil || !positive(text, '2') {
		return err
	}
	if ss.opts.TLSBroken {
		ss.w.WriteString("this is not a TLS server hello\r\n")
		ss.w.Flush()
		return errDrop
	}
	tc := tls.Server(ss.conn, ss.srv.tlsConf)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	ss.tls, ss.helo, ss.inMail = true, false, false
	ss.conn = tc
	ss.r = bufio.NewReader(tc)
	ss.w = bufio.NewWriter(tc)
	ss.record(func(r *Session) { r.TLS = true })
	return nil
}

// path splits "FROM:<addr> PARAM..." (or "TO:...") into the address and
// parameters.
func path(arg, prefix string) (string, []string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", nil, false
	}
	return rest[1:end], strings.Fields(rest[end+1:]), true
}

func (ss *session) mailFrom(arg string) error {
	if !ss.helo {
		_, err := ss.send(Reply{}, "503 5.5.1 Error: send HELO/EHLO first")
		return err
	}
	if ss.inMail {
		_, err := ss.send(Reply{}, "503 5.5.1 Error: nested MAIL command")
		return err
	}
	from, params, ok := path(arg, "FROM:")
	if !ok {
		_, err := ss.send(Reply{}, "501 5.5.4 Syntax: MAIL FROM:<address>")
		return err
	}
	m := Mail{From: from, FromParams: params}
	var idx int
	ss.record(func(r *Session) { r.Mails = append(r.Mails, m); idx = len(r.Mails) - 1 })
	def := "250 2.1.0 Ok"
	for _, p := range params {
		if k, v, _ := strings.Cut(p, "="); strings.EqualFold(k, "SIZE") && ss.opts.SizeLimit > 0 {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > ss.opts.SizeLimit {
				def = "552 5.3.4 Message size exceeds fixed limit"
			}
		}
	}
	text, err := ss.answer(MAIL, def)
	if err != nil {
		return err
	}
	if positive(text, '2') {
		ss.inMail, ss.mailIdx, ss.accepted = true, idx, 0
	}
	return nil
}

func (ss *session) rcptTo(arg string) error {
	if !ss.inMail {
		_, err := ss.send(Reply{}, "503 5.5.1 Error: need MAIL command")
		return err
	}
	addr, params, ok := path(arg, "TO:")
	if !ok {
		_, err := ss.send(Reply{}, "501 5.5.4 Syntax: RCPT TO:<address>")
		return err
	}
	ss.srv.mu.Lock()
	r, ok := ss.srv.rcpt[strings.ToLower(addr)]
	if !ok {
		r = ss.srv.replies[RCPT]
	}
	ss.srv.mu.Unlock()
	text := r.Text
	if text == "" {
		text = "250 2.1.5 Ok"
	}
	accepted := positive(text, '2') && !r.Drop
	ss.record(func(s *Session) {
		m := &s.Mails[ss.mailIdx]
		m.Rcpts = append(m.Rcpts, Rcpt{Addr: addr, Params: params, Reply: text, Accepted: accepted})
	})
	if accepted {
		ss.accepted++
	}
	_, err := ss.send(r, text)
	return err
}

func (ss *session) data() error {
	if !ss.inMail {
		_, err := ss.send(Reply{}, "503 5.5.1 Error: need RCPT command")
		return err
	}
	if ss.accepted == 0 {
		_, err := ss.send(Reply{}, "554 5.5.1 Error: no valid recipients")
		return err
	}
	text, err := ss.answer(DATA, "354 End data with <CR><LF>.<CR><LF>")
	if err != nil || !positive(text, '3') {
		return err
	}
	var raw, data bytes.Buffer
	bareLF := false
	for {
		line, err := ss.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			raw.Write(line)
			data.Write(line)
			continue
		}
		if err != nil {
			return err
		}
		if string(line) == ".\r\n" || string(line) == ".\n" {
			break
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			bareLF = true
		}
		raw.Write(line)
		if line[0] == '.' {
			line = line[1:]
		}
		data.Write(line)
		if raw.Len() > 64<<20 {
			return fmt.Errorf("message too large for a test")
		}
	}
	def := fmt.Sprintf("250 2.0.0 Ok: queued as FAKE%d", ss.rec.ID*1000+ss.mailIdx)
	if ss.opts.SizeLimit > 0 && int64(data.Len()) > ss.opts.SizeLimit {
		def = "552 5.3.4 Error: message file too big"
	}
	r, ok := ss.injected(DOT)
	if !ok {
		r = Reply{}
	}
	reply := def
	if r.Text != "" {
		reply = r.Text
	}
	if r.Drop {
		reply = ""
	}
	ss.record(func(s *Session) {
		m := &s.Mails[ss.mailIdx]
		m.Raw, m.Data, m.BareLF, m.DataReply = raw.Bytes(), data.Bytes(), bareLF, reply
	})
	ss.inMail, ss.accepted = false, 0
	_, err = ss.send(r, def)
	return err
}

// positive reports whether a reply text's last line starts with class.
func positive(text string, class byte) bool {
	last := text[strings.LastIndexByte(text, '\n')+1:]
	return len(last) > 0 && last[0] == class
}

// selfSigned makes a certificate for localhost and 127.0.0.1.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake.test"},
		DNSNames:     []string{"fake.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, nil
}
