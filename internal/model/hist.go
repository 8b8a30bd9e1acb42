package model

import "sort"

// hist counts items by a time in seconds. Updates are O(1); the sorted
// keys and their prefix sums are rebuilt on the first query after a
// change, so a query is O(log n) per bucket boundary on a quiet queue
// and O(n) for n distinct seconds right after a change. n is bounded by
// the number of distinct arrival seconds of one domain, not by the
// number of messages.
type hist struct {
	n      map[int64]int32
	total  int64
	keys   []int64 // sorted, valid unless keysDirty
	prefix []int64 // prefix[i] = sum of counts of keys[:i]
	dirty  bool
}

func (h *hist) add(t int64, d int32) {
	if h.n == nil {
		h.n = make(map[int64]int32, 4)
	}
	c := h.n[t] + d
	if c <= 0 {
		delete(h.n, t)
	} else {
		h.n[t] = c
	}
	h.total += int64(d)
	h.dirty = true
}

func (h *hist) refresh() {
	if !h.dirty {
		return
	}
	h.keys = h.keys[:0]
	for k := range h.n {
		h.keys = append(h.keys, k)
	}
	sort.Slice(h.keys, func(i, j int) bool { return h.keys[i] < h.keys[j] })
	if cap(h.prefix) < len(h.keys)+1 {
		h.prefix = make([]int64, len(h.keys)+1)
	}
	h.prefix = h.prefix[:len(h.keys)+1]
	h.prefix[0] = 0
	for i, k := range h.keys {
		h.prefix[i+1] = h.prefix[i] + int64(h.n[k])
	}
	h.dirty = false
}

// min returns the smallest time counted, and false when empty.
func (h *hist) min() (int64, bool) {
	if len(h.n) == 0 {
		return 0, false
	}
	h.refresh()
	return h.keys[0], true
}

// buckets adds to out[b] the count of each bucket b, where bucket(t) is
// non-increasing in t and in [0, len(out)).
func (h *hist) buckets(out []int64, bucket func(t int64) int) {
	if len(h.n) == 0 {
		return
	}
	h.refresh()
	// hi is the end of the keys not yet given to a bucket: keys[:hi]
	// all have a bucket ≥ b while b goes down.
	hi := len(h.keys)
	for b := 0; b < len(out) && hi > 0; b++ {
		// The first key whose bucket is ≤ b: everything from it up to
		// hi is in bucket b (or lower, already counted).
		lo := sort.Search(hi, func(i int) bool { return bucket(h.keys[i]) <= b })
		out[b] += h.prefix[hi] - h.prefix[lo]
		hi = lo
	}
}
