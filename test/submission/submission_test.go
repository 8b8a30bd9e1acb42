// Package submission_test runs sluice serve as a process (as root it
// goes through the privsep master, which opens every listener) with the
// submission and smtps services on, AUTH checked by a real Dovecot, and
// swaks and Python's smtplib as the mail clients; relayed mail goes to
// a fake receiving server. Postfix's postcat reads the queue file's SASL
// attributes back.
//
// It needs Dovecot (Debian's dovecot-core), swaks, python3 and
// Postfix's postcat, and fails, never skips, when one is missing.
package submission_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/sasl/dovecottest"
	"sluice/internal/testutil"
	"sluice/internal/testutil/fakesmtp"
)

func sluiceBinary(t *testing.T) string { return testutil.SluiceBinary(t) }

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveSluiceBinary()
	os.Exit(code)
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: scripts/test.sh installs it (Debian packages swaks, python3, postfix, dovecot-core)", tool)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeCert writes a self-signed certificate for cn and its key as PEM.
func writeCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to new names and renamed: a reload never sees half a file.
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", kder}} {
		// The daemon reads them as mail_owner when started as root.
		if err := os.WriteFile(f.path+".new", pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{keyFile, certFile} {
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	}
}

// world is one daemon with its Dovecot and its sink.
type world struct {
	t                       *testing.T
	dir, spool, logf        string
	smtp, submission, smtps int
	dv                      *dovecottest.Dovecot
	sink                    *fakesmtp.Server
	cmd                     *exec.Cmd
	stderr                  *testutil.SyncBuffer
}

