package cleanup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/maillog"
	"sluice/internal/spool"
)

var testNow = time.Date(2026, 11, 29, 15, 8, 30, 322038000, time.UTC)

type fixture struct {
	sp       *spool.Spool
	c        *Cleanup
	log      *bytes.Buffer
	notified []string
	images   [][]byte // what Notify was given with each ID
	mu       sync.Mutex
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	return newFixtureAt(t, t.TempDir(), mod)
}

func newFixtureAt(t *testing.T, root string, mod func(*Config)) *fixture {
	t.Helper()
	sp := spool.New(root)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{sp: sp, log: &bytes.Buffer{}}
	lg := maillog.New(&syncBuffer{b: fx.log, mu: &fx.mu}, "facts.test", "postfix", func() time.Time { return testNow })
	lg.SetPID(100)
	cfg := Config{
		Spool: sp, MyHostname: "facts.test", MyOrigin: "facts.test", MessageSizeLimit: 10240000,
		Now: func() time.Time { return testNow }, Log: lg,
		Notify: func(id string, kept *spool.Kept) {
			var image []byte
			if kept != nil {
				image = kept.Image
				kept.Close()
			}
			fx.mu.Lock()
			fx.notified, fx.images = append(fx.notified, id), append(fx.images, image)
			fx.mu.Unlock()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	fx.c = New(cfg)
	return fx
}

type syncBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// dump renders a queue file as postcat -o does, with the queue ID
// replaced by QUEUEID so outputs compare across runs.
func dump(t *testing.T, path, id string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := spool.NewBytesReader(data)
	var b strings.Builder
	inContent := false
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch rec.Type {
		case spool.RecMesg:
			inContent = true
			fmt.Fprintf(&b, "%5d *** MESSAGE CONTENTS ***\n", rec.Offset)
			continue
		case spool.RecXtra:
			inContent = false
			fmt.Fprintf(&b, "%5d *** HEADER EXTRACTED ***\n", rec.Offset)
			continue
		case spool.RecEnd:
			fmt.Fprintf(&b, "%5d *** MESSAGE FILE END ***\n", rec.Offset)
			continue
		}
		if inContent {
			fmt.Fprintf(&b, "%5d %c %s\n", rec.Offset, rec.Type, rec.Data)
		} else {
			fmt.Fprintf(&b, "%5d %s: %s\n", rec.Offset, spool.RecordName(rec.Type, false), rec.Data)
		}
	}
	return strings.ReplaceAll(b.String(), id, "QUEUEID")
}

func submit(t *testing.T, fx *fixture, m *Message, content string) (string, string) {
	t.Helper()
	id, err := fx.c.Submit(context.Background(), m, strings.NewReader(content))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	q := m.Queue
	if q == "" {
		q = spool.Incoming
	}
	path := fx.sp.Path(q, id)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	return id, path
}

// localSubmissionGolden is what Postfix 3.7.11 wrote for the same
// submission (sendmail -f alice -F 'Alice Q' bob), rendered by dump, for
// a short queue ID of 11 characters (the reference ID below). QUEUEID and
// MSGID stand for the queue ID and the Message-Id's local part.
const localSubmissionGolden = `    0 message_size:             279             250               1               0             279               0
   97 message_arrival_time: 1795964910 322038
  116 named_attribute: create_time=1795964910
  140 named_attribute: rewrite_context=local
  163 sender_fullname: Alice Q
  172 sender: alice@facts.test
  190 named_attribute: dsn_orig_rcpt=rfc822;bob@facts.test
  227 original_recipient: bob
  232 recipient: bob@facts.test
  248 *** MESSAGE CONTENTS ***
  250 N Received: by facts.test (Postfix, from userid 0)
  300 N 	id QUEUEID; Sun, 29 Nov 2026 15:08:30 +0000 (UTC)
  356 N Subject: t1
  369 N To: x@example.com
  388 N Message-Id: <MSGID@facts.test>
  441 N Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)
  486 N From: Alice Q <alice@facts.test>
  520 N 
  522 N body1
  529 *** HEADER EXTRACTED ***
  531 *** MESSAGE FILE END ***
`

// The golden's reference ID: microseconds 322038 (4E9F6), inode 0x7A3C1D.
const localSubmissionRefID = "4E9F67A3C1D"

func TestLocalSubmission(t *testing.T) {
	// The queue ID is in two headers, so its length moves every later
	// offset and the message size. Each case forces an inode number, and
	// with it an ID length, on either ID code path; one case keeps the
	// file system's own inode, whatever length that gives.
	cases := []struct {
		name  string
		long  bool
		inode uint64 // 0: the file's real inode
	}{
		{"short, 6 characters", false, 0x1},
		{"short, 10 characters", false, 0xABCDE},
		{"short, 11 characters (the reference)", false, 0x7A3C1D},
		{"short, 14 characters", false, 0x123456789},
		{"short, real inode", false, 0},
		{"long, small inode", true, 0x1},
		{"long, large inode", true, 0x123456789},
		{"long, real inode", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// mail_name=Postfix makes the file comparable with Postfix's byte for byte.
			fx := newFixture(t, func(c *Config) { c.MailName = "Postfix" })
			fx.sp.LongIDs = tc.long
			if tc.inode != 0 {
				fx.sp.Inode = func(fs.FileInfo) uint64 { return tc.inode }
			}
			m := &Message{Sender: "alice", FullName: "Alice Q", Recipients: []Recipient{{Address: "bob"}}}
			id, path := submit(t, fx, m, "Subject: t1\nTo: x@example.com\n\nbody1\n")
			if spool.IsLongID(id) != tc.long {
				t.Fatalf("queue ID %s: long=%v, want %v", id, spool.IsLongID(id), tc.long)
			}
			if tc.inode != 0 && !tc.long {
				if want := spool.ShortID(testNow, tc.inode); id != want {
					t.Fatalf("queue ID %s, want %s", id, want)
				}
			}
			want := expectLocalSubmission(t, id)
			if got := dump(t, path, id); got != strings.ReplaceAll(want, id, "QUEUEID") {
				t.Errorf("queue file differs\n got:\n%s\nwant:\n%s", got, strings.ReplaceAll(want, id, "QUEUEID"))
			}
			msgid := messageIDLocal(id)
			if !strings.Contains(fx.log.String(), "postfix/cleanup[100]: "+id+": message-id=<"+msgid+"@facts.test>\n") {
				t.Errorf("log: %q", fx.log.String())
			}
			if len(fx.notified) != 1 || fx.notified[0] != id {
				t.Errorf("notified %v, want [%s]", fx.notified, id)
			} else if disk, err := os.ReadFile(path); err != nil || string(fx.images[0]) != string(disk) {
				// The queue manager reads the new message from this.
				t.Errorf("notified with an image of %d bytes that is not the file's %d (%v)", len(fx.images[0]), len(disk), err)
			}
			postcatCheck(t, path)
		})
	}
}

