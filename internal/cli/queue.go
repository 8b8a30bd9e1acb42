package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/privsep"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

// queueHelp is the manual of `sluice queue`.
const queueHelp = `usage: sluice queue COMMAND [options] [selector...]

See into and steer the queue. Every command takes the same selector; every
command prints JSON with --json. With the sluice daemon running, actions go
through it (no action races a delivery); on a running Postfix
(-c /etc/postfix), through Postfix's own postsuper and postqueue.

Commands:
  list      one line per selected message
  count     how many messages (and pending recipients) are selected
  summary   selected messages grouped --by reason (default), domain,
            sender, age or queue: "why is it stuck" on one screen
  show ID   everything about one message: envelope, each recipient's
            state, every delivery attempt, the next attempt and expiry
  delete    delete the selected messages (postsuper -d)
  hold      put them on hold (postsuper -h)
  release   release them from hold (postsuper -H)
  requeue   requeue them through cleanup with new IDs (postsuper -r)
  retry     try them again now, same IDs (postqueue -i)
  expire    return them to sender at their next attempt (postsuper -e)

Options:
  -c DIR      configuration directory (default $MAIL_CONFIG, else /etc/sluice)
  --json      print JSON (one object per line for list; one object otherwise)
  --by KEY    for summary: reason, domain, sender, age or queue
  --dry-run   for actions: show what would change, change nothing
  --yes       for actions: do not ask for confirmation
  --all       for actions: allow an empty selector (every message)

Selector terms:
  id=ID  queue=deferred  sender=a@b  rcpt=user@example.com  rcpt=*@example.com
  domain=example.com  sender_domain=x.org  reason=refused  reason~'4\.7\.[0-9]'
  class=greylisting  age>2h  age<30m  size>1M  attempts>=3
  rcpts=1 (only one recipient left: with rcpt=, the mail to that address alone)
  rcpt_ci=, sender_ci= (as rcpt= and sender=, ignoring the local part's case)
  How terms combine: terms with different keys must all match. With one
  key, the = and ~ terms are alternatives (rcpt=a@x rcpt=b@y: either), and
  the comparisons != > < >= <= must all hold ('age>1d' 'age<2d': between
  one and two days old). Operators: = != ~ > < >= <= (quote terms with
  < or > for the shell). A bare queue ID means id=ID; any other bare word
  is an error (write queue=hold, not hold). * and ? are wildcards. Domains
  compare without regard to case; the local part of rcpt= and sender=
  compares exactly, as the mailq | awk pipeline of postsuper(1) does.
Reason classes: ` + "%s" + `
`

func runQueue(env *Env) int {
	if len(env.Args) == 0 || env.Args[0] == "-h" || env.Args[0] == "--help" || env.Args[0] == "help" {
		fmt.Fprintf(env.Stdout, queueHelp, strings.Join(manage.ClassNames(), ", "))
		if len(env.Args) == 0 {
			return 2
		}
		return 0
	}
	sub, rest := env.Args[0], env.Args[1:]
	if code, handled := runQueueExtra(env, sub, rest); handled {
		return code
	}
	if sub == "watch" {
		return runQueueWatch(env, rest)
	}
	o, err := parseQueueArgs(rest)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue: %v\n", err)
		return 2
	}
	sel, err := manage.ParseSelector(o.terms...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue %s: %v\n", sub, err)
		return 2
	}
	cfg, err := env.LoadConfig(o.confDir)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue: %v\n", err)
		return 1
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue: %v\n", err)
		return 1
	}
	ctx := context.Background()
	switch sub {
	case "list", "count", "summary", "show":
		env.Name = "sluice queue " + sub
		if code, refused := checkAccess(env, cfg, control.AccessList); refused {
			return code
		}
		v, closeV, err := openViews(env, cfg, sp)
		if err != nil {
			return env.Fatalf(1, "%v", err)
		}
		defer closeV()
		switch sub {
		case "list":
			return queueList(ctx, env, v, sel, o)
		case "count":
			return queueCount(ctx, env, v, sel, o)
		case "summary":
			return queueSummary(ctx, env, v, sel, o)
		}
		return queueShow(ctx, env, v, sel, o)
	}
	op := manage.Op(sub)
	known := false
	for _, k := range manage.Ops {
		known = known || k == op
	}
	if !known {
		fmt.Fprintf(env.Stderr, "sluice queue: unknown command %q (list, count, summary, show, delete, hold, release, requeue, retry, expire)\n", sub)
		return 2
	}
	// Changes are root's and mail_owner's, as postsuper's are.
	// retry is postqueue -i: a flush, for authorized_flush_users.
	if op == manage.OpRetry {
		env.Name = "sluice queue " + sub
		if code, refused := checkAccess(env, cfg, control.AccessFlush); refused {
			return code
		}
	} else if p, err := privsep.NewPolicy(cfg); err != nil || !p.MayChange(os.Getuid()) {
		env.Name = "sluice queue " + sub
		return env.Fatalf(1, "%s", privsep.ChangeRefusal)
	}
	return queueAct(ctx, env, cfg, sp, sel, op, o)
}

