package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/sasl/dovecottest"

	gm "github.com/d--j/go-milter"
)

// The replies and log lines below are Postfix 3.7's with Dovecot SASL,
// recorded from a running Postfix (see auth.go).

var testUsers = map[string]string{"alice": "secret1", "bob@example.org": "secret2"}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// startAuth runs a server with AUTH through a real Dovecot; the client
// (127.0.0.1) is outside mynetworks.
func startAuth(t *testing.T, mod func(*Config)) (*harness, *dovecottest.Dovecot) {
	t.Helper()
	dv := dovecottest.Start(t, dovecottest.Options{Users: testUsers})
	cert := selfSigned(t)
	h := start(t, func(c *Config) {
		c.MyNetworks, _ = ParseNetworks([]string{"10.0.0.0/8"})
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.SASL = &SASL{Path: dv.Socket, Timeout: 20 * time.Second, NoAnonymous: true, TLSNoAnonymous: true}
		c.ErrorSleep = -1
		if mod != nil {
			mod(c)
		}
	})
	return h, dv
}

// startTLS upgrades the client's connection after "220 Ready".
func (c *client) startTLS() *client {
	c.t.Helper()
	c.chat(`
		C: STARTTLS
		S: ^220 2\.0\.0 Ready to start TLS$
	`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	return &client{t: c.t, conn: tc, r: bufio.NewReader(tc)}
}

func TestAuthExchanges(t *testing.T) {
	h, _ := startAuth(t, nil)
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: ^250-facts\.test\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-STARTTLS\n250-AUTH PLAIN LOGIN\n250-ENHANCEDSTATUSCODES\n
		C: AUTH
		S: ^501 5\.5\.4 Syntax: AUTH mechanism$
		C: AUTH PLAIN a b
		S: ^501 5\.5\.4 Syntax: AUTH mechanism$
		C: AUTH FOO
		S: ^535 5\.7\.8 Error: authentication failed: Invalid authentication mechanism$
		C: AUTH PLAIN !!!
		S: ^535 5\.7\.8 Error: authentication failed: Invalid base64 data in initial response$
		C: AUTH PLAIN
		S: ^334 $
		C: *
		S: ^501 5\.7\.0 Authentication aborted$
		C: AUTH PLAIN
		S: ^334 $
		C: !!notbase64
		S: ^535 5\.7\.8 Error: authentication failed: Invalid base64 data in continued response$
		C: AUTH PLAIN ` + b64("\x00alice\x00wrong") + `
		S: ^535 5\.7\.8 Error: authentication failed: \(reason unavailable\)$
		C: AUTH LOGIN
		S: ^334 VXNlcm5hbWU6$
		C: ` + b64("alice") + `
		S: ^334 UGFzc3dvcmQ6$
		C: ` + b64("wrong") + `
		S: ^535 5\.7\.8 Error: authentication failed: \(reason unavailable\)$
		C: AUTH PLAIN =
		S: ^535 5\.7\.8 Error: authentication failed
		C: MAIL FROM:<x@y.test>
		S: ^250
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^503 5\.5\.1 Error: MAIL transaction in progress$
		C: RCPT TO:<a@remote.example>
		S: ^554 5\.7\.1 <a@remote\.example>: Relay access denied$
		C: RSET
		S: ^250
		C: AUTH LOGIN ` + b64("alice") + `
		S: ^334 UGFzc3dvcmQ6$
		C: ` + b64("secret1") + `
		S: ^235 2\.7\.0 Authentication successful$
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^503 5\.5\.1 Error: already authenticated$
		C: MAIL FROM:<alice@example.org> AUTH=alice+40example.org
		S: ^250
		C: RCPT TO:<a@remote.example>
		S: ^250 2\.1\.5 Ok$
		C: DATA
		S: ^354
		C: Subject: t
		C:
		C: hi
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221
	`)
	log := h.waitLog(t, "disconnect from")
	for _, want := range []string{
		"warning: unknown[127.0.0.1]: SASL FOO authentication failed: Invalid authentication mechanism, sasl_username=(unavailable)\n",
		"warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: Invalid base64 data in initial response, sasl_username=(unavailable)\n",
		"warning: unknown[127.0.0.1]: SASL PLAIN authentication aborted\n",
		"warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: Invalid base64 data in continued response, sasl_username=(unavailable)\n",
		"warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice\n",
		"warning: unknown[127.0.0.1]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=alice\n",
		"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <a@remote.example>: Relay access denied; from=<x@y.test> to=<a@remote.example> proto=ESMTP helo=<x>\n",
		": client=unknown[127.0.0.1], sasl_method=LOGIN, sasl_username=alice, sasl_sender=alice+40example.org\n",
		"disconnect from unknown[127.0.0.1] ehlo=1 auth=1/12 mail=2 rcpt=1/2 data=1 rset=1 quit=1 commands=8/20\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestAuthQueueFile(t *testing.T) {
	h, _ := startAuth(t, nil)
	c := h.dial(t).startTLSAfterGreeting()
	id := c.chat(`
		C: EHLO x
		S: 250-AUTH PLAIN LOGIN\n
		C: AUTH PLAIN ` + b64("\x00bob@example.org\x00secret2") + `
		S: ^235
		C: MAIL FROM:<bob@example.org>
		S: ^250
		C: RCPT TO:<a@remote.example>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: t
		C: .
		S: ^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221
	`)[0]
	env, text := h.envelope(t, id)
	var names []string
	for _, a := range env.Attrs {
		names = append(names, a.Name+"="+a.Value)
	}
	got := strings.Join(names, "\n")
	if !strings.Contains(got, "log_ident="+id+"\nrewrite_context=local\nsasl_method=PLAIN\nsasl_username=bob@example.org\nlog_client_name=unknown\n") {
		t.Errorf("attributes:\n%s", got)
	}
	if strings.Contains(got, "sasl_sender") {
		t.Errorf("sasl_sender without AUTH=:\n%s", got)
	}
	if !strings.Contains(text, " with ESMTPSA id "+id) {
		t.Errorf("Received: header:\n%s", text)
	}
	h.waitLog(t, id+": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=bob@example.org\n")
}

// startTLSAfterGreeting reads the greeting, says EHLO and starts TLS.
func (c *client) startTLSAfterGreeting() *client {
	c.chat(`
		S: ^220
		C: EHLO x
		S: ^250
	`)
	return c.startTLS()
}

func TestAuthOnlyUnderTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		// the reply to AUTH and MAIL before TLS
		auth, mail string
	}{
		{"smtpd_tls_auth_only", func(c *Config) { c.TLSAuthOnly = true }, `^503 5\.5\.1 Error: authentication not enabled$`, `^250 2\.1\.0 Ok$`},
		{"smtpd_tls_security_level=encrypt", func(c *Config) { c.TLSLevel = "encrypt" }, `^530 5\.7\.0 Must issue a STARTTLS command first$`, `^530 5\.7\.0 Must issue a STARTTLS command first$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := startAuth(t, tc.mod)
			c := h.dial(t)
			ehlo := c.chat(`
				S: ^220
				C: EHLO x
				S: ^(.*)$
			`)[0]
			if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
				t.Errorf("EHLO before TLS:\n%s", ehlo)
			}
			c.chat(`
				C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
				S: ` + tc.auth + `
				C: MAIL FROM:<a@b.test>
				S: ` + tc.mail + `
				C: RSET
				S: ^250
			`)
			c = c.startTLS()
			c.chat(`
				C: EHLO x
				S: 250-AUTH PLAIN LOGIN\n
				C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
				S: ^235
				C: QUIT
				S: ^221
			`)
		})
	}
}

