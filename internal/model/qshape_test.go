package model

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/event"
	"sluice/internal/qshape"
	"sluice/internal/spool"
)

// randomSpool writes n queue files with random arrivals (up to 3 days
// back), senders and recipients (some done), in deferred/, hold/ and
// incoming/; some force-expired.
func randomSpool(t testing.TB, n int, now time.Time, seed int64) *spool.Spool {
	t.Helper()
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewSource(seed))
	for i := 0; i < n; i++ {
		env := &spool.NewEnvelope{
			Arrival: now.Add(-time.Duration(rnd.Int63n(int64(72 * time.Hour)))),
			Sender:  []string{"", "a@Src.Test", "b@src.test.", "c@other.test", "x@y@odd..test"}[rnd.Intn(5)],
		}
		for k := 0; k <= rnd.Intn(4); k++ {
			a := fmt.Sprintf("u%d@D%d.test", rnd.Intn(9), rnd.Intn(7))
			env.Recipients = append(env.Recipients, spool.NewRecipient{Address: a})
		}
		f, err := sp.NewFile(spool.Incoming, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.WriteEnvelope(env); err != nil {
			t.Fatal(err)
		}
		f.WriteLine([]byte("Subject: x"))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		read, _, err := spool.ReadFile(sp.Path(spool.Incoming, f.ID), spool.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range read.Recipients {
			if rnd.Intn(4) == 0 {
				if err := spool.MarkDone(sp.Path(spool.Incoming, f.ID), r.Offset, false); err != nil {
					t.Fatal(err)
				}
			}
		}
		q := []string{spool.Deferred, spool.Deferred, spool.Hold, spool.Incoming}[rnd.Intn(4)]
		if q != spool.Incoming {
			if err := sp.Move(f.ID, spool.Incoming, q); err != nil {
				t.Fatal(err)
			}
		}
		if rnd.Intn(15) == 0 {
			os.Chmod(sp.Path(q, f.ID), 0o710)
		}
	}
	return sp
}

// parseQshape reads qshape's text table into row → counts (T first).
func parseQshape(t *testing.T, text string) map[string][]int64 {
	t.Helper()
	rows := map[string][]int64{}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		var c []int64
		for _, s := range f[1:] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("qshape line %q", l)
			}
			c = append(c, v)
		}
		rows[f[0]] = c
	}
	return rows
}

// TestQShapeMatchesQshape checks the model's qshape counts against the
// qshape package (byte-compatible with Postfix's script) on the same
// files, for recipients and senders, log and linear buckets.
func TestQShapeMatchesQshape(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 400, now, 7)
	m := New(Config{Spool: sp, Now: func() time.Time { return now }})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		senders, linear bool
		tick            float64
		buckets         int
		queues          []string
	}{
		{false, false, 5, 10, []string{spool.Deferred}},
		{true, false, 5, 10, []string{spool.Deferred, spool.Hold}},
		{false, true, 60, 12, []string{spool.Deferred, spool.Incoming}},
		{true, false, 2.5, 14, []string{spool.Incoming, spool.Hold}},
	} {
		name := fmt.Sprintf("s=%v l=%v t=%v b=%d %v", tc.senders, tc.linear, tc.tick, tc.buckets, tc.queues)
		o := qshape.Defaults()
		o.Senders, o.Linear = tc.senders, tc.linear
		o.Tick = qshape.ParseNumber(strconv.FormatFloat(tc.tick, 'f', -1, 64))
		o.Buckets = qshape.Num(uint64(tc.buckets))
		o.Width = qshape.Num(300)
		o.Now = func() time.Time { return now }
		var dirs []string
		for _, q := range tc.queues {
			dirs = append(dirs, sp.Root+"/"+q)
		}
		var out bytes.Buffer
		if err := qshape.Run(o, dirs, &out); err != nil {
			t.Fatal(err)
		}
		want := parseQshape(t, out.String())
		got := map[string][]int64{}
		for _, r := range m.QShape(QShapeOptions{Queues: tc.queues, Senders: tc.senders, Tick: tc.tick, Buckets: tc.buckets, Linear: tc.linear}, now).Rows {
			got[r.Domain] = append([]int64{r.Total}, r.Counts...)
		}
		if len(want) < 3 {
			t.Fatalf("%s: qshape shows too few rows to compare:\n%s", name, out.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\nmodel  %v\nqshape %v\n%s", name, got, want, out.String())
		}
	}
}

