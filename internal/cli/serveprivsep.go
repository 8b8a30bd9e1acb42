package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/maillog"
	"sluice/internal/privsep"
	"sluice/internal/server"
	"sluice/internal/smtpd"
)

// servePrivileged is sluice serve started as root (package privsep):
// accounts, spool owners and modes, pid/master.pid, the SMTP sockets and
// the mail log are taken care of here, as root, and the mail system then
// runs in a child as mail_owner; this process only waits (and starts
// local deliveries for the child: privsep/deliver.go). handled is
// false when the process is not root (it then runs everything as
// itself), or when mail_owner is root.
func servePrivileged(env *Env, cfg *config.Config) (code int, handled bool) {
	if os.Geteuid() != 0 || cfg.Get("mail_owner") == "root" {
		return 0, false
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	// Lines for the mail log, written once it is open.
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	acc, err := privsep.EnsureAccounts(cfg.Get("mail_owner"), cfg.Get("setgid_group"), sp.Root, note)
	if err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	if err := acc.Check(); err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	fixed, err := sp.CreateOwned(acc.SpoolOwners())
	if err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	// The child reads main.cf again, as mail_owner (a missing default
	// main.cf means the embedded defaults, for it too).
	if cf := filepath.Join(cfg.Dir, "main.cf"); fileExists(cf) {
		if err := acc.Reachable(cf, true); err != nil {
			return env.Fatalf(1, "%v", err), true
		}
	}
	if err := acc.Reachable(sp.Root, false); err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	if fixed > 0 {
		note("gave %d spool entries to %s (left by a daemon that ran as root)", fixed, acc.Owner)
	}
	var logw io.Writer = env.Stderr
	if path := cfg.Get("maillog_file"); path != "" {
		f, err := privsep.OpenLog(path, acc)
		if err != nil {
			return env.Fatalf(1, "%v", err), true
		}
		defer f.Close()
		logw = io.MultiWriter(f, env.Stderr)
	}
	log := maillog.New(logw, cfg.Get("myhostname"), cfg.Get("syslog_name"), time.Now)
	for _, n := range notes {
		log.Log("master", "%s", n)
	}
	// The big queues are given to mail_owner while the daemon runs, so
	// that SMTP opens at once however many files they hold.
	go func() {
		// The walk stats every file of the big queues; at a million
		// messages that is seconds of CPU taken from the daemon's own
		// start-up scan of the same files. Its thread runs niced (the
		// thread ends with the goroutine, locked).
		runtime.LockOSThread()
		syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
		n, err := sp.GiveLeftovers(acc.SpoolOwners())
		if err != nil {
			log.Log("master", "warning: %v", err)
		}
		if n > 0 {
			log.Log("master", "gave %d more spool entries to %s (left by a daemon or tool that ran as root)", n, acc.Owner)
			// The daemon may have looked at those files before it could
			// read them: its model learns of them now, its queue runs
			// at their next scan.
			reconcileModel(sp.Root, log)
		}
	}()
	code, err = privsep.Master(privsep.MasterConfig{
		Accounts: acc, Root: sp.Root,
		Listen: listenAddrs(cfg), LogFile: cfg.Get("maillog_file"), ConfigDir: cfg.Dir,
		Args: os.Args, Env: os.Environ(),
		Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr,
		Logf: func(format string, args ...any) { log.Log("master", format, args...) },
	})
	if err != nil {
		log.Log("master", "fatal: %v", err)
		return env.Fatalf(1, "%v", err), true
	}
	return code, true
}

// inherited fills in what a root master passed to this process (the
// child of servePrivileged) into the server's options.
func inherited(opt server.Options) (server.Options, error) {
	in, err := privsep.Inherited()
	if err != nil || in == nil {
		return opt, err
	}
	opt.Listener, opt.LogFile, opt.PIDHeld = in.Listener, in.Log, true
	if in.Deliver != nil {
		conn, err := privsep.DeliveryConn(in.Deliver)
		if err != nil {
			return opt, fmt.Errorf("local delivery channel: %w", err)
		}
		in.Deliver.Close()
		opt.LocalMaster = privsep.NewDeliveryClient(conn)
	}
	return opt, nil
}

// listenAddrs are the addresses of every smtpd service (smtpd_listen,
// sluice_submission_listen, sluice_smtps_listen): the master opens them
// all, privileged ports included.
func listenAddrs(cfg *config.Config) []string {
	svcs, err := smtpd.Services(cfg)
	if err != nil {
		return cfg.List("smtpd_listen") // the child's start reports the error
	}
	var out []string
	for _, s := range svcs {
		out = append(out, s.Listen...)
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// reconcileModel asks the running daemon (through its control socket, as
// root) to compare its model of the queue with the files, waiting up to
// half a minute for it to answer.
func reconcileModel(root string, log *maillog.Logger) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := control.Dial(root)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			_, err = c.ModelReconcile(ctx)
			cancel()
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			log.Log("master", "warning: could not have the daemon reconcile its queue model: %v", err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
