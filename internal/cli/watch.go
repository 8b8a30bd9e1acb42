package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"sluice/internal/control"
	"sluice/internal/httpapi"
	"sluice/internal/manage"
)

// watchHelp is the manual of `sluice queue watch`.
const watchHelp = `usage: sluice queue watch [-c DIR] [--json] [--count N] [selector...]

Follow what happens to the queue as it happens: the structured tail -f of
the mail log. One line per event (received, activated, sent, deferred,
bounced, expired, deleted, moved, held, released, requeued, corrupt,
notified), or with --json the events as the HTTP API's
/api/v1/events sends them, one JSON object per line.

It reads the running daemon's event stream over its control socket (it
needs sluice serve on this spool, and the right to list the queue). When
the daemon stops, watch waits for it and goes on where it left off.

Options:
  -c DIR      configuration directory (default $MAIL_CONFIG, else /etc/sluice)
  --json      print JSON lines
  --count N   exit after N events

Selector terms (as sluice queue's) that apply to events: id, queue (the
queue the message is in after the event), sender, sender_domain,
sender_ci, and, for the recipients an event names, rcpt, rcpt_ci, domain,
reason, class. age, size, attempts and rcpts describe queued mail and are
refused. Example: sluice queue watch domain=example.com class=greylisting

Lines starting with "--" are about the stream: "-- lost N events" (the
watcher fell behind; the queue's state may have changed unseen) and
"-- the daemon restarted". In JSON they are {"type": "lost", "lost": N}
and {"type": "restart"}.
`

// watchRetry is how long watch waits before reconnecting to a daemon
// that went away.
const watchRetry = time.Second

type watchOpts struct {
	confDir string
	json    bool
	count   int
	terms   []string
}

