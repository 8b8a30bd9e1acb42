package privsep

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"sluice/internal/spool"
)

// EnvFDs names the environment variable that tells the child which of
// its inherited descriptors (from fd 3 on) is which.
const EnvFDs = "SLUICE_PRIVSEP_FDS"

// MasterConfig is what the root master needs.
type MasterConfig struct {
	Accounts Accounts
	// Root is the queue directory (the child's working directory, and
	// where pid/master.pid is).
	Root string
	// Listen is smtpd_listen: the addresses opened for the child.
	Listen []string
	// LogFile is maillog_file ("" for none).
	LogFile string
	// ConfigDir is the daemon's configuration directory, which
	// local-deliver reads (deliver.go).
	ConfigDir string
	// Args is the child's argv (the master's own); Env its environment.
	Args []string
	Env  []string
	// Stdin, Stdout and Stderr are the child's standard streams.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Logf reports what the master does (to standard error).
	Logf func(format string, args ...any)
}

// Master runs the root side of sluice serve: it opens what needs root,
// starts the unprivileged child and waits for it, forwarding signals.
// It returns the exit status to exit with.
func Master(c MasterConfig) (int, error) {
	// Signals are taken from the start: the SMTP port answers as soon as
	// it is open, and a SIGTERM sent then must stop the daemon cleanly,
	// not kill this process half-way.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	lock, err := spool.LockPID(c.Root)
	if err != nil {
		return 1, err
	}
	defer lock.Release()

	var files []*os.File
	var names []string
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, addr := range c.Listen {
		f, err := listenFile(addr)
		if err != nil {
			return 1, err
		}
		files = append(files, f)
		names = append(names, "listen="+addr)
	}
	if c.LogFile != "" {
		f, err := OpenLog(c.LogFile, c.Accounts)
		if err != nil {
			return 1, err
		}
		files = append(files, f)
		names = append(names, "log")
	}

	// The local delivery channel (deliver.go): the child's end is
	// inherited, the master serves the other.
	dconn, dfile, err := DeliveryPair()
	if err != nil {
		return 1, err
	}
	defer dconn.Close()
	files = append(files, dfile)
	names = append(names, "deliver")

	exe, err := os.Executable()
	if err != nil {
		return 1, fmt.Errorf("find own executable: %w", err)
	}
	// The kernel's name for the running binary: the same file even if a
	// package upgrade replaced the path since we started.
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		exe = "/proc/self/exe"
	}
	env := make([]string, 0, len(c.Env)+1)
	for _, kv := range c.Env {
		if !strings.HasPrefix(kv, EnvFDs+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, EnvFDs+"="+strings.Join(names, " "))

	// Pdeathsig is tied to the thread that forks: keep this goroutine
	// on its thread while the child lives.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := &exec.Cmd{
		Path: exe, Args: c.Args, Env: env, Dir: c.Root,
		Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr,
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{
				Uid: uint32(c.Accounts.UID), Gid: uint32(c.Accounts.GID),
				Groups: []uint32{uint32(c.Accounts.GID)},
			},
			Pdeathsig: syscall.SIGKILL,
		},
	}
	// Signals that came while we prepared: a stop ends here; a reload
	// is moot, the child reads the configuration as it is now.
	for drained := false; !drained; {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return 0, nil
			}
		default:
			drained = true
		}
	}
	if err := cmd.Start(); err != nil {
		return 1, fmt.Errorf("start the mail system as %s: %w", c.Accounts.Owner, err)
	}
	dfile.Close()
	files = files[:len(files)-1]
	ds := &DeliveryServer{Conn: dconn, Exe: exe, Argv0: "sluice", PeerPID: cmd.Process.Pid, Logf: c.Logf}
	if c.ConfigDir != "" {
		ds.Args = []string{"-c", c.ConfigDir}
	}
	// The mbox From_ line and commands' TZ are in the daemon's time
	// zone: the master's own, as the child has it.
	if tz, ok := os.LookupEnv("TZ"); ok {
		ds.Env = []string{"TZ=" + tz}
	}
	go func() {
		// Should the channel fail, closing it makes the child's
		// requests fail (their recipients defer) instead of wait.
		if err := ds.Serve(); err != nil {
			c.Logf("warning: local delivery channel: %v", err)
		}
		dconn.Close()
	}()
	c.Logf("running as %s (uid %d); this process (pid %d, root) only waits, forwards signals, starts local deliveries (sluice local-deliver) and relays the exit", c.Accounts.Owner, c.Accounts.UID, os.Getpid())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopping := false
	for {
		select {
		case err := <-done:
			code, err := exitStatus(err)
			// A stop asked for before the child had its handlers in
			// place kills it with that very signal: still a clean stop.
			if stopping && (code == 128+int(syscall.SIGTERM) || code == 128+int(syscall.SIGINT)) {
				code = 0
			}
			return code, err
		case sig := <-sigs:
			stopping = stopping || sig != syscall.SIGHUP
			if sig == syscall.SIGHUP && c.LogFile != "" {
				// The child reopens the log by name on a reload; a
				// rotated-away file is made again here, as root.
				if f, err := OpenLog(c.LogFile, c.Accounts); err == nil {
					f.Close()
				} else {
					c.Logf("warning: %v", err)
				}
			}
			cmd.Process.Signal(sig)
		}
	}
}

