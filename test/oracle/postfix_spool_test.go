package oracle_test

import (
	"fmt"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

// rawSMTP runs one SMTP transaction line by line, so the test can send
// what net/smtp cannot (DSN parameters). Each command must get a 2xx or
// 3xx reply.
func rawSMTP(addr string, cmds []string, data string) error {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(2); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	for _, cmd := range append(append([]string{"EHLO client.test"}, cmds...), "DATA") {
		id, err := c.Cmd("%s", cmd)
		if err != nil {
			return err
		}
		c.StartResponse(id)
		code, msg, err := c.ReadResponse(0)
		c.EndResponse(id)
		if err != nil || code >= 400 {
			return fmt.Errorf("%s: %d %s %v", cmd, code, msg, err)
		}
	}
	w := c.DotWriter()
	if _, err := w.Write([]byte(data)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if _, _, err := c.ReadResponse(2); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	c.Cmd("QUIT")
	return nil
}

func msgText(subject, body string) []byte {
	return []byte("Subject: " + subject + "\r\nFrom: tester@src.test\r\nTo: rcpt@example.com\r\n\r\n" + body + "\r\n")
}

// bigBody is about 300 KB with one line longer than line_length_limit.
func bigBody() string {
	var b strings.Builder
	for i := 0; b.Len() < 300_000; i++ {
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 76) + "\r\n")
		if i == 50 {
			b.WriteString(strings.Repeat("W", 4100) + "\r\n")
		}
	}
	return b.String()
}

