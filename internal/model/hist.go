package model

// hist counts items by a time in seconds (uint32: until 2106): for each
// distinct second a count, 6 bytes (a count that does not fit in 16 bits
// is kept in big). The seconds are kept sorted in
// chunks of at most histChunk, so that adding a second in the middle
// moves at most one chunk: a start-up scan meets arrivals in queue-ID
// order, not time order, and one flat sorted slice made the scan of a
// million messages move gigabytes (10 s of a 40 s build). New mail
// arrives at the end (an append to the last chunk). A removal only
// decrements; the zeros are compacted away once they are half of it. A
// qshape answer walks it once with the bucket thresholds computed for the
// query (countInto); a summary asks for the first second in a range
// (firstFrom) and a range's count (sumRange).
type hist struct {
	chunks []histChunk // non-empty, sorted, disjoint
	// firsts[i] is chunks[i].keys[0]: the chunk of a second is found in
	// this one small array (a search through the chunks' own first keys
	// missed the cache twice a step, 10 s of a million-message scan).
	firsts []uint32
	keys   int // seconds held, zeros included
	zeros  int
	total  int64
	// big holds the counts of the seconds whose n is bigCount: those
	// of 65,535 and more (a qshape domain's recipients of one second
	// rarely reach ten). Seconds are unique, so the second is the key.
	big map[uint32]int32
}

type histChunk struct {
	keys []uint32
	n    []uint16
}

// bigCount in a chunk's n says the count is in hist.big.
const bigCount = 1<<16 - 1

// count is the count of c's second i.
func (h *hist) count(c *histChunk, i int) int32 {
	if c.n[i] == bigCount {
		return h.big[c.keys[i]]
	}
	return int32(c.n[i])
}

// setCount makes v the count of c's second i.
func (h *hist) setCount(c *histChunk, i int, v int32) {
	k := c.keys[i]
	if v < 0 || v >= bigCount {
		if h.big == nil {
			h.big = map[uint32]int32{}
		}
		h.big[k] = v
		c.n[i] = bigCount
		return
	}
	if c.n[i] == bigCount {
		delete(h.big, k)
	}
	c.n[i] = uint16(v)
}

// histChunkMax bounds a chunk: an insertion in the middle moves at most
// this many entries (4 KB).
const histChunkMax = 512

func (h *hist) add(t int64, d int32) {
	k := clampSeconds(t)
	if len(h.chunks) == 0 {
		if d <= 0 {
			return
		}
		h.chunks = []histChunk{{keys: []uint32{k}, n: []uint16{0}}}
		h.setCount(&h.chunks[0], 0, d)
		h.firsts = []uint32{k}
		h.keys++
		h.total += int64(d)
		return
	}
	ci := h.chunkFor(k)
	c := &h.chunks[ci]
	i := len(c.keys)
	if c.keys[i-1] >= k {
		i = searchU32(c.keys, k)
	}
	if i < len(c.keys) && c.keys[i] == k {
		was := h.count(c, i)
		now := was + d
		h.setCount(c, i, now)
		switch {
		case was == 0 && now != 0:
			h.zeros--
		case was != 0 && now == 0:
			h.zeros++
		}
		h.total += int64(d)
		if h.zeros > 32 && h.zeros > h.keys/2 {
			h.compact()
		}
		return
	}
	if d <= 0 {
		return
	}
	h.keys++
	h.total += int64(d)
	if i == len(c.keys) && ci == len(h.chunks)-1 && len(c.keys) >= histChunkMax {
		// Past the end of a full last chunk: mail arriving in time
		// order starts a new chunk rather than splitting.
		h.chunks = append(h.chunks, histChunk{keys: []uint32{k}, n: []uint16{0}})
		h.setCount(&h.chunks[len(h.chunks)-1], 0, d)
		h.firsts = append(h.firsts, k)
		return
	}
	c.keys = append(c.keys, 0)
	c.n = append(c.n, 0)
	copy(c.keys[i+1:], c.keys[i:])
	copy(c.n[i+1:], c.n[i:])
	c.keys[i], c.n[i] = k, 0
	h.setCount(c, i, d)
	if i == 0 {
		h.firsts[ci] = k
	}
	if len(c.keys) > histChunkMax {
		h.split(ci)
	}
}

// chunkFor is the chunk that holds, or would take, second k: the last
// whose first second is at most k, or the first.
func (h *hist) chunkFor(k uint32) int { return lastLE(h.firsts, k) }

