package dashboard

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "s3cret-token"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t      *testing.T
	src    *fakeSource
	clk    *clock
	dash   *Dashboard
	srv    *httptest.Server
	audits []AuditRecord
	mu     sync.Mutex
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, src: newFake(), clk: &clock{t: t0}}
	opt := Options{Source: e.src, Token: testToken, Now: e.clk.now, LiveInterval: 10 * time.Millisecond,
		Audit: func(r AuditRecord) { e.mu.Lock(); e.audits = append(e.audits, r); e.mu.Unlock() }}
	if mod != nil {
		mod(&opt)
	}
	d, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	e.dash = d
	e.srv = httptest.NewServer(d)
	t.Cleanup(e.srv.Close)
	return e
}

// client is a browser without a session: it keeps cookies and does not
// follow redirects, so that tests see them.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) do(c *http.Client, method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login logs c in and returns the session's CSRF token.
func (e *env) login(c *http.Client) string {
	e.t.Helper()
	resp, _ := e.do(c, "POST", "/login", url.Values{"token": {testToken}, "next": {"/messages"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/messages" {
		e.t.Fatalf("login: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	_, body := e.do(c, "GET", "/", nil, nil)
	return csrfOf(e.t, body)
}

var csrfRe = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", body)
	}
	return m[1]
}

func TestLoginRequiredAndCookie(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Secure = true })
	c := e.client()
	for _, p := range []string{"/", "/messages?select=queue%3Ddeferred", "/messages/4AB01", "/destinations"} {
		resp, _ := e.do(c, "GET", p, nil, nil)
		want := "/login?next=" + url.QueryEscape(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET %s without a session: %s to %q, want 303 to %q", p, resp.Status, resp.Header.Get("Location"), want)
		}
	}
	if resp, _ := e.do(c, "GET", "/events", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("events without a session: %s", resp.Status)
	}
	resp, body := e.do(c, "POST", "/login", url.Values{"token": {"wrong"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not the API token") || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %s, cookies %v", resp.Status, resp.Cookies())
	}
	resp, _ = e.do(c, "POST", "/login", url.Values{"token": {testToken}, "next": {"//evil.example/x"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("login with a foreign next: %s to %q, want / (no open redirect)", resp.Status, resp.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == cookieName {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || len(ck.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, a long random value", ck)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "SameSite=Strict") {
		t.Errorf("Set-Cookie %q", resp.Header.Get("Set-Cookie"))
	}
	// The jar does not send Secure cookies over http; send it by hand.
	req, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: ck.Value})
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Errorf("GET / with the session: %s", r2.Status)
	}
	if csp := r2.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
}

func TestSessionExpiryAndLogout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SessionTTL = time.Hour })
	c := e.client()
	csrf := e.login(c)
	if resp, _ := e.do(c, "GET", "/", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("logged in: %s", resp.Status)
	}
	// Logout is a change: without the CSRF token it is refused.
	if resp, _ := e.do(c, "POST", "/logout", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF: %s", resp.Status)
	}
	resp, _ := e.do(c, "POST", "/logout", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %s", resp.Status)
	}
	if resp, _ := e.do(c, "GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %s, want a redirect to the login", resp.Status)
	}
	c = e.client()
	e.login(c)
	e.clk.add(time.Hour + time.Second)
	if resp, _ := e.do(c, "GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the session's time: %s, want a redirect to the login", resp.Status)
	}
}

