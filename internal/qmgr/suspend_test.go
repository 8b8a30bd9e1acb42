package qmgr

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/clock"
	"sluice/internal/spool"
)

// fakeSuspensions suspends recipient domains until a time.
type fakeSuspensions struct {
	mu     sync.Mutex
	until  map[string]time.Time // domain → end
	checks int                  // Suspended calls
}

func (f *fakeSuspensions) set(domain string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.until == nil {
		f.until = map[string]time.Time{}
	}
	f.until[domain] = until
}

func (f *fakeSuspensions) Any(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.until {
		if now.Before(u) {
			return true
		}
	}
	return false
}

func (f *fakeSuspensions) Suspended(now time.Time, id string, env *spool.Envelope, rcpt string) (time.Time, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	u, ok := f.until[domainOf(rcpt)]
	if !ok || !now.Before(u) {
		return time.Time{}, "", false
	}
	return u, "suspension 7 (maintenance)", true
}

func (f *fakeSuspensions) count() int { f.mu.Lock(); defer f.mu.Unlock(); return f.checks }

type fileState struct {
	mode  os.FileMode
	mtime time.Time
	size  int64
}

func (h *harness) state(queue, id string) fileState {
	h.t.Helper()
	fi, err := os.Stat(h.sp.Path(queue, id))
	if err != nil {
		h.t.Fatalf("%s in %s: %v", id, queue, err)
	}
	return fileState{fi.Mode(), fi.ModTime(), fi.Size()}
}

// Mail whose recipients are all suspended is not taken: its file stays
// where it was, unchanged, with no log, no attempt; other mail flows;
// when the suspension ends the mail is delivered at once, without
// waiting for a scan.
func TestSuspendedMailNotTakenUntilTheEnd(t *testing.T) {
	susp := &fakeSuspensions{}
	end := epoch.Add(time.Hour)
	susp.set("held.example", end)
	h := newHarness(t, func(c *Config) { c.Suspensions = susp; c.QueueRunDelay = 10 * time.Minute })
	h.start()
	idNew := h.queue(spool.Incoming, "s@src.example", "a@held.example", "b@held.example")
	idOther := h.queue(spool.Incoming, "s@src.example", "c@free.example")
	// One already deferred, due now: the deferred scan finds it.
	idDef := h.queue(spool.Hold, "s@src.example", "d@held.example")
	if err := h.sp.Move(idDef, spool.Hold, spool.Deferred); err != nil {
		t.Fatal(err)
	}
	if err := h.sp.SetTimes(spool.Deferred, idDef, epoch); err != nil {
		t.Fatal(err)
	}
	h.m.Notify(idNew)
	h.m.Notify(idOther)
	h.settle("the free mail", func() bool { return h.gone(idOther) })
	h.clk.Advance(10 * time.Minute) // the deferred scan
	h.settle("parking", func() bool { return h.logHas(idDef + ": delivery suspended") })
	before := map[string]fileState{idNew: h.state(spool.Incoming, idNew), idDef: h.state(spool.Deferred, idDef)}

	// Scans come and go; the suspended mail stays put, untouched.
	for i := 0; i < 3; i++ {
		h.clk.Advance(10 * time.Minute)
		h.settle("a scan", func() bool { return true })
	}
	time.Sleep(20 * time.Millisecond)
	if got := h.state(spool.Incoming, idNew); got != before[idNew] {
		t.Errorf("incoming file changed: %+v → %+v", before[idNew], got)
	}
	if got := h.state(spool.Deferred, idDef); got != before[idDef] {
		t.Errorf("deferred file changed: %+v → %+v", before[idDef], got)
	}
	for _, id := range []string{idNew, idDef} {
		if _, err := os.Stat(h.sp.Path(spool.Defer, id)); err == nil {
			t.Errorf("%s has a defer log", id)
		}
	}
	for _, c := range h.del.callList() {
		if c.id == idNew || c.id == idDef {
			t.Fatalf("suspended mail delivered: %+v", c)
		}
	}
	// Parked messages are not read again at every scan.
	n := susp.count()
	h.clk.Advance(10 * time.Minute)
	h.settle("a scan", func() bool { return true })
	time.Sleep(20 * time.Millisecond)
	if susp.count() != n {
		t.Errorf("a scan read parked mail again (%d → %d checks)", n, susp.count())
	}
	if !h.logHas(idNew + ": delivery suspended until ") {
		t.Errorf("no log of the suspension:\n%s", h.logbuf.String())
	}

	// The end: both are delivered at once, not at the next scan
	// (which is 10 minutes off at the end).
	h.clk.Set(end)
	h.settle("delivery after the end", func() bool { return h.gone(idNew) && h.gone(idDef) })
	if h.clk.Now() != end {
		t.Fatalf("clock moved to %v", h.clk.Now())
	}
}

