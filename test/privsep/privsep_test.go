// Package privsep_test runs sluice serve as root the way a host runs it
// and checks least privilege from the outside: accounts made, the spool's
// owners, no root thread in the process that handles SMTP and delivery,
// local users submitting (daemon up and down), listing and flushing as
// the authorization parameters say, changes refused, and Postfix's
// postqueue reading the live spool through public/showq.
//
// It needs root; run unprivileged it fails, unless SLUICE_TEST_NONROOT
// is set (then it is skipped). Users and groups it makes are removed
// when it ends.
package privsep_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sluice/internal/testutil"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SLUICE_TEST_NONROOT") != "" {
		t.Skip("needs root; SLUICE_TEST_NONROOT is set")
	}
	t.Fatal("this test needs root: it runs sluice serve as root and makes users (set SLUICE_TEST_NONROOT=1 to skip it)")
}

// env is one test's world.
type env struct {
	t                       *testing.T
	top, bin, conf, alt     string
	spool, log, pfconf      string
	port                    int
	owner, group, submitter string
	ownerUID, userUID       int
	userGID                 int
	daemon                  *exec.Cmd
	stderr                  *testutil.SyncBuffer
}

func randName(prefix string) string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s%x", prefix, b)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func setup(t *testing.T) *env {
	requireRoot(t)
	top, err := os.MkdirTemp("", "sluice-privsep-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(top, 0o755)
	t.Cleanup(func() { os.RemoveAll(top) })
	e := &env{t: t, top: top, bin: filepath.Join(top, "bin"), conf: filepath.Join(top, "etc"), alt: filepath.Join(top, "alt"),
		spool: filepath.Join(top, "spool"), log: filepath.Join(top, "log", "mail.log"), pfconf: filepath.Join(top, "pf"),
		owner: randName("slo"), group: randName("slg"), submitter: randName("slu")}
	for _, d := range []string{e.bin, e.conf, e.alt, e.pfconf} {
		os.MkdirAll(d, 0o755)
	}
	// The accounts serve must create; removed at the end whatever
	// happens.
	t.Cleanup(func() {
		exec.Command("userdel", e.owner).Run()
		exec.Command("groupdel", e.owner).Run()
		exec.Command("groupdel", e.group).Run()
		exec.Command("userdel", e.submitter).Run()
	})
	run(t, "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", e.submitter)
	u, err := user.Lookup(e.submitter)
	if err != nil {
		t.Fatal(err)
	}
	e.userUID, _ = strconv.Atoi(u.Uid)
	e.userGID, _ = strconv.Atoi(u.Gid)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	e.writeConf(e.conf, "alternate_config_directories = "+e.alt)
	e.writeConf(e.alt)
	os.WriteFile(filepath.Join(e.pfconf, "main.cf"), []byte("compatibility_level = 3.6\nqueue_directory = "+e.spool+"\n"), 0o644)

	// The binary, and the setgid helper built to trust e.conf as its
	// default configuration directory (as /etc/sluice is for the real
	// one); its group is set once serve has made the group.
	build := func(out string, flags ...string) {
		args := append([]string{"build"}, flags...)
		args = append(args, "-o", out, "sluice/cmd/sluice")
		if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
	}
	build(filepath.Join(e.bin, "sluice"))
	build(filepath.Join(e.bin, "sluice-postdrop"), "-ldflags", "-X sluice/internal/privsep.trustedConfigDir="+e.conf)
	return e
}

