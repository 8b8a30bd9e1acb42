package e2e

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/internal/cli"
	"sluice/internal/spool"
	"sluice/internal/testutil/fakesmtp"
)

// queueID finds the queue ID that the mail log gives a recipient's
// message.
func (m *mta) queueID(rcpt string) string {
	m.t.Helper()
	re := regexp.MustCompile(`([0-9A-Za-z]+): to=<` + regexp.QuoteMeta(rcpt) + `>`)
	var id string
	m.waitFor("a delivery line for "+rcpt, func() bool {
		if s := re.FindStringSubmatch(m.logbuf.String()); s != nil {
			id = s[1]
			return true
		}
		return false
	})
	return id
}

// step moves the fake clock from timer to timer until cond holds,
// letting the queue manager finish its work after each.
func (m *mta) step(what string, cond func() bool) {
	m.t.Helper()
	for i := 0; i < 200 && !cond(); i++ {
		m.waitFor("the queue manager to settle", m.idle)
		if cond() {
			return
		}
		d, ok := m.clk.NextDeadline()
		for tries := 0; !ok && tries < 100; tries++ {
			time.Sleep(2 * time.Millisecond)
			d, ok = m.clk.NextDeadline()
		}
		if !ok {
			break
		}
		armed := m.clk.Armed()
		m.clk.Set(d)
		select {
		case <-armed: // the manager handled the event and slept again
		case <-time.After(2 * time.Second):
		}
	}
	m.waitFor(what, cond)
}

func TestAcceptAndDeliver(t *testing.T) {
	m := newMTA(t)
	m.start()
	m.send("alice@src.test", []string{"bob@dest.test", "carol@dest.test"}, "hello from e2e")
	m.waitFor("delivery", func() bool { return len(m.delivered("bob@dest.test")) == 1 && len(m.delivered("carol@dest.test")) == 1 })
	id := m.queueID("bob@dest.test")
	m.waitFor("removal", func() bool { return m.logNow(id + ": removed") })
	for _, s := range []string{
		id + ": client=",
		id + ": from=<alice@src.test>, size=",
		", nrcpt=2 (queue active)",
		id + ": to=<bob@dest.test>, relay=mx.dest.test[127.0.0.1]:",
		"status=sent (250",
	} {
		if !m.logHas(s) {
			t.Errorf("mail log lacks %q", s)
		}
	}
	if got := m.delivered("bob@dest.test")[0]; !strings.Contains(got, "hello from e2e") || !strings.Contains(got, "Received: ") {
		t.Errorf("delivered text:\n%s", got)
	}
	// One transaction for both recipients.
	if n := len(m.sink.Delivered()); n != 1 {
		t.Errorf("transactions = %d, want 1", n)
	}
}

