package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/spool"
)

// injectEnv makes a configuration directory whose spool is a fresh
// temporary directory, with extra main.cf lines.
func injectEnv(t *testing.T, extra ...string) (cfgDir string, sp *spool.Spool) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "spool")
	mainCF := "queue_directory = " + root + "\n" + strings.Join(extra, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	sp = spool.New(root)
	for _, l := range extra {
		if strings.HasPrefix(l, "enable_long_queue_ids") && strings.HasSuffix(l, "yes") {
			sp.LongIDs = true
		}
	}
	return dir, sp
}

// runInjectAt runs inject in-process with a fixed clock and returns the
// queue IDs it printed.
func runInjectAt(t *testing.T, now time.Time, stdin string, args ...string) (ids []string, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Name: "inject", Args: args, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	status = injectMain(env, func() time.Time { return now })
	return strings.Fields(out.String()), errb.String(), status
}

// The reference sample 54AB4BA048 was written by Postfix's cleanup from
// sendmail input; inject writes cleanup's record order, so the same
// envelope and content give the same bytes, and the same deferral gives
// the same defer log.
func TestInjectMatchesPostfixQueueFile(t *testing.T) {
	want, err := os.ReadFile("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	wantLog, err := os.ReadFile("testdata/defer-log-54AB4BA048.raw")
	if err != nil {
		t.Fatal(err)
	}
	cfg, sp := injectEnv(t)
	msg := "Received: by facts.test (Postfix, from userid 0)\n" +
		"\tid 54AB4BA048; Sun, 29 Nov 2026 15:08:30 +0000 (UTC)\n" +
		"Subject: test one\nFrom: Alice <alice@facts.test>\nTo: bob@example.com\n" +
		"Message-Id: <20261129150830.54AB4BA048@facts.test>\n" +
		"Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)\n\nHello Bob.\nSecond line.\n"
	now := time.Unix(1795964910, 346804000)
	ids, stderr, st := runInjectAt(t, now, msg, "-c", cfg, "-f", "alice@facts.test", "-F", "root",
		"-T", "1795964910.322038", "-s", "4.4.1", "-r", "connect to 127.0.0.1[127.0.0.1]:9: Connection refused", "bob@example.com")
	if st != 0 || len(ids) != 1 {
		t.Fatalf("status %d, ids %q, stderr %s", st, ids, stderr)
	}
	id := ids[0]
	path := sp.Path(spool.Deferred, id)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("queue file differs from Postfix's:\n got %q\nwant %q", got, want)
	}
	gotLog, err := os.ReadFile(sp.Path(spool.Defer, id))
	if err != nil || !bytes.Equal(gotLog, wantLog) {
		t.Errorf("defer log differs (%v):\n got %q\nwant %q", err, gotLog, wantLog)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	// Age 0 clamps to minimal_backoff_time (300s).
	if wantM := now.Add(300 * time.Second); !fi.ModTime().Equal(wantM) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), wantM)
	}
	if filepath.Base(filepath.Dir(path)) != id[:1] {
		t.Errorf("not hashed: %s", path)
	}
}