// messageIDLocal is the local part of the Message-Id cleanup makes for
// queue ID id at testNow: the time and the ID for a short ID, the ID alone
// for a long one (long IDs are unique on their own), as Postfix does.
func messageIDLocal(id string) string {
	if spool.IsLongID(id) {
		return id
	}
	return "20261129150830." + id
}

// expectLocalSubmission derives the golden for queue ID id from the
// reference: it puts the ID in, then moves every offset by the growth of
// the lines before it and the message size by the growth of the content,
// as the writer counts them.
func expectLocalSubmission(t *testing.T, id string) string {
	t.Helper()
	subst := func(line, qid string) string {
		return strings.NewReplacer("QUEUEID", qid, "MSGID", messageIDLocal(qid)).Replace(line)
	}
	var out []string
	shift, contentGrowth := 0, 0
	lines := strings.Split(strings.TrimSuffix(localSubmissionGolden, "\n"), "\n")
	for _, l := range lines {
		var off int
		if _, err := fmt.Sscanf(l[:5], "%d", &off); err != nil {
			t.Fatalf("golden line %q: %v", l, err)
		}
		real, ref := subst(l, id), subst(l, localSubmissionRefID)
		out = append(out, fmt.Sprintf("%5d", off+shift)+real[5:])
		// A content record's length grows with the text it holds.
		growth := len(real) - len(ref)
		shift += growth
		if strings.HasPrefix(l[5:], " N ") {
			contentGrowth += growth
		}
	}
	// The message_size record: the content's size is its first and fifth
	// field, each padded to 15 columns, so the record's length stays put.
	f := strings.Fields(out[0][len("    0 message_size:"):])
	var size int
	fmt.Sscanf(f[0], "%d", &size)
	f[0] = fmt.Sprint(size + contentGrowth)
	f[4] = f[0]
	var b strings.Builder
	b.WriteString("    0 message_size:")
	for _, v := range f {
		fmt.Fprintf(&b, " %15s", v)
	}
	out[0] = b.String()
	return strings.Join(out, "\n") + "\n"
}

