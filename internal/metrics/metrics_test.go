package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"sluice/internal/cleanup"
	"sluice/internal/event"
	"sluice/internal/model"
)

type fakeSource struct{ s model.Summary }

func (f *fakeSource) Summary() model.Summary { return f.s }

// scrape serves the registry over HTTP and parses the text exposition,
// as Prometheus would.
func scrapeText(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, w.Body)
	}
	return fams
}

// value is the sample of family name with the label pairs lv ("k=v").
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, lv ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.Metric {
		for _, want := range lv {
			k, v, _ := strings.Cut(want, "=")
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", name, lv)
	return 0
}

func attempt(id, to, class string, delay time.Duration) event.Attempt {
	return event.Attempt{ID: id, To: to, Class: class, Delay: delay}
}

func TestCollector(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := &fakeSource{model.Summary{
		Queues: []model.QueueSummary{
			{Queue: "incoming"},
			{Queue: "deferred", Messages: 3, Recipients: 5, Bytes: 4096, Oldest: now.Add(-2 * time.Hour)},
		},
		Classes: []model.ClassSummary{{Class: "greylisting", Messages: 2, Recipients: 4}, {Class: "", Recipients: 1}},
		Drift:   7,
		Loading: true,
	}}
	c := New(src, func() time.Time { return now })
	c.SetStream(func() (uint64, int) { return 11, 2 })
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	c.Observe(&event.Sent{Attempt: attempt("A", "a@x", "", 2*time.Second)})
	c.Observe(&event.Sent{Attempt: attempt("A", "b@x", "", 3*time.Second)})
	c.Observe(&event.Deferred{Attempt: attempt("B", "c@x", "greylisting", time.Hour)})
	c.Observe(&event.Deferred{Attempt: attempt("B", "d@x", "", time.Hour)})
	c.Observe(&event.Bounced{Attempt: attempt("C", "e@x", "mailbox-unavailable", time.Minute)})
	c.Observe(&event.Expired{ID: "D"})
	c.Observe(&event.Moved{ID: "B", From: "active", To: "deferred"})

	f := scrapeText(t, reg)
	for _, tt := range []struct {
		name string
		lv   []string
		want float64
	}{
		{"sluice_deliveries_total", []string{"status=sent"}, 2},
		{"sluice_deliveries_total", []string{"status=deferred"}, 2},
		{"sluice_deliveries_total", []string{"status=bounced"}, 1},
		{"sluice_deliveries_total", []string{"status=expired"}, 1},
		{"sluice_deferrals_total", []string{"class=greylisting"}, 1},
		{"sluice_deferrals_total", []string{"class=other"}, 1},
		{"sluice_deferrals_total", []string{"class=timeout"}, 0}, // present before its first
		{"sluice_delivery_duration_seconds", []string{"status=sent"}, 2},
		{"sluice_delivery_duration_seconds", []string{"status=deferred"}, 2},
		{"sluice_events_total", []string{"type=moved"}, 1},
		{"sluice_queue_messages", []string{"queue=deferred"}, 3},
		{"sluice_queue_recipients", []string{"queue=deferred"}, 5},
		{"sluice_queue_bytes", []string{"queue=deferred"}, 4096},
		{"sluice_queue_oldest_age_seconds", []string{"queue=deferred"}, 7200},
		{"sluice_queue_oldest_age_seconds", []string{"queue=incoming"}, 0},
		{"sluice_queue_class_recipients", []string{"class=greylisting"}, 4},
		{"sluice_queue_class_recipients", []string{"class=timeout"}, 0},
		{"sluice_queue_model_loading", nil, 1},
		{"sluice_index_drift_total", nil, 7},
		{"sluice_event_stream_clients", nil, 2},
		{"sluice_event_stream_lost_total", nil, 11},
	} {
		if got := value(t, f, tt.name, tt.lv...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.lv, got, tt.want)
		}
	}
	// The histogram's buckets: the sent attempts of 2 s and 3 s are
	// both at or under 5 s, neither under 1 s.
	for _, m := range f["sluice_delivery_duration_seconds"].Metric {
		if m.Label[0].GetValue() != "sent" {
			continue
		}
		for _, b := range m.Histogram.Bucket {
			want := uint64(0)
			if b.GetUpperBound() >= 5 {
				want = 2
			} else if b.GetUpperBound() >= 2.5 {
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}
	// Bounded labels: the class label has only the known classes.
	if n := len(f["sluice_deferrals_total"].Metric); n != len(event.ClassNames()) {
		t.Errorf("%d class series, want %d", n, len(event.ClassNames()))
	}
}

func TestIntakeHooks(t *testing.T) {
	c := New(&fakeSource{}, nil)
	reg := prometheus.NewRegistry()
	c.Register(reg)
	errs := []error{nil, nil, &cleanup.Reject{Code: 554, DSN: "5.4.0", Text: "too many hops"},
		fmt.Errorf("wrapped: %w", &cleanup.FilterRejectError{Reply: "550 no"}), cleanup.ErrQueueWrite, context.Canceled}
	for _, e := range errs {
		submit := c.Submit(func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) { return "ID", e })
		if _, err := submit(context.Background(), &cleanup.Message{}, strings.NewReader("")); !errors.Is(err, e) {
			t.Errorf("the hook changed the error %v into %v", e, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Listener(ln)
	defer cl.Close()
	for range 3 {
		go func() {
			if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				conn.Close()
			}
		}()
		conn, err := cl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	f := scrapeText(t, reg)
	for lv, want := range map[string]float64{"result=accepted": 2, "result=rejected": 2, "result=failed": 2} {
		if got := value(t, f, "sluice_smtpd_messages_total", lv); got != want {
			t.Errorf("messages %s = %v, want %v", lv, got, want)
		}
	}
	if got := value(t, f, "sluice_smtpd_connections_total"); got != 3 {
		t.Errorf("connections = %v", got)
	}
}
