// Package oracle lets tests use Postfix 3.7 itself as the oracle for
// sluice: Postfix's own tools (postqueue, postcat, qshape, postsuper,
// postconf) pointed at a spool through a configuration directory, and
// throwaway Postfix instances that fill a spool with real mail deferred
// for real reasons.
//
// It is test support only; nothing outside tests imports it. The tools
// must run as root (postqueue lists a stopped system's queue only for
// root) and the spool must belong to Postfix's mail_owner, because showq
// drops to that user before it reads anything. Run and PostfixConfig see
// to the ownership.
//
// A test that needs Postfix calls Require first. Where Postfix is missing
// the test fails, with a message that says how to get it, unless
// SLUICE_NO_POSTFIX=1 is set explicitly, in which case it is skipped
// loudly: an oracle test never passes silently without its oracle.
package oracle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/config"
	"sluice/internal/spool"
)

// SkipEnv is the variable that, set to 1, turns a missing Postfix from a
// test failure into a loud skip.
const SkipEnv = "SLUICE_NO_POSTFIX"

// MailOwner is the user Postfix's daemons run as and own the spool.
const MailOwner = "postfix"

// tools are the Postfix programs the oracle tests run.
var tools = []string{"postfix", "postconf", "postqueue", "postcat", "postsuper", "postdrop", "qshape", "sendmail"}

// toolDirs are searched after $PATH: Debian puts Postfix's commands in
// /usr/sbin, which a non-login root shell may not have in $PATH.
var toolDirs = []string{"/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin"}

// Tool returns the path of a Postfix program, or "" when it is missing.
func Tool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range toolDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Missing returns why the oracle cannot run here, or "" when it can.
func Missing() string {
	var why []string
	var absent []string
	for _, name := range tools {
		if Tool(name) == "" {
			absent = append(absent, name)
		}
	}
	if len(absent) > 0 {
		why = append(why, "Postfix programs not found: "+strings.Join(absent, ", "))
	}
	if _, err := user.Lookup(MailOwner); err != nil {
		why = append(why, "no "+MailOwner+" user")
	}
	if os.Geteuid() != 0 {
		why = append(why, "not running as root (postqueue reads a stopped queue only for root, and instances need root)")
	}
	return strings.Join(why, "; ")
}

// Require stops the test unless Postfix can serve as its oracle. A missing
// Postfix fails the test, unless SLUICE_NO_POSTFIX=1 is set, which skips
// it with a loud message.
func Require(t testing.TB) {
	t.Helper()
	why := Missing()
	if why == "" {
		return
	}
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("SKIPPED, NOT TESTED: the Postfix oracle is unavailable (%s) and %s=1 is set; this test compares sluice with Postfix and checked nothing", why, SkipEnv)
	}
	t.Fatalf("the Postfix oracle is unavailable: %s. Install Postfix 3.7 and run as root (scripts/test.sh does both), or set %s=1 to skip oracle tests explicitly", why, SkipEnv)
}

// Result is what a Postfix program did.
type Result struct {
	Stdout []byte
	Stderr []byte
	Status int
}

// runTimeout bounds every Postfix program a test runs.
const runTimeout = 2 * time.Minute

