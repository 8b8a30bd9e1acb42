package httpapi

import (
	"context"
	_ "embed"
	"net/http"
	"strings"
	"time"

	"sluice/internal/audit"
	"sluice/internal/queuesvc"
	"sluice/internal/smtp"
	"sluice/internal/suspend"
)

// Backend is what the daemon offers the API. A nil field leaves its
// routes out (404), so a daemon offers only what it has.
type Backend struct {
	// Probe runs a destination probe with the daemon's delivery client.
	Probe func(ctx context.Context, target string, opt smtp.ProbeOptions) *smtp.ProbeReport
	// Flush makes every deferred message due now (postqueue -f).
	Flush func()
	// Suspensions and AuditPath: suspensions.go.
	Suspensions *suspend.Store
	AuditPath   string // the audit log; "" means none is written
	// Events is the live event stream's ring (events.go).
	Events *Ring
	// Queue answers the queue's views and actions (queue.go).
	Queue *queuesvc.Service
}

//go:embed openapi.json
var openAPI []byte

// probeAnswer is a probe's report with, for a domain, the deferred mail
// queued for it (as sluice probe prints).
type probeAnswer struct {
	*smtp.ProbeReport
	Deferred *queuesvc.DeferredFor `json:"deferred,omitempty"`
}

// probeTimeout bounds one probe over HTTP.
const probeTimeout = 2 * time.Minute

// API is the /api/v1/ handler set over b. It expects the caller to have
// checked the token (Handler does).
func API(b Backend) http.Handler {
	mux := &router{mux: http.NewServeMux(), allow: map[string][]string{}}
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	if b.Probe != nil {
		mux.HandleFunc("GET /api/v1/probe", func(w http.ResponseWriter, r *http.Request) {
			if !allow(w, r, AccessList) {
				return
			}
			q := r.URL.Query()
			target := strings.TrimSpace(q.Get("target"))
			if target == "" {
				Error(w, http.StatusBadRequest, "target is required: a domain, host:port or [address]:port")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
			defer cancel()
			out := probeAnswer{ProbeReport: b.Probe(ctx, target, smtp.ProbeOptions{Sender: q.Get("from"), Recipient: q.Get("rcpt")})}
			if domain := queuesvc.ProbeDomain(target); domain != "" && b.Queue != nil {
				// The mail that waits for the domain, beside what the
				// probe found; a probe answer without it is still useful.
				out.Deferred, _ = b.Queue.DeferredTo(ctx, domain)
			}
			JSON(w, out)
		})
	}
	if b.Flush != nil {
		mux.HandleFunc("POST /api/v1/flush", func(w http.ResponseWriter, r *http.Request) {
			if !allow(w, r, AccessFlush) {
				return
			}
			b.Flush()
			auditAs(w, r, b.AuditPath, audit.Entry{Action: "flush", Changed: 1})
			JSON(w, map[string]bool{"ok": true})
		})
	}
	registerSuspensions(mux, b)
	handleEvents(mux, b.Events)
	if b.Queue != nil {
		queueRoutes(mux, b.Queue, b.AuditPath)
	}
	mux.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if allow := mux.allow[r.URL.Path]; len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			Error(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": use "+strings.Join(allow, " or "))
			return
		}
		Error(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path+" (see /api/v1/openapi.json)")
	})
	return mux.mux
}

// router remembers each path's methods, so that a known path asked with
// another method gets 405 and an Allow header, in JSON like every error.
type router struct {
	mux   *http.ServeMux
	allow map[string][]string
}

func (r *router) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	method, path, _ := strings.Cut(pattern, " ")
	r.allow[path] = append(r.allow[path], method)
	r.mux.HandleFunc(pattern, h)
}
