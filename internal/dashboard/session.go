package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// The session cookie's name. A browser that logged in sends it with every
// request; SameSite=Strict keeps other sites' pages from sending it.
const cookieName = "sluice_session"

// maxSessions bounds the memory that logins can take: past it, the
// oldest session is dropped.
const maxSessions = 1000

// session is one login.
type session struct {
	id      string
	csrf    string
	expires time.Time
}

// sessions are held in memory only: a restart of the daemon logs
// everyone out, which is the safe outcome for a token-based login.
type sessions struct {
	mu    sync.Mutex
	ttl   time.Duration
	now   func() time.Time
	byID  map[string]*session // keyed by the hash of the cookie value
	token [sha256.Size]byte
}

func newSessions(token string, ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, byID: map[string]*session{}, token: sha256.Sum256([]byte(token))}
}

// tokenOK compares a submitted token with the API token in constant
// time: both are hashed first, so neither their length nor their
// content shows in the time taken.
func (s *sessions) tokenOK(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// key is how a cookie value is stored: its hash, so that a map lookup
// cannot leak the value by timing and a memory dump holds no cookie.
func key(v string) string {
	sum := sha256.Sum256([]byte(v))
	return string(sum[:])
}

// start makes a new session and returns it with its cookie value.
func (s *sessions) start() (*session, string) {
	id := randomString()
	ss := &session{id: key(id), csrf: randomString(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if len(s.byID) >= maxSessions {
		var oldest *session
		for _, x := range s.byID {
			if oldest == nil || x.expires.Before(oldest.expires) {
				oldest = x
			}
		}
		delete(s.byID, oldest.id)
	}
	s.byID[ss.id] = ss
	return ss, id
}

// sweep drops expired sessions; s.mu is held.
func (s *sessions) sweep() {
	now := s.now()
	for k, x := range s.byID {
		if !now.Before(x.expires) {
			delete(s.byID, k)
		}
	}
}

// get returns the request's live session, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.byID[key(c.Value)]
	if x == nil {
		return nil
	}
	if !s.now().Before(x.expires) {
		delete(s.byID, x.id)
		return nil
	}
	return x
}

// end forgets the request's session.
func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.mu.Lock()
		delete(s.byID, key(c.Value))
		s.mu.Unlock()
	}
}

// csrfOK checks a form's or header's CSRF token against the session's,
// in constant time.
func (x *session) csrfOK(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(x.csrf)) == 1
}

// cookie is the session cookie: HttpOnly so scripts (an injected one
// included) cannot read it, SameSite=Strict so no other site's page can
// make the browser send it, Secure when the listener speaks TLS.
func cookie(value string, secure bool, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
		MaxAge:   maxAge,
	}
}