func TestSMTPSubmission(t *testing.T) {
	ri := ReceivedInfo{Protocol: "ESMTP", Helo: "client.test", ClientName: "unknown", ReverseName: "unknown",
		ClientAddr: "127.0.0.1", ClientPort: "58834", ServerAddr: "127.0.0.1", ServerPort: "10125"}
	cases := []struct {
		name    string
		m       Message
		content string
		want    []string // content lines expected, in order
		absent  []string
	}{
		{
			name:    "two recipients, headers added for a local client",
			m:       Message{Sender: "s@src.test", Recipients: []Recipient{{Address: "r1@example.com"}, {Address: "R2@Example.COM"}}, Received: ri},
			content: "Subject: s1\r\n\r\nbody smtp\r\n\r\n",
			want: []string{
				"Received: from client.test (unknown [127.0.0.1])",
				"\tby facts.test (sluice) with ESMTP id QUEUEID;",
				"\tSun, 29 Nov 2026 15:08:30 +0000 (UTC)",
				"Subject: s1",
				"Message-Id: <20261129150830.QUEUEID@facts.test>",
				"Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)",
				"From: s@src.test",
				"", "body smtp", "",
			},
		},
		{
			name:    "one recipient, remote client: nothing added",
			m:       Message{Sender: "sender@src.test", Recipients: []Recipient{{Address: "user@example.net"}}, Received: ri, KeepHeaders: true},
			content: "From: <sender@src.test>\r\nTo: <user@example.net>\r\n\r\nLa de da.\r\n",
			want: []string{
				"Received: from client.test (unknown [127.0.0.1])",
				"\tby facts.test (sluice) with ESMTP id QUEUEID",
				"\tfor <user@example.net>; Sun, 29 Nov 2026 15:08:30 +0000 (UTC)",
				"From: <sender@src.test>", "To: <user@example.net>", "", "La de da.",
			},
			absent: []string{"Message-Id:", "Date:"},
		},
		{
			name:    "existing headers kept, folded header kept folded, Bcc dropped",
			m:       Message{Sender: "", Recipients: []Recipient{{Address: "u@example.net"}}, Received: ri},
			content: "Message-ID: <x@y>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nFrom: a@b\nSubject: a\n long\nBcc: secret@example.com,\n other@example.com\nContent-Length: 5\n\nbody\n",
			want:    []string{"Message-ID: <x@y>", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "From: a@b", "Subject: a", " long", "", "body"},
			absent:  []string{"Bcc:", "secret", "other@", "Content-Length", "Message-Id: <2026"},
		},
		{
			name:    "no headers at all",
			m:       Message{Sender: "", Recipients: []Recipient{{Address: "u@example.net"}}, Received: ri},
			content: "just a body line\nsecond",
			want:    []string{"Message-Id: <20261129150830.QUEUEID@facts.test>", "Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)", "From: MAILER-DAEMON", "", "just a body line", "second"},
		},
		{
			name:    "IPv6 client",
			m:       Message{Sender: "a@b", Recipients: []Recipient{{Address: "u@example.net"}}, Received: ReceivedInfo{Protocol: "ESMTPS", Helo: "h", ClientAddr: "::1"}, KeepHeaders: true},
			content: "X: y\n\nb\n",
			want:    []string{"Received: from h (unknown [IPv6:::1])", "\tby facts.test (sluice) with ESMTPS id QUEUEID"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			m := c.m
			id, path := submit(t, fx, &m, c.content)
			lines := contentLines(t, path, id)
			joined := strings.Join(lines, "\n")
			pos := 0
			for _, w := range c.want {
				i := indexFrom(lines, w, pos)
				if i < 0 {
					t.Fatalf("line %q missing or out of order in\n%s", w, joined)
				}
				pos = i + 1
			}
			for _, a := range c.absent {
				if strings.Contains(joined, a) {
					t.Errorf("%q should be absent:\n%s", a, joined)
				}
			}
			postcatCheck(t, path)
		})
	}
}

func indexFrom(lines []string, w string, from int) int {
	for i := from; i < len(lines); i++ {
		if lines[i] == w {
			return i
		}
	}
	return -1
}

