package smtpd

import (
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Limits are the connection limits, with Postfix's names. Zero means no
// limit (sendmail -bs, tests); FromConfig fills Postfix's defaults.
type Limits struct {
	// ConnectionCount is smtpd_client_connection_count_limit: sessions
	// at once from one client address (Postfix: 50).
	ConnectionCount int
	// ConnectionRate is smtpd_client_connection_rate_limit: new
	// sessions from one client address per RateTimeUnit (Postfix: 0).
	ConnectionRate int
	// RateTimeUnit is anvil_rate_time_unit (60 s when zero).
	RateTimeUnit time.Duration
	// Process is default_process_limit: sessions at once, all clients
	// together (Postfix: 100).
	Process int
	// AuthRate is smtpd_client_auth_rate_limit: AUTH commands from one
	// client address per RateTimeUnit (Postfix: 0, no limit).
	AuthRate int
	// Exceptions are smtpd_client_event_limit_exceptions: clients the
	// per-client limits do not apply to; nil means MyNetworks.
	Exceptions []netip.Prefix
}

// limiter keeps anvil's per-client counters and the session count.
type limiter struct {
	cfg Limits
	now func() time.Time

	mu       sync.Mutex
	sessions int
	clients  map[netip.Addr]*clientCounter
	// lastSweep is when sweep last ran.
	lastSweep time.Time
	// lastProcessWarn is when the process limit was last logged.
	lastProcessWarn time.Time
}

// clientCounter is one client address's sessions in progress and its
// connections in the current rate window. Postfix's anvil keeps a fixed
// window that starts at the client's first event after the last one
// expired; so does this.
type clientCounter struct {
	active      int
	windowStart time.Time
	inWindow    int
}

func newLimiter(cfg Limits, now func() time.Time) *limiter {
	if cfg.RateTimeUnit <= 0 {
		cfg.RateTimeUnit = 60 * time.Second
	}
	return &limiter{cfg: cfg, now: now, clients: map[netip.Addr]*clientCounter{}}
}

// refusal is why a new session is refused: the reply to send instead of
// the greeting and the warning to log (with the client's name filled in
// by the caller).
type refusal struct {
	reply string
	// warning is a format with one %s, the client as name[addr]; empty
	// when nothing is to be logged.
	warning string
}

// admit counts a new session from addr, or refuses it. A session that
// was admitted must be given back with release.
func (l *limiter) admit(addr netip.Addr, hostname string) *refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Process > 0 && l.sessions >= l.cfg.Process {
		r := &refusal{reply: "421 4.3.2 All server ports are busy"}
		// As Postfix's master, warn once in a while, not for every
		// client: a flood must not flood the log too.
		if now := l.now(); l.lastProcessWarn.IsZero() || now.Sub(l.lastProcessWarn) >= time.Minute {
			l.lastProcessWarn = now
			r.warning = `service "smtp" has reached its process limit "` + strconv.Itoa(l.cfg.Process) + `": new clients are refused (first: %s)`
		}
		return r
	}
	exempt := !addr.IsValid() || inNetworks(addr, l.cfg.Exceptions)
	var cc *clientCounter
	if !exempt && (l.cfg.ConnectionCount > 0 || l.cfg.ConnectionRate > 0) {
		now := l.now()
		l.sweep(now)
		cc = l.clients[addr]
		if cc == nil {
			cc = &clientCounter{}
			l.clients[addr] = cc
		}
		if l.cfg.ConnectionRate > 0 {
			if cc.windowStart.IsZero() || now.Sub(cc.windowStart) >= l.cfg.RateTimeUnit {
				cc.windowStart, cc.inWindow = now, 0
			}
			cc.inWindow++
			if cc.inWindow > l.cfg.ConnectionRate {
				l.forget(addr, cc)
				return &refusal{
					reply:   "421 4.7.0 " + hostname + " Error: too many connections from " + addr.String(),
					warning: "Connection rate limit exceeded: " + strconv.Itoa(cc.inWindow) + " from %s for service smtp",
				}
			}
		}
		if l.cfg.ConnectionCount > 0 && cc.active >= l.cfg.ConnectionCount {
			l.forget(addr, cc)
			return &refusal{
				reply:   "421 4.7.0 " + hostname + " Error: too many connections from " + addr.String(),
				warning: "Connection concurrency limit exceeded: " + strconv.Itoa(cc.active+1) + " from %s for service smtp",
			}
		}
		cc.active++
	}
	l.sessions++
	return nil
}

// release gives back a session admitted for addr.
func (l *limiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sessions--
	if cc := l.clients[addr]; cc != nil && cc.active > 0 {
		cc.active--
		l.forget(addr, cc)
	}
}

// forget drops a client's counter once it holds nothing worth keeping,
// so the map does not grow with every address ever seen.
func (l *limiter) forget(addr netip.Addr, cc *clientCounter) {
	if cc.active > 0 {
		return
	}
	if l.cfg.ConnectionRate > 0 && !cc.windowStart.IsZero() && l.now().Sub(cc.windowStart) < l.cfg.RateTimeUnit {
		return
	}
	delete(l.clients, addr)
}

// sweep drops the counters of clients whose rate window has passed and
// that hold no session; admit calls it when the map has grown, at most
// once per rate window.
func (l *limiter) sweep(now time.Time) {
	if len(l.clients) < 1024 || now.Sub(l.lastSweep) < l.cfg.RateTimeUnit {
		return
	}
	l.lastSweep = now
	for addr, cc := range l.clients {
		l.forget(addr, cc)
	}
}
