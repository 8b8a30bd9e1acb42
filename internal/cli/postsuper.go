package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"sluice/internal/manage"
	"sluice/internal/spool"
)

// postsuperHelp is postsuper's manual.
const postsuperHelp = `usage: postsuper [-c config_dir] [-d queue_id] [-e queue_id] [-f queue_id]
                 [-h queue_id] [-H queue_id] [-p] [-r queue_id] [-s] [-S] [-v] [queue...]

Queue maintenance, as Postfix's postsuper, with the same flags, messages
and exit status. Superuser only. Each queue_id may be ALL (every message in
the queues searched) or - (read one ID per line from standard input);
trailing queue names (hold, incoming, active, deferred, maildrop) limit
where IDs are looked for.

  -d queue_id   delete the message and its defer, bounce and trace logs
  -h queue_id   put the message on hold (incoming, active, deferred)
  -H queue_id   release it from hold into deferred, due at its old time
  -e queue_id   expire it: it is returned to the sender at its next attempt
  -f queue_id   expire it and release it from hold
  -r queue_id   requeue it: back through pickup and cleanup with a new ID
  -s            fix queue file names that do not match their inode and
                hash directory placement
  -S            as -s, also for long queue IDs
  -p            purge temporary files left behind by a crash
  -c dir        configuration directory (default $MAIL_CONFIG, else /etc/sluice)
  -v            verbose (ignored)

Without options it runs -s -p. With the sluice daemon running, actions go
through its control socket, so no action races with a delivery; on a
running Postfix, they go through Postfix's own postsuper.
`

var postsuperQueueNames = []string{spool.Hold, spool.Incoming, spool.Active, spool.Deferred, spool.Maildrop}

// postsuperOp is one -d/-h/-H/-e/-f/-r option in command-line order.
type postsuperOp struct {
	flag byte
	arg  string
}

// psCounts are the summary counters.
type psCounts struct {
	requeued, deleted, expired, held, released int
	want                                       map[byte]bool
}

func runPostsuper(env *Env) int {
	opts, operands, err := Getopt(env.Args, "c:d:e:f:h:H:pr:sSv")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return env.Fatalf(1, "usage: postsuper [-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]")
	}
	var confDir string
	var ops []postsuperOp
	fix, purge := false, false
	for _, o := range opts {
		switch o.Name {
		case 'c':
			confDir = o.Arg
		case 'd', 'e', 'f', 'h', 'H', 'r':
			ops = append(ops, postsuperOp{o.Name, o.Arg})
		case 's', 'S':
			fix = true
		case 'p':
			purge = true
		}
	}
	if len(ops) == 0 && !fix && !purge {
		fix, purge = true, true
	}
	if os.Geteuid() != 0 {
		return env.Fatalf(1, "use of this command is reserved for the superuser")
	}
	for _, q := range operands {
		if !contains(postsuperQueueNames, q) {
			return env.Fatalf(1, "invalid directory name: %s", q)
		}
	}
	cfg, err := env.LoadConfig(confDir)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if code, handled := postfixPassthrough(env, cfg, "postsuper"); handled {
		return code
	}
	q, closeQ, err := openQueue(env, cfg, sp)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	defer closeQ()
	ctx := context.Background()
	if fix {
		n, err := fixNames(sp)
		if err != nil {
			env.Warnf("%v", err)
		}
		if n > 0 {
			fmt.Fprintf(env.Stderr, "%s: Renamed to match inode number: %d message%s\n", env.Name, n, plural(n))
			env.Warnf("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS")
		}
	}
	if purge {
		purgeTemporary(sp, time.Now())
	}
	c := psCounts{want: map[byte]bool{}}
	for _, op := range ops {
		c.want[op.flag] = true
		if op.flag == 'f' {
			c.want['e'], c.want['H'] = true, true
		}
		var ids []string
		all := false
		switch op.arg {
		case "ALL":
			all = true
		case "-":
			// Each "-" reads standard input anew, as Postfix's does:
			// a second one finds it at its end.
			ids = readIDs(env)
		default:
			ids = []string{op.arg}
		}
		for _, step := range postsuperSteps(op.flag) {
			queues := restrict(manage.DefaultQueues(step), operands)
			if step == manage.OpExpire || step == manage.OpRequeue {
				queues = restrict([]string{spool.Hold, spool.Incoming, spool.Active, spool.Deferred}, operands)
			}
			if step == manage.OpDelete {
				queues = restrict(postsuperQueueNames, operands)
			}
			targets := ids
			if all {
				targets = listIDs(sp, queues)
			}
			report := func(out manage.Outcome, err error) {
				if err != nil {
					if !errors.Is(err, manage.ErrNotFound) && !errors.Is(err, fs.ErrNotExist) {
						env.Warnf("%s: %v", out.ID, err)
					}
					return
				}
				if !out.Changed {
					return
				}
				c.count(step)
				if !all {
					fmt.Fprintf(env.Stderr, "%s: %s: %s\n", env.Name, out.ID, psVerb(step))
				}
			}
			// Valid IDs go to the queue in batches; a warning for an
			// invalid one comes in its place in the order, as Postfix's.
			var batch []string
			flush := func() error {
				err := q.ActAll(ctx, step, batch, queues, report)
				batch = batch[:0]
				return err
			}
			for _, id := range targets {
				if spool.ValidID(id) {
					batch = append(batch, id)
					continue
				}
				if err := flush(); err != nil {
					return env.Fatalf(1, "%v", err)
				}
				env.Warnf("invalid mail queue id: %s", id)
			}
			if err := flush(); err != nil {
				return env.Fatalf(1, "%v", err)
			}
		}
	}
	c.print(env)
	return 0
}

