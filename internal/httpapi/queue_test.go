package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

// queueHandler is the API over a spool with two deferred messages and a
// model of it; it returns their IDs.
func queueHandler(t *testing.T) (http.Handler, []string) {
	t.Helper()
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1795964910, 0)
	var ids []string
	for i, rcpt := range []string{"bob@example.com", "carol@example.org"} {
		f, err := sp.NewFile(spool.Incoming, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.WriteEnvelope(&spool.NewEnvelope{Arrival: now.Add(-time.Duration(i+1) * time.Hour), Sender: "alice@src.test", Recipients: []spool.NewRecipient{{Address: rcpt}}}); err != nil {
			t.Fatal(err)
		}
		f.WriteLine([]byte("Subject: hello"))
		f.WriteLine(nil)
		f.WriteLine([]byte("body"))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := sp.Move(f.ID, spool.Incoming, spool.Deferred); err != nil {
			t.Fatal(err)
		}
		if err := sp.AppendHistory(f.ID, spool.Attempt{Time: now, Arrival: now.Add(-time.Duration(i+1) * time.Hour).Unix(), Recipient: rcpt, Relay: "none", Status: "deferred", Reason: "connect to x: Connection refused"}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	clock := func() time.Time { return now }
	m := model.New(model.Config{Spool: sp, Now: clock})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc := &queuesvc.Service{Queue: &manage.Queue{Spool: sp, Now: clock, Events: m}, Model: m, Now: clock, MaxLifetime: 5 * 24 * time.Hour}
	return Handler(Config{}, "s3cret", API(Backend{Queue: svc, Flush: func() {}}), nil, nil), ids
}

func call(t *testing.T, h http.Handler, method, target string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, target, rd)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// TestQueueEndpoints: each endpoint answers, a bad selector is a 400 with
// the CLI's message, and every answer has exactly the keys its schema in
// openapi.json names (no undocumented key, no missing required one).
func TestQueueEndpoints(t *testing.T) {
	h, ids := queueHandler(t)
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		method, target string
		body           any
		schema         string
	}{
		{"GET", "/api/v1/summary?by=domain&select=queue%3Ddeferred", nil, "Summary"},
		{"GET", "/api/v1/summary", nil, "Summary"},
		{"GET", "/api/v1/count?select=domain%3Dexample.com", nil, "Count"},
		{"GET", "/api/v1/messages?limit=1", nil, "MessageList"},
		{"GET", "/api/v1/messages/" + ids[0], nil, "MessageDetail"},
		{"GET", "/api/v1/qshape?queue=deferred&senders=1", nil, "QShape"},
		{"POST", "/api/v1/actions", map[string]any{"action": "hold", "select": "rcpt=bob@example.com", "dry_run": true}, "ActionResult"},
		{"POST", "/api/v1/actions", map[string]any{"action": "hold", "select": "rcpt=bob@example.com"}, "ActionResult"},
	}
	for _, c := range checks {
		code, body := call(t, h, c.method, c.target, c.body)
		if code != 200 {
			t.Errorf("%s %s: %d %s", c.method, c.target, code, body)
			continue
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: %v", c.method, c.target, err)
			continue
		}
		checkSchema(t, c.method+" "+c.target, doc, map[string]any{"$ref": "#/components/schemas/" + c.schema}, v)
	}
	// The listing pages with its cursor.
	_, body := call(t, h, "GET", "/api/v1/messages?limit=1", nil)
	var page queuesvc.ListResult
	json.Unmarshal(body, &page)
	if len(page.Messages) != 1 || page.Next == "" {
		t.Fatalf("first page: %s", body)
	}
	_, body = call(t, h, "GET", "/api/v1/messages?limit=1&after="+page.Next, nil)
	var page2 queuesvc.ListResult
	json.Unmarshal(body, &page2)
	if len(page2.Messages) != 1 || page2.Next != "" || page2.Messages[0].ID == page.Messages[0].ID {
		t.Errorf("second page: %s", body)
	}
	// The hold above took the message out of deferred/.
	_, body = call(t, h, "GET", "/api/v1/messages/"+ids[0], nil)
	var d queuesvc.Detail
	json.Unmarshal(body, &d)
	if d.Queue != spool.Hold || d.NextState != "hold" || len(d.History) != 1 || len(d.Headers) != 1 {
		t.Errorf("after hold: %s", body)
	}
	// Errors: the CLI's selector message, 404 for a missing message.
	_, cliErr := manage.ParseSelector("hold")
	for target, want := range map[string]int{
		"/api/v1/messages?select=hold":     400,
		"/api/v1/summary?by=colour":        400,
		"/api/v1/messages?limit=x":         400,
		"/api/v1/messages/ABCDEF1234":      404,
		"/api/v1/messages/..%2Fetc":        400,
		"/api/v1/qshape?queue=nosuchqueue": 400,
	} {
		code, body := call(t, h, "GET", target, nil)
		if code != want {
			t.Errorf("%s: %d %s, want %d", target, code, body, want)
		}
		if strings.Contains(target, "select=hold") && !strings.Contains(string(body), strings.ReplaceAll(cliErr.Error(), `"`, `\"`)) {
			t.Errorf("%s: %s, want the CLI's %q", target, body, cliErr)
		}
	}
	for _, bad := range []any{map[string]any{"action": "nuke", "select": "id=" + ids[1]}, map[string]any{"action": "hold"}, map[string]any{"action": "hold", "select": "x", "colour": 1}} {
		if code, body := call(t, h, "POST", "/api/v1/actions", bad); code != 400 {
			t.Errorf("%v: %d %s", bad, code, body)
		}
	}
}

// TestAuthorizer: with an authorizer in the context (the control
// socket's), a dry run needs only "list", a change "change", a retry
// "flush".
func TestAuthorizer(t *testing.T) {
	h, ids := queueHandler(t)
	api := h
	for _, tc := range []struct {
		body    map[string]any
		allowed Access
		want    int
	}{
		{map[string]any{"action": "hold", "select": "id=" + ids[1], "dry_run": true}, AccessList, 200},
		{map[string]any{"action": "hold", "select": "id=" + ids[1]}, AccessList, 403},
		{map[string]any{"action": "retry", "select": "id=" + ids[1]}, AccessFlush, 200},
		{map[string]any{"action": "hold", "select": "id=" + ids[1]}, AccessChange, 200},
	} {
		b, _ := json.Marshal(tc.body)
		r := httptest.NewRequest("POST", "/api/v1/actions", bytes.NewReader(b))
		r.RemoteAddr = "127.0.0.1:1"
		r.Header.Set("Authorization", "Bearer s3cret")
		allowed := tc.allowed
		r = r.WithContext(WithAuthorizer(r.Context(), func(what Access) error {
			if what != allowed && !(allowed == AccessChange) && !(allowed == AccessFlush && what == AccessList) {
				return errString("refused " + string(what))
			}
			return nil
		}))
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%v with %s: %d %s", tc.body, tc.allowed, w.Code, w.Body)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// checkSchema checks v against a schema of the document: objects have
// only the properties it names and all it requires; arrays' items and
// additionalProperties are checked in turn.
func checkSchema(t *testing.T, where string, doc map[string]any, schema map[string]any, v any) {
	t.Helper()
	for {
		ref, ok := schema["$ref"].(string)
		if !ok {
			break
		}
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		schema = cur.(map[string]any)
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		if addl, ok := schema["additionalProperties"].(map[string]any); ok && props == nil {
			for _, e := range x {
				checkSchema(t, where, doc, addl, e)
			}
			return
		}
		for k, e := range x {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s: key %q is not in the schema", where, k)
				continue
			}
			checkSchema(t, where+"."+k, doc, ps, e)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := x[r.(string)]; !ok {
				t.Errorf("%s: required key %q missing", where, r)
			}
		}
	case []any:
		items, _ := schema["items"].(map[string]any)
		for _, e := range x {
			if items != nil {
				checkSchema(t, where+"[]", doc, items, e)
			}
		}
	}
}
