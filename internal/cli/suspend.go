package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sluice/internal/audit"
	"sluice/internal/config"
	"sluice/internal/privsep"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// suspendHelp is the manual of the suspension and audit commands of
// sluice queue (part of `sluice queue --help`'s text).
const suspendHelp = `Suspensions (delivery paused, files untouched, ending on their own):
  sluice queue suspend SELECTOR --for DURATION [--reason TEXT] [--json]
      pause delivery of the mail SELECTOR picks, now and arriving later,
      for DURATION (30m, 2h, 1d). Keys: id sender sender_domain rcpt
      domain size age (e.g. domain=*.example.com).
  sluice queue resume ID | --all
  sluice queue suspensions [--json]     the suspensions in force
  sluice queue audit [--json] [--since DURATION]
      who changed the queue, how, through which interface
`

// runQueueExtra runs the suspension and audit subcommands of sluice
// queue; handled is false for the others.
func runQueueExtra(env *Env, sub string, args []string) (code int, handled bool) {
	switch sub {
	case "suspend", "resume", "suspensions", "audit":
	default:
		return 0, false
	}
	env.Name = "sluice queue " + sub
	for _, a := range args {
		if a == "-h" || a == "--help" {
			fmt.Fprint(env.Stdout, suspendHelp)
			return 0, true
		}
	}
	o, rest, err := parseSuspendArgs(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return 2, true
	}
	cfg, err := env.LoadConfig(o.confDir)
	if err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(1, "%v", err), true
	}
	ctx := context.Background()
	switch sub {
	case "suspend":
		return queueSuspend(ctx, env, cfg, sp, o, rest), true
	case "resume":
		return queueResume(ctx, env, cfg, sp, o, rest), true
	case "suspensions":
		return queueSuspensions(ctx, env, cfg, sp, o), true
	}
	return queueAudit(env, cfg, sp, o), true
}

type suspendOpts struct {
	confDir, dur, reason, since string
	json, all                   bool
}

func parseSuspendArgs(args []string) (suspendOpts, []string, error) {
	var o suspendOpts
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		next := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "--for", "--duration":
			o.dur, err = next()
		case "--reason":
			o.reason, err = next()
		case "--since":
			o.since, err = next()
		case "-c", "--config":
			o.confDir, err = next()
		case "--json":
			o.json = true
		case "--all":
			o.all = true
		case "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		default:
			return o, nil, fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return o, nil, err
		}
	}
	return o, rest, nil
}

// mayChangeFiles is the check for editing the suspensions file without
// a daemon: root and the mail owner, as every change to the queue.
func mayChangeFiles(env *Env, cfg *config.Config) (int, bool) {
	if p, err := privsep.NewPolicy(cfg); err != nil || !p.MayChange(os.Getuid()) {
		return env.Fatalf(1, "%s", privsep.ChangeRefusal), false
	}
	return 0, true
}

// openStore opens the suspensions file for a tool running without a
// daemon.
func openStore(sp *spool.Spool) (*suspend.Store, error) {
	return suspend.Open(suspend.Config{Path: suspend.Path(sp.Root), AuditPath: audit.Path(sp.Root), NoSync: sp.NoSync})
}

func fileAudit(sp *spool.Spool, env *Env, e audit.Entry) {
	e.UID = os.Getuid()
	e.User = audit.User(e.UID)
	e.Interface = audit.CLI
	e.Tool = env.Name
	if err := audit.Append(audit.Path(sp.Root), e); err != nil {
		env.Warnf("%v", err)
	}
}