// The reference maildrop sample was written by postdrop for
// sendmail -F 'Dora Example' -f dora@facts.test drop@example.com.
func TestInjectMaildropMatchesPostdrop(t *testing.T) {
	want, err := os.ReadFile("testdata/maildrop-4jcrJR2PCmz5jtg.bin")
	if err != nil {
		t.Fatal(err)
	}
	cfg, sp := injectEnv(t, "enable_long_queue_ids = yes")
	msg := "Subject: maildrop sample\r\nFrom: Dora <dora@facts.test>\r\n\r\nqueued while down" // CRLF, no final newline
	ids, stderr, st := runInjectAt(t, time.Unix(1795965207, 400000000), msg, "-c", cfg, "-q", "maildrop",
		"-F", "Dora Example", "-f", "dora@facts.test", "-T", "1795965207.338547", "drop@example.com")
	if st != 0 || len(ids) != 1 {
		t.Fatalf("status %d, ids %q, stderr %s", st, ids, stderr)
	}
	if !spool.IsLongID(ids[0]) {
		t.Errorf("ID %s is not a long ID", ids[0])
	}
	path := sp.Path(spool.Maildrop, ids[0])
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("maildrop file differs from postdrop's:\n got %q\nwant %q", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o744 {
		t.Errorf("maildrop file mode: %v %v", fi.Mode(), err)
	}
}

func TestInjectStates(t *testing.T) {
	now := time.Unix(1795964910, 0)
	tests := []struct {
		name      string
		args      []string
		queue     string
		mode      os.FileMode
		mtime     time.Time // zero: not checked
		arrival   int64
		sender    string
		done      []string
		logRcpts  []string
		logReason []string
	}{
		{name: "incoming by default", args: []string{"-f", "a@x.test", "r@y.test"},
			queue: spool.Incoming, mode: 0o700, arrival: now.Unix(), sender: "a@x.test"},
		{name: "null sender, hold, forced expiry, age",
			args:  []string{"-f", "<>", "-q", "hold", "-e", "-T", "-2h", "r@y.test"},
			queue: spool.Hold, mode: 0o710, arrival: now.Add(-2 * time.Hour).Unix(), sender: ""},
		{name: "per-recipient reasons and a done recipient",
			args: []string{"-f", "a@x.test", "-r", "generic", "-R", "v+b=c@y.test=450 <v+b=c@y.test>: long reason with = signs",
				"-d", "gone@discard.test", "-T", "-30m", "v+b=c@y.test", "gone@discard.test", "plain@z.test"},
			queue: spool.Deferred, mode: 0o700, mtime: now.Add(30 * time.Minute), arrival: now.Add(-30 * time.Minute).Unix(), sender: "a@x.test",
			done: []string{"gone@discard.test"}, logRcpts: []string{"v+b=c@y.test", "plain@z.test"},
			logReason: []string{"450 <v+b=c@y.test>: long reason with = signs", "generic"}},
		{name: "old message clamps to maximal_backoff_time",
			args:  []string{"-f", "a@x.test", "-R", "r@y.test=slow", "-T", "1000", "r@y.test", "s@y.test"},
			queue: spool.Deferred, mode: 0o700, mtime: now.Add(4000 * time.Second), arrival: 1000, sender: "a@x.test",
			logRcpts: []string{"r@y.test"}, logReason: []string{"slow"}},
		{name: "active with a reason", args: []string{"-f", "a@x.test", "-q", "active", "-r", "why", "r@y.test"},
			queue: spool.Active, mode: 0o700, arrival: now.Unix(), sender: "a@x.test",
			logRcpts: []string{"r@y.test"}, logReason: []string{"why"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, sp := injectEnv(t)
			ids, stderr, st := runInjectAt(t, now, "Subject: s\n\nbody\n", append([]string{"-c", cfg}, tc.args...)...)
			if st != 0 || len(ids) != 1 {
				t.Fatalf("status %d, ids %q, stderr %s", st, ids, stderr)
			}
			id := ids[0]
			if q, err := sp.Locate(id); err != nil || q != tc.queue {
				t.Fatalf("queue %q (%v), want %s", q, err, tc.queue)
			}
			env, fi, err := spool.ReadFile(sp.Path(tc.queue, id), spool.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.mode)
			}
			if !tc.mtime.IsZero() && !fi.ModTime().Equal(tc.mtime) {
				t.Errorf("mtime %v, want %v", fi.ModTime(), tc.mtime)
			}
			if env.Arrival.Unix() != tc.arrival || env.CreateTime != tc.arrival || env.Sender != tc.sender {
				t.Errorf("arrival %d create %d sender %q", env.Arrival.Unix(), env.CreateTime, env.Sender)
			}
			var done []string
			offsets := map[string]int64{}
			for _, r := range env.Recipients {
				if r.Done {
					done = append(done, r.Address)
				}
				offsets[r.Address] = r.Offset
			}
			if strings.Join(done, ",") != strings.Join(tc.done, ",") {
				t.Errorf("done %q, want %q", done, tc.done)
			}
			log, err := sp.ReadLog(spool.Defer, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != len(tc.logRcpts) {
				t.Fatalf("defer log has %d entries, want %d: %+v", len(log), len(tc.logRcpts), log)
			}
			for i, e := range log {
				if e.Recipient != tc.logRcpts[i] || e.Reason != tc.logReason[i] || e.Offset != offsets[e.Recipient] ||
					e.Status != "4.0.0" || e.Action != "delayed" || e.DSNOrigRcpt != "rfc822;"+e.Recipient {
					t.Errorf("entry %d = %+v", i, e)
				}
			}
		})
	}
}

func TestInjectCopiesAndIDs(t *testing.T) {
	cfg, sp := injectEnv(t)
	ids, stderr, st := runInjectAt(t, time.Now(), "x\n", "-c", cfg, "-n", "50", "-f", "a@x.test", "-r", "r", "b@y.test")
	if st != 0 || len(ids) != 50 {
		t.Fatalf("status %d, %d ids, stderr %s", st, len(ids), stderr)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("duplicate ID %s", id)
		}
		seen[id] = true
		if _, err := os.Stat(sp.Path(spool.Deferred, id)); err != nil {
			t.Error(err)
		}
	}
	ents, err := sp.List(spool.Deferred)
	if err != nil || len(ents) != 50 {
		t.Errorf("deferred holds %d files (%v)", len(ents), err)
	}
	for _, q := range []string{spool.Incoming, spool.Hold} {
		if ents, _ := sp.List(q); len(ents) != 0 {
			t.Errorf("%s holds %d files", q, len(ents))
		}
	}
}

