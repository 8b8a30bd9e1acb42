package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/audit"
	"sluice/internal/suspend"
)

// testSuspensions is a store without a file (nothing is ever saved),
// for the route table of testHandler.
func testSuspensions() *suspend.Store {
	st, err := suspend.Open(suspend.Config{Path: ""})
	if err != nil {
		panic(err)
	}
	return st
}

func TestSuspensionsAPI(t *testing.T) {
	dir := t.TempDir()
	st, err := suspend.Open(suspend.Config{Path: filepath.Join(dir, "s.json"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(dir, "audit.log")
	h := Handler(Config{}, "s3cret", API(Backend{Suspensions: st, AuditPath: auditPath}), http.NotFoundHandler(), nil)
	do := func(method, target, body, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("POST", "/api/v1/suspensions", `{"select":"domain=x.example","for":"1h"}`, ""); w.Code != 401 {
		t.Fatalf("without a token: %d", w.Code)
	}
	if w := do("POST", "/api/v1/suspensions", `{"select":"class=timeout","for":"1h"}`, "s3cret"); w.Code != 400 || !strings.Contains(w.Body.String(), "cannot select by class") {
		t.Errorf("bad selector: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/api/v1/suspensions", `{"select":"domain=x.example","for":"soon"}`, "s3cret"); w.Code != 400 {
		t.Errorf("bad duration: %d %s", w.Code, w.Body)
	}
	w := do("POST", "/api/v1/suspensions", `{"select":"domain=*.example.com","for":"2h","reason":"maintenance"}`, "s3cret")
	var x suspend.Suspension
	if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &x) != nil || x.ID != 1 || x.User != "api" || x.Until.Sub(x.Created) != 2*time.Hour {
		t.Fatalf("suspend: %d %s", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != "/api/v1/suspensions/1" {
		t.Errorf("Location %q", loc)
	}
	w = do("GET", "/api/v1/suspensions", "", "s3cret")
	var list []suspend.Suspension
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &list) != nil || len(list) != 1 || list[0].Reason != "maintenance" {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	if w := do("DELETE", "/api/v1/suspensions/5", "", "s3cret"); w.Code != 404 {
		t.Errorf("resume of nothing: %d", w.Code)
	}
	if w := do("DELETE", "/api/v1/suspensions/1", "", "s3cret"); w.Code != 200 || len(st.List()) != 0 {
		t.Errorf("resume: %d %s", w.Code, w.Body)
	}
	var got []audit.Entry
	audit.Read(auditPath, time.Time{}, func(e audit.Entry) error { got = append(got, e); return nil })
	if len(got) != 3 || got[0].Action != "suspend" || got[0].Selector != "domain=*.example.com" || got[2].Action != "resume" || got[2].Changed != 1 {
		t.Fatalf("audit: %+v", got)
	}
	for _, e := range got {
		if e.User != "api" || e.Interface != audit.HTTP || e.UID != -1 {
			t.Errorf("entry %+v", e)
		}
	}
}
