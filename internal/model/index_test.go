package model

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestIndexAgainstMap runs random sets and deletes on the index and on a
// Go map and requires the same contents after each step, through growth
// and shrinking.
func TestIndexAgainstMap(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	ix := newIndex()
	ref := map[string]*msg{}
	for step := 0; step < 60000; step++ {
		id := fmt.Sprintf("ID%X", rnd.Intn(5000))
		// Grow for a while, then mostly delete, so the table shrinks.
		if (step < 30000 && rnd.Intn(3) > 0) || (step >= 30000 && rnd.Intn(5) == 0) {
			x := &msg{id: id, size: uint32(step)}
			ix.set(x)
			ref[id] = x
		} else {
			ix.del(id)
			delete(ref, id)
		}
		if step%997 == 0 || step == 59999 {
			if ix.len() != len(ref) {
				t.Fatalf("step %d: %d entries, want %d", step, ix.len(), len(ref))
			}
			for id, x := range ref {
				if ix.get(id) != x {
					t.Fatalf("step %d: %s not found", step, id)
				}
			}
			n := 0
			ix.each(func(x *msg) {
				n++
				if ref[x.id] != x {
					t.Fatalf("step %d: stray %s", step, x.id)
				}
			})
			if n != len(ref) || ix.get("nosuch") != nil {
				t.Fatalf("step %d: each saw %d", step, n)
			}
		}
	}
	if len(ix.slots) > 4096 {
		t.Errorf("table did not shrink: %d slots for %d entries", len(ix.slots), ix.len())
	}
}
