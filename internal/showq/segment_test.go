package showq

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// keptSpool is a hashed spool of n deferred messages, each with two
// recipients and no defer log yet, whose directories have settled.
func keptSpool(t *testing.T, n int) (*spool.Spool, []tmsg) {
	t.Helper()
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	sp.SetHashQueues("deferred, defer, hold")
	sp.HashDepth = 1
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var msgs []tmsg
	for i := range n {
		msgs = append(msgs, tmsg{
			queue: spool.Deferred, id: fmt.Sprintf("%X%09X", i%16, 0x100000+i), arrival: at.Add(time.Duration(i) * time.Minute),
			sender: "s@example.com", rcpts: rcpts(fmt.Sprintf("r%d@example.com", i), "other@example.org"),
		})
	}
	if n > 40 {
		// Two messages that are read from their files at every
		// listing: a defer-log entry that names no recipient (the
		// model does not keep it), and a damaged file (warned about).
		e := deferEntry("nobody@example.com", "451 4.3.0 lost")
		e.Offset = 0
		msgs[3].log = []spool.LogEntry{e}
		T := fmt.Sprintf("T:%d 0", at.Unix())
		msgs[20].raw = rawFile("C:100 0 0 1", T, "S:trunc@example.com", "R:r1@example.com")[:50]
	}
	buildSpool(t, sp, msgs)
	time.Sleep(settle + 100*time.Millisecond)
	return sp, msgs
}

// segWriter takes segments as the control socket does, checking that
// nobody can write to them.
type segWriter struct {
	bytes.Buffer
	segments int
	writable bool
}

func (w *segWriter) WriteSegment(f *os.File, off, n int64) error {
	w.segments++
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		w.writable = true
	}
	_, err := io.Copy(&w.Buffer, io.NewSectionReader(f, off, n))
	return err
}

// TestListerKeepsRenderings: a directory the model gives whole is
// rendered once and then taken as kept, while neither it nor the
// model's messages in it change; a change through the model (an
// attempt's outcome, which touches no queue directory), a move, or a
// change behind the daemon's back that a reconcile pass brings in, is
// listed at once, as a scan lists it.
func TestListerKeepsRenderings(t *testing.T) {
	sp, msgs := keptSpool(t, 320)
	m := buildModel(t, sp)
	l := NewLister(sp, m)
	compareListings(t, "start", sp, l, DefaultOptions(), false, time.UTC)
	if hits, kept := l.CacheStats(); hits == 0 || kept == 0 {
		t.Fatalf("nothing was kept or taken: %d hits, %d bytes kept", hits, kept)
	}
	hits, _ := l.CacheStats()
	_, files := l.Stats()

	// Listed again unchanged: every directory is taken as kept, and
	// the two files are read again, with their warning.
	w := &segWriter{}
	var warns []string
	opt := DefaultOptions()
	opt.Warn = func(s string) { warns = append(warns, s) }
	if err := l.Write(w, opt, Format{Kind: Text, Loc: time.UTC}); err != nil {
		t.Fatal(err)
	}
	want, wantWarns := scanOutput(t, sp, DefaultOptions(), Format{Kind: Text, Loc: time.UTC})
	if w.String() != want {
		t.Fatalf("kept renderings differ from a scan\n--- lister\n%s--- scan\n%s", w.String(), want)
	}
	if fmt.Sprint(warns) != fmt.Sprint(wantWarns) || len(warns) == 0 {
		t.Errorf("warnings %q, want %q", warns, wantWarns)
	}
	if h, _ := l.CacheStats(); h-hits != 16 {
		t.Errorf("%d directories taken as kept, want all 16", h-hits)
	}
	if w.segments != 18 {
		t.Errorf("%d segments written, want 18: one for each of the 16 directories, and one more for each of the two holes", w.segments)
	}
	if w.writable {
		t.Error("a kept rendering could be written to")
	}
	if _, f := l.Stats(); f != files+2 {
		t.Errorf("%d files read for an unchanged queue, want the 2 the model cannot give", f-files)
	}

	// An outcome through the model: the defer log gets an entry (in
	// defer/, so deferred/'s directories do not change) and the model
	// the event.
	x := msgs[5]
	env, _, err := spool.ReadFile(sp.Path(spool.Deferred, x.id), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := deferEntry(x.rcpts[0].addr, "host mx.example.com[192.0.2.9] said: 452 4.2.2 mailbox full")
	e.Offset = env.Recipients[0].Offset
	if err := sp.AppendLog(spool.Defer, x.id, e); err != nil {
		t.Fatal(err)
	}
	m.Observe(&event.Deferred{Attempt: event.Attempt{
		ID: x.id, Time: time.Now(), To: x.rcpts[0].addr, Offset: e.Offset,
		DSN: e.Status, Reason: e.Reason, Class: "mailbox",
	}})
	compareListings(t, "after an outcome", sp, l, DefaultOptions(), false, time.UTC)

	// A move, with its event.
	y := msgs[9]
	if err := sp.Move(y.id, spool.Deferred, spool.Hold); err != nil {
		t.Fatal(err)
	}
	m.Observe(&event.Moved{ID: y.id, From: spool.Deferred, To: spool.Hold, Time: time.Now()})
	compareListings(t, "after a move", sp, l, DefaultOptions(), false, time.UTC)

	// Behind the daemon's back, then a reconcile pass.
	z := msgs[12]
	env, _, err = spool.ReadFile(sp.Path(spool.Deferred, z.id), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e = deferEntry(z.rcpts[1].addr, "connect to mx.example.org[192.0.2.7]:25: Connection timed out")
	e.Offset = env.Recipients[1].Offset
	if err := sp.AppendLog(spool.Defer, z.id, e); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reconcile(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	compareListings(t, "after a reconcile", sp, l, DefaultOptions(), false, time.UTC)
}

// TestListerKeepsNothingWithoutRoom: with no room (the daemon's heap is
// large) nothing is kept, and what was kept is dropped.
func TestListerKeepsNothingWithoutRoom(t *testing.T) {
	sp, _ := keptSpool(t, 20)
	l := NewLister(sp, buildModel(t, sp))
	compareListings(t, "with room", sp, l, DefaultOptions(), false, time.UTC)
	if _, kept := l.CacheStats(); kept == 0 {
		t.Fatal("nothing kept with room")
	}
	l.SetCacheLimit(func() int64 { return 0 })
	hits, _ := l.CacheStats()
	compareListings(t, "without room", sp, l, DefaultOptions(), false, time.UTC)
	if h, kept := l.CacheStats(); h != hits || kept != 0 {
		t.Errorf("without room: %d more hits, %d bytes kept", h-hits, kept)
	}
}
