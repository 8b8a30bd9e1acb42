package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"sluice/internal/cli"
	"sluice/internal/control"
	"sluice/internal/httpapi"
	"sluice/internal/spool"
	"sluice/internal/testutil"
	"sluice/internal/testutil/fakesmtp"
)

// sseClient reads one event stream of the HTTP API in the background,
// stamping each event with the time it arrived.
type sseClient struct {
	t      *testing.T
	cancel context.CancelFunc
	mu     sync.Mutex
	events []arrived
	done   chan struct{}
}

type arrived struct {
	httpapi.SSE
	at time.Time
}

// openEvents opens /api/v1/events with the selector and Last-Event-ID.
func (m *mta) openEvents(sel, lastID string) *sseClient {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+m.srv.HTTPAddr()+"/api/v1/events?select="+url.QueryEscape(sel), nil)
	req.Header.Set("Authorization", "Bearer "+m.token())
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		m.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: m.t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer resp.Body.Close()
		r := httpapi.NewSSEReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.events = append(c.events, arrived{ev, time.Now()})
			c.mu.Unlock()
		}
	}()
	m.t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.cancel(); <-c.done }

// wait returns the first event for which match holds, waiting for it.
func (c *sseClient) wait(what string, match func(httpapi.StreamEvent) bool) (arrived, httpapi.StreamEvent) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		evs := append([]arrived(nil), c.events...)
		c.mu.Unlock()
		for _, ev := range evs {
			if se, err := ev.Decode(); err == nil && ev.Event == "" && match(se) {
				return ev, se
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("no %s event", what)
	return arrived{}, httpapi.StreamEvent{}
}

func (c *sseClient) all() []arrived {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]arrived(nil), c.events...)
}

