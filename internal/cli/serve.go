package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"sluice/internal/config"
	"sluice/internal/server"
)

// serveHelp is serve's manual.
const serveHelp = `usage: sluice serve [-c config_dir]

Runs the mail system: SMTP intake on smtpd_listen (default
127.0.0.1:2525) and, when set, the submission and smtps services
(sluice_submission_listen, sluice_smtps_listen), pickup of local submissions (sluice sendmail), the queue
manager, SMTP delivery, bounces, the control socket the queue tools use
while the daemon runs, and the mail log.

The configuration is config_dir/main.cf (-c, or MAIL_CONFIG, or
/etc/sluice). Without /etc/sluice/main.cf sluice runs on its embedded
defaults (sluice postconf -d lists them): the spool is
queue_directory = /var/spool/sluice, created when missing, and the mail
log goes to maillog_file = /var/log/sluice/mail.log and to standard
error. An unknown or malformed parameter stops the start with an error
naming it.

Only one daemon runs on a spool: queue_directory/pid/master.pid holds
the daemon's process ID and stays locked (flock) while it runs; a second
start is refused with "fatal: the sluice mail system is already running".
A pid file left by a daemon that was killed holds no lock and blocks
nothing. At start, temporary files that killed processes left in the
spool are removed (each one is logged).

Signals: SIGHUP reloads main.cf, as postfix reload does: a
configuration that fails its checks is refused and the running one is
kept; a good one applies to new SMTP connections and new deliveries,
while SMTP sessions and deliveries in progress go on undisturbed (the
listening sockets stay open). The mail log then shows "reload -- version
V, configuration DIR". SIGTERM or SIGINT stops accepting mail, gives
deliveries and sessions in flight sluice_shutdown_grace (10s) to end,
cuts what is left (such messages go back to the incoming queue at the
next start) and exits 0, after "terminating on signal 15".

Started as root, serve creates mail_owner and setgid_group when they
are missing, gives the spool Postfix's owners and modes, opens the SMTP
listeners and the mail log, and runs the mail system in a child process
as mail_owner; the root process forwards signals, exits as the child
does, and starts the local delivery agent (sluice local-deliver, as root,
with this configuration) for each delivery to a local mailbox, file or
command the child hands it. Started as another user, it runs as that
user.
`

func runServe(env *Env) int {
	opts, operands, err := Getopt(env.Args, "c:h")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		fmt.Fprint(env.Stderr, serveHelp)
		return 2
	}
	dir := ""
	for _, o := range opts {
		switch o.Name {
		case 'c':
			dir = o.Arg
		case 'h':
			fmt.Fprint(env.Stdout, serveHelp)
			return 0
		}
	}
	if len(operands) > 0 {
		fmt.Fprint(env.Stderr, serveHelp)
		return 2
	}
	load := func() (*config.Config, error) {
		cfg, err := env.LoadConfig(dir)
		if err != nil {
			return nil, err
		}
		if err := server.Check(cfg); err != nil {
			return nil, fmt.Errorf("%s/main.cf: %w", cfg.Dir, err)
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if code, handled := servePrivileged(env, cfg); handled {
		return code
	}
	var logCopy io.Writer = env.Stderr
	if isDevNull(env.Stderr) {
		logCopy = nil // the copy would cost a write per log batch for nothing
	}
	base, err := inherited(server.Options{LogCopy: logCopy})
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	// SLUICE_CPUPROFILE=FILE writes a Go CPU profile of the whole run, for
	// the relay benchmark.
	if path := env.Getenv("SLUICE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			defer f.Close()
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	if env.Getenv("GOGC") == "" {
		// The daemon's heap is small and short-lived garbage is most
		// of it; collecting less often costs little memory and saves
		// CPU per message.
		debug.SetGCPercent(400)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *server.Server, 1)
	done := make(chan error, 1)
	runOpts := base
	runOpts.Config = cfg
	runOpts.Ready = func(s *server.Server) { ready <- s }
	go func() { done <- server.Run(ctx, runOpts) }()
	var srv *server.Server
	for {
		select {
		case srv = <-ready:
		case err := <-done:
			if err != nil {
				return env.Fatalf(1, "%v", err)
			}
			return 0
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					return env.Fatalf(1, "%v", err)
				}
				return 0
			}
			if srv == nil {
				env.Warnf("reload ignored: the mail system is still starting")
				continue
			}
			next, err := load()
			if err == nil {
				err = srv.Reload(next)
			}
			if err != nil {
				env.Warnf("reload refused, keeping the running configuration: %v", err)
			}
		}
	}
}

// isDevNull reports whether w is /dev/null opened as a file.
func isDevNull(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err == nil && os.SameFile(fi, null)
}
