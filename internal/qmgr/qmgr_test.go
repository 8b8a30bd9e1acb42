package qmgr

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/bounce"
	"sluice/internal/clock"
	"sluice/internal/maillog"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

// fakeDeliverer answers per recipient from a script: each address has a
// list of outcomes used one per attempt; the last one repeats. Addresses
// without a script are sent. It records every delivery.
type fakeDeliverer struct {
	mu      sync.Mutex
	script  map[string][]Result
	calls   []call
	texts   []string      // per call: the text read from Delivery.Image, "" when it had none
	block   chan struct{} // when set, deliveries wait on it
	running int
	maxRun  int
}

type call struct {
	id, hop string
	rcpts   []string
}

func (f *fakeDeliverer) set(addr string, rs ...Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.script == nil {
		f.script = map[string][]Result{}
	}
	f.script[addr] = rs
}

func (f *fakeDeliverer) Deliver(ctx context.Context, d *Delivery) []Result {
	f.mu.Lock()
	f.running++
	f.maxRun = max(f.maxRun, f.running)
	c := call{id: d.QueueID, hop: d.Nexthop}
	var out []Result
	for _, r := range d.Recipients {
		c.rcpts = append(c.rcpts, r.Address)
		res := Result{Status: Sent, DSN: "2.0.0", Reason: "250 2.0.0 Ok", Relay: "mx." + d.Nexthop + "[127.0.0.1]:25"}
		if s := f.script[r.Address]; len(s) > 0 {
			res = s[0]
			if len(s) > 1 {
				f.script[r.Address] = s[1:]
			}
		}
		res.Offset = r.Offset
		out = append(out, res)
	}
	f.calls = append(f.calls, c)
	text := ""
	if d.Image != nil {
		if c, err := spool.ContentOf(d.Image); err == nil {
			b, _ := io.ReadAll(c)
			text = string(b)
		}
	}
	f.texts = append(f.texts, text)
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	f.running--
	f.mu.Unlock()
	return out
}

func (f *fakeDeliverer) callList() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

type fakeNotifier struct {
	mu      sync.Mutex
	reports []*bounce.Report
	fail    error
}

func (n *fakeNotifier) Send(ctx context.Context, r *bounce.Report) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return "", n.fail
	}
	n.reports = append(n.reports, r)
	return fmt.Sprintf("NDR%d", len(n.reports)), nil
}

func (n *fakeNotifier) list() []*bounce.Report {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*bounce.Report(nil), n.reports...)
}

type harness struct {
	t      *testing.T
	sp     *spool.Spool
	clk    *clock.Fake
	del    *fakeDeliverer
	notes  *fakeNotifier
	logbuf *testutil.SyncBuffer
	m      *Manager
	cancel context.CancelFunc
	done   chan error
}

var epoch = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sp: sp, clk: clock.NewFake(epoch), del: &fakeDeliverer{}, notes: &fakeNotifier{}, logbuf: &testutil.SyncBuffer{}}
	cfg := Config{
		Spool: sp, Clock: h.clk, Deliverer: h.del, Notifier: h.notes,
		Log: maillog.New(h.logbuf, "test.example", "postfix", h.clk.Now),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.m.Run(ctx) }()
	h.t.Cleanup(h.stop)
	// As the daemon does: nothing is written into incoming/ before the
	// queue manager has removed the last run's unfinished files.
	select {
	case <-h.m.Ready():
	case err := <-h.done:
		h.done <- err
		h.t.Fatalf("Run: %v", err)
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// queue writes a complete queue file into queue, as cleanup would.
func (h *harness) queue(queue, sender string, rcpts ...string) string {
	h.t.Helper()
	return h.queueEnv(queue, &spool.NewEnvelope{Sender: sender}, rcpts...)
}

func (h *harness) queueEnv(queue string, env *spool.NewEnvelope, rcpts ...string) string {
	h.t.Helper()
	f, err := h.sp.NewFile(queue, h.clk.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	if env.Arrival.IsZero() {
		env.Arrival = h.clk.Now()
	}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r, Orig: r, DSNOrig: "rfc822;" + r})
	}
	if err := f.WriteEnvelope(env); err != nil {
		h.t.Fatal(err)
	}
	for _, l := range []string{"Subject: test", "From: " + env.Sender, "", "Hello."} {
		f.WriteLine([]byte(l))
	}
	if err := f.Commit(); err != nil {
		h.t.Fatal(err)
	}
	return f.ID
}

