package smtp

import (
	"crypto/tls"
	"testing"
	"time"

	"sluice/internal/testutil/fakesmtp"
)

func TestSTARTTLS(t *testing.T) {
	const relay = "mx.example.test[127.0.0.2]:25"
	tests := []struct {
		name     string
		opts     fakesmtp.Options
		level    string
		conf     func(*fakesmtp.Server) *tls.Config
		starttls fakesmtp.Reply
		want     want
		sessions []bool // TLS state of each session the server saw
	}{
		{name: "may, offered", opts: fakesmtp.Options{TLS: true}, level: "may",
			conf:     func(*fakesmtp.Server) *tls.Config { return &tls.Config{InsecureSkipVerify: true} },
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{true}},
		{name: "may, default configuration does not verify", opts: fakesmtp.Options{TLS: true}, level: "may",
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{true}},
		{name: "encrypt, verified against the server's certificate", opts: fakesmtp.Options{TLS: true}, level: "encrypt",
			conf: func(s *fakesmtp.Server) *tls.Config {
				return &tls.Config{RootCAs: s.CertPool(), ServerName: "fake.test"}
			},
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{true}},
		{name: "may, not offered: plaintext", level: "may",
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{false}},
		{name: "none ignores the offer", opts: fakesmtp.Options{TLS: true}, level: "none",
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{false}},
		{name: "may, handshake fails: retried in plaintext", opts: fakesmtp.Options{TLSBroken: true}, level: "may",
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{false, false}},
		{name: "may, STARTTLS refused: continues in plaintext", opts: fakesmtp.Options{TLS: true}, level: "may",
			starttls: fakesmtp.Reply{Text: "454 4.7.0 TLS not available"},
			want:     want{Sent, "2.0.0", "", relay},
			sessions: []bool{false}},
		{name: "encrypt, not offered", level: "encrypt",
			want:     want{Deferred, "4.7.4", "TLS is required, but was not offered by host mx.example.test[127.0.0.2]", relay},
			sessions: []bool{false}},
		{name: "encrypt, refused", opts: fakesmtp.Options{TLS: true}, level: "encrypt",
			starttls: fakesmtp.Reply{Text: "454 4.7.0 TLS not available"},
			want:     want{Deferred, "4.7.0", "TLS is required, but host mx.example.test[127.0.0.2] refused to start TLS: 454 4.7.0 TLS not available", relay},
			sessions: []bool{false}},
		{name: "encrypt, handshake fails", opts: fakesmtp.Options{TLSBroken: true}, level: "encrypt",
			want:     want{Deferred, "4.7.5", "Cannot start TLS: handshake failure", relay},
			sessions: []bool{false}},
		{name: "encrypt, certificate not trusted by a verifying configuration", opts: fakesmtp.Options{TLS: true}, level: "encrypt",
			conf:     func(*fakesmtp.Server) *tls.Config { return &tls.Config{ServerName: "fake.test"} },
			want:     want{Deferred, "4.7.5", "Cannot start TLS: handshake failure", relay},
			sessions: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			n.dns.AddMX("example.test", 10, "mx.example.test")
			srv := n.server("mx.example.test", "127.0.0.2", tt.opts)
			if tt.starttls != (fakesmtp.Reply{}) {
				srv.Reply(fakesmtp.STARTTLS, tt.starttls)
			}
			c := n.client()
			c.TLSLevel = tt.level
			if tt.conf != nil {
				c.TLSConfig = tt.conf(srv)
			}
			res := deliver(t, c, "example.test", message(testText, "a@example.test"))
			check(t, res, tt.want)
			ss := srv.Sessions()
			if len(ss) != len(tt.sessions) {
				t.Fatalf("%d sessions, want %d", len(ss), len(tt.sessions))
			}
			for i, s := range ss {
				if s.TLS != tt.sessions[i] {
					t.Errorf("session %d TLS=%v", i, s.TLS)
				}
				if s.TLS && s.EhloCount != 2 {
					t.Errorf("session %d: %d EHLOs, want one before and one after STARTTLS", i, s.EhloCount)
				}
			}
			if tt.want.status == Sent {
				d := srv.Delivered()
				if len(d) != 1 || string(d[0].Raw) == "" {
					t.Errorf("delivered %+v", d)
				}
			}
		})
	}
}

