package smtp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil/fakedns"
	"sluice/internal/testutil/fakesmtp"
)

// testNet routes the client's connections: the fake DNS hands out
// addresses in 127.0.0.0/8, and dial sends each "ip:port" to the fake
// server registered for it. An address routed to "refused" gets a closed
// port, "blackhole" never answers.
type testNet struct {
	t      *testing.T
	dns    *fakedns.Server
	mu     sync.Mutex
	routes map[string]string
	dials  []string
}

func newNet(t *testing.T) *testNet {
	return &testNet{t: t, dns: fakedns.Start(t), routes: map[string]string{}}
}

func (n *testNet) route(addr, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes[addr] = to
}

// server starts a fake SMTP server reachable as host (with address ip,
// port 25 unless the client says otherwise).
func (n *testNet) server(host, ip string, opts fakesmtp.Options) *fakesmtp.Server {
	s := fakesmtp.Start(n.t, opts)
	n.dns.AddA(host, ip)
	n.route(ip+":25", s.Addr)
	return s
}

func (n *testNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, addr)
	to, ok := n.routes[addr]
	n.mu.Unlock()
	switch {
	case !ok:
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no route in test network")}
	case to == "blackhole":
		<-ctx.Done()
		return nil, ctx.Err()
	case to == "refused":
		to = closedPort(n.t)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func (n *testNet) client() *Client {
	return &Client{
		Resolver:       n.dns.Resolver(),
		Dial:           n.dial,
		HeloName:       "sluice.test",
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 5 * time.Second,
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

const testText = "Subject: test\nFrom: a@src.test\n\nHello.\n.leading dot\n..two dots\n"

func message(text string, rcpts ...string) *Message {
	m := &Message{QueueID: "TESTID", Sender: "a@src.test", Size: int64(len(text)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(text)), nil }}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Address: r})
	}
	return m
}

func deliver(t *testing.T, c *Client, nexthop string, m *Message) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := c.Deliver(ctx, nexthop, m)
	if len(res) != len(m.Recipients) {
		t.Fatalf("%d results for %d recipients", len(res), len(m.Recipients))
	}
	for i, r := range res {
		if r.Recipient.Address != m.Recipients[i].Address {
			t.Errorf("result %d is for %s, want %s", i, r.Recipient.Address, m.Recipients[i].Address)
		}
		if r.Status == 0 || r.DSN == "" || r.Reason == "" || r.Relay == "" {
			t.Errorf("incomplete result %+v", r)
		}
	}
	return res
}

// want is the expected outcome for one recipient; empty fields are not
// checked.
type want struct {
	status Status
	dsn    string
	reason string
	relay  string
}

func check(t *testing.T, res []Result, wants ...want) {
	t.Helper()
	for i, w := range wants {
		r := res[i]
		if r.Status != w.status || (w.dsn != "" && r.DSN != w.dsn) ||
			(w.reason != "" && r.Reason != w.reason) || (w.relay != "" && r.Relay != w.relay) {
			t.Errorf("%s: got %s %s %q relay=%s\n want %s %s %q relay=%s",
				r.Recipient.Address, r.Status, r.DSN, r.Reason, r.Relay, w.status, w.dsn, w.reason, w.relay)
		}
	}
}

func TestDeliverSent(t *testing.T) {
	n := newNet(t)
	n.dns.AddMX("example.test", 10, "mx.example.test")
	srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
	c := n.client()
	m := message(testText, "bob@example.test", "carol@example.test")
	m.EightBit = true
	res := deliver(t, c, "example.test", m)
	check(t, res,
		want{Sent, "2.0.0", "250 2.0.0 Ok: queued as FAKE1000", "mx.example.test[127.0.0.2]:25"},
		want{Sent, "2.0.0", "250 2.0.0 Ok: queued as FAKE1000", "mx.example.test[127.0.0.2]:25"})
	if res[0].ConnUse != 1 || res[0].Reply != "250 2.0.0 Ok: queued as FAKE1000" {
		t.Errorf("conn_use = %d", res[0].ConnUse)
	}
	ss := srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	s := ss[0]
	if s.Helo != "sluice.test" || !s.Ehlo || !s.Pipelined || !s.Quit || len(s.Mails) != 1 {
		t.Errorf("session %+v", s)
	}
	mail := s.Mails[0]
	if mail.From != "a@src.test" || strings.Join(mail.FromParams, " ") != "SIZE=63 BODY=8BITMIME" {
		t.Errorf("MAIL FROM:<%s> %v", mail.From, mail.FromParams)
	}
	if len(mail.Rcpts) != 2 || mail.Rcpts[0].Addr != "bob@example.test" || mail.Rcpts[1].Addr != "carol@example.test" {
		t.Errorf("RCPTs %+v", mail.Rcpts)
	}
	wantRaw := "Subject: test\r\nFrom: a@src.test\r\n\r\nHello.\r\n..leading dot\r\n...two dots\r\n"
	if string(mail.Raw) != wantRaw || mail.BareLF {
		t.Errorf("data on the wire %q, want %q", mail.Raw, wantRaw)
	}
	if string(mail.Data) != strings.ReplaceAll(testText, "\n", "\r\n") {
		t.Errorf("data after unstuffing %q", mail.Data)
	}
}

