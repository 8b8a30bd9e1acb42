package model

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/clock"
	"sluice/internal/event"
	"sluice/internal/maillog"
	"sluice/internal/qmgr"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

// randomDeliverer decides each recipient's outcome at random.
type randomDeliverer struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

var outcomes = []qmgr.Result{
	{Status: qmgr.Sent, DSN: "2.0.0", Reason: "250 2.0.0 Ok", Relay: "mx.test[192.0.2.1]:25"},
	{Status: qmgr.Deferred, DSN: "4.4.1", Reason: "connect to mx.test[192.0.2.1]:25: Connection refused"},
	{Status: qmgr.Deferred, DSN: "4.7.1", Reason: "host mx.test[192.0.2.1] said: 450 4.7.1 Greylisted, try again later (in reply to RCPT TO command)",
		DiagText: "450 4.7.1 Greylisted, try again later", Relay: "mx.test[192.0.2.1]:25"},
	{Status: qmgr.Deferred, DSN: "4.2.2", Reason: "host mx.test[192.0.2.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)",
		DiagText: "452 4.2.2 Mailbox full", Relay: "mx.test[192.0.2.1]:25"},
	{Status: qmgr.Bounced, DSN: "5.1.1", Reason: "host mx.test[192.0.2.1] said: 550 5.1.1 No such user (in reply to RCPT TO command)",
		DiagText: "550 5.1.1 No such user", Relay: "mx.test[192.0.2.1]:25"},
}

func (d *randomDeliverer) Deliver(ctx context.Context, req *qmgr.Delivery) []qmgr.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]qmgr.Result, len(req.Recipients))
	for i, r := range req.Recipients {
		out[i] = outcomes[d.rnd.Intn(len(outcomes))]
		out[i].Offset = r.Offset
	}
	return out
}

type world struct {
	t     *testing.T
	sp    *spool.Spool
	clk   *clock.Fake
	log   *testutil.SyncBuffer
	del   *randomDeliverer
	live  *Model
	mgr   *qmgr.Manager
	cl    *cleanup.Cleanup
	stopQ func()
	// snapHits counts the messages starts from a snapshot took as
	// they were.
	snapHits int64
}

func (w *world) snapshotPath() string { return filepath.Join(w.sp.Root, "private", "model-snapshot") }

