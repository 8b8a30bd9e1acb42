package control

// Suspensions over the control socket (package suspend), and the audit of
// the changes the socket makes (package audit).
//
//	GET    /v1/suspensions        the suspensions in force (anyone who may list)
//	POST   /v1/suspensions        suspend.Request → the new suspension (root, mail owner)
//	DELETE /v1/suspensions/{id}   resume one (root, mail owner)
//	DELETE /v1/suspensions        resume all (root, mail owner)

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"sluice/internal/audit"
	"sluice/internal/suspend"
)

// handleSuspensions registers the suspension routes when the daemon
// has a store.
func (s *Server) handleSuspensions(mux *http.ServeMux) {
	st := s.b.Suspensions
	if st == nil {
		return
	}
	mux.HandleFunc("GET /v1/suspensions", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorize(w, r, AccessList) {
			return
		}
		writeJSON(w, st.List())
	})
	mux.HandleFunc("POST /v1/suspensions", func(w http.ResponseWriter, r *http.Request) {
		if !s.mayChange(r) {
			http.Error(w, "use of this command is reserved for the superuser", http.StatusForbidden)
			return
		}
		var req suspend.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		x, err := st.Do(req, audit.User(peer(r)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.audit(r, audit.Entry{Action: "suspend", Selector: x.Selector, Changed: 1, Detail: x.Describe()})
		writeJSON(w, x)
	})
	resume := func(w http.ResponseWriter, r *http.Request) {
		if !s.mayChange(r) {
			http.Error(w, "use of this command is reserved for the superuser", http.StatusForbidden)
			return
		}
		var ended []suspend.Suspension
		if idText := r.PathValue("id"); idText != "" {
			id, err := strconv.ParseInt(idText, 10, 64)
			if err != nil {
				http.Error(w, "bad suspension ID "+strconv.Quote(idText), http.StatusBadRequest)
				return
			}
			x, err := st.Resume(id)
			if errors.Is(err, suspend.ErrNotFound) {
				s.audit(r, audit.Entry{Action: "resume", Detail: fmt.Sprintf("suspension %d", id), Skipped: 1})
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			ended = append(ended, x)
		} else {
			var err error
			if ended, err = st.ResumeAll(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		for _, x := range ended {
			s.audit(r, audit.Entry{Action: "resume", Selector: x.Selector, Matched: 1, Changed: 1, Detail: fmt.Sprintf("suspension %d", x.ID)})
		}
		if len(ended) == 0 {
			s.audit(r, audit.Entry{Action: "resume", Detail: "all: none in force"})
		}
		writeJSON(w, ended)
	}
	mux.HandleFunc("DELETE /v1/suspensions/{id}", resume)
	mux.HandleFunc("DELETE /v1/suspensions", resume)
}

func peer(r *http.Request) int {
	uid, ok := r.Context().Value(peerKey{}).(int)
	if !ok {
		return -1
	}
	return uid
}

// audit appends e, from the peer of r through the socket, to the audit
// log; a failure to write it is the daemon's warning, not the tool's.
func (s *Server) audit(r *http.Request, e audit.Entry) {
	if s.b.AuditPath == "" {
		return
	}
	e.UID = peer(r)
	e.User = audit.User(e.UID)
	e.Interface = audit.Control
	if s.b.Now != nil {
		e.Time = s.b.Now()
	}
	if err := audit.Append(s.b.AuditPath, e); err != nil && s.b.Warn != nil {
		s.b.Warn("%v", err)
	}
}

// audited wraps the /v1/act and /v1/flush handlers: it reads what was
// asked and counts, from the results streamed back, what was matched,
// changed and skipped, then appends one audit entry. Wrapping keeps the
// handlers themselves unaware of the audit.
func (s *Server) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.b.AuditPath == "" {
			h(w, r)
			return
		}
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 64<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		h(cw, r)
		if cw.status == http.StatusForbidden || cw.status == http.StatusBadRequest {
			return // refused: nothing changed, nothing to record
		}
		e := audit.Entry{}
		switch {
		case strings.HasSuffix(r.URL.Path, "/flush"):
			e.Action = "flush"
			if site := r.URL.Query().Get("site"); site != "" {
				e.Selector = "site=" + site
			}
			if cw.status == http.StatusOK {
				e.Changed = 1
			} else {
				e.Failed = 1
			}
		default:
			var req ActRequest
			json.Unmarshal(body, &req)
			e.Action = string(req.Op)
			e.SetIDs(req.IDs)
			e.Matched, e.Changed, e.Skipped, e.Failed = cw.tally()
		}
		s.audit(r, e)
	}
}

// countingWriter passes a response through and keeps its JSON lines'
// outcomes.
type countingWriter struct {
	http.ResponseWriter
	status int
	buf    []byte
	res    []ActResult
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			break
		}
		var r ActResult
		if json.Unmarshal(c.buf[:i], &r) == nil {
			c.res = append(c.res, r)
		}
		c.buf = c.buf[i+1:]
	}
	return c.ResponseWriter.Write(p)
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// tally counts the results: matched (found), changed, skipped (found,
// nothing to do, or gone), failed.
func (c *countingWriter) tally() (matched, changed, skipped, failed int) {
	for _, r := range c.res {
		switch {
		case r.NotFound:
			skipped++
		case r.Error != "":
			matched++
			failed++
		case r.Changed:
			matched++
			changed++
		default:
			matched++
			skipped++
		}
	}
	return
}

// Suspensions lists the suspensions in force, through the daemon.
func (c *Client) Suspensions(ctx context.Context) ([]suspend.Suspension, error) {
	var out []suspend.Suspension
	return out, c.doJSON(ctx, http.MethodGet, "/v1/suspensions", nil, &out)
}

// Suspend asks the daemon for a suspension.
func (c *Client) Suspend(ctx context.Context, req suspend.Request) (suspend.Suspension, error) {
	var out suspend.Suspension
	return out, c.doJSON(ctx, http.MethodPost, "/v1/suspensions", req, &out)
}

// Resume ends suspension id (all of them when id is 0) and returns
// those it ended.
func (c *Client) Resume(ctx context.Context, id int64) ([]suspend.Suspension, error) {
	path := "/v1/suspensions"
	if id != 0 {
		path += "/" + strconv.FormatInt(id, 10)
	}
	var out []suspend.Suspension
	return out, c.doJSON(ctx, http.MethodDelete, path, nil, &out)
}

func (c *Client) doJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		if strings.Contains(err.Error(), "404 page not found") {
			return errors.New("control: the running daemon does not serve suspensions")
		}
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: read %s: %w", path, err)
	}
	return nil
}
