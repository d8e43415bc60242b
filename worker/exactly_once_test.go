package worker_test

// Regression tests of the exactly-once issue's findings: each failed on the
// code before the decision pipeline and durable outcomes.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// Finding 1: a request answered CONTACT_NOT_FOUND (or RESOURCE_NOT_FOUND),
// the contact (or instance) created afterwards, and the same request sent
// again: the outcome stays the first one, the contact is not touched, and
// no second result is stored.
func TestFailureOutcomeIsDurable(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.start(batchConfig(t, batch), nil)
		ctx := t.Context()

		// Without Nats-Msg-Id: the resend is stored as a new message.
		e.publish("contact.stop.requested.acme", e.request("r-1", "later"), nil)
		rs := e.waitIdle(1)
		requireFailed(t, rs[0], events.ReasonContactNotFound)

		// The instance "newco" is not registered; its contact exists.
		newco := func() []byte {
			return body(t, events.StopRequest{RequestID: "r-2", ContactID: "c-9", InstanceID: "newco"})
		}
		_, err := e.st.PutContact(ctx, store.Contact{InstanceID: "newco", ContactID: "c-9", State: store.StateQueued, Channel: store.ChannelVoice})
		require.NoError(t, err)
		e.publish("contact.stop.requested.newco", newco(), nil)
		rs = e.waitIdle(2)
		requireFailed(t, byRequest(t, rs)["r-2"], events.ReasonResourceNotFound)

		e.seed("later")
		_, err = e.st.PutInstance(ctx, store.Instance{InstanceID: "newco"})
		require.NoError(t, err)
		e.publish("contact.stop.requested.acme", e.request("r-1", "later"), nil)
		e.publish("contact.stop.requested.newco", newco(), nil)
		rs = e.waitIdle(2)
		require.Len(t, rs, 2, "the resends store no result")
		for id, inst := range map[string]string{"later": inst, "c-9": "newco"} {
			c, err := e.st.GetContact(ctx, inst, id)
			require.NoError(t, err)
			require.Equal(t, store.StateQueued, c.State, "%s/%s is untouched", inst, id)
		}
	})
}

// Finding 1, interleaved: two messages of one request race, one of which
// fails (its token is bad) while the other would stop the contact. Never
// both: the store's fence makes one outcome win, and the stored results
// agree with the store.
func TestFailureAndStopOfOneRequestRace(t *testing.T) {
	t.Parallel()
	tk := newTokens(t)
	good := tk.issue(auth.ActionStop, "instance/acme/contact/*")
	e := setup(t, worker.TopologyConfig{})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("race-", i)
	}
	e.seed(ids...)
	cfg := batchConfig(t, 8)
	cfg.Authorizer = tk.v
	for range 2 {
		e.start(cfg, nil)
	}
	for i, id := range ids {
		r := fmt.Sprint("r-", i)
		e.publish("contact.stop.requested.acme", body(t, events.StopRequest{RequestID: r, ContactID: id, InstanceID: inst, SecurityUser: good}), nil)
		e.publish("contact.stop.requested.acme", body(t, events.StopRequest{RequestID: r, ContactID: id, InstanceID: inst, SecurityUser: "bad"}), nil)
	}
	rs := e.waitIdle(n)
	got := byRequest(t, rs)
	require.Len(t, got, n, "one result per request")
	for i, id := range ids {
		res := got[fmt.Sprint("r-", i)].result
		c, err := e.st.GetContact(t.Context(), inst, id)
		require.NoError(t, err)
		if res.Stopped != nil {
			require.Equal(t, store.StateEnded, c.State)
			require.Equal(t, fmt.Sprint("r-", i), c.EndedBy)
		} else {
			require.Equal(t, events.ReasonInvalidSecurityUser, res.Failed.ReasonCode)
			require.NotEqual(t, store.StateEnded, c.State, "%s is ENDED though its request failed", id)
		}
	}
}

// moveOnEnd moves the contacts named in move to CONNECTED, by a
// revision-checked write as an agent desktop would, just before the
// worker's write of them: between the bulk's read and its write.
type moveOnEnd struct {
	*store.KV
	move map[string]bool
	mu   sync.Mutex
}

