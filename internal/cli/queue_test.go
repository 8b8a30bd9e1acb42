package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/control"
	"sluice/internal/httpapi"
	"sluice/internal/maillog"
	"sluice/internal/manage"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

// queueEnv makes a sluice configuration with an empty spool.
func queueEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "spool")+"\n"), 0o644)
	return conf
}

func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"sluice"}, args...), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func mustInject(t *testing.T, conf string, args ...string) string {
	t.Helper()
	out, errs, code := run(t, "Subject: t\n\nbody\n", append([]string{"inject", "-c", conf}, args...)...)
	if code != 0 {
		t.Fatalf("inject %v: %s", args, errs)
	}
	return strings.TrimSpace(out)
}

func TestQueueCommands(t *testing.T) {
	conf := queueEnv(t)
	refused := "connect to mx.example.com[1.2.3.4]:25: Connection refused"
	a := mustInject(t, conf, "-f", "alice@src.test", "-T", "-3h", "-s", "4.4.1", "-r", refused, "user@example.com")
	b := mustInject(t, conf, "-f", "bob@src.test", "-T", "-10m", "-s", "4.7.1", "-R", "x@grey.test=host mx.grey.test[5.6.7.8] said: 450 4.7.1 Greylisted, try again later", "x@grey.test", "user@example.com")
	c := mustInject(t, conf, "-f", "", "-q", "hold", "other@example.org")

	out, _, code := run(t, "", "queue", "count", "-c", conf)
	if code != 0 || out != "3 messages, 4 recipients\n" {
		t.Errorf("count: %q %d", out, code)
	}
	out, _, _ = run(t, "", "queue", "count", "-c", conf, "rcpt=user@example.com", "--json")
	var cnt map[string]int
	if json.Unmarshal([]byte(out), &cnt) != nil || cnt["messages"] != 2 || cnt["recipients"] != 3 {
		t.Errorf("count --json rcpt=: %q", out)
	}
	out, _, _ = run(t, "", "queue", "summary", "-c", conf)
	for _, want := range []string{"connection-refused", "greylisting", "(no reason yet)", a + ": " + refused} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "", "queue", "list", "-c", conf, "class=greylisting")
	if !strings.HasPrefix(out, b) || strings.Count(out, "\n") != 1 {
		t.Errorf("list class=greylisting:\n%s", out)
	}
	out, _, _ = run(t, "", "queue", "show", "-c", conf, a)
	for _, want := range []string{"Queue ID:     " + a, "deferred  user@example.com", "[connection-refused]", "Next attempt:", "Expires:"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// A bad selector names the bad term and changes nothing.
	_, errs, code := run(t, "", "queue", "delete", "-c", conf, "rcpt=user@example.com", "age>soon", "--yes")
	if code != 2 || !strings.Contains(errs, `bad term "age>soon"`) {
		t.Errorf("bad selector: %d %q", code, errs)
	}
	// Bulk actions need --yes without a terminal; dry runs change nothing.
	if _, errs, code = run(t, "", "queue", "delete", "-c", conf, "rcpt=user@example.com"); code != 2 || !strings.Contains(errs, "--yes") {
		t.Errorf("bulk without --yes: %d %q", code, errs)
	}
	out, _, _ = run(t, "", "queue", "delete", "-c", conf, "rcpt=user@example.com", "--dry-run")
	if !strings.Contains(out, "would delete 2 messages") {
		t.Errorf("dry run: %q", out)
	}
	if _, _, code = run(t, "", "queue", "delete", "-c", conf); code != 2 {
		t.Errorf("delete with no selector: %d", code)
	}
	out, _, code = run(t, "", "queue", "hold", "-c", conf, "sender=alice@src.test")
	if code != 0 || !strings.Contains(out, a+": placed on hold") {
		t.Errorf("hold: %d %q", code, out)
	}
	out, _, _ = run(t, "", "queue", "delete", "-c", conf, "rcpt=user@example.com", "--yes", "--json")
	var res struct {
		Changed int `json:"changed"`
	}
	if json.Unmarshal([]byte(out), &res) != nil || res.Changed != 2 {
		t.Errorf("delete --json: %q", out)
	}
	out, _, _ = run(t, "", "queue", "list", "-c", conf, "--json")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, c) {
		t.Errorf("after delete, list:\n%s", out)
	}
}

// TestQueueDefects: what an operator ran into (issue 11, part 5).
func TestQueueDefects(t *testing.T) {
	conf := queueEnv(t)
	a := mustInject(t, conf, "-f", "alice@src.test", "-T", "-3h", "user@example.com")
	h := mustInject(t, conf, "-f", "", "-q", "hold", "other@example.org", "second@example.org")

	// count queue=hold counts the recipients of held mail.
	out, _, code := run(t, "", "queue", "count", "-c", conf, "queue=hold")
	if code != 0 || out != "1 message, 2 recipients\n" {
		t.Errorf("count queue=hold: %q %d", out, code)
	}
	// A bare word is an error that says what to write.
	_, errs, code := run(t, "", "queue", "list", "-c", conf, "hold")
	if code != 2 || !strings.Contains(errs, "queue=hold") {
		t.Errorf("list hold: %d %q", code, errs)
	}
	// Every summary has examples.
	for _, by := range []string{"domain", "sender", "queue"} {
		out, _, _ = run(t, "", "queue", "summary", "-c", conf, "--by", by)
		for _, want := range []string{a + ": alice@src.test → user@example.com", h + ": MAILER-DAEMON → other@example.org"} {
			if by == "domain" {
				want = strings.Replace(want, " (+1)", "", 1)
			}
			if !strings.Contains(out, want) {
				t.Errorf("summary --by %s lacks %q:\n%s", by, want, out)
			}
		}
	}
	// A dry run of hold does not count mail already on hold, and the real
	// run then agrees with it.
	out, errs, _ = run(t, "", "queue", "hold", "-c", conf, "id="+h, "--dry-run")
	if !strings.Contains(out, "would hold 0 messages") || !strings.Contains(errs, "not in a queue hold applies to") {
		t.Errorf("dry run of hold on held mail: %q %q", out, errs)
	}
	out, _, _ = run(t, "", "queue", "hold", "-c", conf, "id="+h)
	if strings.Contains(out, "gone") || !strings.Contains(out, "no messages selected") {
		t.Errorf("hold of held mail: %q", out)
	}
}