func queueSuspend(ctx context.Context, env *Env, cfg *config.Config, sp *spool.Spool, o suspendOpts, terms []string) int {
	if len(terms) == 0 || o.dur == "" {
		fmt.Fprintf(env.Stderr, "usage: sluice queue suspend SELECTOR --for DURATION [--reason TEXT]\n")
		return 2
	}
	req := suspend.Request{Selector: strings.Join(terms, " "), For: o.dur, Reason: o.reason}
	if _, err := suspend.ParseSelector(req.Selector); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return 2
	}
	if _, err := suspend.ParseDuration(req.For); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return 2
	}
	var x suspend.Suspension
	c, err := dialControl(cfg, sp)
	switch {
	case err == nil:
		defer c.Close()
		x, err = c.Suspend(ctx, req)
	case errors.Is(err, errNoDaemon):
		if code, ok := mayChangeFiles(env, cfg); !ok {
			return code
		}
		var st *suspend.Store
		if st, err = openStore(sp); err == nil {
			if x, err = st.Do(req, audit.User(os.Getuid())); err == nil {
				fileAudit(sp, env, audit.Entry{Action: "suspend", Selector: x.Selector, Changed: 1, Detail: x.Describe()})
			}
		}
	}
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if o.json {
		json.NewEncoder(env.Stdout).Encode(x)
		return 0
	}
	fmt.Fprintf(env.Stdout, "suspension %d: %s suspended until %s (%s)\n", x.ID, x.Selector, x.Until.Local().Format(time.RFC3339), x.Until.Sub(x.Created).Round(time.Second))
	return 0
}

func queueResume(ctx context.Context, env *Env, cfg *config.Config, sp *spool.Spool, o suspendOpts, args []string) int {
	var id int64
	if !o.all {
		if len(args) != 1 {
			fmt.Fprintf(env.Stderr, "usage: sluice queue resume ID | --all\n")
			return 2
		}
		var err error
		if id, err = strconv.ParseInt(strings.TrimPrefix(args[0], "#"), 10, 64); err != nil || id <= 0 {
			fmt.Fprintf(env.Stderr, "%s: bad suspension ID %q\n", env.Name, args[0])
			return 2
		}
	}
	var ended []suspend.Suspension
	c, err := dialControl(cfg, sp)
	switch {
	case err == nil:
		defer c.Close()
		ended, err = c.Resume(ctx, id)
	case errors.Is(err, errNoDaemon):
		if code, ok := mayChangeFiles(env, cfg); !ok {
			return code
		}
		var st *suspend.Store
		if st, err = openStore(sp); err == nil {
			if o.all {
				ended, err = st.ResumeAll()
			} else {
				var x suspend.Suspension
				if x, err = st.Resume(id); err == nil {
					ended = append(ended, x)
				}
			}
			if err == nil {
				for _, x := range ended {
					fileAudit(sp, env, audit.Entry{Action: "resume", Selector: x.Selector, Matched: 1, Changed: 1, Detail: fmt.Sprintf("suspension %d", x.ID)})
				}
			}
		}
	}
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if o.json {
		json.NewEncoder(env.Stdout).Encode(ended)
		return 0
	}
	for _, x := range ended {
		fmt.Fprintf(env.Stdout, "suspension %d resumed: %s\n", x.ID, x.Selector)
	}
	if len(ended) == 0 {
		fmt.Fprintln(env.Stdout, "no suspension in force")
	}
	return 0
}

func queueSuspensions(ctx context.Context, env *Env, cfg *config.Config, sp *spool.Spool, o suspendOpts) int {
	var list []suspend.Suspension
	c, err := dialControl(cfg, sp)
	switch {
	case err == nil:
		defer c.Close()
		list, err = c.Suspensions(ctx)
	case errors.Is(err, errNoDaemon):
		var st *suspend.Store
		if st, err = openStore(sp); err == nil {
			list = st.List()
		}
	}
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if o.json {
		if list == nil {
			list = []suspend.Suspension{}
		}
		json.NewEncoder(env.Stdout).Encode(list)
		return 0
	}
	if len(list) == 0 {
		fmt.Fprintln(env.Stdout, "no suspension in force")
		return 0
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUNTIL\tLEFT\tSELECTOR\tREASON\tBY")
	now := time.Now()
	for _, x := range list {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Until.Local().Format("2006-01-02 15:04:05"), x.Until.Sub(now).Round(time.Second), x.Selector, x.Reason, x.User)
	}
	w.Flush()
	return 0
}
