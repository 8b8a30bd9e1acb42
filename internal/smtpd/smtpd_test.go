package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/maillog"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

type harness struct {
	srv    *Server
	addr   string
	sp     *spool.Spool
	log    *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

func loopbackOnly() []netip.Prefix {
	n, _ := ParseNetworks([]string{"127.0.0.0/8", "[::1]/128"})
	return n
}

// start runs a server on a kernel-chosen loopback port with a fresh spool.
func start(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	lb := &testutil.SyncBuffer{}
	lg := maillog.New(lb, "facts.test", "postfix", nil)
	cl := cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test", MyOrigin: "facts.test", MessageSizeLimit: 10240000, Log: lg})
	cfg := Config{
		Listen: []string{"127.0.0.1:0"}, Hostname: "facts.test", MyNetworks: loopbackOnly(),
		MyDestination: []string{"facts.test", "localhost"}, MessageSizeLimit: 10240000,
		Cleanup: cl, Log: lg, Timeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg.Cleanup = cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test", MyOrigin: "facts.test", MessageSizeLimit: cfg.MessageSizeLimit, Log: lg})
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{srv: srv, addr: srv.Addrs()[0].String(), sp: sp, log: lb, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return h
}

// client is one test connection speaking a chat script.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// reply reads one whole (possibly multi-line) reply.
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// chat runs a script: "C: text" sends a line (CRLF added), "C! text"
// sends raw bytes with \r and \n escapes, "S: regexp" reads a reply that
// must match. Consecutive C lines are sent at once (pipelining). It
// returns the submatches of every S line, in order.
func (c *client) chat(script string) []string {
	c.t.Helper()
	var out []string
	var pending bytes.Buffer
	flush := func() {
		if pending.Len() > 0 {
			if _, err := c.conn.Write(pending.Bytes()); err != nil {
				c.t.Fatalf("write: %v", err)
			}
			pending.Reset()
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		line = strings.TrimLeft(line, "\t ")
		switch {
		case line == "C:":
			pending.WriteString("\r\n")
		case strings.HasPrefix(line, "C: "):
			pending.WriteString(line[3:] + "\r\n")
		case strings.HasPrefix(line, "C! "):
			pending.WriteString(unescape(line[3:]))
		case strings.HasPrefix(line, "S: "):
			flush()
			re := regexp.MustCompile("(?s)" + line[3:])
			got := c.reply()
			m := re.FindStringSubmatch(got)
			if m == nil {
				c.t.Fatalf("server said %q, want match for %q", got, line[3:])
			}
			out = append(out, m[1:]...)
		case line == "":
		default:
			c.t.Fatalf("bad script line %q", line)
		}
	}
	flush()
	return out
}

// unescape turns \r, \n, \0 and \xHH in a chat line into bytes.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case '0':
			b.WriteByte(0)
		case 'x':
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				panic("bad \\x escape in " + s)
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(s[i+1])
		}
		i++
	}
	return b.String()
}

// waitLog waits until the mail log contains s.
func (h *harness) waitLog(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := h.log.String()
		if strings.Contains(l, s) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", s, l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) envelope(t *testing.T, id string) (*spool.Envelope, string) {
	t.Helper()
	path := h.sp.Path(spool.Incoming, id)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("queue file of %s: %v", id, err)
	}
	if !spool.IsReady(fi.Mode()) {
		t.Errorf("%s acknowledged but not ready: %v", id, fi.Mode())
	}
	c, err := spool.OpenContent(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text, _ := io.ReadAll(c)
	return c.Envelope, string(text)
}

func countQueue(t *testing.T, sp *spool.Spool, q string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(sp.Root, q))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestBasicSession(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	id := c.chat(`
		S: ^220 facts.test ESMTP
		C: EHLO client.test
		S: ^250-facts.test\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING$
		C: MAIL FROM:<s@src.test>
		S: ^250 2\.1\.0 Ok$
		C: RCPT TO:<user@example.net>
		S: ^250 2\.1\.5 Ok$
		C: DATA
		S: ^354
		C: Subject: hello
		C:
		C: ..dot-stuffed line
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221
	`)[0]
	env, text := h.envelope(t, id)
	if env.Sender != "s@src.test" || len(env.Recipients) != 1 || env.Recipients[0].Address != "user@example.net" {
		t.Errorf("envelope %+v", env)
	}
	for _, want := range []string{
		"Received: from client.test (unknown [127.0.0.1])\n\tby facts.test (sluice) with ESMTP id " + id + "\n\tfor <user@example.net>; ",
		"Subject: hello\n", "From: s@src.test\n", "\n.dot-stuffed line\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("message lacks %q:\n%s", want, text)
		}
	}
	log := h.waitLog(t, "disconnect from")
	for _, re := range []string{
		`postfix/smtpd\[\d+\]: connect from unknown\[127\.0\.0\.1\]\n`,
		`postfix/smtpd\[\d+\]: ` + id + `: client=unknown\[127\.0\.0\.1\]\n`,
		`postfix/cleanup\[\d+\]: ` + id + `: message-id=<\d{14}\.` + id + `@facts\.test>\n`,
		`postfix/smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
}

func TestHeloAndPipelining(t *testing.T) {
	h := start(t, func(c *Config) {
		c.LookupAddr = func(ctx context.Context, addr string) ([]string, error) { return []string{"localhost."}, nil }
	})
	c := h.dial(t)
	ids := c.chat(`
		S: ^220
		C: HELO vm
		S: ^250
		C: MAIL FROM:<a@src.test>
		C: RCPT TO:<b@example.com>
		C: RCPT TO:<c@example.com>
		C: DATA
		S: ^250
		S: ^250
		S: ^250
		S: ^354
		C: From: <a@src.test>
		C:
		C: body
		C: .
		C: MAIL FROM:<>
		C: RCPT TO:<d@example.com>
		C: DATA
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		S: ^250
		S: ^250
		S: ^354
		C: x
		C: .
		C: QUIT
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		S: ^221
	`)
	_, text := h.envelope(t, ids[0])
	if !strings.Contains(text, "Received: from vm (localhost [127.0.0.1])\n\tby facts.test (sluice) with SMTP id "+ids[0]+";\n\t") {
		t.Errorf("Received for two recipients over HELO:\n%s", text)
	}
	env, text := h.envelope(t, ids[0])
	if len(env.Recipients) != 2 {
		t.Errorf("recipients %+v", env.Recipients)
	}
	if v, _ := env.Attr("client_name"); v != "localhost" {
		t.Errorf("client_name %q", v)
	}
	_ = text
	h.waitLog(t, "disconnect from localhost[127.0.0.1] helo=1 mail=2 rcpt=3 data=2 quit=1 commands=9\n")
}

func TestRelayControl(t *testing.T) {
	h := start(t, func(c *Config) {
		c.MyNetworks = nil // the test client is not trusted
		c.RelayDomains = []string{"relay.test"}
	})
	c := h.dial(t)
	id := c.chat(`
		S: ^220
		C: EHLO outsider
		S: ^250
		C: MAIL FROM:<x@elsewhere.test>
		S: ^250
		C: RCPT TO:<victim@example.com>
		S: ^554 5\.7\.1 <victim@example\.com>: Relay access denied$
		C: RCPT TO:<postmaster@facts.test>
		S: ^250
		C: RCPT TO:<u@sub.relay.test>
		S: ^250
		C: RCPT TO:<u@relay.test>
		S: ^250
		C: RCPT TO:<local>
		S: ^250 2\.1\.5 Ok$
		C: RCPT TO:<u@notrelay.test>
		S: ^554 5\.7\.1
		C: DATA
		S: ^354
		C: Subject: x
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221
	`)[0]
	env, text := h.envelope(t, id)
	var got []string
	for _, r := range env.Recipients {
		got = append(got, r.Address)
	}
	if strings.Join(got, " ") != "postmaster@facts.test u@sub.relay.test u@relay.test local@facts.test" {
		t.Errorf("recipients %v", got)
	}
	// A client from outside gets no Message-Id/Date/From added... unless
	// it connects from our own address, as this one does: loopback.
	if !strings.Contains(text, "Message-Id:") {
		t.Errorf("loopback client should get missing headers added:\n%s", text)
	}
	log := h.waitLog(t, "disconnect from")
	if !strings.Contains(log, "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <victim@example.com>: Relay access denied; from=<x@elsewhere.test> to=<victim@example.com> proto=ESMTP helo=<outsider>\n") {
		t.Errorf("no reject line:\n%s", log)
	}
	if !strings.Contains(log, " ehlo=1 mail=1 rcpt=4/6 data=1 quit=1 commands=8/10\n") {
		t.Errorf("counts:\n%s", log)
	}
}

func TestNoOpenRelayWithoutDestinations(t *testing.T) {
	h := start(t, func(c *Config) { c.MyNetworks = nil; c.MyDestination = nil })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: MAIL FROM:<>
		S: ^250
		C: RCPT TO:<a@facts.test>
		S: ^554 5\.7\.1
		C: RCPT TO:<a@127.0.0.1>
		S: ^501 5\.1\.3 Bad recipient address syntax
		C: RCPT TO:<a@[192.0.2.1]>
		S: ^554 5\.7\.1
		C: RCPT TO:<a%victim.example@facts.test>
		S: ^554 5\.7\.1 <a%victim\.example@facts\.test>: Relay access denied
		C: DATA
		S: ^5\d\d
		C: QUIT
		S: ^221
	`)
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("%d files queued", n)
	}
}

