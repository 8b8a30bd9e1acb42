package control

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/audit"
	"sluice/internal/manage"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// Suspensions through the socket, and the audit entries of every change
// the socket makes.
func TestSuspensionsAndAudit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changes through the socket are for root and the mail owner")
	}
	root := t.TempDir()
	sp := spool.New(root)
	sp.Create()
	a := queued(t, sp, "a@example.com")
	// The store calls OnChange on the server's goroutine: the count is
	// atomic, as the socket between them is no synchronization the race
	// detector sees.
	var changes atomic.Int64
	st, err := suspend.Open(suspend.Config{Path: suspend.Path(root), NoSync: true, OnChange: func() { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	auditPath := audit.Path(root)
	srv, err := Listen(root, Backend{Queue: &manage.Queue{Spool: sp}, FlushAll: func() {}, Suspensions: st, AuditPath: auditPath})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	c, err := Dial(root)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Suspend(ctx, suspend.Request{Selector: "queue=deferred", For: "2h"}); err == nil {
		t.Error("a suspension by queue was accepted")
	}
	x, err := c.Suspend(ctx, suspend.Request{Selector: "domain=*.example.com", For: "2h", Reason: "maintenance"})
	if err != nil || x.ID != 1 || x.Reason != "maintenance" || x.User != "uid=0" {
		t.Fatalf("suspend: %+v %v", x, err)
	}
	if d := x.Until.Sub(x.Created); d != 2*time.Hour {
		t.Errorf("length %v", d)
	}
	list, err := c.Suspensions(ctx)
	if err != nil || len(list) != 1 || list[0].Selector != "domain=*.example.com" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if _, err := os.Stat(filepath.Join(root, suspend.FileName)); err != nil {
		t.Errorf("not persisted: %v", err)
	}
	if _, err := c.Resume(ctx, 9); err == nil {
		t.Error("resumed a suspension that does not exist")
	}
	ended, err := c.Resume(ctx, 1)
	if err != nil || len(ended) != 1 || ended[0].ID != 1 || changes.Load() != 2 {
		t.Fatalf("resume: %+v %v (changes %d)", ended, err, changes.Load())
	}
	if l, _ := c.Suspensions(ctx); len(l) != 0 {
		t.Errorf("still listed: %+v", l)
	}
	var results []ActResult
	if err := c.ActAll(ctx, manage.OpHold, []string{a, "ABCDEF12345"}, nil, func(r ActResult) { results = append(results, r) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}

	var got []audit.Entry
	if err := audit.Read(auditPath, time.Time{}, func(e audit.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		action                    string
		matched, changed, skipped int
	}{{"suspend", 0, 1, 0}, {"resume", 0, 0, 1}, {"resume", 1, 1, 0}, {"hold", 1, 1, 1}, {"flush", 0, 1, 0}}
	if len(got) != len(want) {
		t.Fatalf("audit log: %+v", got)
	}
	for i, w := range want {
		e := got[i]
		if e.Action != w.action || e.Matched != w.matched || e.Changed != w.changed || e.Skipped != w.skipped || e.Interface != audit.Control || e.User != "uid=0" || e.UID != 0 {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if got[0].Selector != "domain=*.example.com" || len(got[3].IDs) != 2 || got[3].IDs[0] != a {
		t.Errorf("entries lack selector or IDs: %+v", got)
	}
}
