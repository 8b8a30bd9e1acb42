// Package e2e runs sluice end to end: in-process with a fake clock, fake
// DNS and a fake receiving server (fast, hermetic), and as a real
// process (built from cmd/sluice) with Postfix's smtp-source, smtp-sink
// and swaks as peers, including kill -9 crash tests.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/clock"
	"sluice/internal/config"
	"sluice/internal/local"
	"sluice/internal/server"
	"sluice/internal/spool"
	"sluice/internal/testutil"
	"sluice/internal/testutil/fakedns"
	"sluice/internal/testutil/fakesmtp"
)

// mta is one in-process sluice with its peers.
type mta struct {
	t      *testing.T
	dir    string // configuration directory
	spool  string
	logf   string
	clk    *clock.Fake
	dns    *fakedns.Server
	sink   *fakesmtp.Server
	srv    *server.Server
	addr   string
	logbuf *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan error
	users  local.Users // local delivery's passwd table; the system's when nil
}

// newMTA writes a main.cf (the base settings plus extra lines) and
// prepares the peers: DNS with dest.test and src.test served by the fake
// receiving server on 127.0.0.1, and down.test pointing at 127.0.0.2,
// where nothing listens.
func newMTA(t *testing.T, extra ...string) *mta {
	t.Helper()
	t.Setenv("TZ", "UTC")
	dir := t.TempDir()
	m := &mta{t: t, dir: dir, spool: filepath.Join(dir, "spool"), logf: filepath.Join(dir, "mail.log"), logbuf: &testutil.SyncBuffer{}}
	m.sink = fakesmtp.Start(t, fakesmtp.Options{Hostname: "mx.dest.test"})
	m.dns = fakedns.Start(t)
	for _, d := range []string{"dest.test", "src.test", "down.test"} {
		m.dns.AddMX(d, 10, "mx."+d)
	}
	m.dns.AddA("mx.dest.test", "127.0.0.1")
	m.dns.AddA("mx.src.test", "127.0.0.1")
	m.dns.AddA("mx.down.test", "127.0.0.2")
	m.clk = clock.NewFake(time.Now().Truncate(time.Second))
	lines := append([]string{
		"queue_directory = " + m.spool,
		"maillog_file = " + m.logf,
		"myhostname = sluice.test",
		"smtpd_listen = 127.0.0.1:0",
		"sluice_http_listen = 127.0.0.1:0", // each test's own API port
	}, extra...)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// setListen replaces smtpd_listen in main.cf (before start).
func (m *mta) setListen(addr string) {
	m.t.Helper()
	p := filepath.Join(m.dir, "main.cf")
	b, err := os.ReadFile(p)
	if err != nil {
		m.t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "smtpd_listen = 127.0.0.1:0\n", "smtpd_listen = "+addr+"\n", 1))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// start runs the server until the test ends.
func (m *mta) start() {
	m.t.Helper()
	cfg, err := config.Load(m.dir)
	if err != nil {
		m.t.Fatal(err)
	}
	ready := make(chan *server.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done = make(chan error, 1)
	go func() {
		m.done <- server.Run(ctx, server.Options{
			Config: cfg, LogCopy: m.logbuf, Clock: m.clk, Resolver: m.dns.Resolver(), SMTPPort: m.sink.Port, Users: m.users,
			Ready: func(s *server.Server) { ready <- s },
		})
	}()
	select {
	case m.srv = <-ready:
	case err := <-m.done:
		m.t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		m.t.Fatal("server did not start in time")
	}
	if addrs := m.srv.Addrs(); len(addrs) > 0 {
		m.addr = addrs[0].String()
	}
	m.t.Cleanup(m.stop)
}

func (m *mta) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		m.t.Errorf("server: %v", err)
	}
	m.cancel = nil
}

// send submits one message over SMTP and returns the queue ID from the
// 250 reply's text or the log.
func (m *mta) send(from string, to []string, body string) {
	m.t.Helper()
	msg := "Subject: e2e\r\nFrom: " + from + "\r\nTo: " + strings.Join(to, ", ") + "\r\n\r\n" + body + "\r\n"
	if m.addr == "" {
		// No SMTP listener yet: straight to cleanup.
		cm := &cleanup.Message{Sender: from}
		for _, r := range to {
			cm.Recipients = append(cm.Recipients, cleanup.Recipient{Address: r})
		}
		if _, err := m.srv.Submit(context.Background(), cm, strings.NewReader(msg)); err != nil {
			m.t.Fatalf("submit: %v", err)
		}
		return
	}
	if err := smtp.SendMail(m.addr, nil, from, to, []byte(msg)); err != nil {
		m.t.Fatalf("send: %v", err)
	}
}

// waitFor polls cond until it holds.
func (m *mta) waitFor(what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.t.Fatalf("timed out waiting for %s; mail log:\n%s", what, m.logbuf.String())
}

// logNow reports whether the mail log has s now.
func (m *mta) logNow(s string) bool { return strings.Contains(m.logbuf.String(), s) }

// logHas reports whether the mail log has s, waiting a little for it:
// the daemon writes its log in batches (every 100 ms), and a loaded
// machine may take far longer.
func (m *mta) logHas(s string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(m.logbuf.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idle reports whether the queue manager has nothing in hand.
func (m *mta) idle() bool {
	st := m.srv.Queue().Stats()
	return st.Active == 0 && st.Deliveries == 0
}

// queued lists the IDs in a queue.
func (m *mta) queued(queue string) []string {
	es, err := m.srv.Spool().List(queue)
	if err != nil {
		m.t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// delivered returns the bodies the receiving server accepted for rcpt.
func (m *mta) delivered(rcpt string) []string {
	var out []string
	for _, mail := range m.sink.Delivered() {
		for _, r := range mail.Rcpts {
			if r.Accepted && strings.EqualFold(r.Addr, rcpt) {
				out = append(out, string(mail.Data))
			}
		}
	}
	return out
}

// advanceTo moves the fake clock past the next attempt of the deferred
// message id (its mtime) and to the next queue run.
func (m *mta) advancePast(id string) {
	m.t.Helper()
	fi, err := os.Stat(m.srv.Spool().Path(spool.Deferred, id))
	if err != nil {
		m.t.Fatal(err)
	}
	m.clk.Set(fi.ModTime().Add(time.Second))
	// The deferred scan runs every queue_run_delay; step to it.
	if d, ok := m.clk.NextDeadline(); ok && d.After(m.clk.Now()) {
		m.clk.Set(d)
	}
}

var _ = net.Dial
var _ = fmt.Sprint

// token is the daemon's HTTP API token, from the file it made.
func (m *mta) token() string {
	m.t.Helper()
	b, err := os.ReadFile(filepath.Join(m.spool, "private", "sluice-http-token"))
	if err != nil {
		m.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
