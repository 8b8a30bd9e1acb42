package smtp

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sluice/internal/testutil/fakedns"
	"sluice/internal/testutil/fakesmtp"
)

func probe(t *testing.T, c *Client, target string, opt ProbeOptions) *ProbeReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Probe(ctx, target, opt)
}

// TestProbeMX follows a domain's MX records in preference order, talks to
// every address as far as RCPT TO and sends no mail.
func TestProbeMX(t *testing.T) {
	n := newNet(t)
	good := n.server("mx2.probe.test", "127.0.0.12", fakesmtp.Options{TLS: true, Hostname: "mx2.probe.test"})
	bad := n.server("mx1.probe.test", "127.0.0.11", fakesmtp.Options{})
	bad.RcptReply("postmaster@probe.test", fakesmtp.Reply{Text: "450 4.2.0 <postmaster@probe.test>: Recipient address rejected: Greylisted"})
	n.dns.AddMX("probe.test", 20, "mx2.probe.test")
	n.dns.AddMX("probe.test", 10, "mx1.probe.test")
	n.dns.AddMX("probe.test", 30, "gone.probe.test")
	c := n.client()
	c.TLSLevel = "may"

	r := probe(t, c, "probe.test", ProbeOptions{Sender: "probe@src.test"})
	if r.Via != "mx" || r.Error != "" || !r.OK || r.Recipient != "postmaster@probe.test" || r.TLSPolicy != "may" {
		t.Fatalf("report %+v", r)
	}
	if len(r.MX) != 3 || r.MX[0].Host != "mx1.probe.test" || r.MX[1].Host != "mx2.probe.test" ||
		r.MX[2].Error == "" || !strings.Contains(r.MX[2].Error, "name=gone.probe.test") {
		t.Errorf("MX list %+v", r.MX)
	}
	if len(r.Hosts) != 2 {
		t.Fatalf("hosts %+v", r.Hosts)
	}
	h1, h2 := r.Hosts[0], r.Hosts[1]
	if h1.Host != "mx1.probe.test" || h1.OK || h1.Preference != 10 ||
		!strings.Contains(h1.Verdict, "temporary failure: host mx1.probe.test[127.0.0.11] said: 450 4.2.0") || h1.TLS != nil {
		t.Errorf("first host %+v", h1)
	}
	if h2.Host != "mx2.probe.test" || !h2.OK || h2.TLS == nil || h2.TLS.Version == "" || h2.TLS.Cipher == "" ||
		h2.TLS.Trusted || h2.TLS.NotAfter.IsZero() || !strings.HasPrefix(h2.Banner, "220 ") {
		t.Errorf("second host %+v (tls %+v)", h2, h2.TLS)
	}
	if len(h2.Steps) != 3 || h2.Steps[2].Command != "RSET" || !strings.HasPrefix(h2.Steps[1].Reply, "250") {
		t.Errorf("steps %+v", h2.Steps)
	}
	for _, s := range append(good.Sessions(), bad.Sessions()...) {
		for _, m := range s.Mails {
			if m.Data != nil || m.DataReply != "" {
				t.Errorf("the probe sent data: %+v", m)
			}
		}
		for _, cmd := range s.Commands {
			if strings.HasPrefix(strings.ToUpper(cmd), "DATA") || strings.HasPrefix(strings.ToUpper(cmd), "BDAT") {
				t.Errorf("the probe said %q", cmd)
			}
		}
	}
	if ss := good.Sessions(); len(ss) != 1 || !ss[0].TLS || ss[0].Mails[0].From != "probe@src.test" {
		t.Errorf("sessions at the good host: %+v", ss)
	}
}

func TestProbeFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(n *testNet, c *Client)
		target string
		err    string // report error
		host   string // verdict of the only host
	}{
		{name: "no such domain", target: "nosuch.test",
			setup: func(*testNet, *Client) {},
			err:   "Host or domain name not found. Name service error for name=nosuch.test type=A: Host not found"},
		{name: "MX lookup fails", target: "servfail.test",
			setup: func(n *testNet, _ *Client) { n.dns.Fail("servfail.test", "MX", fakedns.ServFail) },
			err:   "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again"},
		{name: "connection refused", target: "refused.test",
			setup: func(n *testNet, _ *Client) {
				n.dns.AddA("refused.test", "127.0.0.21")
				n.route("127.0.0.21:25", "refused")
			},
			host: "connect to refused.test[127.0.0.21]:25: Connection refused"},
		{name: "TLS required, not offered", target: "plain.test",
			setup: func(n *testNet, c *Client) {
				n.server("plain.test", "127.0.0.22", fakesmtp.Options{})
				c.TLSLevel = "encrypt"
			},
			host: "TLS is required, but was not offered by host plain.test[127.0.0.22]"},
		{name: "recipient refused", target: "[127.0.0.23]",
			setup: func(n *testNet, _ *Client) {
				s := fakesmtp.Start(t, fakesmtp.Options{})
				n.route("127.0.0.23:25", s.Addr)
				s.Reply(fakesmtp.RCPT, fakesmtp.Reply{Text: "550 5.1.1 <postmaster@[127.0.0.23]>: Recipient address rejected: User unknown"})
			},
			host: "permanent failure: host 127.0.0.23[127.0.0.23] said: 550 5.1.1 <postmaster@[127.0.0.23]>: Recipient address rejected: User unknown (in reply to RCPT TO)"},
		{name: "banner refuses", target: "[127.0.0.24]",
			setup: func(n *testNet, _ *Client) {
				s := fakesmtp.Start(t, fakesmtp.Options{})
				n.route("127.0.0.24:25", s.Addr)
				s.Reply(fakesmtp.Greeting, fakesmtp.Reply{Text: "554 5.7.1 go away"})
			},
			host: "host 127.0.0.24[127.0.0.24] refused to talk to me: 554 5.7.1 go away"},
		{name: "the target is this host", target: "[127.0.0.25]:2525",
			setup: func(n *testNet, c *Client) {
				c.IsSelf = func(a netip.AddrPort) bool { return a.String() == "127.0.0.25:2525" }
			},
			host: "mail for 127.0.0.25 loops back to myself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			c := n.client()
			tt.setup(n, c)
			r := probe(t, c, tt.target, ProbeOptions{})
			if r.OK {
				t.Errorf("OK for a failing destination: %+v", r)
			}
			if tt.err != "" {
				if r.Error != tt.err || len(r.Hosts) != 0 {
					t.Errorf("error %q, hosts %+v; want %q", r.Error, r.Hosts, tt.err)
				}
				return
			}
			if r.Error != "" || len(r.Hosts) != 1 || !strings.HasPrefix(r.Hosts[0].Verdict, tt.host) {
				t.Errorf("error %q, hosts %+v; want one host with verdict %q", r.Error, r.Hosts, tt.host)
			}
		})
	}
}

// TestProbeRelayhost probes through the relayhost, as delivery would send.
func TestProbeRelayhost(t *testing.T) {
	n := newNet(t)
	s := fakesmtp.Start(t, fakesmtp.Options{})
	n.route("127.0.0.31:25", s.Addr)
	c := n.client()
	c.RelayHost = "[127.0.0.31]"
	r := probe(t, c, "far.test", ProbeOptions{Recipient: "bob@far.test"})
	if !r.OK || r.NextHop != "[127.0.0.31]" || r.Via != "literal" || len(r.Hosts) != 1 {
		t.Fatalf("report %+v", r)
	}
	ss := s.Sessions()
	if len(ss) != 1 || len(ss[0].Mails) != 1 || len(ss[0].Mails[0].Rcpts) != 1 || ss[0].Mails[0].Rcpts[0].Addr != "bob@far.test" || ss[0].Mails[0].From != "" {
		t.Errorf("sessions %+v", ss)
	}
}