type queueOpts struct {
	confDir           string
	json, dryRun, yes bool
	all               bool
	by                string
	terms             []string
}

func parseQueueArgs(args []string) (queueOpts, error) {
	o := queueOpts{by: "reason"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") {
				return v, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--json":
			o.json = true
		case "--dry-run", "-n":
			o.dryRun = true
		case "--yes", "-y":
			o.yes = true
		case "--all":
			o.all = true
		case "--by":
			v, err := val()
			if err != nil {
				return o, err
			}
			o.by = v
		case "-c", "--config":
			v, err := val()
			if err != nil {
				return o, err
			}
			o.confDir = v
		case "--":
			o.terms = append(o.terms, args[i+1:]...)
			return o, nil
		default:
			if strings.HasPrefix(a, "-") && !strings.Contains(a, "=") && !strings.ContainsAny(a, "<>~") {
				return o, fmt.Errorf("unknown option %s", a)
			}
			o.terms = append(o.terms, a)
		}
	}
	valid := false
	for _, b := range manage.SummaryBy {
		valid = valid || b == o.by
	}
	if !valid {
		return o, fmt.Errorf("--by %s: want one of %s", o.by, strings.Join(manage.SummaryBy, ", "))
	}
	return o, nil
}

func queueList(ctx context.Context, env *Env, v queueViews, sel *manage.Selector, o queueOpts) int {
	res, err := v.List(ctx, sel.String(), 0, "")
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue list: %v\n", err)
		return 1
	}
	w := bufio.NewWriterSize(env.Stdout, 64<<10)
	defer w.Flush()
	now := time.Now()
	enc := json.NewEncoder(w)
	for _, m := range res.Messages {
		if o.json {
			if err := enc.Encode(m); err != nil {
				return 1
			}
			continue
		}
		writeListLine(w, m, now)
	}
	return 0
}

// writeListLine prints a message on one line: ID, queue, size, age,
// attempts, sender, first pending recipient (+ how many more) and the
// class of its reason.
func writeListLine(w io.Writer, m *manage.Message, now time.Time) {
	sender := m.Sender
	if sender == "" {
		sender = "<>"
	}
	var first, class string
	more := 0
	for _, r := range m.Recipients {
		if r.Done {
			continue
		}
		if first == "" {
			first = r.Address
			class = r.ReasonClass()
		} else {
			more++
		}
	}
	rcpt := first
	if more > 0 {
		rcpt += fmt.Sprintf(" (+%d)", more)
	}
	flag := ""
	if m.ForcedExpire {
		flag = "#"
	}
	fmt.Fprintf(w, "%-17s %-8s %8d %7s %3d  %s -> %s", m.ID+flag, m.Queue, m.Size, shortAge(now.Sub(m.Arrival)), m.Attempts, sender, rcpt)
	if class != "" {
		fmt.Fprintf(w, "  [%s]", class)
	}
	fmt.Fprintln(w)
}

