package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contactstop/contactstop/events"
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing, so tests and library users may leave Config.Metrics unset.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    prometheus.Histogram
	inFlight    prometheus.Gauge
	retries     prometheus.Counter
	redelivered prometheus.Counter
	deadLetters prometheus.Counter
	bulkItems   *prometheus.CounterVec
	bulkRuns    *prometheus.CounterVec
	bulkRunning prometheus.Gauge
}

// NewMetrics creates the worker's metrics and registers them, with a
// collector of the consumers' backlogs (read from JetStream at each scrape,
// with a 2 s limit), on reg.
func NewMetrics(reg prometheus.Registerer, js jetstream.JetStream) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_requests_total",
			Help: "Stop requests, by outcome and reason code (empty unless failed): stopped and failed count results stored, resend messages of requests answered before (no new result), retry attempts that met transient errors.",
		}, []string{"outcome", "reason_code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "contactstop_request_duration_seconds",
			Help:    "Time to decide a stop request: validation, instance check and the contact's compare-and-set.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "contactstop_in_flight",
			Help: "Stop requests being handled now.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "contactstop_retries_total",
			Help: "Requests retried with backoff within a delivery after a transient error.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "contactstop_redeliveries_total",
			Help: "Deliveries handed back to the server: after a failed attempt, at shutdown, or past their deadline.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "contactstop_dead_letters_total",
			Help: "Requests copied to the dead-letter stream after their last delivery.",
		}),
		bulkItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_bulk_contacts_total",
			Help: "Contacts handled by bulk runs, by outcome (stopped, failed, skipped, unreadable) and reason code; replays after a takeover count again.",
		}, []string{"outcome", "reason_code"}),
		bulkRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_bulk_runs_total",
			Help: "Bulk runs ended, by result (completed, already_completed, busy, handed_back, failed, refused).",
		}, []string{"result"}),
		bulkRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "contactstop_bulk_running",
			Help: "Bulk runs in progress in this process.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.retries, m.redelivered, m.deadLetters,
		m.bulkItems, m.bulkRuns, m.bulkRunning, &backlogCollector{js: js})
	return m
}

// decided counts one request answered with a stored result and observes
// how long it took.
func (m *Metrics) decided(res events.Result, took time.Duration) {
	if m == nil {
		return
	}
	m.duration.Observe(took.Seconds())
	if res.Stopped != nil {
		m.requests.WithLabelValues("stopped", "").Inc()
	} else {
		m.requests.WithLabelValues("failed", string(res.Failed.ReasonCode)).Inc()
	}
}

// resend counts a request answered before, acknowledged without a new
// result.
func (m *Metrics) resend() {
	if m != nil {
		m.requests.WithLabelValues("resend", "").Inc()
	}
}

// attempted counts an attempt that met transient errors, counted in the
// store.
func (m *Metrics) attempted() {
	if m != nil {
		m.requests.WithLabelValues("retry", "").Inc()
	}
}

// addInFlight adds delta to the requests being decided.
func (m *Metrics) addInFlight(delta int) {
	if m != nil {
		m.inFlight.Add(float64(delta))
	}
}

func (m *Metrics) retried(n int) {
	if m != nil {
		m.retries.Add(float64(n))
	}
}

func (m *Metrics) handedBack() {
	if m != nil {
		m.redelivered.Inc()
	}
}

func (m *Metrics) deadLettered() {
	if m != nil {
		m.deadLetters.Inc()
	}
}

func (m *Metrics) bulkItem(outcome, reasonCode string) {
	if m != nil {
		m.bulkItems.WithLabelValues(outcome, reasonCode).Inc()
	}
}

func (m *Metrics) bulkRun(result string) {
	if m != nil {
		m.bulkRuns.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) bulkStarted(delta float64) {
	if m != nil {
		m.bulkRunning.Add(delta)
	}
}

// backlogCollector reports the consumers' pending and ack-pending counts.
type backlogCollector struct{ js jetstream.JetStream }

var (
	pendingDesc = prometheus.NewDesc("contactstop_consumer_pending",
		"Messages in the stream not yet delivered to the consumer (the backlog).", []string{"consumer"}, nil)
	ackPendingDesc = prometheus.NewDesc("contactstop_consumer_ack_pending",
		"Messages delivered to the consumer and not yet acknowledged.", []string{"consumer"}, nil)
)

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- ackPendingDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for stream, name := range map[string]string{events.StreamRequests: events.ConsumerRequests, events.StreamBulk: events.ConsumerBulk, events.StreamEmergency: events.ConsumerEmergency} {
		cons, err := c.js.Consumer(ctx, stream, name)
		if err != nil {
			continue // not provisioned (emergency off) or unreachable: no sample
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(info.NumPending), name)
		ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(info.NumAckPending), name)
	}
}
