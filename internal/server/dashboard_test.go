package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/internal/dashboard"
	"sluice/internal/event"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/spool"
)

// modelWith is a loaded model over an empty spool, filled by events: n
// deferred messages to domains domains, arrived over the last three days,
// every third one tried and refused.
func modelWith(tb testing.TB, n, domains int, now time.Time) *model.Model {
	tb.Helper()
	sp := spool.New(tb.TempDir())
	if err := sp.Create(); err != nil {
		tb.Fatal(err)
	}
	m := model.New(model.Config{Spool: sp, Now: func() time.Time { return now }})
	if err := m.Build(context.Background()); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("%012X", i+1)
		m.Observe(&event.Received{ID: id, Queue: spool.Deferred, Time: now, Arrival: now.Add(-time.Duration(i%(3*24*60)) * time.Minute),
			Size: 2000, Sender: fmt.Sprintf("s%d@sender%d.example", i%97, i%13),
			Recipients: []event.Recipient{{Address: fmt.Sprintf("u%d@d%d.example", i, i%domains)}}})
		if i%3 == 0 {
			m.Observe(&event.Deferred{Attempt: event.Attempt{ID: id, Time: now, To: fmt.Sprintf("u%d@d%d.example", i, i%domains),
				DSN: "4.4.1", Reason: "connect to mx.example[192.0.2.1]:25: Connection refused", Class: event.ClassRefused}})
		}
	}
	return m
}

// loggedIn returns a session cookie for h.
func loggedIn(tb testing.TB, h http.Handler, token string) *http.Cookie {
	tb.Helper()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.Name == "sluice_session" {
			return c
		}
	}
	tb.Fatalf("login: %d %s", w.Code, w.Body)
	return nil
}

func newTestDashboard(tb testing.TB, m *model.Model, now time.Time) http.Handler {
	tb.Helper()
	s := &Server{model: m}
	d, err := dashboard.New(dashboard.Options{Source: &dashSource{s: s, notes: newDashNotes()}, Token: "tok", Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// TestDashboardOverviewFromModel: the overview shows the model's counts
// and heat map.
func TestDashboardOverviewFromModel(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	m := modelWith(t, 300, 3, now)
	h := newTestDashboard(t, m, now)
	ck := loggedIn(t, h, "tok")
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(ck)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body := w.Body.String()
	for _, want := range []string{`<td data-k="q.deferred.m">300</td>`, `<td data-k="q.deferred.o">4h59m</td>`,
		`<a href="/messages?select=queue%3Ddeferred&#43;domain%3Dd0.example">d0.example</a></th><td data-k="h.deferred.0.t">100</td>`,
		`<td data-k="c.connection-refused.r">100</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
}

// BenchmarkDashboardOverview renders the overview (the whole HTTP
// answer) over a model of a million deferred messages to 5,000 domains:
// the work is O(domains × buckets), not O(messages).
func BenchmarkDashboardOverview(b *testing.B) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	m := modelWith(b, 1_000_000, 5000, now)
	h := newTestDashboard(b, m, now)
	ck := loggedIn(b, h, "tok")
	b.ResetTimer()
	var size int
	for b.Loop() {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(ck)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("GET /: %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// TestDashboardMessagesPages: pages of a selection over real queue files
// come in ID order, each once, with the cursor of the next.
func TestDashboardMessagesPages(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 23 {
		env := &spool.NewEnvelope{Arrival: now, Sender: "a@src.test",
			Recipients: []spool.NewRecipient{{Address: fmt.Sprintf("u%d@%s.test", i, []string{"one", "two"}[i%2])}}}
		f, err := sp.NewFile(spool.Incoming, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.WriteEnvelope(env); err != nil {
			t.Fatal(err)
		}
		f.WriteLine([]byte("Subject: x"))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := sp.Move(f.ID, spool.Incoming, spool.Deferred); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			want = append(want, f.ID)
		}
	}
	slices.Sort(want)
	src := &dashSource{s: &Server{sp: sp}, q: &manage.Queue{Spool: sp, Now: func() time.Time { return now }}}
	var got []string
	after := ""
	for range 10 {
		pg, err := src.Messages(context.Background(), "domain=one.test", 5, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pg.Messages {
			got = append(got, m.ID)
		}
		if pg.Next == "" {
			break
		}
		after = pg.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %v, want %v", got, want)
	}
	var se *dashboard.SelectorError
	if _, err := src.Messages(context.Background(), "hold", 5, ""); !errors.As(err, &se) {
		t.Errorf("a bare word: %v, want a selector error", err)
	}
}
