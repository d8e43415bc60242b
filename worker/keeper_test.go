package worker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/worker"
)

// TestKeeperRecreatesWhatDisappears deletes a stream, a consumer and a
// bucket: one check makes them again, as Provision and store.Open made
// them; what cannot be made again is reported for readiness.
func TestKeeperRecreatesWhatDisappears(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	topo := worker.TopologyConfig{AckWait: 2 * time.Second}
	e := setup(t, topo)
	k := worker.NewKeeper(e.js, worker.KeeperConfig{Topology: topo, Ensure: e.st.Ensure})
	k.Check(ctx)
	require.Empty(t, k.Missing())

	before, err := e.js.Stream(ctx, events.StreamRequests)
	require.NoError(t, err)
	require.NoError(t, e.js.DeleteStream(ctx, events.StreamRequests)) // its consumer goes with it
	require.NoError(t, e.js.DeleteConsumer(ctx, events.StreamBulk, events.ConsumerBulk))
	require.NoError(t, e.js.DeleteKeyValue(ctx, "contactstop-contacts"))

	err = k.Ready(ctx)
	require.ErrorContains(t, err, "stream "+events.StreamRequests, "readiness looks now, not at the last check")
	require.ErrorContains(t, err, "consumer "+events.ConsumerBulk)

	k.Check(ctx)
	require.Empty(t, k.Missing())
	require.NoError(t, k.Ready(ctx))
	after, err := e.js.Stream(ctx, events.StreamRequests)
	require.NoError(t, err)
	require.Equal(t, before.CachedInfo().Config, after.CachedInfo().Config, "made again as Provision made it")
	require.Zero(t, after.CachedInfo().Config.Duplicates, "still without a duplicate window")
	for stream, consumer := range map[string]string{events.StreamRequests: events.ConsumerRequests, events.StreamBulk: events.ConsumerBulk} {
		_, err := e.js.Consumer(ctx, stream, consumer)
		require.NoError(t, err, consumer)
	}
	_, err = e.js.KeyValue(ctx, "contactstop-contacts")
	require.NoError(t, err)

	// The store works on the bucket made again.
	e.seed("c-1")
	_, err = e.st.GetContact(ctx, inst, "c-1")
	require.NoError(t, err)

	// What cannot be made (three replicas on one server) is reported.
	broken := worker.NewKeeper(e.js, worker.KeeperConfig{Topology: worker.TopologyConfig{Replicas: 3}})
	require.NoError(t, e.js.DeleteStream(ctx, events.StreamResults))
	broken.Check(ctx)
	require.Equal(t, []string{"stream " + events.StreamResults}, broken.Missing())
	require.ErrorContains(t, broken.Ready(ctx), "stream "+events.StreamResults)
	_, err = e.js.Stream(ctx, events.StreamResults)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
}