func TestInjectUsageErrors(t *testing.T) {
	cfg, _ := injectEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"r@y"}, "no sender"},
		{[]string{"-f", "a@x"}, "no recipients"},
		{[]string{"-f", "a@x", "-R", "noreason", "r@y"}, "recipient=reason"},
		{[]string{"-f", "a@x", "-R", "r@y=", "r@y"}, "recipient=reason"},
		{[]string{"-f", "a@x", "-R", "other@y=why", "r@y"}, "one of the recipients"},
		{[]string{"-f", "a@x", "-d", "other@y", "r@y"}, "not a recipient"},
		{[]string{"-f", "a@x", "-s", "5.0.0", "-r", "x", "r@y"}, "4.X.Y"},
		{[]string{"-f", "a@x", "-q", "maildrop", "-r", "x", "r@y"}, "maildrop file takes none"},
		{[]string{"-f", "a@x", "-q", "corrupt", "r@y"}, "-q wants"},
		{[]string{"-f", "a@x", "-T", "yesterday", "r@y"}, "-T wants"},
		{[]string{"-f", "a@x", "-n", "0", "r@y"}, "-n wants"},
		{[]string{"-f", "a@x", "-x", "r@y"}, "invalid option -- 'x'"},
	}
	for _, tc := range tests {
		ids, stderr, st := runInjectAt(t, time.Now(), "x\n", append([]string{"-c", cfg}, tc.args...)...)
		if st != 64 || len(ids) != 0 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "usage: sluice inject") {
			t.Errorf("%q: status %d, ids %q, stderr %q; want 64 and %q", tc.args, st, ids, stderr, tc.want)
		}
	}
}

// The help text is inject's manual: it must name every option the parser
// takes.
func TestInjectHelpNamesEveryOption(t *testing.T) {
	for i := 0; i < len(injectSpec); i++ {
		c := injectSpec[i]
		if c == ':' {
			continue
		}
		if !strings.Contains(injectHelp, "\n  -"+string(c)+" ") {
			t.Errorf("help does not document -%c", c)
		}
	}
	var out bytes.Buffer
	st := Main([]string{"sluice", "inject", "-h"}, strings.NewReader(""), &out, &out)
	if st != 0 || out.String() != injectHelp {
		t.Errorf("sluice inject -h: status %d, output %q", st, out.String())
	}
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in, want string
		n        int
	}{
		{"", "", 0},
		{"a\n", "a", 1},
		{"a\r\nb\r\n", "a|b", 2},
		{"a\n\nb", "a||b", 3},
		{"a\r\r\n", "a\r", 1},
		{"\n", "", 1},
		{"\n\n", "|", 2},
	}
	for _, tc := range tests {
		var parts []string
		for _, l := range splitLines([]byte(tc.in)) {
			parts = append(parts, string(l))
		}
		got := strings.Join(parts, "|")
		if got != tc.want || len(parts) != tc.n {
			t.Errorf("splitLines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestInjectStaging: inject writes a file where no queue manager takes
// mail from, whatever hash_queue_names says (with hold hashed it used to
// stage in incoming/, where a running qmgr could take a file before its
// deferral and done marks were in place), and the file still ends where
// it was asked to go.
func TestInjectStaging(t *testing.T) {
	for _, hashed := range []string{"deferred, defer", "deferred, defer, hold", "deferred, defer, hold, corrupt, incoming"} {
		sp := spool.New(t.TempDir())
		sp.SetHashQueues(hashed)
		q, err := stagingQueue(sp)
		if strings.Contains(hashed, "corrupt") {
			if err == nil {
				t.Errorf("%s: staging in %s, want an error", hashed, q)
			}
			continue
		}
		if err != nil || q == spool.Incoming || q == spool.Deferred || q == spool.Active || q == spool.Maildrop || sp.Hashed(q) {
			t.Errorf("%s: staging in %q (%v)", hashed, q, err)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "spool")+"\nhash_queue_names = deferred, defer, hold\n"), 0o644)
	for _, queue := range []string{"hold", "deferred", "incoming"} {
		id := mustInject(t, conf, "-q", queue, "-f", "a@b.test", "-r", "later", "x@y.test")
		sp := spool.New(filepath.Join(dir, "spool"))
		sp.SetHashQueues("deferred, defer, hold")
		if got, err := sp.Locate(id, spool.Incoming, spool.Deferred, spool.Hold, spool.Corrupt); err != nil || got != queue {
			t.Errorf("inject -q %s: in %q (%v)", queue, got, err)
		}
		if _, err := os.Stat(sp.Path(queue, id)); err != nil {
			t.Errorf("inject -q %s: %v", queue, err)
		}
	}
}
