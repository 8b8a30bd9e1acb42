package qshape

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in    string
		f     float64
		isInt bool
	}{
		{"5", 5, true},
		{" +7 ", 7, true},
		{"5.0", 5, false},
		{"2.5", 2.5, false},
		{".5", 0.5, false},
		{"1e3", 1000, true},
		{"1.5e3", 1500, true},
		{"5abc", 5, true},
		{"2.5abc", 2.5, false},
		{"abc", 0, true},
		{"", 0, true},
		{"0x10", 0, true},
		{"-3", -3, true},
		{"1e", 1, true},
		{"18446744073709551615", 18446744073709551615, true},
		{"1e400", math.Inf(1), false},
	}
	for _, tc := range tests {
		got := ParseNumber(tc.in)
		if got.F != tc.f || got.Int != tc.isInt {
			t.Errorf("ParseNumber(%q) = %+v, want %v int=%v", tc.in, got, tc.f, tc.isInt)
		}
	}
	if n := ParseNumber("inf"); !math.IsInf(n.F, 1) {
		t.Errorf("inf = %v", n)
	}
	if n := ParseNumber("-Infinity"); !math.IsInf(n.F, -1) {
		t.Errorf("-Infinity = %v", n)
	}
	if n := ParseNumber("NaN"); !math.IsNaN(n.F) {
		t.Errorf("NaN = %v", n)
	}
}

// Postfix's headings for "-b 66" were captured from the script (see
// TestAgainstPostfix "big-headings" for the whole row).
func TestHeadings(t *testing.T) {
	tests := []struct {
		tick string
		tail []string
	}{
		{"5", []string{"11529215046068469760", "2.30584300921369e+19", "4.61168601842739e+19", "9.22337203685478e+19", "9.22337203685478e+19+"}},
		{"0.1", []string{"1.8014398509482e+15", "3.6028797018964e+15", "7205759403792794"}},
		{"1e3", []string{"18014398509481984000", "3.6028797018964e+19"}},
		{".5", []string{"4611686018427387904", "9223372036854775808", "9223372036854775808+"}},
		{"1e400", []string{"Inf", "Inf+"}},
	}
	for _, tc := range tests {
		o := Defaults()
		o.Buckets, o.Tick = Num(66), ParseNumber(tc.tick)
		heads, _ := newTable(&o).columns()
		joined := strings.Join(heads, " ")
		if !strings.Contains(joined, strings.Join(tc.tail, " ")) {
			t.Errorf("-t %s headings %s lack %v", tc.tick, joined, tc.tail)
		}
	}
	for b, want := range map[string]string{"0.5": "T", "1": "T 0+", "1.5": "T 5", "2": "T 5 5+", "3.5": "T 5 10 20"} {
		o := Defaults()
		o.Buckets = ParseNumber(b)
		if heads, _ := newTable(&o).columns(); strings.Join(heads, " ") != want {
			t.Errorf("-b %s headings %q, want %q", b, heads, want)
		}
	}
}

// refDomain applies the script's regular expressions with Go's regexp,
// whose leftmost-first matching is Perl's; Perl's "$" (end, or before a
// final newline) is written out.
var (
	reLocal  = regexp.MustCompile(`.*@`)
	reTrim   = regexp.MustCompile(`^(?:.|\n)*?(\.?(.+?)\.?(\n?))\z`)
	reParent = regexp.MustCompile(`^\.?[^.]+\.(.*\.)`)
)

func refDomain(a string) string {
	b := []byte(a)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	a = string(b)
	if a == "" {
		a = "MAILER-DAEMON"
	}
	if loc := reLocal.FindStringIndex(a); loc != nil {
		a = a[:loc[0]] + a[loc[1]:]
	}
	a = strings.ReplaceAll(a, "..", ".")
	if m := reTrim.FindStringSubmatchIndex(a); m != nil {
		a = a[:m[2]] + a[m[4]:m[5]] + a[m[6]:m[7]]
	}
	return a
}

func refParent(d string) (string, bool) {
	m := reParent.FindStringSubmatchIndex(d)
	if m == nil {
		return "", false
	}
	return "." + d[m[2]:m[3]] + d[m[1]:], true
}

