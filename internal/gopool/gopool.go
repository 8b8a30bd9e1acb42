// Package gopool runs functions on goroutines kept from earlier ones.
//
// A new goroutine starts with a small stack and grows it, copying it
// each time it doubles, as deep a call as it makes needs: an SMTP session
// through to the queue file's commit, a delivery through the SMTP client
// to the queue file's records. At thousands of messages a second that
// copying is a few percent of the daemon's CPU. A goroutine kept for the
// next function keeps the stack it grew until the collector shrinks it.
package gopool

import (
	"sync"
	"sync/atomic"
)

// Pool keeps up to a number of idle goroutines for the next function.
type Pool struct {
	work     chan func()
	stop     chan struct{}
	stopOnce sync.Once
	idle     atomic.Int32
	max      int32
	started  atomic.Int64 // goroutines started (for tests)
}

// New returns a Pool that keeps at most maxIdle goroutines waiting.
func New(maxIdle int) *Pool {
	return &Pool{work: make(chan func()), stop: make(chan struct{}), max: int32(maxIdle)}
}

// Go runs f on a waiting goroutine, or on a new one when none waits.
func (p *Pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		p.started.Add(1)
		go p.run(f)
	}
}

func (p *Pool) run(f func()) {
	for {
		f()
		f = nil // not kept alive while waiting
		if p.idle.Add(1) > p.max {
			p.idle.Add(-1)
			return
		}
		select {
		case f = <-p.work:
			p.idle.Add(-1)
		case <-p.stop:
			p.idle.Add(-1)
			return
		}
	}
}

// Close lets the waiting goroutines end; functions running go on, and
// Go still runs functions (each on a goroutine of its own that ends
// after it).
func (p *Pool) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
}
