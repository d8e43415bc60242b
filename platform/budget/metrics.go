package budget

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the budgets' Prometheus metrics, one collector registered
// by Open and unregistered by Close. A nil *metrics records nothing.
type metrics struct {
	bs         *Budgets
	grants     *prometheus.CounterVec
	wait       *prometheus.HistogramVec
	throttles  *prometheus.CounterVec
	lateGrants *prometheus.CounterVec
	rate       *prometheus.Desc
	granted    *prometheus.Desc
}

func newMetrics(bs *Budgets) *metrics {
	return &metrics{
		bs: bs,
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_platform_budget_grants_total",
			Help: "Platform calls granted by the shared budget to this process, by quota key and priority (high: single requests, low: bulk work).",
		}, []string{"quota_key", "priority"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "contactstop_platform_budget_wait_seconds",
			Help:    "Time a platform call waited for the shared budget, by priority.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"priority"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_platform_budget_throttles_total",
			Help: "Throttling answers of the platform reported by this process, by quota key; each pauses every process sharing the budget.",
		}, []string{"quota_key"}),
		lateGrants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_platform_budget_late_grants_total",
			Help: "Grants given up because the caller took them up more than one token interval late (starved of CPU): the call waits for a fresh grant.",
		}, []string{"quota_key"}),
		rate: prometheus.NewDesc("contactstop_platform_budget_rate",
			"The configured budget of a quota key, in calls per second, shared by every process.",
			[]string{"quota_key"}, nil),
		granted: prometheus.NewDesc("contactstop_platform_budget_granted_rate",
			"Calls per second granted to this process by a quota key's budget over the last 5 s.",
			[]string{"quota_key"}, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.grants.Describe(ch)
	m.wait.Describe(ch)
	m.throttles.Describe(ch)
	m.lateGrants.Describe(ch)
	ch <- m.rate
	ch <- m.granted
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.grants.Collect(ch)
	m.wait.Collect(ch)
	m.throttles.Collect(ch)
	m.lateGrants.Collect(ch)
	now := time.Now()
	for _, b := range m.bs.budgets() {
		rate, granted := b.rates(now)
		ch <- prometheus.MustNewConstMetric(m.rate, prometheus.GaugeValue, rate, b.key)
		ch <- prometheus.MustNewConstMetric(m.granted, prometheus.GaugeValue, granted, b.key)
	}
}

func (m *metrics) grantedN(key string, p Priority, n int) {
	if m != nil && n > 0 {
		m.grants.WithLabelValues(key, p.String()).Add(float64(n))
	}
}

func (m *metrics) waited(p Priority, d time.Duration) {
	if m != nil {
		m.wait.WithLabelValues(p.String()).Observe(d.Seconds())
	}
}

func (m *metrics) throttled(key string) {
	if m != nil {
		m.throttles.WithLabelValues(key).Inc()
	}
}

// rateWindow counts grants in slots of rateSlot, to tell the grants per
// second of the last rateSlots−1 complete slots.
type rateWindow struct {
	slots [rateSlots]struct {
		idx int64
		n   int
	}
}

const (
	rateSlot  = 250 * time.Millisecond
	rateSlots = 21 // 20 complete slots: 5 s
)

func (w *rateWindow) add(now time.Time, n int) {
	i := now.UnixNano() / int64(rateSlot)
	s := &w.slots[i%rateSlots]
	if s.idx != i {
		s.idx, s.n = i, 0
	}
	s.n += n
}

// perSecond is the mean rate over the complete slots before now's.
func (w *rateWindow) perSecond(now time.Time) float64 {
	cur := now.UnixNano() / int64(rateSlot)
	sum := 0
	for _, s := range w.slots {
		if s.idx < cur && s.idx >= cur-(rateSlots-1) {
			sum += s.n
		}
	}
	return float64(sum) / ((rateSlots - 1) * rateSlot).Seconds()
}

func (m *metrics) late(key string) {
	if m == nil {
		return
	}
	m.lateGrants.WithLabelValues(key).Inc()
}