// contentLines returns the message lines of a queue file (L records
// joined), with the queue ID replaced by QUEUEID.
func contentLines(t *testing.T, path, id string) []string {
	t.Helper()
	c, err := spool.OpenContent(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(data), id, "QUEUEID")
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func readEnvelope(t *testing.T, path string) *spool.Envelope {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := spool.ReadEnvelope(spool.NewBytesReader(data), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestEnvelope(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.DelayWarningTime = 4 * time.Hour })
	arrival := testNow.Add(-time.Hour)
	m := &Message{
		Sender: "s@src.test", EnvID: "abc+def", Ret: RetHdrs, SMTPUTF8: true, Arrival: arrival,
		Recipients: []Recipient{
			{Address: "r3@example.com", ORCPT: "rfc822;orig+x@example.com", Notify: NotifySuccess | NotifyFailure},
			{Address: "r4@example.com", Notify: NotifyNever},
			{Address: "r5", Notify: NotifyDelay},
		},
		Attrs:    []spool.Attr{{Name: "encoding", Value: "8bit"}},
		Received: ReceivedInfo{Protocol: "UTF8SMTP", Helo: "x", ClientAddr: "127.0.0.1", ClientPort: "1", ServerAddr: "127.0.0.1", ServerPort: "25"},
	}
	id, path := submit(t, fx, m, "Subject: s2\r\n\r\nb\r\n")
	env := readEnvelope(t, path)
	if !env.Arrival.Equal(arrival.Truncate(time.Microsecond)) || env.CreateTime != testNow.Unix() {
		t.Errorf("arrival %v create %d", env.Arrival, env.CreateTime)
	}
	if env.Size.RcptCount != 3 || env.Size.QmgrFlags != 30 || env.Size.SMTPUTF8 != 1 {
		t.Errorf("size record %+v", env.Size)
	}
	if env.DSNEnvID != "abc+def" || env.DSNRet != RetHdrs {
		t.Errorf("DSN envid %q ret %d", env.DSNEnvID, env.DSNRet)
	}
	if env.WarnTime != arrival.Add(4*time.Hour).Unix() {
		t.Errorf("warn time %d", env.WarnTime)
	}
	want := []spool.Recipient{
		{Address: "r3@example.com", Orig: "r3@example.com", DSNOrig: "rfc822;orig+x@example.com", Notify: 6},
		{Address: "r4@example.com", Orig: "r4@example.com", DSNOrig: "rfc822;r4@example.com", Notify: 1},
		{Address: "r5@facts.test", Orig: "r5", DSNOrig: "rfc822;r5@facts.test", Notify: 8},
	}
	if len(env.Recipients) != 3 {
		t.Fatalf("recipients %+v", env.Recipients)
	}
	for i, w := range want {
		g := env.Recipients[i]
		g.Offset = 0
		if g != w {
			t.Errorf("recipient %d: %+v, want %+v", i, g, w)
		}
	}
	for _, a := range []string{"log_ident=" + id, "rewrite_context=local", "log_client_address=127.0.0.1", "log_message_origin=unknown[127.0.0.1]", "protocol_name=ESMTP", "client_address_type=2", "encoding=8bit"} {
		name, value, _ := strings.Cut(a, "=")
		if v, ok := env.Attr(name); !ok || v != value {
			t.Errorf("attribute %s = %q, want %q", name, v, value)
		}
	}
	lines := contentLines(t, path, id)
	if lines[1] != "\tby facts.test (sluice) with UTF8SMTP id QUEUEID;" {
		t.Errorf("Received: %q", lines[:3])
	}
	postcatCheck(t, path)
}

func TestExtractRecipients(t *testing.T) {
	fx := newFixture(t, nil)
	m := &Message{Sender: "alice@facts.test", ExtractRecipients: true}
	id, path := submit(t, fx, m, "Subject: t2\nTo: x@example.com, \"Y Person\" <y@example.com>\nCc: c@example.com\nBcc: hidden@example.com,\n\tlocaluser\n\nbody2\n")
	env := readEnvelope(t, path)
	var got []string
	for _, r := range env.Recipients {
		if !r.Extracted {
			t.Errorf("recipient %s not in the extracted segment", r.Address)
		}
		got = append(got, r.Address)
	}
	if want := "x@example.com y@example.com c@example.com hidden@example.com localuser@facts.test"; strings.Join(got, " ") != want {
		t.Errorf("extracted %q, want %q", strings.Join(got, " "), want)
	}
	if env.Size.RcptCount != 5 {
		t.Errorf("rcpt count %d", env.Size.RcptCount)
	}
	if strings.Contains(strings.Join(contentLines(t, path, id), "\n"), "hidden") {
		t.Error("Bcc header kept")
	}
	postcatCheck(t, path)

	// A -t message whose headers name nobody has no recipients.
	_, err := fx.c.Submit(context.Background(), &Message{Sender: "a", ExtractRecipients: true}, strings.NewReader("Subject: x\n\nb\n"))
	if !errors.Is(err, ErrNoRecipients) {
		t.Errorf("err = %v, want ErrNoRecipients", err)
	}
	_, err = fx.c.Submit(context.Background(), &Message{Sender: "a"}, strings.NewReader("Subject: x\n\nb\n"))
	if !errors.Is(err, ErrNoRecipients) {
		t.Errorf("err = %v, want ErrNoRecipients", err)
	}
	assertEmpty(t, fx.sp, spool.Incoming, 1)
}

func TestLineHandling(t *testing.T) {
	fx := newFixture(t, nil)
	long := strings.Repeat("A", 4100)
	exact := strings.Repeat("B", 2048)
	content := "Subject: lines\r\n\r\ncrlf\r\nbare lf\nmid\rcr\r\n" + long + "\n" + exact + "\nno newline at end"
	m := &Message{Sender: "a@b", Recipients: []Recipient{{Address: "c@d"}}, KeepHeaders: true}
	id, path := submit(t, fx, m, content)
	lines := contentLines(t, path, id)
	want := []string{"Subject: lines", "", "crlf", "bare lf", "mid\rcr", long, exact, "no newline at end"}
	if got := lines[2:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines differ:\n%q\nwant\n%q", got, want)
	}
	// The 4100-byte line is L(2048) L(2048) N(4), as Postfix stores it.
	d := dump(t, path, id)
	if n := strings.Count(d, " L AAAA"); n != 2 {
		t.Errorf("%d L records for the long line, want 2", n)
	}
	if !strings.Contains(d, " N AAAA\n") {
		t.Errorf("no final N record of 4 bytes")
	}
	postcatCheck(t, path)
}

func TestSizeLimit(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.MessageSizeLimit = 1000 })
	m := &Message{Sender: "a@b", Recipients: []Recipient{{Address: "c@d"}}}
	_, err := fx.c.Submit(context.Background(), m, strings.NewReader("Subject: big\n\n"+strings.Repeat("x", 2000)+"\n"))
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("err = %v, want ErrTooBig", err)
	}
	assertEmpty(t, fx.sp, spool.Incoming, 0)
	// Just under the limit passes.
	if _, err := fx.c.Submit(context.Background(), m, strings.NewReader("Subject: ok\n\n"+strings.Repeat("x", 900)+"\n")); err != nil {
		t.Fatal(err)
	}
	if len(fx.notified) != 1 {
		t.Errorf("notified %d times", len(fx.notified))
	}
}

