package cleanup

import (
	"sync"
	"time"
)

// syncGroup lets concurrent Submits share syncs (group commit).
// A caller needs a sync that starts after its file was committed; a sync
// already running when it arrives may have missed its entry. So each
// caller waits for the first sync that starts after it arrived, and
// whoever finds no sync running starts one for everyone waiting.
//
// The one who starts a sync first waits, at most delay, while busy
// reports other messages still being written: they will need a sync
// too, and one sync for all costs less than one each. On the relay bench
// a sync took about 0.7 ms and covered under three messages without the
// wait; with 0.5 ms of it a relayed message cost about a tenth less CPU
// and came through faster (bench/relay/README.md). A lone message,
// with nothing else being written, never waits.
type syncGroup struct {
	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // syncs started so far
	finished uint64 // syncs finished so far (they finish in order)
	failed   uint64 // the last sync that failed, 0 if none
	lastErr  error

	delay time.Duration
	busy  func() bool // other messages are being written now
}

func newSyncGroup(delay time.Duration, busy func() bool) *syncGroup {
	g := &syncGroup{delay: delay, busy: busy}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// sync returns once a call of do that started after sync was called has
// finished, with that call's error, or an error if any sync since then
// failed (reporting a failure too many costs a retry by the client;
// reporting one too few could lose mail).
func (g *syncGroup) sync(do func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A sync about to start may be waiting for this caller's file.
	g.cond.Broadcast()
	target := g.started + 1
	for g.finished < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.gather()
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := do()
		g.mu.Lock()
		g.running = false
		g.finished = gen
		if err != nil {
			g.failed = gen
			g.lastErr = err
		}
		g.cond.Broadcast()
	}
	if g.failed >= target {
		return g.lastErr
	}
	return nil
}

// gather waits, with g.mu held and a sync about to start, while other
// messages are being written, for at most g.delay. Callers arriving
// meanwhile wait for the sync that starts after it.
func (g *syncGroup) gather() {
	if g.delay <= 0 || g.busy == nil || !g.busy() {
		return
	}
	end := time.Now().Add(g.delay)
	t := time.AfterFunc(g.delay, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer t.Stop()
	for g.busy() && time.Now().Before(end) {
		g.cond.Wait()
	}
}
