package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/showq"
	"sluice/internal/spool"
)

// postqueueHelp is postqueue's manual, as `sluice help postqueue` shows it.
const postqueueHelp = `usage: postqueue [-v] [-c config_dir] -p | -j | -f | -i queue_id | -s site

List or flush the mail queue, as Postfix's postqueue(1).

  -p          list the queue in the traditional sendmail/mailq format
  -j          list the queue as JSON, one object per message per line
  -f          flush: attempt to deliver all queued mail
  -i queue_id schedule immediate delivery of one deferred message
  -s site     schedule immediate delivery of mail queued for site
  -c dir      read main.cf from dir (also MAIL_CONFIG)
  -v          accepted and ignored

The listing reads the queue directory (queue_directory): maildrop, active,
incoming, deferred and hold, in that order, each in directory order.
Markers after the queue ID: * active, ! on hold, # forced to expire.
`

// postqueueOptions is postqueue's getopt string.
const postqueueOptions = "c:fi:jps:v"

// Postfix's postqueue exits with EX_UNAVAILABLE (69) for usage errors as
// well as for failures.
const (
	exitUnavailable = 69
	postqueueUsage  = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"
)

// queueAction is what one postqueue invocation asks for.
type queueAction byte

const (
	actionNone  queueAction = 0
	actionList  queueAction = 'p'
	actionJSON  queueAction = 'j'
	actionFlush queueAction = 'f'
	actionID    queueAction = 'i'
	actionSite  queueAction = 's'
)

// runPostqueue is postqueue(1): the mode options exclude each other;
// usage errors come before the configuration is read, except that a
// missing mode is reported only after it (as Postfix does).
func runPostqueue(env *Env) int {
	if len(env.Args) == 1 && env.Args[0] == "--help" {
		fmt.Fprint(env.Stdout, postqueueHelp)
		return 0
	}
	opts, operands, err := Getopt(env.Args, postqueueOptions)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return env.Fatalf(exitUnavailable, postqueueUsage)
	}
	var configDir, arg string
	action := actionNone
	for _, o := range opts {
		switch o.Name {
		case 'c':
			configDir = o.Arg
		case 'v':
			// Verbose logging: nothing to add to a listing.
		default:
			if action != actionNone {
				return env.Fatalf(exitUnavailable, postqueueUsage)
			}
			action, arg = queueAction(o.Name), o.Arg
		}
	}
	if len(operands) > 0 {
		return env.Fatalf(exitUnavailable, postqueueUsage)
	}
	cfg, err := env.LoadConfig(configDir)
	if err != nil {
		return env.Fatalf(exitUnavailable, "%s", configError(err))
	}
	switch action {
	case actionList, actionJSON:
		return listQueue(env, cfg, action == actionJSON)
	case actionFlush, actionID, actionSite:
		return flushQueue(env, cfg, action, arg)
	}
	return env.Fatalf(exitUnavailable, postqueueUsage)
}

// configError words a failure to read main.cf as Postfix does:
// "open /etc/postfix/main.cf: No such file or directory".
func configError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + " " + pe.Path + ": " + strerror(pe.Err)
	}
	return err.Error()
}