// scrapeMetrics parses /metrics with Prometheus's text parser.
func (m *mta) scrapeMetrics() map[string]*dto.MetricFamily {
	m.t.Helper()
	code, body := m.apiGet("/metrics", "")
	if code != 200 {
		m.t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		m.t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

// sample is the value of family name at the label pair k=v ("" for none).
func sample(fams map[string]*dto.MetricFamily, name, k, v string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, mt := range f.Metric {
		ok := k == ""
		for _, l := range mt.Label {
			ok = ok || (l.GetName() == k && l.GetValue() == v)
		}
		if !ok {
			continue
		}
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue(), true
		case mt.Gauge != nil:
			return mt.Gauge.GetValue(), true
		case mt.Histogram != nil:
			return float64(mt.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestEventsAndMetrics drives the live parts of the API against a
// running daemon: a deferral (the fake MX answers 450) reaches an SSE
// client within a second of being written to the queue; a client that
// reconnects with Last-Event-ID gets what it missed; /metrics agrees with
// the model and the events.
func TestEventsAndMetrics(t *testing.T) {
	m := newMTA(t)
	m.sink.RcptReply("grey@dest.test", fakesmtp.Reply{Text: "450 4.7.1 <grey@dest.test>: greylisted, try again later"})
	m.start()
	all := m.openEvents("", "")
	grey := m.openEvents("domain=dest.test class=greylisting", "")

	m.send("alice@src.test", []string{"grey@dest.test", "ok@dest.test"}, "hello")
	id := m.queueID("grey@dest.test")

	// The deferral is on disk when its defer log entry is; the event
	// comes right after that.
	var written time.Time
	m.waitFor("the defer log entry", func() bool {
		entries, err := m.srv.Spool().ReadLog(spool.Defer, id)
		if err == nil && len(entries) > 0 {
			written = time.Now()
			return true
		}
		return false
	})
	ev, se := grey.wait("deferred", func(e httpapi.StreamEvent) bool { return e.Type == "deferred" })
	if lag := ev.at.Sub(written); lag > time.Second {
		t.Errorf("the deferral's event came %v after the deferral", lag)
	}
	if se.QueueID != id || se.Recipient != "grey@dest.test" || se.Class != "greylisting" || se.DSN != "4.7.1" ||
		se.Sender == nil || *se.Sender != "alice@src.test" || !strings.Contains(se.Reason, "greylisted") || se.Queue != "active" {
		t.Errorf("deferred event: %s", ev.Data)
	}
	// The filtered stream got nothing else: not the sent, not the moves.
	m.waitFor("the move to deferred", func() bool { q := m.queued(spool.Deferred); return len(q) == 1 })
	all.wait("moved", func(e httpapi.StreamEvent) bool { return e.Type == "moved" && e.Queue == spool.Deferred })
	for _, ev := range grey.all() {
		if se, _ := ev.Decode(); ev.Event != "" || se.Type != "deferred" {
			t.Errorf("the greylisting stream got %s %s", ev.Event, ev.Data)
		}
	}
	var types []string
	for _, ev := range all.all() {
		se, _ := ev.Decode()
		types = append(types, se.Type)
	}
	if got := strings.Join(types, " "); !strings.HasPrefix(got, "received activated") || !strings.Contains(got, "sent") ||
		!strings.HasSuffix(got, "deferred moved") && !strings.HasSuffix(got, "deferred sent moved") {
		t.Errorf("event types: %s", got)
	}

	// Resume: disconnect, let things happen, reconnect from the last ID.
	last := all.all()
	lastID := last[len(last)-1].ID
	all.close()
	// A flush (over the API) retries the message: it is deferred again.
	req, _ := http.NewRequest("POST", "http://"+m.srv.HTTPAddr()+"/api/v1/flush", nil)
	req.Header.Set("Authorization", "Bearer "+m.token())
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("flush: %v %v", resp, err)
	}
	resumed := m.openEvents("", lastID)
	resumed.wait("second move to deferred", func(e httpapi.StreamEvent) bool {
		return e.Type == "moved" && e.Queue == spool.Deferred && e.FromQueue == spool.Active
	})
	var again []string
	for _, ev := range resumed.all() {
		se, _ := ev.Decode()
		again = append(again, se.Type)
	}
	if first := resumed.all()[0]; first.ID == lastID || first.Event != "" {
		t.Errorf("resumed stream began with %s %s %s", first.ID, first.Event, first.Data)
	}
	if got := strings.Join(again, " "); !strings.HasSuffix(got, "activated deferred moved") {
		t.Errorf("after resuming: %s", got)
	}
	m.waitFor("the filtered stream's second deferral", func() bool { return len(grey.all()) == 2 })

	c, err := control.Dial(m.spool)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// /metrics: the queue gauges are the model's numbers; the counters
	// count what the stream showed.
	m.waitFor("the model to load", func() bool { s, err := c.ModelSummary(ctx); return err == nil && !s.Loading })
	sum, err := c.ModelSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := m.scrapeMetrics()
	for _, q := range sum.Queues {
		for name, want := range map[string]int64{"sluice_queue_messages": q.Messages, "sluice_queue_recipients": q.Recipients, "sluice_queue_bytes": q.Bytes} {
			if got, ok := sample(fams, name, "queue", q.Queue); !ok || got != float64(want) {
				t.Errorf("%s{queue=%s} = %v, the model says %d", name, q.Queue, got, want)
			}
		}
	}
	if got, _ := sample(fams, "sluice_queue_messages", "queue", "deferred"); got != 1 {
		t.Errorf("deferred messages: %v", got)
	}
	if got, _ := sample(fams, "sluice_queue_recipients", "queue", "deferred"); got != 1 {
		t.Errorf("deferred recipients: %v", got)
	}
	for _, tt := range []struct {
		name, k, v string
		want       float64
	}{
		{"sluice_deliveries_total", "status", "sent", 1},
		{"sluice_deliveries_total", "status", "deferred", 2},
		{"sluice_deliveries_total", "status", "bounced", 0},
		{"sluice_deferrals_total", "class", "greylisting", 2},
		{"sluice_queue_class_recipients", "class", "greylisting", 1},
		{"sluice_delivery_duration_seconds", "status", "sent", 1},
		{"sluice_smtpd_connections_total", "", "", 1},
		{"sluice_smtpd_messages_total", "result", "accepted", 1},
		{"sluice_events_total", "type", "activated", 2},
		{"sluice_index_drift_total", "", "", float64(sum.Drift)},
		{"sluice_queue_model_loading", "", "", 0},
		{"sluice_event_stream_clients", "", "", 2},
	} {
		if got, ok := sample(fams, tt.name, tt.k, tt.v); !ok || got != tt.want {
			t.Errorf("%s{%s=%s} = %v (%v), want %v", tt.name, tt.k, tt.v, got, ok, tt.want)
		}
	}
	if got, ok := sample(fams, "sluice_queue_oldest_age_seconds", "queue", "deferred"); !ok || got < 0 {
		t.Errorf("oldest deferred: %v", got)
	}

	// A selector key that describes queued mail, not events: 400 with
	// the selector's message.
	code, body := m.apiGet("/api/v1/events?select=age%3E1h", m.token())
	if code != 400 || !strings.Contains(string(body), "selector: bad term") {
		t.Errorf("events with age>1h: %d %s", code, body)
	}
}

// TestQueueWatch runs `sluice queue watch --json` against the daemon: it
// sees a delivery, through the control socket.
func TestQueueWatch(t *testing.T) {
	m := newMTA(t)
	m.start()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main([]string{"sluice", "queue", "watch", "-c", m.dir, "--json", "--count", "3", "rcpt=bob@dest.test"}, nil, &out, &errb)
	}()
	// Wait until the watcher's stream is open (the metrics count it),
	// so the delivery is not published before it listens.
	m.waitFor("the watcher to connect", func() bool {
		n, _ := sample(m.scrapeMetrics(), "sluice_event_stream_clients", "", "")
		select {
		case code := <-done:
			t.Fatalf("watch ended: %d %s", code, errb.String())
		default:
		}
		return n == 1
	})
	m.send("alice@src.test", []string{"bob@dest.test"}, "hello bob")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch: %d %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch saw no delivery; output %q, log:\n%s", out.String(), m.logbuf)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var types []string
	for _, l := range lines {
		var e httpapi.StreamEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("watch --json line %q: %v", l, err)
		}
		types = append(types, e.Type)
		if e.Type == "sent" && (e.Recipient != "bob@dest.test" || e.Relay == "" || e.DSN != "2.0.0") {
			t.Errorf("sent event: %s", l)
		}
	}
	// received, activated, sent: the first two with the recipient.
	if strings.Join(types, " ") != "received activated sent" {
		t.Errorf("watch saw %v", types)
	}

	// The human lines, and a selector the daemon refuses.
	out.Reset()
	go func() {
		done <- cli.Main([]string{"sluice", "queue", "watch", "-c", m.dir, "--count", "1", "rcpt=carol@dest.test"}, nil, &out, &errb)
	}()
	m.waitFor("the watcher to connect", func() bool {
		n, _ := sample(m.scrapeMetrics(), "sluice_event_stream_clients", "", "")
		return n == 1
	})
	m.send("alice@src.test", []string{"carol@dest.test"}, "hello carol")
	if code := <-done; code != 0 || !strings.Contains(out.String(), " received from=<alice@src.test> to=<carol@dest.test>") {
		t.Errorf("watch: %d %q %s", code, out.String(), errb.String())
	}
	errb.Reset()
	code := cli.Main([]string{"sluice", "queue", "watch", "-c", m.dir, "attempts>2"}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "not an event") {
		t.Errorf("watch attempts>2: %d %q", code, errb.String())
	}
}

// TestQueueWatchAcrossRestart: when the daemon stops, its streams end at
// once (the stop does not wait for them); watch waits for the next
// daemon, resumes with its Last-Event-ID and is told that the daemon
// restarted, then goes on (--count counts queue events, not that notice).
func TestQueueWatchAcrossRestart(t *testing.T) {
	m := newMTA(t)
	m.start()
	var out, errb testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main([]string{"sluice", "queue", "watch", "-c", m.dir, "--json", "--count", "4", "rcpt=bob@dest.test"}, nil, &out, &errb)
	}()
	connected := func() bool {
		n, _ := sample(m.scrapeMetrics(), "sluice_event_stream_clients", "", "")
		return n == 1
	}
	m.waitFor("the watcher to connect", connected)
	m.send("alice@src.test", []string{"bob@dest.test"}, "first")
	m.waitFor("the first message's events", func() bool { return strings.Count(out.String(), "\n") == 3 })
	stopped := time.Now()
	m.stop()
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("stopping with a stream open took %v", d)
	}
	m.waitFor("watch to notice", func() bool { return strings.Contains(errb.String(), "reconnecting") })
	m.start()
	m.waitFor("the watcher to reconnect", connected)
	m.send("alice@src.test", []string{"bob@dest.test"}, "second")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch: %d %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch did not end; output %q, errors %q", out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || lines[3] != `{"type":"restart"}` || !strings.HasPrefix(lines[4], `{"type":"received"`) {
		t.Errorf("watch across a restart printed:\n%s", out.String())
	}
}
