package httpapi

import (
	"context"
	"net/http"

	"sluice/internal/audit"
)

// Caller is who a request comes from, for the audit log: the HTTP
// listener's token ("api"), or a local user on the control socket.
type Caller struct {
	User      string // audit.Entry's User: "api", or "uid=N"
	UID       int    // -1 when not a local user
	Interface string // audit.HTTP, audit.Control
}

type callerKey struct{}

// WithCaller returns a context whose requests are recorded as c's; the
// control socket sets one from the peer's uid. Requests without one came
// through the HTTP listener with the token.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(r *http.Request) Caller {
	if c, ok := r.Context().Value(callerKey{}).(Caller); ok {
		return c
	}
	return Caller{User: tokenUser, UID: -1, Interface: audit.HTTP}
}

// auditAs appends e to the audit log at path as the request's caller's;
// nothing when path is "". A change that is made but cannot be recorded
// is answered with a Warning header saying so.
func auditAs(w http.ResponseWriter, r *http.Request, path string, e audit.Entry) {
	if path == "" {
		return
	}
	c := callerOf(r)
	e.User, e.UID, e.Interface = c.User, c.UID, c.Interface
	if err := audit.Append(path, e); err != nil {
		w.Header().Set("Warning", `199 sluice "`+err.Error()+`"`)
	}
}
