package smtp

import (
	"context"
	"testing"
	"time"

	"sluice/internal/testutil/fakedns"
	"sluice/internal/testutil/fakesmtp"
)

// TestClass checks the reason class each outcome carries: decided from
// the reply (code, enhanced status, text) or from the kind of error, not
// from the wording of Reason.
func TestClass(t *testing.T) {
	t.Run("replies", func(t *testing.T) {
		n := newNet(t)
		n.dns.AddMX("example.test", 10, "mx.example.test")
		srv := n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
		srv.RcptReply("a@example.test", fakesmtp.Reply{Text: "450 4.7.1 Greylisted, please try again later"})
		srv.RcptReply("b@example.test", fakesmtp.Reply{Text: "552 5.2.2 over quota"})
		srv.RcptReply("c@example.test", fakesmtp.Reply{Text: "451 4.3.0 local error in processing"})
		res := deliver(t, n.client(), "example.test", message(testText, "a@example.test", "b@example.test", "c@example.test", "d@example.test"))
		want := []string{"greylisting", "mailbox-full", "other", ""}
		for i, r := range res {
			if r.Class != want[i] {
				t.Errorf("%s (%s): class %q, want %q", r.Recipient.Address, r.Reason, r.Class, want[i])
			}
		}
	})
	for _, tc := range []struct{ route, want string }{{"refused", "connection-refused"}, {"blackhole", "timeout"}} {
		t.Run(tc.route, func(t *testing.T) {
			n := newNet(t)
			n.dns.AddMX("example.test", 10, "mx.example.test")
			n.dns.AddA("mx.example.test", "127.0.0.2")
			n.route("127.0.0.2:25", tc.route)
			c := n.client()
			c.ConnectTimeout = 200 * time.Millisecond
			res := deliver(t, c, "example.test", message(testText, "a@example.test"))
			if res[0].Class != tc.want {
				t.Errorf("%s: class %q, want %q", res[0].Reason, res[0].Class, tc.want)
			}
		})
	}
	t.Run("dns", func(t *testing.T) {
		n := newNet(t)
		n.dns.Fail("nosuch.test", "MX", fakedns.ServFail)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res := n.client().Deliver(ctx, "nosuch.test", message(testText, "a@nosuch.test"))
		if res[0].Class != "dns-failure" {
			t.Errorf("%s: class %q", res[0].Reason, res[0].Class)
		}
	})
	t.Run("tls required", func(t *testing.T) {
		n := newNet(t)
		n.dns.AddMX("example.test", 10, "mx.example.test")
		n.server("mx.example.test", "127.0.0.2", fakesmtp.Options{})
		c := n.client()
		c.TLSLevel = "encrypt"
		res := deliver(t, c, "example.test", message(testText, "a@example.test"))
		if res[0].Class != "tls-failure" {
			t.Errorf("%s: class %q", res[0].Reason, res[0].Class)
		}
	})
}
