package smtp

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"sluice/internal/testutil/fakesmtp"
)

type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) warn(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf(format, args...))
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// loopClient is a client whose myhostname is facts.test and whose own
// listener is 127.0.0.53:25.
func loopClient(n *testNet, w *warnings) *Client {
	c := n.client()
	c.MyHostname = "facts.test"
	c.Warn = w.warn
	self := netip.MustParseAddrPort("127.0.0.53:25")
	c.IsSelf = func(ap netip.AddrPort) bool { return ap == self }
	return c
}

// A server that answers EHLO with our own name is this host: bounced
// with 5.4.6 after Postfix's two warnings, nothing sent.
func TestLoopEHLOWithMyHostname(t *testing.T) {
	n := newNet(t)
	srv := n.server("mx.loop.test", "127.0.0.2", fakesmtp.Options{Hostname: "facts.test"})
	var w warnings
	res := deliver(t, loopClient(n, &w), "[127.0.0.2]", message(testText, "a@loop.test", "b@loop.test"))
	lp := want{status: Bounced, dsn: "5.4.6", reason: "mail for [127.0.0.2] loops back to myself", relay: "127.0.0.2[127.0.0.2]:25"}
	check(t, res, lp, lp)
	for _, l := range []string{
		"host 127.0.0.2[127.0.0.2]:25 greeted me with my own hostname facts.test",
		"host 127.0.0.2[127.0.0.2]:25 replied to HELO/EHLO with my own hostname facts.test",
	} {
		if !strings.Contains(w.all(), l) {
			t.Errorf("warnings lack %q:\n%s", l, w.all())
		}
	}
	if len(srv.Delivered()) != 0 {
		t.Errorf("mail was sent: %+v", srv.Delivered())
	}

	// Through MX lookup the reason names the domain; HELO counts too.
	n.dns.AddMX("loop.test", 10, "mx.loop.test")
	srv.SetOptions(fakesmtp.Options{Hostname: "FACTS.TEST", NoESMTP: true})
	res = deliver(t, loopClient(n, &w), "loop.test", message(testText, "a@loop.test"))
	check(t, res, want{status: Bounced, dsn: "5.4.6", reason: "mail for loop.test loops back to myself"})
}

// A greeting with our name alone is only a warning, as in Postfix.
func TestLoopGreetingOnlyWarns(t *testing.T) {
	n := newNet(t)
	srv := n.server("mx.g.test", "127.0.0.2", fakesmtp.Options{Hostname: "other.test"})
	srv.Reply(fakesmtp.Greeting, fakesmtp.Reply{Text: "220 facts.test ESMTP"})
	var w warnings
	res := deliver(t, loopClient(n, &w), "[127.0.0.2]", message(testText, "a@g.test"))
	check(t, res, want{status: Sent})
	if !strings.Contains(w.all(), "greeted me with my own hostname facts.test") || strings.Contains(w.all(), "HELO/EHLO") {
		t.Errorf("warnings:\n%s", w.all())
	}
}

// On a port other than the standard one the names are not compared: a
// content filter or another instance on this host shares its name.
func TestLoopNameCheckOnlyOnStandardPort(t *testing.T) {
	n := newNet(t)
	s := fakesmtp.Start(t, fakesmtp.Options{Hostname: "facts.test"})
	n.route("127.0.0.2:10025", s.Addr)
	var w warnings
	res := deliver(t, loopClient(n, &w), "[127.0.0.2]:10025", message(testText, "a@f.test"))
	check(t, res, want{status: Sent})
	if w.all() != "" {
		t.Errorf("warnings:\n%s", w.all())
	}
}

// The best MX host at one of our own addresses: a loop, found before any
// connection.
func TestLoopBestMXIsSelf(t *testing.T) {
	n := newNet(t)
	n.dns.AddMX("self.test", 10, "mx.facts.test")
	n.dns.AddMX("self.test", 20, "backup.other.test")
	n.dns.AddA("mx.facts.test", "127.0.0.53")
	n.server("backup.other.test", "127.0.0.3", fakesmtp.Options{})
	var w warnings
	res := deliver(t, loopClient(n, &w), "self.test", message(testText, "a@self.test"))
	check(t, res, want{status: Bounced, dsn: "5.4.6", reason: "mail for self.test loops back to myself", relay: "none"})
	if len(n.dials) != 0 {
		t.Errorf("dialled %v", n.dials)
	}
}

// We are a backup MX: only the better MX hosts are tried.
func TestLoopBackupMX(t *testing.T) {
	n := newNet(t)
	n.dns.AddMX("backup.test", 10, "primary.backup.test")
	n.dns.AddMX("backup.test", 20, "mx.facts.test")
	n.dns.AddMX("backup.test", 30, "worse.backup.test")
	n.dns.AddA("mx.facts.test", "127.0.0.53")
	n.route("127.0.0.4:25", "refused")
	n.dns.AddA("primary.backup.test", "127.0.0.4")
	n.server("worse.backup.test", "127.0.0.5", fakesmtp.Options{})
	var w warnings
	res := deliver(t, loopClient(n, &w), "backup.test", message(testText, "a@backup.test"))
	check(t, res, want{status: Deferred, dsn: "4.4.1"})
	if strings.Join(n.dials, " ") != "127.0.0.4:25" {
		t.Errorf("dialled %v, want only the primary", n.dials)
	}
}

// A relayhost that is our own listener: a loop at once, on any port.
func TestLoopRelayhostIsSelf(t *testing.T) {
	n := newNet(t)
	var w warnings
	c := loopClient(n, &w)
	c.IsSelf = func(ap netip.AddrPort) bool { return ap == netip.MustParseAddrPort("127.0.0.53:2525") }
	c.RelayHost = "[127.0.0.53]:2525"
	res := deliver(t, c, "outside.test", message(testText, "a@outside.test"))
	check(t, res, want{status: Bounced, dsn: "5.4.6", reason: "mail for [127.0.0.53]:2525 loops back to myself", relay: "127.0.0.53[127.0.0.53]:2525"})
	if len(n.dials) != 0 {
		t.Errorf("dialled %v", n.dials)
	}
}