// strerror gives a system error the capital C's strerror() starts it with.
func strerror(err error) string {
	s := err.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

// flushQueue serves -f, -i ID (arg) and -s SITE (arg). They ask the
// running daemon through its control socket (on a running Postfix, its
// own postqueue); with no daemon they fail as Postfix's do, "mail system
// is down". -i for an ID that is not queued succeeds, as Postfix's does.
// Unlike Postfix, -s needs no fast_flush_domains entry: sluice keeps no
// per-site logs and flushes the site's deferred mail from its queue.
func flushQueue(env *Env, cfg *config.Config, action queueAction, arg string) int {
	if action == actionID && !spool.ValidID(arg) {
		return env.Fatalf(exitUnavailable, "Cannot flush queue ID - invalid name: %q", arg)
	}
	if code, refused := checkAccess(env, cfg, control.AccessFlush); refused {
		return code
	}
	if code, handled := postfixPassthrough(env, cfg, "postqueue"); handled {
		return code
	}
	if action == actionSite && cfg.IsPostfix() {
		return env.Fatalf(exitUnavailable, "Flush service is not configured for destination %q", arg)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(exitUnavailable, "%v", err)
	}
	r, c, _ := queueRoute(cfg, sp)
	if r != routeDaemon {
		if action == actionFlush {
			env.Warnf("unable to look up public/qmgr: No such file or directory")
		} else {
			env.Warnf("connect to public/flush: No such file or directory")
		}
		return env.Fatalf(exitUnavailable, "Cannot flush mail queue - mail system is down")
	}
	defer c.Close()
	ctx := context.Background()
	switch action {
	case actionFlush:
		err = c.Flush(ctx, "")
	case actionSite:
		err = c.Flush(ctx, arg)
	case actionID:
		_, err = c.Act(ctx, manage.OpRetry, arg, nil)
		if errors.Is(err, manage.ErrNotFound) {
			err = nil
		}
	}
	var fatal *control.FatalError
	if errors.As(err, &fatal) {
		return env.Fatalf(exitUnavailable, "%s", fatal.Msg)
	}
	if err != nil {
		return env.Fatalf(exitUnavailable, "Cannot flush mail queue: %v", err)
	}
	return 0
}

// listQueue prints the queue listing (mailq, postqueue -p, postqueue -j)
// from a scan of the queue directory.
func listQueue(env *Env, cfg *config.Config, asJSON bool) int {
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(exitUnavailable, "%v", err)
	}
	opt, err := showqOptions(cfg)
	if err != nil {
		return env.Fatalf(exitUnavailable, "%v", err)
	}
	if code, refused := checkAccess(env, cfg, control.AccessList); refused {
		return code
	}
	if code, ok := listFromDaemon(env, cfg, sp, opt, asJSON); ok {
		return code
	}
	// No daemon: read the files, if this user can. One who cannot gets
	// an error, never an empty listing.
	if err := queueReadable(sp); err != nil {
		return mailSystemDown(env, err)
	}
	opt.Warn = func(msg string) { env.Warnf("%s", msg) }

	var render func(*showq.Message) error
	var closeOut func() error
	if asJSON {
		jw := showq.NewJSONWriter(env.Stdout)
		render, closeOut = jw.Write, jw.Close
	} else {
		tw := showq.NewTextWriter(env.Stdout, sp.LongIDs, localZone(env))
		render, closeOut = tw.Write, tw.Close
	}
	write := func(m *showq.Message) error {
		if err := render(m); err != nil {
			return outputError{err}
		}
		return nil
	}
	if err := showq.Scan(sp, opt, write); err != nil {
		// An output failure (a closed pipe: mailq | head) just ends
		// the listing; a queue that cannot be read is reported.
		if errors.As(err, new(outputError)) {
			return exitUnavailable
		}
		// No "Mail queue is empty" or partial summary before the error.
		return env.Fatalf(exitUnavailable, "Queue report unavailable: %v", err)
	}
	if err := closeOut(); err != nil {
		return exitUnavailable
	}
	return 0
}

// listFromDaemon has the running daemon render the listing from its
// cache, with this configuration's parameters and this process's time
// zone; the bytes are those of a scan. ok is false when there is no
// daemon, or it failed before anything was printed: the caller then reads
// the files itself.
func listFromDaemon(env *Env, cfg *config.Config, sp *spool.Spool, opt showq.Options, asJSON bool) (code int, ok bool) {
	r, c, _ := queueRoute(cfg, sp)
	if r != routeDaemon {
		return 0, false
	}
	defer c.Close()
	req := control.ListingRequest{
		JSON: asJSON, LongIDs: sp.LongIDs, TZ: zoneName(env),
		EmptyAddress: opt.EmptyAddress, DupFilterLimit: opt.DupFilterLimit, UTF8: opt.UTF8,
	}
	started, err := c.Listing(req, env.Stdout, func(msg string) { env.Warnf("%s", msg) })
	var fatal *control.FatalError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &fatal):
		return env.Fatalf(exitUnavailable, "%s", fatal.Msg), true
	case errors.As(err, new(*control.OutputError)):
		return exitUnavailable, true
	case started:
		return env.Fatalf(exitUnavailable, "Queue report unavailable: %v", err), true
	}
	return 0, false
}

// zoneName is the TZ to tell the daemon so that it shows times in the
// zone localZone picks: TZ itself, or "" for the system zone, or UTC when
// Go found no system zone (or TZ is set but empty).
func zoneName(env *Env) string {
	if env.Getenv != nil {
		if tz := env.Getenv("TZ"); tz != "" {
			return tz
		}
	}
	if time.Local.String() != "Local" {
		return "UTC"
	}
	return ""
}

// outputError marks a failure to write the listing.
type outputError struct{ err error }

func (e outputError) Error() string { return e.err.Error() }
func (e outputError) Unwrap() error { return e.err }

// showqOptions reads the parameters a listing depends on.
func showqOptions(cfg *config.Config) (showq.Options, error) {
	opt := showq.DefaultOptions()
	limit, err := cfg.Int("duplicate_filter_limit")
	if err != nil {
		return opt, err
	}
	opt.DupFilterLimit = int(limit)
	opt.EmptyAddress = cfg.Get("empty_address_recipient")
	opt.UTF8 = smtputf8Enable(cfg)
	return opt, nil
}

// smtputf8Enable returns smtputf8_enable, Postfix's default expression
// evaluated.
func smtputf8Enable(cfg *config.Config) bool { return cfg.SMTPUTF8Enable() }

// localZone is the time zone arrival times are shown in: the process's
// local zone, which TZ sets. Env.Getenv is consulted so in-process tests
// can pick the zone.
func localZone(env *Env) *time.Location {
	tz := ""
	if env.Getenv != nil {
		tz = env.Getenv("TZ")
	}
	if tz == "" {
		return time.Local
	}
	return showq.Zone(tz)
}
