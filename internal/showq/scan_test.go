package showq

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sluice/internal/spool"
)

// The expectations below were checked against postqueue 3.7; the golden
// and oracle tests check the same behaviour through whole listings.

func TestDisplayAddress(t *testing.T) {
	tests := []struct {
		raw      string
		utf8     bool
		want     string
		wantUTF8 string // when utf8 differs
	}{
		{raw: "plain@example.com", want: "plain@example.com"},
		{raw: "", want: "MAILER-DAEMON"},
		{raw: "john doe@example.com", want: `"john doe"@example.com`},
		{raw: ".a@x", want: `".a"@x`},
		{raw: "a.@x", want: `"a."@x`},
		{raw: "a..b@x", want: `"a..b"@x`},
		{raw: "a.b.c@x", want: "a.b.c@x"},
		{raw: `a"b@x`, want: `"a\"b"@x`},
		{raw: `a\b@x`, want: `"a\\b"@x`},
		{raw: "a\rb@x", want: `"a\?b"@x`},
		{raw: "a\nb@x", want: `"a?b"@x`},
		{raw: "a\x7fb@x", want: `"a?b"@x`},
		{raw: "user@a@b", want: `"user@a"@b`},
		{raw: "@x", want: `""@x`},
		{raw: "@", want: `""@`},
		{raw: "noat", want: "noat"},
		{raw: "a b", want: `"a b"`},
		{raw: "@route,@r2:user@dom", want: "@route,@r2:user@dom"},
		{raw: "@route:us er@dom", want: `@route:"us er"@dom`},
		{raw: "@a:", want: `@a:""`},
		{raw: ":x@y", want: `":x"@y`},
		{raw: "a@b c", want: "a@b c"},
		{raw: "ab\x00cd@x", want: "ab"},
		{raw: "a{b}|c~d@x", want: "a{b}|c~d@x"},
		{raw: "caf\xc3\xa9@x", want: "caf??@x", wantUTF8: "caf\xc3\xa9@x"},
		{raw: "caf\xe9@x", want: "caf?@x", wantUTF8: "caf?@x"},
		{raw: "x\xc3\xa9\xa9@x", want: "x???@x", wantUTF8: "x\xc3\xa9\xa9@x"},
		{raw: "\xe2\x82@x", want: "??@x", wantUTF8: "\xe2\x82@x"},
		{raw: "\xc0\x80@x", want: "??@x", wantUTF8: "??@x"},
		{raw: "\xff\x80@x", want: "??@x", wantUTF8: "??@x"},
		{raw: "\xfe\x80@x", want: "??@x", wantUTF8: "\xfe\x80@x"},
		{raw: "\xc2@x", want: "?@x", wantUTF8: "?@x"},
	}
	for _, tt := range tests {
		for _, utf8 := range []bool{false, true} {
			d := newDisplayer("MAILER-DAEMON", utf8)
			want := tt.want
			if utf8 && tt.wantUTF8 != "" {
				want = tt.wantUTF8
			}
			if got := d.address([]byte(tt.raw)); got != want {
				t.Errorf("address(%q, utf8=%v) = %q, want %q", tt.raw, utf8, got, want)
			}
		}
	}
	d := newDisplayer("", true)
	if got := d.address(nil); got != `""` {
		t.Errorf("empty address with empty_address_recipient empty = %q", got)
	}
}