func TestAuthRelayAndClientRestrictions(t *testing.T) {
	dir := t.TempDir()
	logins := filepath.Join(dir, "sender_login")
	os.WriteFile(logins, []byte("# who may send as whom\nbob@example.org bob@example.org\nalice@example.org\talice,\n  carol\n"), 0o644)
	lm, err := LoadLoginMaps([]string{"texthash:" + logins})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := startAuth(t, func(c *Config) {
		c.ClientRestrictions = []string{"permit_sasl_authenticated", "reject"}
		c.SenderRestrictions = []string{"reject_sender_login_mismatch"}
		c.SenderLogins = lm.Lookup
	})
	c := h.dial(t).startTLSAfterGreeting()
	c.chat(`
		C: EHLO x
		S: ^250
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<root@localhost>
		S: ^554 5\.7\.1 <unknown\[127\.0\.0\.1\]>: Client host rejected: Access denied$
		C: RSET
		S: ^250
		C: AUTH PLAIN ` + b64("\x00bob@example.org\x00secret2") + `
		S: ^235
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<root@localhost>
		S: ^553 5\.7\.1 <a@b\.test>: Sender address rejected: not owned by user bob@example\.org$
		C: RSET
		S: ^250
		C: MAIL FROM:<alice@example.org>
		S: ^250
		C: RCPT TO:<x@remote.example>
		S: ^553 5\.7\.1 <alice@example\.org>: Sender address rejected: not owned by user bob@example\.org$
		C: RSET
		S: ^250
		C: MAIL FROM:<>
		S: ^250
		C: RCPT TO:<x@remote.example>
		S: ^250
		C: RSET
		S: ^250
		C: MAIL FROM:<BOB@example.org>
		S: ^250
		C: RCPT TO:<x@remote.example>
		S: ^250
		C: QUIT
		S: ^221
	`)
	h.waitLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 553 5.7.1 <a@b.test>: Sender address rejected: not owned by user bob@example.org; from=<a@b.test> to=<root@localhost>")
	// carol owns alice's address through the continuation line.
	if owners, ok, _ := lm.Lookup("ALICE@example.org"); !ok || strings.Join(owners, " ") != "alice carol" {
		t.Errorf("alice@example.org owners = %v, %v", owners, ok)
	}
}