func TestOverview(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	e.dash.opt.Rates.Add("sent", t0.Add(-2*time.Minute))
	e.dash.opt.Rates.Add("sent", t0.Add(-2*time.Minute))
	e.dash.opt.Rates.Add("deferred", t0)
	resp, body := e.do(c, "GET", "/", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	for _, want := range []string{
		`<td data-k="q.deferred.m">7</td>`, `<td data-k="q.deferred.r">9</td>`, `<td data-k="q.deferred.b">9.0 MB</td>`, `<td data-k="q.deferred.o">50m</td>`,
		// the example.com row: 2 in the 20m-40m column, linked to its selection
		`<td class="h4" data-l="h.deferred.0.3"><a href="/messages?select=queue%3Ddeferred&#43;domain%3Dexample.com&#43;age%3E%3D20m&#43;age%3C40m" data-k="h.deferred.0.3">2</a></td>`,
		`<a href="/messages?select=class%3Dconnection-refused" title="the peer refused the TCP connection">connection-refused</a>`,
		`450 4.7.1 &lt;script&gt;alert(1)&lt;/script&gt;`,
		`<b data-k="r.sent">2</b>`, `<b data-k="r.deferred">1</b>`,
		`href="/?senders=1"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	if strings.Contains(body, evil) {
		t.Error("overview has the reason's <script> unescaped")
	}
	_, body = e.do(c, "GET", "/?senders=1", nil, nil)
	for _, want := range []string{`/messages?select=queue%3Ddeferred&#43;sender%3D%3C%3E`, `sender_domain%3Dsender.example`} {
		if !strings.Contains(body, want) {
			t.Errorf("senders overview lacks %s", want)
		}
	}
}

func TestCellSelector(t *testing.T) {
	b := []float64{5, 10, 20, 40}
	for _, c := range []struct {
		senders bool
		domain  string
		col     int
		want    string
	}{
		{false, "example.com", 0, "queue=deferred domain=example.com age<5m"},
		{false, "example.com", 2, "queue=deferred domain=example.com age>=10m age<20m"},
		{false, "example.com", 4, "queue=deferred domain=example.com age>=40m"},
		{false, "", 1, "queue=deferred age>=5m age<10m"},
		{true, "MAILER-DAEMON", -1, "queue=deferred sender=<>"},
		{true, "s.example", 1, "queue=deferred sender_domain=s.example age>=5m age<10m"},
		{false, "a b", -1, `queue=deferred domain="a b"`},
	} {
		if got := cellSelector("deferred", c.senders, c.domain, b, c.col); got != c.want {
			t.Errorf("cellSelector(%v, %q, %d) = %q, want %q", c.senders, c.domain, c.col, got, c.want)
		}
	}
	if got := ageTerm("<", 2.5); got != "age<150s" {
		t.Errorf("ageTerm(2.5) = %q", got)
	}
}

func TestMessagesPage(t *testing.T) {
	e := newEnv(t, nil)
	e.src.selErr = `bogus: not a selector term (did you mean queue=bogus?)`
	c := e.client()
	e.login(c)
	resp, body := e.do(c, "GET", "/messages?select=bogus", nil, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `<p id="select-err" class="error" role="alert">bogus: not a selector term (did you mean queue=bogus?)</p>`) ||
		!strings.Contains(body, `value="bogus"`) {
		t.Errorf("selector error: %s\n%s", resp.Status, body)
	}
	resp, body = e.do(c, "GET", "/messages?select=queue%3Ddeferred&limit=2", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s", resp.Status)
	}
	for _, want := range []string{`<a class="id" href="/messages/4AB01">4AB01</a>`, `4AB02`, `&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;@x.example`,
		`<i>and 1 more</i>`, `href="/messages?after=4AB02&amp;limit=2&amp;select=queue%3Ddeferred" rel="next"`, `name="csrf"`} {
		if !strings.Contains(body, want) {
			t.Errorf("messages page lacks %s", want)
		}
	}
	if strings.Contains(body, "4AB03") || strings.Contains(body, evil) {
		t.Error("page 1 shows page 2, or an unescaped sender")
	}
	_, body = e.do(c, "GET", "/messages?select=queue%3Ddeferred&limit=2&after=4AB02", nil, nil)
	if !strings.Contains(body, "4AB03") || strings.Contains(body, `rel="next"`) {
		t.Error("page 2 is wrong")
	}
}

func TestMessagePage(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	resp, body := e.do(c, "GET", "/messages/4AB01", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s", resp.Status)
	}
	for _, want := range []string{
		`<pre class="body">Hello &lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;`,
		`<th scope="row">Subject</th><td>&lt;script&gt;`,
		`<td class="attempts">2</td>`, `mx.example.com[192.0.2.1]:25`, `2026-03-01 11:55:00 UTC`,
		`2026-03-01 12:10:00 UTC (in 10m)`, `2026-03-06 12:00:00 UTC`, `name="select" value="id=4AB01"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %s", want)
		}
	}
	if strings.Contains(body, evil) || strings.Contains(body, "<b>bold") {
		t.Error("message page renders attacker text as HTML")
	}
	if resp, _ := e.do(c, "GET", "/messages/NOPE", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown message: %s", resp.Status)
	}
}

func TestActNeedsCSRFAndPreviews(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	csrf := e.login(c)
	form := func(extra ...string) url.Values {
		v := url.Values{"action": {"hold"}, "select": {"domain=example.com"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	for _, c2 := range []struct {
		name string
		c    *http.Client
		form url.Values
		hdr  map[string]string
	}{
		{"no session", e.client(), form("csrf", csrf, "confirm", "yes"), nil},
		{"no token", c, form("confirm", "yes"), nil},
		{"wrong token", c, form("csrf", csrf+"x", "confirm", "yes"), nil},
		{"wrong header", c, form("confirm", "yes"), map[string]string{"X-CSRF-Token": "nope"}},
		{"other origin", c, form("csrf", csrf, "confirm", "yes"), map[string]string{"Origin": "http://evil.example"}},
	} {
		resp, _ := e.do(c2.c, "POST", "/act", c2.form, c2.hdr)
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %s, want 403 or 401", c2.name, resp.Status)
		}
	}
	if len(e.src.acts) != 0 || len(e.audits) != 0 {
		t.Fatalf("a refused request reached the source: %+v", e.src.acts)
	}
	// Without confirm: a dry run, with a confirm form.
	resp, body := e.do(c, "POST", "/act", form("csrf", csrf), map[string]string{"Origin": e.srv.URL})
	if resp.StatusCode != http.StatusOK || len(e.src.acts) != 1 || !e.src.acts[0].DryRun || e.src.acts[0].Who != "dashboard" {
		t.Fatalf("preview: %s, acts %+v", resp.Status, e.src.acts)
	}
	for _, want := range []string{`Would hold <b class="changed">2</b> of <b class="matched">3</b>`, `4AB03: already on hold`,
		`<input type="hidden" name="confirm" value="yes">`, `<a class="id" href="/messages/4AB01">`} {
		if !strings.Contains(body, want) {
			t.Errorf("preview lacks %s", want)
		}
	}
	if len(e.audits) != 0 {
		t.Error("a dry run was audited")
	}
	// The script's way: JSON, CSRF token in a header.
	resp, body = e.do(c, "POST", "/act", form("confirm", "yes"), map[string]string{"X-CSRF-Token": csrf, "Accept": "application/json"})
	var j actJSON
	if err := json.Unmarshal([]byte(body), &j); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %s %s", resp.Status, body)
	}
	if j.DryRun || j.Changed != 2 || len(e.src.acts) != 2 || e.src.acts[1].DryRun {
		t.Errorf("confirm: %+v, acts %+v", j, e.src.acts)
	}
	if len(e.audits) != 1 || e.audits[0].Who != "dashboard" || e.audits[0].Action != "hold" || e.audits[0].Selector != "domain=example.com" || e.audits[0].Changed != 2 {
		t.Errorf("audit %+v", e.audits)
	}
	// A bad action or an empty selector never reaches the source.
	n := len(e.src.acts)
	e.do(c, "POST", "/act", url.Values{"csrf": {csrf}, "action": {"rm -rf"}, "select": {"domain=x"}}, nil)
	e.do(c, "POST", "/act", url.Values{"csrf": {csrf}, "action": {"delete"}, "select": {"  "}}, nil)
	if len(e.src.acts) != n {
		t.Errorf("invalid requests reached the source: %+v", e.src.acts[n:])
	}
	e.src.selErr = "bogus: unknown key"
	resp, body = e.do(c, "POST", "/act", url.Values{"csrf": {csrf}, "action": {"hold"}, "select": {"bogus=1"}}, map[string]string{"Accept": "application/json"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"selector_error":true`) {
		t.Errorf("selector error: %s %s", resp.Status, body)
	}
}

func TestDestinations(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	csrf := e.login(c)
	_, body := e.do(c, "GET", "/destinations", nil, nil)
	for _, want := range []string{`Suspensions are not available in this daemon.`, `Connection refused &lt;script&gt;`,
		`href="/messages?select=queue%3Ddeferred&#43;domain%3Dexample.com&#43;class%3Dconnection-refused"`, `action="/destinations/probe"`} {
		if !strings.Contains(body, want) {
			t.Errorf("destinations lack %s", want)
		}
	}
	if strings.Contains(body, `action="/destinations/suspend"`) {
		t.Error("a suspend form is offered without suspensions")
	}
	resp, _ := e.do(c, "POST", "/destinations/suspend", url.Values{"csrf": {csrf}, "target": {"example.com"}, "duration": {"1h"}}, nil)
	if resp.StatusCode != http.StatusNotImplemented || len(e.src.suspends) != 0 {
		t.Errorf("suspend without suspensions: %s %v", resp.Status, e.src.suspends)
	}
	e.src.caps.Suspend = true
	_, body = e.do(c, "GET", "/destinations", nil, nil)
	if !strings.Contains(body, `action="/destinations/suspend"`) || strings.Contains(body, "not available") {
		t.Error("suspend form missing")
	}
	if resp, _ := e.do(c, "POST", "/destinations/suspend", url.Values{"target": {"example.com"}, "duration": {"1h"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("suspend without CSRF: %s", resp.Status)
	}
	resp, body = e.do(c, "POST", "/destinations/suspend", url.Values{"csrf": {csrf}, "target": {"example.com"}, "duration": {"2d"}, "reason": {"maintenance"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Suspended delivery to example.com for 2d") {
		t.Errorf("suspend: %s", resp.Status)
	}
	resp, _ = e.do(c, "POST", "/destinations/suspend", url.Values{"csrf": {csrf}, "target": {"example.com"}, "duration": {"soon"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("suspend with a bad duration: %s", resp.Status)
	}
	e.do(c, "POST", "/destinations/resume", url.Values{"csrf": {csrf}, "target": {"example.com"}}, nil)
	want := []string{"suspend example.com 48h0m0s maintenance dashboard", "resume example.com dashboard"}
	if fmt.Sprint(e.src.suspends) != fmt.Sprint(want) {
		t.Errorf("suspensions %q, want %q", e.src.suspends, want)
	}
	if len(e.audits) != 2 || e.audits[0].Action != "suspend" || e.audits[1].Action != "resume" {
		t.Errorf("audits %+v", e.audits)
	}
	resp, body = e.do(c, "POST", "/destinations/probe", url.Values{"csrf": {csrf}, "target": {"example.com"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Probe of example.com") || !strings.Contains(body, "220 &lt;b&gt;hi&lt;/b&gt;") || len(e.src.probes) != 1 {
		t.Errorf("probe: %s %v", resp.Status, e.src.probes)
	}
}

// TestLive reads the event stream: a full state first, then only what
// changed after Changed.
func TestLive(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	req, _ := http.NewRequest("GET", e.srv.URL+"/events?view=overview", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	next := func() liveState {
		t.Helper()
		type res struct {
			s   liveState
			err error
		}
		ch := make(chan res, 1)
		go func() {
			var data string
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					ch <- res{err: err}
					return
				}
				line = strings.TrimRight(line, "\n")
				if d, ok := strings.CutPrefix(line, "data: "); ok {
					data = d
				}
				if line == "" && data != "" {
					var s liveState
					ch <- res{s, json.Unmarshal([]byte(data), &s)}
					return
				}
			}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.s
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return liveState{}
	}
	first := next()
	if first.Set["q.deferred.m"] != "7" || first.Set["h.deferred.0.3"] != "2" || first.Level["h.deferred.0.3"] == 0 || first.Shape == "" {
		t.Fatalf("first state: %+v", first)
	}
	e.src.mu.Lock()
	e.src.summary.Queues[3].Messages = 4
	e.src.summary.Queues[4].Messages = 4
	e.src.mu.Unlock()
	e.dash.opt.Rates.Add("sent", t0)
	e.dash.Changed()
	d := next()
	want := map[string]string{"q.deferred.m": "4", "q.hold.m": "4", "r.sent": "1"}
	for k, v := range want {
		if d.Set[k] != v {
			t.Errorf("delta %s = %q, want %q", k, d.Set[k], v)
		}
	}
	if len(d.Set) != len(want) || d.Bars["r.sent.59"] != barH || len(d.Bars) != 1 || d.Shape != first.Shape {
		t.Errorf("delta has more than the change: %+v", d)
	}
	// A new domain changes the shape: the script redraws.
	e.src.mu.Lock()
	h := e.src.heat["deferred"]
	h.Rows = append(h.Rows, HeatRow{Domain: "new.example", Total: 1, Counts: []int64{1}})
	e.src.heat["deferred"] = h
	e.src.mu.Unlock()
	e.dash.Changed()
	if d := next(); d.Shape == first.Shape {
		t.Error("a new row did not change the shape")
	}
}

func TestRates(t *testing.T) {
	var r Rates
	now := time.Date(2026, 3, 1, 12, 30, 20, 0, time.UTC)
	r.Add("sent", now)
	r.Add("sent", now.Add(-10*time.Second))
	r.Add("bounced", now.Add(-59*time.Minute))
	r.Add("deferred", now.Add(-61*time.Minute)) // outside the hour
	r.Add("other", now)
	s := r.Snapshot(now)
	if s.Totals[0] != 2 || s.Counts[0][59] != 2 || s.Totals[2] != 1 || s.Counts[2][0] != 1 || s.Totals[1] != 0 {
		t.Errorf("snapshot %+v", s)
	}
	// An hour later the slots are reused, not added to.
	r.Add("sent", now.Add(time.Hour))
	s = r.Snapshot(now.Add(time.Hour))
	if s.Totals[0] != 1 || s.Totals[2] != 0 {
		t.Errorf("an hour later: %+v", s.Totals)
	}
}

// TestPageSizes fills every list past its page limits: pages stay
// under 200 KB.
func TestPageSizes(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("x", 200)
	h := HeatMap{Bounds: []float64{5, 10, 20, 40, 80, 160, 320, 640, 1280}}
	for i := range 5000 {
		h.Rows = append(h.Rows, HeatRow{Domain: fmt.Sprintf("d%d.%s.example", i, long), Total: 10, Counts: []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}})
	}
	e.src.heat["deferred"], e.src.heat["active"] = h, h
	e.src.msgs = nil
	for i := range 5000 {
		var rc []string
		for j := range 100 {
			rc = append(rc, fmt.Sprintf("r%d@%s.example", j, long))
		}
		e.src.msgs = append(e.src.msgs, MessageRow{ID: fmt.Sprintf("M%05d", i), Queue: "deferred", Sender: long + "@x", Recipients: rc, Reason: long})
	}
	m := *e.src.details["4AB01"]
	m.Body = strings.Repeat(long+"\n", 10000)
	m.Headers = nil
	for range 5000 {
		m.Headers = append(m.Headers, Header{"Received", strings.Repeat(long, 20)})
	}
	m.Recipients = nil
	for range 5000 {
		m.Recipients = append(m.Recipients, e.src.details["4AB01"].Recipients[0])
	}
	e.src.details["4AB01"] = &m
	e.src.dests = nil
	for i := range 5000 {
		e.src.dests = append(e.src.dests, Destination{Domain: fmt.Sprintf("d%d.example", i), Reasons: []string{long, long, long, long}})
	}
	c := e.client()
	e.login(c)
	for _, p := range []string{"/", "/?senders=1", "/messages?select=queue%3Ddeferred&limit=100000", "/messages/4AB01", "/destinations"} {
		resp, body := e.do(c, "GET", p, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", p, resp.Status)
		}
		if len(body) >= 200<<10 {
			t.Errorf("%s is %d bytes, over 200 KB", p, len(body))
		}
		t.Logf("%s: %d bytes", p, len(body))
	}
}

func TestStatic(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	for p, ct := range map[string]string{"/static/dash.js": "text/javascript", "/static/dash.css": "text/css"} {
		resp, body := e.do(c, "GET", p, nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) || len(body) < 100 {
			t.Errorf("%s: %s %q", p, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
	_, body := e.do(c, "GET", "/static/dash.css", nil, nil)
	if !strings.Contains(body, "prefers-color-scheme: dark") {
		t.Error("no dark mode in the stylesheet")
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{"/messages?x=1": "/messages?x=1", "//evil": "/", "https://evil": "/", "/\\evil": "/", "": "/", "/a\r\nSet-Cookie: x": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{45 * time.Second: "45s", 90 * time.Second: "1m30s", 50 * time.Minute: "50m",
		3*time.Hour + 5*time.Minute: "3h05m", 52 * time.Hour: "2d4h", -10 * time.Minute: "in 10m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