func TestUnreachableDefersWithReasonInMailq(t *testing.T) {
	m := newMTA(t)
	m.start()
	m.send("alice@src.test", []string{"x@down.test"}, "to nowhere")
	id := m.queueID("x@down.test")
	m.waitFor("deferral", func() bool { return len(m.queued(spool.Deferred)) == 1 && m.idle() })
	reason := "connect to mx.down.test[127.0.0.2]:" // then the port and ": Connection refused"
	if !m.logHas(id+": to=<x@down.test>, relay=none") || !m.logHas("status=deferred ("+reason) {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
	var out, errb bytes.Buffer
	code := cli.Main([]string{"mailq", "-c", m.dir}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("mailq exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), id) || !strings.Contains(out.String(), "("+reason) || !strings.Contains(out.String(), "Connection refused)") {
		t.Errorf("mailq shows no reason:\n%s", out.String())
	}
}

func TestRetryOnScheduleSameIDAndPartial(t *testing.T) {
	m := newMTA(t)
	m.sink.RcptReply("later@dest.test", fakesmtp.Reply{Text: "450 4.2.0 <later@dest.test>: mailbox busy"})
	m.start()
	m.send("alice@src.test", []string{"now@dest.test", "later@dest.test"}, "partial")
	id := m.queueID("later@dest.test")
	m.waitFor("deferral", func() bool { return len(m.queued(spool.Deferred)) == 1 && m.idle() })
	if n := len(m.delivered("now@dest.test")); n != 1 {
		t.Fatalf("now@ delivered %d times", n)
	}
	env, _, err := spool.ReadFile(m.srv.Spool().Path(spool.Deferred, id), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := env.Pending(); len(p) != 1 || p[0].Address != "later@dest.test" {
		t.Fatalf("pending = %+v; the delivered recipient must be marked done", p)
	}
	fi, _ := os.Stat(m.srv.Spool().Path(spool.Deferred, id))
	if wait := fi.ModTime().Sub(m.clk.Now()); wait < 299*time.Second || wait > 301*time.Second {
		t.Errorf("next attempt in %v, want minimal_backoff_time 300s", wait)
	}
	// A scan before the time leaves it alone.
	m.sink.RcptReply("later@dest.test", fakesmtp.Reply{})
	m.clk.Advance(200 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if len(m.queued(spool.Deferred)) != 1 {
		t.Fatal("retried before its time")
	}
	m.step("the retry", func() bool { return len(m.delivered("later@dest.test")) == 1 })
	m.waitFor("removal", func() bool { return m.logNow(id + ": removed") })
	if n := len(m.delivered("now@dest.test")); n != 1 {
		t.Errorf("now@ delivered %d times; a done recipient must never be delivered again", n)
	}
	if strings.Count(m.logbuf.String(), id+": to=<later@dest.test>") != 2 {
		t.Errorf("want two attempts under the same ID %s:\n%s", id, m.logbuf.String())
	}
}

func TestBounceAtEndOfLifetime(t *testing.T) {
	m := newMTA(t, "maximal_queue_lifetime = 1h")
	m.start()
	m.send("alice@src.test", []string{"x@down.test"}, "will expire")
	id := m.queueID("x@down.test")
	m.step("expiry", func() bool { return m.logNow(id + ": from=<alice@src.test>, status=expired, returned to sender") })
	m.waitFor("the DSN at the sender", func() bool { return len(m.delivered("alice@src.test")) == 1 })
	dsn := m.delivered("alice@src.test")[0]
	for _, s := range []string{"Subject: Undelivered Mail Returned to Sender", "multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; x@down.test", "Action: failed", "Status: 4.4.1", "Connection refused", "will expire"} {
		if !strings.Contains(dsn, s) {
			t.Errorf("DSN lacks %q:\n%s", s, dsn)
		}
	}
	for _, mail := range m.sink.Delivered() {
		if len(mail.Rcpts) > 0 && mail.Rcpts[0].Addr == "alice@src.test" && mail.From != "" {
			t.Errorf("DSN sent from <%s>, want <>", mail.From)
		}
	}
	if !m.logHas(id+": sender non-delivery notification: ") || !m.logHas(id+": removed") {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
}

func TestHardBounceDSN(t *testing.T) {
	m := newMTA(t)
	m.sink.RcptReply("nobody@dest.test", fakesmtp.Reply{Text: "550 5.1.1 <nobody@dest.test>: Recipient address rejected"})
	m.start()
	m.send("alice@src.test", []string{"nobody@dest.test"}, "no such user")
	m.waitFor("the DSN", func() bool { return len(m.delivered("alice@src.test")) == 1 })
	dsn := m.delivered("alice@src.test")[0]
	for _, s := range []string{"Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1", "Remote-MTA: dns; mx.dest.test"} {
		if !strings.Contains(dsn, s) {
			t.Errorf("DSN lacks %q:\n%s", s, dsn)
		}
	}
	if !m.logHas("status=bounced (host mx.dest.test[127.0.0.1] said: 550 5.1.1") {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
}

func TestRestartMovesActiveBack(t *testing.T) {
	m := newMTA(t)
	sp := spool.New(m.spool)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	f, err := sp.NewFile(spool.Active, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.WriteEnvelope(&spool.NewEnvelope{Arrival: time.Now(), Sender: "alice@src.test", Recipients: []spool.NewRecipient{{Address: "done@dest.test"}, {Address: "todo@dest.test"}}})
	f.WriteLine([]byte("Subject: left in active"))
	f.WriteLine(nil)
	f.WriteLine([]byte("crash"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	env, _, _ := spool.ReadFile(f.Path, spool.ReadOptions{})
	if err := spool.MarkDone(f.Path, env.Recipients[0].Offset, true); err != nil {
		t.Fatal(err)
	}
	m.start()
	m.waitFor("delivery of the pending recipient", func() bool { return len(m.delivered("todo@dest.test")) == 1 })
	m.waitFor("removal", func() bool { return m.logNow(f.ID + ": removed") })
	if n := len(m.delivered("done@dest.test")); n != 0 {
		t.Errorf("a recipient marked done was delivered %d times", n)
	}
}

func TestBadConfigurationStopsStart(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"no_such_parameter = 1", "unknown parameter no_such_parameter (line 6)"},
		{"minimal_backoff_time = soon", "bad time parameter value: minimal_backoff_time = soon"},
		{"default_destination_concurrency_limit = many", "bad numerical parameter value: default_destination_concurrency_limit = many"},
	} {
		m := newMTA(t, c.line)
		var out, errb bytes.Buffer
		code := cli.Main([]string{"sluice", "serve", "-c", m.dir}, nil, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want an error naming %q", c.line, code, errb.String(), c.want)
		}
	}
}