func (m *moveOnEnd) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	for _, p := range ps {
		m.mu.Lock()
		move := m.move[p.Contact.ContactID]
		delete(m.move, p.Contact.ContactID)
		m.mu.Unlock()
		if move {
			c := p.Contact
			c.State, c.UpdatedAt = store.StateConnected, time.Now()
			if _, err := m.KV.ReplaceContact(ctx, store.ReplaceContactParams{Contact: c}); err != nil {
				panic(err)
			}
		}
	}
	return m.KV.EndContacts(ctx, ps)
}

// Finding 2: a clear of QUEUED contacts must leave alone the contacts an
// agent answered between the clear's read and its write: they are skipped,
// not ended.
func TestBulkFilterHoldsAtTheWrite(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 200, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	move := map[string]bool{}
	for i := 0; i < 200; i += 10 {
		move[fmt.Sprint("c", i)] = true
	}
	st := &moveOnEnd{KV: e.st, move: move}
	e.start(bulkConfig(t), st)
	e.bulk(events.BulkRequest{BulkID: "b", InstanceID: inst, Filter: events.BulkFilter{States: []string{"QUEUED"}}})
	rs, done := e.waitBulk("b")
	require.Equal(t, 200, done.Matched)
	require.Equal(t, 180, done.Stopped)
	require.Equal(t, 20, done.Skipped)
	require.Zero(t, done.Failed)
	requireBulkResults(t, rs, "b", 180)
	require.Equal(t, map[string]int{"c:ENDED": 180, "c:CONNECTED": 20}, e.countStates())
}

// Finding 3: deliveries handed back at shutdown are not attempts. A request
// handed back more often than MaxAttempts by workers stopped past their
// deadline is still stopped by the next healthy worker.
func TestHandBacksAreNotAttempts(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 30 * time.Second})
	e.seed("c-1")
	cfg := fastConfig(t)
	cfg.AckWait = 30 * time.Second
	cfg.RetryMaxElapsed = 20 * time.Second
	cfg.MaxAttempts = 2
	e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
	for range 4 {
		bs := &blockingStore{KV: e.st, entered: make(chan struct{}, 1)}
		w, err := worker.New(e.js, bs, cfg)
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		<-bs.entered
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
		cancel()
	}
	e.start(cfg, nil)
	rs := e.waitIdle(1)
	require.Len(t, rs, 1)
	require.NotNil(t, rs[0].result.Stopped, "%+v", rs[0].result.Failed)
}

// landsLate reports a timeout at once for the contacts in late, and lands
// their writes after (300 ms by default): a write whose acknowledgement was
// lost and that the server applies after the worker gave up on it.
type landsLate struct {
	*store.KV
	late  map[string]bool
	after time.Duration
	wg    sync.WaitGroup
}

func (l *landsLate) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	var now, later []store.EndContactParams
	var at []int
	outs := make([]store.EndOutcome, len(ps))
	for i, p := range ps {
		if l.late[p.Contact.ContactID] {
			later = append(later, p)
			outs[i].Err = nats.ErrTimeout
			continue
		}
		now, at = append(now, p), append(at, i)
	}
	for k, o := range l.KV.EndContacts(ctx, now) {
		outs[at[k]] = o
	}
	if len(later) > 0 {
		l.wg.Go(func() {
			time.Sleep(cmp.Or(l.after, 300*time.Millisecond))
			l.KV.EndContacts(context.Background(), later)
		})
	}
	return outs
}