func TestHoldQueue(t *testing.T) {
	fx := newFixture(t, nil)
	m := &Message{Sender: "a@b", Recipients: []Recipient{{Address: "c@d"}}, Queue: spool.Hold}
	submit(t, fx, m, "Subject: held\n\nb\n")
	if len(fx.notified) != 0 {
		t.Error("qmgr notified of a held message")
	}
	m.Queue = "deferred"
	if _, err := fx.c.Submit(context.Background(), m, strings.NewReader("x\n")); err == nil {
		t.Error("submit to deferred accepted")
	}
}

func TestLongIDs(t *testing.T) {
	fx := newFixture(t, nil)
	fx.sp.LongIDs = true
	id, path := submit(t, fx, &Message{Sender: "a", Recipients: []Recipient{{Address: "b"}}}, "Subject: x\n\nb\n")
	if !spool.IsLongID(id) {
		t.Fatalf("ID %s is not long", id)
	}
	lines := contentLines(t, path, id)
	if indexFrom(lines, "Message-Id: <QUEUEID@facts.test>", 0) < 0 {
		t.Errorf("long-ID Message-Id missing: %q", lines)
	}
}

type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	r.n--
	return copy(p, "Subject: x\n"), nil
}

func TestFailures(t *testing.T) {
	m := func() *Message { return &Message{Sender: "a@b", Recipients: []Recipient{{Address: "c@d"}}} }
	t.Run("incoming missing", func(t *testing.T) {
		fx := newFixture(t, nil)
		os.RemoveAll(filepath.Join(fx.sp.Root, spool.Incoming))
		_, err := fx.c.Submit(context.Background(), m(), strings.NewReader("x\n"))
		if !errors.Is(err, ErrQueueWrite) {
			t.Fatalf("err = %v, want ErrQueueWrite", err)
		}
	})
	t.Run("spool is a file", func(t *testing.T) {
		fx := newFixture(t, nil)
		in := filepath.Join(fx.sp.Root, spool.Incoming)
		os.RemoveAll(in)
		os.WriteFile(in, nil, 0o600)
		_, err := fx.c.Submit(context.Background(), m(), strings.NewReader("x\n"))
		if !errors.Is(err, ErrQueueWrite) {
			t.Fatalf("err = %v, want ErrQueueWrite", err)
		}
	})
	t.Run("input breaks", func(t *testing.T) {
		fx := newFixture(t, nil)
		_, err := fx.c.Submit(context.Background(), m(), &errReader{n: 3})
		if err == nil || errors.Is(err, ErrQueueWrite) {
			t.Fatalf("err = %v, want a read error", err)
		}
		assertEmpty(t, fx.sp, spool.Incoming, 0)
	})
	t.Run("context canceled", func(t *testing.T) {
		fx := newFixture(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := fx.c.Submit(ctx, m(), strings.NewReader("x\n"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		assertEmpty(t, fx.sp, spool.Incoming, 0)
	})
	for _, method := range []string{CommitFsync, CommitSyncFS} {
		t.Run("disk full/"+method, func(t *testing.T) { testDiskFull(t, m, method) })
	}
}

func testDiskFull(t *testing.T, m func() *Message, method string) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	fx := newFixtureAt(t, dir, func(c *Config) { c.MessageSizeLimit = 0; c.CommitMethod = method })
	t.Cleanup(func() { fx.sp.Close() })              // its syncfs descriptor, before the umount
	body := strings.Repeat("0123456789abcdef", 1024) // 16 KB per message
	var ids []string
	var err error
	for i := 0; i < 20; i++ {
		var id string
		id, err = fx.c.Submit(context.Background(), m(), strings.NewReader("Subject: fill\n\n"+body+"\n"))
		if err != nil {
			break
		}
		ids = append(ids, id)
	}
	if !errors.Is(err, ErrQueueWrite) {
		t.Fatalf("after %d messages: err = %v, want ErrQueueWrite", len(ids), err)
	}
	// Every acknowledged message is complete; nothing else is there.
	assertEmpty(t, fx.sp, spool.Incoming, len(ids))
	for _, id := range ids {
		readEnvelope(t, fx.sp.Path(spool.Incoming, id))
	}
	// After space is freed, mail flows again.
	for _, id := range ids {
		os.Remove(fx.sp.Path(spool.Incoming, id))
	}
	if _, err := fx.c.Submit(context.Background(), m(), strings.NewReader("Subject: again\n\nb\n")); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
}

// assertEmpty checks that queue holds exactly n files, all ready.
func assertEmpty(t *testing.T, sp *spool.Spool, queue string, n int) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(sp.Root, queue))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %d files %v, want %d", queue, len(ents), names, n)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if !spool.IsReady(fi.Mode()) {
			t.Errorf("%s/%s is not ready (mode %v)", queue, e.Name(), fi.Mode())
		}
	}
}

