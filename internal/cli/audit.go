package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"sluice/internal/audit"
	"sluice/internal/config"
	"sluice/internal/manage"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// queueAudit is sluice queue audit: the audit log, oldest first, since
// --since ago (30m, 2h, 1d). It reads the file, so it is for root and the mail owner.
func queueAudit(env *Env, cfg *config.Config, sp *spool.Spool, o suspendOpts) int {
	var since time.Time
	if o.since != "" {
		d, err := suspend.ParseDuration(o.since)
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
			return 2
		}
		since = time.Now().Add(-d)
	}
	enc := json.NewEncoder(env.Stdout)
	err := audit.Read(audit.Path(sp.Root), since, func(e audit.Entry) error {
		if o.json {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(env.Stdout, e.Text())
		return err
	})
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	return 0
}

// auditActor records, in the audit log, each action a tool makes on the
// files (without a daemon; through the daemon, the control socket
// records it). One entry per ActAll: the IDs and what became of them.
type auditActor struct {
	actor
	path, tool string
	warn       func(string, ...any)
}

// withAudit wraps the files' actor of a tool (openQueue).
func withAudit(env *Env, sp *spool.Spool, a actor) actor {
	return auditActor{actor: a, path: audit.Path(sp.Root), tool: env.Name, warn: env.Warnf}
}

func (a auditActor) ActAll(ctx context.Context, op manage.Op, ids []string, queues []string, fn func(manage.Outcome, error)) error {
	uid := os.Getuid()
	e := audit.Entry{User: audit.User(uid), UID: uid, Interface: audit.CLI, Tool: a.tool, Action: string(op)}
	if a.tool == "queue" {
		e.Tool = "sluice queue " + string(op) // the command table's name; the subcommand is op
	}
	e.SetIDs(ids)
	err := a.actor.ActAll(ctx, op, ids, queues, func(out manage.Outcome, err error) {
		switch {
		case err == manage.ErrNotFound:
			e.Skipped++
		case err != nil:
			e.Matched++
			e.Failed++
		case out.Changed:
			e.Matched++
			e.Changed++
		default:
			e.Matched++
			e.Skipped++
		}
		fn(out, err)
	})
	if aerr := audit.Append(a.path, e); aerr != nil {
		a.warn("%v", aerr)
	}
	return err
}
