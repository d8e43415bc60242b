package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// slowEnder ends contacts in the store, each call delay late: a clear of
// thousands then takes long enough to be cancelled half-way.
type slowEnder struct {
	st    *store.KV
	delay time.Duration
}

func (s slowEnder) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	select {
	case <-ctx.Done():
	case <-time.After(s.delay):
	}
	return s.st.EndContacts(ctx, ps)
}

// requireCancelled checks a cancelled bulk request's completion against
// everything stored: one stopped result per contact it counts, those
// contacts ENDED by it no later than the completion, the others of the
// instance untouched, and the record saying the same.
func (e *env) requireCancelled(rs []stored, done events.BulkCompleted, total int) {
	t := e.t
	t.Helper()
	require.True(t, done.Cancelled, "completed as cancelled")
	require.Equal(t, done.Stopped+done.Failed+done.Skipped, done.Matched)
	requireBulkResults(t, rs, done.BulkID, done.Stopped)
	ended := 0
	require.NoError(t, e.st.ListContacts(t.Context(), inst, func(c store.Contact) error {
		if c.State == store.StateEnded {
			ended++
			require.Equal(t, events.BulkItemRequestID(done.BulkID, c.ContactID), c.EndedBy)
			require.False(t, c.EndedAt.After(done.CompletedAt), "%s ended after the completion", c.ContactID)
		} else {
			require.Equal(t, store.StateQueued, c.State, "a contact not reached stays QUEUED")
		}
		return nil
	}))
	require.Equal(t, done.Stopped, ended, "the contacts ended are those counted")
	want := map[string]int{}
	for k, n := range map[string]int{"c:ENDED": done.Stopped, "c:QUEUED": total - done.Stopped} {
		if n > 0 {
			want[k] = n
		}
	}
	require.Equal(t, want, e.countStates())
	rec, err := e.st.GetBulk(t.Context(), inst, done.BulkID)
	require.NoError(t, err)
	require.Equal(t, store.BulkCompleted, rec.Status)
	require.True(t, rec.Cancelled)
	require.True(t, rec.CancelRequested)
	require.Equal(t, done.Matched, rec.Matched)
	require.Equal(t, done.Stopped, rec.Stopped)
	require.Len(t, e.completions(rs), 1)
}