func TestHist(t *testing.T) {
	var h hist
	for _, x := range []int64{100, 100, 50, 10, 0, 75} {
		h.add(x, 1)
	}
	h.add(50, -1)
	out := make([]int64, 3)
	// Bucket 0: 80 and later; 1: 20 and later; 2: older.
	h.countInto(out, []int64{80, 20})
	if fmt.Sprint(out) != "[2 1 2]" || h.total != 5 {
		t.Errorf("buckets %v total %d", out, h.total)
	}
	if v, ok := h.min(); !ok || v != 0 {
		t.Errorf("min %d %v", v, ok)
	}
	h.add(0, -1)
	h.add(10, -1)
	if v, ok := h.min(); !ok || v != 75 {
		t.Errorf("min after removals %d %v", v, ok)
	}
	for i := int64(0); i < 200; i++ {
		h.add(1000+i, 1)
	}
	for i := int64(0); i < 200; i++ {
		h.add(1000+i, -1)
	}
	if h.total != 3 || h.keys > 100 {
		t.Errorf("after compaction: total %d, %d keys", h.total, h.keys)
	}
}

// deferEach appends a deferral to the defer log of every pending
// recipient of every message in sp, the i-th message of each queue
// with reason(i); it returns how many messages there are.
func deferEach(t *testing.T, sp *spool.Spool, reason func(i int) string) int {
	t.Helper()
	n := 0
	for _, q := range []string{spool.Deferred, spool.Hold, spool.Incoming} {
		entries, _ := sp.List(q)
		for i, e := range entries {
			env, _, err := spool.ReadFile(sp.Path(q, e.ID), spool.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range env.Pending() {
				le := spool.LogEntry{Recipient: r.Address, Offset: r.Offset, Status: "4.4.1", Action: "delayed", Reason: reason(i)}
				if err := sp.AppendLog(spool.Defer, e.ID, le); err != nil {
					t.Fatal(err)
				}
			}
			n++
		}
	}
	return n
}

// TestSymbolsFreedAndCapped checks that the strings of messages that
// have gone are freed, and that past the cap reasons are read from the
// defer log instead of kept.
func TestSymbolsFreedAndCapped(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 60, now, 3)
	ids := deferEach(t, sp, func(i int) string { return fmt.Sprintf("connect to mx[192.0.2.%d]:25: Connection refused", i) })
	m := New(Config{Spool: sp, Now: func() time.Time { return now }})
	m.syms.limit = 5
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.syms.reasons != 5 {
		t.Errorf("%d reasons kept, want the cap of 5", m.syms.reasons)
	}
	shown := 0
	for _, msg := range m.Messages() {
		for _, r := range msg.Recipients {
			if !r.Done {
				if !strings.HasPrefix(r.Reason, "connect to mx[192.0.2.") || r.Class != "connection-refused" {
					t.Fatalf("%s: recipient %+v", msg.ID, r)
				}
				shown++
			}
		}
	}
	if shown == 0 || len(m.Messages()) != ids {
		t.Fatalf("%d messages, %d reasons shown", len(m.Messages()), shown)
	}
	for _, msg := range m.Messages() {
		m.Observe(&event.Deleted{ID: msg.ID, Queue: msg.Queue})
	}
	if len(m.syms.idx) != 1 || m.syms.reasons != 0 {
		t.Errorf("after every message went: %d strings, %d reasons held", len(m.syms.idx), m.syms.reasons)
	}
	s := m.Summary()
	for _, q := range s.Queues {
		if q.Messages != 0 || q.Recipients != 0 || q.Bytes != 0 {
			t.Errorf("queue %+v not empty", q)
		}
	}
	if len(s.Classes) != 0 {
		t.Errorf("classes %+v", s.Classes)
	}
}

