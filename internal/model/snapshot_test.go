package model

import (
	"context"
	"math/rand"
	"os"
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
	if err := w.live.WriteSnapshot(); err != nil {
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
	if err := w.live.WriteSnapshot(); err != nil {
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
