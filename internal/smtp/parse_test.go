package smtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"sluice/internal/testutil/fakesmtp"
)

func TestParseDestination(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
		mx   bool
		key  string
		bad  bool
	}{
		{in: "example.com", host: "example.com", port: 25, mx: true, key: "example.com:25"},
		{in: "Example.COM.", host: "example.com", port: 25, mx: true, key: "example.com:25"},
		{in: "example.com:587", host: "example.com", port: 587, mx: true, key: "example.com:587"},
		{in: "[mail.example.com]", host: "mail.example.com", port: 25, key: "[mail.example.com]:25"},
		{in: "[192.0.2.1]:2525", host: "192.0.2.1", port: 2525, key: "[192.0.2.1]:2525"},
		{in: "[ipv6:2001:db8::1]:25", host: "2001:db8::1", port: 25, key: "[2001:db8::1]:25"},
		{in: "[2001:db8::1]", host: "2001:db8::1", port: 25, key: "[2001:db8::1]:25"},
		{in: "192.0.2.1", host: "192.0.2.1", port: 25, key: "[192.0.2.1]:25"},
		{in: "relay.test:smtp", host: "relay.test", port: 25, mx: true, key: "relay.test:25"},
		{in: "", bad: true},
		{in: "[x", bad: true},
		{in: "[x]y", bad: true},
		{in: "[x]:0", bad: true},
		{in: "x:99999", bad: true},
		{in: "x:abc", bad: true},
		{in: "[]:25", bad: true},
	}
	for _, tt := range tests {
		d, err := parseDestination(tt.in, 25)
		if tt.bad {
			if err == nil {
				t.Errorf("%q accepted: %+v", tt.in, d)
			}
			continue
		}
		if err != nil || d.host != tt.host || d.port != tt.port || d.mx != tt.mx || d.key != tt.key {
			t.Errorf("%q = %+v, %v; want %s %d mx=%v %s", tt.in, d, err, tt.host, tt.port, tt.mx, tt.key)
		}
	}
}

func TestTargetNames(t *testing.T) {
	v6 := target{host: "mx.example", ip: net.ParseIP("2001:db8::1"), port: 25}
	if v6.relay() != "mx.example[2001:db8::1]:25" || v6.namaddr() != "mx.example[2001:db8::1]" {
		t.Errorf("%s %s", v6.relay(), v6.namaddr())
	}
}

func TestReplyParsing(t *testing.T) {
	tests := []struct {
		in   string
		code int
		text string
		dsn  string
	}{
		{"250 ok\r\n", 250, "250 ok", "2.0.0"},
		{"550 5.1.1 <x>: no\r\n", 550, "550 5.1.1 <x>: no", "5.1.1"},
		{"550-5.1.1 a\r\n550 5.1.1 b\r\n", 550, "550-5.1.1 a 550 5.1.1 b", "5.1.1"},
		{"450 5.7.1 wrong class\r\n", 450, "450 5.7.1 wrong class", "4.7.1"},
		{"421\r\n", 421, "421", "4.0.0"},
		{"junk\r\nmore junk\r\n451 4.3.0 x\r\n", 451, "junk more junk 451 4.3.0 x", "4.0.0"},
		{"354 go ahead\n", 354, "354 go ahead", "4.0.0"},
		{"250 \x01bin\x7fary\r\n", 250, "250 ?bin?ary", "2.0.0"},
		{"550 5.1.1234 too long a detail\r\n", 550, "550 5.1.1234 too long a detail", "5.0.0"},
		{"550 X.1.1 bad\r\n", 550, "550 X.1.1 bad", "5.0.0"},
	}
	for _, tt := range tests {
		rep, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if err != nil || rep.code != tt.code || rep.text() != tt.text || rep.dsn() != tt.dsn {
			t.Errorf("%q: code %d text %q dsn %s err %v", tt.in, rep.code, rep.text(), rep.dsn(), err)
		}
	}
	// A reply that never ends, or ends with the connection.
	endless := strings.Repeat("250-x\r\n", replyMaxLines+1)
	if _, err := readReply(bufio.NewReader(strings.NewReader(endless))); !errors.Is(err, errReplyTooLong) {
		t.Errorf("endless reply: %v", err)
	}
	if _, err := readReply(bufio.NewReader(strings.NewReader("250-x\r\n250"))); err == nil {
		t.Error("reply cut by EOF accepted")
	}
	// A huge line is cut, not stored whole.
	rep, err := readReply(bufio.NewReader(strings.NewReader("550 " + strings.Repeat("y", 100000) + "\r\n")))
	if err != nil || len(rep.text()) != replyLineLimit {
		t.Errorf("long line: %d bytes, %v", len(rep.text()), err)
	}
}

func TestXtextAndQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"plain@example.com": "plain@example.com",
		"a+b=c d":           "a+2Bb+3Dc+20d",
		"caf\u00e9":         "caf+C3+A9",
	} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
	tests := []struct {
		in, out string
		ok      bool
	}{
		{"a@b", "a@b", true},
		{"", "", true},
		{"first.last+tag@example.com", "first.last+tag@example.com", true},
		{"john doe@x", `"john doe"@x`, true},
		{`"already quoted"@x`, `"already quoted"@x`, true},
		{"a..b@x", `"a..b"@x`, true},
		{`back\slash@x`, `"back\\slash"@x`, true},
		{"noat", "noat", true},
		{"user@host@x", `"user@host"@x`, true},
		{"j\u00f6rg@x", "j\u00f6rg@x", true},
		{"evil\r\nRCPT TO:<x>@y", "", false},
		{"nul\x00@x", "", false},
	}
	for _, tt := range tests {
		got, ok := quoteAddress(tt.in)
		if got != tt.out || ok != tt.ok {
			t.Errorf("quoteAddress(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.out, tt.ok)
		}
	}
}

// An address with a line break bounces instead of reaching the wire.
func TestCommandInjectionRefused(t *testing.T) {
	n := newNet(t)
	srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
	res := deliver(t, n.client(), "mx.example.test", message(testText, "ok@mx.example.test", "bad\r\nRSET@mx.example.test"))
	check(t, res, want{status: Sent}, want{Bounced, "5.1.3", "", "none"})
	for _, s := range srv.Sessions() {
		for _, c := range s.Commands {
			if strings.Contains(c, "bad") {
				t.Errorf("sent %q", c)
			}
		}
	}
	m := message(testText, "a@mx.example.test")
	m.Sender = "x\ny@z"
	check(t, deliver(t, n.client(), "mx.example.test", m), want{Bounced, "5.1.7", "", "none"})
}

func TestDialErrorWording(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{op(syscall.ECONNREFUSED), "Connection refused"},
		{op(syscall.ETIMEDOUT), "Connection timed out"},
		{op(syscall.EHOSTUNREACH), "No route to host"},
		{op(syscall.ENETUNREACH), "Network is unreachable"},
		{op(syscall.ECONNRESET), "Connection reset by peer"},
		{op(syscall.EACCES), "Permission denied"},
		{context.DeadlineExceeded, "Connection timed out"},
		{fmt.Errorf("wrapped: %w", context.Canceled), "Operation canceled"},
		{errors.New("something else"), "something else"},
	}
	for _, tt := range tests {
		if got := dialError(tt.err); got != tt.want {
			t.Errorf("dialError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	for s, want := range map[Status]string{Sent: "sent", Deferred: "deferred", Bounced: "bounced", 0: "unknown"} {
		if s.String() != want {
			t.Errorf("Status(%d) = %s", s, s)
		}
	}
}
