package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"sluice/internal/model"
)

// The model requests answer from the daemon's live model of the queue
// (package model), without reading a queue file:
//
//	GET  /v1/model/summary          counts, bytes and oldest per queue; recipients by reason class
//	POST /v1/model/qshape           a qshape table (body: model.QShapeOptions)
//	GET  /v1/model/message?id=ID    one message with its recipients' state
//	POST /v1/model/reconcile        compare with the files now; returns the drift found
//
// Each answer says whether the model is still loading; a client that
// needs complete answers reads the files meanwhile. Reading is for those
// who may list (authorized_mailq_users); reconcile for those who may
// change the queue.
func (s *Server) handleModel(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/model/summary", func(w http.ResponseWriter, r *http.Request) {
		if m := s.model(w, r); m != nil {
			writeJSON(w, m.Summary())
		}
	})
	mux.HandleFunc("POST /v1/model/qshape", func(w http.ResponseWriter, r *http.Request) {
		m := s.model(w, r)
		if m == nil {
			return
		}
		var o model.QShapeOptions
		if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		now := time.Now
		if s.b.Now != nil {
			now = s.b.Now
		}
		writeJSON(w, m.QShape(o, now()))
	})
	mux.HandleFunc("GET /v1/model/message", func(w http.ResponseWriter, r *http.Request) {
		m := s.model(w, r)
		if m == nil {
			return
		}
		msg, ok := m.Message(r.URL.Query().Get("id"))
		if !ok {
			http.Error(w, "no such message", http.StatusNotFound)
			return
		}
		writeJSON(w, ModelMessage{Loading: m.Loading(), Message: msg})
	})
	mux.HandleFunc("POST /v1/model/reconcile", func(w http.ResponseWriter, r *http.Request) {
		if !s.mayChange(r) {
			http.Error(w, "use of this command is reserved for the superuser", http.StatusForbidden)
			return
		}
		m := s.model(w, r)
		if m == nil {
			return
		}
		n, err := m.Reconcile(r.Context(), 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, ReconcileResult{Drift: n, Total: m.Drift()})
	})
}

// ModelMessage is the answer to /v1/model/message.
type ModelMessage struct {
	Loading bool `json:"loading"`
	model.Message
}

// ReconcileResult is the answer to /v1/model/reconcile.
type ReconcileResult struct {
	Drift int   `json:"drift"` // differences this pass found and fixed
	Total int64 `json:"total"` // since the daemon started
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) *model.Model {
	if !s.authorize(w, r, AccessList) {
		return nil
	}
	if s.b.Model == nil {
		http.Error(w, "the daemon keeps no model of the queue", http.StatusNotImplemented)
		return nil
	}
	return s.b.Model
}

// ModelSummary asks the daemon for its model's aggregates.
func (c *Client) ModelSummary(ctx context.Context) (model.Summary, error) {
	var out model.Summary
	return out, c.getJSON(ctx, http.MethodGet, "/v1/model/summary", nil, &out)
}

// ModelQShape asks the daemon for a qshape table from its model.
func (c *Client) ModelQShape(ctx context.Context, o model.QShapeOptions) (model.QShape, error) {
	var out model.QShape
	return out, c.getJSON(ctx, http.MethodPost, "/v1/model/qshape", o, &out)
}

// ModelMessage asks the daemon what its model holds of one message.
func (c *Client) ModelMessage(ctx context.Context, id string) (ModelMessage, error) {
	var out ModelMessage
	return out, c.getJSON(ctx, http.MethodGet, "/v1/model/message?id="+url.QueryEscape(id), nil, &out)
}

// ModelReconcile asks the daemon to compare its model with the files.
func (c *Client) ModelReconcile(ctx context.Context) (ReconcileResult, error) {
	var out ReconcileResult
	return out, c.getJSON(ctx, http.MethodPost, "/v1/model/reconcile", nil, &out)
}

func (c *Client) getJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: read %s: %w", path, err)
	}
	return nil
}