// settle waits until the manager has nothing active and cond holds.
func (h *harness) settle(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := h.m.Stats(); s.Active == 0 && s.Deliveries == 0 && cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; log:\n%s", what, h.logbuf.String())
}

func (h *harness) in(queue, id string) bool {
	_, err := os.Stat(h.sp.Path(queue, id))
	return err == nil
}

// gone reports whether id has left the spool. A file moving between
// queues can slip past one look, so it looks twice.
func (h *harness) gone(id string) bool {
	for i := 0; i < 2; i++ {
		if _, err := h.sp.Locate(id); err == nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func (h *harness) envelope(queue, id string) *spool.Envelope {
	h.t.Helper()
	env, _, err := spool.ReadFile(h.sp.Path(queue, id), spool.ReadOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

func (h *harness) mtime(queue, id string) time.Time {
	h.t.Helper()
	fi, err := os.Stat(h.sp.Path(queue, id))
	if err != nil {
		h.t.Fatal(err)
	}
	return fi.ModTime()
}

// mtimeIf returns the file's mtime, or the zero time when it is not there.
func (h *harness) mtimeIf(queue, id string) time.Time {
	fi, err := os.Stat(h.sp.Path(queue, id))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (h *harness) logHas(substr string) bool { return strings.Contains(h.logbuf.String(), substr) }

var refused = Result{Status: Deferred, DSN: "4.4.1", Reason: "connect to mx.down.example[127.0.0.1]:25: Connection refused"}

func TestDeliverAllAndRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	id := h.queue(spool.Incoming, "alice@src.example", "x@b.example", "a1@a.example", "2x@b.example")
	h.m.Notify(id)
	h.settle("removal", func() bool { return h.gone(id) })
	calls := h.del.callList()
	got := fmt.Sprint(calls)
	want := fmt.Sprintf("[{%s a.example [a1@a.example]} {%s b.example [2x@b.example x@b.example]}]", id, id)
	sort.Slice(calls, func(i, j int) bool { return calls[i].hop < calls[j].hop })
	if got = fmt.Sprint(calls); got != want {
		t.Errorf("deliveries = %s, want %s", got, want)
	}
	for _, s := range []string{
		id + ": from=<alice@src.example>, size=",
		", nrcpt=3 (queue active)",
		"postfix/smtp[", id + ": to=<a1@a.example>, relay=mx.a.example[127.0.0.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		id + ": removed",
	} {
		if !h.logHas(s) {
			t.Errorf("log lacks %q:\n%s", s, h.logbuf.String())
		}
	}
}

// TestNewMessageFromImage: a message cleanup announced with the file's
// bytes is taken and delivered from them, and its file is kept for the
// next new message (spool.Recycle); an image that is not the file's (its
// size differs) is not used. Either way the memory they held is counted
// back once the message is gone.
func TestNewMessageFromImage(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.sp.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	h.start()
	// A first message, so that the scan at start is over: it would
	// take the next ones from their files before they are announced.
	first := h.queue(spool.Incoming, "alice@src.example", "x@b.example")
	h.m.Notify(first)
	h.settle("removal", func() bool { return h.gone(first) })
	for _, good := range []bool{true, false} {
		id := h.queue(spool.Incoming, "alice@src.example", "x@b.example")
		image, err := os.ReadFile(h.sp.Path(spool.Incoming, id))
		if err != nil {
			t.Fatal(err)
		}
		if !good {
			image = image[:len(image)-1]
		}
		h.m.NotifyNew(id, &spool.Kept{Image: image})
		h.settle("removal", func() bool { return h.gone(id) })
		h.del.mu.Lock()
		text := h.del.texts[len(h.del.texts)-1]
		h.del.mu.Unlock()
		if good && !strings.HasPrefix(text, "Subject: ") {
			t.Errorf("delivery text from the image: %q", text)
		}
		kept, _ := os.ReadDir(filepath.Join(h.sp.Root, spool.Recycle))
		if good && len(kept) != 1 {
			t.Errorf("%d files kept after a new message was delivered, want 1", len(kept))
		}
		if !good && text != "" {
			t.Errorf("an image not the file's was delivered from: %q", text)
		}
		h.settle("images let go", func() bool { return h.m.imageBytes.Load() == 0 })
	}
}

func TestDeferRetrySameIDAndPartial(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set("slow@b.example", Result{Status: Deferred, DSN: "4.2.0", Relay: "mx.b.example[127.0.0.1]:25",
		Reason: "host mx.b.example[127.0.0.1] said: 450 4.2.0 try later (in reply to RCPT TO command)", DiagText: "450 4.2.0 try later", RemoteMTA: "mx.b.example"},
		Result{Status: Sent, DSN: "2.0.0", Reason: "250 ok"})
	h.start()
	id := h.queue(spool.Incoming, "alice@src.example", "fast@a.example", "slow@b.example")
	h.m.Notify(id)
	h.settle("deferral", func() bool { return h.in(spool.Deferred, id) })

	env := h.envelope(spool.Deferred, id)
	if p := env.Pending(); len(p) != 1 || p[0].Address != "slow@b.example" {
		t.Fatalf("pending after first attempt = %+v", p)
	}
	if got, want := h.mtime(spool.Deferred, id), epoch.Add(300*time.Second); !got.Equal(want) {
		t.Errorf("next attempt = %v, want %v (minimal_backoff_time)", got, want)
	}
	log, err := h.sp.ReadLog(spool.Defer, id)
	if err != nil || len(log) != 1 {
		t.Fatalf("defer log = %+v, %v", log, err)
	}
	if e := log[0]; e.Recipient != "slow@b.example" || e.Status != "4.2.0" || e.Action != "delayed" || e.DiagText != "450 4.2.0 try later" || !strings.Contains(e.Reason, "said: 450") {
		t.Errorf("defer entry = %+v", e)
	}
	if !h.logHas("status=deferred (host mx.b.example[127.0.0.1] said: 450 4.2.0 try later (in reply to RCPT TO command))") {
		t.Errorf("log lacks the deferral:\n%s", h.logbuf.String())
	}

	// Not yet: the scan after queue_run_delay finds it due only once its
	// mtime has come; 299 s is too early.
	h.clk.Advance(299 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if !h.in(spool.Deferred, id) {
		t.Fatal("message left deferred/ before its time")
	}
	h.clk.Advance(time.Second)
	h.settle("removal after retry", func() bool { return h.gone(id) })
	calls := h.del.callList()
	if len(calls) != 3 {
		t.Fatalf("calls = %v", calls)
	}
	if c := calls[2]; c.id != id || fmt.Sprint(c.rcpts) != "[slow@b.example]" {
		t.Errorf("retry = %+v: same ID, and only the pending recipient", c)
	}
	if !h.logHas(id+": to=<slow@b.example>, relay=, delay=300") && !h.logHas(id+": to=<slow@b.example>, relay=none, delay=300, delays=300/0/0/0, dsn=2.0.0, status=sent") {
		t.Errorf("retry log line missing:\n%s", h.logbuf.String())
	}
}

func TestBackoffDoubles(t *testing.T) {
	h := newHarness(t, nil)
	created := epoch.Unix()
	for _, c := range []struct {
		age, want time.Duration
	}{
		{0, 300 * time.Second},
		{299 * time.Second, 300 * time.Second},
		{600 * time.Second, 600 * time.Second},
		{1200 * time.Second, 1200 * time.Second},
		{3 * time.Hour, 4000 * time.Second},
	} {
		if got := h.m.backoff(epoch.Add(c.age), created); got != c.want {
			t.Errorf("backoff at age %v = %v, want %v", c.age, got, c.want)
		}
	}
}

func TestBounceSendsDSNAndRemoves(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set("nobody@a.example", Result{Status: Bounced, DSN: "5.1.1", Relay: "mx.a.example[127.0.0.1]:25",
		Reason: "host mx.a.example[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)", DiagText: "550 5.1.1 no such user", RemoteMTA: "mx.a.example"})
	h.start()
	id := h.queue(spool.Incoming, "alice@src.example", "nobody@a.example", "ok@a.example")
	h.m.Notify(id)
	h.settle("removal", func() bool { return h.gone(id) })
	reps := h.notes.list()
	if len(reps) != 1 {
		t.Fatalf("reports = %d, want 1", len(reps))
	}
	r := reps[0]
	if r.Kind != bounce.Failure || r.QueueID != id || len(r.Entries) != 1 || r.Entries[0].Recipient != "nobody@a.example" || r.Entries[0].Status != "5.1.1" || r.Entries[0].Action != "failed" {
		t.Errorf("report = %+v", r)
	}
	if !h.logHas("status=bounced (host mx.a.example[127.0.0.1] said: 550 5.1.1 no such user") || !h.logHas(id+": removed") {
		t.Errorf("log:\n%s", h.logbuf.String())
	}
	if _, err := os.Stat(h.sp.Path(spool.Bounce, id)); err == nil {
		t.Error("bounce log left behind")
	}
}

func TestBounceFromNullSenderIsNotNotified(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set("x@a.example", Result{Status: Bounced, DSN: "5.1.1", Reason: "550 no"})
	h.start()
	id := h.queue(spool.Incoming, "", "x@a.example")
	h.m.Notify(id)
	h.settle("removal", func() bool { return h.gone(id) })
	if n := len(h.notes.list()); n != 0 {
		t.Errorf("%d notices sent for mail from <>", n)
	}
}

func TestExpiryReturnsToSender(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxLifetime = time.Hour; c.BounceLifetime = 30 * time.Minute })
	h.del.set("x@down.example", refused)
	h.start()
	id := h.queue(spool.Incoming, "alice@src.example", "x@down.example")
	h.m.Notify(id)
	h.settle("deferral", func() bool { return h.in(spool.Deferred, id) })
	// Step through the retries: 300, 600, 1200, 2400 s later... until the
	// hour is over and the message comes back to its sender.
	for i := 0; i < 20 && !h.gone(id); i++ {
		next := h.mtime(spool.Deferred, id)
		h.clk.Set(next.Add(300 * time.Second))
		h.settle("next attempt", func() bool { return h.gone(id) || h.mtimeIf(spool.Deferred, id).After(next) })
	}
	if !h.gone(id) {
		t.Fatal("message never expired")
	}
	if !h.logHas(id + ": from=<alice@src.example>, status=expired, returned to sender") {
		t.Errorf("log:\n%s", h.logbuf.String())
	}
	reps := h.notes.list()
	if len(reps) != 1 || len(reps[0].Entries) != 1 {
		t.Fatalf("reports = %+v", reps)
	}
	if e := reps[0].Entries[0]; e.Action != "failed" || e.Status != "4.4.1" || !strings.Contains(e.Reason, "Connection refused") {
		t.Errorf("expiry entry = %+v", e)
	}
	if age := h.clk.Now().Sub(epoch); age < time.Hour {
		t.Errorf("expired at age %v, before the lifetime", age)
	}
}

func TestDeadDestinationSuspends(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set("a@down.example", refused)
	h.start()
	id1 := h.queue(spool.Incoming, "s@src.example", "a@down.example")
	h.m.Notify(id1)
	h.settle("first deferral", func() bool { return h.in(spool.Deferred, id1) })
	id2 := h.queue(spool.Incoming, "s@src.example", "b@down.example")
	h.m.Notify(id2)
	h.settle("second deferral", func() bool { return h.in(spool.Deferred, id2) })
	if n := len(h.del.callList()); n != 1 {
		t.Errorf("deliveries = %d; a dead destination must not be tried", n)
	}
	log, _ := h.sp.ReadLog(spool.Defer, id2)
	if len(log) != 1 || log[0].Reason != "delivery temporarily suspended: "+refused.Reason {
		t.Errorf("defer log of the second message = %+v", log)
	}
	if !h.logHas("postfix/error[") {
		t.Errorf("suspended deferral not logged by error:\n%s", h.logbuf.String())
	}
	// postqueue -i: the unthrottle bit makes the destination live again.
	h.del.set("b@down.example", Result{Status: Sent, DSN: "2.0.0", Reason: "250 ok", Relay: "x[127.0.0.1]:25"})
	if err := h.m.FlushID(id2); err != nil {
		t.Fatal(err)
	}
	h.settle("flushed delivery", func() bool { return h.gone(id2) })
	if !h.in(spool.Deferred, id1) {
		t.Error("FlushID moved another message")
	}
	// postqueue -f takes every deferred message whatever its time.
	h.del.set("a@down.example", Result{Status: Sent, DSN: "2.0.0", Reason: "250 ok"})
	h.m.FlushAll()
	h.settle("flush all", func() bool { return h.gone(id1) })
}

func TestRestartMovesActiveBack(t *testing.T) {
	h := newHarness(t, nil)
	id := h.queue(spool.Active, "s@src.example", "done@a.example", "todo@a.example")
	// A crash after the first recipient was delivered.
	env := h.envelope(spool.Active, id)
	if err := spool.MarkDone(h.sp.Path(spool.Active, id), env.Recipients[0].Offset, false); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.settle("delivery after restart", func() bool { return h.gone(id) })
	calls := h.del.callList()
	if len(calls) != 1 || fmt.Sprint(calls[0].rcpts) != "[todo@a.example]" {
		t.Errorf("calls = %+v: the done recipient must not be delivered again", calls)
	}
}

func TestRestartRemovesEmbryonicFiles(t *testing.T) {
	h := newHarness(t, nil)
	// A cleanup that died while writing: mode 0600, never acknowledged.
	f, err := h.sp.NewFile(spool.Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ready := h.queue(spool.Incoming, "s@src.example", "r@a.example")
	h.start()
	h.settle("restart", func() bool { return h.gone(ready) })
	if _, err := os.Lstat(f.Path); err == nil {
		t.Error("incomplete queue file left in incoming/")
	}
	if !h.logHas(f.ID + ": removed incomplete queue file") {
		t.Error("no log line for the removed file")
	}
}

func TestCorruptFileSetAside(t *testing.T) {
	h := newHarness(t, nil)
	path := h.sp.Path(spool.Incoming, "ABCDEF123")
	if err := os.WriteFile(path, []byte("this is no queue file"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.m.Wake()
	h.settle("corrupt", func() bool { return h.in(spool.Corrupt, "ABCDEF123") })
	if !h.logHas(`warning: saving corrupt file "ABCDEF123" from queue "active" to queue "corrupt"`) {
		t.Errorf("log:\n%s", h.logbuf.String())
	}
}

func TestHoldNeverScheduled(t *testing.T) {
	h := newHarness(t, nil)
	id := h.queue(spool.Hold, "s@src.example", "x@a.example")
	h.start()
	h.m.FlushAll()
	h.clk.Advance(10 * 24 * time.Hour)
	time.Sleep(30 * time.Millisecond)
	h.settle("quiet", func() bool { return true })
	if !h.in(spool.Hold, id) || len(h.del.callList()) != 0 {
		t.Error("a held message was scheduled")
	}
}

func TestConcurrencyAndRecipientLimits(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ConcurrencyLimit = 2; c.InitialConcurrency = 2; c.RecipientLimit = 2 })
	h.del.block = make(chan struct{})
	h.start()
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, h.queue(spool.Incoming, "s@src.example", "a@a.example", "b@a.example", "c@a.example"))
	}
	h.m.Wake()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && h.m.Stats().Deliveries < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := h.m.Stats().Deliveries; n != 2 {
		t.Errorf("deliveries running = %d, want the concurrency limit 2", n)
	}
	close(h.del.block)
	h.settle("all delivered", func() bool {
		for _, id := range ids {
			if !h.gone(id) {
				return false
			}
		}
		return true
	})
	calls := h.del.callList()
	if len(calls) != 8 {
		t.Errorf("deliveries = %d, want 8 (3 recipients in batches of 2, 4 messages)", len(calls))
	}
	for _, c := range calls {
		if len(c.rcpts) > 2 {
			t.Errorf("delivery with %d recipients exceeds the limit", len(c.rcpts))
		}
	}
	if h.del.maxRun > 2 {
		t.Errorf("max concurrent deliveries = %d", h.del.maxRun)
	}
}

func TestForcedExpiryUsesOldReason(t *testing.T) {
	h := newHarness(t, nil)
	id := h.queue(spool.Incoming, "s@src.example", "x@down.example")
	if err := h.sp.Move(id, spool.Incoming, spool.Deferred); err != nil {
		t.Fatal(err)
	}
	env := h.envelope(spool.Deferred, id)
	if err := h.sp.AppendLog(spool.Defer, id, spool.LogEntry{Recipient: "x@down.example", Offset: env.Recipients[0].Offset, Status: "4.4.1", Action: "delayed", Reason: "old reason"}); err != nil {
		t.Fatal(err)
	}
	if err := h.sp.SetTimes(spool.Deferred, id, epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.sp.Path(spool.Deferred, id), 0o710); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.m.FlushAll()
	h.settle("forced expiry", func() bool { return h.gone(id) })
	if len(h.del.callList()) != 0 {
		t.Error("a force-expired message was delivered again")
	}
	reps := h.notes.list()
	if len(reps) != 1 || reps[0].Entries[0].Reason != "old reason" || reps[0].Entries[0].Action != "failed" {
		t.Errorf("reports = %+v", reps)
	}
	if !h.logHas(id + ": from=<s@src.example>, status=force-expired, returned to sender") {
		t.Errorf("log:\n%s", h.logbuf.String())
	}
}

func TestDelayWarning(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set("x@down.example", refused)
	h.start()
	id := h.queueEnv(spool.Incoming, &spool.NewEnvelope{Sender: "s@src.example", WarnTime: epoch.Add(10 * time.Minute)}, "x@down.example")
	h.m.Notify(id)
	h.settle("deferral", func() bool { return h.in(spool.Deferred, id) })
	if n := len(h.notes.list()); n != 0 {
		t.Fatalf("warning sent too early")
	}
	h.clk.Set(epoch.Add(11 * time.Minute))
	h.m.FlushAll()
	h.settle("second deferral", func() bool { return len(h.notes.list()) == 1 && h.in(spool.Deferred, id) })
	if r := h.notes.list()[0]; r.Kind != bounce.Delay || r.Entries[0].Action != "delayed" {
		t.Errorf("warning = %+v", r)
	}
	if env := h.envelope(spool.Deferred, id); env.WarnTime != -1 {
		t.Errorf("W = %d after the warning, want -1", env.WarnTime)
	}
	h.m.FlushAll()
	h.settle("third deferral", func() bool { return h.mtimeIf(spool.Deferred, id).After(epoch.Add(12 * time.Minute)) })
	if n := len(h.notes.list()); n != 1 {
		t.Errorf("%d warnings; one is enough", n)
	}
}

func TestFailedNotificationKeepsMessage(t *testing.T) {
	h := newHarness(t, nil)
	h.notes.fail = fmt.Errorf("disk full")
	h.del.set("x@a.example", Result{Status: Bounced, DSN: "5.1.1", Reason: "550 no"})
	h.start()
	id := h.queue(spool.Incoming, "s@src.example", "x@a.example")
	h.m.Notify(id)
	h.settle("deferral", func() bool { return h.in(spool.Deferred, id) })
	if _, err := os.Stat(h.sp.Path(spool.Bounce, id)); err != nil {
		t.Fatal("bounce log lost when the notice could not be sent")
	}
	h.notes.mu.Lock()
	h.notes.fail = nil
	h.notes.mu.Unlock()
	h.m.FlushAll()
	h.settle("removal", func() bool { return h.gone(id) })
	if len(h.notes.list()) != 1 || len(h.del.callList()) != 1 {
		t.Errorf("notices %d, deliveries %d; want 1 and 1", len(h.notes.list()), len(h.del.callList()))
	}
}

func TestShutdownLeavesInFlightInActive(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ShutdownGrace = 10 * time.Millisecond })
	h.del.block = make(chan struct{}) // never released: the grace runs out
	h.start()
	id := h.queue(spool.Incoming, "s@src.example", "x@a.example")
	h.m.Notify(id)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && h.m.Stats().Deliveries == 0 {
		time.Sleep(time.Millisecond)
	}
	h.stop()
	if !h.in(spool.Active, id) {
		t.Fatal("in-flight message is not in active/ after shutdown")
	}
	if _, err := os.Stat(filepath.Join(h.sp.Root, "defer")); err != nil {
		t.Fatal(err)
	}
	if log, _ := h.sp.ReadLog(spool.Defer, id); len(log) != 0 {
		t.Errorf("aborted delivery left defer entries %+v", log)
	}
}

