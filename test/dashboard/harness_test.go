// Package dashboard drives the web dashboard of a running sluice serve in
// headless Chromium (Debian's chromium package, through chromedp): real
// mail, deferred by a peer that refuses connections and by one that
// greylists, seen and steered through the browser. Screenshots of every
// page go to $SLUICE_TEST_OUTPUT, or test/dashboard/output/.
//
// The test fails, never skips, when Chromium is missing: scripts/test.sh
// installs it.
package dashboard

import (
	"context"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sluice/internal/clock"
	"sluice/internal/config"
	"sluice/internal/server"
	"sluice/internal/testutil"
	"sluice/internal/testutil/fakedns"
	"sluice/internal/testutil/fakesmtp"
)

// daemon is one in-process sluice serve with its peers: DNS where
// dest.test and greylist.test point at the fake receiving server on
// 127.0.0.1 and down.test at 127.0.0.2, where nothing listens.
type daemon struct {
	t      *testing.T
	dir    string
	clk    *clock.Fake
	dns    *fakedns.Server
	sink   *fakesmtp.Server
	srv    *server.Server
	logbuf *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan error
	base   string // the HTTP listener, http://127.0.0.1:port
	token  string
}

func startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	t.Setenv("TZ", "UTC")
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, logbuf: &testutil.SyncBuffer{}}
	d.sink = fakesmtp.Start(t, fakesmtp.Options{Hostname: "mx.dest.test"})
	d.dns = fakedns.Start(t)
	for _, dom := range []string{"dest.test", "greylist.test", "down.test"} {
		d.dns.AddMX(dom, 10, "mx."+dom)
	}
	d.dns.AddA("mx.dest.test", "127.0.0.1")
	d.dns.AddA("mx.greylist.test", "127.0.0.1")
	d.dns.AddA("mx.down.test", "127.0.0.2")
	d.clk = clock.NewFake(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	lines := append([]string{
		"queue_directory = " + filepath.Join(dir, "spool"),
		"maillog_file = " + filepath.Join(dir, "mail.log"),
		"myhostname = sluice.test",
		"smtpd_listen = 127.0.0.1:0",
		"sluice_http_listen = 127.0.0.1:0",
		// No retry while the test runs: the counts stay put until the
		// browser changes them.
		"minimal_backoff_time = 2h",
		"maximal_backoff_time = 4h",
	}, extra...)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan *server.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	go func() {
		d.done <- server.Run(ctx, server.Options{Config: cfg, LogCopy: d.logbuf, Clock: d.clk, Resolver: d.dns.Resolver(), SMTPPort: d.sink.Port,
			Ready: func(s *server.Server) { ready <- s }})
	}()
	select {
	case d.srv = <-ready:
	case err := <-d.done:
		t.Fatalf("sluice serve did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("sluice serve did not start in time")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-d.done; err != nil {
			t.Errorf("sluice serve: %v", err)
		}
	})
	if d.srv.HTTPAddr() == "" {
		t.Fatalf("no HTTP listener; log:\n%s", d.logbuf)
	}
	d.base = "http://" + d.srv.HTTPAddr()
	b, err := os.ReadFile(filepath.Join(dir, "spool", "private", "sluice-http-token"))
	if err != nil {
		t.Fatalf("token file: %v", err)
	}
	d.token = strings.TrimSpace(string(b))
	return d
}

// send submits one message over SMTP.
func (d *daemon) send(from string, to []string, subject, body string) {
	d.t.Helper()
	msg := "Subject: " + subject + "\r\nFrom: <" + from + ">\r\nTo: " + strings.Join(to, ", ") + "\r\n\r\n" + body + "\r\n"
	if err := smtp.SendMail(d.srv.Addrs()[0].String(), nil, from, to, []byte(msg)); err != nil {
		d.t.Fatalf("send from %s: %v", from, err)
	}
}

// queued lists the IDs in a queue.
func (d *daemon) queued(queue string) []string {
	es, err := d.srv.Spool().List(queue)
	if err != nil {
		d.t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// waitFor polls cond until it holds (a generous bound: the machine may
// be busy).
func (d *daemon) waitFor(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.t.Fatalf("timed out waiting for %s; mail log:\n%s", what, d.logbuf)
}

// idle reports whether the queue manager has nothing in hand.
func (d *daemon) idle() bool {
	st := d.srv.Queue().Stats()
	return st.Active == 0 && st.Deliveries == 0
}

// chromiumPath finds Debian's Chromium, or fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("Chromium is not installed (apt-get install chromium); scripts/test.sh installs it")
	return ""
}

// browser starts headless Chromium with a laptop-sized window. It runs
// without the sandbox, which Chromium refuses to use as root.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.WindowSize(1366, 900),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// outputDir is where screenshots go.
func outputDir(t *testing.T) string {
	dir := os.Getenv("SLUICE_TEST_OUTPUT")
	if dir == "" {
		dir = "output"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
