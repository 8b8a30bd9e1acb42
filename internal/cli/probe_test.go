package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sluice/internal/testutil/fakesmtp"
)

// TestProbeCommand probes through the configured relayhost (a fake
// server), and shows the deferred mail for the domain beside the result.
func TestProbeCommand(t *testing.T) {
	conf := queueEnv(t)
	srv := fakesmtp.Start(t, fakesmtp.Options{TLS: true, Hostname: "relay.test"})
	cf := filepath.Join(conf, "main.cf")
	old, _ := os.ReadFile(cf)
	os.WriteFile(cf, append(old, []byte("relayhost = [127.0.0.1]:"+strconv.Itoa(srv.Port)+"\nsmtp_tls_security_level = may\n")...), 0o644)
	refused := "connect to mx.example.com[192.0.2.1]:25: Connection refused"
	mustInject(t, conf, "-f", "a@src.test", "-T", "-2h", "-s", "4.4.1", "-r", refused, "u1@example.com", "u2@example.com")
	mustInject(t, conf, "-f", "a@src.test", "-T", "-2h", "-s", "4.4.1", "-r", refused, "u3@other.test")

	out, errs, code := run(t, "", "probe", "-c", conf, "--from", "probe@src.test", "example.com")
	if code != 0 {
		t.Fatalf("probe: %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"probe example.com via literal (relayhost [127.0.0.1]:" + strconv.Itoa(srv.Port) + "), TLS policy may, MAIL FROM:<probe@src.test> RCPT TO:<postmaster@example.com>",
		"127.0.0.1[127.0.0.1]:" + strconv.Itoa(srv.Port),
		"  banner   220 relay.test",
		"  tls      TLSv1.3 ",
		"  RCPT     250 ",
		"  verdict  OK: accepts mail for <postmaster@example.com>",
		"verdict: reachable: 1 of 1 hosts accept the recipient",
		"deferred mail for example.com: 1 messages, 2 recipients; last reasons:\n       2  " + refused,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "other.test") {
		t.Errorf("mail for another domain shown:\n%s", out)
	}

	srv.Reply(fakesmtp.RCPT, fakesmtp.Reply{Text: "550 5.1.1 no such user"})
	out, _, code = run(t, "", "probe", "-c", conf, "--json", "--rcpt", "nobody@example.com", "example.com")
	var r struct {
		OK    bool `json:"ok"`
		Hosts []struct {
			Verdict string `json:"verdict"`
		} `json:"hosts"`
		Deferred struct {
			Recipients int `json:"recipients"`
		} `json:"deferred"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.OK || len(r.Hosts) != 1 ||
		!strings.Contains(r.Hosts[0].Verdict, "550 5.1.1 no such user (in reply to RCPT TO)") || r.Deferred.Recipients != 2 {
		t.Errorf("refused recipient: code %d, %+v (%v)\n%s", code, r, err, out)
	}
	for _, s := range srv.Sessions() {
		for _, m := range s.Mails {
			if m.DataReply != "" {
				t.Errorf("the probe sent a message")
			}
		}
	}
	if _, _, code := run(t, "", "probe", "-c", conf); code != 2 {
		t.Errorf("no target: status %d", code)
	}
}