// acquireAsync calls Acquire for id in a goroutine; the channel gets its
// release function.
func (h *harness) acquireAsync(id string) <-chan func() {
	got := make(chan func(), 1)
	go func() {
		release, err := h.m.Acquire(context.Background(), id)
		if err != nil {
			h.t.Error(err)
		}
		got <- release
	}()
	return got
}

func TestAcquireWaitsForDeliveryInFlight(t *testing.T) {
	h := newHarness(t, nil)
	h.del.block = make(chan struct{})
	h.start()
	id := h.queue(spool.Incoming, "s@src.example", "x@a.example")
	h.m.Notify(id)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && h.m.Stats().Deliveries == 0 {
		time.Sleep(time.Millisecond)
	}
	got := h.acquireAsync(id)
	select {
	case <-got:
		t.Fatal("Acquire returned while a delivery was in flight")
	case <-time.After(30 * time.Millisecond):
	}
	close(h.del.block)
	release := <-got
	// The delivery ended but the message was not finished: it waits in
	// active/ for the action.
	if !h.in(spool.Active, id) {
		t.Fatal("acquired message left active/")
	}
	if err := h.sp.Move(id, spool.Active, spool.Hold); err != nil {
		t.Fatal(err)
	}
	release()
	h.settle("release", func() bool { return h.in(spool.Hold, id) })
}

