// Package dashboard is sluice serve's web dashboard: the queue at a
// glance, why mail is stuck, and the fix with a preview. It is served on
// the HTTP API's listener (package httpapi) at /.
//
// Paths, stable for scripts and bookmarks:
//
//	GET  /                  overview: per-queue counts, bytes and oldest;
//	                        qshape heat maps (domains × age) of deferred and
//	                        active (?senders=1: by sender domain); deferrals
//	                        by reason class with an example each; sent,
//	                        deferred and bounced per minute over the hour
//	GET  /messages?select=S the messages selector S picks ("sluice queue"'s
//	                        language), paged with &after=ID; a selector
//	                        error is shown beside the box
//	GET  /messages/{id}     one message: envelope, headers, a text-only body
//	                        preview, each recipient's state and attempts
//	POST /act               an action (hold, release, requeue, retry,
//	                        expire, delete) on a selection: without
//	                        confirm=yes a dry run (count and sample), with
//	                        it the change and its result
//	GET  /destinations      deferred mail per recipient domain: count,
//	                        oldest, classes, last reasons, suspensions
//	POST /destinations/probe, /destinations/suspend, /destinations/resume
//	GET  /events            the live updates (Server-Sent Events)
//	GET  /login, POST /login (field token), POST /logout
//	GET  /static/...        the stylesheet and the one script
//
// The pages are html/templates rendered on the server and readable
// without JavaScript; every action also works as a plain form. The one
// script (static/dash.js) adds live updates, from an EventSource that
// receives small JSON deltas when events change the queue — the queue is
// never polled — and runs actions with fetch, without leaving the page.
//
// Login is with the API token (sluice_http_token_file), posted as the
// form field "token" and compared in constant time. It starts a session
// held in memory, named by a random cookie that is HttpOnly,
// SameSite=Strict, Path=/, and Secure on a TLS listener. Every change
// (every POST but the login) needs the session and the session's CSRF
// token, in the form field "csrf" or the X-CSRF-Token header, compared
// in constant time; a POST whose Origin header names another site is
// refused as well. Addresses, reasons, headers and bodies are text an
// attacker chose: html/template escapes all of them, the body preview is
// shown in a <pre> and never as HTML, and a Content-Security-Policy
// allows only the dashboard's own script and stylesheet, so an injected
// <script> cannot run even if escaping failed.
//
// Every change made here (actions, suspensions) is passed to
// Options.Audit under the token's name, "dashboard".
//
// The overview costs O(queues + classes + domains × buckets) whatever the
// number of queued messages: it reads the model's aggregates, never its
// messages. Heat maps show the busiest domains only (maxHeatRows) so that
// a page stays small; the destinations page lists the rest.
package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Dashboard.
type Options struct {
	Source Source
	// Token is the API token that logs in.
	Token string
	// Rates counts delivery outcomes; the daemon feeds it from its
	// events. Nil shows empty rates.
	Rates *Rates
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Secure marks the session cookie Secure: set it on a TLS listener.
	Secure bool
	// SessionTTL is how long a login lasts (12 hours when zero).
	SessionTTL time.Duration
	// Who is the name actions are recorded under ("dashboard" when "").
	Who string
	// Audit, when set, receives every change made through the dashboard.
	Audit func(AuditRecord)
	// LiveInterval is the least time between two live updates to one
	// browser (one second when zero): a burst of events is one update.
	LiveInterval time.Duration
}

// Dashboard is the dashboard's http.Handler.
type Dashboard struct {
	opt   Options
	src   Source
	sess  *sessions
	pages map[string]*template.Template
	mux   *http.ServeMux
	live  *hub
}

// Limits that keep pages small (under 200 KB) whatever the queue holds.
const (
	maxHeatRows     = 25
	maxHeatChars    = 2500 // of domain names per heat map
	defaultPageSize = 50
	maxPageSize     = 100
	maxRowRcpts     = 3
	maxDetailRcpts  = 100
	maxHeaders      = 100
	maxHeaderLen    = 500
	maxBody         = 16 << 10
	maxFormBytes    = 64 << 10
	maxDestinations = 100
	maxDestChars    = 5000 // of domain names on the destinations page
	maxAddrLen      = 120  // of an address in a listing
	maxReasonLen    = 300  // of a reason in a listing
)

