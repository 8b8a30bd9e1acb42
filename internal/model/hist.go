package model

import "sort"

// hist counts items by a time in seconds (uint32: until 2106). It is two
// parallel sorted slices, 8 bytes per distinct second: new mail arrives
// at the end (an append); a removal only decrements, and the zeros are
// compacted away once they are half of it. A qshape answer walks it once
// with the bucket thresholds computed for the query (countInto).
type hist struct {
	keys  []uint32
	n     []int32
	zeros int
	total int64
}

func (h *hist) add(t int64, d int32) {
	k := clampSeconds(t)
	i := len(h.keys)
	if i == 0 || h.keys[i-1] < k {
		if d <= 0 {
			return
		}
		h.keys = append(h.keys, k)
		h.n = append(h.n, d)
		h.total += int64(d)
		return
	}
	i = sort.Search(len(h.keys), func(j int) bool { return h.keys[j] >= k })
	if i < len(h.keys) && h.keys[i] == k {
		was := h.n[i]
		h.n[i] += d
		switch {
		case was == 0 && h.n[i] != 0:
			h.zeros--
		case was != 0 && h.n[i] == 0:
			h.zeros++
		}
		h.total += int64(d)
		if h.zeros > 32 && h.zeros > len(h.keys)/2 {
			h.compact()
		}
		return
	}
	if d <= 0 {
		return
	}
	h.keys = append(h.keys, 0)
	h.n = append(h.n, 0)
	copy(h.keys[i+1:], h.keys[i:])
	copy(h.n[i+1:], h.n[i:])
	h.keys[i], h.n[i] = k, d
	h.total += int64(d)
}

func (h *hist) compact() {
	j := 0
	for i := range h.keys {
		if h.n[i] != 0 {
			h.keys[j], h.n[j] = h.keys[i], h.n[i]
			j++
		}
	}
	h.keys, h.n, h.zeros = h.keys[:j], h.n[:j], 0
	if cap(h.keys) > 64 && cap(h.keys) > 4*j {
		h.keys = append([]uint32(nil), h.keys...)
		h.n = append([]int32(nil), h.n...)
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
	for i, c := range h.n {
		if c != 0 {
			return int64(h.keys[i]), true
		}
	}
	return 0, false
}

// countInto adds each time's count to out[b], where b is the first
// bucket whose threshold thr[b] the time reaches: thr is decreasing, and
// the last bucket takes everything older.
func (h *hist) countInto(out []int64, thr []int64) {
	b := 0
	for i := len(h.keys) - 1; i >= 0; i-- {
		t := int64(h.keys[i])
		for b < len(out)-1 && t < thr[b] {
			b++
		}
		out[b] += int64(h.n[i])
	}
}

// trim compacts h and drops its spare capacity.
func (h *hist) trim() {
	if h.zeros > 0 {
		h.compact()
	}
	if cap(h.keys) > len(h.keys)+len(h.keys)/8 {
		h.keys = append([]uint32(nil), h.keys...)
		h.n = append([]int32(nil), h.n...)
	}
}
