package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/event"
)

// The event stream must keep up with delivery: the relay bench
// (bench/relay) moves about 1,600-2,400 messages a second on this
// machine, each making four events or more (received, activated, sent,
// deleted), so some 10,000 events a second.
//
//	go test -run - -bench Stream ./internal/httpapi
//
// BenchmarkRingObserve is the publisher's cost per event (what a
// delivery pays); BenchmarkStreamThroughput the whole path to a client
// that parses the stream over loopback HTTP, as events per second.

func benchEvent(i int) event.Event {
	return &event.Sent{Attempt: event.Attempt{
		ID: fmt.Sprintf("4Xk%07dz", i), Time: time.Unix(1700000000, 0), Service: "smtp",
		To: fmt.Sprintf("user%d@example.com", i%1000), Offset: 312, Relay: "mx.example.com[192.0.2.10]:25",
		Delay: 420 * time.Millisecond, Delays: [4]time.Duration{10 * time.Millisecond, 5 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond},
		DSN: "2.0.0", Reason: "250 2.0.0 Ok: queued as 4Xk0000001",
	}}
}

func benchLookup(id string) (string, string, bool) { return "active", "sender@example.org", true }

func BenchmarkRingObserve(b *testing.B) {
	r := NewRing(RingSize, nil, benchLookup)
	evs := make([]event.Event, 1024)
	for i := range evs {
		evs[i] = benchEvent(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Observe(evs[i%len(evs)])
	}
}

func BenchmarkStreamThroughput(b *testing.B) {
	for _, sel := range []string{"", "domain=example.com"} {
		name := "all"
		if sel != "" {
			name = "selector"
		}
		b.Run(name, func(b *testing.B) { benchStream(b, sel) })
	}
}

func benchStream(b *testing.B, sel string) {
	ring := NewRing(RingSize, nil, benchLookup)
	srv := streamServer(b, ring, StreamOptions{})
	resp, err := http.Get(srv.URL + "/?select=" + url.QueryEscape(sel))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var got, lost atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rd := NewSSEReader(resp.Body)
		for got.Load() < int64(b.N) {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			if ev.Event == EventLost {
				lost.Add(1)
				return
			}
			if _, err := ev.Decode(); err != nil {
				b.Error(err)
				return
			}
			got.Add(1)
		}
	}()
	evs := make([]event.Event, 1024)
	for i := range evs {
		evs[i] = benchEvent(i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// Publish as fast as the client reads, staying within the
		// ring: the sustained rate without losses.
		for int64(i)-got.Load() > RingSize/2 {
			time.Sleep(50 * time.Microsecond)
		}
		ring.Observe(evs[i%len(evs)])
	}
	<-done
	el := time.Since(start)
	b.StopTimer()
	if lost.Load() > 0 || got.Load() != int64(b.N) {
		b.Fatalf("client got %d of %d events (lost reported: %d)", got.Load(), b.N, lost.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}