// shortAge renders a duration compactly: 45s, 12m, 3h12m, 2d4h.
func shortAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func queueCount(ctx context.Context, env *Env, v queueViews, sel *manage.Selector, o queueOpts) int {
	c, err := v.Count(ctx, sel.String())
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue count: %v\n", err)
		return 1
	}
	msgs, rcpts := c.Messages, c.Recipients
	if o.json {
		json.NewEncoder(env.Stdout).Encode(map[string]int{"messages": msgs, "recipients": rcpts})
		return 0
	}
	fmt.Fprintf(env.Stdout, "%d message%s, %d recipient%s\n", msgs, plural(msgs), rcpts, plural(rcpts))
	return 0
}

func queueSummary(ctx context.Context, env *Env, v queueViews, sel *manage.Selector, o queueOpts) int {
	res, err := v.Summary(ctx, sel.String(), o.by)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice queue summary: %v\n", err)
		return 1
	}
	now := time.Now()
	groups := res.Groups
	if o.json {
		json.NewEncoder(env.Stdout).Encode(map[string]any{"by": o.by, "messages": res.Messages, "groups": groups})
		return 0
	}
	w := bufio.NewWriter(env.Stdout)
	defer w.Flush()
	if len(groups) == 0 {
		fmt.Fprintln(w, "No messages selected.")
		return 0
	}
	width := len(o.by)
	for _, g := range groups {
		width = max(width, len(g.Key))
	}
	fmt.Fprintf(w, "%-*s %8s %10s %8s  %s\n", width, strings.ToUpper(o.by), "MESSAGES", "RECIPIENTS", "OLDEST", "EXAMPLE")
	for _, g := range groups {
		ex := g.Example
		if ex == "" {
			ex = g.Detail
		} else {
			ex = g.ExampleID + ": " + ex
		}
		fmt.Fprintf(w, "%-*s %8d %10d %8s  %s\n", width, g.Key, g.Messages, g.Recipients, shortAge(now.Sub(g.Oldest)), ex)
	}
	return 0
}

func queueShow(ctx context.Context, env *Env, v queueViews, sel *manage.Selector, o queueOpts) int {
	ids, ok := sel.IDs()
	if !ok || len(ids) == 0 {
		fmt.Fprintln(env.Stderr, "sluice queue show: give one or more queue IDs")
		return 2
	}
	status := 0
	for _, id := range ids {
		d, err := v.Show(ctx, id)
		if errors.Is(err, queuesvc.ErrNotFound) {
			fmt.Fprintf(env.Stderr, "sluice queue show: %s: no such message\n", id)
			status = 1
			continue
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "sluice queue show: %s: %v\n", id, err)
			status = 1
			continue
		}
		if o.json {
			json.NewEncoder(env.Stdout).Encode(d)
			continue
		}
		printShow(env.Stdout, d, time.Now())
	}
	return status
}