// The other direction: a spool that a real Postfix wrote — mail over
// SMTP and sendmail, deferred for real reasons, held and force-expired
// with Postfix's postsuper, one recipient done, one message caught in
// the active queue, maildrop files from a stopped system — read by
// sluice's tools and by Postfix's.
func TestPostfixWrittenSpool(t *testing.T) {
	oracle.Require(t)
	t.Parallel()
	longText := "450 4.2.0 <r1@longreason.test>: Recipient address rejected: This is a deliberately very long temporary failure explanation"
	tempfail := oracle.TempFailPeer(t, longText)
	stall := oracle.StallPeer(t)
	in := oracle.StartPostfix(t, oracle.Options{Transports: map[string]string{
		"longreason.test": tempfail.Transport(),
		"slow.test":       stall.Transport(),
		"discard.test":    "discard:",
	}})

	smtpCases := []struct {
		label string
		from  string
		to    []string
		msg   []byte
	}{
		{label: "smtp", from: "smtp@src.test", to: []string{"u@example.net"}, msg: msgText("smtp", "hello")},
		{label: "multi-recipient", from: "multi@src.test", to: []string{"x@sub.example.com", "2x@sub.example.com", "3x@sub.example.com"}, msg: msgText("multi", "three")},
		{label: "null-sender", from: "", to: []string{"nullsender@example.org"}, msg: msgText("bounce", "returned")},
		{label: "utf8-sender", from: "jöhn@ünicode.test", to: []string{"ü@exämple.com"}, msg: msgText("utf8", "grüße")},
		{label: "large", from: "big@src.test", to: []string{"big@example.com"}, msg: []byte("Subject: large\r\n\r\n" + bigBody())},
		{label: "long-reason", from: "lr@facts.test", to: []string{"r1@longreason.test", "r2@example.com"}, msg: msgText("long reason", "x")},
		{label: "held", from: "hold@src.test", to: []string{"h@example.com"}, msg: msgText("to hold", "x")},
		{label: "force-expired", from: "exp@src.test", to: []string{"e@example.net"}, msg: msgText("to expire", "x")},
		{label: "held-and-expired", from: "holdexp@src.test", to: []string{"he@example.net"}, msg: msgText("to hold and expire", "x")},
		{label: "quoted-local-part", from: "q@src.test", to: []string{`"john doe"@example.com`}, msg: msgText("quoted", "x")},
		{label: "long-sender", from: "averyveryveryverylongsenderaddress.with.many.labels@some.very.long.domain.example.com",
			to: []string{"a1@example.com", "a3@another.example.net", "a2@example.com"}, msg: msgText("long sender", "x")},
		{label: "active", from: "slow@src.test", to: []string{"u@slow.test"}, msg: msgText("slow", "x")},
	}
	for _, c := range smtpCases {
		if err := in.SubmitSMTP(c.from, c.to, c.msg); err != nil {
			t.Fatalf("%s: %v", c.label, err)
		}
	}
	if err := rawSMTP(in.SMTPAddr(), []string{
		"MAIL FROM:<dsn@src.test> RET=HDRS ENVID=envid-42",
		"RCPT TO:<d1@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;D1@Example.COM",
		"RCPT TO:<d2@example.org> NOTIFY=NEVER",
	}, "Subject: dsn\r\n\r\nwith DSN parameters\r\n"); err != nil {
		t.Fatalf("dsn: %v", err)
	}
	in.Sendmail(t, []byte("Subject: via sendmail\nFrom: Alice <alice@facts.test>\n\nHello Bob.\n"), "-F", "Alice Example", "-f", "alice@facts.test", "bob@example.com")
	in.Sendmail(t, []byte("Subject: one done\n\nx\n"), "-f", "split@facts.test", "keep@example.org", "gone@discard.test")
	in.Sendmail(t, []byte("Subject: latin\n\ncaf\xe9\n"), "-f", "\xe9t\xe9@latin.test", "latin@example.net")
	in.Sendmail(t, []byte("Subject: extracted\nTo: t1@example.com, T2 <t2@example.org>\nCc: t3@example.net\n\nsendmail -t\n"), "-t", "-f", "t@src.test")

	// All but the stalled message defer; that one sits in active while
	// smtp waits for the peer's greeting.
	in.WaitFor(t, "the stalled delivery to connect", 60*time.Second, func() bool {
		select {
		case <-stall.Connected():
			return true
		default:
			return false
		}
	})
	in.WaitQueues(t, 60*time.Second, map[string]int{"maildrop": 0, "incoming": 0, "active": 1, "deferred": 16})
	in.Stop(t)

	// Find the messages by sender in Postfix's own JSON listing.
	byLabel := map[string]string{}
	senders := map[string]string{
		"smtp@src.test": "smtp", "multi@src.test": "multi-recipient", "MAILER-DAEMON": "null-sender",
		"jöhn@ünicode.test": "utf8-sender", "big@src.test": "large", "lr@facts.test": "long-reason",
		"hold@src.test": "held", "exp@src.test": "force-expired", "holdexp@src.test": "held-and-expired",
		"q@src.test": "quoted-local-part", "slow@src.test": "active", "dsn@src.test": "dsn",
		"alice@facts.test": "sendmail", "split@facts.test": "one-recipient-done", "?t?@latin.test": "8bit-sender",
		"t@src.test": "sendmail-t", "averyveryveryverylongsenderaddress.with.many.labels@some.very.long.domain.example.com": "long-sender",
	}
	for _, m := range queueJSON(t, postfix(t, in.ConfigDir, "postqueue", "-c", in.ConfigDir, "-j").stdout) {
		label, ok := senders[m.Sender]
		if !ok {
			t.Fatalf("unexpected message from %q in Postfix's queue", m.Sender)
		}
		byLabel[label] = m.QueueID
	}
	if len(byLabel) != len(senders) {
		t.Fatalf("found %d of %d messages: %v", len(byLabel), len(senders), byLabel)
	}
	for _, args := range [][]string{{"-h", byLabel["held"]}, {"-h", byLabel["held-and-expired"]}, {"-e", byLabel["force-expired"]}, {"-e", byLabel["held-and-expired"]}} {
		if r := in.Postsuper(t, args...); r.Status != 0 {
			t.Fatalf("postsuper %v: status %d: %s", args, r.Status, r.Stderr)
		}
	}
	// With the system down, sendmail's files stay in maildrop.
	in.Sendmail(t, []byte("Subject: maildrop sample\nFrom: Dora <dora@facts.test>\n\nqueued while down\n"), "-F", "Dora Example", "-f", "dora@facts.test", "drop@example.com")
	in.Sendmail(t, []byte("Subject: maildrop two\n\nx\n"), "-f", "md2@src.test", "m1@example.com", "m2@example.net")
	mds := in.IDs(spool.Maildrop)
	if len(mds) != 2 {
		t.Fatalf("maildrop holds %q, want 2 files", mds)
	}
	labels := map[string]string{}
	for l, id := range byLabel {
		labels[id] = l
	}
	for i, id := range mds {
		labels[id] = fmt.Sprintf("maildrop-%d", i+1)
	}

	cfg := in.ConfigDir
	pq := postfix(t, cfg, "postqueue", "-c", cfg, "-p")
	mustContain(t, "postqueue -p", pq.stdout, byLabel["active"]+"*", byLabel["held"]+"!", byLabel["force-expired"]+"#",
		byLabel["held-and-expired"]+"!#", "MAILER-DAEMON", "\n(host 127.0.0.1[127.0.0.1] said: 450 4.2.0", `"john doe"@example.com`,
		"?t?@latin.test", "jöhn@ünicode.test", "t3@example.net")
	if strings.Contains(pq.stdout, "gone@discard.test") {
		t.Errorf("fixture check: the discarded recipient is still pending:\n%s", pq.stdout)
	}
	pc := postfix(t, cfg, "postcat", "-c", cfg, "-q", byLabel["one-recipient-done"])
	mustContain(t, "postcat -q", pc.stdout, "done_recipient: gone@discard.test")
	pc = postfix(t, cfg, "postcat", "-c", cfg, "-q", byLabel["dsn"])
	mustContain(t, "postcat -q", pc.stdout, "named_attribute: envelope_id=envid-42", "named_attribute: ret_flags=2", "named_attribute: notify_flags=10", "named_attribute: dsn_orig_rcpt=rfc822;D1@Example.COM")

	compareQueue(t, cfg)
	comparePostcat(t, cfg, labels)
	t.Run("postcat -bh by path", func(t *testing.T) {
		for _, id := range mds {
			same(t, cfg, compareOpts{}, "postcat", "-c", cfg, "-bh", in.SpoolDir+"/maildrop/"+id)
		}
	})

	// The same spool through a configuration with long IDs enabled.
	cfgLong := oracle.PostfixConfig(t, in.SpoolDir, "enable_long_queue_ids = yes")
	t.Run("long layout", func(t *testing.T) {
		same(t, cfgLong, compareOpts{}, "postqueue", "-c", cfgLong, "-p")
		same(t, cfgLong, compareOpts{}, "postqueue", "-c", cfgLong, "-j")
	})
}