func TestSizeLimit(t *testing.T) {
	h := start(t, func(c *Config) { c.MessageSizeLimit = 2000 })
	c := h.dial(t)
	big := strings.Repeat("x", 100)
	script := `
		S: ^220
		C: EHLO x
		S: SIZE 2000
		C: MAIL FROM:<a@b.test> SIZE=5000
		S: ^552 5\.3\.4
		C: MAIL FROM:<a@b.test> SIZE=1000
		S: ^250
		C: RCPT TO:<c@d.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: big
		C:
	` + strings.Repeat("C: "+big+"\n", 40) + `
		C: .
		S: ^552 5\.3\.4
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@d.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: small
		C: .
		S: ^250 2\.0\.0 Ok: queued as
		C: QUIT
		S: ^221
	`
	c.chat(script)
	if n := countQueue(t, h.sp, spool.Incoming); n != 1 {
		t.Errorf("%d files queued, want 1", n)
	}
}

func TestDSNParameters(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	id := c.chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: MAIL FROM:<s@src.test> RET=HDRS ENVID=abc+2Bdef BODY=8BITMIME SMTPUTF8
		S: ^250
		C: RCPT TO:<r3@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@example.com
		S: ^250
		C: RCPT TO:<r4@example.com> NOTIFY=NEVER
		S: ^250
		C: RCPT TO:<r5@example.com> NOTIFY=BOGUS
		S: ^501
		C: DATA
		S: ^354
		C: Subject: s2
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
	`)[0]
	env, text := h.envelope(t, id)
	if env.DSNEnvID != "abc+def" || env.DSNRet != cleanup.RetHdrs || env.Size.SMTPUTF8 != 1 || env.Size.QmgrFlags != 14 {
		t.Errorf("envelope DSN: envid %q ret %d utf8 %d flags %d", env.DSNEnvID, env.DSNRet, env.Size.SMTPUTF8, env.Size.QmgrFlags)
	}
	if len(env.Recipients) != 2 || env.Recipients[0].Notify != 6 || env.Recipients[0].DSNOrig != "rfc822;orig+x@example.com" || env.Recipients[1].Notify != 1 {
		t.Errorf("recipients %+v", env.Recipients)
	}
	if v, _ := env.Attr("encoding"); v != "8bit" {
		t.Errorf("encoding %q", v)
	}
	if !strings.Contains(text, " with UTF8SMTP id "+id) {
		t.Errorf("protocol:\n%s", text)
	}
}

func TestMalformedInput(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: MAIL FROM:<a@b>
		S: ^250 2\.1\.0 Ok$
		C: RCPT TO:<a@b>
		S: ^250 2\.1\.5 Ok$
		C: MAIL FROM:<a@b>
		S: ^503 5\.5\.1 Error: nested MAIL command$
		C: EHLO x
		S: ^250
		C: RCPT TO:<a@b>
		S: ^503 5\.5\.1 Error: need MAIL command$
		C: DATA
		S: ^503 5\.5\.1 Error: need RCPT command$
		C: MAIL FROM:<unterminated
		S: ^501 5\.1\.7 Bad sender address syntax$
		C: MAIL FROM:<a@b> FOO=BAR
		S: ^555 5\.5\.4 Unsupported option: FOO=BAR$
		C! \0garbage\r\n
		S: ^500 5\.5\.2 Error: bad syntax$
		C: FOO bar
		S: ^500 5\.5\.2 Error: command not recognized$
		C: RCPT TO:
		S: ^503 5\.5\.1 Error: need MAIL command$
		C: MAIL FROM:<>
		S: ^250
		C: RCPT TO:
		S: ^501 5\.5\.4 Syntax: RCPT TO:<address>$
	`)
	// A second client is served normally: nothing crashed.
	c2 := h.dial(t)
	c2.chat(`
		S: ^220
		C: NOOP
		S: ^250
		C: QUIT
		S: ^221
	`)
	c.conn.Close()
	h.waitLog(t, "disconnect from unknown[127.0.0.1] ehlo=1 mail=2/5 rcpt=1/4 data=0/1 unknown=0/1 commands=4/12\n")
}

