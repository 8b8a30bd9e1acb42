package model

// arrivalIndex lists the messages by arrival second, so that a summary
// finds a group's example among the messages of the group's first
// second (summaryAgg.example). It is sorted chunks of (second, message),
// 12 bytes a message, as hist is: a map of seconds to slices took
// nearly three times that.
type arrivalIndex struct {
	chunks []arrivalChunk // non-empty, sorted by second
	firsts []uint32       // chunks[i].keys[0], as hist.firsts
}

type arrivalChunk struct {
	keys []uint32
	msgs []*msg
}

const arrivalChunkMax = 512

// chunkFor is the chunk that holds, or would take, second k: the last
// whose first second is at most k, or the first.
func (a *arrivalIndex) chunkFor(k uint32) int { return lastLE(a.firsts, k) }

// firstWith is the first chunk that may hold second k: the one before
// the first whose first second is k or later (the seconds of one second
// may span chunks).
func (a *arrivalIndex) firstWith(k uint32) int {
	return max(searchU32(a.firsts, k)-1, 0)
}

func (a *arrivalIndex) add(x *msg) {
	k := x.arrival
	if len(a.chunks) == 0 {
		a.chunks = []arrivalChunk{{keys: []uint32{k}, msgs: []*msg{x}}}
		a.firsts = []uint32{k}
		return
	}
	ci := a.chunkFor(k)
	c := &a.chunks[ci]
	// After the messages of the same second: the common case, mail
	// arriving in time order, is an append.
	i := len(c.keys)
	if c.keys[i-1] > k {
		i = searchU32(c.keys, k+1) // k+1 cannot wrap: keys[i-1] > k
	}
	if i == len(c.keys) && ci == len(a.chunks)-1 && len(c.keys) >= arrivalChunkMax {
		a.chunks = append(a.chunks, arrivalChunk{keys: []uint32{k}, msgs: []*msg{x}})
		a.firsts = append(a.firsts, k)
		return
	}
	c.keys = append(c.keys, 0)
	c.msgs = append(c.msgs, nil)
	copy(c.keys[i+1:], c.keys[i:])
	copy(c.msgs[i+1:], c.msgs[i:])
	c.keys[i], c.msgs[i] = k, x
	if i == 0 {
		a.firsts[ci] = k
	}
	if len(c.keys) > arrivalChunkMax {
		half := len(c.keys) / 2
		hi := arrivalChunk{keys: append([]uint32(nil), c.keys[half:]...), msgs: append([]*msg(nil), c.msgs[half:]...)}
		clear(c.msgs[half:])
		lo := arrivalChunk{keys: c.keys[:half:half], msgs: c.msgs[:half:half]}
		a.chunks = append(a.chunks, arrivalChunk{})
		copy(a.chunks[ci+2:], a.chunks[ci+1:])
		a.chunks[ci], a.chunks[ci+1] = lo, hi
		a.firsts = append(a.firsts, 0)
		copy(a.firsts[ci+2:], a.firsts[ci+1:])
		a.firsts[ci+1] = hi.keys[0]
	}
}

// remove takes x out; the messages of one second may span chunks.
func (a *arrivalIndex) remove(x *msg) {
	if len(a.chunks) == 0 {
		return
	}
	k := x.arrival
	for ci := a.firstWith(k); ci < len(a.chunks) && a.firsts[ci] <= k; ci++ {
		c := &a.chunks[ci]
		for i := searchU32(c.keys, k); i < len(c.keys) && c.keys[i] == k; i++ {
			if c.msgs[i] != x {
				continue
			}
			copy(c.keys[i:], c.keys[i+1:])
			copy(c.msgs[i:], c.msgs[i+1:])
			c.msgs[len(c.msgs)-1] = nil
			c.keys, c.msgs = c.keys[:len(c.keys)-1], c.msgs[:len(c.msgs)-1]
			switch {
			case len(c.keys) == 0:
				copy(a.chunks[ci:], a.chunks[ci+1:])
				a.chunks[len(a.chunks)-1] = arrivalChunk{}
				a.chunks = a.chunks[:len(a.chunks)-1]
				a.firsts = append(a.firsts[:ci], a.firsts[ci+1:]...)
			case i == 0:
				a.firsts[ci] = c.keys[0]
			}
			return
		}
	}
}

// each calls f for every message that arrived in second k.
func (a *arrivalIndex) each(k uint32, f func(*msg)) {
	if len(a.chunks) == 0 {
		return
	}
	for ci := a.firstWith(k); ci < len(a.chunks) && a.firsts[ci] <= k; ci++ {
		c := &a.chunks[ci]
		for i := searchU32(c.keys, k); i < len(c.keys) && c.keys[i] == k; i++ {
			f(c.msgs[i])
		}
	}
}