func TestConcurrentSubmits(t *testing.T) {
	for _, method := range []string{CommitFsync, CommitSyncFS} {
		t.Run(method, func(t *testing.T) { testConcurrentSubmits(t, method) })
	}
}

func testConcurrentSubmits(t *testing.T, method string) {
	fx := newFixture(t, func(c *Config) { c.CommitMethod = method })
	// Count the shared syncs, still doing the real one.
	var syncs atomic.Int32
	real := fx.c.syncFS
	fx.c.syncFS = func() error { syncs.Add(1); return real() }
	const n = 64
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &Message{Sender: fmt.Sprintf("s%d@x", i), Recipients: []Recipient{{Address: "r@y"}}}
			id, err := fx.c.Submit(context.Background(), m, strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)))
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate ID %s", id)
		}
		seen[id] = true
		env := readEnvelope(t, fx.sp.Path(spool.Incoming, id))
		if env.Sender != fmt.Sprintf("s%d@x", i) {
			t.Errorf("message %d has sender %s", i, env.Sender)
		}
	}
	assertEmpty(t, fx.sp, spool.Incoming, n)
	if len(fx.notified) != n {
		t.Errorf("notified %d, want %d", len(fx.notified), n)
	}
	switch c := syncs.Load(); {
	case method == CommitFsync && c != 0:
		t.Errorf("fsync: %d syncfs calls", c)
	case method == CommitSyncFS && (c < 1 || c > n):
		t.Errorf("syncfs: %d syncfs calls for %d messages", c, n)
	}
	t.Logf("%s: %d syncfs calls for %d messages", method, syncs.Load(), n)
}

