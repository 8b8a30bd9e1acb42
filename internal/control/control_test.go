package control

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/manage"
	"sluice/internal/spool"
)

func queued(t *testing.T, sp *spool.Spool, rcpt string) string {
	t.Helper()
	f, err := sp.NewFile(spool.Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.WriteEnvelope(&spool.NewEnvelope{Arrival: time.Now(), Sender: "s@src.test", Recipients: []spool.NewRecipient{{Address: rcpt}}})
	f.WriteLine([]byte("Subject: x"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Move(f.ID, spool.Incoming, spool.Deferred); err != nil {
		t.Fatal(err)
	}
	return f.ID
}

func TestSocket(t *testing.T) {
	root := t.TempDir()
	sp := spool.New(root)
	sp.Create()
	a, b := queued(t, sp, "a@example.com"), queued(t, sp, "b@example.org")
	var flushed atomic.Int32
	srv, err := Listen(root, Backend{
		Queue:    &manage.Queue{Spool: sp},
		FlushAll: func() { flushed.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	if _, err := Listen(root, Backend{}); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Errorf("a second Listen on the same spool: %v", err)
	}

	c, err := Dial(root)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	sel, _ := manage.ParseSelector("domain=example.com")
	var listed []string
	if err := c.Each(ctx, sel, true, func(m *manage.Message) error { listed = append(listed, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != a {
		t.Errorf("listed %v, want [%s]", listed, a)
	}
	var results []ActResult
	err = c.ActAll(ctx, manage.OpHold, []string{a, b, "ABCDEF12345"}, nil, func(r ActResult) { results = append(results, r) })
	if err != nil || len(results) != 3 || !results[0].Changed || results[0].To != spool.Hold || !results[2].NotFound {
		t.Errorf("hold: %+v %v", results, err)
	}
	if _, err := c.Act(ctx, manage.OpDelete, b, nil); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := c.Act(ctx, manage.OpDelete, b, nil); err != manage.ErrNotFound {
		t.Errorf("second delete: %v", err)
	}
	if err := c.Flush(ctx, ""); err != nil || flushed.Load() != 1 {
		t.Errorf("flush: %v, %d calls", err, flushed.Load())
	}
	if err := c.Flush(ctx, "example.com"); err == nil {
		t.Error("site flush without a FlushSite backend succeeded")
	}
	srv.Shutdown(ctx)
	if _, err := Dial(root); err != ErrNoDaemon {
		t.Errorf("Dial after shutdown: %v", err)
	}
}

// Only root and the mail owner may change the queue; anyone may list and
// ask for a retry.
func TestPermissions(t *testing.T) {
	root := t.TempDir()
	sp := spool.New(root)
	sp.Create()
	s := &Server{b: Backend{Queue: &manage.Queue{Spool: sp}, MailOwner: 107}}
	for uid, want := range map[int]int{0: http.StatusOK, 107: http.StatusOK, 1000: http.StatusForbidden, -1: http.StatusForbidden} {
		req := httptest.NewRequest("POST", "/v1/act", strings.NewReader(`{"op":"delete","ids":["ABCDEF12345"]}`))
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, uid))
		w := httptest.NewRecorder()
		s.handleAct(w, req)
		if w.Code != want {
			t.Errorf("uid %d: status %d, want %d", uid, w.Code, want)
		}
	}
	req := httptest.NewRequest("POST", "/v1/act", strings.NewReader(`{"op":"explode","ids":["ABCDEF12345"]}`))
	req = req.WithContext(context.WithValue(req.Context(), peerKey{}, 0))
	w := httptest.NewRecorder()
	s.handleAct(w, req)
	if w.Code != http.StatusBadRequest {
		t.Errorf("unknown op: status %d", w.Code)
	}
}
