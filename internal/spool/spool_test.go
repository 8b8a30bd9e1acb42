package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadPostfixQueueFile(t *testing.T) {
	b, err := os.ReadFile("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	e, err := ReadEnvelope(NewBytesReader(b), ReadOptions{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Size.MessageLen != 302 || e.Size.DataOffset != 261 || e.Size.RcptCount != 1 {
		t.Errorf("size record = %+v", e.Size)
	}
	if e.Arrival.Unix() != 1795964910 || e.Arrival.Nanosecond() != 322038000 {
		t.Errorf("arrival = %v", e.Arrival)
	}
	if e.Sender != "alice@facts.test" || e.FullName != "root" || e.CreateTime != 1795964910 {
		t.Errorf("sender %q fullname %q create %d", e.Sender, e.FullName, e.CreateTime)
	}
	if len(e.Recipients) != 1 || e.Recipients[0].Address != "bob@example.com" || e.Recipients[0].Offset != 242 ||
		e.Recipients[0].Orig != "bob@example.com" || e.Recipients[0].DSNOrig != "rfc822;bob@example.com" {
		t.Errorf("recipients = %+v", e.Recipients)
	}
	if e.ExtractOffset != 563 || e.ContentOffset != 261 {
		t.Errorf("content at %d, extracted at %d", e.ContentOffset, e.ExtractOffset)
	}
}

