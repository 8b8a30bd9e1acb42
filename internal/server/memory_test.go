package server

import "testing"

// TestListingCacheFor: the listings' kept renderings get what the heap
// leaves of listingRoom, up to listingCacheMax; none beside a model the
// size of a million messages'.
func TestListingCacheFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, listingCacheMax},
		{40 << 20, listingCacheMax}, // 100,000 messages
		{listingRoom - 10<<20, 10 << 20},
		{listingRoom, 0},
		{300 << 20, 0}, // 1,000,000 messages
	} {
		if got := listingCacheFor(c.live); got != c.want {
			t.Errorf("live heap %d: %d, want %d", c.live, got, c.want)
		}
	}
}