// TestReplies runs one delivery of three recipients per case against a
// server with injected replies and checks each recipient's outcome.
func TestReplies(t *testing.T) {
	const relay = "mx.example.test[127.0.0.2]:25"
	said := func(reply, cmd string) string {
		return "host mx.example.test[127.0.0.2] said: " + reply + " (in reply to " + cmd + " command)"
	}
	tests := []struct {
		name   string
		opts   fakesmtp.Options
		rcpt   map[string]string
		stage  string
		reply  fakesmtp.Reply
		want   [3]want
		noDATA bool
	}{
		{
			name: "per-recipient replies",
			rcpt: map[string]string{"x@example.test": "450 4.2.0 mailbox busy", "y@example.test": "550 5.1.1 no such user"},
			want: [3]want{
				{Deferred, "4.2.0", said("450 4.2.0 mailbox busy", "RCPT TO"), relay},
				{Bounced, "5.1.1", said("550 5.1.1 no such user", "RCPT TO"), relay},
				{Sent, "2.0.0", "", relay},
			},
		},
		{
			name: "every recipient refused: no DATA",
			rcpt: map[string]string{"x@example.test": "450 4.2.0 busy", "y@example.test": "550 5.1.1 unknown", "z@example.test": "452 4.5.3 too many"},
			want: [3]want{
				{Deferred, "4.2.0", "", relay}, {Bounced, "5.1.1", "", relay}, {Deferred, "4.5.3", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "MAIL FROM rejected hard",
			stage: fakesmtp.MAIL, reply: fakesmtp.Reply{Text: "553 5.7.1 sender rejected"},
			want: [3]want{
				{Bounced, "5.7.1", said("553 5.7.1 sender rejected", "MAIL FROM"), relay},
				{Bounced, "5.7.1", "", relay}, {Bounced, "5.7.1", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "MAIL FROM rejected soft, multi-line",
			stage: fakesmtp.MAIL, reply: fakesmtp.Reply{Text: "451-4.3.0 first\n451 4.3.0 second"},
			want: [3]want{
				{Deferred, "4.3.0", said("451-4.3.0 first 451 4.3.0 second", "MAIL FROM"), relay},
				{Deferred, "4.3.0", "", relay}, {Deferred, "4.3.0", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "DATA refused applies to accepted recipients only",
			rcpt:  map[string]string{"x@example.test": "550 5.1.1 unknown"},
			stage: fakesmtp.DATA, reply: fakesmtp.Reply{Text: "554 5.6.0 no thanks"},
			want: [3]want{
				{Bounced, "5.1.1", said("550 5.1.1 unknown", "RCPT TO"), relay},
				{Bounced, "5.6.0", said("554 5.6.0 no thanks", "DATA"), relay},
				{Bounced, "5.6.0", "", relay},
			},
		},
		{
			name:  "end of data deferred",
			stage: fakesmtp.DOT, reply: fakesmtp.Reply{Text: "452 4.3.1 insufficient storage"},
			want: [3]want{
				{Deferred, "4.3.1", said("452 4.3.1 insufficient storage", "end of DATA"), relay},
				{Deferred, "4.3.1", "", relay}, {Deferred, "4.3.1", "", relay},
			},
		},
		{
			name: "codes without enhanced status, or with the wrong class",
			rcpt: map[string]string{"x@example.test": "550 no such user", "y@example.test": "450 5.1.1 odd"},
			want: [3]want{
				{Bounced, "5.0.0", said("550 no such user", "RCPT TO"), relay},
				{Deferred, "4.1.1", said("450 5.1.1 odd", "RCPT TO"), relay},
				{Sent, "2.0.0", "", relay},
			},
		},
		{
			name:  "end of data accepted with a custom reply",
			stage: fakesmtp.DOT, reply: fakesmtp.Reply{Text: "250 queued"},
			want: [3]want{{Sent, "2.0.0", "250 queued", relay}, {Sent, "2.0.0", "250 queued", relay}, {Sent, "2.0.0", "250 queued", relay}},
		},
		{
			name:  "greeting refused hard counts as soft",
			stage: fakesmtp.Greeting, reply: fakesmtp.Reply{Text: "554 5.7.1 go away"},
			want: [3]want{
				{Deferred, "4.7.1", "host mx.example.test[127.0.0.2] refused to talk to me: 554 5.7.1 go away", relay},
				{Deferred, "4.7.1", "", relay}, {Deferred, "4.7.1", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "dropped at the greeting",
			stage: fakesmtp.Greeting, reply: fakesmtp.Reply{Drop: true},
			want: [3]want{
				{Deferred, "4.4.2", "lost connection with mx.example.test[127.0.0.2] while receiving the initial server greeting", relay},
				{Deferred, "4.4.2", "", relay}, {Deferred, "4.4.2", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "EHLO closing the session",
			stage: fakesmtp.EHLO, reply: fakesmtp.Reply{Text: "421 4.3.2 shutting down"},
			want: [3]want{
				{Deferred, "4.3.2", "host mx.example.test[127.0.0.2] refused to talk to me: 421 4.3.2 shutting down", relay},
				{Deferred, "4.3.2", "", relay}, {Deferred, "4.3.2", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "dropped at RCPT",
			rcpt:  map[string]string{},
			stage: fakesmtp.RCPT, reply: fakesmtp.Reply{Drop: true},
			want: [3]want{
				{Deferred, "4.4.2", "lost connection with mx.example.test[127.0.0.2] while sending RCPT TO", relay},
				{Deferred, "4.4.2", "", relay}, {Deferred, "4.4.2", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "dropped after the final dot",
			stage: fakesmtp.DOT, reply: fakesmtp.Reply{Drop: true},
			want: [3]want{
				{Deferred, "4.4.2", "lost connection with mx.example.test[127.0.0.2] while sending end of data -- message may be sent more than once", relay},
				{Deferred, "4.4.2", "", relay}, {Deferred, "4.4.2", "", relay},
			},
		},
		{
			name:  "server too slow after the final dot",
			stage: fakesmtp.DOT, reply: fakesmtp.Reply{Delay: 3 * time.Second},
			want: [3]want{
				{Deferred, "4.4.2", "conversation with mx.example.test[127.0.0.2] timed out while sending end of data -- message may be sent more than once", relay},
				{Deferred, "4.4.2", "", relay}, {Deferred, "4.4.2", "", relay},
			},
		},
		{
			name: "message larger than the server's SIZE",
			opts: fakesmtp.Options{SizeLimit: 10},
			want: [3]want{
				{Bounced, "5.3.4", "message size 63 exceeds size limit 10 of server mx.example.test[127.0.0.2]", relay},
				{Bounced, "5.3.4", "", relay}, {Bounced, "5.3.4", "", relay},
			},
			noDATA: true,
		},
		{
			name:  "garbage instead of a reply",
			stage: fakesmtp.MAIL, reply: fakesmtp.Reply{Text: "hello there\nbla\n250 2.1.0 ok"},
			want: [3]want{{Sent, "2.0.0", "", relay}, {Sent, "2.0.0", "", relay}, {Sent, "2.0.0", "", relay}},
		},
		{
			name:  "unexpected reply code",
			stage: fakesmtp.DATA, reply: fakesmtp.Reply{Text: "250 go ahead?"},
			want: [3]want{
				{Deferred, "4.0.0", said("250 go ahead?", "DATA"), relay},
				{Deferred, "4.0.0", "", relay}, {Deferred, "4.0.0", "", relay},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			n.dns.AddMX("example.test", 10, "mx.example.test")
			srv := n.server("mx.example.test", "127.0.0.2", tt.opts)
			for a, r := range tt.rcpt {
				srv.RcptReply(a, fakesmtp.Reply{Text: r})
			}
			if tt.stage != "" {
				srv.Reply(tt.stage, tt.reply)
			}
			c := n.client()
			c.CommandTimeout = time.Second
			res := deliver(t, c, "example.test", message(testText, "x@example.test", "y@example.test", "z@example.test"))
			check(t, res, tt.want[:]...)
			for _, r := range res {
				// The reply behind an outcome is the text after "said: "
				// or "refused to talk to me: ", or a sent reason.
				var reply string
				if i := strings.Index(r.Reason, " said: "); i >= 0 {
					reply = strings.TrimSuffix(r.Reason[i+7:], r.Reason[strings.LastIndex(r.Reason, " (in reply to "):])
				} else if i := strings.Index(r.Reason, "to talk to me: "); i >= 0 {
					reply = r.Reason[i+15:]
				} else if r.Status == Sent {
					reply = r.Reason
				}
				if r.Reply != reply {
					t.Errorf("%s: Reply %q, want %q", r.Recipient.Address, r.Reply, reply)
				}
			}
			for _, s := range srv.Sessions() {
				if !tt.noDATA {
					continue
				}
				// DATA may end the pipelined group of MAIL FROM and RCPT
				// TO, to be refused; no text may follow it.
				for i, cmd := range s.Commands {
					if cmd == "DATA" && (!s.Pipelined || i == 0 || !strings.HasPrefix(s.Commands[i-1], "RCPT TO:")) {
						t.Errorf("DATA sent on its own: %q", s.Commands)
					}
				}
				for _, m := range s.Mails {
					if m.Raw != nil || m.DataReply != "" {
						t.Errorf("message text sent: %q", s.Commands)
					}
				}
			}
		})
	}
}

func TestConnectFailures(t *testing.T) {
	tests := []struct {
		name  string
		route string
		want  string
	}{
		{"refused", "refused", "connect to mx.example.test[127.0.0.2]:25: Connection refused"},
		{"timed out", "blackhole", "connect to mx.example.test[127.0.0.2]:25: Connection timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			n.dns.AddMX("example.test", 10, "mx.example.test")
			n.dns.AddA("mx.example.test", "127.0.0.2")
			n.route("127.0.0.2:25", tt.route)
			c := n.client()
			c.ConnectTimeout = 200 * time.Millisecond
			res := deliver(t, c, "example.test", message(testText, "a@example.test", "b@example.test"))
			check(t, res, want{Deferred, "4.4.1", tt.want, "none"}, want{Deferred, "4.4.1", tt.want, "none"})
		})
	}
}

func TestMXOrderAndFallback(t *testing.T) {
	t.Run("first MX refuses the connection, second takes the mail", func(t *testing.T) {
		n := newNet(t)
		n.dns.AddMX("example.test", 20, "mx2.example.test")
		n.dns.AddMX("example.test", 10, "mx1.example.test")
		n.dns.AddA("mx1.example.test", "127.0.0.2")
		n.route("127.0.0.2:25", "refused")
		srv := n.server("mx2.example.test", "127.0.0.3", fakesmtp.Options{})
		res := deliver(t, n.client(), "example.test", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "mx2.example.test[127.0.0.3]:25"})
		if len(srv.Delivered()) != 1 || len(n.dials) != 2 || n.dials[0] != "127.0.0.2:25" {
			t.Errorf("dials %v", n.dials)
		}
	})
	t.Run("a soft RCPT failure is retried at the next MX, a hard one is not", func(t *testing.T) {
		n := newNet(t)
		n.dns.AddMX("example.test", 10, "mx1.example.test")
		n.dns.AddMX("example.test", 20, "mx2.example.test")
		s1 := n.server("mx1.example.test", "127.0.0.2", fakesmtp.Options{})
		s2 := n.server("mx2.example.test", "127.0.0.3", fakesmtp.Options{})
		s1.RcptReply("soft@example.test", fakesmtp.Reply{Text: "451 4.3.0 greylisted"})
		s1.RcptReply("hard@example.test", fakesmtp.Reply{Text: "550 5.1.1 unknown"})
		res := deliver(t, n.client(), "example.test", message(testText, "soft@example.test", "hard@example.test", "ok@example.test"))
		check(t, res,
			want{Sent, "2.0.0", "", "mx2.example.test[127.0.0.3]:25"},
			want{Bounced, "5.1.1", "", "mx1.example.test[127.0.0.2]:25"},
			want{Sent, "2.0.0", "", "mx1.example.test[127.0.0.2]:25"})
		d2 := s2.Delivered()
		if len(d2) != 1 || len(d2[0].Rcpts) != 1 || d2[0].Rcpts[0].Addr != "soft@example.test" {
			t.Errorf("second MX got %+v", d2)
		}
	})
	t.Run("every MX fails: the last reason is reported", func(t *testing.T) {
		n := newNet(t)
		n.dns.AddMX("example.test", 10, "mx1.example.test")
		n.dns.AddMX("example.test", 20, "mx2.example.test")
		s1 := n.server("mx1.example.test", "127.0.0.2", fakesmtp.Options{})
		s1.Reply(fakesmtp.MAIL, fakesmtp.Reply{Text: "421 4.3.2 busy"})
		n.dns.AddA("mx2.example.test", "127.0.0.3")
		n.route("127.0.0.3:25", "refused")
		res := deliver(t, n.client(), "example.test", message(testText, "a@example.test"))
		check(t, res, want{Deferred, "4.4.1", "connect to mx2.example.test[127.0.0.3]:25: Connection refused", "none"})
	})
	t.Run("no MX: the domain's own address", func(t *testing.T) {
		n := newNet(t)
		srv := n.server("plain.test", "127.0.0.4", fakesmtp.Options{})
		res := deliver(t, n.client(), "plain.test", message(testText, "a@plain.test"))
		check(t, res, want{Sent, "2.0.0", "", "plain.test[127.0.0.4]:25"})
		if len(srv.Delivered()) != 1 {
			t.Error("not delivered")
		}
		q := n.dns.Queries()
		if len(q) < 2 || q[0] != (fakedns.Query{Name: "plain.test.", Type: "MX"}) {
			t.Errorf("queries %v", q)
		}
	})
}

func TestDNSFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fakedns.Server)
		want  want
	}{
		{"no such domain", func(*fakedns.Server) {},
			want{Bounced, "5.4.4", "Host or domain name not found. Name service error for name=nosuch.test type=A: Host not found", "none"}},
		{"MX lookup fails temporarily", func(s *fakedns.Server) { s.Fail("nosuch.test", "MX", fakedns.ServFail) },
			want{Deferred, "4.4.3", "Host or domain name not found. Name service error for name=nosuch.test type=MX: Host not found, try again", "none"}},
		{"MX lookup times out", func(s *fakedns.Server) { s.Fail("nosuch.test", "MX", fakedns.Timeout) },
			want{Deferred, "4.4.3", "Host or domain name not found. Name service error for name=nosuch.test type=MX: Host not found, try again", "none"}},
		{"MX host does not exist", func(s *fakedns.Server) { s.AddMX("nosuch.test", 10, "gone.nosuch.test") },
			want{Bounced, "5.4.4", "Host or domain name not found. Name service error for name=gone.nosuch.test type=A: Host not found", "none"}},
		{"MX host lookup fails temporarily", func(s *fakedns.Server) {
			s.AddMX("nosuch.test", 10, "mx.nosuch.test")
			s.Fail("mx.nosuch.test", "", fakedns.ServFail)
		}, want{Deferred, "4.4.3", "Host or domain name not found. Name service error for name=mx.nosuch.test type=A: Host not found, try again", "none"}},
		{"null MX", func(s *fakedns.Server) { s.AddMX("nosuch.test", 0, ".") },
			want{Bounced, "5.1.0", "Domain nosuch.test does not accept mail (nullMX)", "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			tt.setup(n.dns)
			c := n.client()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// The resolver's own timeout is bounded by the context.
			lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
			defer lcancel()
			res := c.Deliver(lctx, "nosuch.test", message(testText, "a@nosuch.test"))
			check(t, res, tt.want)
			if len(n.dials) != 0 {
				t.Errorf("dialled %v", n.dials)
			}
		})
	}
}

func TestRelayHost(t *testing.T) {
	t.Run("[host]:port skips the MX lookup", func(t *testing.T) {
		n := newNet(t)
		srv := fakesmtp.Start(t, fakesmtp.Options{})
		n.route("127.0.0.9:2525", srv.Addr)
		c := n.client()
		c.RelayHost = "[127.0.0.9]:2525"
		res := deliver(t, c, "example.test", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "127.0.0.9[127.0.0.9]:2525"})
		if q := n.dns.Queries(); len(q) != 0 {
			t.Errorf("DNS queries %v", q)
		}
	})
	t.Run("[name] looks up the name's address, not its MX", func(t *testing.T) {
		n := newNet(t)
		srv := fakesmtp.Start(t, fakesmtp.Options{})
		n.dns.AddA("relay.test", "127.0.0.9")
		n.route("127.0.0.9:25", srv.Addr)
		c := n.client()
		c.RelayHost = "[relay.test]"
		res := deliver(t, c, "example.test", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "relay.test[127.0.0.9]:25"})
		for _, q := range n.dns.Queries() {
			if q.Type == "MX" {
				t.Errorf("MX query %v", q)
			}
		}
	})
	t.Run("host:port looks up the MX of host", func(t *testing.T) {
		n := newNet(t)
		srv := fakesmtp.Start(t, fakesmtp.Options{})
		n.dns.AddMX("relay.test", 5, "mx.relay.test")
		n.dns.AddA("mx.relay.test", "127.0.0.8")
		n.route("127.0.0.8:2526", srv.Addr)
		c := n.client()
		c.RelayHost = "relay.test:2526"
		res := deliver(t, c, "example.test", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "mx.relay.test[127.0.0.8]:2526"})
	})
	t.Run("nexthop with a literal address", func(t *testing.T) {
		n := newNet(t)
		srv := fakesmtp.Start(t, fakesmtp.Options{})
		n.route("127.0.0.7:25", srv.Addr)
		res := deliver(t, n.client(), "[127.0.0.7]", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "127.0.0.7[127.0.0.7]:25"})
	})
	t.Run("malformed next hop", func(t *testing.T) {
		n := newNet(t)
		res := deliver(t, n.client(), "[127.0.0.7", message(testText, "a@example.test"))
		check(t, res, want{Deferred, "4.3.5", "", "none"})
	})
}

func TestExtensions(t *testing.T) {
	utf8Text := "Subject: caf\u00e9\n\nhi\n"
	tests := []struct {
		name       string
		opts       fakesmtp.Options
		msg        func() *Message
		want       want
		mailParams string
		rcptParams string
		pipelined  bool
		ehlo       bool
	}{
		{
			name: "DSN parameters when offered",
			msg: func() *Message {
				m := message(testText, "a@example.test")
				m.Ret, m.EnvID = RetHdrs, "id+1=x"
				m.Recipients[0].Notify = NotifySuccess | NotifyDelay
				m.Recipients[0].ORCPT = "rfc822;Orig+Rcpt@example.test"
				return m
			},
			want:       want{status: Sent},
			mailParams: "SIZE=63 RET=HDRS ENVID=id+2B1+3Dx",
			rcptParams: "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Orig+2BRcpt@example.test",
			pipelined:  true, ehlo: true,
		},
		{
			name: "NOTIFY=NEVER, bare ORCPT",
			msg: func() *Message {
				m := message(testText, "a@example.test")
				m.Recipients[0].Notify = NotifyNever
				m.Recipients[0].ORCPT = "orig@example.test"
				return m
			},
			want:       want{status: Sent},
			mailParams: "SIZE=63",
			rcptParams: "NOTIFY=NEVER ORCPT=rfc822;orig@example.test",
			pipelined:  true, ehlo: true,
		},
		{
			name: "no DSN, no 8BITMIME, no PIPELINING: no parameters, one command at a time",
			opts: fakesmtp.Options{NoDSN: true, No8BitMIME: true, NoPipelining: true},
			msg: func() *Message {
				m := message(testText, "a@example.test")
				m.Ret, m.EnvID, m.EightBit = RetFull, "x", true
				m.Recipients[0].Notify = NotifyFailure
				m.Recipients[0].ORCPT = "rfc822;a@example.test"
				return m
			},
			want:       want{status: Sent},
			mailParams: "SIZE=63",
			ehlo:       true,
		},
		{
			name: "SMTPUTF8 when needed and offered",
			msg: func() *Message {
				m := message(utf8Text, "a@example.test")
				m.SMTPUTF8 = true
				return m
			},
			want:       want{status: Sent},
			mailParams: "SIZE=19 SMTPUTF8",
			pipelined:  true, ehlo: true,
		},
		{
			name: "SMTPUTF8 needed but not offered",
			opts: fakesmtp.Options{NoSMTPUTF8: true},
			msg: func() *Message {
				m := message(utf8Text, "a@example.test")
				m.SMTPUTF8 = true
				return m
			},
			want: want{Bounced, "5.6.7", "SMTPUTF8 is required, but was not offered by host mx.example.test[127.0.0.2]", "mx.example.test[127.0.0.2]:25"},
			ehlo: true,
		},
		{
			name:      "no ESMTP: HELO and no parameters at all",
			opts:      fakesmtp.Options{NoESMTP: true},
			msg:       func() *Message { m := message(testText, "a@example.test"); m.EightBit = true; return m },
			want:      want{status: Sent},
			pipelined: false, ehlo: false,
		},
		{
			name: "quoted local part",
			msg: func() *Message {
				m := message(testText, "john doe@example.test")
				m.Sender = `we"ird@src.test`
				return m
			},
			want:      want{status: Sent},
			pipelined: true, ehlo: true, mailParams: "SIZE=63",
		},
		{
			name: "null sender",
			msg: func() *Message {
				m := message(testText, "a@example.test")
				m.Sender = ""
				return m
			},
			want:      want{status: Sent},
			pipelined: true, ehlo: true, mailParams: "SIZE=63",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			n.dns.AddMX("example.test", 10, "mx.example.test")
			srv := n.server("mx.example.test", "127.0.0.2", tt.opts)
			m := tt.msg()
			res := deliver(t, n.client(), "example.test", m)
			check(t, res, tt.want)
			ss := srv.Sessions()
			if len(ss) != 1 {
				t.Fatalf("%d sessions", len(ss))
			}
			s := ss[0]
			if s.Pipelined != tt.pipelined || s.Ehlo != tt.ehlo {
				t.Errorf("pipelined %v ehlo %v, commands %q", s.Pipelined, s.Ehlo, s.Commands)
			}
			if tt.want.status != Sent {
				if len(s.Mails) != 0 {
					t.Errorf("MAIL sent: %q", s.Commands)
				}
				return
			}
			mail := s.Mails[0]
			if got := strings.Join(mail.FromParams, " "); got != tt.mailParams {
				t.Errorf("MAIL params %q, want %q", got, tt.mailParams)
			}
			if got := strings.Join(mail.Rcpts[0].Params, " "); got != tt.rcptParams {
				t.Errorf("RCPT params %q, want %q", got, tt.rcptParams)
			}
			switch tt.name {
			case "quoted local part":
				if mail.From != `"we\"ird"@src.test` || mail.Rcpts[0].Addr != `"john doe"@example.test` {
					t.Errorf("addresses %q %q; commands %q", mail.From, mail.Rcpts[0].Addr, s.Commands)
				}
			case "null sender":
				if s.Commands[1] != "MAIL FROM:<> SIZE=63" {
					t.Errorf("commands %q", s.Commands)
				}
			}
		})
	}
}

func TestDataEncoding(t *testing.T) {
	long := strings.Repeat("x", 2500)
	tests := []struct {
		name, text, wire string
	}{
		{"no final newline", "a\nb", "a\r\nb\r\n"},
		{"lone dot line", "a\n.\nb\n", "a\r\n..\r\nb\r\n"},
		{"CRLF in the text stays CRLF", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"long line folded at 998", long + "\n", long[:998] + "\r\n " + long[998:1995] + "\r\n " + long[1995:] + "\r\n"},
		{"empty message", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			srv := fakesmtp.Start(t, fakesmtp.Options{})
			n.route("127.0.0.9:25", srv.Addr)
			res := deliver(t, n.client(), "[127.0.0.9]", message(tt.text, "a@example.test"))
			check(t, res, want{status: Sent})
			d := srv.Delivered()
			if len(d) != 1 || string(d[0].Raw) != tt.wire || d[0].BareLF {
				t.Errorf("wire %q, want %q", d[0].Raw, tt.wire)
			}
		})
	}
}

func TestOpenFails(t *testing.T) {
	n := newNet(t)
	srv := fakesmtp.Start(t, fakesmtp.Options{})
	n.route("127.0.0.9:25", srv.Addr)
	m := message(testText, "a@example.test")
	m.Open = func() (io.ReadCloser, error) { return nil, errors.New("queue file vanished") }
	res := deliver(t, n.client(), "[127.0.0.9]", m)
	check(t, res, want{Deferred, "4.3.0", "error reading message: queue file vanished", ""})
	m.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\n\npart"), iotestErr{})), nil
	}
	res = deliver(t, n.client(), "[127.0.0.9]", m)
	check(t, res, want{Deferred, "4.3.0", "error reading message: disk on fire", ""})
	if len(srv.Delivered()) != 0 {
		t.Error("a message whose text could not be read was delivered")
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestContextCancel(t *testing.T) {
	n := newNet(t)
	srv := fakesmtp.Start(t, fakesmtp.Options{})
	srv.Reply(fakesmtp.RCPT, fakesmtp.Reply{Delay: 5 * time.Second})
	n.route("127.0.0.9:25", srv.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := n.client().Deliver(ctx, "[127.0.0.9]", message(testText, "a@example.test"))
	if time.Since(start) > 3*time.Second {
		t.Errorf("delivery took %v after the context ended", time.Since(start))
	}
	check(t, res, want{Deferred, "4.4.2", "conversation with 127.0.0.9[127.0.0.9] timed out while sending RCPT TO", "127.0.0.9[127.0.0.9]:25"})
}

// TestDNSFailuresMatchPostfix replays the DNS answers of a capture made
// with Postfix 3.7.11 (inet_protocols=ipv4, its resolver pointed at a fake
// DNS server with the same table) and compares status, DSN and reason
// with what Postfix logged (testdata/postfix-3.7.11-dns.log).
func TestDNSFailuresMatchPostfix(t *testing.T) {
	b, err := os.ReadFile("testdata/postfix-3.7.11-dns.log")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`to=<a@([^>]+)>, relay=(\S+), .* dsn=(\S+), status=(\w+) \((.*)\)$`)
	n := newNet(t)
	n.dns.Fail("sf.test", "MX", fakedns.ServFail)
	n.dns.AddMX("mxgone.test", 10, "gone.mxgone.test")
	n.dns.AddMX("nullmx.test", 0, ".")
	n.dns.AddName("nodata.test")
	// Go's resolver reports an empty answer (NODATA) as "no such host",
	// the same as NXDOMAIN, so sluice cannot say "Host found but no data
	// record of requested type"; it says "Host not found".
	known := map[string]string{
		"nodata.test": "Host or domain name not found. Name service error for name=nodata.test type=A: Host not found",
	}
	cases := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unparsed capture line %q", l)
		}
		domain, relay, dsn, status, reason := m[1], m[2], m[3], m[4], m[5]
		if k, ok := known[domain]; ok {
			reason = k
		}
		res := n.client().Deliver(context.Background(), domain, message(testText, "a@"+domain))
		r := res[0]
		if r.Status.String() != status || r.DSN != dsn || r.Reason != reason || r.Relay != relay {
			t.Errorf("%s: sluice says %s %s %q relay=%s\n Postfix said %s %s %q relay=%s",
				domain, r.Status, r.DSN, r.Reason, r.Relay, status, dsn, reason, relay)
		}
		cases++
	}
	if cases != 5 {
		t.Errorf("%d cases in the capture", cases)
	}
}

// TestDataAheadAnswered354 is a server that answers the DATA sent with
// the recipients with 354 although it refused every recipient. The
// client must end that empty text at once, send nothing of the message,
// and not use the connection again.
func TestDataAheadAnswered354(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				var lines []string
				defer func() { got <- lines }()
				r := bufio.NewReader(c)
				io.WriteString(c, "220 odd.test ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					lines = append(lines, line)
					verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
					switch {
					case strings.HasPrefix(verb, "EHLO"):
						io.WriteString(c, "250-odd.test\r\n250 PIPELINING\r\n")
					case verb == "RCPT":
						io.WriteString(c, "550 5.1.1 no such user\r\n")
					case verb == "DATA":
						io.WriteString(c, "354 go on\r\n")
					case verb == "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "250 ok\r\n")
					}
				}
			}(c)
		}
	}()
	n := newNet(t)
	n.route("127.0.0.9:25", ln.Addr().String())
	c := n.client()
	defer c.Close()
	for round := 0; round < 2; round++ {
		res := deliver(t, c, "[127.0.0.9]", message(testText, "a@example.test"))
		check(t, res, want{Bounced, "5.1.1", "", ""})
	}
	c.Close()
	for i := 0; i < 2; i++ {
		select {
		case lines := <-got:
			want := []string{"EHLO sluice.test", "MAIL FROM:<a@src.test>", "RCPT TO:<a@example.test>", "DATA", "."}
			if len(lines) < len(want) || strings.Join(lines[:len(want)], "|") != strings.Join(want, "|") {
				t.Errorf("session %d: %q, want %q then nothing of the text", i, lines, want)
			}
			for _, l := range lines[min(len(lines), len(want)):] {
				if l != "QUIT" {
					t.Errorf("session %d went on after the empty text: %q", i, lines)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d sessions seen, want 2 (the first is not used again)", i)
		}
	}
}