func parseWatchArgs(args []string) (watchOpts, error) {
	var o watchOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "--json":
			o.json = true
		case a == "-c":
			o.confDir, err = val()
		case strings.HasPrefix(a, "-c") && len(a) > 2 && !strings.HasPrefix(a, "--"):
			o.confDir = a[2:]
		case a == "--count" || a == "-n":
			var v string
			if v, err = val(); err == nil {
				o.count, err = strconv.Atoi(v)
				if err == nil && o.count < 1 {
					err = errors.New("--count wants a positive number")
				}
			}
		case strings.HasPrefix(a, "--count="):
			o.count, err = strconv.Atoi(strings.TrimPrefix(a, "--count="))
		case a == "--":
			o.terms = append(o.terms, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			err = fmt.Errorf("unknown option %s", a)
		default:
			o.terms = append(o.terms, a)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// runQueueWatch is `sluice queue watch`; args follow "watch".
func runQueueWatch(env *Env, args []string) int {
	env.Name = "sluice queue watch"
	for _, a := range args {
		if a == "-h" || a == "--help" {
			io.WriteString(env.Stdout, watchHelp)
			return 0
		}
	}
	o, err := parseWatchArgs(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return 2
	}
	// The selector is checked here for its syntax; the daemon refuses
	// the keys that do not apply to events, in the same words as the API.
	if _, err := manage.ParseSelector(o.terms...); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return 2
	}
	cfg, err := env.LoadConfig(o.confDir)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	if code, refused := checkAccess(env, cfg, control.AccessList); refused {
		return code
	}
	c, err := dialControl(cfg, sp)
	if err != nil {
		return env.Fatalf(1, "no sluice daemon answers on %s: watch reads its event stream (%v)", sp.Root, err)
	}
	w := &watcher{env: env, o: o}
	ctx := context.Background()
	for {
		err = c.Watch(ctx, o.terms, w.lastID, w.event)
		c.Close()
		if errors.Is(err, errWatchDone) {
			return 0
		}
		if !errors.Is(err, control.ErrStreamEnded) {
			// Refused, or a bad selector: the daemon's own words.
			return env.Fatalf(1, "%v", err)
		}
		// The daemon went away: wait for the next one and resume.
		fmt.Fprintf(env.Stderr, "%s: the daemon closed the stream (%v); reconnecting\n", env.Name, err)
		for {
			time.Sleep(watchRetry)
			if c, err = dialControl(cfg, sp); err == nil {
				break
			}
		}
	}
}

var errWatchDone = errors.New("watch: done")

// watcher prints events and counts them.
type watcher struct {
	env    *Env
	o      watchOpts
	lastID string
	seen   int
}

func (w *watcher) event(ev httpapi.SSE) error {
	if ev.ID != "" {
		w.lastID = ev.ID
	}
	switch ev.Event {
	case httpapi.EventLost:
		var l struct{ Lost int64 }
		json.Unmarshal(ev.Data, &l)
		if w.o.json {
			fmt.Fprintf(w.env.Stdout, "{\"type\":\"lost\",\"lost\":%d}\n", l.Lost)
		} else {
			fmt.Fprintf(w.env.Stdout, "-- lost %d events (the watcher fell behind)\n", l.Lost)
		}
		return nil
	case httpapi.EventRestart:
		if w.o.json {
			fmt.Fprintln(w.env.Stdout, `{"type":"restart"}`)
		} else {
			fmt.Fprintln(w.env.Stdout, "-- the daemon restarted; what happened meanwhile is not shown")
		}
		return nil
	case "":
	default:
		return nil // a control event of a later version
	}
	if w.o.json {
		w.env.Stdout.Write(append(ev.Data, '\n'))
	} else {
		se, err := ev.Decode()
		if err != nil {
			return fmt.Errorf("bad event from the daemon: %w", err)
		}
		io.WriteString(w.env.Stdout, watchLine(&se)+"\n")
	}
	w.seen++
	if w.o.count > 0 && w.seen >= w.o.count {
		return errWatchDone
	}
	return nil
}

// watchLine is an event's human line: the time (local), the queue ID,
// what happened, then the details in the mail log's key=value style.
func watchLine(e *httpapi.StreamEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", e.Time.Local().Format("Jan _2 15:04:05"), e.QueueID, e.Type)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	addr := func(k, v string) { fmt.Fprintf(&b, " %s=<%s>", k, v) }
	switch e.Type {
	case "received", "activated":
		if e.Sender != nil {
			addr("from", *e.Sender)
		}
		for _, r := range e.Recipients {
			addr("to", r)
		}
		if e.Size > 0 {
			kv("size", strconv.FormatInt(e.Size, 10))
		}
		kv("queue", e.Queue)
		kv("from_queue", e.FromQueue)
		kv("via", e.Service)
	case "sent", "deferred", "bounced":
		addr("to", e.Recipient)
		if e.OrigRecipient != "" {
			addr("orig_to", e.OrigRecipient)
		}
		kv("relay", e.Relay)
		if e.Delay != nil {
			kv("delay", strconv.FormatFloat(*e.Delay, 'f', -1, 64))
		}
		kv("dsn", e.DSN)
		kv("class", e.Class)
		if e.Reason != "" {
			fmt.Fprintf(&b, " (%s)", e.Reason)
		}
	case "moved":
		fmt.Fprintf(&b, " %s -> %s", e.FromQueue, e.Queue)
		if !e.NextAttempt.IsZero() {
			kv("next", e.NextAttempt.Local().Format("Jan _2 15:04:05"))
		}
	case "held", "released":
		fmt.Fprintf(&b, " %s -> %s", e.FromQueue, e.Queue)
		kv("by", e.Service)
	case "requeued":
		kv("from_queue", e.Queue)
		kv("new_id", e.NewQueueID)
		kv("by", e.Service)
	case "deleted":
		kv("queue", e.Queue)
		kv("by", e.Service)
	case "expired":
		if e.Sender != nil {
			addr("from", *e.Sender)
		}
		if e.Forced {
			kv("forced", "yes")
		}
	case "corrupt":
		kv("from_queue", e.FromQueue)
		if e.Reason != "" {
			fmt.Fprintf(&b, " (%s)", e.Reason)
		}
	case "notified":
		kv("notice", e.Notice)
		kv("notice_id", e.NoticeID)
	default:
		kv("queue", e.Queue)
	}
	return b.String()
}