// TestHistRandom checks the chunked histogram against a plain map over
// random additions and removals, in and out of time order.
func TestHistRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	var h hist
	want := map[uint32]int64{}
	for step := 0; step < 60000; step++ {
		k := uint32(rng.Intn(5000))
		if step%3 == 0 {
			k = uint32(5000 + step) // in time order, at the end
		}
		d := int32(1)
		if rng.Intn(3) == 0 {
			d = -1
		}
		if d < 0 && want[k] == 0 {
			continue // the model never removes what it did not add
		}
		h.add(int64(k), d)
		want[k] += int64(d)
		if step%997 != 0 {
			continue
		}
		var total int64
		first := uint32(1<<32 - 1)
		lo, hi := uint32(rng.Intn(70000)), uint32(rng.Intn(70000))
		var inRange int64
		firstFrom, found := uint32(1<<32-1), false
		for k, n := range want {
			total += n
			if n != 0 && k < first {
				first = k
			}
			if k >= lo && k < hi {
				inRange += n
			}
			if n != 0 && k >= lo && k < firstFrom {
				firstFrom, found = k, true
			}
		}
		if h.total != total {
			t.Fatalf("step %d: total %d, want %d", step, h.total, total)
		}
		if m, ok := h.min(); total > 0 && (!ok || uint32(m) != first) {
			t.Fatalf("step %d: min %d %v, want %d", step, m, ok, first)
		}
		if got := h.sumRange(int64(lo), int64(hi)); got != inRange {
			t.Fatalf("step %d: sum [%d,%d) %d, want %d", step, lo, hi, got, inRange)
		}
		if got, ok := h.firstFrom(lo); ok != found || (found && got != firstFrom) {
			t.Fatalf("step %d: first from %d: %d %v, want %d %v", step, lo, got, ok, firstFrom, found)
		}
		out := make([]int64, 2)
		h.countInto(out, []int64{int64(lo)})
		if out[0]+out[1] != total {
			t.Fatalf("step %d: countInto %v, total %d", step, out, total)
		}
		if len(h.firsts) != len(h.chunks) {
			t.Fatalf("step %d: %d firsts for %d chunks", step, len(h.firsts), len(h.chunks))
		}
		for i, c := range h.chunks {
			if len(c.keys) == 0 || len(c.keys) > histChunkMax || (i > 0 && h.chunks[i-1].keys[len(h.chunks[i-1].keys)-1] >= c.keys[0]) || h.firsts[i] != c.keys[0] {
				t.Fatalf("step %d: chunk %d malformed", step, i)
			}
		}
	}
}

// TestHistBigCounts: a second's count past 16 bits is kept exactly (in
// hist.big), through splits and compaction, and leaves big once it is
// small again.
func TestHistBigCounts(t *testing.T) {
	var h hist
	want := map[uint32]int64{}
	add := func(k uint32, d int32) {
		h.add(int64(k), d)
		want[k] += int64(d)
	}
	for k := uint32(0); k < 3*histChunkMax; k += 2 {
		add(k, 1)
	}
	add(100, 70000)
	add(101, 1<<20) // a new second, big at once, in the middle: splits
	add(2*histChunkMax, 65534)
	add(2*histChunkMax, 1) // exactly bigCount
	check := func(when string) {
		t.Helper()
		got := map[uint32]int64{}
		h.each(func(k uint32, n int32) { got[k] = int64(n) })
		var total int64
		for k, n := range want {
			total += n
			if n != 0 && got[k] != n {
				t.Fatalf("%s: second %d counts %d, want %d", when, k, got[k], n)
			}
		}
		if h.total != total || h.sumRange(0, 1<<32-1) != total {
			t.Fatalf("%s: total %d, sum %d, want %d", when, h.total, h.sumRange(0, 1<<32-1), total)
		}
		out := make([]int64, 3)
		h.countInto(out, []int64{101, 100})
		if out[0] != want[101]+sumFrom(want, 102) || out[1] != want[100] {
			t.Fatalf("%s: countInto %v", when, out)
		}
	}
	check("after adding")
	if len(h.big) != 3 {
		t.Errorf("%d counts in big, want 3", len(h.big))
	}
	add(100, -69990)
	add(101, -(1<<20 - 5))
	add(2*histChunkMax, -65535)
	for k := uint32(200); k < 3*histChunkMax; k += 2 {
		add(k, -1) // zeros, compacted away
	}
	check("after removing")
	if len(h.big) != 0 {
		t.Errorf("%d counts left in big: %v", len(h.big), h.big)
	}
}

func sumFrom(m map[uint32]int64, lo uint32) int64 {
	var s int64
	for k, n := range m {
		if k >= lo {
			s += n
		}
	}
	return s
}
