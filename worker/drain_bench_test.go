package worker_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// benchEnv is a server for the benchmarks below, configured by
// environment variables:
//
//	CONTACTSTOP_BENCH_N         requests or contacts per iteration (default 10000)
//	CONTACTSTOP_BENCH_WORKERS   --workers and --bulk-workers (default 64)
//	CONTACTSTOP_BENCH_REPLICAS  stream and bucket replicas (default 1; 3 on a cluster)
//	CONTACTSTOP_BENCH_NATS_URL  a server to use instead of an in-process one;
//	                            contactstop's streams and buckets there are
//	                            DELETED first: point it at a throw-away server
type benchEnv struct {
	b                 *testing.B
	n, workers, repls int
	js                jetstream.JetStream
}

func newBenchEnv(b *testing.B) *benchEnv {
	env := &benchEnv{b: b, n: benchInt(b, "CONTACTSTOP_BENCH_N", 10000), workers: benchInt(b, "CONTACTSTOP_BENCH_WORKERS", 64),
		repls: benchInt(b, "CONTACTSTOP_BENCH_REPLICAS", 1)}
	url := os.Getenv("CONTACTSTOP_BENCH_NATS_URL")
	if url == "" {
		url = natstest.Start(b).URL()
	}
	nc, err := nats.Connect(url)
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	env.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(b, err)
	return env
}

func benchInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(b, err, name)
	return n
}

// reset deletes and re-provisions everything and seeds n queued contacts.
func (e *benchEnv) reset() *store.KV {
	ctx := context.Background()
	for _, s := range []string{events.StreamRequests, events.StreamResults, events.StreamDeadLetter, events.StreamBulk} {
		_ = e.js.DeleteStream(ctx, s)
	}
	for _, kv := range []string{"contactstop-contacts", "contactstop-instances", "contactstop-bulks"} {
		_ = e.js.DeleteKeyValue(ctx, kv)
	}
	require.NoError(e.b, worker.Provision(ctx, e.js, worker.TopologyConfig{MaxAckPending: max(1024, 2*e.workers), Replicas: e.repls}))
	st, err := store.Open(ctx, e.js, store.Config{Replicas: e.repls})
	require.NoError(e.b, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: inst})
	require.NoError(e.b, err)
	seeded, err := st.SeedContacts(ctx, iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
		for i := range e.n {
			if !yield(store.Contact{ContactID: "c" + strconv.Itoa(i), InstanceID: inst, State: store.StateQueued, QueueID: "q1", Channel: store.ChannelVoice}) {
				return
			}
		}
	}))
	require.NoError(e.b, err)
	require.Equal(e.b, e.n, seeded)
	return st
}

func (e *benchEnv) worker(st *store.KV) *worker.Worker {
	w, err := worker.New(e.js, st, worker.Config{Workers: e.workers, BulkWorkers: e.workers,
		MaxAckPending: max(1024, 2*e.workers), Logger: zap.NewNop()})
	require.NoError(e.b, err)
	return w
}

// drain publishes n stop requests, then starts a worker and returns the
// time from its start to the last stored result.
func (e *benchEnv) drain() time.Duration {
	ctx := context.Background()
	st := e.reset()
	for i := range e.n {
		body := fmt.Appendf(nil, `{"requestId":"r-%d","contactId":"c%d","instanceId":"acme"}`, i, i)
		_, err := e.js.PublishAsync(events.StopRequestedSubject(inst), body, jetstream.WithStallWait(time.Minute))
		require.NoError(e.b, err)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		e.b.Fatal("publishing the backlog timed out")
	}
	w := e.worker(st)
	began := time.Now()
	require.NoError(e.b, w.Start(ctx))
	e.waitResults(uint64(e.n))
	took := time.Since(began)
	require.NoError(e.b, w.Stop(ctx))
	return took
}

// bulk starts a worker, publishes one bulk request for all n contacts and
// returns the time from the request to its stored completion event.
func (e *benchEnv) bulk() time.Duration {
	ctx := context.Background()
	st := e.reset()
	w := e.worker(st)
	require.NoError(e.b, w.Start(ctx))
	began := time.Now()
	_, err := events.NewPublisher(e.js).Bulk(ctx, events.BulkRequest{BulkID: "bench", InstanceID: inst})
	require.NoError(e.b, err)
	e.waitResults(uint64(e.n) + 1) // every contact's result and the completion
	took := time.Since(began)
	require.NoError(e.b, w.Stop(ctx))
	rec, err := st.GetBulk(ctx, inst, "bench")
	require.NoError(e.b, err)
	require.Equal(e.b, e.n, rec.Stopped)
	return took
}

func (e *benchEnv) waitResults(n uint64) {
	rs, err := e.js.Stream(context.Background(), events.StreamResults)
	require.NoError(e.b, err)
	for {
		info, err := rs.Info(context.Background())
		require.NoError(e.b, err)
		if info.State.Msgs >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkDrainBacklog measures how fast the worker drains a backlog of
// single stop requests, published before it starts. Run with -benchtime=1x:
//
//	CONTACTSTOP_BENCH_N=100000 CONTACTSTOP_BENCH_NATS_URL=nats://127.0.0.1:4333 \
//	  go test -run=NONE -bench=DrainBacklog -benchtime=1x ./worker/
func BenchmarkDrainBacklog(b *testing.B) {
	e := newBenchEnv(b)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		total += e.drain()
	}
	b.ReportMetric(float64(e.n*b.N)/total.Seconds(), "stops/s")
}

// BenchmarkBulkClear measures a bulk clear of every contact, from request to
// completion event, and in the same run the single-request drain of as many,
// reporting both rates and bulk/drain.
func BenchmarkBulkClear(b *testing.B) {
	e := newBenchEnv(b)
	b.ResetTimer()
	var drain, bulk time.Duration
	for range b.N {
		drain += e.drain()
		bulk += e.bulk()
	}
	drainRate := float64(e.n*b.N) / drain.Seconds()
	bulkRate := float64(e.n*b.N) / bulk.Seconds()
	b.ReportMetric(drainRate, "drain-stops/s")
	b.ReportMetric(bulkRate, "bulk-stops/s")
	b.ReportMetric(bulkRate/drainRate, "bulk/drain")
}
