// Package metrics is sluice serve's Prometheus metrics: counters fed by
// the daemon's events (package event) and by two hooks on SMTP intake,
// and gauges read from the live queue model when Prometheus scrapes.
//
// Every label has a small fixed set of values: queues, delivery
// statuses, reason classes, intake results. There is no label per
// message, sender or destination domain, so the series count does not
// grow with the mail.
//
//	sluice_queue_messages{queue}            messages in incoming, active, deferred, hold, corrupt
//	sluice_queue_recipients{queue}          their pending recipients
//	sluice_queue_bytes{queue}               their sizes (the messages' lengths)
//	sluice_queue_oldest_age_seconds{queue}  age of the oldest message; 0 when empty
//	sluice_queue_class_recipients{class}    pending recipients by the class of their last reason
//	sluice_queue_model_loading              1 while the model's first scan runs: the gauges above are partial
//	sluice_deliveries_total{status}         delivery attempts per recipient: sent, deferred, bounced; and
//	                                        expired messages (returned at the end of their lifetime)
//	sluice_deferrals_total{class}           deferred attempts by reason class
//	sluice_delivery_duration_seconds{status} time from arrival to each attempt's end (the log's delay=)
//	sluice_smtpd_connections_total          SMTP connections accepted
//	sluice_smtpd_messages_total{result}     messages at the end of DATA: accepted (queued), rejected
//	                                        (cleanup, a milter or a content filter refused it),
//	                                        failed (not queued otherwise: a queue write error, the
//	                                        client went away, data over message_size_limit)
//	sluice_events_total{type}               events published (received, sent, moved, ...)
//	sluice_index_drift_total                differences between the model and the files that
//	                                        reconcile found and fixed
//	sluice_event_stream_clients             open event streams (API and control socket)
//	sluice_event_stream_lost_total          events streams skipped because their client fell behind
//
// The queue gauges cost O(queues + classes) per scrape, whatever the
// queue's size: they come from the model's aggregates (model.Summary).
package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/internal/cleanup"
	"sluice/internal/event"
	"sluice/internal/model"
)

// Source is what the scrape-time gauges read: the model's aggregates.
type Source interface {
	Summary() model.Summary
}

// StreamStats reports the event stream's lost events and open clients
// (httpapi.Ring.Stats).
type StreamStats func() (lost uint64, streams int)

// Statuses of sluice_deliveries_total and results of
// sluice_smtpd_messages_total.
var (
	statuses = []string{"sent", "deferred", "bounced", "expired"}
	results  = []string{"accepted", "rejected", "failed"}
)

// DurationBuckets are sluice_delivery_duration_seconds's buckets: from a
// relay's sub-second hop to the five days of maximal_queue_lifetime.
var DurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 5 * 86400}

// Collector holds the daemon's metrics. It is an event.Observer: subscribe
// it to the bus.
type Collector struct {
	src    Source
	now    func() time.Time
	stream StreamStats

	deliveries  *prometheus.CounterVec
	deferrals   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	connections prometheus.Counter
	messages    *prometheus.CounterVec
	events      *prometheus.CounterVec

	qMsgs, qRcpts, qBytes, qOldest, classRcpts, loading, drift, streams, lost *prometheus.Desc
}

// New returns a collector over src; now is the clock for the oldest
// message's age.
func New(src Source, now func() time.Time) *Collector {
	if now == nil {
		now = time.Now
	}
	c := &Collector{
		src: src, now: now,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_deliveries_total",
			Help: "Delivery attempts per recipient by outcome (sent, deferred, bounced), and messages expired.",
		}, []string{"status"}),
		deferrals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_deferrals_total",
			Help: "Deferred delivery attempts per recipient by reason class.",
		}, []string{"class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_delivery_duration_seconds",
			Help:    "Time from a message's arrival to the end of a delivery attempt for one recipient (the log's delay=).",
			Buckets: DurationBuckets,
		}, []string{"status"}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_smtpd_connections_total",
			Help: "SMTP connections accepted.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_smtpd_messages_total",
			Help: "Messages received over SMTP at the end of DATA: accepted (queued), rejected (cleanup, a milter or a content filter refused it), failed (not queued for another reason).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_total",
			Help: "Queue events published, by type.",
		}, []string{"type"}),
		qMsgs:      prometheus.NewDesc("sluice_queue_messages", "Messages in each queue.", []string{"queue"}, nil),
		qRcpts:     prometheus.NewDesc("sluice_queue_recipients", "Pending recipients in each queue.", []string{"queue"}, nil),
		qBytes:     prometheus.NewDesc("sluice_queue_bytes", "Bytes of the messages in each queue (their message lengths).", []string{"queue"}, nil),
		qOldest:    prometheus.NewDesc("sluice_queue_oldest_age_seconds", "Age of the oldest message in each queue; 0 when the queue is empty.", []string{"queue"}, nil),
		classRcpts: prometheus.NewDesc("sluice_queue_class_recipients", "Pending recipients by the reason class of their last deferral.", []string{"class"}, nil),
		loading:    prometheus.NewDesc("sluice_queue_model_loading", "1 while the queue model's first scan runs (the queue gauges are partial), else 0.", nil, nil),
		drift:      prometheus.NewDesc("sluice_index_drift_total", "Differences between the queue model and the files that reconcile found and fixed.", nil, nil),
		streams:    prometheus.NewDesc("sluice_event_stream_clients", "Open event streams.", nil, nil),
		lost:       prometheus.NewDesc("sluice_event_stream_lost_total", "Events that streams skipped because their client fell behind the ring.", nil, nil),
	}
	// Every known label value starts at 0, so that rate() and alerts
	// see a series before its first increment.
	for _, s := range statuses {
		c.deliveries.WithLabelValues(s)
	}
	for _, s := range statuses[:3] {
		c.duration.WithLabelValues(s)
	}
	for _, cl := range event.ClassNames() {
		c.deferrals.WithLabelValues(cl)
	}
	for _, r := range results {
		c.messages.WithLabelValues(r)
	}
	return c
}