// Run runs the Postfix program name with args, stdin as its input and
// MAIL_CONFIG set to configDir (pass -c configDir in args too for tools
// that take it). Before it runs, the spool that configDir names is given
// to Postfix's mail_owner, so files a test wrote as root are readable by
// showq. The test fails if the program cannot be started or times out; a
// non-zero exit status is returned in Result.
func Run(t testing.TB, configDir string, stdin []byte, name string, args ...string) Result {
	t.Helper()
	path := Tool(name)
	if path == "" {
		t.Fatalf("oracle: Postfix program %s not found", name)
	}
	if configDir != "" {
		c, err := config.Load(configDir)
		if err != nil {
			t.Fatalf("oracle: %v", err)
		}
		if err := GiveSpoolToPostfix(c.Get("queue_directory")); err != nil {
			t.Fatalf("oracle: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Args[0] = name // Postfix's tools name themselves by argv[0] in messages
	cmd.Env = toolEnv(configDir)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		res.Status = exit.ExitCode()
	default:
		t.Fatalf("oracle: %s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return res
}

// toolEnv is the environment of a Postfix program: ours (TZ included, so
// Postfix formats times in the same zone as sluice's tools in this
// process) with MAIL_CONFIG replaced and /usr/sbin on the PATH.
func toolEnv(configDir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MAIL_CONFIG=") || strings.HasPrefix(kv, "PATH=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if configDir != "" {
		env = append(env, "MAIL_CONFIG="+configDir)
	}
	return env
}

// ownedDirs are the spool directories whose contents belong to
// mail_owner. The spool's top directory and pid/ stay root's, as
// Postfix has them.
var ownedDirs = []string{spool.Maildrop, spool.Incoming, spool.Active, spool.Deferred, spool.Hold,
	spool.Corrupt, spool.Saved, spool.Defer, spool.Bounce, spool.Trace, spool.Flush, "private", "public"}

// GiveSpoolToPostfix makes everything under the queue directories of the
// spool at root that root owns belong to Postfix's mail_owner (maildrop
// files excepted: they keep their submitter), and makes
// root itself searchable (0755, as Postfix's queue_directory is): showq
// chdirs there as root, drops privileges and then opens queues by
// relative names. The directories above root need no change. Files that
// vanish meanwhile (a running instance moves them) are not errors.
func GiveSpoolToPostfix(root string) error {
	uid, gid, err := MailOwnerIDs()
	if err != nil {
		return err
	}
	if fi, err := os.Stat(root); err != nil {
		return fmt.Errorf("give spool to %s: %w", MailOwner, err)
	} else if fi.Mode().Perm()&0o055 != 0o055 {
		if err := os.Chmod(root, fi.Mode().Perm()|0o055); err != nil {
			return fmt.Errorf("give spool to %s: %w", MailOwner, err)
		}
	}
	for _, d := range ownedDirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			fi, err := de.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d == spool.Maildrop && !de.IsDir() {
				// A maildrop file belongs to whoever submitted it
				// (pickup logs that uid); it is world-readable.
				return nil
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
				if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("give spool %s to %s: %w", root, MailOwner, err)
		}
	}
	return nil
}

// openPath adds search permission for others to root and every directory
// above it, so mail_owner can reach the data and log directories of a
// test's Postfix (which it opens by absolute path).
func openPath(root string) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("open %s for %s: %w", d, MailOwner, err)
			}
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

// MailOwnerIDs returns the uid and gid of Postfix's mail_owner.
func MailOwnerIDs() (uid, gid int, err error) {
	u, err := user.Lookup(MailOwner)
	if err != nil {
		return 0, 0, fmt.Errorf("look up %s: %w", MailOwner, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad ids for %s: %s:%s", MailOwner, u.Uid, u.Gid)
	}
	return uid, gid, nil
}

// TempDir makes a directory for Postfix to use that mail_owner can
// search, removed when the test ends.
func TempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := openPath(dir); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	return dir
}

// mainCF renders main.cf lines; later settings of a name win, as in
// Postfix.
//
// A parameter set twice keeps its last value, in the place of its first:
// Postfix would take the last too, but every one of its processes would
// warn "overriding earlier entry" when it starts. Those warnings flood the
// postlog socket when many processes start at once, and postlogd, which
// sends its own warning to that same socket, can block on it for good,
// and with it every process that logs (smtpd among them): a test then
// waits for a reply that never comes.
func mainCF(lines []string) string {
	last := map[string]int{}
	name := func(l string) string { n, _, _ := strings.Cut(l, "="); return strings.TrimSpace(n) }
	for i, l := range lines {
		last[name(l)] = i
	}
	var b strings.Builder
	b.WriteString("# Written by sluice's oracle test support.\n")
	done := map[string]bool{}
	for _, l := range lines {
		n := name(l)
		if done[n] {
			continue
		}
		done[n] = true
		b.WriteString(lines[last[n]])
		b.WriteByte('\n')
	}
	return b.String()
}

// baseParams are the main.cf settings every oracle configuration has.
func baseParams(top, spoolDir string) []string {
	return []string{
		"compatibility_level = 3.6",
		"queue_directory = " + spoolDir,
		"data_directory = " + filepath.Join(top, "data"),
		"mail_owner = " + MailOwner,
		"setgid_group = postdrop",
		"myhostname = facts.test",
		"mydomain = facts.test",
		"myorigin = $myhostname",
		"mydestination =",
		"alias_maps =",
		"alias_database =",
		"maillog_file = " + filepath.Join(top, "log", "maillog"),
		"maillog_file_prefixes = " + filepath.Join(top, "log"),
	}
}

// PostfixConfig writes a configuration directory through which Postfix's
// tools read the spool at spoolDir, a sluice spool or any other, and
// returns its path. Extra main.cf lines ("name = value") follow the base
// settings and win over them (e.g. "enable_long_queue_ids = yes"). The
// queue directories are created when missing and, like everything later
// passed through Run, given to Postfix's mail_owner. sluice's tools read
// the same directory with -c: its main.cf names the spool.
func PostfixConfig(t testing.TB, spoolDir string, extra ...string) string {
	t.Helper()
	abs, err := filepath.Abs(spoolDir)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	top := TempDir(t, "sluice-postfix-config-")
	etc := filepath.Join(top, "etc")
	if err := writeConfigDir(top, etc, append(baseParams(top, abs), extra...)); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := spool.New(abs).Create(); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := GiveSpoolToPostfix(abs); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	return etc
}

// writeConfigDir writes etc/main.cf and etc/master.cf (Postfix's
// distribution master.cf) and the data and log directories under top
// that mail_owner writes.
func writeConfigDir(top, etc string, params []string) error {
	uid, gid, err := MailOwnerIDs()
	if err != nil {
		return err
	}
	for _, d := range []string{etc, filepath.Join(top, "data"), filepath.Join(top, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(mainCF(params)), 0o644); err != nil {
		return err
	}
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		master, err = os.ReadFile("/etc/postfix/master.cf")
	}
	if err != nil {
		return fmt.Errorf("no master.cf to start from: %w", err)
	}
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), master, 0o644); err != nil {
		return err
	}
	logFile := filepath.Join(top, "log", "maillog")
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		return err
	}
	for _, p := range []string{filepath.Join(top, "data"), filepath.Join(top, "log"), logFile} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