func printShow(out io.Writer, s *queuesvc.Detail, now time.Time) {
	w := bufio.NewWriter(out)
	defer w.Flush()
	sender := s.Sender
	if sender == "" {
		sender = "<> (null sender)"
	}
	fmt.Fprintf(w, "Queue ID:     %s\n", s.ID)
	fmt.Fprintf(w, "Queue:        %s (%s)\n", s.Queue, s.Path)
	fmt.Fprintf(w, "Sender:       %s\n", sender)
	fmt.Fprintf(w, "Size:         %d bytes\n", s.Size)
	fmt.Fprintf(w, "Arrived:      %s (%s ago)\n", s.Arrival.Format(time.RFC1123Z), shortAge(now.Sub(s.Arrival)))
	if s.ForceExpired {
		fmt.Fprintf(w, "Expiry:       forced (returned to sender at the next attempt)\n")
	}
	switch {
	case s.NextState == "corrupt":
		fmt.Fprintf(w, "Next attempt: none: set aside as unreadable (sluice queue requeue queue=corrupt, or delete)\n")
	case s.NextState == "hold":
		fmt.Fprintf(w, "Next attempt: none while on hold\n")
	case s.NextState == "scheduled" && !s.NextAttempt.IsZero():
		when := "due now"
		if d := s.NextAttempt.Sub(now); d > 0 {
			when = "in " + shortAge(d)
		}
		fmt.Fprintf(w, "Next attempt: %s (%s)\n", s.NextAttempt.Format(time.RFC1123Z), when)
	case s.NextState == "delivering":
		fmt.Fprintf(w, "Next attempt: being delivered now\n")
	default:
		fmt.Fprintf(w, "Next attempt: as soon as the queue manager takes it\n")
	}
	if !s.Expires.IsZero() {
		fmt.Fprintf(w, "Expires:      %s (in %s)\n", s.Expires.Format(time.RFC1123Z), shortAge(s.Expires.Sub(now)))
	}
	fmt.Fprintf(w, "Attempts:     %d\n", s.Attempts)
	fmt.Fprintf(w, "Recipients:\n")
	for _, r := range s.Recipients {
		fmt.Fprintf(w, "  %-9s %s", r.State, r.Address)
		if r.Orig != "" && !strings.EqualFold(r.Orig, r.Address) {
			fmt.Fprintf(w, " (originally %s)", r.Orig)
		}
		fmt.Fprintln(w)
		if r.Reason != "" {
			fmt.Fprintf(w, "            %s [%s] %s\n", r.DSN, r.Class, r.Reason)
		}
	}
	if len(s.History) > 0 {
		fmt.Fprintf(w, "History:\n")
		for _, a := range s.History {
			relay := a.Relay
			if relay == "" {
				relay = "none"
			}
			fmt.Fprintf(w, "  %s  %-8s %s via %s", a.Time.Local().Format("2006-01-02 15:04:05"), a.Status, a.Recipient, relay)
			if a.DSN != "" {
				fmt.Fprintf(w, " dsn=%s", a.DSN)
			}
			if a.Reason != "" {
				fmt.Fprintf(w, " (%s)", a.Reason)
			}
			fmt.Fprintln(w)
		}
	}
}

// queueAct runs an action on the selected messages: dry run, or with
// confirmation on a terminal, then through the daemon (its API handlers
// on the control socket), Postfix's postsuper, or the files. The daemon
// or the service here writes postsuper's mail-log lines.
func queueAct(ctx context.Context, env *Env, cfg *config.Config, sp *spool.Spool, sel *manage.Selector, op manage.Op, o queueOpts) int {
	name := "sluice queue " + string(op)
	if sel.Empty() && !o.all {
		fmt.Fprintf(env.Stderr, "%s: no selector: give terms (e.g. rcpt=user@example.com), or --all for every message\n", name)
		return 2
	}
	v, closeV, err := openViews(env, cfg, sp)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer closeV()
	req := queuesvc.ActRequest{Action: op, Select: sel.String(), DryRun: true, All: o.all}
	// A dry run first: what to confirm, and what the real run is asked
	// to do (it selects again, so mail that came or went meanwhile is
	// counted as it is then).
	plan, err := v.Act(ctx, req, nil)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	notApplicable := 0
	for why, n := range plan.SkippedReasons {
		if strings.HasPrefix(why, queuesvc.SkipNotApplicable) {
			notApplicable += n
		}
	}
	if notApplicable > 0 && !o.json {
		fmt.Fprintf(env.Stderr, "%s: %d selected message%s not in a queue %s applies to (%s); left alone\n",
			name, notApplicable, plural(notApplicable), op, strings.Join(manage.DefaultQueues(op), ", "))
	}
	var ids []string
	for _, r := range plan.Results {
		if r.Changed {
			ids = append(ids, r.ID)
		}
	}
	if o.dryRun {
		if o.json {
			json.NewEncoder(env.Stdout).Encode(plan)
			return 0
		}
		w := bufio.NewWriter(env.Stdout)
		for i, id := range ids {
			if i == 20 {
				fmt.Fprintf(w, "... and %d more\n", len(ids)-20)
				break
			}
			fmt.Fprintf(w, "%s: would %s\n", id, op)
		}
		for why, n := range plan.SkippedReasons {
			fmt.Fprintf(w, "skipped %d: %s\n", n, why)
		}
		fmt.Fprintf(w, "dry run: would %s %d message%s\n", op, len(ids), plural(len(ids)))
		w.Flush()
		return 0
	}
	if len(ids) == 0 {
		if o.json {
			json.NewEncoder(env.Stdout).Encode(plan)
		} else {
			fmt.Fprintf(env.Stdout, "no messages selected\n")
		}
		return 0
	}
	if len(ids) > 1 && !o.yes {
		if !isTerminal(env.Stdin) {
			fmt.Fprintf(env.Stderr, "%s: %d messages selected; add --yes to act on more than one message without a terminal to confirm on\n", name, len(ids))
			return 2
		}
		fmt.Fprintf(env.Stderr, "%s %d messages? [y/N] ", op, len(ids))
		line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(env.Stderr, "nothing changed")
			return 1
		}
	}
	if r, _, _ := queueRoute(cfg, nil); r == routePostfix {
		return postfixAct(env, cfg, op, ids)
	}
	bar := newProgress(env, len(ids), string(op))
	req.DryRun, req.IDs = false, ids
	res, err := v.Act(ctx, req, func(done, total int) { bar.step() })
	bar.done()
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	if o.json {
		json.NewEncoder(env.Stdout).Encode(res)
	} else {
		w := bufio.NewWriter(env.Stdout)
		acted := 0
		for _, out := range res.Results {
			if strings.HasPrefix(out.Error, queuesvc.SkipNotApplicable) {
				continue
			}
			acted++
			switch {
			case out.Error != "":
				fmt.Fprintf(w, "%s: %s\n", out.ID, out.Error)
			case len(out.Delivered) > 0:
				fmt.Fprintf(w, "%s: %s (already delivered to %s)\n", out.ID, actedVerb(op, out), strings.Join(out.Delivered, ", "))
			case len(res.Results) <= 100:
				fmt.Fprintf(w, "%s: %s\n", out.ID, actedVerb(op, out))
			}
		}
		fmt.Fprintf(w, "%s: %d of %d message%s", op, res.Changed, acted, plural(acted))
		if res.Failed > 0 {
			fmt.Fprintf(w, ", %d failed", res.Failed)
		}
		fmt.Fprintln(w)
		w.Flush()
	}
	if res.Failed > 0 {
		return 1
	}
	return 0
}