func (e *env) writeConf(dir string, extra ...string) {
	lines := append([]string{
		"queue_directory = " + e.spool,
		"maillog_file = " + e.log,
		"myhostname = privsep.test",
		"mail_owner = " + e.owner,
		"setgid_group = " + e.group,
		fmt.Sprintf("smtpd_listen = 127.0.0.1:%d", e.port),
		// Every remote delivery defers and then waits: the queue
		// holds still while the test looks at it.
		"relayhost = [127.0.0.1]:9",
		"minimal_backoff_time = 3h", "maximal_backoff_time = 6h", "queue_run_delay = 1h",
	}, extra...)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) start() {
	t := e.t
	t.Helper()
	e.stderr = &testutil.SyncBuffer{}
	e.daemon = exec.Command(filepath.Join(e.bin, "sluice"), "serve", "-c", e.conf)
	e.daemon.Stderr = e.stderr
	if err := e.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), 100*time.Millisecond); err == nil {
			c.Close()
			// The control socket opens after the SMTP listener.
			if _, err := os.Stat(filepath.Join(e.spool, "public", "sluice-control")); err == nil {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sluice serve did not start; stderr:\n%s", e.stderr.String())
}

func (e *env) stop() {
	if e.daemon == nil || e.daemon.Process == nil {
		return
	}
	e.daemon.Process.Signal(syscall.SIGTERM)
	err := e.daemon.Wait()
	e.daemon = nil
	if err != nil {
		e.t.Errorf("sluice serve ended with %v; stderr:\n%s", err, e.stderr.String())
	}
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// as runs bin/NAME (a link to sluice, so argv[0] picks the tool) or an
// absolute program as the submitting user (uid ≥ 0) or root (uid < 0).
func (e *env) as(uid int, stdin string, prog string, args ...string) result {
	e.t.Helper()
	path := prog
	if !filepath.IsAbs(prog) {
		path = filepath.Join(e.bin, prog)
		if _, err := os.Lstat(path); err != nil {
			os.Symlink("sluice", path)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC", "HOME=/"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(e.userGID), Groups: []uint32{}}}
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("%s: %v", prog, err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) waitLog(what string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(e.log); strings.Contains(string(b), what) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(e.log)
	e.t.Fatalf("no %q in the mail log:\n%s", what, b)
}

// queueIDs lists the queue as root (postqueue -j), by ID.
func (e *env) queueIDs() map[string]string {
	e.t.Helper()
	r := e.as(-1, "", "postqueue", "-c", e.conf, "-j")
	if r.code != 0 {
		e.t.Fatalf("postqueue -j as root: %+v", r)
	}
	ids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			ID     string `json:"queue_id"`
			Sender string `json:"sender"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatal(err)
		}
		ids[m.ID] = m.Sender
	}
	return ids
}

func TestLeastPrivilege(t *testing.T) {
	e := setup(t)
	e.start()

	// Accounts were made, and said so.
	e.waitLog("created user " + e.owner + " (mail_owner)")
	e.waitLog("created group " + e.group + " (setgid_group)")
	ou, err := user.Lookup(e.owner)
	if err != nil {
		t.Fatal(err)
	}
	e.ownerUID, _ = strconv.Atoi(ou.Uid)
	if ou.HomeDir != e.spool {
		t.Errorf("mail_owner's home %s, want %s", ou.HomeDir, e.spool)
	}
	g, err := user.LookupGroup(e.group)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	helper := filepath.Join(e.bin, "sluice-postdrop")
	os.Chown(helper, 0, gid)
	os.Chmod(helper, 0o755|os.ModeSetgid)

	// The spool: Postfix's owners and modes.
	for _, c := range []struct {
		rel  string
		uid  int
		mode os.FileMode
	}{
		{".", 0, 0o755}, {"incoming", e.ownerUID, 0o700}, {"deferred", e.ownerUID, 0o700},
		{"maildrop", e.ownerUID, 0o730 | os.ModeSticky}, {"public", e.ownerUID, 0o710 | os.ModeSetgid}, {"pid", 0, 0o755},
	} {
		fi, err := os.Stat(filepath.Join(e.spool, c.rel))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != c.uid || fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid) != c.mode {
			t.Errorf("%s: uid %d mode %v; want uid %d mode %v", c.rel, st.Uid, fi.Mode(), c.uid, c.mode)
		}
	}
	if fi, err := os.Stat(e.log); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != e.ownerUID {
		t.Errorf("mail log not mail_owner's: %v", err)
	}

	t.Run("no root thread handles SMTP or delivery", func(t *testing.T) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
			t.Fatalf("banner %q %v", l, err)
		}
		fmt.Fprintf(c, "EHLO client.test\r\n")
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(l, "250 ") {
				break
			}
		}
		// While the session is open: the master is root and has one
		// child; every thread of the child is mail_owner.
		master := e.daemon.Process.Pid
		children := childrenOf(t, master)
		if len(children) != 1 {
			t.Fatalf("master %d has children %v, want one", master, children)
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", children[0]))
		if len(tasks) == 0 {
			t.Fatal("no threads found")
		}
		for _, st := range tasks {
			uids, gids := statusIDs(t, st)
			for _, u := range uids {
				if u != e.ownerUID {
					t.Errorf("%s: Uid %v, want all %d", st, uids, e.ownerUID)
					break
				}
			}
			for _, g := range gids {
				if g == 0 {
					t.Errorf("%s: Gid %v has root's group", st, gids)
					break
				}
			}
		}
		// The connection is the child's: the master holds no socket
		// but the listener it passed on.
		if n := establishedSockets(t, master); n != 0 {
			t.Errorf("the root master holds %d connected sockets", n)
		}
		fmt.Fprintf(c, "QUIT\r\n")
	})

	// Mail from SMTP, deferred by the closed relay port.
	smtpMsg := e.as(-1, "Subject: smtp\n\nhi\n", "sendmail", "-C", e.conf, "-f", "smtp@example.org", "r1@example.com")
	if smtpMsg.code != 0 {
		t.Fatalf("sendmail as root: %+v", smtpMsg)
	}

	t.Run("submission with the daemon up", func(t *testing.T) {
		r := e.as(e.userUID, "Subject: from a user\n\nhello\n", "sendmail", "-C", e.conf, "friend@example.com")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("sendmail as %s: %+v", e.submitter, r)
		}
		e.waitLog(fmt.Sprintf("uid=%d from=<%s>", e.userUID, e.submitter))
		r = e.as(e.userUID, "Subject: second\n\nx\n", "sendmail", "-C", e.conf, "friend2@example.com")
		if r.code != 0 {
			t.Fatalf("second sendmail: %+v", r)
		}
		// The helper accepts only the configuration directories its
		// default main.cf lists (Postfix's rule); a user's own main.cf
		// naming the spool is refused.
		own := filepath.Join(e.top, "own")
		os.MkdirAll(own, 0o755)
		os.WriteFile(filepath.Join(own, "main.cf"), []byte("queue_directory = "+e.spool+"\n"), 0o644)
		r = e.as(e.userUID, "Subject: own\n\nx\n", "sendmail", "-C", own, "x@example.com")
		if r.code != 75 || !strings.Contains(r.stderr, "unauthorized configuration directory name: "+own) {
			t.Errorf("sendmail -C with a directory not listed: %+v", r)
		}
	})
	e.waitLog("friend2@example.com")

	t.Run("listing as a user, authorization unset", func(t *testing.T) {
		root := e.as(-1, "", "mailq", "-C", e.conf)
		usr := e.as(e.userUID, "", "mailq", "-C", e.conf)
		if usr.code != 0 || usr.stdout != root.stdout || !strings.Contains(usr.stdout, e.submitter+"@privsep.test") {
			t.Errorf("mailq as a user: %+v\nroot sees:\n%s", usr, root.stdout)
		}
		j := e.as(e.userUID, "", "postqueue", "-c", e.conf, "-j")
		if j.code != 0 || strings.Count(j.stdout, "\n") != len(e.queueIDs()) {
			t.Errorf("postqueue -j as a user: %+v", j)
		}
		// Once the directories have settled the daemon keeps their
		// renderings and passes them as files, here through the setgid
		// helper's connection.
		time.Sleep(1100 * time.Millisecond)
		for round := range 3 {
			if usr := e.as(e.userUID, "", "mailq", "-C", e.conf); usr.code != 0 || usr.stdout != root.stdout {
				t.Errorf("mailq as a user, round %d, directories settled: %+v\nroot sees:\n%s", round, usr, root.stdout)
			}
		}
		q := e.as(e.userUID, "", "qshape", "-c", e.conf, "deferred")
		if q.code != 0 || !strings.Contains(q.stdout, "example.com") {
			t.Errorf("qshape as a user: %+v", q)
		}
		n := e.as(e.userUID, "", "sluice", "queue", "count", "-c", e.conf)
		if n.code != 0 || !strings.HasPrefix(n.stdout, fmt.Sprintf("%d message", len(e.queueIDs()))) {
			t.Errorf("sluice queue count as a user: %+v", n)
		}
		f := e.as(e.userUID, "", "postqueue", "-c", e.conf, "-f")
		if f.code != 0 || f.stderr != "" {
			t.Errorf("postqueue -f as a user: %+v", f)
		}
	})

	t.Run("changes refused", func(t *testing.T) {
		before := e.queueIDs()
		r := e.as(e.userUID, "", "postsuper", "-c", e.conf, "-d", "ALL")
		if r.code != 1 || r.stderr != "postsuper: fatal: use of this command is reserved for the superuser\n" {
			t.Errorf("postsuper -d ALL as a user: %+v", r)
		}
		r = e.as(e.userUID, "", "sluice", "queue", "delete", "-c", e.conf, "--yes", "--all")
		if r.code != 1 || r.stderr != "sluice queue delete: fatal: use of this command is reserved for the superuser\n" {
			t.Errorf("sluice queue delete as a user: %+v", r)
		}
		if after := e.queueIDs(); len(after) != len(before) {
			t.Errorf("queue changed: %d messages, then %d", len(before), len(after))
		}
	})

	t.Run("Postfix's postqueue on the live spool", func(t *testing.T) {
		if _, err := os.Stat("/usr/sbin/postqueue"); err != nil {
			t.Fatal("Postfix's postqueue is not installed (apt-get install postfix)")
		}
		ours := e.as(-1, "", "postqueue", "-c", e.conf, "-p")
		theirs := e.as(-1, "", "/usr/sbin/postqueue", "-c", e.pfconf, "-p")
		if theirs.code != 0 || theirs.stdout != ours.stdout || theirs.stderr != "" {
			t.Errorf("Postfix's postqueue -p: %+v\nsluice's:\n%s", theirs, ours.stdout)
		}
		ours = e.as(-1, "", "postqueue", "-c", e.conf, "-j")
		theirs = e.as(-1, "", "/usr/sbin/postqueue", "-c", e.pfconf, "-j")
		if theirs.code != 0 || theirs.stdout != ours.stdout {
			t.Errorf("Postfix's postqueue -j: %+v\nsluice's:\n%s", theirs, ours.stdout)
		}
	})

	e.stop()
	if _, err := os.Stat(filepath.Join(e.spool, "pid", "master.pid")); err == nil {
		t.Error("pid/master.pid left after the stop")
	}

	t.Run("daemon down", func(t *testing.T) {
		r := e.as(e.userUID, "Subject: while down\n\nx\n", "sendmail", "-C", e.conf, "later@example.com")
		if r.code != 0 {
			t.Fatalf("sendmail with the daemon down: %+v", r)
		}
		files, _ := os.ReadDir(filepath.Join(e.spool, "maildrop"))
		if len(files) != 1 {
			t.Fatalf("maildrop holds %d files, want 1", len(files))
		}
		fi, _ := os.Stat(filepath.Join(e.spool, "maildrop", files[0].Name()))
		if int(fi.Sys().(*syscall.Stat_t).Uid) != e.userUID || fi.Mode().Perm() != 0o744 {
			t.Errorf("maildrop file: uid %d mode %v", fi.Sys().(*syscall.Stat_t).Uid, fi.Mode())
		}
		l := e.as(e.userUID, "", "mailq", "-C", e.conf)
		if l.code != 69 || l.stdout != "" || !strings.HasPrefix(l.stderr, "mailq: fatal: Queue report unavailable - mail system is down") {
			t.Errorf("mailq as a user, daemon down: %+v", l)
		}
		q := e.as(e.userUID, "", "qshape", "-c", e.conf)
		if q.code == 0 || q.stdout != "" {
			t.Errorf("qshape as a user, daemon down: %+v", q)
		}
		c := e.as(e.userUID, "", "sluice", "queue", "list", "-c", e.conf)
		if c.code == 0 || c.stdout != "" {
			t.Errorf("sluice queue list as a user, daemon down: %+v", c)
		}
	})

	// The authorization parameters set; the alternate configuration
	// (same spool) leaves them unset, so the tools let the user ask and
	// the daemon refuses.
	e.writeConf(e.conf, "alternate_config_directories = "+e.alt, "authorized_mailq_users = root", "authorized_flush_users = root")
	e.start()
	e.waitLog("later@example.com")

	t.Run("listing and flushing refused", func(t *testing.T) {
		who := fmt.Sprintf("User %s(%d)", e.submitter, e.userUID)
		for _, c := range []struct {
			prog string
			args []string
			want string
		}{
			{"postqueue", []string{"-c", e.conf, "-p"}, "postqueue: fatal: " + who + " is not allowed to view the mail queue\n"},
			{"postqueue", []string{"-c", e.conf, "-j"}, "postqueue: fatal: " + who + " is not allowed to view the mail queue\n"},
			{"mailq", []string{"-C", e.conf}, "mailq: fatal: " + who + " is not allowed to view the mail queue\n"},
			{"postqueue", []string{"-c", e.conf, "-f"}, "postqueue: fatal: " + who + " is not allowed to flush the mail queue\n"},
			// Through the daemon: the tool's configuration allows it.
			{"postqueue", []string{"-c", e.alt, "-p"}, "postqueue: fatal: " + who + " is not allowed to view the mail queue\n"},
			{"postqueue", []string{"-c", e.alt, "-f"}, "postqueue: fatal: " + who + " is not allowed to flush the mail queue\n"},
		} {
			r := e.as(e.userUID, "", c.prog, c.args...)
			if r.code != 69 || r.stdout != "" || r.stderr != c.want {
				t.Errorf("%s %v: %+v; want 69, %q", c.prog, c.args, r, c.want)
			}
		}
		q := e.as(e.userUID, "", "qshape", "-c", e.conf)
		if q.code == 0 || q.stdout != "" || !strings.Contains(q.stderr, "is not allowed to view the mail queue") {
			t.Errorf("qshape: %+v", q)
		}
		// Root may.
		if r := e.as(-1, "", "postqueue", "-c", e.conf, "-p"); r.code != 0 {
			t.Errorf("postqueue -p as root: %+v", r)
		}
	})
}

// childrenOf returns the pids whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		p, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "PPid:" && f[1] == strconv.Itoa(pid) {
				out = append(out, p)
			}
		}
	}
	return out
}

// statusIDs returns the Uid: and Gid: fields (real, effective, saved,
// filesystem) of a /proc status file.
func statusIDs(t *testing.T, path string) (uids, gids []int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || (f[0] != "Uid:" && f[0] != "Gid:") {
			continue
		}
		for _, v := range f[1:] {
			n, _ := strconv.Atoi(v)
			if f[0] == "Uid:" {
				uids = append(uids, n)
			} else {
				gids = append(gids, n)
			}
		}
	}
	return uids, gids
}

// establishedSockets counts the TCP connections among pid's open files
// (by inode, in /proc/net/tcp, state 01 = ESTABLISHED).
func establishedSockets(t *testing.T, pid int) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) > 9 && fs[3] == "01" && inodes[fs[9]] {
				n++
			}
		}
	}
	return n
}

// TestOrdinaryUser: sluice serve started by an ordinary user runs as
// that user, on a spool it owns, with no child; its sendmail writes
// maildrop itself.
func TestOrdinaryUser(t *testing.T) {
	e := setup(t)
	dev := filepath.Join(e.top, "dev")
	os.MkdirAll(dev, 0o755)
	os.Chown(dev, e.userUID, e.userGID)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cf := fmt.Sprintf("queue_directory = %s/spool\nmaillog_file = %s/mail.log\nsmtpd_listen = 127.0.0.1:%d\nrelayhost = [127.0.0.1]:9\nminimal_backoff_time = 3h\nmaximal_backoff_time = 6h\n", dev, dev, port)
	os.WriteFile(filepath.Join(dev, "main.cf"), []byte(cf), 0o644)

	cmd := exec.Command(filepath.Join(e.bin, "sluice"), "serve", "-c", dev)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.userUID), Gid: uint32(e.userGID), Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("serve as a user ended with %v:\n%s", err, stderr.String())
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve as a user did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if kids := childrenOf(t, cmd.Process.Pid); len(kids) != 0 {
		t.Errorf("serve as a user has children %v", kids)
	}
	uids, _ := statusIDs(t, fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	for _, u := range uids {
		if u != e.userUID {
			t.Errorf("serve as a user runs with uids %v", uids)
			break
		}
	}
	fi, err := os.Stat(filepath.Join(dev, "spool", "maildrop"))
	if err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != e.userUID {
		t.Errorf("the spool is not the user's: %v", err)
	}
	r := e.as(e.userUID, "Subject: dev\n\nx\n", "sendmail", "-C", dev, "someone@example.com")
	if r.code != 0 {
		t.Errorf("sendmail on the user's own spool: %+v", r)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(filepath.Join(dev, "mail.log")); strings.Contains(string(b), fmt.Sprintf("uid=%d from=<%s>", e.userUID, e.submitter)) {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dev, "mail.log"))
			t.Fatalf("no pickup of the user's message:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
