package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/maillog"
	"sluice/internal/manage"
	"sluice/internal/spool"
)

// actor changes the queue: directly on the files, or through the running
// daemon's control socket. fn gets each message's outcome; an error for
// one message (manage.ErrNotFound among them) does not stop the others.
type actor interface {
	ActAll(ctx context.Context, op manage.Op, ids []string, queues []string, fn func(manage.Outcome, error)) error
}

// controlActor adapts the control client to actor.
type controlActor struct{ c *control.Client }

func (a controlActor) ActAll(ctx context.Context, op manage.Op, ids []string, queues []string, fn func(manage.Outcome, error)) error {
	return a.c.ActAll(ctx, op, ids, queues, func(r control.ActResult) {
		var err error
		switch {
		case r.NotFound:
			err = manage.ErrNotFound
		case r.Error != "":
			err = errors.New(r.Error)
		}
		fn(r.Outcome, err)
	})
}

// openQueue returns the way to act on the queue: through the daemon when
// one runs on this spool, else on the files directly. Either way each
// change is logged as Postfix's postsuper logs it: by the daemon, whose
// mail log takes the action's events, or here (fileQueue).
func openQueue(env *Env, cfg *config.Config, sp *spool.Spool) (actor, func(), error) {
	r, c, err := queueRoute(cfg, sp)
	if err != nil {
		return nil, nil, err
	}
	if r == routeDaemon {
		return controlActor{c}, c.Close, nil
	}
	q, closeQ := fileQueue(env, cfg, sp)
	// On the files the tool audits its own changes; through the daemon
	// the control socket does.
	return withAudit(env, sp, q), closeQ, nil
}

// fileQueue is the queue on the files, for a tool that acts without a
// daemon: its changes go to the mail log in postsuper's words
// ("postfix/postsuper[PID]: ID: removed", "placed on hold", "released
// from hold", "expired", "requeued"), from the events manage publishes.
func fileQueue(env *Env, cfg *config.Config, sp *spool.Spool) (*manage.Queue, func()) {
	log, closeLog := actionLog(cfg)
	q := &manage.Queue{Spool: sp, Warn: env.Warnf}
	if log != nil {
		q.Events, q.Log = log, log.Log
	}
	return q, closeLog
}

// actionLog opens the mail log (maillog_file) for appending, as the
// daemon writes it; nil when there is none or it cannot be opened (a
// user without the right to write it changes no queue either).
func actionLog(cfg *config.Config) (*maillog.Logger, func()) {
	path := cfg.Get("maillog_file")
	if path == "" {
		return nil, func() {}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, func() {}
	}
	return maillog.New(f, cfg.Get("myhostname"), cfg.Get("syslog_name"), time.Now), func() { f.Close() }
}

// route is who answers a queue tool's request.
type route int

const (
	// routeFiles: this process reads (and changes) the files itself.
	routeFiles route = iota
	// routeDaemon: the sluice daemon running on the spool answers, from
	// its model, and acts through its queue manager.
	routeDaemon
	// routePostfix: a Postfix master runs on the spool; changes go
	// through Postfix's own tools, which own its locking. Listings read
	// the files, which Postfix's showq would read the same way.
	routePostfix
)

// queueRoute is the one place that decides who answers a queue tool
// (mailq, postqueue, qshape, postsuper, sluice queue): Postfix's own
// tools on a spool a running Postfix owns, else the sluice daemon on the
// spool when one answers on its control socket (the client is returned;
// the caller closes it), else this process on the files. sp may be nil
// when the tool needs no spool to know (a Postfix passthrough).
func queueRoute(cfg *config.Config, sp *spool.Spool) (route, *control.Client, error) {
	if postfixLive(cfg) {
		return routePostfix, nil, nil
	}
	if sp == nil {
		return routeFiles, nil, nil
	}
	c, err := dialControl(cfg, sp)
	switch {
	case err == nil:
		return routeDaemon, c, nil
	case errors.Is(err, errNoDaemon):
		return routeFiles, nil, nil
	}
	return routeFiles, nil, err
}

// postfixLive reports whether a Postfix master process runs on the
// configuration's spool (its pid/master.pid names a live process).
func postfixLive(cfg *config.Config) bool {
	if !cfg.IsPostfix() {
		return false
	}
	b, err := os.ReadFile(filepath.Join(cfg.Get("queue_directory"), "pid", "master.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM)
}

// postfixPassthrough runs Postfix's own tool with our arguments when a
// Postfix master runs on the spool: Postfix's tools own its locking and
// signalling. handled is false when Postfix is not running there.
func postfixPassthrough(env *Env, cfg *config.Config, tool string) (code int, handled bool) {
	if r, _, _ := queueRoute(cfg, nil); r != routePostfix {
		return 0, false
	}
	dir := cfg.Get("command_directory")
	if dir == "" {
		dir = "/usr/sbin"
	}
	cmd := exec.Command(filepath.Join(dir, tool), env.Args...)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+cfg.Dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.Stdin, env.Stdout, env.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), true
		}
		return env.Fatalf(1, "run Postfix's %s: %v", tool, err), true
	}
	return 0, true
}

var errNoDaemon = control.ErrNoDaemon
