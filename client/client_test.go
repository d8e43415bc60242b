package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

func setup(t *testing.T, startWorker bool) (*client.Client, *store.KV) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := t.Context()
	require.NoError(t, worker.Provision(ctx, js, worker.TopologyConfig{AckWait: 2 * time.Second}))
	st, err := store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	_, err = st.PutContact(ctx, store.Contact{ContactID: "c-1", InstanceID: "acme", State: store.StateQueued,
		QueueID: "q1", Channel: store.ChannelVoice, EnqueuedAt: time.Now()})
	require.NoError(t, err)
	if startWorker {
		w, err := worker.New(js, st, worker.Config{Workers: 2, AckWait: 2 * time.Second, RetryMax: 200 * time.Millisecond, RetryMaxElapsed: time.Second, Logger: zaptest.NewLogger(t)})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
	// nil store: opened when first needed.
	return client.New(js, nil), st
}

func TestStopWaitsAndResendsGetTheFirstResult(t *testing.T) {
	t.Parallel()
	cl, st := setup(t, true)
	req := events.StopRequest{RequestID: "r-1", InstanceID: "acme", ContactID: "c-1", DisconnectReason: "EMERGENCY"}
	receipt, res, err := cl.Stop(t.Context(), req, client.StopOptions{Wait: true, CorrelationID: "corr-1"})
	require.NoError(t, err)
	require.Equal(t, "r-1", receipt.RequestID)
	require.NotNil(t, res.Stopped)
	require.Equal(t, "QUEUED", res.Stopped.PreviousState)
	c, err := st.GetContact(t.Context(), "acme", "c-1")
	require.NoError(t, err)
	require.Equal(t, store.StateEnded, c.State)

	// The same request again: the first result, not CONTACT_NOT_FOUND.
	_, again, err := cl.Stop(t.Context(), req, client.StopOptions{Wait: true})
	require.NoError(t, err)
	require.Equal(t, res, again)

	// Another request for the ended contact fails.
	_, other, err := cl.Stop(t.Context(), events.StopRequest{InstanceID: "acme", ContactID: "c-1"}, client.StopOptions{Wait: true})
	require.NoError(t, err)
	require.NotNil(t, other.Failed)
	require.Equal(t, events.ReasonContactNotFound, other.Failed.ReasonCode)
}

func TestStopWithoutWorker(t *testing.T) {
	t.Parallel()
	cl, _ := setup(t, false)
	// Without Wait: published, no result.
	receipt, res, err := cl.Stop(t.Context(), events.StopRequest{InstanceID: "acme", ContactID: "c-1"}, client.StopOptions{})
	require.NoError(t, err)
	require.Nil(t, res)
	require.NotEmpty(t, receipt.RequestID)
	require.NotZero(t, receipt.Sequence)

	// With Wait and no worker: ErrNoResult when the context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	receipt, res, err = cl.Stop(ctx, events.StopRequest{RequestID: "r-2", InstanceID: "acme", ContactID: "c-1"}, client.StopOptions{Wait: true})
	require.ErrorIs(t, err, client.ErrNoResult)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Nil(t, res)
	require.Equal(t, "r-2", receipt.RequestID)

	// An invalid request is refused before anything is sent.
	_, _, err = cl.Stop(t.Context(), events.StopRequest{InstanceID: "ac.me", ContactID: "c-1"}, client.StopOptions{Wait: true})
	var ve *events.ValidationError
	require.True(t, errors.As(err, &ve), "got %v", err)
	require.Equal(t, events.ReasonInvalidParameter, ve.Code)
}

func TestClearPublishesABulkRequest(t *testing.T) {
	t.Parallel()
	cl, _ := setup(t, false)
	receipt, err := cl.Clear(t.Context(), events.BulkRequest{BulkID: "b-1", InstanceID: "acme"})
	require.NoError(t, err)
	require.Equal(t, "b-1", receipt.RequestID)
	require.Equal(t, events.StreamBulk, receipt.Stream)
	_, err = cl.Clear(t.Context(), events.BulkRequest{InstanceID: "ac.me"})
	var ve *events.ValidationError
	require.True(t, errors.As(err, &ve), "got %v", err)
}
