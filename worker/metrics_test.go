package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// metricValue returns the value of the sample of family name whose labels
// include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			return sampleValue(m)
		}
	}
	t.Fatalf("no sample of %s with %v", name, want)
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seed("c-1", "c-2")
	e.seedN("b", 5, store.StateQueued, "q9", store.ChannelVoice, time.Now())
	reg := prometheus.NewRegistry()
	cfg := bulkConfig(t)
	cfg.Metrics = worker.NewMetrics(reg, e.js)
	e.start(cfg, nil)

	e.publish(events.StopRequestedSubject(inst), e.request("r-1", "c-1"), nil)
	e.publish(events.StopRequestedSubject(inst), e.request("r-2", "c-2"), nil)
	e.publish(events.StopRequestedSubject(inst), e.request("r-3", "nobody"), nil)
	e.bulk(events.BulkRequest{BulkID: "m", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q9"}}})
	e.waitBulk("m")
	e.waitIdle(3 + 5 + 1)

	require.EqualValues(t, 2, metricValue(t, reg, "contactstop_requests_total", map[string]string{"outcome": "stopped"}))
	require.EqualValues(t, 1, metricValue(t, reg, "contactstop_requests_total",
		map[string]string{"outcome": "failed", "reason_code": "CONTACT_NOT_FOUND"}))
	require.EqualValues(t, 3, metricValue(t, reg, "contactstop_request_duration_seconds", nil))
	require.EqualValues(t, 0, metricValue(t, reg, "contactstop_in_flight", nil))
	require.EqualValues(t, 5, metricValue(t, reg, "contactstop_bulk_contacts_total", map[string]string{"outcome": "stopped"}))
	require.EqualValues(t, 1, metricValue(t, reg, "contactstop_bulk_runs_total", map[string]string{"result": "completed"}))
	require.EqualValues(t, 0, metricValue(t, reg, "contactstop_consumer_pending", map[string]string{"consumer": events.ConsumerRequests}))
	require.EqualValues(t, 0, metricValue(t, reg, "contactstop_consumer_ack_pending", map[string]string{"consumer": events.ConsumerBulk}))
}

func TestReady(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	w, err := worker.New(e.js, e.st, fastConfig(t))
	require.NoError(t, err)
	require.ErrorIs(t, w.Ready(t.Context()), worker.ErrNotReady)
	require.NoError(t, w.Start(t.Context()))
	require.NoError(t, w.Ready(t.Context()))
	require.NoError(t, e.js.DeleteConsumer(t.Context(), events.StreamBulk, events.ConsumerBulk))
	require.ErrorContains(t, w.Ready(t.Context()), events.ConsumerBulk, "a missing consumer is not ready")
	require.NoError(t, w.Stop(context.Background()))
	require.ErrorContains(t, w.Ready(t.Context()), "draining")
}
