package qmgr

import (
	"context"
	"testing"
	"time"

	"sluice/internal/spool"
)

// TestReconfigureKeepsActive: a reload while a delivery is in flight
// leaves that delivery and its message alone (it ends as it began, to the
// old next hop), and the next message follows the new relayhost.
func TestReconfigureKeepsActive(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RelayHost = "old.example" })
	h.del.block = make(chan struct{})
	h.start()
	first := h.queue(spool.Incoming, "a@src.example", "x@dest.example")
	h.m.Notify(first)
	h.settleDeliveries(1)

	if err := h.m.Reconfigure(context.Background(), Limits{RelayHost: "new.example", ProcessLimit: 3}); err != nil {
		t.Fatal(err)
	}
	if s := h.m.Stats(); s.Active != 1 || s.Deliveries != 1 {
		t.Fatalf("after Reconfigure: %+v, want the delivery still in flight", s)
	}
	close(h.del.block)
	h.settle("first removed", func() bool { return h.gone(first) })

	second := h.queue(spool.Incoming, "a@src.example", "y@dest.example")
	h.m.Notify(second)
	h.settle("second removed", func() bool { return h.gone(second) })
	calls := h.del.callList()
	if len(calls) != 2 || calls[0].hop != "old.example" || calls[1].hop != "new.example" {
		t.Errorf("deliveries = %v, want the first to old.example and the second to new.example", calls)
	}
	if h.m.cfgForTest().ProcessLimit != 3 || h.m.cfgForTest().ConcurrencyLimit != 20 {
		t.Errorf("limits after Reconfigure: %+v", h.m.cfgForTest())
	}
}

// settleDeliveries waits until n deliveries are running.
func (h *harness) settleDeliveries(n int) {
	h.t.Helper()
	h.settleCond("deliveries in flight", func() bool { return h.m.Stats().Deliveries == n })
}

func (h *harness) settleCond(what string, cond func() bool) {
	h.t.Helper()
	for i := 0; i < 2500 && !cond(); i++ {
		sleepMs(2)
	}
	if !cond() {
		h.t.Fatalf("timed out waiting for %s; log:\n%s", what, h.logbuf.String())
	}
}

// cfgForTest reads the configuration on the loop.
func (m *Manager) cfgForTest() Config {
	var c Config
	done := make(chan struct{})
	if m.onLoop(context.Background(), func() { c = m.cfg; close(done) }) != nil {
		return m.cfg
	}
	<-done
	return c
}

func sleepMs(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }
