package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testEnv is an Agent over a temporary spool, homes and alias file,
// with an injected user table. Run as an ordinary user, every test user
// is that user (the only identity there is); run as root, the users get
// uids of their own (no passwd entries needed) and the files must come
// out owned by them.
type testEnv struct {
	t       *testing.T
	dir     string
	spool   string
	aliases string
	users   StaticUsers
	a       *Agent
	cfg     Config
	warns   []string
	mu      sync.Mutex
	fwd     []forwarded
	now     time.Time
}

type forwarded struct {
	sender string
	rcpts  []string
	text   string
}

const (
	uidAlice  = 54321
	uidBob    = 54322
	uidNobody = 65534
)

func newTestEnv(t *testing.T, aliases string, mut func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{t: t, dir: dir, spool: filepath.Join(dir, "mail"), aliases: filepath.Join(dir, "aliases"),
		now: time.Date(2024, 3, 5, 7, 8, 9, 0, time.Local)}
	root := os.Geteuid() == 0
	uid := func(u uint32) uint32 {
		if root {
			return u
		}
		return uint32(os.Geteuid())
	}
	gid := func(g uint32) uint32 {
		if root {
			return g
		}
		return uint32(os.Getegid())
	}
	if root {
		// Other identities must be able to reach the test's files.
		for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.users = StaticUsers{}
	for _, u := range []struct {
		name string
		id   uint32
	}{{"alice", uidAlice}, {"bob", uidBob}, {"nobody", uidNobody}, {"root", 0}} {
		home := filepath.Join(dir, "home", u.name)
		if err := os.MkdirAll(home, 0o755); err != nil {
			t.Fatal(err)
		}
		usr := &User{Name: u.name, UID: uid(u.id), GID: gid(u.id), Home: home, Shell: "/bin/sh"}
		if u.name == "root" {
			usr.UID, usr.GID = uint32(os.Geteuid()), uint32(os.Getegid())
		}
		usr.Groups = []uint32{usr.GID}
		if err := os.Chown(home, int(usr.UID), int(usr.GID)); err != nil {
			t.Fatal(err)
		}
		e.users[u.name] = usr
	}
	if !root {
		// Not root: there is no nobody to be; the alias file's commands
		// run as default_privs, which must then be ourselves.
		e.users["nobody"].UID = uint32(os.Geteuid())
	}
	if err := os.MkdirAll(e.spool, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.aliases, []byte(aliases), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		MyHostname: "host.test", MyOrigin: "host.test", MyDestination: []string{"host.test", "localhost"},
		AliasMaps: []string{e.aliases}, LocalRecipientMaps: []string{"passwd", e.aliases},
		SpoolDir: e.spool, ForwardPath: []string{"$home/.forward${recipient_delimiter}${extension}", "$home/.forward"},
		CommandsFrom: set([]string{"alias", "forward"}), FilesFrom: set([]string{"alias", "forward"}),
		DefaultPrivs: "nobody", DeliveredTo: set([]string{"command", "file", "forward"}),
		Lock:             Locking{Dotlock: true, Fcntl: true, Attempts: 3, Delay: time.Second, Stale: 500 * time.Second},
		MailboxSizeLimit: 51200000, CommandDir: "/",
		Users: e.users, Now: func() time.Time { return e.now },
		Sleep: func(time.Duration) {},
		Warn: func(f string, a ...any) {
			e.mu.Lock()
			e.warns = append(e.warns, fmt.Sprintf(f, a...))
			e.mu.Unlock()
		},
		Forward: func(_ context.Context, sender string, rcpts []string, r io.Reader) (string, error) {
			b, err := io.ReadAll(r)
			if err != nil {
				return "", err
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			e.fwd = append(e.fwd, forwarded{sender, rcpts, string(b)})
			return fmt.Sprintf("FWD%d", len(e.fwd)), nil
		},
	}
	if mut != nil {
		mut(&e.cfg)
	}
	a, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	return e
}

const testMessage = "Received: by host.test\nSubject: test one\nFrom: Carol <carol@remote.test>\n\nHello.\nFrom the start of a line.\n>From already quoted.\nlast line without newline"

func (e *testEnv) deliver(sender, text string, rcpts ...string) []Result {
	e.t.Helper()
	m := &Message{QueueID: "4ABC123", Sender: sender, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(text)), nil
	}}
	for _, r := range rcpts {
		orig := ""
		if i := strings.IndexByte(r, '='); i > 0 { // "orig=addr"
			orig, r = r[:i], r[i+1:]
		}
		m.Recipients = append(m.Recipients, Recipient{Address: r, Orig: orig})
	}
	return e.a.Deliver(context.Background(), m)
}

