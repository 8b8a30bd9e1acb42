package gopool

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// settle waits until the number of goroutines is at most n.
func settle(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d", runtime.NumGoroutine(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPool: every function runs; at most maxIdle goroutines stay
// waiting, and the next functions run on them rather than on new ones;
// Close ends the waiting ones, and Go still works after it.
func TestPool(t *testing.T) {
	base := runtime.NumGoroutine()
	p := New(2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := 0
	release := make(chan struct{})
	for i := 0; i < 5; i++ {
		wg.Add(1)
		p.Go(func() {
			<-release
			mu.Lock()
			ran++
			mu.Unlock()
			wg.Done()
		})
	}
	close(release)
	wg.Wait()
	if ran != 5 {
		t.Fatalf("%d of 5 ran", ran)
	}
	settle(t, base+2) // three of five ended; two wait
	for p.idle.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	// One at a time, the next functions run on the waiting goroutines
	// (a waiting one counts itself idle just before it waits, so a
	// function may now and then find none waiting yet).
	before := p.started.Load()
	for i := 0; i < 20; i++ {
		for p.idle.Load() != 2 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Millisecond)
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
	}
	if n := p.started.Load() - before; n > 10 {
		t.Errorf("20 functions one after another started %d goroutines, want few", n)
	}
	settle(t, base+2)
	p.Close()
	settle(t, base)
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	settle(t, base)
}
