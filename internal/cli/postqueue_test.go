package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

// pqFixture writes a small queue: UTF-8 and 8-bit addresses, the null
// sender, a forced expiry, a held message, a long ID, a defer log.
func pqFixture(t *testing.T, root string) {
	t.Helper()
	sp := spool.New(root)
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 15, 8, 30, 0, time.UTC)
	mk := func(queue, id, sender string, mode os.FileMode, reason string, rcpts ...string) {
		f, err := sp.NewFile(spool.Incoming, at)
		if err != nil {
			t.Fatal(err)
		}
		env := &spool.NewEnvelope{Arrival: at, Sender: sender}
		for _, r := range rcpts {
			env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r})
		}
		f.WriteEnvelope(env)
		f.WriteLine([]byte("Subject: " + id))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		dst := sp.Path(queue, id)
		os.MkdirAll(filepath.Dir(dst), 0o700)
		if err := os.Rename(f.Path, dst); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dst, mode)
		if reason != "" {
			sp.AppendLog(spool.Defer, id, spool.LogEntry{Recipient: rcpts[0], Status: "4.4.1", Action: "delayed", Reason: reason})
		}
	}
	mk(spool.Deferred, "54AB4BA048", "jürgen@bücher.example", 0o700, "connect to 127.0.0.1[127.0.0.1]:9: Connection refused", "bob@example.com", "zoë@example.com")
	mk(spool.Deferred, "B0081BA066", "", 0o710, "450 Postfächer voll", "caf\xe9@example.com")
	mk(spool.Hold, "A3FACBA05F", "john doe@example.com", 0o700, "", "big@example.com")
	mk(spool.Deferred, "4jcrGj5fZ5z5jwm", "longid@facts.test", 0o700, "", "someone@example.com")
}

func runTool(name string, args []string, getenv func(string) string) (stdout, stderr string, status int) {
	var out, errb bytes.Buffer
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	env := &Env{Name: name, Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: getenv}
	c := lookup(name)
	status = c.Run(env)
	return out.String(), errb.String(), status
}

// pqConfig writes a main.cf naming root, with extra lines.
func pqConfig(t *testing.T, root string, lines ...string) string {
	t.Helper()
	dir := t.TempDir()
	cf := "queue_directory = " + root + "\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const pqUsage = "postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n"

// postqueueUsageCases are checked against Postfix's postqueue 3.7 by
// TestPostqueueUsageAgainstPostfix; CONF stands for a valid config dir.
var postqueueUsageCases = []struct {
	args   string
	stderr string
}{
	{"", pqUsage},
	{"-c CONF", pqUsage},
	{"-c CONF -x", "postqueue: invalid option -- 'x'\n" + pqUsage},
	{"-c CONF -p -j", pqUsage},
	{"-c CONF -j -p", pqUsage},
	{"-c CONF -p -p", pqUsage},
	{"-c CONF -i A -s b", pqUsage},
	{"-c CONF -p extra", pqUsage},
	{"-c CONF -- -p", pqUsage},
	{"-c CONF -c", "postqueue: option requires an argument -- 'c'\n" + pqUsage},
	{"-c CONF -i", "postqueue: option requires an argument -- 'i'\n" + pqUsage},
	{"-c CONF -s", "postqueue: option requires an argument -- 's'\n" + pqUsage},
	{"-c /nonexistent -p", "postqueue: fatal: open /nonexistent/main.cf: No such file or directory\n"},
	{"-c /nonexistent -p -p", pqUsage},
	{"-c /nonexistent -p x", pqUsage},
	{"-x -c /nonexistent", "postqueue: invalid option -- 'x'\n" + pqUsage},
}

func TestPostqueueUsage(t *testing.T) {
	conf := pqConfig(t, filepath.Join(t.TempDir(), "spool"))
	for _, tt := range postqueueUsageCases {
		args := strings.Fields(strings.ReplaceAll(tt.args, "CONF", conf))
		stdout, stderr, status := runTool("postqueue", args, nil)
		if status != 69 || stdout != "" || stderr != tt.stderr {
			t.Errorf("postqueue %s: status %d, stdout %q, stderr %q; want 69, %q", tt.args, status, stdout, stderr, tt.stderr)
		}
	}
}

// TestPostqueueUsageAgainstPostfix runs the usage cases through the real
// postqueue: same exit status, same stderr.
func TestPostqueueUsageAgainstPostfix(t *testing.T) {
	oracle.Require(t)
	root := oracle.TempDir(t, "postqueue-usage-")
	conf := oracle.PostfixConfig(t, root)
	for _, tt := range postqueueUsageCases {
		args := strings.Fields(strings.ReplaceAll(tt.args, "CONF", conf))
		res := oracle.Run(t, conf, nil, "postqueue", args...) // MAIL_CONFIG=conf
		if res.Status != 69 || string(res.Stderr) != tt.stderr {
			t.Errorf("Postfix postqueue %s: status %d, stderr %q; the test expects 69, %q", tt.args, res.Status, res.Stderr, tt.stderr)
		}
	}
}

// TestPostqueueFlushWithoutDaemon: with no daemon on the spool, -f, -i
// and -s fail as Postfix's do when its mail system is down (the end-to-end
// tests in test/steer flush through a running daemon and compare these
// messages with Postfix's own).
func TestPostqueueFlushWithoutDaemon(t *testing.T) {
	conf := pqConfig(t, filepath.Join(t.TempDir(), "spool"))
	down := "postqueue: fatal: Cannot flush mail queue - mail system is down\n"
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"-f"}, "postqueue: warning: unable to look up public/qmgr: No such file or directory\n" + down},
		{[]string{"-v", "-f"}, "postqueue: warning: unable to look up public/qmgr: No such file or directory\n" + down},
		{[]string{"-i", "54AB4BA048"}, "postqueue: warning: connect to public/flush: No such file or directory\n" + down},
		{[]string{"-s", "example.com"}, "postqueue: warning: connect to public/flush: No such file or directory\n" + down},
		{[]string{"-i", "bad/id"}, "postqueue: fatal: Cannot flush queue ID - invalid name: \"bad/id\"\n"},
	}
	for _, c := range cases {
		stdout, stderr, status := runTool("postqueue", append([]string{"-c", conf}, c.args...), nil)
		if status != 69 || stdout != "" || stderr != c.stderr {
			t.Errorf("postqueue %v: %d %q %q", c.args, status, stdout, stderr)
		}
	}
}

