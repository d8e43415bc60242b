package worker_test

import (
	"fmt"
	"iter"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// seedN writes n contacts <prefix>0 … with the given fields.
func (e *env) seedN(prefix string, n int, state store.State, queue string, channel store.Channel, enqueued time.Time) {
	e.t.Helper()
	got, err := e.st.SeedContacts(e.t.Context(), iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
		for i := range n {
			c := store.Contact{ContactID: fmt.Sprint(prefix, i), InstanceID: inst, State: state, QueueID: queue,
				Channel: channel, EnqueuedAt: enqueued}
			if !yield(c) {
				return
			}
		}
	}))
	require.NoError(e.t, err)
	require.Equal(e.t, n, got)
}

func (e *env) bulk(req events.BulkRequest) events.Receipt {
	e.t.Helper()
	rc, err := events.NewPublisher(e.js).Bulk(e.t.Context(), req)
	require.NoError(e.t, err)
	return rc
}

// completions returns the stored completion events, keyed by bulkId,
// failing on any bulk completed twice.
func (e *env) completions(rs []stored) map[string]events.BulkCompleted {
	e.t.Helper()
	out := map[string]events.BulkCompleted{}
	for _, r := range rs {
		if !strings.HasPrefix(r.subject, events.SubjectBulkCompleted+".") {
			continue
		}
		var c events.BulkCompleted
		require.NoError(e.t, jsonUnmarshal(r.data, &c))
		_, dup := out[c.BulkID]
		require.False(e.t, dup, "bulk %s completed twice", c.BulkID)
		out[c.BulkID] = c
	}
	return out
}

// waitBulk waits until the bulk request's completion event is stored and
// the worker is idle, and returns every stored result and the completion.
func (e *env) waitBulk(bulkID string) ([]stored, events.BulkCompleted) {
	e.t.Helper()
	// The record says COMPLETED only once the completion event is stored.
	require.Eventually(e.t, func() bool {
		rec, err := e.st.GetBulk(e.t.Context(), inst, bulkID)
		return err == nil && rec.Status == store.BulkCompleted
	}, 120*time.Second, 50*time.Millisecond, "bulk %s did not complete", bulkID)
	rs := e.waitIdle(0)
	done, ok := e.completions(rs)[bulkID]
	require.True(e.t, ok, "no completion event for %s", bulkID)
	return rs, done
}

// requireBulkResults checks that the contacts with the prefixes given got
// exactly one contact.stopped each from the bulk, and nothing else did.
func requireBulkResults(t *testing.T, rs []stored, bulkID string, want int) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rs {
		if r.result.Stopped == nil && r.result.Failed == nil {
			continue // a completion event
		}
		id := r.result.RequestID()
		if !strings.HasPrefix(id, bulkID+"/") {
			continue
		}
		require.False(t, seen[id], "%s has two results", id)
		seen[id] = true
		require.NotNil(t, r.result.Stopped, "%s: %+v", id, r.result.Failed)
	}
	require.Equal(t, want, len(seen), "contacts with a result from %s", bulkID)
}

// countStates counts the instance's contacts by prefix and state.
func (e *env) countStates() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	require.NoError(e.t, e.st.ListContacts(e.t.Context(), inst, func(c store.Contact) error {
		prefix := strings.TrimRight(c.ContactID, "0123456789")
		out[prefix+":"+string(c.State)]++
		return nil
	}))
	return out
}

func bulkConfig(t *testing.T) worker.Config {
	cfg := fastConfig(t)
	cfg.BulkLease = 2 * time.Second
	return cfg
}