func (w *world) start() {
	w.t.Helper()
	logger := maillog.New(w.log, "test", "postfix", w.clk.Now)
	w.live = New(Config{Spool: w.sp, Now: w.clk.Now, Log: logger, Snapshot: w.snapshotPath()})
	bus := &event.Bus{}
	bus.Subscribe(logger)
	bus.Subscribe(w.live)
	mgr, err := qmgr.New(qmgr.Config{Spool: w.sp, Clock: w.clk, Deliverer: w.del, Log: logger, Events: bus,
		MinBackoff: 5 * time.Minute, MaxBackoff: 20 * time.Minute, QueueRunDelay: time.Minute})
	if err != nil {
		w.t.Fatal(err)
	}
	w.mgr = mgr
	w.cl = cleanup.New(cleanup.Config{Spool: w.sp, MyHostname: "test.example", Now: w.clk.Now, Log: logger, Events: bus, Notify: mgr.NotifyNew})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	armed := w.clk.Armed()
	go func() { done <- mgr.Run(ctx) }()
	// Mail is accepted only once the queue manager has recovered the
	// spool (it removes incomplete files in incoming/), as in serve.
	<-armed
	// SMTP intake and delivery do not wait for the model.
	if err := w.live.Build(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.stopQ = func() {
		cancel()
		if err := <-done; err != nil {
			w.t.Errorf("qmgr: %v", err)
		}
	}
}

func (w *world) submit(rnd *rand.Rand) {
	w.t.Helper()
	// Distinct addresses: the history log names recipients by address,
	// so attempts of two recipients with one address cannot be told
	// apart from the files (Postfix's cleanup removes such duplicates).
	var rcpts []cleanup.Recipient
	seen := map[string]bool{}
	for i := 0; i <= rnd.Intn(3); i++ {
		a := fmt.Sprintf("u%d@d%d.test", rnd.Intn(5), rnd.Intn(4))
		if !seen[a] {
			seen[a] = true
			rcpts = append(rcpts, cleanup.Recipient{Address: a})
		}
	}
	m := &cleanup.Message{Sender: fmt.Sprintf("s%d@src%d.test", rnd.Intn(3), rnd.Intn(2)), Recipients: rcpts}
	if rnd.Intn(10) == 0 {
		m.Queue = spool.Hold
	}
	if _, err := w.cl.Submit(context.Background(), m, strings.NewReader("Subject: x\n\nhello\n")); err != nil {
		w.t.Fatal(err)
	}
}

// quiet reports whether nothing is in incoming/ or active/ and no
// delivery runs.
func (w *world) quiet() bool {
	// The queue manager's timer is disarmed from the moment it fires
	// until the loop has done the work it fired for.
	if _, armed := w.clk.NextDeadline(); !armed {
		return false
	}
	s := w.mgr.Stats()
	if s.Active != 0 || s.Deliveries != 0 {
		return false
	}
	for _, q := range []string{spool.Incoming, spool.Active} {
		if e, _ := w.sp.List(q); len(e) > 0 {
			return false
		}
	}
	return true
}

// check waits (boundedly) for the daemon to be quiet and the live model
// to equal a model built from the files.
func (w *world) check(step string) {
	w.t.Helper()
	var diff string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !w.quiet() {
			continue
		}
		fresh := New(Config{Spool: w.sp, Now: w.clk.Now})
		if err := fresh.Build(context.Background()); err != nil {
			w.t.Fatal(err)
		}
		a, b := w.live.Messages(), fresh.Messages()
		if reflect.DeepEqual(a, b) && reflect.DeepEqual(w.live.Summary().Queues, fresh.Summary().Queues) &&
			reflect.DeepEqual(w.live.Summary().Classes, fresh.Summary().Classes) &&
			reflect.DeepEqual(w.live.QShape(QShapeOptions{Queues: Queues[:]}, w.clk.Now()), fresh.QShape(QShapeOptions{Queues: Queues[:]}, w.clk.Now())) {
			// The summary's groups, kept as events came, give what
			// a walk gives, and what the fresh model's give.
			sameSummaries(w.t, w.live, w.clk.Now(), step)
			sameSummaries(w.t, fresh, w.clk.Now(), step)
			for _, by := range summaryKeys {
				a, _, _ := w.live.Summarize(by, w.clk.Now(), testKeys)
				b, _, _ := fresh.Summarize(by, w.clk.Now(), testKeys)
				if len(a) != len(b) {
					w.t.Fatalf("after %s: summary by %s: %d groups live, %d fresh", step, by, len(a), len(b))
				}
			}
			return
		}
		diff = describe(a, b)
	}
	w.t.Fatalf("after %s the model differs from the files: %s\nlog:\n%s", step, diff, w.log.String())
}

func describe(a, b []Message) string {
	ma := map[string]Message{}
	for _, m := range a {
		ma[m.ID] = m
	}
	var out []string
	for _, m := range b {
		if x, ok := ma[m.ID]; !ok {
			out = append(out, fmt.Sprintf("missing %+v", m))
		} else if !reflect.DeepEqual(x, m) {
			out = append(out, fmt.Sprintf("model %+v\nfiles %+v", x, m))
		}
		delete(ma, m.ID)
	}
	for _, m := range ma {
		out = append(out, fmt.Sprintf("extra %+v", m))
	}
	if len(out) == 0 {
		return "aggregates differ"
	}
	return strings.Join(out, "\n")
}

// pick returns a random message ID in queue, "" when there is none.
func (w *world) pick(rnd *rand.Rand, queue string) string {
	e, _ := w.sp.List(queue)
	if len(e) == 0 {
		return ""
	}
	return e[rnd.Intn(len(e))].ID
}

