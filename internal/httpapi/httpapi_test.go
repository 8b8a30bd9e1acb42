package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sluice/internal/manage"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
	"strings"
	"testing"

	"sluice/internal/smtp"
)

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	tok, err := LoadToken(path)
	if err != nil || len(tok) < 40 {
		t.Fatalf("created token %q: %v", tok, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", fi.Mode(), err)
	}
	again, err := LoadToken(path)
	if err != nil || again != tok {
		t.Errorf("second load %q %v, want the same token", again, err)
	}
	other, _ := LoadToken(filepath.Join(dir, "token2"))
	if other == tok {
		t.Errorf("two new token files got the same token")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadToken(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable token file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := LoadToken(empty); err == nil {
		t.Errorf("empty token file accepted")
	}
	if _, err := LoadToken(filepath.Join(dir, "no", "such", "dir")); err == nil {
		t.Errorf("token in a missing directory: no error")
	}
}

func serve(h http.Handler, method, target, remote, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func testHandler(cfg Config) http.Handler {
	// A closed ring: its stream answers and ends at once.
	events := NewRing(10, nil, nil)
	events.Close()
	api := API(Backend{
		Events: events,
		Probe: func(ctx context.Context, target string, opt smtp.ProbeOptions) *smtp.ProbeReport {
			return &smtp.ProbeReport{Target: target, Recipient: opt.Recipient, Hosts: []smtp.ProbeHost{}}
		},
		Flush:       func() {},
		Suspensions: testSuspensions(),
		Queue:       &queuesvc.Service{Queue: &manage.Queue{Spool: spool.New("/nonexistent")}},
	})
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up 1\n") })
	return Handler(cfg, "s3cret", api, metrics, nil)
}

func TestAuth(t *testing.T) {
	h := testHandler(Config{})
	tests := []struct {
		name, method, target, remote, token string
		status                              int
	}{
		{"API without token", "GET", "/api/v1/openapi.json", "127.0.0.1:5000", "", 401},
		{"API with a wrong token", "GET", "/api/v1/openapi.json", "127.0.0.1:5000", "s3cre", 401},
		{"API with a longer token", "GET", "/api/v1/openapi.json", "127.0.0.1:5000", "s3cretX", 401},
		{"API with the token", "GET", "/api/v1/openapi.json", "192.0.2.1:5000", "s3cret", 200},
		{"change without token", "POST", "/api/v1/flush", "127.0.0.1:5000", "", 401},
		{"change with token", "POST", "/api/v1/flush", "127.0.0.1:5000", "s3cret", 200},
		{"wrong method", "GET", "/api/v1/flush", "127.0.0.1:5000", "s3cret", 405},
		{"unknown endpoint", "GET", "/api/v1/nothing", "127.0.0.1:5000", "s3cret", 404},
		{"metrics from loopback", "GET", "/metrics", "127.0.0.1:5000", "", 200},
		{"metrics from ::1", "GET", "/metrics", "[::1]:5000", "", 200},
		{"metrics from afar", "GET", "/metrics", "192.0.2.1:5000", "", 401},
		{"metrics from afar with token", "GET", "/metrics", "192.0.2.1:5000", "s3cret", 200},
		{"probe without target", "GET", "/api/v1/probe", "127.0.0.1:5000", "s3cret", 400},
	}
	for _, tt := range tests {
		w := serve(h, tt.method, tt.target, tt.remote, tt.token)
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, w.Code, tt.status, w.Body)
		}
		if w.Code == 401 {
			var e map[string]string
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] == "" || w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: refusal %q %v", tt.name, w.Body, w.Header())
			}
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff header", tt.name)
		}
	}
	open := testHandler(Config{OpenMetrics: true})
	if w := serve(open, "GET", "/metrics", "192.0.2.1:5000", ""); w.Code != 200 {
		t.Errorf("open metrics from afar: %d", w.Code)
	}
	if w := serve(open, "GET", "/api/v1/openapi.json", "192.0.2.1:5000", ""); w.Code != 401 {
		t.Errorf("open metrics opened the API: %d", w.Code)
	}
}

// TestOpenAPIDocument checks that the document is valid JSON in the shape
// of OpenAPI 3.1, and that it and the handlers agree: every operation it
// describes is routed, and every route answers only the methods it names.
func TestOpenAPIDocument(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Info    struct{ Title, Version string }       `json:"info"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") || doc.Info.Title == "" || len(doc.Paths) == 0 {
		t.Fatalf("document header %+v", doc)
	}
	h := testHandler(Config{})
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	for path, ops := range doc.Paths {
		for _, m := range methods {
			target := strings.Replace(path, "{id}", "ABCDEF1234", 1)
			if path == "/api/v1/probe" {
				target += "?target=example.com"
			}
			w := serve(h, m, target, "127.0.0.1:1", "s3cret")
			_, documented := ops[strings.ToLower(m)]
			// A routed path may answer 404 of its own (no such
			// message); only the catch-all says "no such API endpoint".
			unrouted := w.Code == 405 || w.Code == 404 && strings.Contains(w.Body.String(), "no such API endpoint")
			switch {
			case documented && unrouted:
				t.Errorf("%s %s is documented but answers %d", m, path, w.Code)
			case !documented && !unrouted:
				t.Errorf("%s %s is not documented but answers %d", m, path, w.Code)
			}
		}
	}
	raw := map[string]any{}
	json.Unmarshal(openAPI, &raw)
	checkRefs(t, raw, raw)
}

// checkRefs fails on a $ref that points nowhere in the document.
func checkRefs(t *testing.T, root, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if ref, ok := e.(string); ok && k == "$ref" {
				var cur any = root
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := cur.(map[string]any)
					cur = m[part]
				}
				if cur == nil {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			checkRefs(t, root, e)
		}
	case []any:
		for _, e := range x {
			checkRefs(t, root, e)
		}
	}
}

// TestDashboardRoutes: the dashboard gets every path but /api/ and
// /metrics, which keep their own auth.
func TestDashboardRoutes(t *testing.T) {
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dashboard "+r.URL.Path) })
	h := Handler(Config{}, "s3cret", API(Backend{}), nil, dash)
	for path, want := range map[string]string{"/": "dashboard /", "/messages/X": "dashboard /messages/X", "/login": "dashboard /login"} {
		w := serve(h, "GET", path, "127.0.0.1:5000", "")
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q", path, w.Code, w.Body.String(), want)
		}
	}
	if w := serve(h, "GET", "/api/v1/openapi.json", "127.0.0.1:5000", ""); w.Code != 401 {
		t.Errorf("API without a token beside the dashboard: %d", w.Code)
	}
}
