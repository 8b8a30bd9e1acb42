package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

// apiGet calls the running daemon's HTTP API with token (none when "").
func (m *mta) apiGet(path, token string) (int, []byte) {
	m.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+m.srv.HTTPAddr()+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestHTTPAPI starts the daemon with its HTTP listener: the token file is
// made at the first start, the API refuses calls without it, the probe
// reaches the fake MX, and /metrics parses as Prometheus text.
func TestHTTPAPI(t *testing.T) {
	m := newMTA(t)
	m.start()
	if m.srv.HTTPAddr() == "" {
		t.Fatalf("no HTTP listener; log:\n%s", m.logbuf)
	}
	tokFile := filepath.Join(m.spool, "private", "sluice-http-token")
	b, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatalf("token file: %v", err)
	}
	if fi, _ := os.Stat(tokFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	token := strings.TrimSpace(string(b))

	if code, body := m.apiGet("/api/v1/probe?target=dest.test", ""); code != 401 {
		t.Errorf("probe without token: %d %s", code, body)
	}
	if code, body := m.apiGet("/api/v1/probe?target=dest.test", token+"x"); code != 401 {
		t.Errorf("probe with a wrong token: %d %s", code, body)
	}
	code, body := m.apiGet("/api/v1/probe?target=dest.test&rcpt=bob@dest.test", token)
	var rep struct {
		OK    bool
		Via   string
		MX    []struct{ Host string }
		Hosts []struct {
			Host    string
			Verdict string
		}
	}
	if err := json.Unmarshal(body, &rep); code != 200 || err != nil || !rep.OK || rep.Via != "mx" ||
		len(rep.MX) != 1 || rep.MX[0].Host != "mx.dest.test" || len(rep.Hosts) != 1 || rep.Hosts[0].Verdict != "accepts mail for <bob@dest.test>" {
		t.Errorf("probe: %d %s (%v)", code, body, err)
	}
	for _, s := range m.sink.Sessions() {
		for _, mail := range s.Mails {
			if mail.DataReply != "" {
				t.Errorf("the probe sent mail")
			}
		}
	}

	// A domain with deferred mail: the probe shows that mail's last
	// reasons beside its own finding (nothing listens on mx.down.test).
	m.send("alice@src.test", []string{"x@down.test", "y@down.test", "bob@dest.test"}, "half stuck")
	m.waitFor("deferral", func() bool { return len(m.queued(spool.Deferred)) == 1 && m.idle() })
	code, body = m.apiGet("/api/v1/probe?target=DOWN.test.", token)
	var stuck struct {
		OK       bool
		Deferred *queuesvc.DeferredFor
	}
	if err := json.Unmarshal(body, &stuck); code != 200 || err != nil || stuck.OK || stuck.Deferred == nil {
		t.Fatalf("probe of down.test: %d %s (%v)", code, body, err)
	}
	d := stuck.Deferred
	if d.Domain != "down.test" || d.Messages != 1 || d.Recipients != 2 || len(d.Reasons) != 1 ||
		d.Reasons[0].Recipients != 2 || !strings.Contains(d.Reasons[0].Reason, "Connection refused") {
		t.Errorf("probe of down.test: deferred %+v", d)
	}
	// A target that names no domain has no deferred part.
	_, body = m.apiGet("/api/v1/probe?target=[127.0.0.2]:25", token)
	if strings.Contains(string(body), `"deferred"`) {
		t.Errorf("probe of a literal shows deferred mail: %s", body)
	}

	code, body = m.apiGet("/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("metrics lack %s", name)
		}
	}
}