func actedVerb(op manage.Op, out manage.Outcome) string {
	if !out.Changed {
		return "unchanged"
	}
	switch op {
	case manage.OpDelete:
		return "deleted"
	case manage.OpHold:
		return "placed on hold"
	case manage.OpRelease:
		return "released from hold"
	case manage.OpRequeue:
		return "requeued"
	case manage.OpRetry:
		return "scheduled for delivery now"
	case manage.OpExpire:
		return "expired"
	}
	return string(op)
}

// postfixAct hands the selected IDs to Postfix's own postsuper (or
// postqueue -i for retry) on a running Postfix, which owns its locking.
func postfixAct(env *Env, cfg *config.Config, op manage.Op, ids []string) int {
	flag := map[manage.Op]string{manage.OpDelete: "-d", manage.OpHold: "-h", manage.OpRelease: "-H", manage.OpRequeue: "-r", manage.OpExpire: "-e"}[op]
	sub := *env
	sub.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	if op == manage.OpRetry {
		status := 0
		for _, id := range ids {
			sub.Args = []string{"-c", cfg.Dir, "-i", id}
			if code, _ := postfixPassthrough(&sub, cfg, "postqueue"); code != 0 {
				status = code
			}
		}
		return status
	}
	sub.Args = []string{"-c", cfg.Dir, flag, "-"}
	code, _ := postfixPassthrough(&sub, cfg, "postsuper")
	return code
}

// progress draws a progress bar on a terminal's stderr for long work.
type progress struct {
	w         io.Writer
	total, n  int
	label     string
	on        bool
	lastDrawn time.Time
}

func newProgress(env *Env, total int, label string) *progress {
	return &progress{w: env.Stderr, total: total, label: label, on: total >= 200 && isTerminal(env.Stderr)}
}

func (p *progress) step() {
	p.n++
	if !p.on || time.Since(p.lastDrawn) < 100*time.Millisecond {
		return
	}
	p.lastDrawn = time.Now()
	const width = 40
	filled := p.n * width / p.total
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", p.label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 60+len(p.label)))
	}
}
