package transcript

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// The harness itself, without Postfix: the chat parser, the reply
// reader against a scripted fake server, and a comparison that fails.

func TestParseScript(t *testing.T) {
	s, err := parseScript("x", "# about this\n# and more\nsource 127.0.0.2\nS: greeting\nC: A\\0B\\x01\nC*2: {{3*ab}}\nC~: raw\\r\nS: note\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.about != "about this and more" || s.source != "127.0.0.2" || len(s.steps) != 2 {
		t.Fatalf("parsed %+v", s)
	}
	want := []string{"A\x00B\x01\r\n", "ababab\r\n", "ababab\r\n", "raw\r"}
	got := s.steps[1].send
	if len(got) != len(want) {
		t.Fatalf("sends %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("send %d = %q, want %q", i, got[i], want[i])
		}
	}
	if s.steps[1].note != "note" {
		t.Errorf("note = %q", s.steps[1].note)
	}
	for _, bad := range []string{
		"C: EHLO x\nS:\n",   // no greeting step first
		"S:\nC: QUIT\n",     // a send nobody waits for
		"S:\nC: a\\q\nS:\n", // unknown escape
		"S:\nX: a\nS:\n",    // unknown directive
		"source nowhere\nS:\n",
	} {
		if _, err := parseScript("bad", bad); err == nil {
			t.Errorf("parseScript(%q) succeeded", bad)
		}
	}
}

func TestScriptsParse(t *testing.T) {
	scripts, err := loadScripts("testdata/scripts")
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) < minScripts {
		t.Fatalf("%d scripts, want at least %d", len(scripts), minScripts)
	}
	trusted, untrusted := 0, 0
	for _, s := range scripts {
		if s.about == "" {
			t.Errorf("script %s has no description", s.name)
		}
		if s.source == "127.0.0.1" {
			trusted++
		} else {
			untrusted++
		}
	}
	if trusted == 0 || untrusted == 0 {
		t.Errorf("trusted scripts %d, untrusted %d: want both", trusted, untrusted)
	}
}

// fakeServer answers each line it reads with the next canned reply
// (nothing for ""), then closes.
func fakeServer(t *testing.T, greeting string, replies ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(greeting))
		br := bufio.NewReader(c)
		for _, r := range replies {
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			c.Write([]byte(r))
		}
	}()
	return ln.Addr().String()
}

func TestRunRecordsReplies(t *testing.T) {
	s, err := parseScript("x", "S:\nC: EHLO a\nS:\nC: NOOP\nS:\nC: QUIT\nS:\nC: NOOP\nS:\n")
	if err != nil {
		t.Fatal(err)
	}
	addr := fakeServer(t, "220 hi\r\n",
		"250-one\r\n250 two\r\n",
		"", // no reply to NOOP
		"221 bye\r\n",
	)
	tr, err := run(s, addr, timeouts{reply: 300 * time.Millisecond, close: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"220 hi\r\n", "250-one\r\n250 two\r\n", noReply, "221 bye\r\n", closedReply, closedAtEnd}
	if strings.Join(tr.replies, "|") != strings.Join(want, "|") {
		t.Errorf("replies %q\nwant    %q", tr.replies, want)
	}
}

func TestRunNoticesAServerThatStaysOpen(t *testing.T) {
	s, err := parseScript("x", "S:\nC: QUIT\nS:\n")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("220 hi\r\n"))
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("221 bye\r\n250 extra\r\n"))
		time.Sleep(2 * time.Second)
		c.Close()
	}()
	tr, err := run(s, ln.Addr().String(), timeouts{reply: 5 * time.Second, close: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"220 hi\r\n", "221 bye\r\n", "250 extra\r\n" + stillOpenEnd}
	if strings.Join(tr.replies, "|") != strings.Join(want, "|") {
		t.Errorf("replies %q\nwant    %q", tr.replies, want)
	}
}

func TestCompare(t *testing.T) {
	s := &script{name: "x", steps: []step{{}, {send: [][]byte{[]byte("DATA\r\n")}}}}
	pf := &transcript{replies: []string{"220 a\r\n", "250 2.0.0 Ok: queued as 3F2A1B\r\n", closedAtEnd}}
	sl := &transcript{replies: []string{"220 a\r\n", "250 2.0.0 Ok: queued as 7kQ9x2Mw1bzRtY\r\n", stillOpenEnd}}
	c := compare(result{s: s, postfix: pf, sluice: sl}, nil)
	if c.same != 2 || c.total != 2 || len(c.differ) != 1 || c.differ[0] != 3 {
		t.Errorf("compare = %+v, want steps 1 and 2 the same (queue IDs masked), step 3 differing", c)
	}
	c = compare(result{s: s, postfix: pf, sluice: sl}, map[int]string{3: "a reason"})
	if len(c.differ) != 0 || len(c.allowed) != 1 {
		t.Errorf("compare with step 3 allowed = %+v", c)
	}
	out := sideBySide(result{s: s, postfix: pf, sluice: sl}, nil)
	if !strings.Contains(out, "!") || !strings.Contains(out, stillOpenEnd) {
		t.Errorf("sideBySide shows no difference:\n%s", out)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"NOOP\r\n":                       "NOOP",
		"a\x00b\rc\n":                    `a\0b\rc\n`,
		"\xff\\":                         `\xff\\`,
		"DATA  \r\n":                     `DATA\x20\x20`,
		strings.Repeat("x", 30) + "\r\n": "{{30*x}}",
	} {
		if got := escape([]byte(in)); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
