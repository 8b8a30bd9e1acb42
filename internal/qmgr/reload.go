package qmgr

import (
	"context"
	"errors"
	"time"
)

// Limits are the parameters a reload may change while the manager runs
// (zero values take the defaults, as in Config).
type Limits struct {
	RelayHost          string
	ConcurrencyLimit   int
	InitialConcurrency int
	RecipientLimit     int
	ProcessLimit       int
	ActiveLimit        int
	QueueRunDelay      time.Duration
	MinBackoff         time.Duration
	MaxBackoff         time.Duration
	MaxLifetime        time.Duration
	BounceLifetime     time.Duration
	ShutdownGrace      time.Duration
}

// Reconfigure applies new limits, as Postfix's queue manager rereads
// main.cf on reload without leaving its active queue: the messages in
// active/ stay, deliveries in flight go on, and what is scheduled from
// now on follows the new limits. A destination whose concurrency window
// is over the new limit is brought down to it; a lower active limit takes
// no message out of active/, it only stops new ones from coming in. A
// new relayhost applies to the deliveries built from now on.
func (m *Manager) Reconfigure(ctx context.Context, l Limits) error {
	// The new values get their defaults on a copy; then each field is
	// set on its own, because delivery goroutines read other fields of
	// cfg (the Deliverer) at any time.
	c := Config{
		Spool: m.sp, Clock: m.clk, RelayHost: l.RelayHost,
		ConcurrencyLimit: l.ConcurrencyLimit, InitialConcurrency: l.InitialConcurrency,
		RecipientLimit: l.RecipientLimit, ProcessLimit: l.ProcessLimit, ActiveLimit: l.ActiveLimit,
		QueueRunDelay: l.QueueRunDelay, MinBackoff: l.MinBackoff, MaxBackoff: l.MaxBackoff,
		MaxLifetime: l.MaxLifetime, BounceLifetime: l.BounceLifetime, ShutdownGrace: l.ShutdownGrace,
	}
	c.defaults()
	apply := func() {
		m.cfg.RelayHost = c.RelayHost
		m.cfg.ConcurrencyLimit, m.cfg.InitialConcurrency = c.ConcurrencyLimit, c.InitialConcurrency
		m.cfg.RecipientLimit, m.cfg.ProcessLimit, m.cfg.ActiveLimit = c.RecipientLimit, c.ProcessLimit, c.ActiveLimit
		m.cfg.QueueRunDelay, m.cfg.ShutdownGrace = c.QueueRunDelay, c.ShutdownGrace
		m.timesMu.Lock()
		m.cfg.MinBackoff, m.cfg.MaxBackoff = c.MinBackoff, c.MaxBackoff
		m.cfg.MaxLifetime, m.cfg.BounceLifetime = c.MaxLifetime, c.BounceLifetime
		m.timesMu.Unlock()
		for _, d := range m.dests {
			if d.window > float64(c.ConcurrencyLimit) {
				d.window = float64(c.ConcurrencyLimit)
			}
		}
		if m.blocked && len(m.active) < c.ActiveLimit {
			m.blocked = false
			m.scanIncoming()
			m.scanDeferred(false)
		}
	}
	err := m.onLoop(ctx, apply)
	if errors.Is(err, errNotRunning) {
		// Before Run (or after it): nothing else reads the config.
		apply()
		return nil
	}
	return err
}