// Finding 4: a contact answered INTERNAL_ERROR on the last attempt, whose
// write lands after all, must not end up ENDED beside its failure, and a
// takeover must count exactly what was stored. The first run crashes
// before its last batch's results.
func TestBulkLateWriteAndTakeover(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second, DuplicateWindow: 300 * time.Millisecond})
	e.seedN("c", 30, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.MaxAttempts = 1 // the first run is the last attempt: it answers for every contact
	// Retries for a second (RetryMaxElapsed also bounds each publish's
	// wait for its acknowledgement: a result acknowledged late would be
	// published again by the takeover, past this short window); the late
	// writes land after it, once the contact is answered.
	cfg.RetryInitial, cfg.RetryMax, cfg.RetryMaxElapsed = 100*time.Millisecond, 200*time.Millisecond, time.Second
	cfg.Workers, cfg.BatchSize, cfg.BulkWorkers = 10, 10, 10
	st := &landsLate{KV: e.st, late: map[string]bool{"c3": true, "c17": true}, after: 1500 * time.Millisecond}
	t.Cleanup(st.wg.Wait)
	w, err := worker.New(e.js, st, cfg)
	require.NoError(t, err)
	var batches atomic.Int32
	worker.SetBulkCrashBeforeResults(w, func(string) bool { return batches.Add(1) == 3 })
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	e.bulk(events.BulkRequest{BulkID: "late", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
	rs, done := e.waitBulk("late")
	st.wg.Wait()
	got := map[string]events.Result{}
	for _, r := range rs {
		if id := r.result.RequestID(); id != "" {
			_, dup := got[id]
			require.False(t, dup, "%s has two results", id)
			got[id] = r.result
		}
	}
	require.Len(t, got, 30)
	stopped, failed := 0, 0
	for i := range 30 {
		id := fmt.Sprint("c", i)
		c, err := e.st.GetContact(t.Context(), inst, id)
		require.NoError(t, err)
		res := got[events.BulkItemRequestID("late", id)]
		if res.Failed != nil {
			failed++
			require.Equal(t, events.ReasonInternalError, res.Failed.ReasonCode)
			require.NotEqual(t, store.StateEnded, c.State, "%s is ENDED though answered %s", id, res.Failed.ReasonCode)
			continue
		}
		stopped++
		require.Equal(t, store.StateEnded, c.State)
	}
	require.Equal(t, stopped, done.Stopped, "the completion equals the stored results")
	require.Equal(t, failed, done.Failed)
	require.Equal(t, 2, failed, "the late writes were fenced off")
}

// Finding 4: a takeover's completion counts the failures an earlier run
// answered, exactly as the stored results say.
func TestBulkTakeoverCountsEarlierFailures(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second})
	e.seedN("c", 40, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.MaxAttempts = 1
	cfg.Workers, cfg.BatchSize, cfg.BulkWorkers = 10, 10, 10
	fail := map[string]bool{"c1": true, "c2": true, "c33": true}
	st := &flakyStore{KV: e.st, failEnd: func(id string) error {
		if fail[id] {
			return jetstream.ErrNoHeartbeat
		}
		return nil
	}}
	w, err := worker.New(e.js, st, cfg)
	require.NoError(t, err)
	// The first run (the last attempt) answers c1 and c2 INTERNAL_ERROR in
	// its first batch, and dies before it dispatches its fourth (c33 is
	// in it); the takeover counts the first run's failures and answers c33.
	var crashed atomic.Bool
	worker.SetBulkCrash(w, func(_ string, n int) bool {
		if n != 40 || !crashed.CompareAndSwap(false, true) {
			return false
		}
		// Agents answer the two failed contacts before the takeover: they
		// no longer match, and the takeover's walk does not meet them.
		for _, id := range []string{"c1", "c2"} {
			c, err := e.st.GetContact(context.Background(), inst, id)
			if err == nil {
				c.State = store.StateConnected
				_, err = e.st.PutContact(context.Background(), c)
			}
			if err != nil {
				panic(err)
			}
		}
		return true
	})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	e.bulk(events.BulkRequest{BulkID: "f", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
	rs, done := e.waitBulk("f")
	require.Equal(t, 3, done.Failed, "%+v", done)
	require.Equal(t, 37, done.Stopped)
	require.Equal(t, map[events.ReasonCode]int{events.ReasonInternalError: 3}, done.ReasonCodes)
	failed, stopped := 0, 0
	for _, r := range rs {
		switch {
		case r.result.Failed != nil:
			failed++
			require.Equal(t, events.ReasonInternalError, r.result.Failed.ReasonCode)
			require.True(t, r.result.Failed.Retryable)
		case r.result.Stopped != nil:
			stopped++
		}
	}
	require.Equal(t, done.Failed, failed, "the completion equals the stored failures")
	require.Equal(t, done.Stopped, stopped)
}

// Finding 6: bad data is contained. A record that does not decode, a key
// not in the documented encoding and a record with an unknown state: the
// clear passes over them and finishes the rest; a single request for the
// contact with the bad record fails at once, not retryable, naming it.
func TestBadRecordsAreContained(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seedN("c", 50, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	kv, err := e.js.KeyValue(t.Context(), "contactstop-contacts")
	require.NoError(t, err)
	for key, val := range map[string]string{
		"acme.broken":  `{"contactId":`,
		"acme.a=2eb":   `{"contactId":"a.b","instanceId":"acme","state":"QUEUED","channel":"VOICE","updatedAt":"2026-01-01T00:00:00Z"}`,
		"acme.weird":   `{"contactId":"weird","instanceId":"acme","state":"PARKED","channel":"VOICE","updatedAt":"2026-01-01T00:00:00Z"}`,
		"acme.c-plain": `{"contactId":"c-plain","instanceId":"acme","state":"QUEUED","queueId":"q1","channel":"VOICE","updatedAt":"2026-01-01T00:00:00Z"}`,
	} {
		_, err := kv.Put(t.Context(), key, []byte(val))
		require.NoError(t, err)
	}
	cfg := bulkConfig(t)
	cfg.MaxAttempts = 5
	e.start(cfg, nil)
	e.publish("contact.stop.requested.acme", e.request("r-weird", "weird"), nil)
	e.bulk(events.BulkRequest{BulkID: "b", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"q1"}}})
	rs, done := e.waitBulk("b")
	require.Equal(t, 51, done.Stopped)
	require.Equal(t, 3, done.Unreadable)
	res := byRequest(t, rs)["r-weird"]
	require.NotNil(t, res.result.Failed)
	require.Equal(t, events.ReasonInternalError, res.result.Failed.ReasonCode)
	require.False(t, res.result.Failed.Retryable, "bad data is a permanent failure")
	require.Contains(t, res.result.Failed.Message, "PARKED")
	require.Empty(t, readStream(t, e.js, events.StreamDeadLetter), "a permanent failure is not dead-lettered")
}

// staleReads answers the first plain read of each contact in stale as a
// replica that has not applied its writes yet would: no contact.
type staleReads struct {
	*store.KV
	mu    sync.Mutex
	stale map[string]bool
}

func (s *staleReads) Views(ctx context.Context, p store.ViewParams) ([]store.View, error) {
	views, err := s.KV.Views(ctx, p)
	if err != nil || p.Consistent {
		return views, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range views {
		if s.stale[views[i].Key.ContactID] {
			delete(s.stale, views[i].Key.ContactID)
			views[i].Contact, views[i].ContactRev = nil, 0
		}
	}
	return views, nil
}

// Finding 7: a contact written and acknowledged before its stop is never
// refused because a read lagged: the negative answer is checked against the
// leader before it stands.
func TestStaleReadNeverRefuses(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("c-1", "c-2")
		e.start(batchConfig(t, batch), &staleReads{KV: e.st, stale: map[string]bool{"c-1": true, "c-2": true}})
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		e.publish("contact.stop.requested.acme", e.request("r-2", "c-2"), nil)
		got := byRequest(t, e.waitIdle(2))
		require.NotNil(t, got["r-1"].result.Stopped, "%+v", got["r-1"].result.Failed)
		require.NotNil(t, got["r-2"].result.Stopped, "%+v", got["r-2"].result.Failed)
	})
}

// failMarkCompleted fails the writes that mark a bulk COMPLETED for 600 ms
// from the first.
type failMarkCompleted struct {
	*store.KV
	first atomic.Int64
}

func (f *failMarkCompleted) PutBulk(ctx context.Context, r store.BulkRecord) (store.BulkRecord, error) {
	if r.Status == store.BulkCompleted {
		f.first.CompareAndSwap(0, time.Now().UnixNano())
		if time.Since(time.Unix(0, f.first.Load())) < 600*time.Millisecond {
			return store.BulkRecord{}, errors.New("injected: the store is unreachable")
		}
	}
	return f.KV.PutBulk(ctx, r)
}

// Finding 7: marking a bulk completed fails after its completion event is
// stored, and the next run comes after the duplicate window: the completion
// is stored once.
func TestBulkCompletionStoredOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 2 * time.Second, DuplicateWindow: 200 * time.Millisecond})
	e.seedN("c", 10, store.StateQueued, "q1", store.ChannelVoice, time.Now())
	cfg := bulkConfig(t)
	cfg.RetryMaxElapsed = 50 * time.Millisecond
	cfg.RedeliveryDelay, cfg.RedeliveryDelayMax = time.Second, time.Second
	e.start(cfg, &failMarkCompleted{KV: e.st})
	e.bulk(events.BulkRequest{BulkID: "once", InstanceID: inst})
	rs, done := e.waitBulk("once")
	require.Equal(t, 10, done.Stopped)
	completions := 0
	for _, r := range rs {
		if r.result.Stopped == nil && r.result.Failed == nil {
			completions++
		}
	}
	require.Equal(t, 1, completions)
}