func TestQueueIDs(t *testing.T) {
	info, err := ParseID("4jcrGj5fZ5z5jwm")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Long || info.Sec != 1795965117 || info.Usec != 796541 || info.Inode != 761980 {
		t.Errorf("long ID = %+v", info)
	}
	if got := LongID(time.Unix(1795965117, 796541000), 761980); got != "4jcrGj5fZ5z5jwm" {
		t.Errorf("LongID = %s", got)
	}
	info, err = ParseID("54AB4BA048")
	if err != nil || info.Long || info.Usec != 346804 || info.Inode != 761928 {
		t.Errorf("short ID = %+v, %v", info, err)
	}
	if got := ShortID(time.Unix(0, 346804000), 761928); got != "54AB4BA048" {
		t.Errorf("ShortID = %s", got)
	}
	s := New("/q")
	if got := s.RelPath(Deferred, "54AB4BA048"); got != "deferred/5/54AB4BA048" {
		t.Errorf("short hash path = %s", got)
	}
	if got := s.RelPath(Deferred, "4jcrGj5fZ5z5jwm"); got != "deferred/C/4jcrGj5fZ5z5jwm" {
		t.Errorf("long hash path = %s", got)
	}
	s.HashDepth = 2
	if got := s.RelPath(Defer, "54AB4BA048"); got != "defer/5/4/54AB4BA048" {
		t.Errorf("depth 2 = %s", got)
	}
	if got := s.RelPath(Incoming, "54AB4BA048"); got != "incoming/54AB4BA048" {
		t.Errorf("unhashed = %s", got)
	}
	for _, bad := range []string{"", "bad/id", "E3307BA071#", "../x"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1795964910, 322038000)
	f, err := s.NewFile(Incoming, now)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(f.Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("embryonic mode = %v", fi.Mode())
	}
	err = f.WriteEnvelope(&NewEnvelope{
		Arrival: now, Sender: "alice@facts.test", FullName: "root",
		Attrs:      []Attr{{"rewrite_context", "local"}},
		Recipients: []NewRecipient{{Address: "bob@example.com", Orig: "bob@example.com", DSNOrig: "rfc822;bob@example.com"}, {Address: "carol@example.org"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 4100)
	for _, l := range []string{"Subject: hi", "", "Hello.", long} {
		f.WriteLine([]byte(l))
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f.Path)
	if err != nil || !IsReady(fi.Mode()) {
		t.Fatalf("committed file: %v %v", fi, err)
	}
	e, _, err := ReadFile(f.Path, ReadOptions{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Sender != "alice@facts.test" || len(e.Recipients) != 2 || e.Size.RcptCount != 2 {
		t.Fatalf("read back %+v", e)
	}
	wantLen := int64(RecordSize(11) + RecordSize(0) + RecordSize(6) + 2*RecordSize(2048) + RecordSize(4))
	if e.Size.MessageLen != wantLen || e.ExtractOffset != e.Size.DataOffset+wantLen {
		t.Errorf("size %+v extract %d, want len %d", e.Size, e.ExtractOffset, wantLen)
	}
	if err := MarkDone(f.Path, e.Recipients[0].Offset, true); err != nil {
		t.Fatal(err)
	}
	e, _, _ = ReadFile(f.Path, ReadOptions{})
	if !e.Recipients[0].Done || e.Recipients[1].Done {
		t.Errorf("after MarkDone: %+v", e.Recipients)
	}
	if err := s.Move(f.ID, Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	if q, err := s.Locate(f.ID); err != nil || q != Deferred {
		t.Errorf("Locate = %s, %v", q, err)
	}
	ents, err := s.List(Deferred)
	if err != nil || len(ents) != 1 || ents[0].Rel != s.RelPath(Deferred, f.ID) {
		t.Errorf("List = %+v, %v", ents, err)
	}
}

func TestDeferLogRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/defer-log-99240BA05B.raw")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := ParseLog(bytes.NewReader(raw))
	if err != nil || len(ents) != 3 {
		t.Fatalf("ParseLog: %d entries, %v", len(ents), err)
	}
	if ents[1].Recipient != "3x@sub.example.com" || ents[1].Offset != 626 || ents[1].Status != "4.4.1" ||
		ents[1].Reason != "connect to 127.0.0.1[127.0.0.1]:9: Connection refused" {
		t.Errorf("entry = %+v", ents[1])
	}
	var b []byte
	for i := range ents {
		b = ents[i].AppendTo(b)
	}
	if !bytes.Equal(b, raw) {
		t.Errorf("re-rendered log differs:\n%q\n%q", b, raw)
	}
	dir := t.TempDir()
	s := New(dir)
	if err := s.AppendLog(Defer, "54AB4BA048", ents...); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "defer/5/54AB4BA048"))
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("AppendLog wrote %q, %v", got, err)
	}
}

func TestCorruptFiles(t *testing.T) {
	b, _ := os.ReadFile("testdata/queuefile-54AB4BA048.bin")
	for n := 0; n < len(b); n++ {
		_, err := ReadEnvelope(NewBytesReader(b[:n]), ReadOptions{})
		if err == nil {
			t.Fatalf("truncated at %d: no error", n)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v does not wrap ErrCorrupt", n, err)
		}
	}
}

func TestReaderReset(t *testing.T) {
	b, err := os.ReadFile("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(nil, 0)
	for i := 0; i < 3; i++ {
		// A shorter file after a longer one: nothing of the first may leak.
		src := b
		if i == 1 {
			src = b[:200]
		}
		r.Reset(bytes.NewReader(src), int64(len(src)))
		e, err := ReadEnvelope(r, ReadOptions{SkipContent: true})
		if i == 1 {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated file after Reset: %v", err)
			}
			continue
		}
		if err != nil || e.Sender != "alice@facts.test" || len(e.Recipients) != 1 {
			t.Fatalf("read %d after Reset: %+v, %v", i, e, err)
		}
	}
}

// TestCreateNamedBothWays makes queue files both ways CreateNamed can:
// without a name (O_TMPFILE, where the system has it) and through a
// named temporary file. Either way the file has its ID's name and its
// mode, nothing else is left in the directory, and a name already taken
// is never replaced.
func TestCreateNamedBothWays(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1795964910, 322038000)
	ways := map[string]func() (*os.File, string, error){
		"CreateNamed": func() (*os.File, string, error) { return s.CreateNamed(Incoming, now, 0o640) },
		"createTemp": func() (*os.File, string, error) {
			f, id, _, err := s.createTemp(Incoming, now, 0o640)
			return f, id, err
		},
	}
	for name, create := range ways {
		t.Run(name, func(t *testing.T) {
			f, id, err := create()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("data"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(s.Path(Incoming, id))
			if err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != 4 {
				t.Fatalf("queue file %s: %v %v", id, fi, err)
			}
			if !os.SameFile(fi, mustStat(t, f)) {
				t.Errorf("the name %s is not the file written", id)
			}
			ents, _ := os.ReadDir(filepath.Join(s.Root, Incoming))
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) != 1 || names[0] != id {
				t.Errorf("incoming/ holds %v, want only %s", names, id)
			}
			os.Remove(s.Path(Incoming, id))
		})
	}
	// A name taken already (here: made by hand, with the ID the next
	// file will get) is not replaced: the next microsecond names it.
	s.Inode = func(fs.FileInfo) uint64 { return 0x4242 }
	taken := ShortID(now, 0x4242)
	if err := os.WriteFile(s.Path(Incoming, taken), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, create := range ways {
		f, id, err := create()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.Close()
		if id == taken || id != ShortID(now.Add(time.Microsecond), 0x4242) {
			t.Errorf("%s: ID %s beside the taken %s", name, id, taken)
		}
		if b, _ := os.ReadFile(s.Path(Incoming, taken)); string(b) != "keep" {
			t.Errorf("%s: the file at the taken name now holds %q", name, b)
		}
		os.Remove(s.Path(Incoming, id))
	}
}

func mustStat(t *testing.T, f *os.File) os.FileInfo {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestMarkDone: an R record becomes D in place, once; anything else at
// the offset, or no file, is an error that says so.
func TestMarkDone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ABCDEF12345")
	if err := os.WriteFile(path, []byte{RecRcpt, 1, 'x', RecSize, 1, '0'}, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := MarkDone(path, 0, true); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); b[0] != RecDone {
			t.Fatalf("record type %q, want D", b[0])
		}
	}
	if err := MarkDone(path, 3, false); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a size record marked: %v", err)
	}
	if err := MarkDone(path, 100, false); err == nil {
		t.Error("an offset past the end marked")
	}
	if err := MarkDone(path+"-gone", 0, false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestImage: a small file committed with KeepImage is written in one
// piece and its image is the file's bytes, size record included; a file
// past the buffer is written as it grows, gets its size record in place
// afterwards, and has no image.
func TestImage(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	for _, lines := range []int{3, 200} {
		f, err := s.NewFile(Incoming, time.Unix(1795964910, 0))
		if err != nil {
			t.Fatal(err)
		}
		f.KeepImage = true
		if err := f.WriteEnvelope(&NewEnvelope{Arrival: time.Unix(1795964910, 0), Sender: "a@b.test", Recipients: []NewRecipient{{Address: "c@d.test"}}}); err != nil {
			t.Fatal(err)
		}
		f.WriteLine([]byte("Subject: image"))
		f.WriteLine(nil)
		for i := 0; i < lines; i++ {
			f.WriteLine([]byte(strings.Repeat("z", 500)))
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		disk, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		img := f.Image()
		switch {
		case len(disk) <= spillAt && string(img) != string(disk):
			t.Errorf("%d lines: image of %d bytes differs from the file's %d", lines, len(img), len(disk))
		case len(disk) > spillAt && img != nil:
			t.Errorf("%d lines: a %d-byte file has an image", lines, len(disk))
		}
		e, _, err := ReadFile(f.Path, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(RecordSize(14) + RecordSize(0) + lines*RecordSize(500)); e.Size.MessageLen != want {
			t.Errorf("%d lines: size record says %d content bytes, want %d", lines, e.Size.MessageLen, want)
		}
	}
}

// TestShortIDFormat: ShortID is %05X of the microseconds and %X of the
// inode, for every length of each.
func TestShortIDFormat(t *testing.T) {
	for _, us := range []int{0, 1, 0xF, 0xABCDE, 999999} {
		for _, ino := range []uint64{0, 1, 0xF, 0x10, 761928, 0xFFFFFFFF, 1 << 40, ^uint64(0)} {
			tm := time.Unix(1795964910, int64(us)*1000)
			if got, want := ShortID(tm, ino), fmt.Sprintf("%05X%X", us, ino); got != want {
				t.Errorf("ShortID(%d µs, inode %d) = %s, want %s", us, ino, got, want)
			}
		}
	}
}
