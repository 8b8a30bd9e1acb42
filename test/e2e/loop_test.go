package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// The attack of the issue: relayhost pointing back at our own listener.
// The message must not go round: the first delivery attempt bounces it
// (5.4.6 "loops back to myself"), the notification to the sender meets
// the same fate and, being from <>, ends there. Nothing is relayed.
func TestRelayhostLoopToSelfBounces(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	m := newMTA(t, "relayhost = [127.0.0.1]:"+port)
	// The harness listens on :0; this test needs to know the port in
	// advance to name it as the relayhost.
	m.setListen("127.0.0.1:" + port)
	m.start()
	m.send("alice@src.test", []string{"bob@elsewhere.test"}, "round and round")
	m.waitFor("the bounce of the bounce", func() bool {
		return m.logNow("undeliverable mail from the null sender: no notification sent") && m.idle()
	})
	log := m.logbuf.String()
	for _, s := range []string{
		"to=<bob@elsewhere.test>, relay=127.0.0.1[127.0.0.1]:" + port + ", delay=",
		"dsn=5.4.6, status=bounced (mail for [127.0.0.1]:" + port + " loops back to myself)",
		"sender non-delivery notification: ",
	} {
		if !strings.Contains(log, s) {
			t.Errorf("mail log lacks %q:\n%s", s, log)
		}
	}
	if n := strings.Count(log, "status=sent"); n != 0 {
		t.Errorf("%d deliveries went out:\n%s", n, log)
	}
	if n := strings.Count(log, ": client="); n != 1 {
		t.Errorf("smtpd took %d messages, want the one sent:\n%s", n, log)
	}
	if len(m.sink.Delivered()) != 0 {
		t.Errorf("the receiving server got %d messages", len(m.sink.Delivered()))
	}
}