func TestLostConnection(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@d.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: cut off
	`)
	c.conn.Close()
	log := h.waitLog(t, "disconnect from")
	if !strings.Contains(log, "lost connection after DATA (18 bytes) from unknown[127.0.0.1]\n") {
		t.Errorf("no lost-connection line:\n%s", log)
	}
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("%d files queued from a broken DATA", n)
	}
}

func TestQueueWriteFailure(t *testing.T) {
	h := start(t, nil)
	os.RemoveAll(filepath.Join(h.sp.Root, spool.Incoming))
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@d.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: nowhere to go
		C: .
		S: ^451 4\.3\.0 Error: queue file write error$
		C: QUIT
		S: ^221
	`)
	h.waitLog(t, "warning: unknown[127.0.0.1]: cleanup: queue file write error")
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "facts.test"},
		DNSNames: []string{"facts.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestStartTLS(t *testing.T) {
	cert := selfSigned(t)
	h := start(t, func(c *Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: STARTTLS
		C: STARTTLS
		S: ^220
	`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	id := c.chat(`
		C: EHLO x
		S: ^250-
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@d.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: secret
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221
	`)[0]
	_, text := h.envelope(t, id)
	if !strings.Contains(text, " with ESMTPS id "+id) {
		t.Errorf("protocol under TLS:\n%s", text)
	}
	h.waitLog(t, "disconnect from unknown[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7\n")

	// Without a certificate there is no STARTTLS.
	h2 := start(t, nil)
	c2 := h2.dial(t)
	c2.chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: STARTTLS
		S: ^502
	`)
}

func TestConcurrentSessions(t *testing.T) {
	h := start(t, nil)
	const sessions, perSession = 10, 5
	var wg sync.WaitGroup
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h.dial(t)
			c.chat("S: ^220\nC: EHLO c\nS: ^250")
			for j := 0; j < perSession; j++ {
				c.chat(fmt.Sprintf("C: MAIL FROM:<s%d@x.test>\nC: RCPT TO:<r@y.test>\nC: DATA\nS: ^250\nS: ^250\nS: ^354\nC: Subject: %d/%d\nC: .\nS: ^250 2.0.0 Ok: queued", i, i, j))
			}
			c.chat("C: QUIT\nS: ^221")
		}()
	}
	wg.Wait()
	if n := countQueue(t, h.sp, spool.Incoming); n != sessions*perSession {
		t.Errorf("%d queued, want %d", n, sessions*perSession)
	}
}

