package spool

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newMessage writes and commits a queue file of lines lines in queue.
func newMessage(t *testing.T, s *Spool, lines int) *File {
	t.Helper()
	f, err := s.NewFile(Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteEnvelope(&NewEnvelope{Arrival: time.Now(), Sender: "a@b.test", Recipients: []NewRecipient{{Address: "c@d.test"}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < lines; i++ {
		f.WriteLine([]byte(strings.Repeat("m", 70)))
	}
	return f
}

func inodeAt(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestRecycle: a removed file kept in recycle/ is the next new message's,
// embryonic until it is committed, cut to the new message's length, under
// a new queue ID; a file that is too big, or a spool that does not
// recycle (a tool's), is not kept; an aborted reused file is removed.
func TestRecycle(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	big := newMessage(t, s, 300)
	if err := big.Commit(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(big.Path)
	if s.Recycle(Incoming, big.ID, fi.Size(), nil) {
		t.Fatal("recycled by a spool that does not recycle")
	}
	if err := s.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	if s.Recycle(Incoming, big.ID, recycleFileMax+1, nil) {
		t.Fatal("recycled a file past recycleFileMax")
	}
	ino := inodeAt(t, big.Path)
	if !s.Recycle(Incoming, big.ID, fi.Size(), nil) {
		t.Fatal("not recycled")
	}
	if _, err := os.Stat(big.Path); !os.IsNotExist(err) {
		t.Fatalf("the recycled file is still in its queue: %v", err)
	}

	small := newMessage(t, s, 3)
	if small.ID == big.ID {
		t.Fatal("the new message has the old one's queue ID")
	}
	if _, err := os.Lstat(small.Path); !os.IsNotExist(err) {
		t.Fatalf("a reused file is in its queue before its commit: %v", err)
	}
	small.KeepImage = true
	if err := small.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := inodeAt(t, small.Path); got != ino {
		t.Fatalf("new file has inode %d, not the recycled %d", got, ino)
	}
	if want := ShortID(time.Unix(0, 0), ino)[5:]; !strings.HasSuffix(small.ID, want) {
		t.Fatalf("queue ID %s is not named by the inode (%s)", small.ID, want)
	}
	disk, err := os.ReadFile(small.Path)
	if err != nil {
		t.Fatal(err)
	}
	if string(disk) != string(small.Image()) {
		t.Fatalf("the reused file holds %d bytes, the new message is %d", len(disk), len(small.Image()))
	}
	e, _, err := ReadFile(small.Path, ReadOptions{})
	if err != nil || e.Size.MessageLen != int64(3*RecordSize(70)) {
		t.Fatalf("reused file reads back %+v, %v", e, err)
	}
	if fi, _ := os.Stat(small.Path); !IsReady(fi.Mode()) {
		t.Fatalf("committed file not ready: %v", fi.Mode())
	}

	// Reused and aborted: gone.
	if !s.Recycle(Incoming, small.ID, int64(len(disk)), nil) {
		t.Fatal("not recycled")
	}
	again := newMessage(t, s, 1)
	again.Abort()
	if _, err := os.Stat(again.Path); !os.IsNotExist(err) {
		t.Fatalf("an aborted reused file is still there: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root, Incoming)); len(ents) != 0 {
		t.Fatalf("incoming/ holds %d files after the abort", len(ents))
	}

	// Reused, sent to hold/ before its commit (a milter's HOLD): it is
	// named there, and nowhere else.
	spare := newMessage(t, s, 1)
	if err := spare.Commit(); err != nil {
		t.Fatal(err)
	}
	if !s.Recycle(Incoming, spare.ID, 200, nil) {
		t.Fatal("not recycled")
	}
	held := newMessage(t, s, 2)
	if err := held.MoveTo(Hold); err != nil {
		t.Fatal(err)
	}
	if err := held.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path(Hold, held.ID)); err != nil || !IsReady(fi.Mode()) {
		t.Fatalf("held message: %v", err)
	}
	if _, err := os.Lstat(s.Path(Incoming, held.ID)); !os.IsNotExist(err) {
		t.Fatalf("held message in incoming/ too: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root, Recycle)); len(ents) != 0 {
		t.Fatalf("recycle/ holds %d files after its only one was taken", len(ents))
	}
}

// TestRecycleLeftovers: files an earlier run left in recycle/ are taken
// over up to recycleMax, and the rest removed, as is the name of one that
// a queue holds too; the keep is bounded.
func TestRecycleLeftovers(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Root, Recycle)
	for i := 0; i < recycleMax+10; i++ {
		if err := os.WriteFile(filepath.Join(dir, "left"+strconv.Itoa(i)), []byte("old"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// One left by a crash with a second name in a queue: its name here
	// goes, the queued file stays as it is.
	queued := newMessage(t, s, 2)
	if err := queued.Commit(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(queued.Path)
	if err := os.Link(queued.Path, filepath.Join(dir, "0doubly")); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != recycleMax {
		t.Fatalf("recycle/ holds %d files, want %d", len(ents), recycleMax)
	}
	if _, err := os.Lstat(filepath.Join(dir, "0doubly")); !os.IsNotExist(err) {
		t.Errorf("a file linked in a queue too was kept: %v", err)
	}
	if after, err := os.ReadFile(queued.Path); err != nil || string(after) != string(before) {
		t.Errorf("the queued file changed: %v", err)
	}
	f := newMessage(t, s, 1)
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.Recycle(Incoming, f.ID, 100, nil) != true {
		t.Fatal("a file was not kept with room for it") // one was taken by f
	}
	if s.Recycle(Incoming, "NOSUCHID", 100, nil) {
		t.Fatal("a missing file was kept")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != recycleMax {
		t.Fatalf("recycle/ holds %d files, want %d", len(ents), recycleMax)
	}
}

// TestRecycleKept: a file recycled with its descriptor still open (Kept)
// is the next new message's without being opened again: the same inode,
// written from its start whatever the descriptor's position, cut only
// when the new message is shorter, marked done through the descriptor;
// past keptMax a Kept holds the image but no descriptor.
func TestRecycleKept(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	commit := func(lines int) (*File, *Kept) {
		t.Helper()
		f := newMessage(t, s, lines)
		f.KeepImage = true
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		k := f.Kept()
		if k == nil || !k.Open() {
			t.Fatalf("commit kept %+v", k)
		}
		return f, k
	}
	prev, k := commit(5)
	for i, lines := range []int{3, 8, 8, 1} {
		ino := inodeAt(t, prev.Path)
		if !s.Recycle(Incoming, prev.ID, int64(len(k.Image)), k) {
			t.Fatal("not recycled")
		}
		k.Close()
		if s.kept.Load() != 0 {
			t.Fatalf("%d descriptors counted as kept after the recycling", s.kept.Load())
		}
		next, nk := commit(lines)
		if got := inodeAt(t, next.Path); got != ino {
			t.Fatalf("message %d: inode %d, not the recycled %d", i, got, ino)
		}
		disk, err := os.ReadFile(next.Path)
		if err != nil {
			t.Fatal(err)
		}
		if string(disk) != string(nk.Image) {
			t.Fatalf("message %d: the reused file holds %d bytes, the message is %d", i, len(disk), len(nk.Image))
		}
		e, _, err := ReadFile(next.Path, ReadOptions{})
		if err != nil || len(e.Recipients) != 1 {
			t.Fatalf("message %d reads back %+v, %v", i, e, err)
		}
		if err := nk.MarkDone(next.Path, e.Recipients[0].Offset, false); err != nil {
			t.Fatal(err)
		}
		if e, _, _ := ReadFile(next.Path, ReadOptions{}); len(e.Pending()) != 0 {
			t.Fatalf("message %d: marked done through the descriptor, still pending: %+v", i, e.Pending())
		}
		prev, k = next, nk
	}
	k.Close()

	var ks []*Kept
	for i := 0; i < keptMax+1; i++ {
		f := newMessage(t, s, 1)
		f.KeepImage = true
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		ks = append(ks, f.Kept())
	}
	if last := ks[keptMax]; last == nil || last.Open() || last.Image == nil {
		t.Fatalf("past keptMax: %+v", last)
	}
	for _, k := range ks {
		k.Close()
	}
	if s.kept.Load() != 0 {
		t.Fatalf("%d descriptors counted as kept after closing all", s.kept.Load())
	}
}
