package steer

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
)

// waitFor polls cond for up to 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestPostqueueFlush defers mail for a busy peer with a long backoff, then
// brings it back with postqueue -i (one message, same ID), -s (one site)
// and -f (everything), through the running daemon.
func TestPostqueueFlush(t *testing.T) {
	bin := binaries(t)
	sk := startSink(t, 0)
	sk.reject.Store(true)
	dir, addr := startDaemon(t, bin, sk, "minimal_backoff_time = 1h", "maximal_backoff_time = 2h", "queue_run_delay = 1h")
	ids := submit(t, addr, 3, 0)
	deferred := func(id string) func() bool {
		return func() bool {
			out, _, _ := sluice(t, "", "queue", "count", "-c", dir, "queue=deferred", "id="+id)
			return strings.HasPrefix(out, "1 message")
		}
	}
	for _, id := range ids {
		waitFor(t, id+" deferred", deferred(id))
	}
	out, _, _ := sluice(t, "", "mailq", "-C", dir)
	if !strings.Contains(out, "Mailbox busy, try again later") {
		t.Fatalf("mailq does not show the reason:\n%s", out)
	}
	// The attempt history tells what happened and what comes next.
	out, _, _ = sluice(t, "", "queue", "show", "-c", dir, ids[0])
	for _, want := range []string{"Attempts:     1", "deferred  r0-0@dest.test", "[mailbox-unavailable]", "History:", "via 127.0.0.1[127.0.0.1]:", "Next attempt: "} {
		if !strings.Contains(out, want) {
			t.Errorf("queue show lacks %q:\n%s", want, out)
		}
	}
	sk.reject.Store(false)
	postqueue := filepath.Join(bin, "postqueue")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(postqueue, append([]string{"-c", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("postqueue %v: %v\n%s", args, err, out)
		}
	}
	run("-i", ids[0])
	waitFor(t, "postqueue -i delivery", func() bool { return len(sk.deliveries(ids[0])) == 1 })
	if len(sk.deliveries(ids[1])) != 0 {
		t.Error("postqueue -i delivered another message too")
	}
	run("-s", "dest.test")
	waitFor(t, "postqueue -s delivery", func() bool { return len(sk.deliveries(ids[1])) == 1 && len(sk.deliveries(ids[2])) == 1 })

	// -f: everything deferred goes now.
	sk.reject.Store(true)
	more := submit(t, addr, 2, 1)
	for _, id := range more {
		waitFor(t, id+" deferred", deferred(id))
	}
	sk.reject.Store(false)
	run("-f")
	waitFor(t, "postqueue -f delivery", func() bool { return len(sk.deliveries(more[0])) == 1 && len(sk.deliveries(more[1])) == 1 })
	// An ID that is not queued is no error, as in Postfix.
	run("-i", "ABCDEF12345")
}

// TestPostqueueFlushWithoutDaemon: with nothing running, -f, -i and -s
// fail as Postfix's do, with the same messages and exit status.
func TestPostqueueFlushWithoutDaemon(t *testing.T) {
	oracle.Require(t)
	bin := binaries(t)
	root := filepath.Join(oracle.TempDir(t, "flush-"), "spool")
	conf := oracle.PostfixConfig(t, root)
	for _, args := range [][]string{{"-f"}, {"-i", "ABCDEF12345"}, {"-i", "bad/id"}, {"-s", "example.com"}} {
		want := oracle.Run(t, conf, nil, "postqueue", append([]string{"-c", conf}, args...)...)
		cmd := exec.Command(filepath.Join(bin, "postqueue"), append([]string{"-c", conf}, args...)...)
		var errb strings.Builder
		cmd.Stderr = &errb
		err := cmd.Run()
		status := 0
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.ExitCode()
		}
		if status != want.Status || errb.String() != string(want.Stderr) {
			t.Errorf("postqueue %v: status %d, stderr %q; Postfix: %d, %q", args, status, errb.String(), want.Status, want.Stderr)
		}
	}
}
