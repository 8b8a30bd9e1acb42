// Package control is the daemon's control socket: a unix socket in the
// spool (public/sluice-control) that speaks JSON over HTTP. While
// `sluice serve` runs, the tools (postsuper, postqueue -f/-i, sluice
// queue ...) act through it, so every change to the queue goes through the
// queue manager's coordinator and never races a delivery. mailq,
// postqueue -p/-j and qshape get their output from it: the daemon answers
// from its live model of the queue (render.go).
//
// Who may do what follows Postfix: changing the queue is for root and the
// mail owner; listing is for everyone (authorized_mailq_users defaults to
// anyone), and flushing for everyone (authorized_flush_users). The peer's
// uid comes from the socket (SO_PEERCRED), not from anything it says.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/showq"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// SocketName is the socket's path relative to the queue directory.
const SocketName = "public/sluice-control"

// Backend is what the daemon offers through the socket.
type Backend struct {
	Queue *manage.Queue // with the queue manager as its coordinator
	// FlushAll makes every deferred message due now (postqueue -f).
	FlushAll func()
	// FlushSite makes deferred mail for one destination due now
	// (postqueue -s).
	FlushSite func(site string) error
	// MailOwner is the uid that may change the queue besides root.
	MailOwner int
	// Authorize, when set, decides whether the peer's uid may list or
	// flush (authorized_mailq_users, authorized_flush_users); its error
	// is the refusal's wording. Nil lets everyone.
	Authorize func(uid int, what Access) error
	// Listing lists the queue from the model (render.go); nil means the
	// daemon does not serve listings (the tools then read the files
	// themselves).
	Listing *showq.Lister
	// Now is the daemon's clock, qshape's "now"; nil means time.Now.
	Now func() time.Time
	// Model is the daemon's live model of the queue (model.go); nil
	// means the /v1/model requests are not served.
	Model *model.Model
	// Suspensions, AuditPath and Warn: suspend.go.
	Suspensions *suspend.Store
	AuditPath   string               // the audit log; "" means none is written
	Warn        func(string, ...any) // the daemon's warnings (an audit log that cannot be written)
	// Events serves the live event stream (httpapi.EventsHandler) at
	// /v1/events (events.go); nil: not served.
	Events http.Handler
	// API is the HTTP API's handler set (httpapi.API), served under
	// /api/ with the peer's uid for authorization (api.go); nil leaves
	// it out.
	API http.Handler
}

// ActRequest asks for one action on some messages.
type ActRequest struct {
	Op     manage.Op `json:"op"`
	IDs    []string  `json:"ids"`
	Queues []string  `json:"queues,omitempty"`
}

// ActResult is the outcome for one ID; Error is set when it failed
// (NotFound for a message in none of the queues).
type ActResult struct {
	manage.Outcome
	NotFound bool `json:"not_found,omitempty"`
}

type peerKey struct{}

// Server serves a Backend on the control socket.
type Server struct {
	b    Backend
	ln   net.Listener
	http *http.Server
}

// Listen creates the socket under the queue directory root, replacing a
// stale one, and returns a server ready to Serve.
func Listen(root string, b Backend) (*Server, error) {
	ln, err := spool.ListenSocket(filepath.Join(root, SocketName))
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s := &Server{b: b, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/act", s.audited(s.handleAct))
	mux.HandleFunc("GET /v1/messages", s.handleList)
	mux.HandleFunc("POST /v1/flush", s.audited(s.handleFlush))
	s.handleSuspensions(mux)
	mux.HandleFunc("POST /v1/listing", s.handleListing)
	mux.HandleFunc("POST /v1/qshape", s.handleQshape)
	s.handleModel(mux)
	s.handleEvents(mux)
	s.handleAPI(mux)
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, map[string]int{"pid": os.Getpid()}) })
	s.http = &http.Server{
		Handler:     mux,
		ReadTimeout: time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, PeerUID(c))
		},
	}
	return s, nil
}

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	err := s.http.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	path := s.ln.Addr().String()
	err := s.http.Shutdown(ctx)
	os.Remove(path)
	return err
}

// PeerUID returns the uid of the process at the other end of a unix
// socket (SO_PEERCRED), or -1.
func PeerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

func (s *Server) mayChange(r *http.Request) bool {
	uid, _ := r.Context().Value(peerKey{}).(int)
	return uid == 0 || (s.b.MailOwner > 0 && uid == s.b.MailOwner)
}

func (s *Server) handleAct(w http.ResponseWriter, r *http.Request) {
	var req ActRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !s.mayChange(r) && req.Op != manage.OpRetry {
		http.Error(w, "use of this command is reserved for the superuser", http.StatusForbidden)
		return
	}
	if req.Op == manage.OpRetry && !s.mayChange(r) && !s.authorize(w, r, AccessFlush) {
		return
	}
	known := false
	for _, op := range manage.Ops {
		known = known || op == req.Op
	}
	if !known {
		http.Error(w, "unknown action "+strconv.Quote(string(req.Op)), http.StatusBadRequest)
		return
	}
	// Results stream as JSON lines, one per ID, so a long bulk action
	// shows progress and a client that goes away stops it.
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	for _, id := range req.IDs {
		if r.Context().Err() != nil {
			return
		}
		out, err := s.b.Queue.Act(r.Context(), req.Op, id, req.Queues)
		res := ActResult{Outcome: out}
		if err != nil {
			res.Error = err.Error()
			res.NotFound = errors.Is(err, manage.ErrNotFound)
		}
		enc.Encode(res)
		if fl != nil {
			fl.Flush()
		}
	}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, AccessList) {
		return
	}
	sel, err := manage.ParseSelector(r.URL.Query()["term"]...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	full := r.URL.Query().Get("full") != ""
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err = s.b.Queue.Each(r.Context(), sel, manage.SelectOptions{Full: full}, func(m *manage.Message) error {
		return enc.Encode(m)
	})
	if err != nil && r.Context().Err() == nil {
		enc.Encode(map[string]string{"error": err.Error()})
	}
}

func (s *Server) handleFlush(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, AccessFlush) {
		return
	}
	site := r.URL.Query().Get("site")
	if site == "" {
		if s.b.FlushAll != nil {
			s.b.FlushAll()
		}
		writeJSON(w, map[string]bool{"ok": true})
		return
	}
	if s.b.FlushSite == nil {
		http.Error(w, "site flush not available", http.StatusNotImplemented)
		return
	}
	if err := s.b.FlushSite(site); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, map[string]bool{"ok": true})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
