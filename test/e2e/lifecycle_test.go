package e2e

// The daemon's life as Postfix's master leads it: one daemon per spool
// (a lock, not a pid check), reload without cutting work in flight, every
// acknowledged message's log lines on disk before its 250, and no litter
// left by killed processes.

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/internal/spool"
	"sluice/internal/testutil/fakesmtp"
)

// waitLog waits until the mail log contains s.
func (d *daemon) waitLog(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(d.mailLog(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("mail log lacks %q after %v:\n%s\nstderr:\n%s", s, timeout, d.mailLog(), d.stderr.String())
}

func TestRestartAfterKill9(t *testing.T) {
	sink := fakesmtp.Start(t, fakesmtp.Options{})
	d := newDaemon(t, sink.Addr)
	d.start()
	old := d.cmd.Process.Pid
	d.kill()
	pidFile := filepath.Join(d.spool, "pid", "master.pid")
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(old) {
		t.Fatalf("after kill -9, master.pid = %q, %v; want the dead daemon's pid %d left behind", b, err, old)
	}
	// Right away: the stale file blocks nothing.
	d.start()
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != fmt.Sprint(d.cmd.Process.Pid) {
		t.Errorf("master.pid = %q, want the new daemon's pid %d", b, d.cmd.Process.Pid)
	}
	d.kill()

	// The dead daemon's pid now names a live, unrelated process.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%10d\n", other.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	defer d.kill()
	if n := strings.Count(d.mailLog(), "daemon started -- version "); n != 3 {
		t.Errorf("%d start lines, want 3:\n%s", n, d.mailLog())
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	sink := fakesmtp.Start(t, fakesmtp.Options{})
	d := newDaemon(t, sink.Addr)
	d.start()
	defer d.kill()
	first := d.cmd.Process.Pid

	// Another configuration directory naming the same spool (and another
	// port, so the lock, not the port, is what refuses it).
	dir2 := t.TempDir()
	b, err := os.ReadFile(filepath.Join(d.dir, "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	cf := strings.Replace(string(b), fmt.Sprintf("127.0.0.1:%d", d.port), fmt.Sprintf("127.0.0.1:%d", freePort(t)), 1)
	if err := os.WriteFile(filepath.Join(dir2, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sluiceBinary(t), "serve", "-c", dir2)
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("a second daemon on the same spool did not stop")
	}
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "fatal: the sluice mail system is already running") {
		t.Errorf("second daemon: exit %d, output:\n%s", cmd.ProcessState.ExitCode(), out)
	}
	if !regexp.MustCompile(`postfix/master\[\d+\]: fatal: the sluice mail system is already running`).MatchString(d.mailLog()) {
		t.Errorf("no fatal line in the mail log:\n%s", d.mailLog())
	}
	if b, _ := os.ReadFile(filepath.Join(d.spool, "pid", "master.pid")); strings.TrimSpace(string(b)) != fmt.Sprint(first) {
		t.Errorf("master.pid = %q after the refused start, want %d", b, first)
	}
	if c, err := dialTCP(d.addr()); err != nil {
		t.Errorf("the first daemon stopped answering: %v", err)
	} else {
		c.Close()
	}
}

// smtpConn is a step-by-step SMTP client, to hold a session open across
// a reload and to read the queue ID from the 250 reply.
type smtpConn struct {
	t *testing.T
	c *textproto.Conn
}

func dialSMTP(addr string) (*smtpConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(nc)
	if _, _, err := c.ReadResponse(220); err != nil {
		c.Close()
		return nil, err
	}
	return &smtpConn{c: c}, nil
}

func (s *smtpConn) cmd(code int, format string, args ...any) (string, error) {
	if err := s.c.PrintfLine(format, args...); err != nil {
		return "", err
	}
	_, msg, err := s.c.ReadResponse(code)
	return msg, err
}

// envelope sends EHLO, MAIL and RCPT.
func (s *smtpConn) envelope(from, to string) error {
	if _, err := s.cmd(250, "EHLO client.test"); err != nil {
		return err
	}
	if _, err := s.cmd(250, "MAIL FROM:<%s>", from); err != nil {
		return err
	}
	_, err := s.cmd(250, "RCPT TO:<%s>", to)
	return err
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// data sends the message and returns the queue ID from the 250 reply.
func (s *smtpConn) data(body string) (string, error) {
	if _, err := s.cmd(354, "DATA"); err != nil {
		return "", err
	}
	w := s.c.DotWriter()
	fmt.Fprint(w, body)
	if err := w.Close(); err != nil {
		return "", err
	}
	_, msg, err := s.c.ReadResponse(250)
	if err != nil {
		return "", err
	}
	m := queuedAs.FindStringSubmatch(msg)
	if m == nil {
		return "", fmt.Errorf("no queue ID in %q", msg)
	}
	return m[1], nil
}

func (s *smtpConn) close() {
	s.c.PrintfLine("QUIT")
	s.c.Close()
}

// TestReloadKeepsWorkInFlight: a SIGHUP while a delivery waits on a slow
// peer and while an SMTP session is between RCPT and DATA cuts neither:
// the message is sent once, the session's message is accepted, the new
// configuration takes the next message.
func TestReloadKeepsWorkInFlight(t *testing.T) {
	slow := fakesmtp.Start(t, fakesmtp.Options{})
	// Longer than any grace a restart would give the delivery.
	slow.Reply(fakesmtp.DOT, fakesmtp.Reply{Delay: 12 * time.Second})
	next := fakesmtp.Start(t, fakesmtp.Options{})
	d := newDaemon(t, slow.Addr)
	d.start()
	defer d.kill()
	pid := d.cmd.Process.Pid

	count := func(s *fakesmtp.Server, token string) int {
		n := 0
		for _, m := range s.Delivered() {
			if strings.Contains(string(m.Data), token) {
				n++
			}
		}
		return n
	}
	c, err := dialSMTP(d.addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.envelope("a@src.test", "b@dest.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.data("Subject: slow\r\n\r\nslow-one\r\n"); err != nil {
		t.Fatal(err)
	}
	// The peer has the data and sits on its reply: the delivery is in flight.
	for deadline := time.Now().Add(10 * time.Second); count(slow, "slow-one") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow peer never got the message:\n%s", d.mailLog())
		}
	}
	// The same session, held open across the reload.
	if err := c.envelope2("a@src.test", "c@dest.test"); err != nil {
		t.Fatal(err)
	}

	d.rewrite("relayhost", "relayhost = ["+strings.Replace(next.Addr, ":", "]:", 1))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("reload -- version ", 10*time.Second)
	if !regexp.MustCompile(`postfix/master\[\d+\]: reload -- version \S+, configuration ` + regexp.QuoteMeta(d.dir) + `\n`).MatchString(d.mailLog()) {
		t.Errorf("reload line not as Postfix's master writes it:\n%s", d.mailLog())
	}
	if _, err := c.data("Subject: held\r\n\r\nheld-session\r\n"); err != nil {
		t.Fatalf("the session open across the reload was cut: %v\nstderr:\n%s", err, d.stderr.String())
	}
	c.close()
	// A new session after the reload; its message goes to the new relayhost.
	c2, err := dialSMTP(d.addr())
	if err != nil {
		t.Fatalf("no connection after the reload: %v", err)
	}
	if err := c2.envelope("a@src.test", "d@dest.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.data("Subject: new\r\n\r\nafter-reload\r\n"); err != nil {
		t.Fatal(err)
	}
	c2.close()

	d.waitLog("status=sent", 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); count(next, "after-reload") == 0 || count(next, "held-session") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("messages accepted after the reload not delivered to the new relayhost:\n%s", d.mailLog())
		}
	}
	d.waitEmpty(30 * time.Second)
	// The log line of the last delivery may follow its removal from the
	// queue by up to the log's flush interval.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.mailLog(), "status=sent") < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	log := d.mailLog()
	if n := count(slow, "slow-one"); n != 1 {
		t.Errorf("the message in flight during the reload reached the peer %d times, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, "status=sent"); n != 3 {
		t.Errorf("%d status=sent lines, want 3:\n%s", n, log)
	}
	if strings.Contains(log, "status=deferred") || strings.Contains(log, "terminating on signal") {
		t.Errorf("the reload disturbed the running system:\n%s", log)
	}
	if d.cmd.Process.Pid != pid {
		t.Error("the daemon was restarted as a new process")
	}
	if code := d.term(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if !strings.HasSuffix(d.mailLog(), "terminating on signal 15\n") {
		t.Errorf("no stop line at the end:\n%s", d.mailLog())
	}
}

// envelope2 starts a second transaction in the same session (no EHLO).
func (s *smtpConn) envelope2(from, to string) error {
	if _, err := s.cmd(250, "MAIL FROM:<%s>", from); err != nil {
		return err
	}
	_, err := s.cmd(250, "RCPT TO:<%s>", to)
	return err
}

// TestKill9KeepsLogOfAcknowledged: under SMTP load the daemon is killed
// with SIGKILL; every message that got its 250 has its client= line in
// the mail log (the log is written before the reply, not 100 ms later).
func TestKill9KeepsLogOfAcknowledged(t *testing.T) {
	sink := fakesmtp.Start(t, fakesmtp.Options{})
	d := newDaemon(t, sink.Addr)
	d.start()
	defer d.kill()

	const clients = 6
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialSMTP(d.addr())
				if err != nil {
					return // killed
				}
				if _, err := c.cmd(250, "EHLO client.test"); err != nil {
					c.c.Close()
					continue
				}
				for ; ; n++ {
					if err := c.envelope2("load@src.test", fmt.Sprintf("r%d@dest.test", i)); err != nil {
						break
					}
					id, err := c.data(fmt.Sprintf("Subject: k\r\n\r\nload-%d-%d\r\n", i, n))
					if err != nil {
						break
					}
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
				c.c.Close()
			}
		}(i)
	}
	// Let the load run, then kill in the middle of it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break
		}
	}
	d.kill()
	close(stop)
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d messages acknowledged: too light a load to mean anything", len(acked))
	}
	clientLine := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(d.mailLog()))
	re := regexp.MustCompile(`postfix/smtpd\[\d+\]: ([0-9A-Za-z]+): client=`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			clientLine[m[1]] = true
		}
	}
	missing := 0
	for _, id := range acked {
		if !clientLine[id] {
			missing++
			if missing <= 10 {
				t.Errorf("%s was acknowledged with 250 but its client= line is not in the log", id)
			}
		}
	}
	t.Logf("%d messages acknowledged before the kill, %d without their client= line", len(acked), missing)
}

