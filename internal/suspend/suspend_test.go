package suspend

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/audit"
	"sluice/internal/clock"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func newStore(t *testing.T, dir string, clk clock.Clock, onChange func()) (*Store, *syncBuf) {
	t.Helper()
	buf := &syncBuf{}
	s, err := Open(Config{
		Path: filepath.Join(dir, "s.json"), Clock: clk, NoSync: true, OnChange: onChange,
		Log: maillog.New(buf, "host", "postfix", clk.Now), AuditPath: filepath.Join(dir, "audit.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, buf
}

func TestParseSelector(t *testing.T) {
	for _, ok := range []string{"domain=*.example.com", "rcpt=a@b.c sender_domain=x.org", "id=4ABC123", "size>1M", "domain!=example.com"} {
		if _, err := ParseSelector(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "queue=deferred", "class=dns", "reason=timeout", "attempts>3", "domain"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSuspendedPerRecipient(t *testing.T) {
	clk := clock.NewFake(t0)
	s, _ := newStore(t, t.TempDir(), clk, nil)
	env := &spool.Envelope{Sender: "alice@sender.org", Arrival: t0}
	if s.Any(t0) {
		t.Fatal("Any with no suspensions")
	}
	x, err := s.Add("domain=*.example.com", "maintenance", 2*time.Hour, "uid=0")
	if err != nil {
		t.Fatal(err)
	}
	if x.ID != 1 || !x.Until.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("added %+v", x)
	}
	until, why, ok := s.Suspended(t0, "ID1", env, "bob@mx.EXAMPLE.com")
	if !ok || !until.Equal(t0.Add(2*time.Hour)) || why != "suspension 1 (maintenance)" {
		t.Fatalf("suspended = %v %q %v", until, why, ok)
	}
	if _, _, ok := s.Suspended(t0, "ID1", env, "carol@other.net"); ok {
		t.Fatal("other.net suspended")
	}
	if _, _, ok := s.Suspended(t0, "ID1", env, "dave@example.com"); ok {
		t.Fatal("*.example.com matched the bare domain")
	}
	// A second, longer suspension covering the same recipient: it
	// waits for the later end.
	s.Add("sender_domain=sender.org", "", 5*time.Hour, "api")
	until, why, _ = s.Suspended(t0, "ID1", env, "bob@mx.example.com")
	if !until.Equal(t0.Add(5*time.Hour)) || why != "suspension 2" {
		t.Fatalf("two suspensions: %v %q", until, why)
	}
	// At its end a suspension no longer holds, even before Run removed it.
	if _, _, ok := s.Suspended(t0.Add(5*time.Hour), "ID1", env, "bob@mx.example.com"); ok {
		t.Fatal("suspended at its end")
	}
}

func TestPersistResumeAndExpiry(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	s, _ := newStore(t, dir, clk, nil)
	s.Add("domain=a.example", "one", time.Hour, "uid=0")
	s.Add("domain=b.example", "two", 3*time.Hour, "uid=0")
	s.Add("domain=c.example", "three", 3*time.Hour, "uid=0")
	if _, err := s.Resume(3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resume(3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resume twice: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "s.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}
	// A restart reads the same set; IDs are not reused.
	s2, _ := newStore(t, dir, clk, nil)
	if l := s2.List(); len(l) != 2 || l[0].Reason != "one" || l[1].Selector != "domain=b.example" {
		t.Fatalf("reloaded %+v", l)
	}
	if x, _ := s2.Add("domain=d.example", "", time.Hour, ""); x.ID != 4 {
		t.Fatalf("new ID %d, want 4", x.ID)
	}
	// Restarted after the first one ended: it is dropped and logged.
	clk.Advance(2 * time.Hour)
	s3, log := newStore(t, dir, clk, nil)
	if l := s3.List(); len(l) != 1 || l[0].ID != 2 {
		t.Fatalf("after an end while down: %+v", l)
	}
	for _, want := range []string{"suspension 1 ended", "suspension 4 ended"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	var ends []audit.Entry
	audit.Read(filepath.Join(dir, "audit.log"), time.Time{}, func(e audit.Entry) error { ends = append(ends, e); return nil })
	if len(ends) != 2 || ends[0].Interface != audit.Suspend || ends[0].Action != "suspension-ended" {
		t.Fatalf("audit %+v", ends)
	}
}

func TestRunEndsOnTime(t *testing.T) {
	clk := clock.NewFake(t0)
	changes := make(chan struct{}, 10)
	s, log := newStore(t, t.TempDir(), clk, func() { changes <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	s.Add("domain=example.com", "", 10*time.Minute, "")
	<-changes
	waitArmed(t, clk)
	clk.Advance(9 * time.Minute)
	if !s.Any(clk.Now()) || len(s.List()) != 1 {
		t.Fatal("ended early")
	}
	clk.Advance(time.Minute)
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("no change at the end")
	}
	if len(s.List()) != 0 || !strings.Contains(log.String(), "suspension 1 ended") {
		t.Fatalf("not ended: %+v\n%s", s.List(), log.String())
	}
	cancel()
	<-done
}

// waitArmed waits until the store's goroutine has set its timer.
func waitArmed(t *testing.T, clk *clock.Fake) {
	deadline := time.Now().Add(10 * time.Second)
	for clk.Pending() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("timer never armed")
		}
		time.Sleep(time.Millisecond)
	}
}
