package oracle

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/spool"
)

func TestPostfixConfigReadsASluiceSpool(t *testing.T) {
	Require(t)
	root := filepath.Join(t.TempDir(), "spool")
	sp := spool.New(root)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	arrival := time.Unix(1795964910, 0)
	f, err := sp.NewFile(spool.Incoming, arrival)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteEnvelope(&spool.NewEnvelope{Arrival: arrival, Sender: "a@src.test", Recipients: []spool.NewRecipient{{Address: "b@example.com"}}})
	f.WriteLine([]byte("Subject: x"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	cfg := PostfixConfig(t, root)
	// Files written after PostfixConfig are root's; Run hands them over.
	r := Run(t, cfg, nil, "postqueue", "-c", cfg, "-p")
	if r.Status != 0 || !strings.Contains(string(r.Stdout), f.ID+" ") || !strings.Contains(string(r.Stdout), "b@example.com") {
		t.Fatalf("postqueue -p: status %d\n%s\n%s", r.Status, r.Stdout, r.Stderr)
	}
	r = Run(t, cfg, nil, "postcat", "-c", cfg, "-q", f.ID)
	if r.Status != 0 || !strings.Contains(string(r.Stdout), "*** ENVELOPE RECORDS incoming/"+f.ID+" ***") {
		t.Fatalf("postcat -q: status %d\n%s\n%s", r.Status, r.Stdout, r.Stderr)
	}
	r = Run(t, cfg, nil, "qshape", "-c", cfg, "incoming")
	if r.Status != 0 || !strings.Contains(string(r.Stdout), "example.com  1") {
		t.Fatalf("qshape: status %d\n%s\n%s", r.Status, r.Stdout, r.Stderr)
	}
}

// An instance defers mail for real reasons, over SMTP and sendmail, with
// a long reason from a peer; two instances run side by side.
func TestInstancesDeferMail(t *testing.T) {
	Require(t)
	peer := TempFailPeer(t, "450 4.2.0 <r1@longreason.test>: This is a deliberately long temporary failure text")
	a := StartPostfix(t, Options{Transports: map[string]string{"longreason.test": peer.Transport(), "discard.test": "discard:"}})
	b := StartPostfix(t, Options{LongIDs: true})
	if a.Port == b.Port || a.SpoolDir == b.SpoolDir {
		t.Fatalf("instances share a port or spool: %+v %+v", a, b)
	}
	msg := []byte("Subject: oracle\r\n\r\nhello\r\n")
	if err := a.SubmitSMTP("s@src.test", []string{"r1@longreason.test", "gone@discard.test"}, msg); err != nil {
		t.Fatal(err)
	}
	a.Sendmail(t, msg, "-f", "alice@facts.test", "bob@example.com")
	if err := b.SubmitSMTP("", []string{"x@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	a.WaitQueues(t, 30*time.Second, map[string]int{"deferred": 2, "incoming": 0, "active": 0, "maildrop": 0})
	b.WaitQueues(t, 30*time.Second, map[string]int{"deferred": 1, "incoming": 0, "active": 0})
	a.Stop(t)
	b.Stop(t)
	r := Run(t, a.ConfigDir, nil, "postqueue", "-c", a.ConfigDir, "-j")
	out := string(r.Stdout)
	for _, want := range []string{
		`"delay_reason": "host 127.0.0.1[127.0.0.1] said: 450 4.2.0 <r1@longreason.test>: This is a deliberately long temporary failure text (in reply to RCPT TO command)"`,
		`"delay_reason": "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("postqueue -j lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "gone@discard.test") {
		t.Errorf("the discarded recipient is still listed:\n%s", out)
	}
	ids := b.IDs("deferred")
	if len(ids) != 1 || !spool.IsLongID(ids[0]) {
		t.Errorf("long-ID instance queued %q", ids)
	}
}

func TestQshapeCanonical(t *testing.T) {
	a := "        T  5\n    TOTAL  4  4\nexample.net  2  2\nexample.org  2  2\n  b.test  1  1\n"
	b := "        T  5\n    TOTAL  4  4\nexample.org  2  2\nexample.net  2  2\n  b.test  1  1\n"
	if QshapeCanonical(a) != QshapeCanonical(b) {
		t.Errorf("tie order still matters:\n%s\n%s", QshapeCanonical(a), QshapeCanonical(b))
	}
	c := "        T  5\n    TOTAL  4  4\n  b.test  2  2\nexample.org  2  2\n"
	d := "        T  5\n    TOTAL  4  4\nexample.org  2  2\n  b.test  2  2\n"
	if QshapeCanonical(c) == QshapeCanonical(d) {
		t.Errorf("length order was ignored")
	}
}

func TestDiff(t *testing.T) {
	if d := Diff("a\nb\n", "a\nb\n"); d != "" {
		t.Errorf("equal texts differ: %s", d)
	}
	d := Diff("a\nb\n", "a\nc\n")
	if !strings.Contains(d, "line 2") || !strings.Contains(d, `"b\n"`) || !strings.Contains(d, `"c\n"`) {
		t.Errorf("diff = %s", d)
	}
}

// TestMainCFLastWins: a parameter given twice appears once, with its last
// value, so Postfix's processes do not warn about it at every start.
func TestMainCFLastWins(t *testing.T) {
	got := mainCF([]string{"a = 1", "mynetworks = 127.0.0.0/8", "b = 2", "mynetworks = 127.0.0.2/32", "a=3"})
	want := "# Written by sluice's oracle test support.\na=3\nmynetworks = 127.0.0.2/32\nb = 2\n"
	if got != want {
		t.Errorf("mainCF:\n%s\nwant:\n%s", got, want)
	}
}