// trim packs the chunks full (a scan out of time order leaves them
// between half and full) and drops spare capacity.
func (a *arrivalIndex) trim() {
	n := 0
	for _, c := range a.chunks {
		n += len(c.keys)
	}
	out := make([]arrivalChunk, 0, (n+arrivalChunkMax-1)/arrivalChunkMax)
	var cur arrivalChunk
	for _, c := range a.chunks {
		for i := range c.keys {
			if cur.keys == nil {
				size := min(arrivalChunkMax, n)
				cur = arrivalChunk{keys: make([]uint32, 0, size), msgs: make([]*msg, 0, size)}
			}
			cur.keys, cur.msgs = append(cur.keys, c.keys[i]), append(cur.msgs, c.msgs[i])
			n--
			if len(cur.keys) == cap(cur.keys) {
				out = append(out, cur)
				cur = arrivalChunk{}
			}
		}
	}
	a.chunks = out
	a.firsts = make([]uint32, len(out))
	for i := range out {
		a.firsts[i] = out[i].keys[0]
	}
}

// timeSet is a multiset of seconds: a summary group's messages by
// arrival, 4 bytes each, in sorted chunks as hist. A group's members are
// spread thin over the seconds (a sender's hundred messages over five
// days), so one entry a member takes half the memory of hist's second
// and count; a summary asks it only for its first second.
type timeSet struct {
	chunks [][]uint32 // non-empty, sorted
	firsts []uint32   // chunks[i][0]
}

func (t *timeSet) add(k uint32) {
	if len(t.chunks) == 0 {
		t.chunks, t.firsts = [][]uint32{{k}}, []uint32{k}
		return
	}
	ci := lastLE(t.firsts, k)
	c := t.chunks[ci]
	i := len(c)
	if c[i-1] > k {
		i = searchU32(c, k)
	}
	if i == len(c) && ci == len(t.chunks)-1 && len(c) >= histChunkMax {
		t.chunks, t.firsts = append(t.chunks, []uint32{k}), append(t.firsts, k)
		return
	}
	c = append(c, 0)
	copy(c[i+1:], c[i:])
	c[i] = k
	t.chunks[ci] = c
	if i == 0 {
		t.firsts[ci] = k
	}
	if len(c) > histChunkMax {
		half := len(c) / 2
		hi := append([]uint32(nil), c[half:]...)
		t.chunks[ci] = c[:half:half]
		t.chunks = append(t.chunks, nil)
		copy(t.chunks[ci+2:], t.chunks[ci+1:])
		t.chunks[ci+1] = hi
		t.firsts = append(t.firsts, 0)
		copy(t.firsts[ci+2:], t.firsts[ci+1:])
		t.firsts[ci+1] = hi[0]
	}
}

// remove takes out one k, if there is one.
func (t *timeSet) remove(k uint32) {
	if len(t.chunks) == 0 {
		return
	}
	ci := max(searchU32(t.firsts, k)-1, 0)
	for ; ci < len(t.chunks) && t.firsts[ci] <= k; ci++ {
		c := t.chunks[ci]
		i := searchU32(c, k)
		if i == len(c) || c[i] != k {
			continue
		}
		copy(c[i:], c[i+1:])
		c = c[:len(c)-1]
		t.chunks[ci] = c
		switch {
		case len(c) == 0:
			t.chunks = append(t.chunks[:ci], t.chunks[ci+1:]...)
			t.firsts = append(t.firsts[:ci], t.firsts[ci+1:]...)
			if len(t.chunks) == 0 {
				t.chunks, t.firsts = nil, nil
			}
		case i == 0:
			t.firsts[ci] = c[0]
		}
		if cap(c) > 64 && cap(c) > 4*len(c) {
			t.chunks[ci] = append([]uint32(nil), c...)
		}
		return
	}
}

// firstFrom returns the smallest second in t that is at least lo.
func (t *timeSet) firstFrom(lo uint32) (uint32, bool) {
	if len(t.chunks) == 0 {
		return 0, false
	}
	if t.firsts[0] >= lo {
		return t.firsts[0], true // the common question: the oldest
	}
	for ci := max(searchU32(t.firsts, lo)-1, 0); ci < len(t.chunks); ci++ {
		c := t.chunks[ci]
		if i := searchU32(c, lo); i < len(c) {
			return c[i], true
		}
	}
	return 0, false
}

// trim drops spare capacity.
func (t *timeSet) trim() {
	for i, c := range t.chunks {
		if cap(c) > len(c)+len(c)/8 {
			t.chunks[i] = append([]uint32(nil), c...)
		}
	}
	if cap(t.chunks) > len(t.chunks)+len(t.chunks)/8 {
		t.chunks = append([][]uint32(nil), t.chunks...)
		t.firsts = append([]uint32(nil), t.firsts...)
	}
}

// bump adds (d > 0) or removes (d < 0) one k.
func (t *timeSet) bump(k uint32, d int32) {
	if d > 0 {
		t.add(k)
	} else if d < 0 {
		t.remove(k)
	}
}