func (e *testEnv) mbox(user string) string { return filepath.Join(e.spool, user) }

// pyMbox reads an mbox with Python's mailbox module.
type pyMessage struct {
	From, Subject, ReturnPath, DeliveredTo, OriginalTo, Body string
}

func readMboxPython(t *testing.T, path string) []pyMessage {
	t.Helper()
	const script = `
import json, mailbox, sys
out = []
for m in mailbox.mbox(sys.argv[1], create=False):
    out.append({"From": m.get_from(), "Subject": m["subject"] or "", "ReturnPath": m["return-path"] or "",
                "DeliveredTo": m["delivered-to"] or "", "OriginalTo": m["x-original-to"] or "", "Body": m.get_payload()})
print(json.dumps(out))
`
	return runPython(t, script, path)
}

func readMaildirPython(t *testing.T, path string) []pyMessage {
	t.Helper()
	const script = `
import json, mailbox, sys
md = mailbox.Maildir(sys.argv[1], create=False)
out = []
for key in sorted(md.keys()):
    m = md[key]
    out.append({"From": m.get_subdir(), "Subject": m["subject"] or "", "ReturnPath": m["return-path"] or "",
                "DeliveredTo": m["delivered-to"] or "", "OriginalTo": m["x-original-to"] or "", "Body": m.get_payload()})
print(json.dumps(out))
`
	return runPython(t, script, path)
}

func runPython(t *testing.T, script, arg string) []pyMessage {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is not installed (scripts/test.sh installs it)")
	}
	out, err := exec.Command(py, "-c", script, arg).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	var msgs []pyMessage
	if err := json.Unmarshal(out, &msgs); err != nil {
		t.Fatalf("python3 output %q: %v", out, err)
	}
	return msgs
}

func wantSent(t *testing.T, res []Result) {
	t.Helper()
	for i, r := range res {
		if r.Status != Sent {
			t.Fatalf("recipient %d: %v %s %s (finals %+v)", i, r.Status, r.DSN, r.Reason, r.Finals)
		}
	}
}

