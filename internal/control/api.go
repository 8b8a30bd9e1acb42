package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"sluice/internal/audit"
	"sluice/internal/httpapi"
)

// The control socket serves the HTTP API's handlers (package httpapi)
// under /api/, the very handlers of the HTTP listener, so the tools and
// the API cannot drift apart. Here the peer's uid, not a token, decides:
// looking (and dry runs) is for authorized_mailq_users, flushing and
// retrying for authorized_flush_users, every other change for root and
// mail_owner.
func (s *Server) handleAPI(mux *http.ServeMux) {
	if s.b.API == nil {
		return
	}
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, ok := r.Context().Value(peerKey{}).(int)
		if !ok {
			uid = -1
		}
		authz := func(what httpapi.Access) error {
			switch what {
			case httpapi.AccessChange:
				if !s.mayChangeUID(uid) {
					return errors.New(changeRefusal)
				}
				return nil
			case httpapi.AccessFlush:
				if s.mayChangeUID(uid) || s.b.Authorize == nil {
					return nil
				}
				return s.b.Authorize(uid, AccessFlush)
			}
			if s.b.Authorize == nil {
				return nil
			}
			return s.b.Authorize(uid, AccessList)
		}
		ctx := httpapi.WithAuthorizer(r.Context(), authz)
		ctx = httpapi.WithCaller(ctx, httpapi.Caller{User: audit.User(uid), UID: uid, Interface: audit.Control})
		s.b.API.ServeHTTP(w, r.WithContext(ctx))
	}))
}

// changeRefusal is postsuper's refusal of a user who may not change the
// queue.
const changeRefusal = "use of this command is reserved for the superuser"

func (s *Server) mayChangeUID(uid int) bool {
	return uid == 0 || (s.b.MailOwner > 0 && uid == s.b.MailOwner)
}

// APIError is an error answer of the API through the socket.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// API calls the HTTP API through the socket: method and path (with its
// query), body (nil for none) sent as JSON, the answer decoded into out.
// A refusal is a *FatalError in the daemon's words; any other error
// answer an *APIError.
func (c *Client) API(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sluice"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode == http.StatusForbidden {
			return &FatalError{Msg: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	if err := json.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10)).Decode(out); err != nil {
		return fmt.Errorf("control: read %s: %w", path, err)
	}
	return nil
}