// TestAcquireLetsGoOfKept: a message taken from what cleanup kept of
// its file, acquired by an action during its delivery and released to
// it, lets go of what was kept (the action had the file).
func TestAcquireLetsGoOfKept(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	// A first message, so that the scan at start is over.
	first := h.queue(spool.Incoming, "alice@src.example", "x@b.example")
	h.m.Notify(first)
	h.settle("removal", func() bool { return h.gone(first) })
	block := make(chan struct{})
	h.del.mu.Lock()
	h.del.block = block
	h.del.mu.Unlock()
	id := h.queue(spool.Incoming, "alice@src.example", "x@b.example")
	image, err := os.ReadFile(h.sp.Path(spool.Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	h.m.NotifyNew(id, &spool.Kept{Image: image})
	for deadline := time.Now().Add(5 * time.Second); len(h.del.callList()) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no delivery")
		}
	}
	if h.m.imageBytes.Load() == 0 {
		t.Fatal("the message was not taken from its image")
	}
	got := h.acquireAsync(id)
	// Until Acquire has the message, the delivery must not end.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		acquired := make(chan bool, 1)
		h.m.onLoop(context.Background(), func() { acquired <- h.m.active[id] != nil && h.m.active[id].acquired })
		if <-acquired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Acquire did not take the message")
		}
	}
	close(block)
	release := <-got
	if err := h.sp.Move(id, spool.Active, spool.Hold); err != nil {
		t.Fatal(err)
	}
	release()
	h.settle("release", func() bool { return h.in(spool.Hold, id) })
	h.settle("the image let go", func() bool { return h.m.imageBytes.Load() == 0 })
}