func TestJSONString(t *testing.T) {
	in := "a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f é"
	want := `"a\"b\\c/d\b\f\n\r\t\u0001\u001F\u007F é"`
	if got := string(appendJSONString(nil, in)); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestParseDeferLog(t *testing.T) {
	log := "\n<old@x>: old reason\n\n" +
		"\nrecipient=a@x\noffset=242\nstatus=4.4.1\naction=delayed\nreason=refused\n\n" +
		"\nrecipient=\nreason=\n\n" +
		"\nrecipient=cut@x\nreason=no blank line after me\n"
	var got [][4]string
	parseDeferLog([]byte(log), true, nil, func(e *logEntry) {
		got = append(got, [4]string{string(e.addr), string(e.reason), string(e.status), string(e.action)})
	})
	want := [][4]string{
		{"old@x", "old reason", "", ""},
		{"a@x", "refused", "4.4.1", "delayed"},
		{"(MAILER-DAEMON)", "(description unavailable)", "", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestScanModel checks what Scan reports beyond what the listings show.
func TestScanModel(t *testing.T) {
	sp := spool.New(filepath.Join(t.TempDir(), "spool"))
	mtime := arrival.Add(time.Hour)
	buildSpool(t, sp, []tmsg{{queue: spool.Deferred, id: "54AB4BA048", arrival: arrival, sender: "alice@facts.test",
		rcpts: rcpts("bob@example.com", "carol@example.com"), mode: 0o710, mtime: mtime,
		log: []spool.LogEntry{deferEntry("bob@example.com", refused)}}})
	var msgs []*Message
	if err := Scan(sp, DefaultOptions(), func(m *Message) error { msgs = append(msgs, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	want := &Message{Queue: "deferred", ID: "54AB4BA048", Arrival: arrival.Unix(), Size: m.Size, ForcedExpire: true,
		Sender: "alice@facts.test", MTime: mtime, Mode: 0o710,
		Recipients: []Recipient{
			{Address: "bob@example.com", Reason: refused, Status: "4.4.1", Action: "delayed", Logged: true},
			{Address: "carol@example.com"},
		}}
	if m.Size <= 0 || !m.MTime.Equal(mtime) {
		t.Errorf("size %d, mtime %v", m.Size, m.MTime)
	}
	m.MTime = mtime
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

// TestFilesPostfixCannotList covers files that make Postfix's own listing
// end with "malformed showq server response": we warn and go on.
func TestFilesPostfixCannotList(t *testing.T) {
	T := "T:" + itoa(arrival.Unix()) + " 0"
	sp := spool.New(filepath.Join(t.TempDir(), "spool"))
	buildSpool(t, sp, []tmsg{
		{queue: spool.Hold, id: "R00001", raw: rawFile(T, "R:before@x", "S:s@x", "R:after@x", "E:")},
		{queue: spool.Incoming, id: "S00001", raw: rawFile(T, "S:first@x", "R:r1@x", "S:second@x", "R:r2@x", "E:"),
			rawLog: "\nrecipient=l@x\nreason=why\n\n"},
		{queue: spool.Deferred, id: "500001", arrival: arrival, sender: "ok@x", rcpts: rcpts("fine@x")},
	})
	got, warnings := listAll(t, sp, scenario{utf8: true, tz: "UTC"}, true)
	want := `{"queue_name": "incoming", "queue_id": "S00001", "arrival_time": 1795964910, "message_size": 47, "forced_expire": false, "sender": "first@x", "recipients": [{"address": "l@x", "delay_reason": "why"}, {"address": "r1@x"}]}
{"queue_name": "deferred", "queue_id": "500001", "arrival_time": 1795964910, "message_size": 37, "forced_expire": false, "sender": "ok@x", "recipients": [{"address": "fine@x"}]}
`
	if got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	wantWarn := []string{
		"S00001: duplicate sender address: second@x -- skipping remainder of this file",
		"R00001: recipient record before sender record -- skipping this file",
	}
	if !reflect.DeepEqual(warnings, wantWarn) {
		t.Errorf("warnings %q, want %q", warnings, wantWarn)
	}
}

// TestVanishedFiles: files that go away between the directory scan and
// the read are skipped without a word.
func TestVanishedFiles(t *testing.T) {
	sp := spool.New(filepath.Join(t.TempDir(), "spool"))
	buildSpool(t, sp, []tmsg{
		{queue: spool.Deferred, id: "600001", arrival: arrival, sender: "a@x", rcpts: rcpts("b@x")},
		{queue: spool.Deferred, id: "600002", arrival: arrival, sender: "c@x", rcpts: rcpts("d@x")},
	})
	entries, err := sp.List(spool.Deferred)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sp.Path(spool.Deferred, "600001")); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var warnings []string
	opt := DefaultOptions()
	opt.Warn = func(s string) { warnings = append(warnings, s) }
	err = ScanEntries(sp, entries, opt, func(m *Message) error { ids = append(ids, m.ID); return nil })
	if err != nil || !reflect.DeepEqual(ids, []string{"600002"}) || warnings != nil {
		t.Errorf("ids %v, warnings %q, err %v", ids, warnings, err)
	}
}

// TestParallelOrder: many messages read in parallel come out in directory
// order, the same as one reader gives.
func TestParallelOrder(t *testing.T) {
	sp := spool.New(filepath.Join(t.TempDir(), "spool"))
	sp.NoSync = true
	var msgs []tmsg
	for i := 0; i < 700; i++ {
		m := tmsg{queue: spool.Deferred, id: strings.ToUpper(itoa(int64(100000+i*7919)%0xfffff)) + "A" + itoa(int64(i)),
			arrival: arrival.Add(time.Duration(i) * time.Second), sender: "s" + itoa(int64(i)) + "@x", rcpts: rcpts("r@x", "q@x")}
		if i%3 == 0 {
			m.log = []spool.LogEntry{deferEntry("q@x", "reason "+itoa(int64(i%7)))}
		}
		msgs = append(msgs, m)
	}
	buildSpool(t, sp, msgs)
	list := func(workers int) string {
		var b bytes.Buffer
		w := NewTextWriter(&b, false, time.UTC)
		opt := DefaultOptions()
		opt.Workers = workers
		if err := Scan(sp, opt, w.Write); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return b.String()
	}
	one, many := list(1), list(8)
	if one != many {
		t.Error("parallel listing differs from the sequential one")
	}
	if n := strings.Count(one, "\n\n"); n != 700 {
		t.Errorf("%d messages listed", n)
	}
}

// TestEmitError: an error from emit (a closed pipe) ends the scan.
func TestEmitError(t *testing.T) {
	sp := spool.New(filepath.Join(t.TempDir(), "spool"))
	buildSpool(t, sp, singleCorpus())
	stop := errors.New("stop")
	if err := Scan(sp, DefaultOptions(), func(*Message) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Scan returned %v", err)
	}
}