// TestBulkClearQueue is the scenario: 20k QUEUED in q1, 10k QUEUED
// in q2, 5k CONNECTED in q1; clearing q1 stops exactly the 20k.
func TestBulkClearQueue(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	now := time.Now()
	e.seedN("q1-", 20000, store.StateQueued, "q1", store.ChannelVoice, now)
	e.seedN("q2-", 10000, store.StateQueued, "q2", store.ChannelChat, now)
	e.seedN("conn-", 5000, store.StateConnected, "q1", store.ChannelVoice, now)
	e.start(bulkConfig(t), nil)

	e.bulk(events.BulkRequest{BulkID: "clear-q1", InstanceID: inst, DisconnectReason: "QUEUE_CLOSED",
		Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
	rs, done := e.waitBulk("clear-q1")
	require.Equal(t, events.BulkCompleted{BulkID: "clear-q1", InstanceID: inst, Matched: 20000, Stopped: 20000,
		ReasonCodes: map[events.ReasonCode]int{}, StartedAt: done.StartedAt, CompletedAt: done.CompletedAt}, done)
	requireBulkResults(t, rs, "clear-q1", 20000)
	require.Equal(t, map[string]int{"q1-:ENDED": 20000, "q2-:QUEUED": 10000, "conn-:CONNECTED": 5000}, e.countStates())

	c, err := e.st.GetContact(t.Context(), inst, "q1-7")
	require.NoError(t, err)
	require.Equal(t, "clear-q1/q1-7", c.EndedBy)
	require.Equal(t, "QUEUE_CLOSED", c.DisconnectReason)

	rec, err := e.st.GetBulk(t.Context(), inst, "clear-q1")
	require.NoError(t, err)
	require.Equal(t, store.BulkCompleted, rec.Status)
	require.Equal(t, 20000, rec.Done)
}

// TestBulkTwice publishes one bulk request twice while it runs and once
// more after it completed: nothing is stopped twice, one completion.
func TestBulkTwice(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 3000, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	e.start(bulkConfig(t), nil)
	e.start(bulkConfig(t), nil) // a second replica

	// Without Nats-Msg-Id dedup (raw publishes), so that both are stored.
	body := []byte(`{"bulkId":"twice","instanceId":"acme"}`)
	e.publish(events.SubjectBulkRequested, body, nil)
	e.publish(events.SubjectBulkRequested, body, nil)
	rs, done := e.waitBulk("twice")
	require.Equal(t, 3000, done.Stopped)
	requireBulkResults(t, rs, "twice", 3000)

	e.publish(events.SubjectBulkRequested, body, nil)
	rs = e.waitIdle(0)
	require.Len(t, e.completions(rs), 1)
	requireBulkResults(t, rs, "twice", 3000)
}

// TestBulkCrash abandons a run, as if its process died, during expansion
// (after 400 of 3000 matches) and after it (at the last match); a second
// replica takes over when the lease lapses.
func TestBulkCrash(t *testing.T) {
	t.Parallel()
	for _, at := range []int{400, 3000} {
		t.Run(fmt.Sprint("at ", at), func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second})
			e.seedN("c", 3000, store.StateQueued, "q1", store.ChannelVoice, time.Now())
			e.seedN("other", 500, store.StateQueued, "q2", store.ChannelVoice, time.Now())
			cfg := bulkConfig(t)
			// Two replicas; the first to reach the crash point crashes
			// there, once. Either may run the bulk first (and, on a
			// loaded machine, a first run may fail before the point and
			// be resumed by the other).
			var crashed atomic.Bool
			for range 2 {
				w, err := worker.New(e.js, e.st, cfg)
				require.NoError(t, err)
				worker.SetBulkCrash(w, func(bulkID string, n int) bool {
					return n == at && crashed.CompareAndSwap(false, true)
				})
				require.NoError(t, w.Start(t.Context()))
				t.Cleanup(func() { _ = w.Stop(t.Context()) })
			}

			e.bulk(events.BulkRequest{BulkID: "crash", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
			rs, done := e.waitBulk("crash")
			require.True(t, crashed.Load(), "the crash point was reached")
			require.Equal(t, 3000, done.Matched)
			require.Equal(t, 3000, done.Stopped)
			require.Zero(t, done.Failed)
			requireBulkResults(t, rs, "crash", 3000)
			require.Equal(t, map[string]int{"c:ENDED": 3000, "other:QUEUED": 500}, e.countStates())
			rec, err := e.st.GetBulk(t.Context(), inst, "crash")
			require.NoError(t, err)
			require.GreaterOrEqual(t, rec.Run, 2, "a second run finished the work")
		})
	}
}

// TestBulkCrashAroundResults abandons a run on either side of a batch's
// results, with a duplicate window much shorter than the time to the
// takeover:
//
//   - before them (between the batch's writes and its results): the next
//     run must publish the missing results (their contacts are ENDED, so
//     the walk alone would only count them) and must not publish again the
//     results the first run stored (past the window they would be stored
//     twice). With several batches in flight at the crash, those beside the
//     crashing one are published again too: design.md, "Takeovers";
//   - after them (stored, the pending slot not yet emptied): the next run
//     finds those results stored and must not publish them again.
func TestBulkCrashAroundResults(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(*worker.Worker, func(string) bool){
		"before": worker.SetBulkCrashBeforeResults,
		"after":  worker.SetBulkCrashAfterResults,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second, DuplicateWindow: 500 * time.Millisecond})
			e.seedN("c", 3000, store.StateQueued, "q1", store.ChannelVoice, time.Now())
			cfg := bulkConfig(t)
			// One batch in flight at a time: batches in flight beside the
			// one that crashes may or may not have their results stored,
			// and are published again.
			cfg.BulkWorkers = cfg.Workers
			w, err := worker.New(e.js, e.st, cfg)
			require.NoError(t, err)
			var batches atomic.Int32
			var crashedAt atomic.Int64
			set(w, func(string) bool {
				if batches.Add(1) != 20 {
					return false
				}
				crashedAt.Store(time.Now().UnixNano())
				return true
			})
			require.NoError(t, w.Start(t.Context()))
			t.Cleanup(func() { _ = w.Stop(t.Context()) })

			e.bulk(events.BulkRequest{BulkID: "crash", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
			rs, done := e.waitBulk("crash")
			require.NotZero(t, crashedAt.Load(), "the crash point was reached")
			rec, err := e.st.GetBulk(t.Context(), inst, "crash")
			require.NoError(t, err)
			require.GreaterOrEqual(t, rec.Run, 2, "a second run finished the work")
			require.Greater(t, rec.CompletedAt.Sub(time.Unix(0, crashedAt.Load())), time.Second,
				"the takeover came well after the duplicate window")
			requireBulkResults(t, rs, "crash", 3000)
			require.Equal(t, 3000, done.Matched)
			require.Equal(t, 3000, done.Stopped)
			require.Equal(t, map[string]int{"c:ENDED": 3000}, e.countStates())
			ids, slots, err := e.st.BulkPending(t.Context(), inst, "crash")
			require.NoError(t, err)
			require.Empty(t, ids)
			require.Empty(t, slots, "the completed request left no pending slots")
		})
	}
}