// lastLE is the last index of the sorted f whose value is at most k, or
// 0 when there is none; f is not empty.
func lastLE(f []uint32, k uint32) int {
	lo, hi := 0, len(f)-1
	if f[hi] <= k {
		return hi
	}
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if f[mid] <= k {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// searchU32 is the first index of the sorted keys whose value is at
// least k (len(keys) when none is): sort.Search without its calls.
func searchU32(keys []uint32, k uint32) int {
	lo, hi := 0, len(keys)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if keys[mid] < k {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// split halves chunk ci.
func (h *hist) split(ci int) {
	c := h.chunks[ci]
	half := len(c.keys) / 2
	hi := histChunk{keys: append([]uint32(nil), c.keys[half:]...), n: append([]uint16(nil), c.n[half:]...)}
	lo := histChunk{keys: c.keys[:half:half], n: c.n[:half:half]}
	h.chunks = append(h.chunks, histChunk{})
	copy(h.chunks[ci+2:], h.chunks[ci+1:])
	h.chunks[ci], h.chunks[ci+1] = lo, hi
	h.firsts = append(h.firsts, 0)
	copy(h.firsts[ci+2:], h.firsts[ci+1:])
	h.firsts[ci+1] = hi.keys[0]
}

func (h *hist) compact() {
	out := h.chunks[:0]
	for _, c := range h.chunks {
		j := 0
		for i := range c.keys {
			if c.n[i] != 0 {
				c.keys[j], c.n[j] = c.keys[i], c.n[i]
				j++
			}
		}
		if j == 0 {
			continue
		}
		c.keys, c.n = c.keys[:j], c.n[:j]
		if cap(c.keys) > 64 && cap(c.keys) > 4*j {
			c.keys = append([]uint32(nil), c.keys...)
			c.n = append([]uint16(nil), c.n...)
		}
		out = append(out, c)
	}
	clear(h.chunks[len(out):])
	h.chunks = out
	h.firsts = h.firsts[:len(out)]
	for i := range out {
		h.firsts[i] = out[i].keys[0]
	}
	h.keys -= h.zeros
	h.zeros = 0
	if len(h.chunks) == 0 {
		h.chunks, h.firsts = nil, nil
	}
}

func clampSeconds(t int64) uint32 {
	if t < 0 {
		return 0
	}
	if t > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(t)
}

// min returns the smallest time counted, and false when empty.
func (h *hist) min() (int64, bool) {
	t, ok := h.firstFrom(0)
	return int64(t), ok
}

// firstFrom returns the smallest time counted that is at least lo, and
// false when there is none.
func (h *hist) firstFrom(lo uint32) (uint32, bool) {
	if len(h.chunks) == 0 {
		return 0, false
	}
	for ci := h.chunkFor(lo); ci < len(h.chunks); ci++ {
		c := &h.chunks[ci]
		i := 0
		if c.keys[0] < lo {
			i = searchU32(c.keys, lo)
		}
		for ; i < len(c.keys); i++ {
			if c.n[i] != 0 {
				return c.keys[i], true
			}
		}
	}
	return 0, false
}

// sumRange returns the count of the times in [lo, hi).
func (h *hist) sumRange(lo, hi int64) int64 {
	lo = max(lo, 0)
	if len(h.chunks) == 0 || lo >= hi || lo > 1<<32-1 {
		return 0
	}
	var s int64
	for ci := h.chunkFor(uint32(lo)); ci < len(h.chunks); ci++ {
		c := &h.chunks[ci]
		if int64(c.keys[0]) >= hi {
			break
		}
		for i, k := range c.keys {
			if int64(k) >= lo && int64(k) < hi {
				s += int64(h.count(c, i))
			}
		}
	}
	return s
}

// countInto adds each time's count to out[b], where b is the first
// bucket whose threshold thr[b] the time reaches: thr is decreasing, and
// the last bucket takes everything older.
func (h *hist) countInto(out []int64, thr []int64) {
	b := 0
	for ci := len(h.chunks) - 1; ci >= 0; ci-- {
		c := &h.chunks[ci]
		for i := len(c.keys) - 1; i >= 0; i-- {
			t := int64(c.keys[i])
			for b < len(out)-1 && t < thr[b] {
				b++
			}
			out[b] += int64(h.count(c, i))
		}
	}
}

// each calls f for every time with a count, in time order.
func (h *hist) each(f func(t uint32, n int32)) {
	for ci := range h.chunks {
		c := &h.chunks[ci]
		for i, k := range c.keys {
			if c.n[i] != 0 {
				f(k, h.count(c, i))
			}
		}
	}
}

// trim compacts h and drops its spare capacity.
func (h *hist) trim() {
	if h.zeros > 0 {
		h.compact()
	}
	for i := range h.chunks {
		c := &h.chunks[i]
		if cap(c.keys) > len(c.keys)+len(c.keys)/8 {
			c.keys = append([]uint32(nil), c.keys...)
			c.n = append([]uint16(nil), c.n...)
		}
	}
	if cap(h.chunks) > len(h.chunks)+len(h.chunks)/8 {
		h.chunks = append([]histChunk(nil), h.chunks...)
		h.firsts = append([]uint32(nil), h.firsts...)
	}
}
