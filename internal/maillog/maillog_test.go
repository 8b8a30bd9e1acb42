package maillog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFormatDelay(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{-time.Second, "0"},
		{4 * ms, "0"}, // below the resolution
		{4999 * time.Microsecond, "0"},
		{5 * ms, "0.01"}, // half-up at the resolution
		{10 * ms, "0.01"},
		{50 * ms, "0.05"},
		{47 * ms, "0.05"},
		{470 * ms, "0.47"},
		{100 * ms, "0.1"}, // trailing zero dropped
		{994 * ms, "0.99"},
		{995 * ms, "1"}, // rounds up into the next range
		{time.Second, "1"},
		{1050 * ms, "1"}, // one significant decimal: 1.05 shows as 1
		{1100 * ms, "1.1"},
		{1960 * ms, "1.9"}, // digits beyond two significant are cut
		{9990 * ms, "9.9"},
		{9996 * ms, "10"},
		{10 * time.Second, "10"},
		{191600 * ms, "191"},
		{184 * time.Second, "184"},
		{5 * 24 * time.Hour, "432000"},
	}
	for _, c := range cases {
		if got := FormatDelay(c.d); got != c.want {
			t.Errorf("FormatDelay(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

// parseDelay turns a logged number back into a duration.
func parseDelay(t *testing.T, s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("bad delay %q", s)
	}
	return time.Duration(f*1000+0.5) * time.Millisecond
}

var (
	prefixRE   = regexp.MustCompile(`^(\w{3} \d\d \d\d:\d\d:\d\d) (\S+) postfix/([a-z-]+)\[(\d+)\]: (.*)$`)
	deliveryRE = regexp.MustCompile(`^(\w+): to=<([^>]*)>, (?:orig_to=<([^>]*)>, )?relay=([^,]+), (?:conn_use=(\d+), )?delay=([0-9.]+), delays=([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+), dsn=([0-9.]+), status=(\w+) \((.*)\)$`)
)

// TestSampleLines rebuilds every line of a mail log captured from Postfix
// 3.7.11 from its parts and requires the same bytes: the prefix through
// Log, and delivery lines through the Delivery formatter.
func TestSampleLines(t *testing.T) {
	f, err := os.Open("testdata/maillog-instance.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, deliveries := 0, 0
	for sc.Scan() {
		line := sc.Text()
		m := prefixRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("sample line does not parse: %q", line)
		}
		ts, err := time.ParseInLocation("Jan 02 15:04:05 2006", m[1]+" 2026", time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(m[4])
		var buf bytes.Buffer
		l := New(&buf, m[2]+".example", "", func() time.Time { return ts })
		l.SetPID(pid)
		if d := deliveryRE.FindStringSubmatch(m[5]); d != nil {
			cu, _ := strconv.Atoi(d[5])
			l.Delivery(m[3], Delivery{
				QueueID: d[1], To: d[2], OrigTo: d[3], Relay: d[4], ConnUse: cu,
				Delay:  parseDelay(t, d[6]),
				Delays: [4]time.Duration{parseDelay(t, d[7]), parseDelay(t, d[8]), parseDelay(t, d[9]), parseDelay(t, d[10])},
				DSN:    d[11], Status: d[12], Text: d[13],
			})
			deliveries++
		} else {
			l.Log(m[3], "%s", m[5])
		}
		if got := strings.TrimSuffix(buf.String(), "\n"); got != line {
			t.Errorf("line differs\n got %q\nwant %q", got, line)
		}
		n++
	}
	if n < 200 || deliveries < 45 {
		t.Fatalf("only %d lines, %d deliveries checked", n, deliveries)
	}
}

func TestDeliveryFields(t *testing.T) {
	d := Delivery{QueueID: "ABC123", To: "a@x.test", OrigTo: "A@X.TEST", Relay: "mx.x.test[192.0.2.1]:25",
		ConnUse: 1, Delay: 2 * time.Second, DSN: "2.0.0", Status: "sent", Text: "250 ok"}
	want := "ABC123: to=<a@x.test>, relay=mx.x.test[192.0.2.1]:25, delay=2, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)"
	if got := d.Format(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	d.OrigTo, d.ConnUse = "alias@x.test", 3
	want = "ABC123: to=<a@x.test>, orig_to=<alias@x.test>, relay=mx.x.test[192.0.2.1]:25, conn_use=3, delay=2, delays=0/0/0/0, dsn=2.0.0, status=sent (250 ok)"
	if got := d.Format(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestPrefix(t *testing.T) {
	var buf bytes.Buffer
	ts := time.Date(2026, 11, 4, 0, 53, 20, 0, time.UTC)
	l := New(&buf, "vm", "", func() time.Time { return ts })
	l.SetPID(14312)
	l.Log("postsuper", "Deleted: %d messages", 0)
	// Captured from Postfix 3.7.11's postsuper writing maillog_file: the
	// day of month is zero-padded.
	if got, want := buf.String(), "Nov 04 00:53:20 vm postfix/postsuper[14312]: Deleted: 0 messages\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	buf.Reset()
	l = New(&buf, "mx1.example.com", "sluice", func() time.Time { return ts })
	l.SetPID(7)
	l.Warn("smtpd", "bad line\r\nforged: x")
	if got, want := buf.String(), "Nov 04 00:53:20 mx1 sluice/smtpd[7]: warning: bad line??forged: x\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var nilLogger *Logger
	nilLogger.Log("x", "no crash")
}

// lineWriter records each Write call, to check that lines are whole.
type lineWriter struct {
	mu     sync.Mutex
	writes []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, string(p))
	w.mu.Unlock()
	return len(p), nil
}

func TestConcurrentWholeLines(t *testing.T) {
	w := &lineWriter{}
	l := New(w, "h", "", nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				l.Log("smtpd", "goroutine %d line %d %s", g, i, strings.Repeat("x", i))
			}
		}()
	}
	wg.Wait()
	if len(w.writes) != 1600 {
		t.Fatalf("%d writes, want 1600", len(w.writes))
	}
	for _, s := range w.writes {
		if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.Contains(s, "postfix/smtpd[") {
			t.Fatalf("not one whole line: %q", s)
		}
	}
}

func ExampleLogger_Delivery() {
	l := New(os.Stdout, "facts.test", "postfix", func() time.Time { return time.Date(2026, 11, 29, 15, 12, 8, 0, time.UTC) })
	l.SetPID(16545)
	l.Delivery("smtp", Delivery{QueueID: "4jcrGj5LCzz5jwj", To: "rcpt@sink.test", Relay: "127.0.0.1[127.0.0.1]:10127",
		Delay: 10 * time.Second, Delays: [4]time.Duration{10 * time.Second, 10 * time.Millisecond, 10 * time.Millisecond, 0},
		DSN: "2.0.0", Status: "sent", Text: "250 2.0.0 Ok"})
	fmt.Println("done")
	// Output:
	// Nov 29 15:12:08 facts postfix/smtp[16545]: 4jcrGj5LCzz5jwj: to=<rcpt@sink.test>, relay=127.0.0.1[127.0.0.1]:10127, delay=10, delays=10/0.01/0.01/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)
	// done
}

// TestEscape: every line escapes what is not printable, whatever put it
// there; Postfix's smtpd shows a client's ESC or CR as '?'.
func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text <a@b.test>":     "plain text <a@b.test>",
		"esc\x1b[31mred":            "esc?[31mred",
		"bel\x07nul\x00del\x7f":     "bel?nul?del?",
		"cr\rlf\ntab\t":             "cr?lf?tab?",
		"utf8 \u00e9t\u00e9 \u4e2d": "utf8 \u00e9t\u00e9 \u4e2d",
		"bad \xc3 and \xff\xfe":     "bad ? and ??",
		"c1 \u0085 control":         "c1 ? control",
		"truncated \xe4\xb8":        "truncated ??",
		"backslash \\r stays":       "backslash \\r stays",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	var buf bytes.Buffer
	l := New(&buf, "mx", "", func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) })
	l.SetPID(1)
	l.Log("smtpd", "connect from %s helo=<%s>", "x[192.0.2.1]", "a\x1b]0;owned\x07\r\nJan 01 00:00:00 mx postfix/smtpd[2]: forged\x00\xff")
	want := "Jan 02 03:04:05 mx postfix/smtpd[1]: connect from x[192.0.2.1] helo=<a?]0;owned???Jan 01 00:00:00 mx postfix/smtpd[2]: forged??>\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
