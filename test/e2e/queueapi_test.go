package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/audit"
	"sluice/internal/cli"
	"sluice/internal/manage"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

// apiDo calls the running daemon's HTTP API with token (none when "").
func (m *mta) apiDo(method, path, token string, body any) (int, []byte) {
	m.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+m.srv.HTTPAddr()+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestQueueAPI drives the queue API of a running sluice serve: a
// summary, a listing and one message of mail it deferred; a dry run and
// then a real hold by selector (in the mail log in postsuper's words,
// and in the model at once); refusals without the token; a 400 with the
// CLI's words for a bad selector.
func TestQueueAPI(t *testing.T) {
	m := newMTA(t)
	m.start()
	m.send("alice@src.test", []string{"x@down.test", "y@down.test"}, "to nowhere")
	m.send("bob@src.test", []string{"w@down.test"}, "to nowhere either")
	a, b := m.queueID("x@down.test"), m.queueID("w@down.test")
	m.waitFor("deferral", func() bool { return len(m.queued(spool.Deferred)) == 2 })
	tok, err := os.ReadFile(filepath.Join(m.spool, "private", "sluice-http-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	get := func(path string, out any) {
		t.Helper()
		code, body := m.apiDo("GET", path, token, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	var sum queuesvc.SummaryResult
	m.waitFor("the model to answer", func() bool {
		get("/api/v1/summary?by=reason&select=queue%3Ddeferred", &sum)
		return sum.Source == queuesvc.SourceModel && sum.Messages == 2
	})
	// The second message finds the destination throttled, or, when it
	// was tried before the first one's failure was known, refused too.
	total := 0
	for _, g := range sum.Groups {
		total += g.Recipients
		if g.Key != "connection-refused" && g.Key != "delivery-suspended" {
			t.Errorf("summary group %+v", g)
		}
	}
	// The example is the group's oldest message. Both arrived in the
	// same second of the fake clock, so their IDs differ only in the
	// inode, which the file system chose: the lower ID is the example.
	example := a
	if len(sum.Groups) > 0 && sum.Groups[0].Messages == 2 && b < a {
		example = b
	}
	if sum.Recipients != 3 || total != 3 || len(sum.Groups) == 0 || sum.Groups[0].Key != "connection-refused" || sum.Groups[0].ExampleID != example {
		t.Errorf("summary: %+v", sum)
	}
	var list queuesvc.ListResult
	get("/api/v1/messages?select="+url.QueryEscape("domain=down.test sender=alice@src.test"), &list)
	if len(list.Messages) != 1 || list.Messages[0].ID != a || len(list.Messages[0].Recipients) != 2 || list.Messages[0].Recipients[0].Class != "connection-refused" {
		t.Errorf("listing: %+v", list)
	}
	var d queuesvc.Detail
	get("/api/v1/messages/"+a, &d)
	if d.ID != a || d.Queue != spool.Deferred || d.NextState != "scheduled" || d.NextAttempt.IsZero() || d.Expires.IsZero() ||
		len(d.Recipients) != 2 || d.Recipients[0].State != "deferred" || d.Recipients[0].Attempts != 1 || len(d.History) != 2 || len(d.Headers) == 0 {
		t.Errorf("message: %+v", d)
	}

	// A dry run, then the hold itself, by selector.
	hold := map[string]any{"action": "hold", "select": "sender=alice@src.test", "dry_run": true}
	if code, body := m.apiDo("POST", "/api/v1/actions", "", hold); code != 401 {
		t.Errorf("action without token: %d %s", code, body)
	}
	code, body := m.apiDo("POST", "/api/v1/actions", token, hold)
	var res queuesvc.ActResult
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || res.Matched != 1 || res.Changed != 1 || !res.DryRun {
		t.Fatalf("dry run: %d %s", code, body)
	}
	if q := m.queued(spool.Hold); len(q) != 0 {
		t.Fatalf("the dry run held %v", q)
	}
	hold["dry_run"] = false
	code, body = m.apiDo("POST", "/api/v1/actions", token, hold)
	res = queuesvc.ActResult{}
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || res.Matched != 1 || res.Changed != 1 || len(res.Results) != 1 || res.Results[0].ID != a {
		t.Fatalf("hold: %d %s", code, body)
	}
	if q := m.queued(spool.Hold); len(q) != 1 || q[0] != a {
		t.Errorf("hold/ has %v, want %s", q, a)
	}
	if !m.logHas(a + ": placed on hold") {
		t.Errorf("the hold is not in the mail log")
	}
	// The real run is in the audit log under the token's name; the dry
	// run is not.
	entries := m.audit()
	if len(entries) != 1 || entries[0].User != "api" || entries[0].Interface != audit.HTTP || entries[0].Action != "hold" ||
		entries[0].Selector != "sender=alice@src.test" || entries[0].Changed != 1 {
		t.Errorf("audit log after the hold: %+v", entries)
	}
	// Through the daemon, sluice queue's change is recorded as the
	// socket's peer's (this test's uid).
	var rel, relErr bytes.Buffer
	if code := cli.Main([]string{"sluice", "queue", "release", "-c", m.dir, "--yes", "id=" + a}, nil, &rel, &relErr); code != 0 {
		t.Fatalf("sluice queue release: %d %s", code, relErr.String())
	}
	entries = m.audit()
	if len(entries) != 2 || entries[1].Interface != audit.Control || entries[1].UID != os.Getuid() || entries[1].Action != "release" || entries[1].Changed != 1 {
		t.Errorf("audit log after the release through the socket: %+v", entries)
	}
	if code := cli.Main([]string{"sluice", "queue", "hold", "-c", m.dir, "--yes", "id=" + a}, nil, &rel, &relErr); code != 0 {
		t.Fatalf("sluice queue hold: %d %s", code, relErr.String())
	}
	var count queuesvc.CountResult
	get("/api/v1/count?select=queue%3Dhold", &count)
	if count.Source != queuesvc.SourceModel || count.Messages != 1 || count.Recipients != 2 {
		t.Errorf("count of held mail from the model: %+v", count)
	}
	// sluice queue answers through the daemon, from the same handlers.
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"sluice", "queue", "count", "-c", m.dir, "queue=hold"}, nil, &out, &errb); code != 0 || out.String() != "1 message, 2 recipients\n" {
		t.Errorf("sluice queue count: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := cli.Main([]string{"sluice", "queue", "show", "-c", m.dir, a}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "Next attempt: none while on hold") {
		t.Errorf("sluice queue show: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := cli.Main([]string{"sluice", "queue", "list", "-c", m.dir, "hold"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "queue=hold") {
		t.Errorf("sluice queue list hold: %d %q", code, errb.String())
	}
	// Holding again changes nothing, and says why.
	code, body = m.apiDo("POST", "/api/v1/actions", token, hold)
	res = queuesvc.ActResult{}
	if json.Unmarshal(body, &res); code != 200 || res.Changed != 0 || res.Skipped != 1 {
		t.Errorf("second hold: %d %s", code, body)
	}

	// Refusals and errors.
	for _, p := range []string{"/api/v1/summary", "/api/v1/messages", "/api/v1/messages/" + b, "/api/v1/qshape"} {
		if code, body := m.apiDo("GET", p, "", nil); code != 401 {
			t.Errorf("%s without token: %d %s", p, code, body)
		}
	}
	_, cliErr := manage.ParseSelector("hold")
	code, body = m.apiDo("GET", "/api/v1/messages?select=hold", token, nil)
	var e struct{ Error string }
	if json.Unmarshal(body, &e); code != 400 || e.Error != cliErr.Error() {
		t.Errorf("bad selector: %d %s, want 400 %q", code, body, cliErr)
	}
	var shape struct {
		Rows []struct {
			Domain string
			Total  int
		}
	}
	get("/api/v1/qshape?queue=deferred", &shape)
	if len(shape.Rows) != 2 || shape.Rows[0].Domain != "TOTAL" || shape.Rows[0].Total != 1 || shape.Rows[1].Domain != "down.test" {
		t.Errorf("qshape: %+v", shape)
	}
}

// audit reads the daemon's audit log.
func (m *mta) audit() []audit.Entry {
	m.t.Helper()
	var out []audit.Entry
	err := audit.Read(audit.Path(m.spool), time.Time{}, func(e audit.Entry) error { out = append(out, e); return nil })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.t.Fatal(err)
	}
	return out
}
