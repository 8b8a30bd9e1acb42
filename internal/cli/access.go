package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sluice/internal/manage"
	"time"

	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/privsep"
	"sluice/internal/spool"
)

// Who may look at and flush the queue follows Postfix (see the privsep
// package): the tools check authorized_mailq_users and
// authorized_flush_users first, to refuse in Postfix's words; the daemon
// checks again on its socket with the peer's real uid.

// checkAccess refuses a caller the configuration does not let list
// (control.AccessList) or flush (control.AccessFlush), with Postfix's
// postqueue message and exit status 69. refused is false when allowed.
func checkAccess(env *Env, cfg *config.Config, what control.Access) (code int, refused bool) {
	p, err := privsep.NewPolicy(cfg)
	if err != nil {
		return env.Fatalf(exitUnavailable, "%v", err), true
	}
	uid := os.Getuid()
	switch {
	case what == control.AccessList && !p.MayList(uid):
		return env.Fatalf(exitUnavailable, "%s", privsep.ListRefusal(uid)), true
	case what == control.AccessFlush && !p.MayFlush(uid):
		return env.Fatalf(exitUnavailable, "%s", privsep.FlushRefusal(uid)), true
	}
	return 0, false
}

// queueReadable reports why this process cannot read the message queues
// of sp itself (nil when it can): then only the daemon can list them.
func queueReadable(sp *spool.Spool) error {
	for _, q := range spool.MessageQueues {
		f, err := os.Open(filepath.Join(sp.Root, q))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		_, err = f.Readdirnames(1)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", filepath.Join(sp.Root, q), err)
		}
	}
	return nil
}

// dialControl connects to the sluice daemon running on the spool, if any.
// A Postfix spool never has one. A user whom public/ keeps out (mode
// 2710, group setgid_group) connects through the setgid helper.
func dialControl(cfg *config.Config, sp *spool.Spool) (*control.Client, error) {
	if cfg.IsPostfix() {
		return nil, errNoDaemon
	}
	path := filepath.Join(sp.Root, control.SocketName)
	c, err := control.Dial(sp.Root)
	if err == nil {
		return c, nil
	}
	if _, serr := os.Stat(path); !errors.Is(serr, fs.ErrPermission) {
		return nil, err
	}
	helper, herr := privsep.HelperPath(cfg)
	if herr != nil {
		return nil, errNoDaemon
	}
	return control.DialWith(path, func() (net.Conn, error) {
		return privsep.DialPublic(helper, cfg.Dir, "sluice-control")
	})
}

// mailSystemDown is postqueue's answer to a user who cannot read the
// queue when no daemon answers (Postfix's words when showq is down).
func mailSystemDown(env *Env, why error) int {
	return env.Fatalf(exitUnavailable, "Queue report unavailable - mail system is down (%v)", why)
}

// messageSource is where sluice queue's listing subcommands get their
// messages: the files (manage.Queue) or the running daemon.
type messageSource interface {
	Each(ctx context.Context, sel *manage.Selector, opt manage.SelectOptions, fn func(*manage.Message) error) error
}

// daemonSource lists through the daemon's control socket.
type daemonSource struct{ c *control.Client }

func (d daemonSource) Each(ctx context.Context, sel *manage.Selector, opt manage.SelectOptions, fn func(*manage.Message) error) error {
	return d.c.Each(ctx, sel, opt.Full, fn)
}

// listSource reads the files when this process can, else asks the
// daemon; with neither it fails rather than list nothing.
func listSource(cfg *config.Config, q *manage.Queue) (messageSource, func(), error) {
	rerr := queueReadable(q.Spool)
	if rerr == nil {
		return q, func() {}, nil
	}
	c, err := dialControl(cfg, q.Spool)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the queue (%v) and no sluice daemon answers on it", rerr)
	}
	return daemonSource{c}, c.Close, nil
}

// queueShowBrief is sluice queue show for a user who reads the queue
// through the daemon: the message as the listing has it (no history or
// envelope details, which only the files hold).
func queueShowBrief(ctx context.Context, env *Env, src messageSource, sel *manage.Selector, o queueOpts) int {
	ids, ok := sel.IDs()
	if !ok || len(ids) == 0 {
		fmt.Fprintln(env.Stderr, "sluice queue show: give one or more queue IDs")
		return 2
	}
	found := map[string]bool{}
	err := src.Each(ctx, sel, manage.SelectOptions{Full: true}, func(m *manage.Message) error {
		found[m.ID] = true
		if o.json {
			return json.NewEncoder(env.Stdout).Encode(m)
		}
		printShow(env.Stdout, &showInfo{Message: m}, time.Now())
		return nil
	})
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	status := 0
	for _, id := range ids {
		if !found[id] {
			fmt.Fprintf(env.Stderr, "sluice queue show: %s: no such message\n", id)
			status = 1
		}
	}
	return status
}
