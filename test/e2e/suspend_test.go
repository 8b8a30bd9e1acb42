package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/audit"
	"sluice/internal/cli"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// apiRaw calls the running daemon's HTTP API with a JSON body as text.
func (m *mta) apiRaw(method, path, token, body string) (int, []byte) {
	m.t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.srv.HTTPAddr()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// sluice runs a sluice tool in this process against the daemon's
// configuration (it reaches the daemon through the control socket).
func (m *mta) sluice(args ...string) (string, int) {
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"sluice"}, args...), strings.NewReader(""), &out, &errb)
	return out.String() + errb.String(), code
}

// TestSuspensionLifecycle: a suspension of one
// domain, made over HTTP, holds that domain's mail (the receiving server
// sees nothing for it, its queue file stays untouched) while other mail
// flows; it survives a restart of the daemon; it ends on its own, and the
// mail is delivered then. The audit log tells who did what, how.
func TestSuspensionLifecycle(t *testing.T) {
	m := newMTA(t)
	m.dns.AddMX("other.test", 10, "mx.other.test")
	m.dns.AddA("mx.other.test", "127.0.0.1")
	m.start()
	tok := m.token()

	code, body := m.apiRaw("POST", "/api/v1/suspensions", tok, `{"select": "domain=dest.test", "for": "2h", "reason": "MX maintenance"}`)
	var x suspend.Suspension
	if code != 201 || json.Unmarshal(body, &x) != nil || x.ID != 1 {
		t.Fatalf("suspend over HTTP: %d %s", code, body)
	}
	end := x.Until
	// A second one through the CLI (and so the control socket), resumed
	// at once: both interfaces are audited.
	if out, code := m.sluice("queue", "suspend", "-c", m.dir, "domain=other.test", "--for", "1h"); code != 0 || !strings.HasPrefix(out, "suspension 2: ") {
		t.Fatalf("sluice queue suspend: %d %s", code, out)
	}
	if out, code := m.sluice("queue", "resume", "-c", m.dir, "2"); code != 0 {
		t.Fatalf("sluice queue resume: %d %s", code, out)
	}

	m.send("alice@src.test", []string{"bob@dest.test"}, "held")
	m.send("alice@src.test", []string{"carol@other.test"}, "flows")
	m.send("alice@src.test", []string{"dan@dest.test", "erin@other.test"}, "mixed")
	m.waitFor("the free mail", func() bool {
		return len(m.delivered("carol@other.test")) == 1 && len(m.delivered("erin@other.test")) == 1 && m.idle()
	})
	if n := len(m.delivered("bob@dest.test")) + len(m.delivered("dan@dest.test")); n != 0 {
		t.Fatalf("%d messages delivered to the suspended domain", n)
	}
	for _, s := range m.sink.Sessions() {
		for _, mail := range s.Mails {
			for _, r := range mail.Rcpts {
				if strings.HasSuffix(r.Addr, "@dest.test") {
					t.Fatalf("the receiving server saw a suspended recipient: %+v", r)
				}
			}
		}
	}
	held := m.queued(spool.Incoming)
	if len(held) != 1 {
		t.Fatalf("incoming/ = %v, want the suspended message", held)
	}
	heldPath := m.srv.Spool().Path(spool.Incoming, held[0])
	before, err := os.Stat(heldPath)
	if err != nil {
		t.Fatal(err)
	}
	if !m.logHas(held[0] + ": delivery suspended until ") {
		t.Errorf("no log of the held message")
	}
	mixed := m.queued(spool.Deferred)
	if len(mixed) != 1 || !m.logHas("to=<dan@dest.test>") || !m.logHas("status=deferred (delivery temporarily suspended: suspension 1 (MX maintenance))") {
		t.Fatalf("the mixed message: deferred %v; log:\n%s", mixed, m.logbuf)
	}

	// A restart keeps the suspension and holds the mail still.
	m.stop()
	m.start()
	code, body = m.apiGet("/api/v1/suspensions", tok)
	var list []suspend.Suspension
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].ID != 1 || !list[0].Until.Equal(end) {
		t.Fatalf("after restart: %d %s", code, body)
	}
	m.clk.Advance(10 * time.Minute) // a deferred scan or two
	m.waitFor("the scans", m.idle)
	after, err := os.Stat(heldPath)
	if err != nil {
		t.Fatalf("held message moved: %v", err)
	}
	if after.ModTime() != before.ModTime() || after.Mode() != before.Mode() || after.Size() != before.Size() {
		t.Errorf("held file changed: %v %v %d → %v %v %d", before.ModTime(), before.Mode(), before.Size(), after.ModTime(), after.Mode(), after.Size())
	}
	if len(m.delivered("bob@dest.test")) != 0 {
		t.Fatal("delivered after restart, during the suspension")
	}

	// The end: logged, and the held mail goes at once.
	m.clk.Set(end)
	if !m.logHas("suspension 1 ended") {
		t.Fatalf("no end logged:\n%s", m.logbuf)
	}
	m.waitFor("the held message", func() bool { return len(m.delivered("bob@dest.test")) == 1 })
	// The mixed message's next attempt is the suspension's end (its
	// mtime); after a restart the deferred scan finds it.
	m.clk.Advance(5 * time.Minute)
	m.waitFor("the rest of the mixed message", func() bool { return len(m.delivered("dan@dest.test")) == 1 })
	if code, body := m.apiGet("/api/v1/suspensions", tok); code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("after the end: %d %s", code, body)
	}

	var got []audit.Entry
	audit.Read(audit.Path(m.spool), time.Time{}, func(e audit.Entry) error { got = append(got, e); return nil })
	want := []struct{ user, iface, action string }{
		{"api", audit.HTTP, "suspend"},
		{audit.User(os.Getuid()), audit.Control, "suspend"},
		{audit.User(os.Getuid()), audit.Control, "resume"},
		{"daemon", audit.Suspend, "suspension-ended"},
	}
	if len(got) != len(want) {
		t.Fatalf("audit log: %+v", got)
	}
	for i, w := range want {
		if e := got[i]; e.User != w.user || e.Interface != w.iface || e.Action != w.action {
			t.Errorf("audit entry %d = %+v, want %+v", i, e, w)
		}
	}
	if got[0].Selector != "domain=dest.test" || !strings.Contains(got[0].Detail, "MX maintenance") {
		t.Errorf("HTTP entry: %+v", got[0])
	}
	if out, code := m.sluice("queue", "audit", "-c", m.dir); code != 0 || !strings.Contains(out, "api via http: suspend domain=dest.test") {
		t.Errorf("sluice queue audit: %d\n%s", code, out)
	}
}
