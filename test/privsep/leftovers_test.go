package privsep_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/control"
	"sluice/internal/spool"
)

// TestRootLeftovers: deferred mail that a tool running as root left in
// the spool (files and a hash directory the daemon's user cannot read)
// is given to mail_owner beside the running daemon, which SMTP does not
// wait for, and the daemon's model of the queue then has it.
func TestRootLeftovers(t *testing.T) {
	e := setup(t)
	e.writeConf(e.conf, "hash_queue_names = deferred, defer", "hash_queue_depth = 1")
	// The spool exists (made by a first start); then root queues mail
	// into it with the daemon down, as `sluice inject` run as root does.
	e.start()
	e.stop()
	out, err := exec.Command(filepath.Join(e.bin, "sluice"), "inject", "-c", e.conf, "-q", "deferred", "-f", "alice@src.test",
		"-T", "-2h", "-s", "4.4.1", "-r", "connect to mx.left.test[192.0.2.1]:25: Connection refused", "bob@left.test").CombinedOutput()
	if err != nil {
		t.Fatalf("inject: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	sp := spool.New(e.spool)
	sp.SetHashQueues("deferred, defer")
	sp.HashDepth = 1
	path := sp.Path(spool.Deferred, id)
	// Root's, and unreadable to anyone else, directory and file alike.
	for _, p := range []string{filepath.Dir(path), path} {
		os.Chown(p, 0, 0)
		os.Chmod(p, 0o700)
	}

	e.start()
	c, err := control.Dial(e.spool)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		m, err := c.ModelMessage(ctx, id)
		if err == nil && m.Queue == spool.Deferred && len(m.Recipients) == 1 && m.Recipients[0].Class == "connection-refused" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the daemon's model never had %s: %v %+v\nlog:\n%s", id, err, m, readFile(e.log))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(readFile(e.log), "more spool entries to "+e.owner) {
		t.Errorf("no log line for the entries given to %s:\n%s", e.owner, readFile(e.log))
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