// exitStatus relays the child's end: its exit status, or 128+N when a
// signal N killed it, as a shell reports it.
func exitStatus(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 1, err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ee.ExitCode(), nil
}

// listenFile opens a TCP listening socket and returns it as a file for
// a child to inherit.
func listenFile(addr string) (*os.File, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtpd: listen on %s: %w", addr, err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, fmt.Errorf("smtpd: listen on %s: %w", addr, err)
	}
	return f, nil
}

// OpenLog opens the mail log for appending, creating its directory (root
// 0755) and the file when missing, and gives the file to mail_owner, so
// that the unprivileged daemon and Postfix's postsuper (which writes
// maillog_file as mail_owner) can both append to it.
func OpenLog(path string, a Accounts) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("mail log: %w", err)
	}
	// O_NOFOLLOW: a link planted at the path must not make root chown
	// or append to another file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mail log: %w", err)
	}
	if err := f.Chown(a.UID, a.GID); err != nil {
		f.Close()
		return nil, fmt.Errorf("mail log: %w", err)
	}
	return f, nil
}

// Inheritance is what the child got from the master.
type Inheritance struct {
	// Listeners are the SMTP listening sockets by configured address.
	Listeners map[string]*os.File
	Log       *os.File // the mail log, or nil
	// Deliver is the local delivery channel to the master (deliver.go).
	Deliver *os.File
}

// Listener returns a new net.Listener on the inherited socket for addr
// (a dup, so that closing it leaves the socket open for a reload), or
// nil when none was inherited.
func (in *Inheritance) Listener(addr string) (net.Listener, error) {
	if in == nil || in.Listeners[addr] == nil {
		return nil, nil
	}
	return net.FileListener(in.Listeners[addr])
}

// Inherited returns what the master passed to this process, or nil when
// it was not started by a master. It unsets EnvFDs, so that programs the
// daemon runs do not take the descriptors for theirs.
func Inherited() (*Inheritance, error) {
	v, ok := os.LookupEnv(EnvFDs)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvFDs)
	in := &Inheritance{Listeners: map[string]*os.File{}}
	for i, name := range strings.Fields(v) {
		fd := uintptr(3 + i)
		var st syscall.Stat_t
		if err := syscall.Fstat(int(fd), &st); err != nil {
			return nil, fmt.Errorf("%s: fd %d (%s): %w", EnvFDs, fd, name, err)
		}
		syscall.CloseOnExec(int(fd))
		switch {
		case strings.HasPrefix(name, "listen="):
			if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
				return nil, fmt.Errorf("%s: fd %d (%s) is not a socket", EnvFDs, fd, name)
			}
			addr := strings.TrimPrefix(name, "listen=")
			in.Listeners[addr] = os.NewFile(fd, "listen "+addr)
		case name == "log":
			in.Log = os.NewFile(fd, "mail log")
		case name == "deliver":
			in.Deliver = os.NewFile(fd, "delivery channel")
		default:
			return nil, fmt.Errorf("%s: unknown descriptor %q", EnvFDs, name)
		}
	}
	return in, nil
}
