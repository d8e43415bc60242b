package inventory_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/inventory"
	"github.com/contactstop/contactstop/store"
)

// lister lists the contacts of listed, and answers Confirm from active
// (an unknown contact is NotFound); asked records the questions.
type lister struct {
	listed []string
	active map[string]bool
	asked  []string
}

func (l *lister) ListActive(_ context.Context, fn func(platform.Listed) error) error {
	for _, id := range l.listed {
		if err := fn(platform.Listed{ContactID: id, Status: platform.Status{Active: true, State: store.StateQueued, QueueID: "q"}}); err != nil {
			return err
		}
	}
	return nil
}

func (l *lister) Confirm(_ context.Context, id string) (platform.Status, error) {
	l.asked = append(l.asked, id)
	active, ok := l.active[id]
	switch {
	case !ok:
		return platform.Status{}, &platform.Error{Kind: platform.NotFound, Op: "DescribeContact", Message: "no such contact"}
	case id == "flaky":
		return platform.Status{}, &platform.Error{Kind: platform.Transient, Op: "DescribeContact", Message: "500"}
	}
	return platform.Status{Active: active}, nil
}

// TestSyncConfirmsWhatTheListingLeftOut: a listing taken page by page can
// leave out a contact that is still active (one that ended between pages
// shifted it); the sync asks the platform before recording ENDED what it
// did not list, and keeps what the platform says is active or cannot say.
func TestSyncConfirmsWhatTheListingLeftOut(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	ctx := t.Context()
	st, err := store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	before := time.Now().Add(-time.Minute).UTC()
	for _, id := range []string{"listed", "missed", "hung-up", "deleted", "flaky"} {
		_, err := st.PutContact(ctx, store.Contact{ContactID: id, InstanceID: "acme", State: store.StateQueued, QueueID: "q",
			Channel: store.ChannelVoice, EnqueuedAt: before})
		require.NoError(t, err)
	}
	l := &lister{listed: []string{"listed"}, active: map[string]bool{"listed": true, "missed": true, "hung-up": false, "flaky": true}}
	stats, err := inventory.Sync(ctx, st, "acme", l, func() time.Time { return time.Now().Add(time.Second) })
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"missed", "hung-up", "deleted", "flaky"}, l.asked)
	require.Equal(t, 1, stats.Listed)
	require.Equal(t, 2, stats.Ended, "hung-up and deleted")
	require.Equal(t, 1, stats.Missed)
	require.Equal(t, 1, stats.Unconfirmed)
	for id, want := range map[string]store.State{"listed": store.StateQueued, "missed": store.StateQueued,
		"hung-up": store.StateEnded, "deleted": store.StateEnded, "flaky": store.StateQueued} {
		c, err := st.GetContact(ctx, "acme", id)
		require.NoError(t, err)
		require.Equal(t, want, c.State, id)
	}
}