// SetStream makes the collector report the event stream's numbers.
func (c *Collector) SetStream(s StreamStats) { c.stream = s }

// Register adds the collector to r.
func (c *Collector) Register(r prometheus.Registerer) error {
	for _, x := range []prometheus.Collector{c.deliveries, c.deferrals, c.duration, c.connections, c.messages, c.events, scrape{c}} {
		if err := r.Register(x); err != nil {
			return err
		}
	}
	return nil
}

// Observe counts an event.
func (c *Collector) Observe(e event.Event) {
	var a *event.Attempt
	typ := ""
	switch e := e.(type) {
	case *event.Sent:
		a, typ = &e.Attempt, "sent"
	case *event.Deferred:
		a, typ = &e.Attempt, "deferred"
		cl := e.Class
		if cl == "" {
			cl = event.ClassOther
		}
		c.deferrals.WithLabelValues(cl).Inc()
	case *event.Bounced:
		a, typ = &e.Attempt, "bounced"
	case *event.Expired:
		typ = "expired"
		c.deliveries.WithLabelValues("expired").Inc()
	case *event.Received:
		typ = "received"
	case *event.Withdrawn:
		typ = "withdrawn"
	case *event.Activated:
		typ = "activated"
	case *event.Deleted:
		typ = "deleted"
	case *event.Moved:
		typ = "moved"
	case *event.Held:
		typ = "held"
	case *event.Released:
		typ = "released"
	case *event.Requeued:
		typ = "requeued"
	case *event.Corrupt:
		typ = "corrupt"
	case *event.Notified:
		typ = "notified"
	default:
		return // a type this version does not know: no new label value
	}
	c.events.WithLabelValues(typ).Inc()
	if a != nil {
		c.deliveries.WithLabelValues(typ).Inc()
		c.duration.WithLabelValues(typ).Observe(a.Delay.Seconds())
	}
}

// Listener counts the connections l accepts.
func (c *Collector) Listener(l net.Listener) net.Listener { return countingListener{l, c.connections} }

type countingListener struct {
	net.Listener
	n prometheus.Counter
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.n.Inc()
	}
	return conn, err
}

// SubmitFunc is how an SMTP session queues a message (smtpd.Config.Submit).
type SubmitFunc = func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error)

// Submit counts the outcome of each message f queues.
func (c *Collector) Submit(f SubmitFunc) SubmitFunc {
	return func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
		id, err := f(ctx, m, r)
		c.messages.WithLabelValues(submitResult(err)).Inc()
		return id, err
	}
}

// submitResult is the result label of a submission's error: a refusal
// of the message by cleanup or its filters, or any other failure.
func submitResult(err error) string {
	if err == nil {
		return "accepted"
	}
	var rej *cleanup.Reject
	var frej *cleanup.FilterRejectError
	if errors.As(err, &rej) || errors.As(err, &frej) || errors.Is(err, cleanup.ErrTooBig) || errors.Is(err, cleanup.ErrNoRecipients) {
		return "rejected"
	}
	return "failed"
}

// scrape is the part read at scrape time.
type scrape struct{ c *Collector }

func (s scrape) Describe(ch chan<- *prometheus.Desc) {
	c := s.c
	for _, d := range []*prometheus.Desc{c.qMsgs, c.qRcpts, c.qBytes, c.qOldest, c.classRcpts, c.loading, c.drift, c.streams, c.lost} {
		ch <- d
	}
}

func (s scrape) Collect(ch chan<- prometheus.Metric) {
	c := s.c
	sum := c.src.Summary()
	now := c.now()
	for _, q := range sum.Queues {
		ch <- prometheus.MustNewConstMetric(c.qMsgs, prometheus.GaugeValue, float64(q.Messages), q.Queue)
		ch <- prometheus.MustNewConstMetric(c.qRcpts, prometheus.GaugeValue, float64(q.Recipients), q.Queue)
		ch <- prometheus.MustNewConstMetric(c.qBytes, prometheus.GaugeValue, float64(q.Bytes), q.Queue)
		age := 0.0
		if !q.Oldest.IsZero() && q.Messages > 0 {
			age = max(now.Sub(q.Oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.qOldest, prometheus.GaugeValue, age, q.Queue)
	}
	byClass := map[string]int64{}
	for _, cl := range sum.Classes {
		if cl.Class != "" {
			byClass[cl.Class] = cl.Recipients
		}
	}
	for _, cl := range event.ClassNames() {
		ch <- prometheus.MustNewConstMetric(c.classRcpts, prometheus.GaugeValue, float64(byClass[cl]), cl)
	}
	loading := 0.0
	if sum.Loading {
		loading = 1
	}
	ch <- prometheus.MustNewConstMetric(c.loading, prometheus.GaugeValue, loading)
	ch <- prometheus.MustNewConstMetric(c.drift, prometheus.CounterValue, float64(sum.Drift))
	if c.stream != nil {
		lost, n := c.stream()
		ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(lost))
	}
}
