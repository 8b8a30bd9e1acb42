package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"sluice/internal/audit"
	"sluice/internal/manage"
	"sluice/internal/queuesvc"

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

// queueViews answers sluice queue's views and actions: the service
// (package queuesvc) on the files in this process, or the daemon's, from
// its model, through the control socket, where the HTTP API's own
// handlers answer. Either way the same code computes the answer.
type queueViews interface {
	Summary(ctx context.Context, sel, by string) (queuesvc.SummaryResult, error)
	Count(ctx context.Context, sel string) (queuesvc.CountResult, error)
	List(ctx context.Context, sel string, limit int, after string) (queuesvc.ListResult, error)
	Show(ctx context.Context, id string) (*queuesvc.Detail, error)
	Act(ctx context.Context, req queuesvc.ActRequest, progress func(done, total int)) (queuesvc.ActResult, error)
}

// localViews is the service on the files.
type localViews struct{ svc *queuesvc.Service }

func (l localViews) Summary(ctx context.Context, sel, by string) (queuesvc.SummaryResult, error) {
	s, err := queuesvc.ParseSelector(sel)
	if err != nil {
		return queuesvc.SummaryResult{}, err
	}
	return l.svc.Summary(ctx, s, by)
}

func (l localViews) Count(ctx context.Context, sel string) (queuesvc.CountResult, error) {
	s, err := queuesvc.ParseSelector(sel)
	if err != nil {
		return queuesvc.CountResult{}, err
	}
	return l.svc.Count(ctx, s)
}

func (l localViews) List(ctx context.Context, sel string, limit int, after string) (queuesvc.ListResult, error) {
	s, err := queuesvc.ParseSelector(sel)
	if err != nil {
		return queuesvc.ListResult{}, err
	}
	return l.svc.List(ctx, s, limit, after)
}

func (l localViews) Show(ctx context.Context, id string) (*queuesvc.Detail, error) {
	return l.svc.Show(ctx, id)
}

func (l localViews) Act(ctx context.Context, req queuesvc.ActRequest, progress func(done, total int)) (queuesvc.ActResult, error) {
	res, err := l.svc.Act(ctx, req, progress)
	if err == nil && !req.DryRun {
		// On the files the tool records its own change; through the
		// daemon the API's handler does.
		uid := os.Getuid()
		e := audit.Entry{Time: time.Now(), User: audit.User(uid), UID: uid, Interface: audit.CLI, Tool: "sluice queue " + string(req.Action),
			Action: string(req.Action), Selector: req.Select, Matched: res.Matched, Changed: res.Changed, Skipped: res.Skipped, Failed: res.Failed}
		if req.Select == "" || len(req.IDs) > 0 {
			e.SetIDs(req.IDs)
		}
		if aerr := audit.Append(audit.Path(l.svc.Queue.Spool.Root), e); aerr != nil {
			return res, fmt.Errorf("the change is made, but not in the audit log: %w", aerr)
		}
	}
	return res, err
}

// daemonViews asks the daemon's API handlers over the control socket.
type daemonViews struct{ c *control.Client }

func (d daemonViews) Summary(ctx context.Context, sel, by string) (queuesvc.SummaryResult, error) {
	var out queuesvc.SummaryResult
	return out, d.get(ctx, "/api/v1/summary", url.Values{"select": {sel}, "by": {by}}, &out)
}

func (d daemonViews) Count(ctx context.Context, sel string) (queuesvc.CountResult, error) {
	var out queuesvc.CountResult
	return out, d.get(ctx, "/api/v1/count", url.Values{"select": {sel}}, &out)
}

func (d daemonViews) List(ctx context.Context, sel string, limit int, after string) (queuesvc.ListResult, error) {
	var out queuesvc.ListResult
	return out, d.get(ctx, "/api/v1/messages", url.Values{"select": {sel}, "limit": {strconv.Itoa(limit)}, "after": {after}}, &out)
}

func (d daemonViews) Show(ctx context.Context, id string) (*queuesvc.Detail, error) {
	var out queuesvc.Detail
	if err := d.get(ctx, "/api/v1/messages/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (d daemonViews) Act(ctx context.Context, req queuesvc.ActRequest, progress func(done, total int)) (queuesvc.ActResult, error) {
	var out queuesvc.ActResult
	err := d.c.API(ctx, "POST", "/api/v1/actions", req, &out)
	return out, apiErr(err)
}

func (d daemonViews) get(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return apiErr(d.c.API(ctx, "GET", path, nil, out))
}

// apiErr turns the daemon's error answers back into the service's errors.
func apiErr(err error) error {
	var ae *control.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 400:
			return queuesvc.BadRequest("%s", ae.Msg)
		case 404:
			return queuesvc.ErrNotFound
		}
	}
	return err
}

// openViews is the one place that decides who answers a view of the
// queue: the daemon running on the spool (from its model), else this
// process reading the files (when it may), else nobody. On a Postfix
// spool there is no sluice daemon: the files are read (actions on a
// running Postfix go through its own postsuper: see queueAct).
func openViews(env *Env, cfg *config.Config, sp *spool.Spool) (queueViews, func(), error) {
	if r, c, _ := queueRoute(cfg, sp); r == routeDaemon {
		return daemonViews{c}, c.Close, nil
	}
	if rerr := queueReadable(sp); rerr != nil {
		return nil, nil, fmt.Errorf("cannot read the queue (%v) and no sluice daemon answers on it", rerr)
	}
	q, closeQ := fileQueue(env, cfg, sp)
	svc := &queuesvc.Service{Queue: q}
	svc.MaxLifetime, _ = cfg.Duration("maximal_queue_lifetime")
	svc.BounceLifetime, _ = cfg.Duration("bounce_queue_lifetime")
	return localViews{svc}, closeQ, nil
}

// messageSource lists selected messages (sluice probe's view of the mail
// deferred to a domain).
type messageSource interface {
	Each(ctx context.Context, sel *manage.Selector, opt manage.SelectOptions, fn func(*manage.Message) error) error
}

// viewSource lists through queueViews.
type viewSource struct{ v queueViews }

func (s viewSource) Each(ctx context.Context, sel *manage.Selector, _ manage.SelectOptions, fn func(*manage.Message) error) error {
	res, err := s.v.List(ctx, sel.String(), 0, "")
	if err != nil {
		return err
	}
	for _, m := range res.Messages {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// listSource is the messageSource of openViews.
func listSource(env *Env, cfg *config.Config, q *manage.Queue) (messageSource, func(), error) {
	v, closeV, err := openViews(env, cfg, q.Spool)
	if err != nil {
		return nil, nil, err
	}
	return viewSource{v}, closeV, nil
}
