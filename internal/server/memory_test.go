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

// TestListingLimitFor: while a listing runs, a large heap gets at most
// listingHeadroom of room above it; a small one keeps the floor, and the
// limit is never above what it is without a listing.
func TestListingLimitFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, memoryFloor},
		{40 << 20, memoryFloor},                // 100,000 messages
		{300 << 20, memoryFloor},               // a million, between listings
		{330 << 20, 330<<20 + listingHeadroom}, // a million, listing
		{2 << 30, 2<<30 + listingHeadroom},
	} {
		got := listingLimitFor(c.live)
		if got != c.want {
			t.Errorf("live heap %d: %d, want %d", c.live, got, c.want)
		}
		if got > limitFor(c.live) {
			t.Errorf("live heap %d: %d during a listing, above %d without", c.live, got, limitFor(c.live))
		}
	}
	s := &Server{}
	s.liveHeap.Store(330 << 20)
	end := s.listingBegins()
	if got := s.limitNow(330 << 20); got != 330<<20+listingHeadroom {
		t.Errorf("limit during a listing %d", got)
	}
	end()
	if got := s.limitNow(330 << 20); got != limitFor(330<<20) {
		t.Errorf("limit after the listing %d, want %d", got, limitFor(330<<20))
	}
}