var domainCases = []struct{ in, want string }{
	{"bob@Example.COM", "example.com"},
	{"", "MAILER-DAEMON"},
	{"MAILER-DAEMON", "mailer-daemon"},
	{"localuser", "localuser"},
	{"a@b@c.d", "c.d"},
	{"u@trailing.example.net.", "trailing.example.net"},
	{"v@.leading.test", "leading.test"},
	{"u@double..dots.test", "double.dots.test"},
	{"a@...x.y.z", ".x.y.z"},
	{"w@", ""},
	{"foo@.", "."},
	{"...", "."},
	{"user@dom.test.\n", "dom.test\n"},
	{"x@a\n.b.c.", "a\nb.c"},
	{"first@line\nsecond@line.two", "line\nsecond@line.two"},
	{"a@x\ny.z.w", "x\ny.z.w"},
	{"\n", "\n"},
	{"x@\xe9t\xc9.TEST", "\xe9t\xc9.test"},
}

func TestDomain(t *testing.T) {
	for _, tc := range domainCases {
		if got := string(domain([]byte(tc.in), nil)); got != tc.want {
			t.Errorf("domain(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if ref := refDomain(tc.in); ref != tc.want {
			t.Errorf("refDomain(%q) = %q, want %q (the reference is wrong)", tc.in, ref, tc.want)
		}
	}
	parents := map[string]string{
		"sub.example.com": ".example.com", ".example.com": "", "example.com": "",
		"a.b.c.d": ".b.c.d", ".b.c.d": ".c.d", "a..b": "..b", "..b": "", "x\ny.z.w": ".z.w", "a.b\nc.d": "",
	}
	for in, want := range parents {
		got, ok := parent(in)
		if got != want || ok != (want != "") {
			t.Errorf("parent(%q) = %q, %v, want %q", in, got, ok, want)
		}
	}
}

func FuzzDomain(f *testing.F) {
	for _, tc := range domainCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, a string) {
		got, want := string(domain([]byte(a), nil)), refDomain(a)
		if got != want {
			t.Fatalf("domain(%q) = %q, the script's expressions give %q", a, got, want)
		}
		p, ok := parent(got)
		rp, rok := refParent(got)
		if p != rp || ok != rok {
			t.Fatalf("parent(%q) = %q %v, the script's expression gives %q %v", got, p, ok, rp, rok)
		}
	})
}

// FuzzReadMessage: any file content is read without a panic or a hang.
func FuzzReadMessage(f *testing.F) {
	good, err := os.ReadFile("../spool/testdata/queuefile-54AB4BA048.bin")
	if err == nil {
		f.Add(good)
	}
	f.Add([]byte("C\x05  1 2T\x011S\x00R\x03a@bM\x00X\x00E\x00"))
	f.Add([]byte("p\x0f              0"))
	dir := f.TempDir()
	w := &worker{}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "ABCDEF")
		if err := os.WriteFile(p, b, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o700); err != nil {
			t.Fatal(err)
		}
		var m message
		w.readMessage(-1, p, &m)
	})
}

func TestNameAndMode(t *testing.T) {
	for name, want := range map[string]bool{"ABCDEF": true, "54AB4BA048": true, "4jcrGj5fZ5z5jwm": true, "ABCDE": false,
		"ABCDEF_": false, ".ABCDEF": false, "ABCDEF\n": true, "ABC DEF": false} {
		if nameOK(name) != want {
			t.Errorf("nameOK(%q) = %v", name, !want)
		}
	}
	for mode, want := range map[uint32]bool{0o100700: true, 0o100740: true, 0o100704: true, 0o100710: false,
		0o100720: false, 0o100701: false, 0o100600: false, 0o040700: false, 0o104700: true} {
		if modeOK(mode) != want {
			t.Errorf("modeOK(%o) = %v", mode, !want)
		}
	}
}

// A queue file written by Postfix's cleanup (reference §2.6): arrival
// 1795964910, one recipient bob@example.com, sender alice@facts.test.
func TestPostfixQueueFile(t *testing.T) {
	b, err := os.ReadFile("../spool/testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "deferred", "5")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "54AB4BA048"), b, 0o700); err != nil {
		t.Fatal(err)
	}
	var m message
	if err := new(worker).readMessage(-1, filepath.Join(dir, "54AB4BA048"), &m); err != nil {
		t.Fatal(err)
	}
	if m.arrival != 1795964910 || string(m.sender) != "alice@facts.test" || len(m.ends) != 1 || string(m.recipient(0)) != "bob@example.com" {
		t.Errorf("read %+v", m)
	}
	o := Defaults()
	o.Senders = true
	o.Now = func() time.Time { return time.Unix(1795964910+25*60, 0) }
	var out strings.Builder
	if err := Run(o, []string{filepath.Dir(dir)}, &out); err != nil {
		t.Fatal(err)
	}
	want := "                                         T  5 10 20 40 80 160 320 640 1280 1280+\n" +
		"                                  TOTAL  1  0  0  0  1  0   0   0   0    0     0\n" +
		"                             facts.test  1  0  0  0  1  0   0   0   0    0     0\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
