package model

import "sort"

// arrivalIndex lists the messages by arrival second, so that a summary
// finds a group's example among the messages of the group's first
// second (summaryAgg.example). It is sorted chunks of (second, message),
// 12 bytes a message, as hist is: a map of seconds to slices took
// nearly three times that.
type arrivalIndex struct {
	chunks []arrivalChunk // non-empty, sorted by second
}

type arrivalChunk struct {
	keys []uint32
	msgs []*msg
}

const arrivalChunkMax = 512

// chunkFor is the chunk that holds, or would take, second k: the last
// whose first second is at most k, or the first.
func (a *arrivalIndex) chunkFor(k uint32) int {
	last := len(a.chunks) - 1
	if a.chunks[last].keys[0] <= k {
		return last
	}
	i := sort.Search(len(a.chunks), func(j int) bool { return a.chunks[j].keys[0] > k }) - 1
	return max(i, 0)
}

func (a *arrivalIndex) add(x *msg) {
	k := x.arrival
	if len(a.chunks) == 0 {
		a.chunks = []arrivalChunk{{keys: []uint32{k}, msgs: []*msg{x}}}
		return
	}
	ci := a.chunkFor(k)
	c := &a.chunks[ci]
	// After the messages of the same second: the common case, mail
	// arriving in time order, is an append.
	i := len(c.keys)
	if c.keys[i-1] > k {
		i = sort.Search(len(c.keys), func(j int) bool { return c.keys[j] > k })
	}
	if i == len(c.keys) && ci == len(a.chunks)-1 && len(c.keys) >= arrivalChunkMax {
		a.chunks = append(a.chunks, arrivalChunk{keys: []uint32{k}, msgs: []*msg{x}})
		return
	}
	c.keys = append(c.keys, 0)
	c.msgs = append(c.msgs, nil)
	copy(c.keys[i+1:], c.keys[i:])
	copy(c.msgs[i+1:], c.msgs[i:])
	c.keys[i], c.msgs[i] = k, x
	if len(c.keys) > arrivalChunkMax {
		half := len(c.keys) / 2
		hi := arrivalChunk{keys: append([]uint32(nil), c.keys[half:]...), msgs: append([]*msg(nil), c.msgs[half:]...)}
		clear(c.msgs[half:])
		lo := arrivalChunk{keys: c.keys[:half:half], msgs: c.msgs[:half:half]}
		a.chunks = append(a.chunks, arrivalChunk{})
		copy(a.chunks[ci+2:], a.chunks[ci+1:])
		a.chunks[ci], a.chunks[ci+1] = lo, hi
	}
}

// remove takes x out; the messages of one second may span chunks.
func (a *arrivalIndex) remove(x *msg) {
	if len(a.chunks) == 0 {
		return
	}
	k := x.arrival
	ci := sort.Search(len(a.chunks), func(j int) bool { return a.chunks[j].keys[0] >= k }) - 1
	for ci = max(ci, 0); ci < len(a.chunks) && a.chunks[ci].keys[0] <= k; ci++ {
		c := &a.chunks[ci]
		for i := sort.Search(len(c.keys), func(j int) bool { return c.keys[j] >= k }); i < len(c.keys) && c.keys[i] == k; i++ {
			if c.msgs[i] != x {
				continue
			}
			copy(c.keys[i:], c.keys[i+1:])
			copy(c.msgs[i:], c.msgs[i+1:])
			c.msgs[len(c.msgs)-1] = nil
			c.keys, c.msgs = c.keys[:len(c.keys)-1], c.msgs[:len(c.msgs)-1]
			if len(c.keys) == 0 {
				copy(a.chunks[ci:], a.chunks[ci+1:])
				a.chunks[len(a.chunks)-1] = arrivalChunk{}
				a.chunks = a.chunks[:len(a.chunks)-1]
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
	ci := sort.Search(len(a.chunks), func(j int) bool { return a.chunks[j].keys[0] >= k }) - 1
	for ci = max(ci, 0); ci < len(a.chunks) && a.chunks[ci].keys[0] <= k; ci++ {
		c := &a.chunks[ci]
		for i := sort.Search(len(c.keys), func(j int) bool { return c.keys[j] >= k }); i < len(c.keys) && c.keys[i] == k; i++ {
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
}
