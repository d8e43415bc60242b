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

// BenchmarkDrainBacklog measures how fast the worker drains a backlog:
// CONTACTSTOP_BENCH_N requests (default 10000) are published first, then the
// worker starts, and the time from its start to the last stored result gives
// stops/s. Each iteration uses fresh streams and buckets.
//
// By default it runs against an in-process server. With
// CONTACTSTOP_BENCH_NATS_URL it uses that server instead, DELETING
// contactstop's streams and buckets there first: point it only at a
// throw-away server. Run with -benchtime=1x:
//
//	CONTACTSTOP_BENCH_N=100000 CONTACTSTOP_BENCH_NATS_URL=nats://127.0.0.1:4333 \
//	  go test -run=NONE -bench=DrainBacklog -benchtime=1x ./worker/
func BenchmarkDrainBacklog(b *testing.B) {
	n := 10000
	if v := os.Getenv("CONTACTSTOP_BENCH_N"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	workers := 64
	if v := os.Getenv("CONTACTSTOP_BENCH_WORKERS"); v != "" {
		var err error
		workers, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	url := os.Getenv("CONTACTSTOP_BENCH_NATS_URL")
	if url == "" {
		url = natstest.Start(b).URL()
	}
	nc, err := nats.Connect(url)
	require.NoError(b, err)
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(b, err)
	ctx := context.Background()

	var total time.Duration
	for range b.N {
		b.StopTimer()
		for _, s := range []string{worker.StreamRequests, worker.StreamResults, worker.StreamDeadLetter} {
			_ = js.DeleteStream(ctx, s)
		}
		for _, kv := range []string{"contactstop-contacts", "contactstop-instances"} {
			_ = js.DeleteKeyValue(ctx, kv)
		}
		require.NoError(b, worker.Provision(ctx, js, worker.TopologyConfig{MaxAckPending: max(1024, 2*workers)}))
		st, err := store.Open(ctx, js, store.Config{})
		require.NoError(b, err)
		_, err = st.PutInstance(ctx, store.Instance{InstanceID: inst})
		require.NoError(b, err)
		seeded, err := st.SeedContacts(ctx, iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
			for i := range n {
				if !yield(store.Contact{ContactID: "c" + strconv.Itoa(i), InstanceID: inst, State: store.StateQueued, QueueID: "q1", Channel: store.ChannelVoice}) {
					return
				}
			}
		}))
		require.NoError(b, err)
		require.Equal(b, n, seeded)
		for i := range n {
			body := fmt.Appendf(nil, `{"requestId":"r-%d","contactId":"c%d","instanceId":"acme"}`, i, i)
			_, err := js.PublishAsync(events.StopRequestedSubject(inst), body, jetstream.WithStallWait(time.Minute))
			require.NoError(b, err)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("publishing the backlog timed out")
		}
		rs, err := js.Stream(ctx, worker.StreamResults)
		require.NoError(b, err)

		w, err := worker.New(js, st, worker.Config{Workers: workers, MaxAckPending: max(1024, 2*workers), Logger: zap.NewNop()})
		require.NoError(b, err)
		b.StartTimer()
		began := time.Now()
		require.NoError(b, w.Start(ctx))
		for {
			info, err := rs.Info(ctx)
			require.NoError(b, err)
			if info.State.Msgs >= uint64(n) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		total += time.Since(began)
		b.StopTimer()
		require.NoError(b, w.Stop(ctx))
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "stops/s")
}