func TestAcquireKeepsSchedulerOff(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	// The ID is known before the file is there, so that Run's first scan
	// cannot take it before Acquire.
	id := h.queue(spool.Hold, "s@src.example", "x@a.example")
	release, err := h.m.Acquire(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sp.Move(id, spool.Hold, spool.Incoming); err != nil {
		t.Fatal(err)
	}
	h.m.Notify(id)
	h.m.Wake()
	time.Sleep(30 * time.Millisecond)
	if n := len(h.del.callList()); n != 0 || !h.in(spool.Incoming, id) {
		t.Fatalf("held message was taken (%d deliveries)", n)
	}
	release()
	h.settle("delivery after release", func() bool { return h.gone(id) })
}

// TestReadyAfterRecovery: Ready closes only once the unfinished files of
// the last run are gone, so a file written after Ready (a message being
// received) is never taken for one of them.
func TestReadyAfterRecovery(t *testing.T) {
	h := newHarness(t, nil)
	old, err := h.sp.NewFile(spool.Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.m.Ready():
		t.Fatal("ready before Run")
	default:
	}
	h.start()
	select {
	case <-h.m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("never ready")
	}
	if _, err := os.Lstat(old.Path); err == nil {
		t.Error("ready while the last run's unfinished file is still in incoming/")
	}
	// A message being received now: unfinished, and left alone.
	f, err := h.sp.NewFile(spool.Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.m.Notify(f.ID)
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Lstat(f.Path); err != nil {
		t.Errorf("a file being written after Ready was removed: %v", err)
	}
	f.Abort()
}
