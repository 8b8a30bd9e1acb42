package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// The text a peer receives for the real Postfix queue file 54AB4BA048
// (postcat-q-54AB4BA048.txt between the content and extracted markers).
const text54AB4BA048 = "Received: by facts.test (Postfix, from userid 0)\n" +
	"\tid 54AB4BA048; Sun, 29 Nov 2026 15:08:30 +0000 (UTC)\n" +
	"Subject: test one\n" +
	"From: Alice <alice@facts.test>\n" +
	"To: bob@example.com\n" +
	"Message-Id: <20261129150830.54AB4BA048@facts.test>\n" +
	"Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)\n" +
	"\n" +
	"Hello Bob.\n" +
	"Second line.\n"

func TestOpenContentPostfixFile(t *testing.T) {
	c, err := OpenContent("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Envelope.Sender != "alice@facts.test" || len(c.Envelope.Recipients) != 1 ||
		c.Envelope.Recipients[0].Offset != 242 {
		t.Errorf("envelope = %+v", c.Envelope)
	}
	// iotest.TestReader reads in odd sizes and checks every result
	// against the expected text.
	if err := iotest.TestReader(c, []byte(text54AB4BA048)); err != nil {
		t.Error(err)
	}
	if c.Size != int64(len(text54AB4BA048)) {
		t.Errorf("Size = %d, want %d", c.Size, len(text54AB4BA048))
	}
}

// queueFile assembles a queue file from records. A record written as
// {RecPtr, "@name"} becomes a pointer to the record labelled name; a
// record with a label records its offset under that label.
type rec struct {
	label string
	typ   byte
	data  string
}

func assemble(t *testing.T, recs []rec) []byte {
	t.Helper()
	labels := map[string]int{}
	var buf []byte
	type patch struct {
		at    int
		label string
	}
	var patches []patch
	for _, r := range recs {
		if r.label != "" {
			labels[r.label] = len(buf)
		}
		data := r.data
		if r.typ == RecPtr && strings.HasPrefix(data, "@") {
			patches = append(patches, patch{len(buf) + 2, data[1:]})
			data = fmt.Sprintf("%15d", 0)
		}
		buf = AppendRecordString(buf, r.typ, data)
	}
	for _, p := range patches {
		off, ok := labels[p.label]
		if !ok {
			t.Fatalf("no label %q", p.label)
		}
		copy(buf[p.at:], fmt.Sprintf("%15d", off))
	}
	return buf
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qf")
	if err := os.WriteFile(p, b, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

var envelopeRecs = []rec{
	{"", RecTime, "1795964910 322038"},
	{"", RecSender, "alice@facts.test"},
	{"", RecRcpt, "bob@example.com"},
	{"", RecMesg, ""},
}

func TestContentRecords(t *testing.T) {
	long := strings.Repeat("x", 2048)
	tests := []struct {
		name    string
		content []rec
		want    string
		corrupt bool
	}{
		{
			name:    "plain lines and an empty line",
			content: []rec{{"", RecNorm, "Subject: a"}, {"", RecNorm, ""}, {"", RecNorm, "body"}, {"", RecXtra, ""}, {"", RecEnd, ""}},
			want:    "Subject: a\n\nbody\n",
		},
		{
			name: "L records join the following N",
			content: []rec{{"", RecNorm, "Subject: long"}, {"", RecNorm, ""},
				{"", RecCont, long}, {"", RecCont, long}, {"", RecNorm, "tail"}, {"", RecNorm, "next"},
				{"", RecXtra, ""}, {"", RecEnd, ""}},
			want: "Subject: long\n\n" + long + long + "tail\nnext\n",
		},
		{
			name:    "empty body",
			content: []rec{{"", RecXtra, ""}, {"", RecEnd, ""}},
			want:    "",
		},
		{
			name:    "padding is skipped",
			content: []rec{{"", RecNorm, "a"}, {"", RecDTXT, "xxxx"}, {"", RecNorm, "b"}, {"", RecXtra, ""}, {"", RecEnd, ""}},
			want:    "a\nb\n",
		},
		{
			// The layout cleanup uses with milters: a pointer after the
			// headers jumps to headers appended after E, whose last
			// record points back to the body.
			name: "pointer records are followed and records after E are read",
			content: []rec{{"", RecNorm, "H1: a"}, {"", RecPtr, "@added"}, {"body", RecNorm, ""}, {"", RecNorm, "text"},
				{"", RecPtr, fmt.Sprintf("%15d", 0)}, {"", RecXtra, ""}, {"", RecEnd, ""},
				{"added", RecNorm, "H2: b"}, {"", RecPtr, "@body"}},
			want: "H1: a\nH2: b\n\ntext\n",
		},
		{
			name:    "text stops at X, extracted records are not text",
			content: []rec{{"", RecNorm, "a"}, {"", RecXtra, ""}, {"", RecRcpt, "x@y"}, {"", RecEnd, ""}},
			want:    "a\n",
		},
		{
			name:    "content without X is corrupt",
			content: []rec{{"", RecNorm, "a"}, {"", RecEnd, ""}},
			corrupt: true,
		},
		{
			name:    "envelope record inside content is corrupt",
			content: []rec{{"", RecNorm, "a"}, {"", RecSender, "b"}, {"", RecXtra, ""}, {"", RecEnd, ""}},
			corrupt: true,
		},
		{
			name:    "truncated file is corrupt",
			content: []rec{{"", RecNorm, "a"}, {"", RecNorm, "bc"}},
			corrupt: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := assemble(t, append(append([]rec{}, envelopeRecs...), tt.content...))
			if tt.name == "truncated file is corrupt" {
				b = b[:len(b)-1]
			}
			c, err := OpenContent(writeTemp(t, b))
			if tt.corrupt {
				if err == nil {
					c.Close()
					t.Fatal("OpenContent accepted a damaged file")
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := iotest.TestReader(c, []byte(tt.want)); err != nil {
				t.Error(err)
			}
			if c.Size != int64(len(tt.want)) {
				t.Errorf("Size = %d, want %d", c.Size, len(tt.want))
			}
		})
	}
}

func TestContentFromWriter(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1795964910, 322038000)
	f, err := s.NewFile(Incoming, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteEnvelope(&NewEnvelope{Arrival: now, Sender: "a@b", Recipients: []NewRecipient{{Address: "c@d"}}}); err != nil {
		t.Fatal(err)
	}
	lines := []string{"Subject: hi", "", "Hello.", strings.Repeat("y", 5000), ".", "..dots"}
	for _, l := range lines {
		f.WriteLine([]byte(l))
	}
	f.KeepImage = true
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	// The same text from the file and from the image Commit kept.
	fromFile, err := OpenContent(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	fromImage, err := ContentOf(f.Image())
	if err != nil {
		t.Fatal(err)
	}
	// And with the envelope read already, as the queue manager has it.
	withEnv, err := ContentWith(f.Image(), fromFile.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Content{fromFile, fromImage, withEnv} {
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(lines, "\n") + "\n"; string(got) != want || c.Size != int64(len(want)) {
			t.Errorf("text = %q (size %d), want %q", got, c.Size, want)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil {
			t.Errorf("read after close = %d, %v", n, err)
		}
	}
	if _, err := ContentOf([]byte("garbage")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("content of a damaged image: %v", err)
	}
	// An image cut inside its text: no X record to end it.
	cut := f.Image()[:fromFile.Envelope.ContentOffset+20]
	if _, err := ContentWith(cut, fromFile.Envelope); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
		t.Errorf("content of a cut image: %v", err)
	}
}

func TestContentClosedAndMissing(t *testing.T) {
	if _, err := OpenContent(filepath.Join(t.TempDir(), "nosuch")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	c, err := OpenContent("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Errorf("read after close = %d, %v", n, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestReadContentShared: a queue file open once is read in full twice
// (local delivery reads the message once for its headers and again per
// mailbox), the file's offset is not used, and Close leaves it open.
func TestReadContentShared(t *testing.T) {
	f, err := os.Open("testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(17, io.SeekStart) // a passed descriptor's offset is anyone's
	for pass := 0; pass < 2; pass++ {
		c, err := ReadContent(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := iotest.TestReader(c, []byte(text54AB4BA048)); err != nil {
			t.Errorf("pass %d: %v", pass, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Stat(); err != nil {
		t.Errorf("the file was closed: %v", err)
	}
	var empty *os.File
	if empty, err = os.CreateTemp(t.TempDir(), "x"); err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if _, err := ReadContent(empty); err == nil {
		t.Error("an empty file read as a queue file")
	}
}