// postsuperSteps maps a flag to the actions it performs, in order.
func postsuperSteps(flag byte) []manage.Op {
	switch flag {
	case 'd':
		return []manage.Op{manage.OpDelete}
	case 'h':
		return []manage.Op{manage.OpHold}
	case 'H':
		return []manage.Op{manage.OpRelease}
	case 'e':
		return []manage.Op{manage.OpExpire}
	case 'f':
		return []manage.Op{manage.OpExpire, manage.OpRelease}
	case 'r':
		return []manage.Op{manage.OpRequeue}
	}
	return nil
}

func psVerb(op manage.Op) string {
	if v := manage.PostsuperVerb(op); v != "" {
		return v
	}
	return string(op)
}

func (c *psCounts) count(op manage.Op) {
	switch op {
	case manage.OpDelete:
		c.deleted++
	case manage.OpHold:
		c.held++
	case manage.OpRelease:
		c.released++
	case manage.OpExpire:
		c.expired++
	case manage.OpRequeue:
		c.requeued++
	}
}

// print writes the summary lines in Postfix's order.
func (c *psCounts) print(env *Env) {
	line := func(flag byte, label string, n int) {
		if c.want[flag] {
			fmt.Fprintf(env.Stderr, "%s: %s: %d message%s\n", env.Name, label, n, plural(n))
		}
	}
	line('r', "Requeued", c.requeued)
	line('d', "Deleted", c.deleted)
	line('e', "Force-expired", c.expired)
	line('h', "Placed on hold", c.held)
	line('H', "Released from hold", c.released)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// restrict keeps the queues of def that the operands name (all of def
// when there are no operands).
func restrict(def, operands []string) []string {
	if len(operands) == 0 {
		return def
	}
	var out []string
	for _, q := range def {
		if contains(operands, q) {
			out = append(out, q)
		}
	}
	return out
}

func readIDs(env *Env) []string {
	var ids []string
	sc := bufio.NewScanner(env.Stdin)
	for sc.Scan() {
		ids = append(ids, strings.TrimSpace(sc.Text()))
	}
	return ids
}

// listIDs returns the IDs of every file in the queues.
func listIDs(sp *spool.Spool, queues []string) []string {
	var ids []string
	for _, q := range queues {
		ents, err := sp.List(q)
		if err != nil {
			continue
		}
		for _, e := range ents {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// fixNames renames short-ID files whose inode part does not match their
// inode, and moves files into the hash directory they belong in, as
// postsuper -s does. It returns the number of files renamed.
func fixNames(sp *spool.Spool) (int, error) {
	renamed := 0
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Maildrop} {
		ents, err := sp.List(q)
		if err != nil {
			return renamed, err
		}
		for _, e := range ents {
			path := sp.Root + "/" + e.Rel
			fi, err := os.Lstat(path)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			id := e.ID
			if info, err := spool.ParseID(id); err == nil && !info.Long {
				if want := spool.ShortIDFor(id, fi); want != id {
					if _, err := os.Lstat(sp.Path(q, want)); err == nil {
						continue // never replace another file
					}
					if err := sp.MakeHashDir(q, want); err != nil {
						return renamed, err
					}
					if err := os.Rename(path, sp.Path(q, want)); err != nil {
						return renamed, fmt.Errorf("rename %s: %w", e.Rel, err)
					}
					for _, l := range []string{spool.Defer, spool.Bounce, spool.Trace, spool.History} {
						if _, err := os.Lstat(sp.Path(l, id)); err == nil {
							sp.MakeHashDir(l, want)
							os.Rename(sp.Path(l, id), sp.Path(l, want))
						}
					}
					renamed++
					continue
				}
			}
			if e.Rel != sp.RelPath(q, id) {
				if err := sp.MakeHashDir(q, id); err == nil {
					os.Rename(path, sp.Path(q, id))
				}
			}
		}
	}
	return renamed, nil
}

// purgeTemporary removes what a crash leaves behind: message files that
// never became ready (mode not 0700) and are over a week old, as
// postsuper -p does.
func purgeTemporary(sp *spool.Spool, now time.Time) {
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Maildrop} {
		ents, err := sp.List(q)
		if err != nil {
			continue
		}
		for _, e := range ents {
			path := sp.Root + "/" + e.Rel
			fi, err := os.Lstat(path)
			if err != nil {
				continue
			}
			if !fi.Mode().IsRegular() || (!spool.IsReady(fi.Mode()) && now.Sub(fi.ModTime()) > 7*24*time.Hour) {
				os.Remove(path)
			}
		}
	}
}