func TestShutdownAndClose(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	c.chat("S: ^220\nC: EHLO x\nS: ^250\nC: QUIT\nS: ^221")
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		t.Error("still listening after shutdown")
	}

	// Close on a server that was bound but never served releases the port.
	srv, err := New(Config{Listen: []string{"127.0.0.1:0"}, Cleanup: cleanup.New(cleanup.Config{Spool: h.sp})})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addrs()[0].String()
	srv.Close()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after Close")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without cleanup accepted")
	}
}

func TestParseNetworks(t *testing.T) {
	nets, err := ParseNetworks([]string{"127.0.0.0/8", "[::1]/128", "192.0.2.7", "10.1.2.3/16"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"127.1.2.3": true, "::1": true, "192.0.2.7": true, "192.0.2.8": false, "10.1.200.1": true, "10.2.0.1": false, "::ffff:127.0.0.1": true} {
		if got := inNetworks(netip.MustParseAddr(addr), nets); got != want {
			t.Errorf("%s in mynetworks = %v", addr, got)
		}
	}
	if _, err := ParseNetworks([]string{"300.1.1.1/8"}); err == nil {
		t.Error("bad network accepted")
	}
}

// TestSmtpSource drives the server with Postfix's smtp-source, when it is
// installed: 5 sessions, 100 messages of 4 KB, 2 recipients each.
func TestSmtpSource(t *testing.T) {
	bin, err := exec.LookPath("smtp-source")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/smtp-source"); serr != nil {
			t.Skip("smtp-source not installed")
		}
		bin = "/usr/sbin/smtp-source"
	}
	h := start(t, nil)
	start := time.Now()
	out, err := exec.Command(bin, "-s", "5", "-m", "100", "-l", "4096", "-r", "2", "-f", "src@src.test", "-t", "rcpt@sink.test", h.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	el := time.Since(start)
	if n := countQueue(t, h.sp, spool.Incoming); n != 100 {
		t.Fatalf("%d queued, want 100", n)
	}
	t.Logf("smtp-source: 100 messages in %v (%.0f msg/s, fsync per message)", el, 100/el.Seconds())
	log := h.waitLog(t, "disconnect from")
	if strings.Contains(log, "warning") {
		t.Errorf("warnings:\n%s", log)
	}
}