// TestBulkTakeoverOfOlderVersion takes over a bulk request whose earlier
// run ended some contacts: a run that kept pending slots has stored their
// results (they are counted, not published again); a run of a version
// without slots may not have, and every earlier result is published again.
func TestBulkTakeoverOfOlderVersion(t *testing.T) {
	t.Parallel()
	for _, slots := range []bool{true, false} {
		t.Run(fmt.Sprint("slots ", slots), func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{})
			e.seedN("c", 20, store.StateQueued, "q1", store.ChannelVoice, time.Now())
			ctx := t.Context()
			_, err := e.st.PutBulk(ctx, store.BulkRecord{BulkID: "old", InstanceID: inst, Status: store.BulkRunning,
				Owner: "gone", Run: 1, Walking: true, StartedAt: time.Now().Add(-time.Minute),
				LeaseUntil: time.Now().Add(-time.Second), PendingSlots: slots})
			require.NoError(t, err)
			for i := range 10 {
				id := fmt.Sprint("c", i)
				endContact(t, e.st, id, events.BulkItemRequestID("old", id))
			}
			e.start(bulkConfig(t), nil)

			e.bulk(events.BulkRequest{BulkID: "old", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
			rs, done := e.waitBulk("old")
			require.Equal(t, 20, done.Matched)
			require.Equal(t, 20, done.Stopped)
			if slots {
				requireBulkResults(t, rs, "old", 10)
			} else {
				requireBulkResults(t, rs, "old", 20)
			}
			require.Equal(t, map[string]int{"c:ENDED": 20}, e.countStates())
		})
	}
}

