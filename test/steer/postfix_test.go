package steer

import (
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
)

// TestLivePostfixSpool steers a running Postfix from sluice: selection
// reads its spool natively; changes go through Postfix's own postsuper,
// which owns its locking, and show in Postfix's own mailq.
func TestLivePostfixSpool(t *testing.T) {
	oracle.Require(t)
	in := oracle.StartPostfix(t, oracle.Options{})
	msg := []byte("Subject: live\r\n\r\nbody\r\n")
	for _, to := range []string{"a@example.com", "b@example.com", "c@example.org"} {
		if err := in.SubmitSMTP("s@src.test", []string{to}, msg); err != nil {
			t.Fatal(err)
		}
	}
	in.WaitQueues(t, 30*time.Second, map[string]int{"deferred": 3})
	conf := in.ConfigDir

	out, errs, err := sluice(t, "", "queue", "summary", "-c", conf)
	if err != nil || !strings.Contains(out, "connection-refused") || !strings.Contains(out, "127.0.0.1[127.0.0.1]:9") {
		t.Fatalf("summary on a live Postfix: %v\n%s%s", err, out, errs)
	}
	// A bulk hold by selector, through Postfix's postsuper.
	out, errs, err = sluice(t, "", "queue", "hold", "-c", conf, "domain=example.com", "--yes")
	if err != nil || !strings.Contains(errs, "postsuper: Placed on hold: 2 messages") {
		t.Fatalf("hold on a live Postfix: %v\n%s%s", err, out, errs)
	}
	in.WaitQueues(t, 10*time.Second, map[string]int{"hold": 2, "deferred": 1})
	pf := oracle.Run(t, conf, nil, "postqueue", "-c", conf, "-p")
	if strings.Count(string(pf.Stdout), "!") != 2 {
		t.Errorf("Postfix's mailq after the hold:\n%s", pf.Stdout)
	}
	// postsuper as sluice, on the live spool, is Postfix's postsuper.
	held := in.IDs("hold")
	_, errs, err = sluice(t, "", "postsuper", "-c", conf, "-d", held[0])
	if err != nil || !strings.Contains(errs, "postsuper: "+held[0]+": removed") {
		t.Fatalf("postsuper -d on a live Postfix: %v\n%s", err, errs)
	}
	in.WaitQueues(t, 10*time.Second, map[string]int{"hold": 1, "deferred": 1})
	// The same listing through sluice and through Postfix.
	sl, errs, err := sluice(t, "", "mailq", "-C", conf)
	pf = oracle.Run(t, conf, nil, "postqueue", "-c", conf, "-p")
	if err != nil || sl != string(pf.Stdout) {
		t.Errorf("mailq differs on a live Postfix (%v %s):\n%s", err, errs, oracle.Diff(string(pf.Stdout), sl))
	}
}