// TestSwaks sends one message with swaks, when it is installed.
func TestSwaks(t *testing.T) {
	bin, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed")
	}
	h := start(t, nil)
	host, port, _ := net.SplitHostPort(h.addr)
	out, err := exec.Command(bin, "--server", host, "--port", port, "--helo", "swaks.test",
		"--from", "a@src.test", "--to", "b@example.com,c@example.com", "--header", "Subject: via swaks",
		"--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`<-  250 2\.0\.0 Ok: queued as ([0-9A-F]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no queue ID in swaks output:\n%s", out)
	}
	env, text := h.envelope(t, string(m[1]))
	if len(env.Recipients) != 2 || !strings.Contains(text, "Subject: via swaks") || !strings.Contains(text, "hello from swaks") {
		t.Errorf("envelope %+v\n%s", env, text)
	}
}

// BenchmarkSmtpSource measures intake alone: Postfix's smtp-source, 20
// sessions, 4 KB messages, into smtpd and cleanup with fsync before every
// 250. It reports messages per second and this process's CPU time per
// message.
func BenchmarkSmtpSource(b *testing.B) {
	bin := "/usr/sbin/smtp-source"
	if _, err := os.Stat(bin); err != nil {
		b.Skip("smtp-source not installed")
	}
	sp := spool.New(b.TempDir())
	sp.Create()
	cl := cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test", MessageSizeLimit: 10240000})
	srv, err := New(Config{Listen: []string{"127.0.0.1:0"}, Hostname: "facts.test", MyNetworks: loopbackOnly(), Cleanup: cl, MessageSizeLimit: 10240000})
	if err != nil {
		b.Fatal(err)
	}
	srv.Listen()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	n := b.N * 100
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	out, err := exec.Command(bin, "-s", "20", "-m", strconv.Itoa(n), "-l", "4096", "-f", "src@src.test", "-t", "rcpt@sink.test", srv.Addrs()[0].String()).CombinedOutput()
	el := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if err != nil {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	b.ReportMetric(float64(n)/el.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n)/1000, "cpu-ms/msg")
}

