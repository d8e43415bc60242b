package natstest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/natstest"
)

// TestCluster kills the leader of an R3 stream: the stream keeps taking
// writes under a new leader, and the killed server comes back on its old
// address with its store and catches up.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	require.Len(t, c.Servers(), 3)
	_, js := c.JetStream(t)
	ctx := t.Context()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
	require.NoError(t, err)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// Retried: a publish may time out while a leader is elected.
			require.Eventually(t, func() bool {
				_, err := js.Publish(ctx, fmt.Sprintf("s.%d", i), nil, jetstream.WithMsgID(fmt.Sprint(i)))
				return err == nil
			}, 30*time.Second, 50*time.Millisecond)
		}
	}
	publish(0, 100)

	old := c.StreamLeader("S")
	c.Kill(old)
	require.Nil(t, c.Servers()[old])
	publish(100, 200)
	require.NotEqual(t, old, c.StreamLeader("S"), "a new leader was elected")

	c.Restart(old)
	require.NotNil(t, c.Server(old))
	require.True(t, c.Server(old).JetStreamIsStreamCurrent("$G", "S"), "the restarted server caught up")
	c.MoveLeader("S", "", old)
	require.Equal(t, old, c.StreamLeader("S"))
	publish(200, 201)
	s, err := js.Stream(ctx, "S")
	require.NoError(t, err)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		info, err := s.Info(ctx)
		if !assert.NoError(ct, err) {
			return
		}
		assert.EqualValues(ct, 201, info.State.Msgs)
		assert.Len(ct, info.Cluster.Replicas, 2)
		for _, r := range info.Cluster.Replicas {
			assert.True(ct, r.Current, "the stream leader sees replica %s current", r.Name)
		}
	}, 30*time.Second, 50*time.Millisecond)
}
