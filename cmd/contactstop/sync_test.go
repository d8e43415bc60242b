package main

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/registry"
	"github.com/contactstop/contactstop/store"
)

// TestSyncsWaitForTheBudgetsBucket: serve's periodic inventory sync keeps
// its turns in the budgets bucket. When serve starts before that bucket
// can be opened, the sync waits for it and then syncs; it is not off for
// good.
func TestSyncsWaitForTheBudgetsBucket(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	st, err := store.Open(t.Context(), js, store.Config{})
	require.NoError(t, err)
	f := genesysFixture(t)
	for k, v := range f.env {
		t.Setenv(k, v)
	}
	out, err := run(t, append([]string{"instances", "add", "acme", "--nats-url", srv.URL()}, f.bind...)...)
	require.NoError(t, err, out)
	f.add("c-1", true)

	var budgets atomic.Pointer[budget.Budgets]
	reg, err := registry.New(registry.Config{Instances: st, BudgetsFunc: budgets.Load, Logger: zap.NewNop()})
	require.NoError(t, err)
	core, logs := observer.New(zap.WarnLevel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runSyncs(t.Context(), js, st, reg, time.Second, zap.New(core))
	}()
	t.Cleanup(func() { <-done })

	require.Eventually(t, func() bool {
		return logs.FilterMessageSnippet("budgets bucket cannot be opened yet").Len() > 0
	}, 5*time.Second, 20*time.Millisecond, "the sync says why it waits")
	_, err = st.GetContact(t.Context(), "acme", "c-1")
	require.ErrorIs(t, err, store.ErrContactNotFound, "nothing is synced without the bucket")

	bs, err := budget.Open(t.Context(), js, budget.Config{})
	require.NoError(t, err)
	t.Cleanup(bs.Close)
	budgets.Store(bs)
	require.Eventually(t, func() bool {
		c, err := st.GetContact(t.Context(), "acme", "c-1")
		return err == nil && c.State == store.StateQueued
	}, 10*time.Second, 50*time.Millisecond, "once the bucket opens, the sync runs")
}