// TestListingCommands: postqueue -p, mailq and sluice mailq print the
// same listing; -c, -C and MAIL_CONFIG find the configuration; -v is
// ignored; mailq takes no recipients.
func TestListingCommands(t *testing.T) {
	root := filepath.Join(t.TempDir(), "spool")
	pqFixture(t, root)
	conf := pqConfig(t, root, "compatibility_level = 3.6")
	env := func(k string) string {
		switch k {
		case "MAIL_CONFIG":
			return conf
		case "TZ":
			return "UTC"
		}
		return ""
	}
	want, stderr, status := runTool("postqueue", []string{"-v", "-p"}, env)
	if status != 0 || stderr != "" || !strings.HasPrefix(want, "-Queue ID-") || !strings.HasSuffix(want, "-- 0 Kbytes in 4 Requests.\n") {
		t.Fatalf("postqueue -p: %d %q\n%s", status, stderr, want)
	}
	for _, args := range [][]string{{"-C", conf}, {"-v", "-C" + conf}, {"-c", conf}, {"-oi", "-v"}, {}} {
		got, stderr, status := runTool("mailq", args, env)
		if got != want || stderr != "" || status != 0 {
			t.Errorf("mailq %v: %d %q\n%s", args, status, stderr, got)
		}
	}
	var out, errb bytes.Buffer
	t.Setenv("MAIL_CONFIG", conf)
	t.Setenv("TZ", "UTC")
	if st := Main([]string{"sluice", "mailq"}, strings.NewReader(""), &out, &errb); st != 0 || out.String() != want {
		t.Errorf("sluice mailq: %d %q\n%s", st, errb.String(), out.String())
	}
	if _, stderr, status := runTool("mailq", []string{"-C", conf, "bob@example.com"}, env); status != 75 ||
		stderr != "mailq: fatal: display queue mode requires no recipient\n" {
		t.Errorf("mailq with a recipient: %d %q", status, stderr)
	}
	if _, stderr, status := runTool("mailq", []string{"-C", "/nonexistent"}, env); status != 75 ||
		stderr != "mailq: fatal: open /nonexistent/main.cf: No such file or directory\n" {
		t.Errorf("mailq with a missing config: %d %q", status, stderr)
	}
}

// TestListingAgainstPostfix lists one spool with the real postqueue and
// mailq and with ours, under the configurations that change a listing.
func TestListingAgainstPostfix(t *testing.T) {
	oracle.Require(t)
	root := oracle.TempDir(t, "postqueue-spool-")
	pqFixture(t, root)
	t.Setenv("TZ", "Europe/Berlin")
	for _, extra := range [][]string{
		nil, // compatibility_level = 3.6: UTF-8 kept
		{"compatibility_level = 0"},
		{"smtputf8_enable = no"},
		{"compatibility_level = 0", "smtputf8_enable = yes"},
		{"enable_long_queue_ids = yes"},
		{"empty_address_recipient = postmaster", "duplicate_filter_limit = 0"},
	} {
		conf := oracle.PostfixConfig(t, root, extra...)
		for _, c := range []struct{ tool, name string }{{"postqueue", "-p"}, {"postqueue", "-j"}, {"mailq", ""}} {
			args := []string{"-c", conf, c.name}
			if c.tool == "mailq" {
				args = []string{"-C", conf}
			}
			res := oracle.Run(t, conf, nil, c.tool, args...)
			got, stderr, status := runTool(c.tool, args, os.Getenv)
			if status != res.Status || stderr != "" {
				t.Errorf("%v %s %v: status %d (Postfix %d), stderr %q", extra, c.tool, args, status, res.Status, stderr)
			}
			if d := oracle.Diff(string(res.Stdout), got); d != "" {
				t.Errorf("%v %s %v:\n%s", extra, c.tool, args, d)
			}
		}
	}
}

// TestQueueHelp keeps the manuals in step with the options.
func TestQueueHelp(t *testing.T) {
	out, _, status := runTool("postqueue", []string{"--help"}, nil)
	if status != 0 || !strings.HasPrefix(out, "usage: postqueue") {
		t.Fatalf("postqueue --help: %d\n%s", status, out)
	}
	for _, c := range strings.ReplaceAll(postqueueOptions, ":", "") {
		if !strings.Contains(out, "  -"+string(c)+" ") {
			t.Errorf("postqueue --help does not document -%c", c)
		}
	}
	out, _, status = runTool("mailq", []string{"--help"}, nil)
	if status != 0 || !strings.HasPrefix(out, "usage: mailq") {
		t.Fatalf("mailq --help: %d\n%s", status, out)
	}
	for _, o := range []string{"-C dir", "-c dir", "-v"} {
		if !strings.Contains(out, o) {
			t.Errorf("mailq --help does not document %s", o)
		}
	}
}
