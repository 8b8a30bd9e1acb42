package server

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon's heap is the queue model, which grows with the queue, and
// short-lived garbage. sluice serve sets GOGC=400 so that collections
// are rare while the heap is small (the relay case); with a large queue
// that same setting lets the heap grow to five times what the model
// keeps: 1.5 GB at a million deferred messages, most of it the start-up
// scan's garbage. So the daemon also sets a soft memory limit
// (runtime/debug.SetMemoryLimit): memoryFloor, raised to a quarter above
// the live heap when the live heap comes near it, so that a queue larger
// than the floor allows costs memory in proportion rather than a
// collector that never stops. Under the limit GOGC=400 still rules. An
// operator's GOMEMLIMIT (the Go runtime's own variable) wins: the daemon
// then leaves the limit alone.

// memoryFloor is the soft memory limit the daemon starts with: with the
// model of a million deferred messages live (about 280 MB of heap) the
// process's resident size stays under 400 MB (it runs about 13 MiB above
// the limit: the binary, and what the runtime keeps outside the limit;
// at 368 MiB the peak was 381 MiB, 399.6 MB, too near the bound).
const memoryFloor = 352 << 20

// memoryEvery is how often the limit is looked at again.
const memoryEvery = time.Second

// limitFor is the soft memory limit for a live heap of live bytes.
func limitFor(live uint64) int64 {
	return max(memoryFloor, int64(live+live/4))
}

// A listing of the whole queue allocates far more than it keeps: at a
// million messages some 300 MB in the seconds it takes, over a live heap
// of about 310 MB (the model and the listing's directory readings). With
// the limit a quarter above the live heap the heap fills to it, and the
// process went past the 400 MB it is meant to stay under. So while a
// listing runs the limit is at most listingHeadroom above the live heap
// (never under the floor): the collector runs more often for those
// seconds (a few tenths of a second each at a million messages), and
// memory stays where it was. Queues that fit under the floor see no
// difference.
const listingHeadroom = 32 << 20

// listingLimitFor is the soft memory limit while a listing runs.
func listingLimitFor(live uint64) int64 {
	return max(memoryFloor, min(limitFor(live), int64(live)+listingHeadroom))
}

// listingBegins is the Lister's hook (showq.Lister.SetOnListing): the
// limit is held at listingLimitFor until the last listing running ends.
func (s *Server) listingBegins() (ends func()) {
	s.listings.Add(1)
	if s.memTuned.Load() {
		debug.SetMemoryLimit(listingLimitFor(s.liveHeap.Load()))
	}
	return func() {
		if s.listings.Add(-1) == 0 && s.memTuned.Load() {
			debug.SetMemoryLimit(limitFor(s.liveHeap.Load()))
		}
	}
}

// limitNow is the soft memory limit for a live heap of live bytes, with
// or without a listing running.
func (s *Server) limitNow(live uint64) int64 {
	if s.listings.Load() > 0 {
		return listingLimitFor(live)
	}
	return limitFor(live)
}

// The listings' kept renderings (showq's segments, memory files outside
// the heap) get what the heap leaves of listingRoom, up to
// listingCacheMax: 64 MB holds the listing of 160,000 messages, and
// a daemon whose model is large (a million messages take about 280 MB
// of heap) keeps none, so that its memory stays what it was without
// them. The heap is the live heap the collector last measured.
const (
	listingRoom     = memoryFloor / 2
	listingCacheMax = 64 << 20
)

// listingCacheLimit is the bound on the kept renderings now.
func (s *Server) listingCacheLimit() int64 {
	return listingCacheFor(s.liveHeap.Load())
}

func listingCacheFor(live uint64) int64 {
	return min(listingCacheMax, max(0, listingRoom-int64(live)))
}

// sampleLive sets s.liveHeap to the live heap the collector last
// measured.
func (s *Server) sampleLive(sample []metrics.Sample) (uint64, bool) {
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	live := sample[0].Value.Uint64()
	s.liveHeap.Store(live)
	return live, true
}

// tuneMemory keeps the soft memory limit at limitFor(live heap) until ctx
// ends, and s.liveHeap current; it leaves the limit alone when
// GOMEMLIMIT set one.
func (s *Server) tuneMemory(ctx context.Context) {
	tune := debug.SetMemoryLimit(-1) == math.MaxInt64
	if tune {
		debug.SetMemoryLimit(memoryFloor)
	}
	s.memTuned.Store(tune)
	defer s.memTuned.Store(false)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	s.sampleLive(sample)
	// The process's own time, not the daemon's clock (s.clk): memory is
	// real, and a test's fake clock must not find this timer among the
	// queue manager's.
	t := time.NewTicker(memoryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if live, ok := s.sampleLive(sample); ok && tune {
			debug.SetMemoryLimit(s.limitNow(live))
		}
	}
}
