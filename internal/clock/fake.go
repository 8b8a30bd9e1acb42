package clock

import (
	"sync"
	"time"
)

// Fake is a clock that moves only when a test moves it. Timers fire, in
// deadline order, when Advance or Set carries the time past them.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever a timer is armed
}

// NewFake returns a fake clock showing t.
func NewFake(t time.Time) *Fake {
	return &Fake{now: t, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the time forward by d, firing the timers that fall due.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the time to t (never backwards), firing the timers that fall
// due, earliest first.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Before(f.now) {
		return
	}
	for {
		var next *fakeTimer
		for _, tm := range f.timers {
			if tm.armed && !tm.when.After(t) && (next == nil || tm.when.Before(next.when)) {
				next = tm
			}
		}
		if next == nil {
			break
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		next.armed = false
		select {
		case next.c <- f.now:
		default:
		}
	}
	f.now = t
}

// Pending returns how many timers are armed.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.timers {
		if t.armed {
			n++
		}
	}
	return n
}

// NextDeadline returns the earliest armed timer's deadline, and false
// when no timer is armed.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best time.Time
	ok := false
	for _, t := range f.timers {
		if t.armed && (!ok || t.when.Before(best)) {
			best, ok = t.when, true
		}
	}
	return best, ok
}

// Armed returns a channel that is closed the next time a timer is armed,
// so a test can wait for a scheduler to go to sleep.
func (f *Fake) Armed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

type fakeTimer struct {
	f     *Fake
	c     chan time.Time
	when  time.Time
	armed bool
	added bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	f := t.f
	f.mu.Lock()
	was := t.armed
	t.when = f.now.Add(d)
	if !t.added {
		f.timers = append(f.timers, t)
		t.added = true
	}
	t.armed = true
	close(f.changed)
	f.changed = make(chan struct{})
	fire := d <= 0
	if fire {
		t.armed = false
	}
	f.mu.Unlock()
	if fire {
		select {
		case t.c <- f.Now():
		default:
		}
	}
	return was
}
