package oracle

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/spool"
)

// Options shape a throwaway Postfix instance.
type Options struct {
	// LongIDs sets enable_long_queue_ids = yes.
	LongIDs bool
	// RelayHost is where all mail goes that Transports does not route;
	// the default, [127.0.0.1]:9, is a closed port, so every message
	// defers with "connect to 127.0.0.1[127.0.0.1]:9: Connection refused".
	RelayHost string
	// Transports become transport_maps entries: domain → transport, e.g.
	// "discard.test": "discard:" (recipients there are done at once) or
	// "slow.test": "smtp:[127.0.0.1]:PORT".
	Transports map[string]string
	// Params are extra main.cf lines ("name = value"), applied last.
	Params []string
}

// Instance is a private Postfix: its own configuration, spool, SMTP
// listener on a free loopback port and mail log, all under Dir. Deferred
// mail stays put for hours (long backoff times), so a test sees the
// spool as the first delivery attempt left it.
type Instance struct {
	Dir       string // everything of the instance lives here
	ConfigDir string // pass as -c to Postfix's and sluice's tools
	SpoolDir  string // queue_directory
	LogFile   string // maillog_file
	Port      int    // smtpd listens on 127.0.0.1:Port

	running   bool
	masterPID int
	watchdog  *exec.Cmd
}

// StartPostfix creates and starts a private Postfix instance; it is
// stopped and removed when the test ends. Several may run at once: each
// has its own directory and port.
func StartPostfix(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t)
	top := TempDir(t, "sluice-postfix-instance-")
	in := &Instance{
		Dir:       top,
		ConfigDir: filepath.Join(top, "etc"),
		SpoolDir:  filepath.Join(top, "spool"),
		LogFile:   filepath.Join(top, "log", "maillog"),
		Port:      FreePort(t),
	}
	// Registered after TempDir's cleanup, so it runs before the removal.
	t.Cleanup(func() {
		if t.Failed() {
			in.dumpLog(t)
		}
		in.shutdown(t)
	})
	in.startWatchdog(t)
	relay := opts.RelayHost
	if relay == "" {
		relay = "[127.0.0.1]:9"
	}
	params := append(baseParams(top, in.SpoolDir),
		"inet_interfaces = loopback-only",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"relayhost = "+relay,
		"default_transport = smtp",
		"relay_transport = relay",
		// Keep deferred mail where the first attempt left it.
		"minimal_backoff_time = 3h",
		"maximal_backoff_time = 6h",
		"queue_run_delay = 1h",
		"smtputf8_enable = yes",
		"biff = no",
	)
	if opts.LongIDs {
		params = append(params, "enable_long_queue_ids = yes")
	}
	if len(opts.Transports) > 0 {
		params = append(params, "transport_maps = texthash:"+filepath.Join(in.ConfigDir, "transport"))
	}
	params = append(params, opts.Params...)
	if err := writeConfigDir(top, in.ConfigDir, params); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if err := os.Mkdir(in.SpoolDir, 0o755); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	if len(opts.Transports) > 0 {
		var lines []string
		for dom, tr := range opts.Transports {
			lines = append(lines, dom+" "+tr)
		}
		sort.Strings(lines)
		if err := os.WriteFile(filepath.Join(in.ConfigDir, "transport"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatalf("oracle: %v", err)
		}
	}
	// No chroot (the jail would need copies of system files), no
	// listener on port 25, and our own listener on a free port.
	in.postconf(t, "-F", "*/*/chroot=n")
	in.postconf(t, "-M#", "smtp/inet")
	addr := "127.0.0.1:" + strconv.Itoa(in.Port)
	in.postconf(t, "-Me", addr+"/inet="+addr+" inet n - n - - smtpd")
	if r := Run(t, "", nil, "postfix", "-c", in.ConfigDir, "check"); r.Status != 0 {
		t.Fatalf("oracle: postfix check: status %d\n%s%s", r.Status, r.Stdout, r.Stderr)
	}
	in.Start(t)
	return in
}

func (in *Instance) postconf(t testing.TB, args ...string) {
	t.Helper()
	r := Run(t, "", nil, "postconf", append([]string{"-c", in.ConfigDir}, args...)...)
	if r.Status != 0 {
		t.Fatalf("oracle: postconf %s: status %d\n%s", strings.Join(args, " "), r.Status, r.Stderr)
	}
}