// With syncfs, a batch of Submits shares one sync, every file is complete
// and ready before the sync starts, and a failed sync fails every Submit
// that waited for it: none is acknowledged and no file stays behind.
func TestSyncFSBatch(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			fx := newFixture(t, func(c *Config) { c.CommitMethod = CommitSyncFS })
			const n = 16
			var calls atomic.Int32
			first := make(chan struct{})
			release := make(chan struct{})
			fx.c.syncFS = func() error {
				if calls.Add(1) == 1 {
					close(first)
					<-release
				}
				// What this sync covers is complete on disk already:
				// no embryonic file, every ready file readable.
				ents, err := os.ReadDir(filepath.Join(fx.sp.Root, spool.Incoming))
				if err != nil {
					return err
				}
				for _, e := range ents {
					// After a failed sync, its Submits remove their
					// files while this one runs: skip vanished ones.
					fi, err := e.Info()
					if err != nil || !spool.IsReady(fi.Mode()) {
						continue
					}
					data, err := os.ReadFile(fx.sp.Path(spool.Incoming, e.Name()))
					if errors.Is(err, fs.ErrNotExist) {
						continue
					}
					if err == nil {
						_, err = spool.ReadEnvelope(spool.NewBytesReader(data), spool.ReadOptions{})
					}
					if err != nil {
						t.Errorf("ready file %s before the sync: %v", e.Name(), err)
					}
				}
				if fail {
					return errors.New("syncfs: input/output error")
				}
				return nil
			}
			errs := make([]error, n)
			var wg sync.WaitGroup
			submitOne := func(i int) {
				defer wg.Done()
				m := &Message{Sender: fmt.Sprintf("s%d@x", i), Recipients: []Recipient{{Address: "r@y"}}}
				_, errs[i] = fx.c.Submit(context.Background(), m, strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)))
			}
			// One Submit starts a sync and holds it; the rest arrive
			// while it runs and must wait for, and share, the next one.
			wg.Add(1)
			go submitOne(0)
			<-first
			for i := 1; i < n; i++ {
				wg.Add(1)
				go submitOne(i)
			}
			// Let the others commit their files and queue up.
			deadline := time.Now().Add(10 * time.Second)
			for {
				ents, _ := os.ReadDir(filepath.Join(fx.sp.Root, spool.Incoming))
				if len(ents) == n || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			close(release)
			wg.Wait()
			for i, err := range errs {
				if fail && !errors.Is(err, ErrQueueWrite) {
					t.Errorf("Submit %d: err = %v, want ErrQueueWrite", i, err)
				}
				if !fail && err != nil {
					t.Errorf("Submit %d: %v", i, err)
				}
			}
			if c := calls.Load(); c < 2 || c > 3 {
				t.Errorf("%d syncs for %d Submits, want 2 (one held, one shared)", c, n)
			}
			if fail {
				assertEmpty(t, fx.sp, spool.Incoming, 0)
				if len(fx.notified) != 0 {
					t.Errorf("notified %v after a failed sync", fx.notified)
				}
			} else {
				assertEmpty(t, fx.sp, spool.Incoming, n)
				if len(fx.notified) != n {
					t.Errorf("notified %d, want %d", len(fx.notified), n)
				}
			}
		})
	}
}

func TestSyncGroup(t *testing.T) {
	g := newSyncGroup(0, nil)
	var calls atomic.Int32
	var inSync atomic.Int32
	slow := func() error {
		if inSync.Add(1) != 1 {
			t.Error("two syncs at once")
		}
		calls.Add(1)
		time.Sleep(5 * time.Millisecond)
		inSync.Add(-1)
		return nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); g.sync(slow) }()
	}
	wg.Wait()
	if c := calls.Load(); c >= 100 || c < 1 {
		t.Errorf("%d syncs for 100 callers", c)
	}
	t.Logf("%d syncs for 100 callers", calls.Load())

	// A caller that arrives while a sync runs waits for the next one.
	g = newSyncGroup(0, nil)
	started, release := make(chan struct{}), make(chan struct{})
	var order []string
	var mu sync.Mutex
	go g.sync(func() error {
		close(started)
		<-release
		mu.Lock()
		order = append(order, "first")
		mu.Unlock()
		return nil
	})
	<-started
	done := make(chan error)
	go func() {
		done <- g.sync(func() error { mu.Lock(); order = append(order, "second"); mu.Unlock(); return errors.New("EIO") })
	}()
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-done; err == nil || strings.Join(order, ",") != "first,second" {
		t.Errorf("err %v order %v", err, order)
	}
}