func TestBulkFilters(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	cut := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	e.seedN("old-voice", 30, store.StateQueued, "q1", store.ChannelVoice, cut.Add(-time.Hour))
	e.seedN("new-voice", 20, store.StateQueued, "q1", store.ChannelVoice, cut.Add(time.Hour))
	e.seedN("old-chat", 10, store.StateQueued, "q1", store.ChannelChat, cut.Add(-time.Hour))
	e.seedN("old-hold", 5, store.StateOnHold, "q1", store.ChannelVoice, cut.Add(-time.Hour))
	e.seedN("never", 4, store.StateQueued, "q1", store.ChannelVoice, time.Time{})
	e.start(bulkConfig(t), nil)

	e.bulk(events.BulkRequest{BulkID: "old-voice", InstanceID: inst,
		Filter: events.BulkFilter{Channels: []string{"VOICE"}, EnqueuedBefore: &cut, States: []string{"QUEUED", "ON_HOLD"}}})
	rs, done := e.waitBulk("old-voice")
	require.Equal(t, 35, done.Stopped, "30 queued and 5 on hold, voice, enqueued before the cut")
	requireBulkResults(t, rs, "old-voice", 35)
	require.Equal(t, map[string]int{"old-voice:ENDED": 30, "old-hold:ENDED": 5, "new-voice:QUEUED": 20,
		"old-chat:QUEUED": 10, "never:QUEUED": 4}, e.countStates())

	// Nothing left to match: a completion with matched 0.
	e.bulk(events.BulkRequest{BulkID: "empty", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"no-such-queue"}}})
	_, done = e.waitBulk("empty")
	require.Zero(t, done.Matched)
	require.Zero(t, done.Stopped)
	require.NotNil(t, done.ReasonCodes)
}

func TestBulkInvalid(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 10, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	e.start(bulkConfig(t), nil)
	e.publish(events.SubjectBulkRequested, []byte(`{"bulkId":"bad-filter","instanceId":"acme","filter":{"states":["ENDED"]}}`), nil)
	e.publish(events.SubjectBulkRequested, []byte(`{"bulkId":"nobody","instanceId":"nobody"}`), nil)
	e.publish(events.SubjectBulkRequested, []byte(`[1,2]`), map[string]string{events.HeaderMsgID: "not-an-object"})

	got := byRequest(t, e.waitIdle(3))
	requireFailed(t, got["bad-filter"], events.ReasonInvalidParameter)
	require.Equal(t, "contact.stop.failed.acme", got["bad-filter"].subject)
	requireFailed(t, got["nobody"], events.ReasonResourceNotFound)
	requireFailed(t, got["not-an-object"], events.ReasonInvalidRequest)
	require.Equal(t, "contact.stop.failed", got["not-an-object"].subject)
	require.Equal(t, map[string]int{"c:QUEUED": 10}, e.countStates(), "nothing was touched")
}