// TestShowCorrupt: show on a file in corrupt/ claims no next attempt and
// no expiry, whether the file parses in part or not at all.
func TestShowCorrupt(t *testing.T) {
	conf := queueEnv(t)
	id := mustInject(t, conf, "-f", "a@src.test", "user@example.com")
	spoolDir := filepath.Join(filepath.Dir(conf), "spool")
	var src string
	filepath.Walk(spoolDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && filepath.Base(p) == id {
			src = p
		}
		return nil
	})
	if src == "" {
		t.Fatal("injected file not found")
	}
	os.MkdirAll(filepath.Join(spoolDir, "corrupt"), 0o700)
	data, _ := os.ReadFile(src)
	os.Remove(src)
	// Cut off before the end: it parses only in part.
	if err := os.WriteFile(filepath.Join(spoolDir, "corrupt", id), data[:len(data)/2], 0o700); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "", "queue", "show", "-c", conf, id)
	if code != 0 || !strings.Contains(out, "Queue:        corrupt") || !strings.Contains(out, "Next attempt: none") || strings.Contains(out, "Expires:") {
		t.Errorf("show corrupt: %d\n%s%s", code, out, errs)
	}
	if err := os.WriteFile(filepath.Join(spoolDir, "corrupt", id), []byte("garbage"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "", "queue", "show", "-c", conf, id); strings.Contains(errs, "panic") || code > 1 {
		t.Errorf("show on garbage: %d %s", code, errs)
	}
}

// TestActionsLogged: every change an action makes is in the mail log in
// postsuper's words, whether the tool acts on the files or through the
// daemon's control socket, and whichever tool asked.
func TestActionsLogged(t *testing.T) {
	for _, viaDaemon := range []bool{false, true} {
		dir := t.TempDir()
		conf := filepath.Join(dir, "conf")
		logPath := filepath.Join(dir, "maillog")
		os.MkdirAll(conf, 0o755)
		os.WriteFile(filepath.Join(conf, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "spool")+"\nmaillog_file = "+logPath+"\n"), 0o644)
		a := mustInject(t, conf, "-f", "a@src.test", "-r", "later", "x@example.com")
		b := mustInject(t, conf, "-f", "b@src.test", "-r", "later", "y@example.com")
		coord := &countingCoord{}
		if viaDaemon {
			// As sluice serve: the daemon's actions publish events, from
			// which its mail log writes postsuper's lines.
			sp := spool.New(filepath.Join(dir, "spool"))
			f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			log := maillog.New(f, "host.test", "postfix", time.Now)
			q := &manage.Queue{Spool: sp, Coord: coord, Events: log, Log: log.Log}
			api := httpapi.API(httpapi.Backend{Queue: &queuesvc.Service{Queue: q}})
			srv, err := control.Listen(sp.Root, control.Backend{Queue: q, MailOwner: os.Getuid(), API: api})
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve()
			defer srv.Shutdown(context.Background())
		}
		steps := [][]string{
			{"queue", "hold", "-c", conf, "id=" + a},
			{"queue", "release", "-c", conf, "id=" + a},
			{"postsuper", "-e", a, "-c", conf},
			{"queue", "requeue", "-c", conf, "id=" + a},
			{"postsuper", "-d", b, "-c", conf},
		}
		for _, s := range steps {
			if _, errs, code := run(t, "", s...); code != 0 {
				t.Fatalf("%v: %d %s", s, code, errs)
			}
		}
		if viaDaemon && coord.n.Load() != int64(len(steps)) {
			t.Errorf("the daemon made %d of the %d changes", coord.n.Load(), len(steps))
		}
		log, _ := os.ReadFile(logPath)
		for _, want := range []string{a + ": placed on hold", a + ": released from hold", a + ": expired", a + ": requeued", b + ": removed"} {
			if !strings.Contains(string(log), "postfix/postsuper[") || !strings.Contains(string(log), "]: "+want+"\n") {
				t.Errorf("daemon %v: mail log lacks %q:\n%s", viaDaemon, want, log)
			}
		}
	}
}

// countingCoord stands in for the queue manager and counts the actions
// that went through the daemon.
type countingCoord struct{ n atomic.Int64 }

func (c *countingCoord) Acquire(context.Context, string) (func(), error) {
	c.n.Add(1)
	return func() {}, nil
}

func (c *countingCoord) Retry(string) {}
