// Package dovecottest starts a throwaway Dovecot for tests: its own
// base_dir, a passwd-file user base, no mail protocols, and one auth
// socket for smtpd (mode 0666, in a directory every user can reach, so
// that a daemon that dropped to mail_owner can use it too). It needs
// Debian's dovecot-core; a test that uses it fails, never skips, when
// Dovecot is missing.
package dovecottest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a running instance.
type Dovecot struct {
	Dir    string // everything of the instance is here
	Socket string // the auth socket (smtpd_sasl_path)
	logf   string
	cmd    *exec.Cmd
	done   chan error
}

// Options shape the instance.
type Options struct {
	// Users maps login names to plain-text passwords.
	Users map[string]string
	// Mechanisms is auth_mechanisms; "plain login" when empty.
	Mechanisms string
}

// Binary returns the dovecot binary's path, or fails the test with what
// to install.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/dovecot"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	t.Fatalf("dovecot is not installed: these tests run against a real Dovecot; install Debian's dovecot-core (apt-get install -y --no-install-recommends dovecot-core), as scripts/test.sh does")
	return ""
}

// Start starts Dovecot and waits until its auth socket answers; it is
// stopped when the test ends.
func Start(t testing.TB, opts Options) *Dovecot {
	t.Helper()
	bin := Binary(t)
	dir, err := os.MkdirTemp("", "sluice-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's auth process runs as the dovecot user (when we are
	// root) and a sluice child as mail_owner: both must reach inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, Socket: filepath.Join(dir, "auth"), logf: filepath.Join(dir, "dovecot.log"), done: make(chan error, 1)}
	for _, sub := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var pw strings.Builder
	names := make([]string, 0, len(opts.Users))
	for n := range opts.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s\n", n, opts.Users[n])
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	mechs := opts.Mechanisms
	if mechs == "" {
		mechs = "plain login"
	}
	conf := fmt.Sprintf(`# a throwaway Dovecot: authentication only
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = none
listen = 127.0.0.1
ssl = no
auth_mechanisms = %[2]s
# no artificial delay after a failure, no per-client penalty: the tests
# fail passwords on purpose
auth_failure_delay = 0
%[3]s
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener %[1]s/auth {
    mode = 0666
  }
}
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`, dir, mechs, unprivileged())
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, "-F", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", d.Socket)
		if err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("dovecot exited at start (%v):\n%s", err, d.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot's auth socket %s did not answer within 30 s: %v\n%s", d.Socket, err, d.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unprivileged returns the settings that let Dovecot run as a user
// other than root: its internal and login users are then that user.
func unprivileged() string {
	if os.Geteuid() == 0 {
		return ""
	}
	u, err := user.Current()
	if err != nil {
		return ""
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("default_internal_user = %s\ndefault_internal_group = %s\ndefault_login_user = %s\n", u.Username, g.Name, u.Username)
}

// Log returns Dovecot's log.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(d.logf)
	return string(b)
}

func (d *Dovecot) output() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.out"))
	return string(b) + d.Log()
}

func (d *Dovecot) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("dovecot's log:\n%s", d.output())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}
