package model

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// TestScanOddFiles: a scan takes the ready queue files — a small one
// read whole and one past wholeFileMax read through the record reader —
// with their defer logs, and passes over what is not one: a file still
// being written (not u+rwx), a symbolic link, and a FIFO (which must not
// stall it).
func TestScanOddFiles(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	write := func(rcpts int) string {
		env := &spool.NewEnvelope{Arrival: now.Add(-time.Hour), Sender: "a@src.test"}
		for i := range rcpts {
			env.Recipients = append(env.Recipients, spool.NewRecipient{Address: "u" + strings.Repeat("x", i%50) + "@d.test"})
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
		if err := sp.Move(f.ID, spool.Incoming, spool.Deferred); err != nil {
			t.Fatal(err)
		}
		read, _, err := spool.ReadFile(sp.Path(spool.Deferred, f.ID), spool.ReadOptions{SkipContent: true})
		if err != nil {
			t.Fatal(err)
		}
		r := read.Recipients[0]
		if err := sp.AppendLog(spool.Defer, f.ID, spool.LogEntry{Recipient: r.Address, Offset: r.Offset, Status: "4.4.1", Action: "delayed",
			Reason: "connect to mx.d.test[192.0.2.1]:25: Connection refused"}); err != nil {
			t.Fatal(err)
		}
		return f.ID
	}
	small, big, writing := write(2), write(9000), write(1)
	if fi, err := os.Stat(sp.Path(spool.Deferred, big)); err != nil || fi.Size() <= wholeFileMax {
		t.Fatalf("the big file has %v bytes (%v); want more than %d", fi.Size(), err, wholeFileMax)
	}
	if err := os.Chmod(sp.Path(spool.Deferred, writing), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(sp.Path(spool.Deferred, small))
	if err := os.Symlink(sp.Path(spool.Deferred, small), filepath.Join(dir, "ABCDEF0123")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "ABCDEF0124"), 0o700); err != nil {
		t.Fatal(err)
	}
	m := New(Config{Spool: sp, Now: func() time.Time { return now }})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range m.Messages() {
		ids = append(ids, v.ID)
		if len(v.Recipients) == 0 || v.Recipients[0].Class != "connection-refused" {
			t.Errorf("%s: recipients %+v, want the first refused", v.ID, v.Recipients[:min(1, len(v.Recipients))])
		}
	}
	if len(ids) != 2 || !(ids[0] == small && ids[1] == big || ids[0] == big && ids[1] == small) {
		t.Errorf("the model holds %v, want %s and %s", ids, small, big)
	}
}

// TestEventBeforeBuild: a message an event brought before the first
// build (intake opens before the model loads) is counted once with the
// scanned ones: the aggregates equal a model built from the files alone.
func TestEventBeforeBuild(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := randomSpool(t, 40, now, 9)
	entries, err := sp.List(spool.Deferred)
	if err != nil || len(entries) == 0 {
		t.Fatalf("%d deferred, %v", len(entries), err)
	}
	clock := func() time.Time { return now }
	fresh := New(Config{Spool: sp, Now: clock})
	if err := fresh.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := New(Config{Spool: sp, Now: clock})
	// The event says what the file says (as cleanup's would).
	v, _ := fresh.Message(entries[0].ID)
	rec := &event.Received{ID: v.ID, Queue: spool.Incoming, Arrival: v.Arrival, Size: v.Size, Sender: v.Sender}
	for _, r := range v.Recipients {
		rec.Recipients = append(rec.Recipients, event.Recipient{Address: r.Address, Done: r.Done})
	}
	m.Observe(rec)
	if s := m.Summary(); s.Queues[0].Messages != 1 {
		t.Fatalf("before the build: %+v", s.Queues)
	}
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The event won over the scan's reading (it is in incoming/ in the
	// model); everything else is the files'.
	got, want := m.Summary(), fresh.Summary()
	var gm, wm int64
	for i := range got.Queues {
		gm += got.Queues[i].Messages
		wm += want.Queues[i].Messages
	}
	if gm != wm {
		t.Errorf("%d messages counted, the files have %d", gm, wm)
	}
	sameSummaries(t, m, now, "after the build")
	for _, by := range summaryKeys {
		a, am, ar := m.Summarize(by, now, testKeys)
		b, bm, br := fresh.Summarize(by, now, testKeys)
		if am != bm || ar != br || (by != "queue" && len(a) != len(b)) {
			t.Errorf("by %s: %d groups %d/%d, files %d groups %d/%d", by, len(a), am, ar, len(b), bm, br)
		}
	}
}
