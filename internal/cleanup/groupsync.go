package cleanup

import "sync"

// syncGroup lets concurrent Submits share directory syncs (group commit).
// A caller needs a sync that starts after its file was committed; a sync
// already running when it arrives may have missed its entry. So each
// caller waits for the first sync that starts after it arrived, and
// whoever finds no sync running starts one for everyone waiting.
type syncGroup struct {
	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // syncs started so far
	finished uint64 // syncs finished so far (they finish in order)
	failed   uint64 // the last sync that failed, 0 if none
	lastErr  error
}

func newSyncGroup() *syncGroup {
	g := &syncGroup{}
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
	target := g.started + 1
	for g.finished < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
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