// A message with some recipients suspended: the others are delivered,
// the suspended ones deferred as "delivery temporarily suspended" with
// the next attempt at the suspension's end (before the backoff), then
// delivered.
func TestSuspendedMixedRecipients(t *testing.T) {
	susp := &fakeSuspensions{}
	end := epoch.Add(2 * time.Minute) // before minimal_backoff_time
	susp.set("held.example", end)
	h := newHarness(t, func(c *Config) { c.Suspensions = susp })
	h.start()
	id := h.queue(spool.Incoming, "s@src.example", "a@free.example", "b@held.example")
	h.m.Notify(id)
	h.settle("deferral", func() bool { return h.in(spool.Deferred, id) })
	if p := h.envelope(spool.Deferred, id).Pending(); len(p) != 1 || p[0].Address != "b@held.example" {
		t.Fatalf("pending = %+v", p)
	}
	if got := h.mtime(spool.Deferred, id); !got.Equal(end) {
		t.Errorf("next attempt %v, want the suspension's end %v", got, end)
	}
	log, _ := h.sp.ReadLog(spool.Defer, id)
	if len(log) != 1 || log[0].Reason != "delivery temporarily suspended: suspension 7 (maintenance)" || log[0].Status != "4.3.2" {
		t.Fatalf("defer log %+v", log)
	}
	if calls := h.del.callList(); len(calls) != 1 || fmt.Sprint(calls[0].rcpts) != "[a@free.example]" {
		t.Fatalf("calls %+v", calls)
	}
	if !strings.Contains(h.logbuf.String(), "to=<b@held.example>") || !h.logHas("status=deferred (delivery temporarily suspended: suspension 7 (maintenance))") {
		t.Errorf("log:\n%s", h.logbuf.String())
	}
	h.clk.Set(end)
	h.settle("delivery at the end", func() bool { return h.gone(id) })
	if calls := h.del.callList(); len(calls) != 2 || fmt.Sprint(calls[1].rcpts) != "[b@held.example]" {
		t.Fatalf("calls %+v", calls)
	}
}

// Resuming early (SuspensionsChanged) makes the held mail due at once.
func TestSuspensionResumedEarly(t *testing.T) {
	susp := &fakeSuspensions{}
	susp.set("held.example", epoch.Add(24*time.Hour))
	h := newHarness(t, func(c *Config) { c.Suspensions = susp })
	h.start()
	id := h.queue(spool.Incoming, "s@src.example", "a@held.example")
	h.m.Notify(id)
	h.settle("parking", func() bool { return h.logHas(id + ": delivery suspended") })
	if !h.in(spool.Incoming, id) {
		t.Fatal("not left in incoming/")
	}
	susp.set("held.example", epoch) // ended
	h.m.SuspensionsChanged()
	h.settle("delivery", func() bool { return h.gone(id) })
	// And one added later holds mail that arrives after it.
	susp.set("held.example", epoch.Add(24*time.Hour))
	h.m.SuspensionsChanged()
	id2 := h.queue(spool.Incoming, "s@src.example", "z@held.example")
	h.m.Notify(id2)
	h.settle("parking", func() bool { return h.logHas(id2 + ": delivery suspended") })
	if !h.in(spool.Incoming, id2) || len(h.del.callList()) != 1 {
		t.Fatalf("second message not held: %v", h.del.callList())
	}
}

// A suspension made while a delivery waits in active/ for a connection
// slot applies to it: it is deferred as suspended, not delivered.
func TestSuspensionAppliesToQueuedDeliveries(t *testing.T) {
	susp := &fakeSuspensions{}
	h := newHarness(t, func(c *Config) { c.Suspensions = susp; c.ProcessLimit = 1 })
	h.del.block = make(chan struct{})
	h.start()
	first := h.queue(spool.Incoming, "s@src.example", "a@first.example")
	h.m.Notify(first)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.del.callList()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	second := h.queue(spool.Incoming, "s@src.example", "b@held.example", "c@held.example", "d@free.example")
	h.m.Notify(second)
	for h.m.Stats().Active < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if h.m.Stats().Active != 2 {
		t.Fatal("second message not taken")
	}
	susp.set("held.example", epoch.Add(time.Hour))
	close(h.del.block)
	h.settle("the second message", func() bool { return h.in(spool.Deferred, second) })
	for _, c := range h.del.callList() {
		for _, r := range c.rcpts {
			if strings.HasSuffix(r, "@held.example") {
				t.Fatalf("suspended recipient delivered: %+v", c)
			}
		}
	}
	if p := h.envelope(spool.Deferred, second).Pending(); len(p) != 2 {
		t.Fatalf("pending %+v", p)
	}
	if got := h.mtime(spool.Deferred, second); !got.Equal(epoch.Add(5 * time.Minute)) {
		t.Errorf("next attempt %v: the backoff (before the suspension's end)", got)
	}
}

// BenchmarkParkedScan measures scans of incoming/ full of suspended
// mail: the first look reads every envelope, later scans only look the
// IDs up.
func BenchmarkParkedScan(b *testing.B) {
	const n = 5000
	sp := spool.New(b.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		f, err := sp.NewFile(spool.Incoming, epoch)
		if err != nil {
			b.Fatal(err)
		}
		f.WriteEnvelope(&spool.NewEnvelope{Sender: "s@src.example", Arrival: epoch, Recipients: []spool.NewRecipient{{Address: fmt.Sprintf("u%d@held.example", i)}}})
		f.WriteLine([]byte("Subject: x"))
		if err := f.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	susp := &fakeSuspensions{}
	susp.set("held.example", epoch.Add(time.Hour))
	m, err := New(Config{Spool: sp, Clock: clock.NewFake(epoch), Deliverer: &fakeDeliverer{}, Suspensions: susp})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	m.scanIncoming()
	first := time.Since(start)
	if len(m.parked) != n || len(m.active) != 0 {
		b.Fatalf("%d parked, %d active", len(m.parked), len(m.active))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.scanIncoming()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/rescan/msg")
	b.ReportMetric(float64(first.Microseconds())/n, "µs/first-look/msg")
}
