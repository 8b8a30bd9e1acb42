package dashboard

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"sluice/internal/smtp"
)

// fakeSource is a Source over plain data, recording what it was asked.
type fakeSource struct {
	mu       sync.Mutex
	summary  Summary
	heat     map[string]HeatMap // by queue; senders maps under "s:"+queue
	msgs     []MessageRow
	details  map[string]*MessageDetail
	dests    []Destination
	caps     Capabilities
	acts     []ActRequest
	actRes   ActResult
	suspends []string
	probes   []string
	selErr   string // a selector that fails to parse, with this message
}

func (f *fakeSource) Summary(time.Time) Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.summary
	s.Queues = append([]QueueCount(nil), s.Queues...)
	s.Classes = append([]ClassCount(nil), s.Classes...)
	return s
}

func (f *fakeSource) HeatMap(q string, senders bool, _ time.Time) HeatMap {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := q
	if senders {
		k = "s:" + q
	}
	h := f.heat[k]
	h.Queue, h.Senders = q, senders
	return h
}

func (f *fakeSource) Messages(_ context.Context, sel string, limit int, after string) (MessagePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.selErr != "" && strings.Contains(sel, "bogus") {
		return MessagePage{}, &SelectorError{errors.New(f.selErr)}
	}
	var pg MessagePage
	for _, m := range f.msgs {
		if m.ID <= after {
			continue
		}
		if len(pg.Messages) == limit {
			pg.Next = pg.Messages[len(pg.Messages)-1].ID
			break
		}
		pg.Messages = append(pg.Messages, m)
	}
	return pg, nil
}

func (f *fakeSource) Message(_ context.Context, id string) (*MessageDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.details[id]
	if m == nil {
		return nil, ErrNotFound
	}
	return m, nil
}

func (f *fakeSource) Destinations(context.Context, time.Time) ([]Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dests, nil
}

func (f *fakeSource) Act(_ context.Context, req ActRequest) (ActResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acts = append(f.acts, req)
	if f.selErr != "" && strings.Contains(req.Selector, "bogus") {
		return ActResult{}, &SelectorError{errors.New(f.selErr)}
	}
	return f.actRes, nil
}

func (f *fakeSource) Probe(_ context.Context, target string) (*smtp.ProbeReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes = append(f.probes, target)
	return &smtp.ProbeReport{Target: target, NextHop: target, Via: "mx", TLSPolicy: "may",
		Hosts: []smtp.ProbeHost{{Host: "mx." + target, Address: "127.0.0.1", Port: 25, Banner: "220 <b>hi</b>", Verdict: "connection refused"}}}, nil
}

func (f *fakeSource) Suspend(_ context.Context, target string, d time.Duration, reason, who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.caps.Suspend {
		return ErrUnavailable
	}
	f.suspends = append(f.suspends, "suspend "+target+" "+d.String()+" "+reason+" "+who)
	return nil
}

func (f *fakeSource) Resume(_ context.Context, target, who string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.caps.Suspend {
		return ErrUnavailable
	}
	f.suspends = append(f.suspends, "resume "+target+" "+who)
	return nil
}

func (f *fakeSource) Capabilities() Capabilities {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caps
}

// evil is attacker-chosen text that must never reach a page unescaped.
const evil = `<script>alert(1)</script>`

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFake() *fakeSource {
	f := &fakeSource{caps: Capabilities{Probe: true}, details: map[string]*MessageDetail{}}
	f.summary = Summary{
		Queues: []QueueCount{
			{Queue: "maildrop"}, {Queue: "incoming"},
			{Queue: "active", Messages: 2, Recipients: 2, Bytes: 2048, Oldest: t0.Add(-3 * time.Minute)},
			{Queue: "deferred", Messages: 7, Recipients: 9, Bytes: 9 << 20, Oldest: t0.Add(-50 * time.Minute)},
			{Queue: "hold", Messages: 1, Recipients: 1, Bytes: 100, Oldest: t0.Add(-2 * time.Hour)},
			{Queue: "corrupt"},
		},
		Classes: []ClassCount{
			{Class: "connection-refused", Description: "the peer refused the TCP connection", Messages: 5, Recipients: 6, Example: "connect to mx.example.com[192.0.2.1]:25: Connection refused"},
			{Class: "greylisting", Messages: 2, Recipients: 3, Example: "450 4.7.1 " + evil},
		},
	}
	bounds := []float64{5, 10, 20, 40, 80, 160, 320, 640, 1280}
	f.heat = map[string]HeatMap{
		"deferred": {Bounds: bounds, Total: []int64{0, 0, 1, 3, 5, 0, 0, 0, 0, 0}, Rows: []HeatRow{
			{Domain: "example.com", Total: 6, Counts: []int64{0, 0, 1, 2, 3, 0, 0, 0, 0, 0}},
			{Domain: "x.example", Total: 3, Counts: []int64{0, 0, 0, 1, 2, 0, 0, 0, 0, 0}},
		}},
		"active": {Bounds: bounds, Total: []int64{2, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Rows: []HeatRow{
			{Domain: "example.org", Total: 2, Counts: []int64{2, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		}},
		"s:deferred": {Bounds: bounds, Total: []int64{0, 0, 1, 3, 3, 0, 0, 0, 0, 0}, Rows: []HeatRow{
			{Domain: "MAILER-DAEMON", Total: 2, Counts: []int64{0, 0, 0, 1, 1, 0, 0, 0, 0, 0}},
			{Domain: "sender.example", Total: 5, Counts: []int64{0, 0, 1, 2, 2, 0, 0, 0, 0, 0}},
		}},
	}
	for i, id := range []string{"4AB01", "4AB02", "4AB03"} {
		f.msgs = append(f.msgs, MessageRow{ID: id, Queue: "deferred", Arrival: t0.Add(-time.Duration(i+30) * time.Minute), Size: 1234,
			Sender: `"` + evil + `"@x.example`, Recipients: []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"},
			Reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused"})
	}
	sort.Slice(f.msgs, func(i, j int) bool { return f.msgs[i].ID < f.msgs[j].ID })
	f.details["4AB01"] = &MessageDetail{ID: "4AB01", Queue: "deferred", Size: 1234, Arrival: t0.Add(-30 * time.Minute),
		Sender: `"` + evil + `"@x.example`, Next: t0.Add(10 * time.Minute), Expiry: t0.Add(5 * 24 * time.Hour),
		Headers: []Header{{"Subject", evil}, {"From", "a@x.example"}},
		Body:    "Hello <b>bold</b> " + evil + "\n",
		Recipients: []RecipientDetail{{Address: "a@example.com", State: "pending", DSN: "4.4.1", Class: "connection-refused",
			Reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused", AttemptN: 2, LastAttempt: t0.Add(-5 * time.Minute),
			Attempts: []Attempt{{Time: t0.Add(-5 * time.Minute), Relay: "mx.example.com[192.0.2.1]:25", Status: "deferred", DSN: "4.4.1", Reply: "Connection refused"}}}},
	}
	f.dests = []Destination{{Domain: "example.com", Messages: 5, Recipients: 6, Oldest: t0.Add(-50 * time.Minute),
		Classes: []ClassCount{{Class: "connection-refused", Recipients: 6}}, Reasons: []string{"Connection refused " + evil}}}
	f.actRes = ActResult{Matched: 3, Changed: 2, Skipped: 1, Reasons: []string{"4AB03: already on hold"}, Sample: f.msgs[:2]}
	return f
}
