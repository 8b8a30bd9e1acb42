package control

import "net/http"

// Access names what a request asks to do, for Backend.Authorize.
type Access string

const (
	// AccessList is seeing the queue (mailq, postqueue -p/-j, qshape,
	// sluice queue list|count|summary|show): authorized_mailq_users.
	AccessList Access = "list"
	// AccessFlush is asking for delivery now (postqueue -f/-i/-s):
	// authorized_flush_users.
	AccessFlush Access = "flush"
)

// authorize applies Backend.Authorize to the peer of r; a refusal is
// answered 403 with the reason, which the client reports as the tool's
// fatal error.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, what Access) bool {
	if s.b.Authorize == nil {
		return true
	}
	uid, ok := r.Context().Value(peerKey{}).(int)
	if !ok {
		uid = -1
	}
	if err := s.b.Authorize(uid, what); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return false
	}
	return true
}
