package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Real peers: Postfix's smtp-source sends into sluice, sluice relays into
// Postfix's smtp-sink (accepting, soft-rejecting and hard-rejecting), and
// swaks speaks to sluice. The test is skipped where the tools are missing.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if _, e2 := exec.LookPath("/usr/sbin/" + name); e2 == nil {
			return "/usr/sbin/" + name
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// startSink runs smtp-sink on a free port with extra options and returns
// its address.
func startSink(t *testing.T, opts ...string) string {
	t.Helper()
	bin := needTool(t, "smtp-sink")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"-u", "postfix"}, opts...)
	args = append(args, addr, "64")
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListen(t, addr)
	return addr
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := dialTCP(addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

func countLines(log, re string) int {
	return len(regexp.MustCompile(re).FindAllStringIndex(log, -1))
}

func TestSmtpSourceIntoSluiceIntoSmtpSink(t *testing.T) {
	src := needTool(t, "smtp-source")
	sink := startSink(t)
	d := newDaemon(t, sink)
	d.start()
	defer d.kill()
	const n = 200
	out, err := exec.Command(src, "-s", "10", "-m", fmt.Sprint(n), "-l", "2048", "-f", "src@src.test", "-t", "rcpt@dest.test", d.addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	d.waitEmpty(30 * time.Second)
	// "ID: removed" is logged just after the unlink that empties the
	// queue, and the log is written in batches.
	d.waitLines(`: removed`, n)
	log := d.mailLog()
	if got := countLines(log, `to=<rcpt@dest.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 2\.0\.0 Ok`); got != n {
		t.Errorf("sent = %d, want %d", got, n)
	}
	if got := countLines(log, `: removed`); got != n {
		t.Errorf("removed = %d, want %d", got, n)
	}
	if code := d.term(); code != 0 {
		t.Errorf("exit %d", code)
	}
	// Postfix's log reader counts what the log says.
	sum := pflogsumm(t, d)
	for _, want := range []string{fmt.Sprintf(`(?m)^ +%d +received$`, n), fmt.Sprintf(`(?m)^ +%d +delivered$`, n),
		`(?m)^ +0 +deferred`, `(?m)^ +0 +bounced$`, `(?m)^ +0 +rejected`, `(?m)^Warnings: none$`,
		`(?m)^ +1 +daemon started -- version `, `(?m)^ +1 +loaded the queue model of `} {
		if countLines(sum, want) != 1 {
			t.Errorf("pflogsumm's report lacks %s:\n%s", want, sum)
		}
	}
}

// pflogsumm runs Postfix's log summarizer on d's mail log.
func pflogsumm(t *testing.T, d *daemon) string {
	t.Helper()
	out, err := exec.Command(needTool(t, "pflogsumm"), filepath.Join(d.dir, "mail.log")).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	return string(out)
}

func TestSmtpSinkSoftAndHardReject(t *testing.T) {
	needTool(t, "smtp-source")
	for _, c := range []struct {
		name, opt, want string
	}{
		{"soft", "-r", `status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 4\d\d .*\(in reply to RCPT TO command\)\)`},
		{"hard", "-f", `status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 5\d\d .*\(in reply to RCPT TO command\)\)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := startSink(t, c.opt, "RCPT")
			d := newDaemon(t, sink)
			d.start()
			defer d.kill()
			swaks(t, d.addr(), "alice@src.test", "bob@dest.test")
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && countLines(d.mailLog(), c.want) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			log := d.mailLog()
			if countLines(log, c.want) == 0 {
				t.Fatalf("mail log lacks %s:\n%s", c.want, log)
			}
			if c.name == "hard" {
				// The DSN goes to alice@src.test through the same sink,
				// which refuses it too: mail from <> is never bounced.
				for time.Now().Before(deadline) && !strings.Contains(d.mailLog(), "undeliverable mail from the null sender") {
					time.Sleep(20 * time.Millisecond)
				}
				log = d.mailLog()
				if !strings.Contains(log, "sender non-delivery notification: ") || !strings.Contains(log, "undeliverable mail from the null sender") {
					t.Errorf("bounce handling missing:\n%s", log)
				}
			}
			sum := pflogsumm(t, d)
			want := `(?m)^ +1 +deferred +\(1 +deferrals?\)$`
			if c.name == "hard" {
				want = `(?m)^ +2 +bounced$` // the message, and its DSN
			}
			if countLines(sum, want) != 1 {
				t.Errorf("pflogsumm's report lacks %s:\n%s", want, sum)
			}
		})
	}
}

// swaks sends one message with swaks and fails the test unless it was
// accepted.
func swaks(t *testing.T, addr, from, to string) {
	t.Helper()
	bin := needTool(t, "swaks")
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(bin, "--server", host, "--port", port, "--from", from, "--to", to,
		"--helo", "client.test", "--header", "Subject: swaks test", "--body", "hello from swaks", "--timeout", "10").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250 2.0.0 Ok: queued as ") {
		t.Errorf("swaks transcript lacks the queue ID reply:\n%s", out)
	}
}

func TestSwaksPipelining(t *testing.T) {
	sink := startSink(t)
	d := newDaemon(t, sink)
	d.start()
	defer d.kill()
	bin := needTool(t, "swaks")
	out, err := exec.Command(bin, "--server", "127.0.0.1", "--port", fmt.Sprint(d.port), "--from", "a@src.test",
		"--to", "b@dest.test,c@dest.test", "--pipeline", "--timeout", "10").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks --pipeline: %v\n%s", err, out)
	}
	d.waitEmpty(10 * time.Second)
	d.waitLines(`status=sent`, 2)
	if got := countLines(d.mailLog(), `status=sent`); got != 2 {
		t.Errorf("sent = %d, want 2:\n%s", got, d.mailLog())
	}
}

// waitLines waits until the mail log has at least n lines matching re.
func (d *daemon) waitLines(re string, n int) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && countLines(d.mailLog(), re) < n {
		time.Sleep(10 * time.Millisecond)
	}
}
