package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrder(t *testing.T) {
	start := time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(10 * time.Second)
	b := f.NewTimer(5 * time.Second)
	c := f.NewTimer(time.Hour)
	f.Advance(7 * time.Second)
	select {
	case got := <-b.C():
		if !got.Equal(start.Add(5 * time.Second)) {
			t.Errorf("b fired at %v, want start+5s", got)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	if f.Pending() != 2 {
		t.Errorf("pending = %d, want 2", f.Pending())
	}
	if !c.Stop() {
		t.Error("Stop of an armed timer returned false")
	}
	f.Advance(time.Hour)
	if _, ok := <-a.C(); !ok {
		t.Fatal("a did not fire")
	}
	select {
	case <-c.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if got := f.Now(); !got.Equal(start.Add(7*time.Second + time.Hour)) {
		t.Errorf("now = %v", got)
	}
}

func TestFakeResetAndArmed(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	armed := f.Armed()
	tm := f.NewTimer(time.Minute)
	select {
	case <-armed:
	default:
		t.Fatal("Armed channel not closed after NewTimer")
	}
	tm.Reset(2 * time.Minute)
	f.Advance(time.Minute)
	select {
	case <-tm.C():
		t.Fatal("reset timer fired at its old deadline")
	default:
	}
	if d, ok := f.NextDeadline(); !ok || !d.Equal(time.Unix(120, 0)) {
		t.Errorf("NextDeadline = %v %v", d, ok)
	}
	f.Advance(time.Minute)
	<-tm.C()
	tm.Reset(0)
	select {
	case <-tm.C():
	default:
		t.Fatal("Reset(0) did not fire at once")
	}
}

func TestReal(t *testing.T) {
	c := Real()
	if time.Since(c.Now()) > time.Second {
		t.Error("real clock is off")
	}
	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
}
