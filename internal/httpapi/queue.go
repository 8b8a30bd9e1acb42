package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"sluice/internal/audit"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/queuesvc"
)

// The queue endpoints (package queuesvc does the work):
//
//	GET  /api/v1/summary?by=reason|domain|sender|age|queue&select=…
//	GET  /api/v1/count?select=…
//	GET  /api/v1/messages?select=…&limit=N&after=ID
//	GET  /api/v1/messages/{id}
//	POST /api/v1/actions   {"action": "hold", "select": "…", "dry_run": true}
//	GET  /api/v1/qshape?queue=deferred&senders=1&buckets=10&tick=5&linear=1
//
// The same handlers serve the HTTP listener (behind the bearer token) and
// the control socket (behind the peer's uid, see WithAuthorizer), so
// `sluice queue` and the API answer alike.

// Access is what a request asks to do, for an Authorizer.
type Access string

const (
	AccessList   Access = "list"   // see the queue: authorized_mailq_users
	AccessFlush  Access = "flush"  // deliver now: authorized_flush_users
	AccessChange Access = "change" // change the queue: root and mail_owner
)

// Authorizer says whether the requester may do what; its error is the
// refusal's wording.
type Authorizer func(what Access) error

type authzKey struct{}

// WithAuthorizer returns a context whose requests are checked by a: the
// control socket sets one from the peer's uid. Requests without one (the
// HTTP listener, whose token grants everything) are allowed.
func WithAuthorizer(ctx context.Context, a Authorizer) context.Context {
	return context.WithValue(ctx, authzKey{}, a)
}

// allow answers 403 and returns false when the request may not do what.
func allow(w http.ResponseWriter, r *http.Request, what Access) bool {
	a, _ := r.Context().Value(authzKey{}).(Authorizer)
	if a == nil {
		return true
	}
	if err := a(what); err != nil {
		Error(w, http.StatusForbidden, err.Error())
		return false
	}
	return true
}

// DefaultLimit is how many messages a listing returns when the request
// says nothing; limit=0 asks for all.
const DefaultLimit = 1000

func queueRoutes(mux *router, svc *queuesvc.Service, auditPath string) {
	mux.HandleFunc("GET /api/v1/summary", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, AccessList) {
			return
		}
		sel, ok := selector(w, r)
		if !ok {
			return
		}
		res, err := svc.Summary(r.Context(), sel, r.URL.Query().Get("by"))
		if err != nil {
			reply(w, res, err)
			return
		}
		// The same bytes as JSON(w, res), written as they are made:
		// a summary by sender can be megabytes.
		w.Header().Set("Content-Type", "application/json")
		res.WriteJSON(w)
	})
	mux.HandleFunc("GET /api/v1/count", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, AccessList) {
			return
		}
		sel, ok := selector(w, r)
		if !ok {
			return
		}
		res, err := svc.Count(r.Context(), sel)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /api/v1/messages", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, AccessList) {
			return
		}
		sel, ok := selector(w, r)
		if !ok {
			return
		}
		q := r.URL.Query()
		limit := DefaultLimit
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				Error(w, http.StatusBadRequest, "limit must be a number, 0 for no limit: "+strconv.Quote(v))
				return
			}
			limit = n
		}
		res, err := svc.List(r.Context(), sel, limit, q.Get("after"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /api/v1/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, AccessList) {
			return
		}
		res, err := svc.Show(r.Context(), r.PathValue("id"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /api/v1/actions", func(w http.ResponseWriter, r *http.Request) {
		var req queuesvc.ActRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			Error(w, http.StatusBadRequest, "bad request body: "+err.Error())
			return
		}
		if err := queuesvc.CheckAction(req.Action); err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		// A retry is postqueue -i, a flush; a dry run changes nothing
		// and is a look at the queue; the rest is postsuper's.
		need := AccessChange
		switch {
		case req.DryRun:
			need = AccessList
		case req.Action == manage.OpRetry:
			need = AccessFlush
		}
		if !allow(w, r, need) {
			return
		}
		res, err := svc.Act(r.Context(), req, nil)
		if err == nil && !req.DryRun {
			e := audit.Entry{Action: string(req.Action), Selector: req.Select,
				Matched: res.Matched, Changed: res.Changed, Skipped: res.Skipped, Failed: res.Failed}
			if req.Select == "" {
				e.SetIDs(req.IDs)
			}
			auditAs(w, r, auditPath, e)
		}
		reply(w, res, err)
	})
	mux.HandleFunc("GET /api/v1/qshape", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, AccessList) {
			return
		}
		o, err := qshapeOptions(r)
		if err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		t, ok := svc.QShape(o)
		if !ok {
			Error(w, http.StatusNotImplemented, "the daemon keeps no model of the queue")
			return
		}
		JSON(w, t)
	})
}

// selector parses ?select=; a bad one is answered 400 with the CLI's
// message.
func selector(w http.ResponseWriter, r *http.Request) (*manage.Selector, bool) {
	sel, err := queuesvc.ParseSelector(strings.Join(r.URL.Query()["select"], " "))
	if err != nil {
		Error(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	return sel, true
}

func qshapeOptions(r *http.Request) (model.QShapeOptions, error) {
	q := r.URL.Query()
	var o model.QShapeOptions
	for _, v := range q["queue"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				o.Queues = append(o.Queues, name)
			}
		}
	}
	for _, name := range o.Queues {
		switch name {
		case "incoming", "active", "deferred", "hold", "corrupt":
		default:
			return o, queuesvc.BadRequest("queue %q: want incoming, active, deferred, hold or corrupt", name)
		}
	}
	o.Senders = flag(q.Get("senders"))
	o.Linear = flag(q.Get("linear"))
	if v := q.Get("buckets"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 100 {
			return o, queuesvc.BadRequest("buckets must be a number from 2 to 100: %q", v)
		}
		o.Buckets = n
	}
	if v := q.Get("tick"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			return o, queuesvc.BadRequest("tick must be a positive number of minutes: %q", v)
		}
		o.Tick = f
	}
	return o, nil
}

func flag(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// reply writes v, or err as 400 (the request was wrong), 404 (no such
// message) or 500.
func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		JSON(w, v)
	case errors.Is(err, queuesvc.ErrBadRequest):
		Error(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, queuesvc.ErrNotFound):
		Error(w, http.StatusNotFound, "no such message")
	default:
		Error(w, http.StatusInternalServerError, err.Error())
	}
}