func TestEmergencyBroadcast(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{Emergency: true})
	e.seedN("q1-", 300, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	e.seedN("q2-", 200, store.StateQueued, "q2", store.ChannelVoice, time.Now())
	e.seedN("q3-", 100, store.StateQueued, "q3", store.ChannelVoice, time.Now())
	e.seedN("conn-", 50, store.StateConnected, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.Emergency = true
	e.start(cfg, nil)

	hdr := map[string]string{events.HeaderMsgID: "alarm-1"}
	e.publish(events.EmergencySubject(inst), []byte(`{"queueIds":["q1","q2"],"message":"fire alarm, building 2"}`), hdr)
	rs, done := e.waitBulk("emergency-alarm-1")
	require.Equal(t, 500, done.Stopped)
	requireBulkResults(t, rs, "emergency-alarm-1", 500)
	require.Equal(t, map[string]int{"q1-:ENDED": 300, "q2-:ENDED": 200, "q3-:QUEUED": 100, "conn-:CONNECTED": 50}, e.countStates())
	c, err := e.st.GetContact(t.Context(), inst, "q2-5")
	require.NoError(t, err)
	require.Equal(t, "EMERGENCY", c.DisconnectReason)

	// The same broadcast again (same Nats-Msg-Id) is stored (no stream
	// keeps a duplicate window for publishers) and found completed: no
	// second run, no new result. Without an id it would be another
	// emergency.
	ack := e.publish(events.EmergencySubject(inst), []byte(`{"queueIds":["q1","q2"]}`), hdr)
	require.False(t, ack.Duplicate)
	// A broadcast with no queues clears every queue.
	e.publish(events.EmergencySubject(inst), nil, map[string]string{events.HeaderMsgID: "alarm-2"})
	_, done = e.waitBulk("emergency-alarm-2")
	require.Equal(t, 100, done.Stopped)
	rs, _ = e.waitBulk("emergency-alarm-1")
	requireBulkResults(t, rs, "emergency-alarm-1", 500)
	require.Equal(t, map[string]int{"q1-:ENDED": 300, "q2-:ENDED": 200, "q3-:ENDED": 100, "conn-:CONNECTED": 50}, e.countStates())
}

// TestBulkDoesNotStarveSingles answers a single request promptly while a
// large clear runs.
func TestBulkDoesNotStarveSingles(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 20000, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	e.seedN("single", 1, store.StateConnected, "agent", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.BulkWorkers = 8
	e.start(cfg, nil)

	e.bulk(events.BulkRequest{BulkID: "big", InstanceID: inst})
	require.Eventually(t, func() bool { return e.storedResults() > 0 }, 30*time.Second, time.Millisecond, "the clear has begun")
	e.publish(events.StopRequestedSubject(inst), e.request("urgent", "single0"), nil)

	var urgentAt, bulkDoneAt int
	rs, _ := e.waitBulk("big")
	for i, r := range rs {
		switch {
		case r.result.RequestID() == "urgent":
			urgentAt = i
			require.NotNil(t, r.result.Stopped)
		case strings.HasPrefix(r.subject, events.SubjectBulkCompleted):
			bulkDoneAt = i
		}
	}
	require.NotZero(t, urgentAt)
	require.Less(t, urgentAt, bulkDoneAt, "the single request was answered before the clear finished")
	require.Less(t, urgentAt, 15000, "and early: after at most 15000 of the bulk's 20000 results")
}

// TestOneBulkPerInstance: two bulk requests of one instance run one after
// the other, never together; an emergency does not wait for the lock; a
// lock left by a runner that died lapses with its lease.
func TestOneBulkPerInstance(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{Emergency: true})
	ctx := t.Context()
	now := time.Now()
	e.seedN("a-", 5000, store.StateQueued, "qa", store.ChannelVoice, now)
	e.seedN("b-", 5000, store.StateQueued, "qb", store.ChannelVoice, now)
	e.seedN("em-", 100, store.StateQueued, "qe", store.ChannelVoice, now)
	cfg := bulkConfig(t)
	cfg.Bulks, cfg.BulkWorkers, cfg.Emergency = 2, 8, true
	e.start(cfg, nil)

	e.bulk(events.BulkRequest{BulkID: "a", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"qa"}}})
	e.bulk(events.BulkRequest{BulkID: "b", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"qb"}}})
	running := func(id string) bool {
		rec, err := e.st.GetBulk(ctx, inst, id)
		return err == nil && rec.Status == store.BulkRunning
	}
	completed := func(id string) bool {
		rec, err := e.st.GetBulk(ctx, inst, id)
		return err == nil && rec.Status == store.BulkCompleted
	}
	var sawA, sawB bool
	for !completed("a") || !completed("b") {
		a, b := running("a"), running("b")
		require.False(t, a && b, "two bulk requests of one instance run together")
		sawA, sawB = sawA || a, sawB || b
		time.Sleep(2 * time.Millisecond)
	}
	require.True(t, sawA || sawB, "the sampling saw a run")
	rs, done := e.waitBulk("b")
	require.Equal(t, 5000, done.Stopped)
	requireBulkResults(t, rs, "a", 5000)

	// A lock left behind by a runner that died: bulk requests wait for its
	// lease to lapse; an emergency broadcast does not.
	// The lease is long enough for the emergency to finish well within
	// it on a loaded machine (2.6 s seen under the full race suite).
	lease := 6 * time.Second
	_, err := e.st.PutInstanceLock(ctx, mustLock(t, e, "ghost", time.Now().Add(lease)))
	require.NoError(t, err)
	start := time.Now()
	e.seedN("c-", 100, store.StateQueued, "qc", store.ChannelVoice, now)
	e.bulk(events.BulkRequest{BulkID: "c", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"qc"}}})
	e.publish(events.EmergencySubject(inst), []byte(`{"queueIds":["qe"]}`), map[string]string{events.HeaderMsgID: "fire"})
	_, done = e.waitBulk("emergency-fire")
	require.Equal(t, 100, done.Stopped)
	require.Less(t, time.Since(start), lease, "the emergency did not wait for the lock")
	require.False(t, completed("c"), "the bulk request waits while the lock is held")
	_, done = e.waitBulk("c")
	require.Equal(t, 100, done.Stopped)
	require.GreaterOrEqual(t, time.Since(start), lease-100*time.Millisecond, "it ran once the lease lapsed")
}

// mustLock reads the instance's lock and returns it held by bulkID until
// until.
func mustLock(t *testing.T, e *env, bulkID string, until time.Time) store.InstanceLock {
	t.Helper()
	l, err := e.st.GetInstanceLock(t.Context(), inst)
	require.NoError(t, err)
	l.BulkID, l.LeaseUntil = bulkID, until
	return l
}