func TestModelEqualsFreshScan(t *testing.T) {
	seeds := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	steps := 60
	if testing.Short() {
		seeds, steps = seeds[:1], 30
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewSource(seed))
			sp := spool.New(t.TempDir())
			sp.NoSync = true
			if err := sp.Create(); err != nil {
				t.Fatal(err)
			}
			w := &world{t: t, sp: sp, clk: clock.NewFake(time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)),
				log: &testutil.SyncBuffer{}, del: &randomDeliverer{rnd: rand.New(rand.NewSource(seed))}}
			w.start()
			defer func() { w.stopQ() }()
			drift := int64(0)
			for i := 0; i < steps; i++ {
				var step string
				switch k := rnd.Intn(11); {
				case k < 4:
					step = "intake"
					w.submit(rnd)
				case k < 6:
					step = "time passes (retries)"
					w.check("before " + step)
					w.clk.Advance(time.Duration(1+rnd.Intn(30)) * time.Minute)
				case k == 6:
					// An operator deletes a deferred message behind the
					// daemon's back (postsuper -d on the files).
					step = "delete on the files, reconcile"
					w.check("before " + step)
					if id := w.pick(rnd, spool.Deferred); id != "" {
						for _, q := range []string{spool.Defer, spool.Bounce, spool.Trace, spool.History, spool.Deferred} {
							os.Remove(sp.Path(q, id))
						}
						drift++
					}
					w.reconcile(&drift)
				case k == 7:
					step = "hold or release on the files, reconcile"
					w.check("before " + step)
					from, to := spool.Deferred, spool.Hold
					if rnd.Intn(2) == 0 {
						from, to = spool.Hold, spool.Deferred
					}
					if id := w.pick(rnd, from); id != "" {
						if err := sp.Move(id, from, to); err != nil {
							t.Fatal(err)
						}
						drift++
					}
					w.reconcile(&drift)
				case k == 8:
					step = "flush"
					w.check("before " + step)
					if id := w.pick(rnd, spool.Deferred); id != "" {
						// The queue manager may have taken it meanwhile.
						if err := w.mgr.FlushID(id); err != nil && !errors.Is(err, fs.ErrNotExist) {
							t.Fatal(err)
						}
					}
				case k == 9:
					step = "crash and restart"
					w.check("before " + step)
					w.stopQ()
					w.start()
				default:
					step = "stop with a snapshot, changes while down, start from it"
					w.check("before " + step)
					w.stopQ()
					w.snapshotRestart(rnd)
				}
				w.check(fmt.Sprintf("step %d (%s)", i, step))
			}
			t.Logf("%d messages taken from snapshots as they were", w.snapHits)
		})
	}
}

// reconcile runs a pass and checks it found the drift made on the files.
func (w *world) reconcile(want *int64) {
	w.t.Helper()
	before := w.live.Drift()
	n, err := w.live.Reconcile(context.Background(), 0)
	if err != nil {
		w.t.Fatal(err)
	}
	if int64(n) != *want || w.live.Drift() != before+*want {
		w.t.Fatalf("reconcile found %d drifts, want %d; log:\n%s", n, *want, w.log.String())
	}
	*want = 0
}

// snapshotRestart writes the model's snapshot as a clean stop does,
// changes the files as an operator might while the daemon is down, and
// starts again from the snapshot.
func (w *world) snapshotRestart(rnd *rand.Rand) {
	w.t.Helper()
	// Changes made within a clock tick of their stamp would not show
	// (racyWindow); an operator comes later than that.
	time.Sleep(60 * time.Millisecond)
	if _, err := w.live.WriteSnapshot(); err != nil {
		w.t.Fatal(err)
	}
	if id := w.pick(rnd, spool.Deferred); id != "" && rnd.Intn(2) == 0 {
		for _, q := range []string{spool.Defer, spool.History, spool.Deferred} {
			os.Remove(w.sp.Path(q, id))
		}
	}
	if id := w.pick(rnd, spool.Deferred); id != "" && rnd.Intn(2) == 0 {
		if err := w.sp.Move(id, spool.Deferred, spool.Hold); err != nil {
			w.t.Fatal(err)
		}
	}
	if id := w.pick(rnd, spool.Deferred); id != "" && rnd.Intn(2) == 0 {
		// A new next attempt, as postqueue -i or a clock change makes.
		p := w.sp.Path(spool.Deferred, id)
		if fi, err := os.Stat(p); err == nil {
			when := fi.ModTime().Add(time.Duration(1+rnd.Intn(60)) * time.Minute)
			os.Chtimes(p, when, when)
		}
	}
	w.start()
	if w.live.SnapshotHits() < 0 {
		w.t.Fatal("the model did not start from its snapshot")
	}
	w.snapHits += w.live.SnapshotHits()
	if _, err := os.Stat(w.snapshotPath()); !os.IsNotExist(err) {
		w.t.Fatalf("the snapshot is still there after the start: %v", err)
	}
}