// TestBulkCancelMidClear cancels a clear of 5000 contacts once a few
// hundred are done: the run stops within about a second, finishes what it
// has in hand and completes cancelled, its counts those of the stored
// results; nothing is ended after the completion.
func TestBulkCancelMidClear(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	const total = 5000
	e.seedN("c", total, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.BulkWorkers = 32 // 4 batches of 8 in flight, each 100 ms: 320 contacts/s
	cfg.Ender = slowEnder{st: e.st, delay: 100 * time.Millisecond}
	e.start(cfg, nil)

	e.bulk(events.BulkRequest{BulkID: "mid", InstanceID: inst})
	require.Eventually(t, func() bool {
		rec, err := e.st.GetBulk(t.Context(), inst, "mid")
		return err == nil && rec.Done >= 200
	}, 60*time.Second, 10*time.Millisecond)
	rec, err := e.st.CancelBulk(t.Context(), inst, "mid")
	require.NoError(t, err)
	require.True(t, rec.CancelRequested)
	require.Equal(t, store.BulkRunning, rec.Status)
	cancelledAt := time.Now()

	rs, done := e.waitBulk("mid")
	require.Less(t, time.Since(cancelledAt), 10*time.Second, "the run stopped promptly")
	require.Less(t, done.Stopped, total/2, "the run stopped starting contacts")
	require.GreaterOrEqual(t, done.Stopped, 200)
	e.requireCancelled(rs, done, total)

	// Cancelling again changes nothing.
	again, err := e.st.CancelBulk(t.Context(), inst, "mid")
	require.NoError(t, err)
	require.Equal(t, store.BulkCompleted, again.Status)
	require.Equal(t, e.countStates(), map[string]int{"c:ENDED": done.Stopped, "c:QUEUED": total - done.Stopped})
}

// TestBulkCancelBeforeStart cancels a bulk request that waits for its
// instance's turn: it completes cancelled at once, having stopped nothing.
func TestBulkCancelBeforeStart(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	ctx := t.Context()
	e.seedN("c", 300, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	// Another bulk request holds the instance for a minute.
	_, err := e.st.PutInstanceLock(ctx, mustLock(t, e, "other", time.Now().Add(time.Minute)))
	require.NoError(t, err)
	e.start(bulkConfig(t), nil)

	e.bulk(events.BulkRequest{BulkID: "queued", InstanceID: inst})
	require.Eventually(t, func() bool {
		rec, err := e.st.GetBulk(ctx, inst, "queued")
		return err == nil && rec.Status == store.BulkWaiting
	}, 30*time.Second, 10*time.Millisecond, "a waiting bulk request has a WAITING record")
	list, err := e.st.ListBulks(ctx, inst)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, store.BulkWaiting, list[0].Status)

	_, err = e.st.CancelBulk(ctx, inst, "queued")
	require.NoError(t, err)
	rs, done := e.waitBulk("queued")
	require.Equal(t, events.BulkCompleted{BulkID: "queued", InstanceID: inst, Cancelled: true,
		ReasonCodes: map[events.ReasonCode]int{}, StartedAt: done.StartedAt, CompletedAt: done.CompletedAt}, done)
	e.requireCancelled(rs, done, 300)
	l, err := e.st.GetInstanceLock(ctx, inst)
	require.NoError(t, err)
	require.Equal(t, "other", l.BulkID, "the other bulk request's lock is left alone")

	// The same bulk request published again does nothing.
	e.bulk(events.BulkRequest{BulkID: "queued", InstanceID: inst})
	rs = e.waitIdle(0)
	require.Len(t, e.completions(rs), 1)
	require.Equal(t, map[string]int{"c:QUEUED": 300}, e.countStates())
}

// TestBulkCancelCompleted cancels a completed bulk request: nothing
// changes, and it stays completed as it was.
func TestBulkCancelCompleted(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 200, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	e.start(bulkConfig(t), nil)
	e.bulk(events.BulkRequest{BulkID: "done", InstanceID: inst})
	_, done := e.waitBulk("done")
	require.False(t, done.Cancelled)
	before, err := e.st.GetBulk(t.Context(), inst, "done")
	require.NoError(t, err)

	rec, err := e.st.CancelBulk(t.Context(), inst, "done")
	require.NoError(t, err)
	require.Equal(t, before.Revision, rec.Revision, "nothing written")
	require.False(t, rec.CancelRequested)
	require.False(t, rec.Cancelled)
	e.bulk(events.BulkRequest{BulkID: "done", InstanceID: inst})
	rs := e.waitIdle(0)
	require.Len(t, e.completions(rs), 1)
	requireBulkResults(t, rs, "done", 200)

	_, err = e.st.CancelBulk(t.Context(), inst, "never")
	require.ErrorIs(t, err, store.ErrBulkNotFound)
}

// TestBulkCancelRacesLastBatch cancels as the walk hands over the last
// contact: the cancel, accepted while the bulk ran, is in the completion,
// which counts every contact reached, here all of them.
func TestBulkCancelRacesLastBatch(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	const total = 300
	e.seedN("c", total, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	w, err := worker.New(e.js, e.st, cfg)
	require.NoError(t, err)
	var accepted atomic.Bool
	worker.SetBulkCrash(w, func(bulkID string, n int) bool {
		if n == total {
			rec, err := e.st.CancelBulk(context.Background(), inst, bulkID)
			accepted.Store(err == nil && rec.CancelRequested)
		}
		return false
	})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	e.bulk(events.BulkRequest{BulkID: "last", InstanceID: inst})
	rs, done := e.waitBulk("last")
	require.True(t, accepted.Load(), "the cancel was accepted while the bulk ran")
	require.Equal(t, total, done.Matched, "every contact was reached before the cancel")
	e.requireCancelled(rs, done, total)
}

// TestBulkCancelDuringTakeover cancels a bulk request whose run died
// half-way: the run that takes it over starts nothing more, counts the
// dead run's stored results and completes cancelled.
func TestBulkCancelDuringTakeover(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second})
	const total = 3000
	e.seedN("c", total, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	w, err := worker.New(e.js, e.st, cfg)
	require.NoError(t, err)
	crashed := make(chan struct{})
	var once atomic.Bool
	worker.SetBulkCrash(w, func(bulkID string, n int) bool {
		if n != 1000 || !once.CompareAndSwap(false, true) {
			return false
		}
		// Cancelled while its runner dies: the next run sees it.
		_, err := e.st.CancelBulk(context.Background(), inst, bulkID)
		if err != nil {
			t.Errorf("cancel: %v", err)
		}
		close(crashed)
		return true
	})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	e.bulk(events.BulkRequest{BulkID: "takeover", InstanceID: inst})
	select {
	case <-crashed:
	case <-time.After(60 * time.Second):
		t.Fatal("the crash point was not reached")
	}
	e.start(cfg, nil) // a replica to take over
	rs, done := e.waitBulk("takeover")
	rec, err := e.st.GetBulk(t.Context(), inst, "takeover")
	require.NoError(t, err)
	require.GreaterOrEqual(t, rec.Run, 2, "a second run completed it")
	require.Less(t, done.Stopped, total, "the second run started no contact")
	require.Positive(t, done.Stopped, "the first run's stops are counted")
	e.requireCancelled(rs, done, total)
}