func TestConnectionReuse(t *testing.T) {
	n := newNet(t)
	n.dns.AddMX("example.test", 10, "mx.example.test")
	srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{TLS: true})
	c := n.client()
	c.MaxIdle = 5 * time.Second
	c.TLSLevel = "may"
	defer c.Close()

	for i := 1; i <= 3; i++ {
		res := deliver(t, c, "example.test", message(testText, "a@example.test"))
		check(t, res, want{Sent, "2.0.0", "", "mx.example.test[127.0.0.2]:25"})
		if res[0].ConnUse != i {
			t.Errorf("delivery %d: conn_use=%d", i, res[0].ConnUse)
		}
	}
	ss := srv.Sessions()
	if len(ss) != 1 || len(ss[0].Mails) != 3 || !ss[0].TLS {
		t.Fatalf("sessions %+v", ss)
	}
	var rsets int
	for _, cmd := range ss[0].Commands {
		if cmd == "RSET" {
			rsets++
		}
	}
	if rsets != 2 || ss[0].Quit {
		t.Errorf("commands %q", ss[0].Commands)
	}

	// Another next hop gets its own connection.
	n.dns.AddMX("other.test", 10, "mx.example.test")
	res := deliver(t, c, "other.test", message(testText, "a@other.test"))
	if res[0].ConnUse != 1 || len(srv.Sessions()) != 2 {
		t.Errorf("other next hop: conn_use=%d, %d sessions", res[0].ConnUse, len(srv.Sessions()))
	}

	// The server drops idle connections: the RSET probe fails and a new
	// connection takes the mail, with nothing reported about the old one.
	srv.DropConnections()
	res = deliver(t, c, "example.test", message(testText, "a@example.test"))
	check(t, res, want{Sent, "2.0.0", "", "mx.example.test[127.0.0.2]:25"})
	if res[0].ConnUse != 1 || len(srv.Sessions()) != 3 {
		t.Errorf("after drop: conn_use=%d, %d sessions", res[0].ConnUse, len(srv.Sessions()))
	}

	// A failed transaction that left the conversation in order keeps the
	// connection; a lost connection does not.
	srv.RcptReply("busy@example.test", fakesmtp.Reply{Text: "450 4.2.0 busy"})
	res = deliver(t, c, "example.test", message(testText, "busy@example.test"))
	check(t, res, want{status: Deferred, dsn: "4.2.0"})
	res = deliver(t, c, "example.test", message(testText, "a@example.test"))
	if res[0].ConnUse != 3 {
		t.Errorf("after a refused recipient: conn_use=%d", res[0].ConnUse)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The fake server notices the QUIT or the closed connection a moment
	// after Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for {
		open := 0
		for _, s := range srv.Sessions() {
			if !s.Quit && !s.Closed {
				open++
				if time.Now().After(deadline) {
					t.Errorf("session %d still open after Close: %q", s.ID, s.Commands)
				}
			}
		}
		if open == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIdleExpiry(t *testing.T) {
	n := newNet(t)
	srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
	c := n.client()
	c.MaxIdle = 100 * time.Millisecond
	deliver(t, c, "mx.example.test", message(testText, "a@mx.example.test"))
	if s := srv.Sessions()[0]; s.Quit {
		t.Fatal("connection closed at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !srv.Sessions()[0].Quit {
		if time.Now().After(deadline) {
			t.Fatal("idle connection never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := deliver(t, c, "mx.example.test", message(testText, "a@mx.example.test"))
	if res[0].ConnUse != 1 || len(srv.Sessions()) != 2 {
		t.Errorf("after expiry: conn_use=%d, %d sessions", res[0].ConnUse, len(srv.Sessions()))
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	n := newNet(t)
	n.dns.AddMX("example.test", 10, "mx.example.test")
	srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
	c := n.client()
	c.MaxIdle = time.Second
	defer c.Close()
	const workers, each = 8, 10
	done := make(chan []Result)
	for w := 0; w < workers; w++ {
		go func() {
			var all []Result
			for i := 0; i < each; i++ {
				all = append(all, c.Deliver(t.Context(), "example.test", message(testText, "a@example.test", "b@example.test"))...)
			}
			done <- all
		}()
	}
	sent := 0
	for w := 0; w < workers; w++ {
		for _, r := range <-done {
			if r.Status == Sent {
				sent++
			} else {
				t.Errorf("%+v", r)
			}
		}
	}
	if sent != workers*each*2 || len(srv.Delivered()) != workers*each {
		t.Errorf("sent %d, server has %d", sent, len(srv.Delivered()))
	}
	if len(srv.Sessions()) > workers {
		t.Errorf("%d sessions for %d concurrent workers: connections not reused", len(srv.Sessions()), workers)
	}
}

func TestReuseProbe(t *testing.T) {
	tests := []struct {
		name     string
		opts     fakesmtp.Options
		rset     fakesmtp.Reply
		conns    int // sessions after two deliveries
		connUse  int // conn_use of the second delivery
		rsetSent int
	}{
		{"pipelined RSET", fakesmtp.Options{}, fakesmtp.Reply{}, 1, 2, 1},
		{"RSET on its own without PIPELINING", fakesmtp.Options{NoPipelining: true}, fakesmtp.Reply{}, 1, 2, 1},
		{"RSET refused, pipelined: new connection", fakesmtp.Options{}, fakesmtp.Reply{Text: "502 5.5.2 no RSET here"}, 2, 1, 1},
		{"RSET refused, not pipelined: new connection", fakesmtp.Options{NoPipelining: true}, fakesmtp.Reply{Text: "421 4.3.2 bye"}, 2, 1, 1},
		{"connection dropped at RSET", fakesmtp.Options{}, fakesmtp.Reply{Drop: true}, 2, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t)
			srv := n.server("mx.example.test", "127.0.0.2", tt.opts)
			if tt.rset != (fakesmtp.Reply{}) {
				srv.Reply(fakesmtp.RSET, tt.rset)
			}
			c := n.client()
			c.MaxIdle = 5 * time.Second
			defer c.Close()
			deliver(t, c, "mx.example.test", message(testText, "a@mx.example.test"))
			res := deliver(t, c, "mx.example.test", message(testText, "b@mx.example.test"))
			check(t, res, want{Sent, "2.0.0", "", "mx.example.test[127.0.0.2]:25"})
			ss := srv.Sessions()
			if len(ss) != tt.conns || res[0].ConnUse != tt.connUse {
				t.Errorf("%d sessions, conn_use=%d", len(ss), res[0].ConnUse)
			}
			rsets, delivered := 0, 0
			for _, s := range ss {
				for _, cmd := range s.Commands {
					if cmd == "RSET" {
						rsets++
					}
				}
			}
			delivered = len(srv.Delivered())
			if rsets != tt.rsetSent || delivered != 2 {
				t.Errorf("%d RSETs, %d delivered; sessions %+v", rsets, delivered, ss)
			}
			// The failed probe's session never saw DATA for the second
			// message.
			if tt.conns == 2 && len(ss[0].Mails) > 1 && ss[0].Mails[1].DataReply != "" {
				t.Errorf("second message went to the stale session: %+v", ss[0].Mails[1])
			}
		})
	}
}