// TestOrphansRemovedAtStart: temporary files of killed processes go at
// start, with a log line each; queue files, and temporary names that a
// live process may still be using, stay.
func TestOrphansRemovedAtStart(t *testing.T) {
	sink := fakesmtp.Start(t, fakesmtp.Options{})
	d := newDaemon(t, sink.Addr)
	sp := spool.New(d.spool)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	// A pid that is surely dead: a process that has ended and been reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	write := func(rel string, data string, mode os.FileMode) string {
		path := filepath.Join(d.spool, rel)
		if err := os.WriteFile(path, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	gone := []string{
		write(fmt.Sprintf("incoming/%d.%d.1", now.UnixMicro(), dead.Process.Pid), "", 0o600),
		write(fmt.Sprintf("incoming/%d.%d.2", now.UnixMicro(), dead.Process.Pid), "half a queue file", 0o600),
		write(fmt.Sprintf("hold/%d.%d.3", now.UnixMicro(), dead.Process.Pid), "", 0o600),
		// Ours (the test's) is alive, but the name is two hours old.
		write(fmt.Sprintf("maildrop/%d.%d.4", now.Add(-2*time.Hour).UnixMicro(), os.Getpid()), "", 0o600),
	}
	// A live process's fresh temporary name may be in use right now.
	kept := write(fmt.Sprintf("maildrop/%d.%d.5", now.UnixMicro(), os.Getpid()), "", 0o600)
	// A complete queue file and a held one are mail.
	f, err := sp.NewFile(spool.Incoming, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteEnvelope(&spool.NewEnvelope{Sender: "a@src.test", Arrival: now, Recipients: []spool.NewRecipient{{Address: "b@dest.test", Orig: "b@dest.test"}}}); err != nil {
		t.Fatal(err)
	}
	f.WriteLine([]byte("Subject: kept"))
	f.WriteLine([]byte(""))
	f.WriteLine([]byte("valid-queue-file"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	h, err := sp.NewFile(spool.Hold, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteEnvelope(&spool.NewEnvelope{Sender: "a@src.test", Arrival: now, Recipients: []spool.NewRecipient{{Address: "c@dest.test", Orig: "c@dest.test"}}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Commit(); err != nil {
		t.Fatal(err)
	}

	d.start()
	defer d.kill()
	for _, p := range gone {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left in place", p)
		}
		rel, _ := filepath.Rel(d.spool, p)
		if !strings.Contains(d.mailLog(), "postfix/master[") || !strings.Contains(d.mailLog(), "warning: "+rel+": removed temporary file left behind by a killed process") {
			t.Errorf("no log line for %s:\n%s", rel, d.mailLog())
		}
	}
	if _, err := os.Lstat(kept); err != nil {
		t.Errorf("a live process's fresh temporary file was removed: %v", err)
	}
	if _, err := os.Lstat(sp.Path(spool.Hold, h.ID)); err != nil {
		t.Errorf("the held queue file was removed: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		found := false
		for _, m := range sink.Delivered() {
			found = found || strings.Contains(string(m.Data), "valid-queue-file")
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the complete queue file in incoming/ was not delivered:\n%s", d.mailLog())
		}
	}
}
