package audit

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := Append(path, Entry{Time: t0, User: User(0), UID: 0, Interface: CLI, Tool: "postsuper", Action: "hold", IDs: []string{"4ABC"}, Matched: 1, Changed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, Entry{Time: t0.Add(time.Hour), User: "api", UID: -1, Interface: HTTP, Action: "suspend", Selector: "domain=*.example.com", Detail: "suspension 1 for 2h0m0s"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	var got []Entry
	if err := Read(path, time.Time{}, func(e Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Action != "hold" || got[1].User != "api" || got[1].Selector != "domain=*.example.com" || !got[0].Time.Equal(t0) {
		t.Fatalf("read back %+v", got)
	}
	got = nil
	Read(path, t0.Add(30*time.Minute), func(e Entry) error { got = append(got, e); return nil })
	if len(got) != 1 || got[0].Action != "suspend" {
		t.Fatalf("since: %+v", got)
	}
	if s := got[0].Text(); !strings.Contains(s, "api via http: suspend domain=*.example.com") {
		t.Errorf("text %q", s)
	}
}

// A torn last line (a crash mid-write) is skipped, the others read.
func TestReadSkipsTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	Append(path, Entry{User: "uid=0", Interface: CLI, Action: "delete"})
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-01-0`)
	f.Close()
	n := 0
	if err := Read(path, time.Time{}, func(Entry) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

// Appends from many goroutines (as from many processes: each opens the
// file itself) never interleave.
func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry{User: "uid=0", Interface: Control, Action: "hold"}
			e.SetIDs(make([]string, 150))
			if err := Append(path, e); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n := 0
	Read(path, time.Time{}, func(e Entry) error {
		if len(e.IDs) != 100 || e.MoreIDs != 50 {
			t.Errorf("ids %d more %d", len(e.IDs), e.MoreIDs)
		}
		n++
		return nil
	})
	if n != 20 {
		t.Fatalf("%d entries, want 20", n)
	}
}