// Start starts the instance's master and waits until its SMTP listener
// answers.
func (in *Instance) Start(t testing.TB) {
	t.Helper()
	if in.running {
		return
	}
	if r := Run(t, "", nil, "postfix", "-c", in.ConfigDir, "start"); r.Status != 0 {
		in.dumpLog(t)
		t.Fatalf("oracle: postfix start: status %d\n%s%s", r.Status, r.Stdout, r.Stderr)
	}
	in.running = true
	in.masterPID = in.readMasterPID()
	addr := "127.0.0.1:" + strconv.Itoa(in.Port)
	in.WaitFor(t, "smtpd listening on "+addr, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// Stop stops the instance and waits until its master has exited. The
// spool stays as it was, for the tools to read.
func (in *Instance) Stop(t testing.TB) {
	t.Helper()
	if !in.running {
		return
	}
	r := Run(t, "", nil, "postfix", "-c", in.ConfigDir, "stop")
	in.running = false
	if r.Status != 0 {
		t.Errorf("oracle: postfix stop: status %d\n%s%s", r.Status, r.Stdout, r.Stderr)
	}
	if !waitGone(in.masterPID, 10*time.Second) {
		syscall.Kill(-in.masterPID, syscall.SIGKILL)
		syscall.Kill(in.masterPID, syscall.SIGKILL)
		t.Errorf("oracle: Postfix master %d did not exit; killed it", in.masterPID)
	}
}

// shutdown is the cleanup: stop a running instance, and make sure its
// master is gone whatever happened; then end the watchdog.
func (in *Instance) shutdown(t testing.TB) {
	if in.running {
		Run(t, "", nil, "postfix", "-c", in.ConfigDir, "stop")
		in.running = false
	}
	if in.masterPID > 0 && !waitGone(in.masterPID, 10*time.Second) {
		syscall.Kill(-in.masterPID, syscall.SIGKILL)
		syscall.Kill(in.masterPID, syscall.SIGKILL)
	}
	if in.watchdog != nil {
		in.watchdog.Process.Kill()
		in.watchdog.Wait()
	}
}

// watchdogScript stops the instance and removes its directory once the
// test process ($1) is gone: a test binary killed by go test's -timeout
// or a signal runs no cleanups, and must not leave Postfix running.
const watchdogScript = `while kill -0 "$1" 2>/dev/null; do sleep 1; done
"$2" -c "$3" stop >/dev/null 2>&1
rm -rf "$4"`

// startWatchdog starts a small shell, in its own session, that outlives
// this process only to stop the instance.
func (in *Instance) startWatchdog(t testing.TB) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "sluice-oracle-watchdog",
		strconv.Itoa(os.Getpid()), Tool("postfix"), in.ConfigDir, in.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("oracle: start the instance's watchdog: %v", err)
	}
	in.watchdog = cmd
}

func (in *Instance) readMasterPID() int {
	b, err := os.ReadFile(filepath.Join(in.SpoolDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitGone waits until process pid has exited (a zombie counts as gone).
func waitGone(pid int, timeout time.Duration) bool {
	if pid <= 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the instance is started.
func (in *Instance) Running() bool { return in.running }

// SMTPAddr is the address of the instance's SMTP listener.
func (in *Instance) SMTPAddr() string { return "127.0.0.1:" + strconv.Itoa(in.Port) }

// Sendmail submits msg through Postfix's sendmail (postdrop into
// maildrop/, then pickup when the instance runs) with the given
// arguments, e.g. "-f", "alice@facts.test", "bob@example.com". The test
// fails if sendmail does.
func (in *Instance) Sendmail(t testing.TB, msg []byte, args ...string) Result {
	t.Helper()
	r := Run(t, in.ConfigDir, msg, "sendmail", args...)
	if r.Status != 0 {
		t.Fatalf("oracle: sendmail %s: status %d\n%s", strings.Join(args, " "), r.Status, r.Stderr)
	}
	return r
}

// SubmitSMTP sends msg over SMTP to the instance's listener. An empty
// from is the null sender. SMTPUTF8 is requested when Postfix offers it,
// so UTF-8 addresses pass.
func (in *Instance) SubmitSMTP(from string, to []string, msg []byte) error {
	c, err := smtp.Dial(in.SMTPAddr())
	if err != nil {
		return fmt.Errorf("oracle: dial %s: %w", in.SMTPAddr(), err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("oracle: MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("oracle: RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("oracle: end of DATA: %w", err)
	}
	return c.Quit()
}

// Postsuper runs Postfix's postsuper on the instance, e.g. ("-h", ID).
func (in *Instance) Postsuper(t testing.TB, args ...string) Result {
	t.Helper()
	return Run(t, in.ConfigDir, nil, "postsuper", append([]string{"-c", in.ConfigDir}, args...)...)
}

// Count returns the number of queue files in a queue of the instance.
func (in *Instance) Count(queue string) int { return len(in.IDs(queue)) }

// IDs returns the queue IDs in a queue of the instance, sorted.
func (in *Instance) IDs(queue string) []string {
	var ids []string
	filepath.WalkDir(filepath.Join(in.SpoolDir, queue), func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && spool.ValidID(de.Name()) {
			ids = append(ids, de.Name())
		}
		return nil
	})
	sort.Strings(ids)
	return ids
}

// WaitFor polls cond until it holds, failing the test after timeout.
func (in *Instance) WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			in.dumpLog(t)
			t.Fatalf("oracle: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitQueues waits until every queue named in want holds exactly that
// many files.
func (in *Instance) WaitQueues(t testing.TB, timeout time.Duration, want map[string]int) {
	t.Helper()
	var got map[string]int
	in.WaitFor(t, fmt.Sprintf("queue counts %v", want), timeout, func() bool {
		got = map[string]int{}
		ok := true
		for q, n := range want {
			got[q] = in.Count(q)
			ok = ok && got[q] == n
		}
		return ok
	})
}

// Log returns the instance's mail log.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.LogFile)
	return string(b)
}

func (in *Instance) dumpLog(t testing.TB) {
	log := in.Log()
	if len(log) > 8000 {
		log = "...\n" + log[len(log)-8000:]
	}
	t.Logf("Postfix instance %s mail log:\n%s", in.Dir, log)
}
