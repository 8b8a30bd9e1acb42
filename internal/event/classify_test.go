package event_test

import (
	"testing"

	"sluice/internal/event"
	"sluice/internal/manage"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		f    event.Failure
		want string
	}{
		{event.Failure{Kind: event.KindRefused, Enhanced: "4.4.1"}, "connection-refused"},
		{event.Failure{Kind: event.KindTimeout, Enhanced: "4.4.1"}, "timeout"},
		{event.Failure{Kind: event.KindLost, Enhanced: "4.4.2"}, "timeout"},
		{event.Failure{Kind: event.KindDNS, Enhanced: "4.4.3"}, "dns-failure"},
		{event.Failure{Kind: event.KindTLS, Enhanced: "4.7.5"}, "tls-failure"},
		{event.Failure{Kind: event.KindUnreachable}, "network-unreachable"},
		{event.Failure{Kind: event.KindSuspended, Text: "delivery temporarily suspended: connect to x: Connection refused"}, "delivery-suspended"},
		{event.ReplyFailure("450 4.7.1 Greylisted, please try again later"), "greylisting"},
		{event.ReplyFailure("452 4.2.2 Mailbox full"), "mailbox-full"},
		{event.ReplyFailure("452 4.2.2 quota"), "mailbox-full"},
		{event.ReplyFailure("550 5.1.1 <x@y>: Recipient address rejected"), "mailbox-unavailable"},
		{event.ReplyFailure("421 4.7.0 Too many connections, slow down"), "rate-limited"},
		{event.ReplyFailure("421 4.7.0 Please try again later"), "greylisting"},
		{event.ReplyFailure("421 4.7.0 closing"), "rate-limited"},
		{event.ReplyFailure("554 5.7.1 Blocked by Spamhaus"), "spam-rejected"},
		{event.ReplyFailure("552 5.3.4 Message size exceeds fixed limit"), "content-rejected"},
		{event.ReplyFailure("451 4.3.0 Internal error"), "other"},
		{event.ReplyFailure("450 mailbox busy"), "mailbox-unavailable"},
		{event.ReplyFailure("450 no enhanced code here"), "mailbox-unavailable"},
		// A host name that contains words of a rule does not count: only
		// the reply is looked at.
		{event.Failure{Kind: event.KindReply, Code: 451, Enhanced: "4.3.0", Text: "451 4.3.0 Temporary failure"}, "other"},
	} {
		if got := event.Classify(tc.f); got != tc.want {
			t.Errorf("Classify(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

// TestLogFailureAgrees checks that a class rebuilt from a defer log
// entry's fields is the class the agent decided live, for the wordings
// sluice's SMTP client writes, and that the classes are manage's.
func TestLogFailureAgrees(t *testing.T) {
	for _, tc := range []struct {
		live                               event.Failure
		status, diagType, diagText, reason string
	}{
		{event.Failure{Kind: event.KindRefused}, "4.4.1", "", "", "connect to mx.test[192.0.2.1]:25: Connection refused"},
		{event.Failure{Kind: event.KindTimeout}, "4.4.1", "", "", "connect to mx.test[192.0.2.1]:25: Connection timed out"},
		{event.Failure{Kind: event.KindUnreachable}, "4.4.1", "", "", "connect to mx.test[192.0.2.1]:25: No route to host"},
		{event.Failure{Kind: event.KindTimeout}, "4.4.2", "", "", "conversation with mx.test[192.0.2.1] timed out while receiving the initial server greeting"},
		{event.Failure{Kind: event.KindLost}, "4.4.2", "", "", "lost connection with mx.test[192.0.2.1] while sending RCPT TO"},
		{event.Failure{Kind: event.KindDNS}, "4.4.3", "", "", "Host or domain name not found. Name service error for name=x.test type=MX: Host not found, try again"},
		{event.Failure{Kind: event.KindTLS}, "4.7.4", "", "", "TLS is required, but was not offered by host mx.test[192.0.2.1]"},
		{event.Failure{Kind: event.KindTLS}, "4.7.5", "", "", "Cannot start TLS: handshake failure"},
		{event.Failure{Kind: event.KindSuspended}, "4.4.1", "", "", "delivery temporarily suspended: connect to mx.test[192.0.2.1]:25: Connection refused"},
		{event.ReplyFailure("450 4.7.1 Greylisted"), "4.7.1", "smtp", "450 4.7.1 Greylisted", "host mx.test[192.0.2.1] said: 450 4.7.1 Greylisted (in reply to RCPT TO command)"},
		{event.ReplyFailure("450 4.7.1 Greylisted"), "4.7.1", "", "", "host mx.test[192.0.2.1] said: 450 4.7.1 Greylisted (in reply to RCPT TO command)"},
		{event.ReplyFailure("421 4.7.0 Too many connections"), "4.7.0", "", "", "host mx.test[192.0.2.1] refused to talk to me: 421 4.7.0 Too many connections"},
	} {
		want := event.Classify(tc.live)
		got := event.Classify(event.LogFailure(tc.status, tc.diagType, tc.diagText, tc.reason))
		if got != want {
			t.Errorf("%q: from the log %q, live %q", tc.reason, got, want)
		}
	}
	for _, c := range event.ClassNames() {
		if manage.ClassDescription(c) == "" {
			t.Errorf("class %q is not one of manage's", c)
		}
		if event.ClassDescription(c) == "" {
			t.Errorf("class %q has no description", c)
		}
	}
}