// TestSyncGroupGathers: a sync about to start waits while other
// messages are still being written, so that one sync covers them too;
// with none being written it does not wait at all, and it never waits
// longer than its delay.
func TestSyncGroupGathers(t *testing.T) {
	var writing atomic.Int32
	busy := func() bool { return writing.Load() > 0 }
	var calls atomic.Int32
	do := func() error { calls.Add(1); return nil }

	// Three writers; the first to finish finds two still writing. The
	// delay is far longer than the test: only their arrival ends the
	// wait.
	g := newSyncGroup(time.Hour, busy)
	writing.Store(3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			writing.Add(-1)
			if err := g.sync(do); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Errorf("%d syncs for three messages written together, want 1", c)
	}

	// Alone: no wait, though the delay is an hour.
	calls.Store(0)
	done := make(chan error, 1)
	go func() { done <- g.sync(do) }()
	select {
	case err := <-done:
		if err != nil || calls.Load() != 1 {
			t.Errorf("alone: %v, %d syncs", err, calls.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a lone message waited for others")
	}

	// A writer that never arrives holds the sync up for the delay only.
	g = newSyncGroup(50*time.Millisecond, busy)
	writing.Store(1)
	go func() { done <- g.sync(do) }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a sync waited past its delay for a writer that did not come")
	}
	writing.Store(0)
}

// postcatCheck runs Postfix's postcat, when installed, on a file cleanup
// wrote: Postfix must read it without a warning.
func postcatCheck(t *testing.T, path string) {
	t.Helper()
	pc, err := exec.LookPath("postcat")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/postcat"); err != nil {
			return
		}
		pc = "/usr/sbin/postcat"
	}
	cfg := t.TempDir()
	os.WriteFile(filepath.Join(cfg, "main.cf"), nil, 0o644)
	// Postfix's tools wait about two seconds when main.cf is brand new;
	// an old time stamp spares the test that wait.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(cfg, "main.cf"), old, old)
	out, err := exec.Command(pc, "-c", cfg, path).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("postcat: warning")) || !bytes.Contains(out, []byte("*** MESSAGE FILE END")) {
		t.Errorf("postcat %s: %v\n%s", path, err, out)
	}
	if !regexp.MustCompile(`(?m)^message_size: +\d+ +\d+ +\d+`).Match(out) {
		t.Errorf("postcat shows no size record:\n%s", out)
	}
}

// TestLongLinesStreamed: lines of every length around the record size and
// the read buffer, ended by CRLF or LF, come back whole, stored as Postfix
// stores them (full LineLengthLimit continuation records, then the
// rest), and a line far longer than the read buffer costs a bounded
// amount of memory rather than its own length.
func TestLongLinesStreamed(t *testing.T) {
	L := spool.LineLengthLimit
	lengths := []int{0, 1, L - 1, L, L + 1, 2*L - 1, 2 * L, 2*L + 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3 << 20}
	var in, want strings.Builder
	in.WriteString("Subject: long\r\n\r\n")
	want.WriteString("Subject: long\n\n")
	for i, n := range lengths {
		line := strings.Repeat(string(rune('a'+i%26)), n)
		eol := "\r\n"
		if i%2 == 1 {
			eol = "\n"
		}
		in.WriteString(line + eol)
		want.WriteString(line + "\n")
	}
	fx := newFixture(t, func(c *Config) { c.MessageSizeLimit = 0 })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	id, err := fx.c.Submit(context.Background(), &Message{Sender: "a@b.example", Recipients: []Recipient{{Address: "c@d.example"}}}, strings.NewReader(in.String()))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("queuing a 3 MB line allocated %d bytes; want under 1 MB", grew)
	}
	data, err := os.ReadFile(fx.sp.Path(spool.Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	r := spool.NewBytesReader(data)
	var got strings.Builder
	inContent := false
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Type {
		case spool.RecMesg:
			inContent = true
		case spool.RecXtra:
			inContent = false
		case spool.RecCont:
			if len(rec.Data) != L {
				t.Errorf("continuation record of %d bytes, want %d", len(rec.Data), L)
			}
			got.Write(rec.Data)
		case spool.RecNorm:
			if inContent {
				got.Write(rec.Data)
				got.WriteByte('\n')
			}
		}
	}
	text := got.String()
	if i := strings.Index(text, "Subject: long\n"); i >= 0 {
		text = text[i:]
	}
	// cleanup adds headers (Received:, Message-Id: ...) before and after
	// Subject:; compare from the blank line on.
	wantBody := want.String()[strings.Index(want.String(), "\n\n"):]
	gotBody := text[strings.Index(text, "\n\n"):]
	if gotBody != wantBody {
		t.Errorf("body differs: got %d bytes, want %d", len(gotBody), len(wantBody))
	}
}
