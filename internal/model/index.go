package model

import "hash/maphash"

// index maps queue IDs to messages: an open-addressing table of
// pointers (linear probing, deletion by backward shift), about 11 bytes
// per message where a Go map of string to pointer takes about 57. At a
// million messages that is the difference between fitting the memory
// budget and not. The ID is the message's own field, not stored twice.
type index struct {
	seed  maphash.Seed
	slots []*msg // len is a power of two, or 0
	n     int
}

func newIndex() index { return index{seed: maphash.MakeSeed()} }

func (t *index) home(id string) int {
	return int(maphash.String(t.seed, id) & uint64(len(t.slots)-1))
}

func (t *index) len() int { return t.n }

func (t *index) get(id string) *msg {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		x := t.slots[i]
		if x == nil {
			return nil
		}
		if x.id == id {
			return x
		}
	}
}

// set adds x, or replaces the message with its ID.
func (t *index) set(x *msg) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(len(t.slots)*2, 64))
	}
	mask := len(t.slots) - 1
	for i := t.home(x.id); ; i = (i + 1) & mask {
		y := t.slots[i]
		if y == nil {
			t.slots[i] = x
			t.n++
			return
		}
		if y.id == x.id {
			t.slots[i] = x
			return
		}
	}
}

// del removes the message id, if there is one.
func (t *index) del(id string) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.home(id)
	for {
		x := t.slots[i]
		if x == nil {
			return
		}
		if x.id == id {
			break
		}
		i = (i + 1) & mask
	}
	// Backward shift: move later entries of the probe run into the
	// hole when their home does not lie cyclically in (hole, j].
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		k := t.home(t.slots[j].id)
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = nil
	t.n--
	if len(t.slots) > 1024 && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
}

func (t *index) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]*msg, size), 0
	for _, x := range old {
		if x != nil {
			t.set(x)
		}
	}
}

// each calls f for every message; f must not change the index.
func (t *index) each(f func(*msg)) {
	for _, x := range t.slots {
		if x != nil {
			f(x)
		}
	}
}
