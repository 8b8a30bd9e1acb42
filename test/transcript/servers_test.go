package transcript

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/oracle"
	"sluice/internal/testutil"
)

// sharedParams are the main.cf settings both servers get, word for word, so
// that the parameters' names and meanings are tested along with the
// replies. The client is trusted (in mynetworks) when it connects from
// 127.0.0.1 and untrusted from 127.0.0.2. The limits are small so the
// scripts that cross them stay short.
func sharedParams() []string {
	return []string{
		"myhostname = facts.test",
		"mydomain = facts.test",
		"myorigin = $myhostname",
		"mydestination = $myhostname, localhost.$mydomain, localhost",
		"relay_domains = relay.test",
		"mynetworks = 127.0.0.1/32",
		"message_size_limit = 10240",
		"smtpd_recipient_limit = 3",
		"smtputf8_enable = yes",
		// The greeting is "$myhostname ESMTP $mail_name" in both.
		"mail_name = sluice",
		// Accepted mail goes nowhere during the test: the relay host is a
		// closed port and retries are hours away.
		"relayhost = [127.0.0.1]:9",
		"minimal_backoff_time = 3h",
		"maximal_backoff_time = 6h",
		"queue_run_delay = 1h",
		// Every local part in mydestination is accepted: the test's
		// users are not on either host. (The local recipient table is
		// tested in internal/smtpd and test/e2e.)
		"local_recipient_maps =",
	}
}

// postfixOnly are settings of Postfix that make it behave as sluice is
// specified to, for parameters sluice does not have.
func postfixOnly() []string {
	return []string{
		// sluice refuses a relay attempt with 554 5.7.1 (its package
		// comment); Postfix's default since 2.10 is a 454 deferral
		// (defer_unauth_destination). reject_unauth_destination is the
		// Postfix equivalent of sluice's rule.
		"smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
	}
}

// startPostfix starts a private Postfix 3.7 configured with sharedParams.
func startPostfix(t *testing.T) *oracle.Instance {
	t.Helper()
	return oracle.StartPostfix(t, oracle.Options{
		RelayHost: "[127.0.0.1]:9",
		Params:    append(sharedParams(), postfixOnly()...),
	})
}

// sluiceDaemon is `sluice serve -c DIR` running as a process, with a
// main.cf made of sharedParams plus where its files go and where it listens.
type sluiceDaemon struct {
	bin    string
	dir    string
	addr   string
	log    string
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit, once done is closed
}

// buildSluice builds cmd/sluice into dir.
func buildSluice(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sluice")
	out, err := exec.Command("go", "build", "-o", bin, "sluice/cmd/sluice").CombinedOutput()
	if err != nil {
		t.Fatalf("go build sluice: %v\n%s", err, out)
	}
	return bin
}

// startSluice starts sluice serve and waits until it answers; it is
// stopped when the test ends.
func startSluice(t *testing.T) *sluiceDaemon {
	t.Helper()
	dir := t.TempDir()
	testutil.Reachable(t, dir) // sluice serve as root runs as mail_owner
	bin := buildSluice(t, dir)
	d := &sluiceDaemon{
		bin:    bin,
		dir:    dir,
		addr:   fmt.Sprintf("127.0.0.1:%d", oracle.FreePort(t)),
		log:    filepath.Join(dir, "maillog"),
		stderr: &testutil.SyncBuffer{},
		done:   make(chan struct{}),
	}
	lines := append(sharedParams(),
		"queue_directory = "+filepath.Join(dir, "spool"),
		"maillog_file = "+d.log,
		"smtpd_listen = "+d.addr,
	)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, "serve", "-c", dir)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start sluice serve: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("sluice serve exited before listening: %v\n%s", d.err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice serve does not listen on %s; stderr:\n%s", d.addr, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon with SIGTERM (SIGKILL if it will not go).
func (d *sluiceDaemon) stop(t *testing.T) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("sluice serve did not stop on SIGTERM")
	}
	if t.Failed() {
		b, _ := os.ReadFile(d.log)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("sluice mail log (end):\n%s\nstderr:\n%s", b, d.stderr.String())
	}
}

// testutil.SyncBuffer is a bytes.Buffer safe for the process's output copier
// and the test to use at once.

// sessionLog returns the lines a mail log gained from offset on, waiting
// (bounded) until the session's "disconnect from" line is there: Postfix
// writes its log through postlogd, a moment after the fact.
func sessionLog(path string, offset int64, wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		b, _ := os.ReadFile(path)
		var out string
		if int64(len(b)) > offset {
			out = string(b[offset:])
		}
		if strings.Contains(out, "disconnect from ") || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fileSize is the size of path now (0 when it is missing).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// execOutput runs a program and returns its standard output.
func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// paramNames are the names in main.cf lines.
func paramNames(lines []string) []string {
	var names []string
	for _, l := range lines {
		if name, _, ok := strings.Cut(l, "="); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}

// checkAlike compares what Postfix's postconf and sluice's read from the
// two configurations for every shared parameter, $name expansions done
// (-x): the servers are configured alike only if both read the same
// values, defaults and expansions included.
func checkAlike(t *testing.T, pf *oracle.Instance, sl *sluiceDaemon) {
	t.Helper()
	names := paramNames(sharedParams())
	args := append([]string{"-x", "-h"}, names...)
	r := oracle.Run(t, pf.ConfigDir, nil, "postconf", append([]string{"-c", pf.ConfigDir}, args...)...)
	if r.Status != 0 {
		t.Fatalf("postconf: status %d\n%s", r.Status, r.Stderr)
	}
	out, err := exec.Command(sl.bin, append([]string{"postconf", "-c", sl.dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice postconf: %v\n%s", err, out)
	}
	want := strings.Split(strings.TrimSuffix(string(r.Stdout), "\n"), "\n")
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(want) != len(names) || len(got) != len(names) {
		t.Fatalf("postconf -x -h gave %d values from Postfix and %d from sluice for %d names:\n%s\n%s", len(want), len(got), len(names), r.Stdout, out)
	}
	for i, n := range names {
		if want[i] != got[i] {
			t.Errorf("the servers are not configured alike: %s = %q for Postfix, %q for sluice", n, want[i], got[i])
		}
	}
}