func TestMboxDeliveryReadByPython(t *testing.T) {
	e := newTestEnv(t, "", nil)
	res := e.deliver("carol@remote.test", testMessage, "alice@host.test")
	wantSent(t, res)
	if got := res[0].Finals; len(got) != 1 || got[0].To != "alice@host.test" || got[0].Text != "delivered to mailbox" || got[0].DSN != "2.0.0" {
		t.Errorf("finals = %+v", got)
	}
	res = e.deliver("", "Subject: bounce\n\nFrom a daemon\n", "postmaster=alice@host.test")
	wantSent(t, res)

	raw, err := os.ReadFile(e.mbox("alice"))
	if err != nil {
		t.Fatal(err)
	}
	wantHead := "From carol@remote.test  Tue Mar  5 07:08:09 2024\nReturn-Path: <carol@remote.test>\nX-Original-To: alice@host.test\nDelivered-To: alice@host.test\nReceived: by host.test\n"
	if !strings.HasPrefix(string(raw), wantHead) {
		t.Errorf("mbox begins:\n%s\nwant:\n%s", raw, wantHead)
	}
	if !strings.Contains(string(raw), "\n>From the start of a line.\n>From already quoted.\nlast line without newline\n\nFrom MAILER-DAEMON  Tue Mar  5 07:08:09 2024\nReturn-Path: <>\nX-Original-To: postmaster\n") {
		t.Errorf("mbox quoting, separation or second message wrong:\n%s", raw)
	}
	if !strings.HasSuffix(string(raw), "\n>From a daemon\n\n") {
		t.Errorf("mbox must end with the message and an empty line:\n%q", raw)
	}
	fi, err := os.Stat(e.mbox("alice"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || st.Uid != e.users["alice"].UID || st.Gid != e.users["alice"].GID {
		t.Errorf("mailbox mode %v owner %d:%d, want 0600 %d:%d", fi.Mode().Perm(), st.Uid, st.Gid, e.users["alice"].UID, e.users["alice"].GID)
	}
	if _, err := os.Stat(e.mbox("alice") + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}

	msgs := readMboxPython(t, e.mbox("alice"))
	if len(msgs) != 2 {
		t.Fatalf("python sees %d messages: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if m.From != "carol@remote.test  Tue Mar  5 07:08:09 2024" || m.Subject != "test one" || m.ReturnPath != "<carol@remote.test>" ||
		m.DeliveredTo != "alice@host.test" || m.OriginalTo != "alice@host.test" {
		t.Errorf("first message: %+v", m)
	}
	// Python's mbox drops the empty line that separates messages.
	if m.Body != "Hello.\n>From the start of a line.\n>From already quoted.\nlast line without newline\n" {
		t.Errorf("first body %q", m.Body)
	}
	if msgs[1].From != "MAILER-DAEMON  Tue Mar  5 07:08:09 2024" || msgs[1].Subject != "bounce" || msgs[1].ReturnPath != "<>" || msgs[1].OriginalTo != "postmaster" {
		t.Errorf("second message: %+v", msgs[1])
	}
}

func TestMboxReadByMailx(t *testing.T) {
	mailx, err := exec.LookPath("bsd-mailx")
	if err != nil {
		t.Fatal("bsd-mailx is not installed (scripts/test.sh installs it: apt-get install bsd-mailx)")
	}
	e := newTestEnv(t, "", nil)
	wantSent(t, e.deliver("carol@remote.test", testMessage, "alice@host.test"))
	wantSent(t, e.deliver("dave@remote.test", "Subject: second one\nFrom: dave@remote.test\n\nFrom me, twice.\n", "alice@host.test"))
	// The header summary (h) and message 2 (p 2), with the commands on
	// standard input, as a user at a terminal would type them.
	cmd := exec.Command(mailx, "-N", "-f", e.mbox("alice"))
	cmd.Stdin = strings.NewReader("h\np 2\nx\n")
	cmd.Env = append(os.Environ(), "PAGER=cat", "MBOX="+filepath.Join(e.dir, "mbox-saved"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailx: %v\n%s", err, out)
	}
	var summary []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "test one") || strings.Contains(l, "second one") && !strings.HasPrefix(l, "Subject:") {
			summary = append(summary, l)
		}
	}
	if len(summary) != 2 || !strings.Contains(summary[0], "carol@remote.test") || !strings.Contains(summary[1], "dave@remote.test") ||
		!strings.Contains(summary[0], " 1 ") || !strings.Contains(summary[1], " 2 ") {
		t.Errorf("mailx header summary:\n%s", out)
	}
	if !strings.Contains(string(out), "Subject: second one") || !strings.Contains(string(out), ">From me, twice.") {
		t.Errorf("mailx p 2:\n%s", out)
	}
}

func TestMaildirReadByPython(t *testing.T) {
	e := newTestEnv(t, "", func(c *Config) { c.HomeMailbox = "Maildir/" })
	res := e.deliver("carol@remote.test", testMessage, "alice@host.test", "bob@host.test")
	wantSent(t, res)
	if res[0].Finals[0].Text != "delivered to maildir" {
		t.Errorf("finals %+v", res[0].Finals)
	}
	wantSent(t, e.deliver("carol@remote.test", "Subject: two\n\nbody two\n", "alice@host.test"))
	md := filepath.Join(e.users["alice"].Home, "Maildir")
	msgs := readMaildirPython(t, md)
	if len(msgs) != 2 {
		t.Fatalf("python sees %d messages", len(msgs))
	}
	subjects := msgs[0].Subject + "," + msgs[1].Subject
	if subjects != "test one,two" && subjects != "two,test one" {
		t.Errorf("subjects %q", subjects)
	}
	for _, m := range msgs {
		if m.From != "new" || m.ReturnPath != "<carol@remote.test>" || m.DeliveredTo != "alice@host.test" {
			t.Errorf("maildir message %+v", m)
		}
		if m.Subject == "test one" && m.Body != "Hello.\nFrom the start of a line.\n>From already quoted.\nlast line without newline\n" {
			t.Errorf("maildir body is not verbatim: %q", m.Body)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(md, "tmp"))
	if len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	news, _ := os.ReadDir(filepath.Join(md, "new"))
	for _, n := range news {
		fi, _ := n.Info()
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != e.users["alice"].UID || !strings.HasSuffix(n.Name(), ".host.test") {
			t.Errorf("maildir file %s owned by %d", n.Name(), st.Uid)
		}
	}
}

func TestAliasesExpand(t *testing.T) {
	aliases := `postmaster: root
root: alice
team: alice, bob, friend@remote.test, other@elsewhere.test
self: alice
alice+x: bob
owner-team: alice
loop1: loop2
loop2: loop1
selfish: selfish, friend@remote.test
`
	e := newTestEnv(t, aliases, func(c *Config) { c.RecipientDelimiter = "+" })
	e.users["selfish"] = e.users["bob"]

	// postmaster -> root -> alice: one mailbox delivery, logged for root's target.
	res := e.deliver("cron@host.test", "Subject: cron\n\nout\n", "postmaster@host.test")
	wantSent(t, res)
	if f := res[0].Finals; len(f) != 1 || f[0].To != "alice@host.test" || f[0].Text != "delivered to mailbox" {
		t.Errorf("postmaster finals %+v", f)
	}
	msgs := readMboxPython(t, e.mbox("alice"))
	if len(msgs) != 1 || msgs[0].DeliveredTo != "postmaster@host.test" || msgs[0].OriginalTo != "postmaster@host.test" {
		t.Errorf("aliased mail: %+v", msgs)
	}

	// A list: local members delivered, remote ones forwarded as one
	// message with the owner- sender and a Delivered-To header.
	res = e.deliver("sender@remote.test", "Subject: list\n\nhi\n", "team@host.test")
	wantSent(t, res)
	var texts []string
	for _, f := range res[0].Finals {
		texts = append(texts, f.To+" "+f.Text)
	}
	want := []string{"alice@host.test delivered to mailbox", "bob@host.test delivered to mailbox", "friend@remote.test forwarded as FWD1", "other@elsewhere.test forwarded as FWD1"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("team finals:\n%s", strings.Join(texts, "\n"))
	}
	if len(e.fwd) != 1 || e.fwd[0].sender != "owner-team@host.test" || strings.Join(e.fwd[0].rcpts, ",") != "friend@remote.test,other@elsewhere.test" ||
		!strings.HasPrefix(e.fwd[0].text, "Delivered-To: team@host.test\nSubject: list\n") {
		t.Errorf("forwarded %+v", e.fwd)
	}
	bob := readMboxPython(t, e.mbox("bob"))
	if len(bob) != 1 || bob[0].ReturnPath != "<owner-team@host.test>" {
		t.Errorf("list copy for bob: %+v", bob)
	}

	// Extensions: alice+x has its own alias; alice+y falls back to alice.
	res = e.deliver("s@remote.test", "Subject: ext\n\n.\n", "alice+x@host.test", "alice+y@host.test")
	wantSent(t, res)
	if f := res[0].Finals; len(f) != 1 || f[0].To != "bob@host.test" {
		t.Errorf("alice+x finals %+v", f)
	}
	if f := res[1].Finals; len(f) != 1 || f[0].To != "alice+y@host.test" || f[0].Text != "delivered to mailbox" {
		t.Errorf("alice+y finals %+v", f)
	}

	// Mutual recursion ends as an alias database loop (a bounce).
	res = e.deliver("s@remote.test", "Subject: loop\n\n.\n", "loop1@host.test")
	if res[0].Status != Bounced || res[0].DSN != "5.4.6" || !strings.HasPrefix(res[0].Reason, "alias database loop for loop") {
		t.Errorf("loop: %+v", res[0])
	}

	// An alias naming itself delivers to the user, plus the rest.
	res = e.deliver("s@remote.test", "Subject: selfish\n\n.\n", "selfish@host.test")
	wantSent(t, res)
	if f := res[0].Finals; len(f) != 2 || f[0].To != "selfish@host.test" || f[0].Text != "delivered to mailbox" || f[1].To != "friend@remote.test" {
		t.Errorf("selfish finals %+v", f)
	}

	// Unknown users bounce, as local(8) says it.
	res = e.deliver("s@remote.test", "Subject: x\n\n.\n", "NoSuch@host.test")
	if res[0].Status != Bounced || res[0].DSN != "5.1.1" || res[0].Reason != `unknown user: "nosuch"` {
		t.Errorf("unknown: %+v", res[0])
	}

	// A Delivered-To for the recipient already in the message: a loop.
	res = e.deliver("s@remote.test", "Delivered-To: alice@host.test\nSubject: again\n\n.\n", "alice@host.test")
	if res[0].Status != Bounced || res[0].DSN != "5.4.6" || res[0].Reason != "mail forwarding loop for alice@host.test" {
		t.Errorf("delivered-to loop: %+v", res[0])
	}
}

func TestKnownRecipient(t *testing.T) {
	e := newTestEnv(t, "postmaster: root\nlist: alice\n", func(c *Config) { c.RecipientDelimiter = "+" })
	for addr, want := range map[string]bool{
		"alice@host.test": true, "ALICE@localhost": true, "alice+tag@host.test": true, "postmaster@host.test": true,
		"list@host.test": true, "list+x@host.test": true, "nosuch@host.test": false, "nosuch@remote.test": true, "root": true, "ghost": false,
	} {
		got, err := e.a.KnownRecipient(addr)
		if err != nil || got != want {
			t.Errorf("KnownRecipient(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	e2 := newTestEnv(t, "", func(c *Config) { c.LocalRecipientMaps = nil })
	if ok, _ := e2.a.KnownRecipient("anyone@host.test"); !ok {
		t.Error("empty local_recipient_maps must know everybody")
	}
}

func TestForwardFileAndCommand(t *testing.T) {
	e := newTestEnv(t, "", func(c *Config) { c.RecipientDelimiter = "+" })
	out := filepath.Join(e.dir, "out")
	if err := os.Mkdir(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	alice := e.users["alice"]
	forward := fmt.Sprintf("# alice's forward\nalice\nfriend@remote.test\n\"|cat > %s/cmd-$EXTENSION.txt; echo $USER $RECIPIENT $SENDER >> %s/cmd-env.txt\"\n%s/archive\n",
		out, out, out)
	writeOwned(t, filepath.Join(alice.Home, ".forward"), forward, alice)
	writeOwned(t, filepath.Join(alice.Home, ".forward+lists"), "bob\n", alice)

	res := e.deliver("carol@remote.test", testMessage, "alice@host.test")
	wantSent(t, res)
	var got []string
	for _, f := range res[0].Finals {
		got = append(got, f.To+": "+f.Text)
	}
	want := []string{
		"alice@host.test: delivered to mailbox",
		"friend@remote.test: forwarded as FWD1",
		fmt.Sprintf("alice@host.test: delivered to command: cat > %s/cmd-$EXTENSION.txt; echo $USER $RECIPIENT $SENDER >> %s/cmd-env.txt", out, out),
		"alice@host.test: delivered to file: " + out + "/archive",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("finals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cmdOut, err := os.ReadFile(filepath.Join(out, "cmd-.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cmdOut), "From carol@remote.test  Tue Mar  5 07:08:09 2024\nReturn-Path: <carol@remote.test>\nX-Original-To: alice@host.test\nDelivered-To: alice@host.test\nReceived:") ||
		!strings.HasSuffix(string(cmdOut), "\nFrom the start of a line.\n>From already quoted.\nlast line without newline\n") {
		t.Errorf("command input:\n%q", cmdOut)
	}
	if env, _ := os.ReadFile(filepath.Join(out, "cmd-env.txt")); string(env) != "alice alice@host.test carol@remote.test\n" {
		t.Errorf("command environment: %q", env)
	}
	archive := readMboxPython(t, filepath.Join(out, "archive"))
	if len(archive) != 1 || archive[0].Subject != "test one" {
		t.Errorf("archive %+v", archive)
	}
	for _, p := range []string{"archive", "cmd-.txt"} {
		fi, err := os.Stat(filepath.Join(out, p))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != alice.UID {
			t.Errorf("%s owned by %d, want alice's %d", p, st.Uid, alice.UID)
		}
	}
	if mb := readMboxPython(t, e.mbox("alice")); len(mb) != 1 {
		t.Errorf("alice's own copy: %d messages", len(mb))
	}

	// .forward+lists is used for alice+lists.
	res = e.deliver("carol@remote.test", "Subject: l\n\n.\n", "alice+lists@host.test")
	wantSent(t, res)
	if f := res[0].Finals; len(f) != 1 || f[0].To != "bob@host.test" {
		t.Errorf("alice+lists finals %+v", f)
	}

	// A .forward that someone else owns is ignored (root owns nothing
	// else here when not root, so only as root).
	if os.Geteuid() == 0 {
		bob := e.users["bob"]
		writeOwned(t, filepath.Join(bob.Home, ".forward"), "friend@remote.test\n", alice)
		res = e.deliver("carol@remote.test", "Subject: b\n\n.\n", "bob@host.test")
		wantSent(t, res)
		if f := res[0].Finals; len(f) != 1 || f[0].Text != "delivered to mailbox" {
			t.Errorf("bob with alice's .forward: %+v", f)
		}
	}
}

func writeOwned(t *testing.T, path, text string, u *User) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		t.Fatal(err)
	}
}

func TestCommandExitStatus(t *testing.T) {
	aliases := `ok: "|cat > /dev/null"
tempfail: "|exit 75"
nouser: "|echo no such list; exit 67"
one: "|echo oops >&2; exit 1"
enhanced: "|echo 5.7.1 go away; exit 1"
signal: "|kill -9 $$"
slow: "|sleep 30"
inc: :include:` + "/dev/null" + `
`
	e := newTestEnv(t, aliases, func(c *Config) { c.CommandTimeLimit = 2 * time.Second })
	tests := []struct {
		rcpt   string
		status Status
		dsn    string
		reason string
	}{
		{"ok", Sent, "2.0.0", `delivered to command: cat > /dev/null`},
		{"tempfail", Deferred, "4.3.0", "temporary failure"},
		{"nouser", Bounced, "5.1.1", "user unknown. Command output: no such list"},
		{"one", Bounced, "5.3.0", `Command died with status 1: "echo oops >&2; exit 1". Command output: oops`},
		{"enhanced", Bounced, "5.7.1", "5.7.1 go away"},
		{"signal", Deferred, "4.3.0", `Command died with signal 9: "kill -9 $$"`},
		{"slow", Deferred, "4.3.0", `Command time limit exceeded: "sleep 30"`},
	}
	for _, tc := range tests {
		res := e.deliver("s@remote.test", "Subject: c\n\nbody\n", tc.rcpt+"@host.test")
		if r := res[0]; r.Status != tc.status || r.DSN != tc.dsn || r.Reason != tc.reason {
			t.Errorf("%s: %v %s %q; want %v %s %q", tc.rcpt, r.Status, r.DSN, r.Reason, tc.status, tc.dsn, tc.reason)
		}
	}
}

func TestIncludeAndRestrictions(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	aliases := "staff: :include:" + list + "\n"
	e := newTestEnv(t, aliases, nil)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(list, []byte("alice\nbob, outside@remote.test\n\"|cat >/dev/null\"\n/tmp/never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := e.deliver("s@remote.test", "Subject: inc\n\n.\n", "staff@host.test")
	if res[0].Status != Bounced {
		t.Fatalf("status %v", res[0])
	}
	var got []string
	for _, f := range res[0].Finals {
		got = append(got, fmt.Sprintf("%s %v %s", f.To, f.Status, f.Text))
	}
	want := []string{
		"alice@host.test sent delivered to mailbox",
		"bob@host.test sent delivered to mailbox",
		"outside@remote.test sent forwarded as FWD1",
		"staff@host.test bounced mail to command is restricted",
		"staff@host.test bounced mail to file is restricted",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("finals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat("/tmp/never"); err == nil {
		t.Error("a restricted file was written")
	}
	// A missing :include: file bounces.
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	res = e.deliver("s@remote.test", "Subject: inc\n\n.\n", "staff@host.test")
	if res[0].Status != Bounced || !strings.HasPrefix(res[0].Reason, "cannot open include file "+list) {
		t.Errorf("missing include: %+v", res[0])
	}
}

func TestDotlockHeldDefersOrWaits(t *testing.T) {
	e := newTestEnv(t, "", nil)
	lock := e.mbox("alice") + ".lock"
	if err := os.WriteFile(lock, nil, 0); err != nil {
		t.Fatal(err)
	}
	sleeps := 0
	e.a.cfg.Sleep = func(time.Duration) { sleeps++ }
	res := e.deliver("s@remote.test", testMessage, "alice@host.test")
	if r := res[0]; r.Status != Deferred || r.DSN != "4.2.0" ||
		r.Reason != "cannot update mailbox "+e.mbox("alice")+" for user alice. unable to create lock file "+lock+": file exists" {
		t.Errorf("held dotlock: %v %s %q", r.Status, r.DSN, r.Reason)
	}
	if sleeps != 2 {
		t.Errorf("slept %d times between 3 attempts", sleeps)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("someone else's lock was removed: %v", err)
	}
	// The holder lets go while we wait: delivered.
	e.a.cfg.Sleep = func(time.Duration) { os.Remove(lock) }
	wantSent(t, e.deliver("s@remote.test", testMessage, "alice@host.test"))
	// A stale lock (older than stale_lock_time) is removed at once.
	if err := os.WriteFile(lock, nil, 0); err != nil {
		t.Fatal(err)
	}
	old := e.now.Add(-501 * time.Second)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	e.a.cfg.Sleep = func(time.Duration) { t.Error("waited for a stale lock") }
	wantSent(t, e.deliver("s@remote.test", testMessage, "alice@host.test"))
	if len(readMboxPython(t, e.mbox("alice"))) != 2 {
		t.Error("want 2 messages")
	}
	if !strings.Contains(strings.Join(e.warns, "\n"), "removed stale lock file "+lock) {
		t.Errorf("warnings: %q", e.warns)
	}
}

func TestFcntlLockHeldDefers(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is not installed (scripts/test.sh installs it)")
	}
	e := newTestEnv(t, "", nil)
	wantSent(t, e.deliver("s@remote.test", testMessage, "alice@host.test"))
	// Another process holds a POSIX lock on the mailbox (a MUA).
	holder := exec.Command(py, "-c", "import fcntl,sys; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", e.mbox("alice"))
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if stdin != nil {
			stdin.Close()
			holder.Wait()
		}
	}()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("lock holder: %q %v", buf, err)
	}
	res := e.deliver("s@remote.test", testMessage, "alice@host.test")
	if r := res[0]; r.Status != Deferred || r.DSN != "4.2.0" || !strings.HasSuffix(r.Reason, "unable to lock for exclusive access: resource temporarily unavailable") {
		t.Errorf("held fcntl lock: %v %s %q", r.Status, r.DSN, r.Reason)
	}
	if _, err := os.Stat(e.mbox("alice") + ".lock"); !os.IsNotExist(err) {
		t.Error("dotlock not removed after the failed attempt")
	}
	// The holder lets go during the waits: delivered.
	e.a.cfg.Sleep = func(time.Duration) {
		if stdin != nil {
			stdin.Close()
			holder.Wait()
			stdin = nil
		}
	}
	wantSent(t, e.deliver("s@remote.test", testMessage, "alice@host.test"))
	if n := len(readMboxPython(t, e.mbox("alice"))); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// failingReader gives some text and then an error, as a queue file that
// turns unreadable halfway would.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestFailedWriteTruncates(t *testing.T) {
	e := newTestEnv(t, "", nil)
	wantSent(t, e.deliver("s@remote.test", testMessage, "alice@host.test"))
	before, err := os.ReadFile(e.mbox("alice"))
	if err != nil {
		t.Fatal(err)
	}
	opens := 0
	m := &Message{QueueID: "X", Sender: "s@remote.test", Recipients: []Recipient{{Address: "alice@host.test"}},
		Open: func() (io.ReadCloser, error) {
			opens++
			if opens == 1 { // the header scan
				return io.NopCloser(strings.NewReader(testMessage)), nil
			}
			return io.NopCloser(&failingReader{strings.NewReader(strings.Repeat("x", 200000))}), nil
		}}
	res := e.a.Deliver(context.Background(), m)
	if res[0].Status != Deferred || !strings.Contains(res[0].Reason, "disk on fire") {
		t.Errorf("result %+v", res[0])
	}
	after, err := os.ReadFile(e.mbox("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("mailbox changed by a failed delivery: %d bytes, was %d", len(after), len(before))
	}
}

func TestMailboxSafety(t *testing.T) {
	e := newTestEnv(t, "", func(c *Config) { c.MailboxSizeLimit = 1000 })
	// A symbolic link in place of the mailbox is not followed.
	target := filepath.Join(e.dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, e.mbox("alice")); err != nil {
		t.Fatal(err)
	}
	res := e.deliver("s@remote.test", testMessage, "alice@host.test")
	if res[0].Status == Sent || !strings.Contains(res[0].Reason, "symbolic link") {
		t.Errorf("symlink: %+v", res[0])
	}
	if b, _ := os.ReadFile(target); len(b) != 0 {
		t.Error("wrote through a symbolic link")
	}
	// Over mailbox_size_limit: bounced, file unchanged.
	res = e.deliver("s@remote.test", strings.Repeat("y", 2000), "bob@host.test")
	if res[0].Status != Bounced || res[0].DSN != "5.2.2" {
		t.Errorf("size limit: %+v", res[0])
	}
	if fi, err := os.Stat(e.mbox("bob")); err != nil || fi.Size() != 0 {
		t.Errorf("bob's mailbox after a refused message: %v %v", fi, err)
	}
}

func TestUnprivilegedDefersOtherUsers(t *testing.T) {
	e := newTestEnv(t, "", nil)
	e.a.euid = 4242 // as a daemon run by an ordinary user (uid 4242) would be
	res := e.deliver("s@remote.test", testMessage, "alice@host.test")
	want := fmt.Sprintf("cannot deliver as user alice (uid %d): sluice runs as uid 4242, not as root", e.users["alice"].UID)
	if r := res[0]; r.Status != Deferred || r.DSN != "4.3.0" || !strings.HasSuffix(r.Reason, want) {
		t.Errorf("got %v %s %q, want deferred ...%q", r.Status, r.DSN, r.Reason, want)
	}
	if _, err := os.Lstat(e.mbox("alice")); !os.IsNotExist(err) {
		t.Errorf("mailbox created anyway: %v", err)
	}
	if _, err := os.Lstat(e.mbox("alice") + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file created anyway: %v", err)
	}
}
