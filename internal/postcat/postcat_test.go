package postcat

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIsHeader(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"Subject: x", true},
		{"X:", true},
		{"X :", true},
		{"X\t:", true},
		{"X \t :y", true},
		{"!#$%&'*+-/=?^_`{|}~:", true},
		{`"q":`, true},
		{":", false},
		{" :", false}, // a continuation, not a header
		{"X Y:", false},
		{"X-\x7f:", false},
		{"X\x01:", false},
		{"\xe9t\xe9:", false},
		{"a\x80:", false},
		{"", false},
		{"From foo", false},
		{"abc", false},
	} {
		if got := isHeader([]byte(tc.line)); got != tc.want {
			t.Errorf("isHeader(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestSplitNameval(t *testing.T) {
	for _, tc := range []struct {
		in, name, value, err string
	}{
		{"k=v", "k", "v", ""},
		{" na=me ", "na", "me", ""},
		{"n\t=\tv\t", "n", "v", ""},
		{"\vk\v=\vv\v", "k", "v", ""},
		{"k=", "k", "", ""},
		{"k= a b ", "k", "a b", ""},
		{"=x", "", "", "missing attribute name"},
		{" =x", "", "", "missing attribute name"},
		{"", "", "", "missing attribute name"},
		{"   ", "", "", "missing attribute name"},
		{"na me = v", "", "", "missing '=' after attribute name"},
		{"create_time", "", "", "missing '=' after attribute name"},
	} {
		name, value, err := splitNameval([]byte(tc.in))
		if string(name) != tc.name || string(value) != tc.value || err != tc.err {
			t.Errorf("splitNameval(%q) = %q, %q, %q; want %q, %q, %q", tc.in, name, value, err, tc.name, tc.value, tc.err)
		}
	}
}

func TestNumbers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"12", 12}, {" 12", 12}, {"+12", 12}, {"-12", -12}, {"12abc", 12}, {"abc", 0}, {"", 0},
		{"1e5", 1}, {"0x10", 0}, {"\v\f7", 7}, {"1\x002", 1},
		{"99999999999999999999", math.MaxInt64}, {"-99999999999999999999", math.MinInt64},
		{"9223372036854775807", math.MaxInt64}, {"-9223372036854775808", math.MinInt64},
	} {
		if got := atol([]byte(tc.in)); got != tc.want {
			t.Errorf("atol(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		n    int
		a, b int64
	}{
		{"            302             261               1", 2, 302, 261},
		{"garbage", 0, -1, -1},
		{"12", 1, 12, -1},
		{"5-3", 2, 5, -3},
		{"0 0", 2, 0, 0},
	} {
		a, b := int64(-1), int64(-1)
		if n := scanTwoLongs([]byte(tc.in), &a, &b); n != tc.n || a != tc.a || b != tc.b {
			t.Errorf("scanTwoLongs(%q) = %d %d %d, want %d %d %d", tc.in, n, a, b, tc.n, tc.a, tc.b)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 0}, {"0", 0}, {"00", 0}, {"261", 261}, {"+0", -1}, {"-5", -1}, {"5 ", -1},
		{"9223372036854775807", math.MaxInt64}, {"9223372036854775808", -1},
	} {
		if got := parseOffset([]byte(tc.in)); got != tc.want {
			t.Errorf("parseOffset(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestAsctime(t *testing.T) {
	for _, tc := range []struct {
		sec  int64
		want string
	}{
		{0, "Thu Jan  1 00:00:00 1970\n"},
		{1795964910, "Sun Nov 29 15:08:30 2026\n"},
		{-1, "Wed Dec 31 23:59:59 1969\n"},
		{-62135596800, "Mon Jan  1 00:00:00 1\n"},
		{-62135596801, "Sun Dec 31 23:59:59 0\n"},
		{253402300800, "Sat Jan  1 00:00:00 10000\n"},
		// The extremes glibc still formats (checked against postcat).
		{-67768040609740800, "Thu Jan  1 00:00:00 -2147481748\n"},
		{67767976233316800, "Sun Dec 29 12:00:00 2147483647\n"},
	} {
		got, ok := asctime(tc.sec, time.UTC)
		if !ok || got != tc.want {
			t.Errorf("asctime(%d) = %q, %v; want %q", tc.sec, got, ok, tc.want)
		}
	}
	for _, sec := range []int64{-67768040609740801, 67768036191676799, math.MaxInt64, math.MinInt64} {
		if got, ok := asctime(sec, time.UTC); ok {
			t.Errorf("asctime(%d) = %q, want failure", sec, got)
		}
	}
}

func TestZone(t *testing.T) {
	const sec = 1795964910 // Sun Nov 29 15:08:30 2026 UTC
	for _, tc := range []struct{ tz, want string }{
		{"UTC", "Sun Nov 29 15:08:30 2026\n"},
		{"America/New_York", "Sun Nov 29 10:08:30 2026\n"},
		{":Asia/Kolkata", "Sun Nov 29 20:38:30 2026\n"},
		{"EST5EDT,M3.2.0,M11.1.0", "Sun Nov 29 10:08:30 2026\n"},
		{"JST-9", "Mon Nov 30 00:08:30 2026\n"},
		{"<+0330>-3:30", "Sun Nov 29 18:38:30 2026\n"},
		{"Not/AZone", "Sun Nov 29 15:08:30 2026\n"},
		{"Local", "Sun Nov 29 15:08:30 2026\n"},
	} {
		got, _ := asctime(sec, Zone(tc.tz))
		if got != tc.want {
			t.Errorf("TZ=%s: %q, want %q", tc.tz, got, tc.want)
		}
	}
	// A summer time stamp under a POSIX rule with daylight saving time.
	got, _ := asctime(1783000000, Zone("EST5EDT,M3.2.0,M11.1.0"))
	if want := "Thu Jul  2 09:46:40 2026\n"; got != want {
		t.Errorf("EDT: %q, want %q", got, want)
	}
}

func TestPrintable(t *testing.T) {
	if got := printable("a\tb\nc\x7fd\xe9e ~"); got != "a?b?c?d?e ~" {
		t.Errorf("printable: %q", got)
	}
}

// The output keeps what was not flushed, writes it in 4096-byte pieces
// when it overflows, and never writes the rest by itself.
func TestOutputBuffering(t *testing.T) {
	var w bytes.Buffer
	o := output{w: &w}
	o.writeString("banner\n")
	o.sync()
	if w.Len() != 0 {
		t.Fatalf("wrote before a flush: %q", w.String())
	}
	o.flush()
	o.sync()
	if w.String() != "banner\n" {
		t.Fatalf("after flush: %q", w.String())
	}
	w.Reset()
	o.write(bytes.Repeat([]byte("x"), 10000))
	o.sync()
	if w.Len() != 8192 {
		t.Fatalf("overflow wrote %d bytes, want 8192", w.Len())
	}
	// Exactly a full buffer stays buffered; one byte more pushes it out.
	w.Reset()
	o = output{w: &w}
	o.write(bytes.Repeat([]byte("y"), outBufSize))
	o.sync()
	if w.Len() != 0 {
		t.Fatalf("a full buffer was written: %d bytes", w.Len())
	}
	o.writeByte('z')
	o.sync()
	if w.Len() != outBufSize {
		t.Fatalf("overflow by one wrote %d bytes, want %d", w.Len(), outBufSize)
	}
	// Flushed output is written in batches, and by sync.
	w.Reset()
	o = output{w: &w}
	o.writeString("line\n")
	o.flush()
	if w.Len() != 0 {
		t.Fatalf("a small flush was written at once")
	}
	o.sync()
	if w.String() != "line\n" {
		t.Fatalf("sync wrote %q", w.String())
	}
}

func run(t *testing.T, opts Options, data []byte) (stdout, warnings string, fatal *Fatal) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qf")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	var warn strings.Builder
	c := New(opts, &out, func(m string) { warn.WriteString(m + "\n") })
	_, fatal = c.Print(Input{Name: "qf", R: f})
	return out.String(), warn.String(), fatal
}

func rec(t byte, s string) []byte {
	b := []byte{t}
	n := len(s)
	for {
		if n < 0x80 {
			b = append(b, byte(n))
			break
		}
		b = append(b, byte(n&0x7f|0x80))
		n >>= 7
	}
	return append(b, s...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A size record of "0 0" makes postcat -e seek back to the start at the
// M record, for ever. We stop.
func TestSizeRecordLoop(t *testing.T) {
	data := cat(rec('C', "0 0"), rec('T', "0 0"), rec('M', ""), rec('N', "x"), rec('X', ""), rec('E', ""))
	out, warn, fatal := run(t, Options{Envelope: true}, data)
	if fatal == nil || !strings.Contains(fatal.Msg, "loop") {
		t.Fatalf("fatal = %v", fatal)
	}
	if n := strings.Count(out, "MESSAGE CONTENTS"); n != maxSkipSeeks+1 {
		t.Errorf("%d MESSAGE CONTENTS banners, want %d", n, maxSkipSeeks+1)
	}
	if !strings.HasPrefix(warn, "invalid size record: 0 0\n") {
		t.Errorf("warnings start %q", warn[:min(len(warn), 80)])
	}
}

// Postfix dies on a time stamp whose year does not fit in an int; we stop
// with a fatal error and print what postcat would have flushed.
func TestTimeOutOfRange(t *testing.T) {
	data := cat(rec('S', "s"), rec('T', "99999999999999999999"), rec('E', ""))
	out, _, fatal := run(t, Options{}, data)
	if fatal == nil || !strings.Contains(fatal.Msg, "out of the range") {
		t.Fatalf("fatal = %v", fatal)
	}
	if want := "*** ENVELOPE RECORDS qf ***\nsender: s\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}

// The reverse-jump count belongs to the file name: reading the same name
// again continues it, a new name starts over.
func TestReverseJumpsPerName(t *testing.T) {
	// T at 0 (length 5: 7 bytes), p at 7 pointing at 7 jumps back to
	// itself; each pass is one reverse jump after the first.
	data := cat(rec('T', "0 0 0"), rec('p', "7"), rec('E', ""))
	var out bytes.Buffer
	c := New(Options{}, &out, func(string) {})
	for i, name := range []string{"a", "a", "b"} {
		_, fatal := c.Print(Input{Name: name, R: bytes.NewReader(data)})
		if fatal == nil {
			t.Fatalf("pass %d: no error", i)
		}
		want := reverseJumpLimit + 1
		if i == 1 {
			want++ // carried over, so the first jump is one too many
		}
		if c.jumps.reverse != want {
			t.Errorf("pass %d (%s): %d reverse jumps, want %d", i, name, c.jumps.reverse, want)
		}
	}
}

// A pipe cannot tell its offset or seek; postcat prints -1 as unsigned.
func TestPipeInput(t *testing.T) {
	data := cat(rec('T', "0 0"), rec('E', ""))
	var out bytes.Buffer
	var warn strings.Builder
	c := New(Options{Offsets: true}, &out, func(m string) { warn.WriteString(m + "\n") })
	_, fatal := c.Print(Input{Name: "stdin", R: io.MultiReader(bytes.NewReader(data)), Stdin: true})
	if fatal == nil || fatal.Msg != "record read error" {
		t.Fatalf("fatal = %v", fatal)
	}
	want := "*** ENVELOPE RECORDS stdin ***\n18446744073709551615 message_arrival_time: Thu Jan  1 00:00:00 1970\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if want := "stdin: seek error after reading END record: Illegal seek\n"; warn.String() != want {
		t.Errorf("warnings %q, want %q", warn.String(), want)
	}
}