// A Postfix instance with enable_long_queue_ids = yes, and an empty one.
func TestPostfixWrittenSpoolLongIDs(t *testing.T) {
	oracle.Require(t)
	t.Parallel()
	in := oracle.StartPostfix(t, oracle.Options{LongIDs: true, Transports: map[string]string{"discard.test": "discard:"}})
	cfg := in.ConfigDir
	t.Run("empty queue", func(t *testing.T) {
		pq := same(t, cfg, compareOpts{}, "postqueue", "-c", cfg, "-p")
		mustContain(t, "postqueue -p", pq.stdout, "Mail queue is empty")
		same(t, cfg, compareOpts{}, "postqueue", "-c", cfg, "-j")
		same(t, cfg, compareOpts{canon: oracle.QshapeCanonical}, "qshape", "-c", cfg, "deferred")
	})
	for i, c := range []struct{ from, to string }{
		{"longid@facts.test", "someone@example.com"},
		{"second@facts.test", "other@example.net"},
		{"", "bounce@example.org"},
	} {
		if err := in.SubmitSMTP(c.from, []string{c.to, "gone@discard.test"}, msgText(fmt.Sprint("long ", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	in.Sendmail(t, []byte("Subject: long sendmail\n\nx\n"), "-f", "lsm@facts.test", "lsm@example.com")
	in.WaitQueues(t, 60*time.Second, map[string]int{"maildrop": 0, "incoming": 0, "active": 0, "deferred": 4})
	in.Stop(t)
	deferred := in.IDs(spool.Deferred)
	if r := in.Postsuper(t, "-h", deferred[0]); r.Status != 0 {
		t.Fatalf("postsuper -h: %s", r.Stderr)
	}
	in.Sendmail(t, []byte("Subject: long maildrop\n\nx\n"), "-f", "lmd@facts.test", "lmd@example.com")
	labels := map[string]string{}
	for _, q := range []string{spool.Deferred, spool.Hold, spool.Maildrop} {
		for i, id := range in.IDs(q) {
			if !spool.IsLongID(id) {
				t.Fatalf("Postfix wrote %s/%s, not a long ID", q, id)
			}
			labels[id] = fmt.Sprintf("%s-%d", q, i+1)
		}
	}
	if len(labels) != 5 {
		t.Fatalf("fixture: %d messages, want 5: %v", len(labels), labels)
	}
	pq := postfix(t, cfg, "postqueue", "-c", cfg, "-p")
	mustContain(t, "postqueue -p", pq.stdout, "----Queue ID-----", "!")
	compareQueue(t, cfg)
	comparePostcat(t, cfg, labels)
	cfgShort := oracle.PostfixConfig(t, in.SpoolDir, "enable_long_queue_ids = no")
	t.Run("short layout", func(t *testing.T) {
		same(t, cfgShort, compareOpts{}, "postqueue", "-c", cfgShort, "-p")
		same(t, cfgShort, compareOpts{}, "postqueue", "-c", cfgShort, "-j")
	})
}

// A maildrop file written by sluice inject is one Postfix's pickup
// accepts: it leaves maildrop and defers like any local submission.
func TestPostfixPicksUpInjectedMaildrop(t *testing.T) {
	oracle.Require(t)
	t.Parallel()
	in := oracle.StartPostfix(t, oracle.Options{})
	ids := inject(t, in.ConfigDir, "Subject: injected\nFrom: Inj <inj@facts.test>\n\nvia sluice inject\n",
		"-q", "maildrop", "-F", "Inj Ector", "-f", "inj@facts.test", "picked@example.com", "up@example.org")
	if len(ids) != 1 {
		t.Fatalf("inject printed %q", ids)
	}
	// pickup scans maildrop every 60 s or when poked; poke it.
	if r := oracle.Run(t, in.ConfigDir, nil, "postqueue", "-c", in.ConfigDir, "-f"); r.Status != 0 {
		t.Fatalf("postqueue -f: %s", r.Stderr)
	}
	in.WaitQueues(t, 90*time.Second, map[string]int{"maildrop": 0, "incoming": 0, "active": 0, "deferred": 1})
	in.Stop(t)
	msgs := queueJSON(t, postfix(t, in.ConfigDir, "postqueue", "-c", in.ConfigDir, "-j").stdout)
	if len(msgs) != 1 || msgs[0].Sender != "inj@facts.test" || len(msgs[0].Recipients) != 2 ||
		msgs[0].Recipients[0].DelayReason == "" {
		t.Fatalf("Postfix did not queue the injected message as sent: %+v", msgs)
	}
	log := in.Log()
	if !strings.Contains(log, "postfix/pickup") || !strings.Contains(log, "from=<inj@facts.test>") {
		t.Errorf("mail log shows no pickup of the injected file:\n%s", log)
	}
	if _, err := os.Stat(in.SpoolDir + "/maildrop/" + ids[0]); err == nil {
		t.Errorf("the injected maildrop file is still there")
	}
}
