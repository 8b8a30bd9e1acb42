package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"sluice/internal/httpapi"
)

// The live event stream over the socket:
//
//	GET /v1/events?select=TERM...   Server-Sent Events, as the HTTP API's /api/v1/events
//
// It is the same handler as the HTTP API's (package httpapi), so both
// streams send the same events with the same IDs. Watching is listing:
// for those authorized_mailq_users allows.
func (s *Server) handleEvents(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorize(w, r, AccessList) {
			return
		}
		if s.b.Events == nil {
			http.Error(w, "the daemon has no event stream", http.StatusNotImplemented)
			return
		}
		s.b.Events.ServeHTTP(w, r)
	})
}

// ErrStreamEnded reports that an event stream the daemon had accepted
// ended: the daemon stopped, or the connection broke.
var ErrStreamEnded = errors.New("control: the event stream ended")

// Watch follows the daemon's event stream: fn gets each event the
// selector terms pick (and the control events "lost" and "restart")
// until ctx ends, fn returns an error (returned as it is), or the stream
// ends (an error wrapping ErrStreamEnded). lastID, when not "", resumes
// after that event.
func (c *Client) Watch(ctx context.Context, terms []string, lastID string, fn func(httpapi.SSE) error) error {
	q := url.Values{"select": terms}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sluice/v1/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		text := strings.TrimSpace(string(msg))
		if resp.StatusCode == http.StatusForbidden {
			return &FatalError{Msg: text}
		}
		// The stream's errors are {"error": "..."} (package httpapi).
		var e struct{ Error string }
		if json.Unmarshal(msg, &e) == nil && e.Error != "" {
			text = e.Error
		}
		return errors.New(text)
	}
	r := httpapi.NewSSEReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", ErrStreamEnded, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}