func setup(t *testing.T) *world {
	t.Helper()
	need(t, "swaks", "python3", "postcat")
	bin := sluiceBinary(t)
	dv := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret1", "bob@example.org": "secret2"}})
	dir := t.TempDir()
	testutil.Reachable(t, dir) // sluice serve as root runs as mail_owner
	w := &world{t: t, dir: dir, spool: filepath.Join(dir, "spool"), logf: filepath.Join(dir, "mail.log"),
		smtp: freePort(t), submission: freePort(t), smtps: freePort(t), dv: dv}
	w.sink = fakesmtp.Start(t, fakesmtp.Options{Hostname: "sink.test"})
	// Mail to held@ waits in deferred/ for postcat.
	w.sink.RcptReply("held@remote.example", fakesmtp.Reply{Text: "450 4.2.0 try again later"})
	writeCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "first.test")
	os.WriteFile(filepath.Join(dir, "sender_login"), []byte("alice@example.org alice\nbob@example.org bob@example.org\n"), 0o644)
	sinkPort := w.sink.Port
	lines := []string{
		"queue_directory = " + w.spool,
		"maillog_file = " + w.logf,
		"myhostname = sluice.test",
		// Loopback is not ours: only logging in makes a client a relay
		// client.
		"mynetworks = 10.0.0.0/8",
		fmt.Sprintf("smtpd_listen = 127.0.0.1:%d", w.smtp),
		fmt.Sprintf("sluice_submission_listen = 127.0.0.1:%d", w.submission),
		fmt.Sprintf("sluice_smtps_listen = 127.0.0.1:%d", w.smtps),
		fmt.Sprintf("relayhost = [127.0.0.1]:%d", sinkPort),
		"smtpd_tls_cert_file = " + filepath.Join(dir, "cert.pem"),
		"smtpd_tls_key_file = " + filepath.Join(dir, "key.pem"),
		// Port 25 takes logins too, under TLS only.
		"smtpd_sasl_auth_enable = yes",
		"smtpd_tls_auth_only = yes",
		"smtpd_sasl_type = dovecot",
		"smtpd_sasl_path = " + dv.Socket,
		"smtpd_sender_login_maps = texthash:" + filepath.Join(dir, "sender_login"),
		"smtpd_sender_restrictions = reject_sender_login_mismatch",
		"minimal_backoff_time = 3h", "maximal_backoff_time = 6h", "queue_run_delay = 1h",
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.stderr = &testutil.SyncBuffer{}
	w.cmd = exec.Command(bin, "serve", "-c", dir)
	w.cmd.Stderr = w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", w.addr(w.smtp), 100*time.Millisecond)
		if err == nil {
			c.SetReadDeadline(deadline)
			b := make([]byte, 4)
			_, err = io.ReadFull(c, b)
			c.Close()
			if err == nil && string(b) == "220 " {
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice serve did not start; stderr:\n%s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func (w *world) stop() {
	if w.cmd == nil {
		return
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			w.t.Errorf("sluice serve ended with %v; stderr:\n%s", err, w.stderr.String())
		}
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-done
		w.t.Errorf("sluice serve did not stop on SIGTERM")
	}
	w.cmd = nil
	if w.t.Failed() {
		w.t.Logf("mail log:\n%s", w.log())
	}
}

func (w *world) log() string {
	b, _ := os.ReadFile(w.logf)
	return string(b)
}

// waitLog waits for a line holding every one of parts.
func (w *world) waitLog(parts ...string) string {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(w.log(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("no mail log line with %q:\n%s", parts, w.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// swaks runs swaks; it returns its transcript and exit status.
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("swaks", append([]string{"--server", "127.0.0.1", "--timeout", "30"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("swaks: %v", err)
	}
	return out.String(), code
}

// delivered waits until the sink has a message whose data holds marker.
func (w *world) delivered(marker string) fakesmtp.Mail {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range w.sink.Delivered() {
			if bytes.Contains(m.Data, []byte(marker)) {
				return m
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("nothing with %q reached the sink; mail log:\n%s", marker, w.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSubmission(t *testing.T) {
	w := setup(t)
	sub := fmt.Sprint(w.submission)

	t.Run("swaks PLAIN on submission, relayed", func(t *testing.T) {
		out, code := swaks(t, "--port", sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "alice@example.org", "--to", "friend@remote.example", "--header", "Subject: plain-marker")
		if code != 0 || !strings.Contains(out, "235 2.7.0 Authentication successful") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		m := w.delivered("plain-marker")
		if m.From != "alice@example.org" || len(m.Rcpts) != 1 || m.Rcpts[0].Addr != "friend@remote.example" {
			t.Errorf("relayed mail: from %q to %+v", m.From, m.Rcpts)
		}
		if !bytes.Contains(m.Data, []byte("with ESMTPSA id")) {
			t.Errorf("Received: header does not say ESMTPSA:\n%s", m.Data)
		}
		w.waitLog("postfix/submission/smtpd[", ": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice")
	})

	t.Run("swaks LOGIN on submission", func(t *testing.T) {
		out, code := swaks(t, "--port", sub, "--tls", "--auth", "LOGIN", "--auth-user", "bob@example.org", "--auth-password", "secret2",
			"--from", "bob@example.org", "--to", "friend@remote.example", "--header", "Subject: login-marker")
		if code != 0 || !strings.Contains(out, "235 2.7.0 Authentication successful") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		w.delivered("login-marker")
		w.waitLog("postfix/submission/smtpd[", "sasl_method=LOGIN, sasl_username=bob@example.org")
	})

	t.Run("swaks on smtps", func(t *testing.T) {
		out, code := swaks(t, "--port", fmt.Sprint(w.smtps), "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "alice@example.org", "--to", "friend@remote.example", "--header", "Subject: smtps-marker")
		if code != 0 || !strings.Contains(out, "235 2.7.0 Authentication successful") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		w.delivered("smtps-marker")
		w.waitLog("postfix/smtps/smtpd[", "sasl_method=PLAIN, sasl_username=alice")
	})

	t.Run("python smtplib", func(t *testing.T) {
		script := `
import smtplib, sys
port = int(sys.argv[1])
for mech in ("PLAIN", "LOGIN"):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.starttls()
    s.ehlo()
    if s.has_extn("auth") is False:
        sys.exit("no AUTH after STARTTLS")
    s.user, s.password = "alice", "secret1"
    code, text = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
    print(mech, code, text.decode())
    s.sendmail("alice@example.org", ["friend@remote.example"], "Subject: smtplib-" + mech + "\r\n\r\nhello\r\n")
    s.quit()
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls()
try:
    s.login("alice", "wrong")
    sys.exit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
`
		out, err := exec.Command("python3", "-c", script, sub).CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		for _, want := range []string{"PLAIN 235 2.7.0 Authentication successful", "LOGIN 235 2.7.0 Authentication successful", "refused 535 5.7.8 Error: authentication failed: (reason unavailable)"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("smtplib output lacks %q:\n%s", want, out)
			}
		}
		w.delivered("smtplib-PLAIN")
		w.delivered("smtplib-LOGIN")
	})

	t.Run("wrong password", func(t *testing.T) {
		out, code := swaks(t, "--port", sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
			"--from", "alice@example.org", "--to", "friend@remote.example")
		if code == 0 || !strings.Contains(out, "535 5.7.8 Error: authentication failed: (reason unavailable)") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		w.waitLog("postfix/submission/smtpd[", "warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice")
	})

	t.Run("no AUTH before STARTTLS", func(t *testing.T) {
		out, code := swaks(t, "--port", sub, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "alice@example.org", "--to", "friend@remote.example")
		if code == 0 || strings.Contains(out, "250-AUTH") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		c, err := net.Dial("tcp", w.addr(w.submission))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldDE=\r\nMAIL FROM:<alice@example.org>\r\nQUIT\r\n")
		b, _ := io.ReadAll(c)
		got := string(b)
		if strings.Contains(got, "AUTH") || strings.Count(got, "530 5.7.0 Must issue a STARTTLS command first\r\n") != 2 {
			t.Errorf("before STARTTLS:\n%s", got)
		}
	})

	t.Run("sender login mismatch", func(t *testing.T) {
		out, code := swaks(t, "--port", sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "bob@example.org", "--to", "friend@remote.example")
		if code == 0 || !strings.Contains(out, "553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		w.waitLog("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice;")
	})

	t.Run("relay refused without login, allowed with it on port 25", func(t *testing.T) {
		port := fmt.Sprint(w.smtp)
		out, code := swaks(t, "--port", port, "--from", "someone@else.example", "--to", "friend@remote.example")
		if code == 0 || !strings.Contains(out, "554 5.7.1 <friend@remote.example>: Relay access denied") {
			t.Fatalf("unauthenticated relay: swaks exit %d:\n%s", code, out)
		}
		// The submission service refuses the unauthenticated client
		// outright (smtpd_client_restrictions).
		out, code = swaks(t, "--port", sub, "--tls", "--from", "someone@else.example", "--to", "friend@remote.example")
		if code == 0 || !strings.Contains(out, "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied") {
			t.Fatalf("unauthenticated submission: swaks exit %d:\n%s", code, out)
		}
		out, code = swaks(t, "--port", port, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "alice@example.org", "--to", "friend@remote.example", "--header", "Subject: port25-marker")
		if code != 0 {
			t.Fatalf("authenticated relay on port 25: swaks exit %d:\n%s", code, out)
		}
		w.delivered("port25-marker")
	})

	t.Run("queue file read by postcat", func(t *testing.T) {
		c, err := net.Dial("tcp", w.addr(w.smtps))
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(tc, "EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldDE=\r\nMAIL FROM:<alice@example.org> AUTH=alice+40example.org\r\nRCPT TO:<held@remote.example>\r\nDATA\r\nSubject: held\r\n\r\nhi\r\n.\r\nQUIT\r\n")
		b, _ := io.ReadAll(tc)
		if !strings.Contains(string(b), "250 2.0.0 Ok: queued as ") {
			t.Fatalf("session:\n%s", b)
		}
		id := strings.Fields(strings.SplitN(string(b), "queued as ", 2)[1])[0]
		w.waitLog(id + ": to=<held@remote.example>")
		var path string
		deadline := time.Now().Add(20 * time.Second)
		for path == "" {
			matches, _ := filepath.Glob(filepath.Join(w.spool, "deferred", "*", id))
			if len(matches) == 1 {
				path = matches[0]
			} else if time.Now().After(deadline) {
				t.Fatalf("%s not in deferred/; log:\n%s", id, w.log())
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
		// Postfix's postcat wants a main.cf; the machine may have none.
		pfconf := t.TempDir()
		os.WriteFile(filepath.Join(pfconf, "main.cf"), []byte("compatibility_level = 3.6\nqueue_directory = "+w.spool+"\n"), 0o644)
		out, err := exec.Command("postcat", "-c", pfconf, "-v", path).CombinedOutput()
		if err != nil {
			t.Fatalf("postcat: %v\n%s", err, out)
		}
		want := "named_attribute: rewrite_context=local\nnamed_attribute: sasl_method=PLAIN\nnamed_attribute: sasl_username=alice\nnamed_attribute: sasl_sender=alice+40example.org\n"
		if !strings.Contains(string(out), want) {
			t.Errorf("postcat -v %s lacks\n%s\n---\n%s", path, want, out)
		}
		w.waitLog("postfix/smtps/smtpd[", id+": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice, sasl_sender=alice+40example.org")
	})

	t.Run("reload picks up a new certificate", func(t *testing.T) {
		peer := func(port int) string {
			c, err := tls.Dial("tcp", w.addr(port), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].Subject.CommonName
		}
		if cn := peer(w.smtps); cn != "first.test" {
			t.Fatalf("certificate before reload: %s", cn)
		}
		writeCert(t, filepath.Join(w.dir, "cert.pem"), filepath.Join(w.dir, "key.pem"), "second.test")
		before := strings.Count(w.log(), "reload -- version")
		w.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(w.log(), "reload -- version") == before {
			if time.Now().After(deadline) {
				t.Fatalf("no reload in the log:\n%s", w.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if cn := peer(w.smtps); cn != "second.test" {
			t.Errorf("smtps certificate after reload: %s", cn)
		}
		out, code := swaks(t, "--port", sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret1",
			"--from", "alice@example.org", "--to", "friend@remote.example", "--header", "Subject: after-reload", "--tls-get-peer-cert")
		if code != 0 || !strings.Contains(out, "second.test") {
			t.Errorf("submission after reload: swaks exit %d:\n%s", code, out)
		}
	})
}