// New builds the dashboard.
func New(opt Options) (*Dashboard, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 12 * time.Hour
	}
	if opt.Who == "" {
		opt.Who = "dashboard"
	}
	if opt.Rates == nil {
		opt.Rates = &Rates{}
	}
	if opt.LiveInterval <= 0 {
		opt.LiveInterval = time.Second
	}
	d := &Dashboard{opt: opt, src: opt.Source, sess: newSessions(opt.Token, opt.SessionTTL, opt.Now), live: newHub()}
	if err := d.parse(); err != nil {
		return nil, err
	}
	d.routes()
	return d, nil
}

// Changed tells the live updates that the queue changed; the daemon
// calls it for every event. It never blocks.
func (d *Dashboard) Changed() { d.live.changed() }

func (d *Dashboard) parse() error {
	d.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return err
		}
		d.pages[base] = t
	}
	return nil
}

func (d *Dashboard) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", d.loginPage)
	m.HandleFunc("POST /login", d.login)
	m.HandleFunc("POST /logout", d.post(d.logout))
	m.HandleFunc("GET /{$}", d.get(d.overview))
	m.HandleFunc("GET /messages", d.get(d.messages))
	m.HandleFunc("GET /messages/{id}", d.get(d.message))
	m.HandleFunc("POST /act", d.post(d.act))
	m.HandleFunc("GET /destinations", d.get(d.destinations))
	m.HandleFunc("POST /destinations/probe", d.post(d.probe))
	m.HandleFunc("POST /destinations/suspend", d.post(d.suspend))
	m.HandleFunc("POST /destinations/resume", d.post(d.resume))
	m.HandleFunc("GET /events", d.get(d.events))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, nil, http.StatusNotFound, "There is no page "+r.URL.Path+".")
	})
	d.mux = m
}

// csp allows the dashboard's own script, stylesheet and connections and
// nothing else: no inline script, no inline style, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	d.mux.ServeHTTP(w, r)
}

type handler func(w http.ResponseWriter, r *http.Request, s *session)

// get wraps a page that needs a session: without one a browser is sent
// to the login form, and comes back afterwards.
func (d *Dashboard) get(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := d.sess.get(r)
		if s == nil {
			if wantsJSON(r) || r.URL.Path == "/events" {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

// post wraps a change: it needs the session, a same-site Origin (when
// the browser sends one) and the session's CSRF token.
func (d *Dashboard) post(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := d.sess.get(r)
		if s == nil {
			d.fail(w, r, nil, http.StatusUnauthorized, "Log in first: the session is missing or has expired.")
			return
		}
		if !sameOrigin(r) {
			d.fail(w, r, s, http.StatusForbidden, "Refused: the request came from another site.")
			return
		}
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, s, http.StatusBadRequest, "The form could not be read.")
			return
		}
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" {
			tok = r.PostForm.Get("csrf")
		}
		if !s.csrfOK(tok) {
			d.fail(w, r, s, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong. Reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// sameOrigin is false when the browser says the request comes from a
// page of another origin. Browsers send Origin with every POST; a
// client without it (curl) is judged by the CSRF token alone.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// page is what every template gets.
type page struct {
	Title  string
	Now    time.Time
	CSRF   string // "" when logged out
	Nav    string
	Notice string
	Queues []QueueCount // the header's counts; nil when logged out
	Data   any
}

// render executes a page's template into a buffer first, so that an
// error never sends half a page.
func (d *Dashboard) render(w http.ResponseWriter, status int, name string, p page) {
	t := d.pages[name]
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		http.Error(w, "dashboard: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (d *Dashboard) newPage(s *session, title, nav string, data any) page {
	p := page{Title: title, Now: d.opt.Now(), Nav: nav, Data: data}
	if s != nil {
		p.CSRF = s.csrf
		p.Queues = d.src.Summary(p.Now).Queues
	}
	return p
}

// fail answers with an error page, or {"error": ...} to fetch.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	d.render(w, status, "error", d.newPage(s, http.StatusText(status), "", msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