func TestAuthUnauthenticatedSenderMismatch(t *testing.T) {
	dir := t.TempDir()
	logins := filepath.Join(dir, "sender_login")
	os.WriteFile(logins, []byte("bob@example.org bob@example.org\n"), 0o644)
	lm, err := LoadLoginMaps([]string{"hash:" + logins})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := startAuth(t, func(c *Config) {
		c.SenderRestrictions = []string{"reject_sender_login_mismatch"}
		c.SenderLogins = lm.Lookup
	})
	h.dial(t).chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: MAIL FROM:<bob@example.org>
		S: ^250
		C: RCPT TO:<root@localhost>
		S: ^553 5\.7\.1 <bob@example\.org>: Sender address rejected: not logged in$
		C: QUIT
		S: ^221
	`)
}

func TestAuthRateLimit(t *testing.T) {
	h, _ := startAuth(t, func(c *Config) { c.Limits.AuthRate = 2 })
	// Every AUTH counts, "already authenticated" too, as Postfix's anvil
	// counts them.
	h.dial(t).chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^235
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^503 5\.5\.1 Error: already authenticated$
		C: QUIT
		S: ^221
	`)
	h.dial(t).chat(`
		S: ^220
		C: EHLO x
		S: ^250
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^450 4\.7\.1 Error: too many AUTH commands from 127\.0\.0\.1$
		C: QUIT
		S: ^221
	`)
	h.waitLog(t, "warning: AUTH command rate limit exceeded: 3 from unknown[127.0.0.1] for service smtp\n")
}

func TestAuthDovecotDown(t *testing.T) {
	h := start(t, func(c *Config) {
		c.SASL = &SASL{Path: filepath.Join(t.TempDir(), "no-such-socket"), Timeout: 5 * time.Second}
	})
	c := h.dial(t)
	ehlo := c.chat(`
		S: ^220
		C: EHLO x
		S: ^(.*)$
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^454 4\.7\.0 Temporary authentication failure: Connection lost to authentication server$
		C: QUIT
		S: ^221
	`)[0]
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH offered without Dovecot:\n%s", ehlo)
	}
	h.waitLog(t, "SASL: sasl: connect to ")
}

func TestSMTPSWrapperMode(t *testing.T) {
	h, _ := startAuth(t, func(c *Config) { c.TLSWrapper = true; c.Service = "smtps/smtpd" })
	nc, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	ehlo := c.chat(`
		S: ^220 facts\.test
		C: EHLO x
		S: ^(.*)$
		C: AUTH PLAIN ` + b64("\x00alice\x00secret1") + `
		S: ^235
		C: QUIT
		S: ^221
	`)[0]
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO under wrapper TLS:\n%s", ehlo)
	}
	h.waitLog(t, "postfix/smtps/smtpd[")

	// A plain-text client gets no greeting.
	p := h.dial(t)
	p.conn.Write([]byte("EHLO x\r\n"))
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if b, _ := p.r.ReadString('\n'); strings.HasPrefix(b, "220") {
		t.Errorf("plain-text client greeted: %q", b)
	}
	h.waitLog(t, "warning: TLS handshake failed for unknown[127.0.0.1]")
}

// TestAuthMilterMacros: a milter sees who logged in ({auth_type} and
// {auth_authen} at MAIL FROM), as OpenDKIM's and rspamd's rules use it.
func TestAuthMilterMacros(t *testing.T) {
	addr, _ := startMilter(t, scripted{mail: func(from string, m gm.Modifier) (*gm.Response, error) {
		seen := map[string]string{}
		for _, n := range []string{"{auth_type}", "{auth_authen}"} {
			v, _ := m.GetEx(n)
			seen[n] = v
		}
		if seen["{auth_authen}"] != "bob@example.org" || seen["{auth_type}"] != "PLAIN" {
			return gm.RejectWithCodeAndReason(550, "5.7.1 macros "+seen["{auth_type}"]+" "+seen["{auth_authen}"])
		}
		return gm.RespContinue, nil
	}})
	h, _ := startAuth(t, func(c *Config) { c.Milters = milterConfig(t, addr, "tempfail", 10*time.Second) })
	c := h.dial(t).startTLSAfterGreeting()
	c.chat(`
		C: EHLO x
		S: 250-AUTH PLAIN LOGIN\n
		C: AUTH PLAIN ` + b64("\x00bob@example.org\x00secret2") + `
		S: ^235
		C: MAIL FROM:<bob@example.org>
		S: ^250
		C: QUIT
		S: ^221
	`)
}