// TestRelayTricks sends the classic relay-test address forms. From
// outside mynetworks each one that resolves to another domain is refused
// (they were all accepted and relayed before addresses were resolved);
// from inside they are accepted, as Postfix accepts them. Nothing is
// queued from outside. Unknown local users are refused at RCPT.
func TestRelayTricks(t *testing.T) {
	tricks := []string{
		`user%outside.example@facts.test`,
		`outside.example!user@facts.test`,
		`"user@outside.example"@facts.test`,
		`user@outside.example@facts.test`,
		`@facts.test:user@outside.example`,
		`user%outside.example@[127.0.0.1]`,
		`user@OUTSIDE.example.`,
		`user@outside.example (a comment)`,
	}
	outside := start(t, func(c *Config) {
		c.MyNetworks = nil
		c.KnownRecipient = func(addr string) (bool, error) { return addr != "ghost@facts.test", nil }
	})
	c := outside.dial(t)
	script := "S: ^220\nC: EHLO x\nS: ^250\nC: MAIL FROM:<a@b.example>\nS: ^250 2.1.0\n"
	for _, rcpt := range tricks {
		script += "C: RCPT TO:<" + rcpt + ">\nS: ^554 5\\.7\\.1 <[^>]*>: Relay access denied$\n"
	}
	script += "C: RCPT TO:<user%localhost@facts.test>\nS: ^250 2\\.1\\.5 Ok\n" +
		"C: RCPT TO:<ghost@facts.test>\nS: ^550 5\\.1\\.1 <ghost@facts\\.test>: Recipient address rejected: User unknown in local recipient table$\n" +
		"C: RSET\nS: ^250\nC: QUIT\nS: ^221\n"
	c.chat(script)
	log := outside.waitLog(t, "disconnect from")
	if !strings.Contains(log, `NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <user@outside.example@facts.test>: Relay access denied; from=<a@b.example> to=<user@outside.example@facts.test>`) {
		t.Errorf("no reject line for the quoted form:\n%s", log)
	}
	if !strings.Contains(log, "550 5.1.1 <ghost@facts.test>: Recipient address rejected: User unknown in local recipient table") {
		t.Errorf("no reject line for the unknown user:\n%s", log)
	}

	inside := start(t, nil)
	c = inside.dial(t)
	script = "S: ^220\nC: EHLO x\nS: ^250\nC: MAIL FROM:<a@b.example>\nS: ^250 2.1.0\n"
	for _, rcpt := range tricks {
		script += "C: RCPT TO:<" + rcpt + ">\nS: ^250 2\\.1\\.5 Ok\n"
	}
	script += "C: QUIT\nS: ^221\n"
	c.chat(script)
}

// TestTooManyHops: a message that has passed hopcount_limit (50)
// Received: headers, this host's own included, is refused at the end of
// DATA with Postfix's reply, and nothing is queued; one hop fewer is
// queued.
func TestTooManyHops(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	body := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "C: Received: from hop%d.example by hop%d.example; Sun, 6 Dec 2026 10:00:00 +0000\n", i, i+1)
		}
		return b.String() + "C: Subject: loop\nC:\nC: body\nC: .\n"
	}
	c.chat("S: ^220\nC: EHLO x\nS: ^250\n" +
		"C: MAIL FROM:<a@b.example>\nS: ^250\nC: RCPT TO:<u@facts.test>\nS: ^250\nC: DATA\nS: ^354\n" +
		body(50) + "S: ^554 5\\.4\\.0 Error: too many hops$\n" +
		"C: MAIL FROM:<a@b.example>\nS: ^250\nC: RCPT TO:<u@facts.test>\nS: ^250\nC: DATA\nS: ^354\n" +
		body(48) + "S: ^250 2\\.0\\.0 Ok: queued as\n" +
		"C: QUIT\nS: ^221\n")
	if n := countQueue(t, h.sp, spool.Incoming); n != 1 {
		t.Errorf("%d files queued, want 1 (the message under the limit)", n)
	}
}

// TestETRN: ETRN asks for the deferred mail of a domain in
// fast_flush_domains (or a subdomain) and gets Postfix's "250 Queuing
// started"; any other domain is 459.
func TestETRN(t *testing.T) {
	var mu sync.Mutex
	var flushed []string
	h := start(t, func(c *Config) {
		c.FlushDomains = []string{"relay.test"}
		c.FlushSite = func(d string) { mu.Lock(); flushed = append(flushed, d); mu.Unlock() }
	})
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: ETRN
		C: ETRN Sub.Relay.Test.
		S: ^250 Queuing started$
		C: ETRN example.com
		S: ^459 <example\.com>: service unavailable$
		C: QUIT
		S: ^221
	`)
	mu.Lock()
	defer mu.Unlock()
	if len(flushed) != 1 || flushed[0] != "sub.relay.test" {
		t.Errorf("flushed %q, want [sub.relay.test]", flushed)
	}
}
