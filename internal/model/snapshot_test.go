package model

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sluice/internal/clock"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

// TestSnapshotDamaged: a snapshot cut short is used for the records it
// has, the rest read from the files; one that is not a snapshot is
// ignored; either way the model equals the files.
func TestSnapshotDamaged(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, sp: sp, clk: clock.NewFake(time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)),
		log: &testutil.SyncBuffer{}, del: &randomDeliverer{rnd: rand.New(rand.NewSource(1))}}
	w.start()
	for range 40 {
		w.submit(rnd)
	}
	w.check("intake")
	w.clk.Advance(10 * time.Minute)
	w.check("retries")
	w.stopQ()
	time.Sleep(60 * time.Millisecond) // past racyWindow
	if _, err := w.live.WriteSnapshot(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(w.snapshotPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.snapshotPath(), whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	w.start()
	n := len(w.live.Messages())
	if h := w.live.SnapshotHits(); h <= 0 || h >= int64(n) {
		t.Errorf("from half a snapshot: %d of %d messages taken from it", h, n)
	}
	w.check("start from half a snapshot")
	w.stopQ()

	if err := os.WriteFile(w.snapshotPath(), []byte("not a snapshot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.start()
	defer w.stopQ()
	if h := w.live.SnapshotHits(); h != -1 {
		t.Errorf("a file that is not a snapshot gave %d messages", h)
	}
	w.check("start beside a file that is not a snapshot")
}

// TestSnapshotDriftReconciled: a file changed behind the daemon's back
// before it stopped is vouched for by the snapshot with what the model
// held; the reconcile pass that Run makes at once after such a start
// finds and fixes it.
func TestSnapshotDriftReconciled(t *testing.T) {
	rnd := rand.New(rand.NewSource(2))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, sp: sp, clk: clock.NewFake(time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)),
		log: &testutil.SyncBuffer{}, del: &randomDeliverer{rnd: rand.New(rand.NewSource(2))}}
	w.start()
	for range 30 {
		w.submit(rnd)
	}
	w.check("intake")
	// A hand edit of a deferred message's defer log, not reconciled.
	id := ""
	for _, m := range w.live.Messages() {
		if m.Queue == spool.Deferred {
			if log, _ := sp.ReadLog(spool.Defer, m.ID); len(log) > 0 {
				id = m.ID
				break
			}
		}
	}
	if id == "" {
		t.Fatal("no deferred message with a defer log")
	}
	log, _ := sp.ReadLog(spool.Defer, id)
	for i := range log {
		log[i].Reason = "edited by hand"
	}
	if err := sp.RemoveLog(spool.Defer, id); err != nil {
		t.Fatal(err)
	}
	if err := sp.AppendLog(spool.Defer, id, log...); err != nil {
		t.Fatal(err)
	}
	w.stopQ()
	time.Sleep(60 * time.Millisecond) // past racyWindow
	if _, err := w.live.WriteSnapshot(); err != nil {
		t.Fatal(err)
	}
	w.start()
	defer w.stopQ()
	if h := w.live.SnapshotHits(); h <= 0 {
		t.Fatalf("%d messages from the snapshot", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.live.Run(ctx, time.Hour); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); w.live.Drift() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reconcile after the start did not find the hand edit")
		}
	}
	cancel()
	<-done
	w.check("reconcile after a start from a snapshot")
	if !strings.Contains(w.log.String(), id+": drift:") {
		t.Errorf("the drift is not in the log:\n%s", w.log.String())
	}
}

// snapshotRoundTrip builds a model of sp with at most limit reasons in
// memory, writes its snapshot, and builds another from that snapshot;
// it returns both and the snapshot's bytes.
func snapshotRoundTrip(t *testing.T, sp *spool.Spool, now time.Time, limit int) (scan, loaded *Model, snap []byte) {
	t.Helper()
	cfg := Config{Spool: sp, Now: func() time.Time { return now }, Snapshot: filepath.Join(sp.Root, "private", "model-snapshot")}
	build := func() *Model {
		m := New(cfg)
		m.syms.limit = limit
		if err := m.Build(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	scan = build()
	time.Sleep(60 * time.Millisecond) // past racyWindow
	if _, err := scan.WriteSnapshot(); err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(cfg.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	loaded = build()
	if h, n := loaded.SnapshotHits(), len(scan.Messages()); h != int64(n) {
		t.Fatalf("%d of %d messages taken from the snapshot", h, n)
	}
	return scan, loaded, snap
}

// TestSnapshotReasonsOnDisk: reasons past the model's cap are left in
// the defer logs (onDisk); a model started from a snapshot still shows
// them, read from there, and does not take them for no reason at all.
func TestSnapshotReasonsOnDisk(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 60, now, 3)
	deferEach(t, sp, func(i int) string { return fmt.Sprintf("connect to mx[192.0.2.%d]:25: Connection refused", i) })
	scan, loaded, _ := snapshotRoundTrip(t, sp, now, 5)
	if scan.syms.reasons != 5 {
		t.Fatalf("%d reasons kept, want the cap of 5", scan.syms.reasons)
	}
	a, b := scan.Messages(), loaded.Messages()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("from the snapshot: %s", describe(b, a))
	}
	onDisk := 0
	for _, m := range loaded.MessagesInMemory() {
		for _, r := range m.Recipients {
			if !r.Done && r.Reason == "" {
				onDisk++
			}
		}
	}
	if onDisk == 0 {
		t.Error("no reason was left on disk: the test does not test the cap")
	}
}

// TestSnapshotStringsOnce: a text that many messages share (a sender,
// a reason) is written to the snapshot once and referred to after.
func TestSnapshotStringsOnce(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 60, now, 4)
	const reason = "connect to mx.shared.example[192.0.2.1]:25: Connection refused"
	n := deferEach(t, sp, func(int) string { return reason })
	scan, loaded, snap := snapshotRoundTrip(t, sp, now, maxReasons)
	if c := bytes.Count(snap, []byte(reason)); c != 1 {
		t.Errorf("the reason of %d messages is in the snapshot %d times", n, c)
	}
	if a, b := scan.Messages(), loaded.Messages(); !reflect.DeepEqual(a, b) {
		t.Fatalf("from the snapshot: %s", describe(b, a))
	}
}
