package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// overlapStore scripts the store as the platform_clear fault scenario met
// it (seed 3) for one request sent twice: message first and its resend,
// their store calls timing out under CPU starvation.
//
//   - first's failure lands, but its write is reported timed out;
//   - every fence of first's failure times out until a delivery of resend
//     other than its first has taken the request up (taken); the first
//     such fence waits until resend's first delivery has decided
//     (decided);
//   - resend's own failure is reported timed out and lands once its
//     delivery has given up on it (at its count of the attempt);
//   - first's failure decided afresh is written after that.
type overlapStore struct {
	*store.KV
	first, resend uint64

	recorded, decided, taken chan struct{}
	takeOnce                 sync.Once

	mu     sync.Mutex
	writes int                        // first's failure written so far (not fences)
	late   *store.RecordFailureParams // resend's failure, to land late
}

func newOverlapStore(kv *store.KV) *overlapStore {
	return &overlapStore{KV: kv, recorded: make(chan struct{}), decided: make(chan struct{}), taken: make(chan struct{})}
}

func (s *overlapStore) take() { s.takeOnce.Do(func() { close(s.taken) }) }

func (s *overlapStore) isTaken() bool {
	select {
	case <-s.taken:
		return true
	default:
		return false
	}
}

func wait(ctx context.Context, ch <-chan struct{}) {
	select {
	case <-ch:
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
}

func timedOut(p store.RecordFailureParams, what string) []store.RecordFailureResult {
	return []store.RecordFailureResult{{Err: fmt.Errorf("store: %s of request %q: %w", what, p.Key.RequestID, context.DeadlineExceeded)}}
}

func (s *overlapStore) RecordFailures(ctx context.Context, ps []store.RecordFailureParams) []store.RecordFailureResult {
	if len(ps) != 1 {
		return s.KV.RecordFailures(ctx, ps)
	}
	p := ps[0]
	switch {
	case p.Failure.Seq == s.first && !p.Recorded:
		s.mu.Lock()
		s.writes++
		n := s.writes
		s.mu.Unlock()
		if n > 1 {
			// Decided afresh: starved until resend's failure has landed.
			wait(context.Background(), s.taken)
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return s.KV.RecordFailures(c, ps)
		}
		res := s.KV.RecordFailures(ctx, ps)
		close(s.recorded)
		if res[0].Err != nil {
			return res
		}
		return timedOut(p, "record the failure")
	case p.Failure.Seq == s.first:
		wait(ctx, s.decided)
		if !s.isTaken() {
			return []store.RecordFailureResult{{Err: fmt.Errorf("store: read contacts: batched read: %w", context.DeadlineExceeded)}}
		}
	case p.Failure.Seq == s.resend && !p.Recorded:
		s.mu.Lock()
		s.late = &p
		s.mu.Unlock()
		return timedOut(p, "record the failure")
	}
	return s.KV.RecordFailures(ctx, ps)
}

func (s *overlapStore) RecordAttempt(ctx context.Context, p store.RecordAttemptParams) (store.Outcome, error) {
	s.mu.Lock()
	late := s.late
	s.late = nil
	s.mu.Unlock()
	if late != nil {
		// The write reported timed out lands now, after the delivery's
		// last read.
		_ = s.KV.RecordFailures(ctx, []store.RecordFailureParams{*late})
		s.take()
	}
	return s.KV.RecordAttempt(ctx, p)
}

// The platform_clear scenario's lost result (seed 3: "LOST: request
// acme:s2-a108 (stored 2 times, seqs [77 84]) has no result"), replayed
// deterministically. A request is sent twice (first, resend):
//
//  1. first's delivery records its failure (CONTACT_NOT_FOUND, seq first),
//     but cannot fence it: the store times out;
//  2. meanwhile resend's first delivery reads that failure, answered by
//     another message: it will be acknowledged without a result, but its
//     worker is starved before the ack, past its deadline;
//  3. first's attempt is counted, by a compare-and-set at the revision of
//     the failure it read: the failure becomes a count of attempts;
//  4. the server has handed resend to another worker, which finds no
//     failure, records its own (seq resend; the write is reported timed
//     out, and lands) and hands it back;
//  5. the starved worker resumes and acknowledges resend;
//  6. first's next delivery reads resend's failure: answered by another
//     message, acknowledged without a result.
//
// The request has no result. It must have exactly one.
func TestOverlappingDeliveriesOfAResendKeepTheResult(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{}) // AckWait 2 s
	ctx := t.Context()
	s := newOverlapStore(e.st)
	first := e.publish("contact.stop.requested.acme", e.request("r-1", "gone"), nil)
	s.first, s.resend = first.Sequence, first.Sequence+1

	// The starved worker.
	cfg := fastConfig(t)
	cfg.BatchSize = 1
	w1, err := worker.New(e.js, s, cfg)
	require.NoError(t, err)
	worker.SetCrashHooks(w1, func(r *worker.Request, _ events.Result) bool {
		if r.StreamSeq == s.resend && r.Deliveries == 1 {
			close(s.decided)
			// Starved until the server has given the request to the
			// other worker, which has taken it up.
			wait(ctx, s.taken)
		}
		return false
	}, nil)
	require.NoError(t, w1.Start(ctx))
	w1Stopped := make(chan struct{})
	t.Cleanup(func() { <-w1Stopped })

	wait(ctx, s.recorded)
	resend := e.publish("contact.stop.requested.acme", e.request("r-1", "gone"), nil)
	require.Equal(t, s.resend, resend.Sequence)
	wait(ctx, s.decided)
	// The starved worker takes no more requests: resend's next delivery
	// goes to the other.
	go func() {
		defer close(w1Stopped)
		stopCtx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		_ = w1.Stop(stopCtx)
	}()

	cfg = fastConfig(t)
	cfg.BatchSize = 1
	cfg.RedeliveryDelay, cfg.RedeliveryDelayMax = time.Second, 2*time.Second
	w0, err := worker.New(e.js, s, cfg)
	require.NoError(t, err)
	worker.SetCrashHooks(w0, func(r *worker.Request, _ events.Result) bool {
		if r.StreamSeq == s.resend {
			s.take()
		}
		return false
	}, nil)
	require.NoError(t, w0.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w0.Stop(stopCtx)
	})

	rs := e.waitIdle(0)
	require.True(t, s.isTaken(), "the resend's second delivery was not taken up")
	got := byRequest(t, rs)
	require.Len(t, got, 1, "the request has exactly one result")
	res := got["r-1"]
	requireFailed(t, res, events.ReasonContactNotFound)
	// The result is the failure the store keeps.
	out, err := e.st.LookUpRequest(ctx, store.RequestKey{InstanceID: inst, ContactID: "gone", RequestID: "r-1"})
	require.NoError(t, err)
	require.NotNil(t, out.Failed, "the request's failure is recorded")
	require.True(t, res.result.Failed.FailedAt.Equal(out.Failed.FailedAt), "published %v, recorded %v", res.result.Failed.FailedAt, out.Failed.FailedAt)
}

// slowBatchStore holds the first end of contact x until released, and
// fails the ends of contact b with a transient error for its first
// failUntil.
type slowBatchStore struct {
	*store.KV
	entered, release chan struct{}
	enterOnce        sync.Once

	mu        sync.Mutex
	bFirst    time.Time
	together  bool // b's first end came with a's, in one batch
	failUntil time.Duration
}

func (s *slowBatchStore) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	outs := make([]store.EndOutcome, len(ps))
	var pass []store.EndContactParams
	var at []int
	for i, p := range ps {
		switch p.Contact.ContactID {
		case "x":
			s.enterOnce.Do(func() {
				close(s.entered)
				wait(ctx, s.release)
			})
		case "b":
			s.mu.Lock()
			if s.bFirst.IsZero() {
				s.bFirst = time.Now()
				for _, q := range ps {
					s.together = s.together || q.Contact.ContactID == "a"
				}
			}
			failing := time.Since(s.bFirst) < s.failUntil
			s.mu.Unlock()
			if failing {
				outs[i].Err = context.DeadlineExceeded
				continue
			}
		}
		pass, at = append(pass, p), append(at, i)
	}
	for k, o := range s.KV.EndContacts(ctx, pass) {
		outs[at[k]] = o
	}
	return outs
}

// A request decided at once waits for its batch's retries of another: its
// delivery is kept alive meanwhile, so that the server does not hand it
// to another worker while it is in hand (in the platform_clear scenario,
// such a delivery of a resend was acknowledged while another worker held
// its next delivery). Here a is stopped at once and b meets transient
// errors for longer than a delivery lasts: a is answered by its first
// delivery.
func TestBatchRetriesKeepDecidedDeliveriesAlive(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{}) // AckWait 2 s: a delivery lasts 1.5 s
	e.seed("x", "a", "b")
	s := &slowBatchStore{KV: e.st, entered: make(chan struct{}), release: make(chan struct{}), failUntil: 1800 * time.Millisecond}
	cfg := fastConfig(t) // eight at once, in one batch
	cfg.RetryMaxElapsed = 1900 * time.Millisecond
	w, err := worker.New(e.js, s, cfg)
	require.NoError(t, err)
	var mu sync.Mutex
	deliveries := map[string]uint64{}
	worker.SetCrashHooks(w, func(r *worker.Request, _ events.Result) bool {
		mu.Lock()
		defer mu.Unlock()
		deliveries[r.Identity] = max(deliveries[r.Identity], r.Deliveries)
		return false
	}, nil)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	// The batch's one goroutine is held on x while a and b arrive: they
	// make the next batch together.
	e.publish("contact.stop.requested.acme", e.request("r-x", "x"), nil)
	wait(t.Context(), s.entered)
	e.publish("contact.stop.requested.acme", e.request("r-a", "a"), nil)
	e.publish("contact.stop.requested.acme", e.request("r-b", "b"), nil)
	require.EventuallyWithT(t, func(c *assertT) {
		cons, err := e.js.Consumer(t.Context(), events.StreamRequests, events.ConsumerRequests)
		if !assertNoError(c, err) {
			return
		}
		info, err := cons.Info(t.Context())
		if assertNoError(c, err) && info.NumAckPending != 3 {
			c.Errorf("%d delivered", info.NumAckPending)
		}
	}, 10*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // into the worker's queue
	close(s.release)

	got := byRequest(t, e.waitIdle(3))
	require.Len(t, got, 3)
	for id, r := range got {
		require.NotNil(t, r.result.Stopped, id)
	}
	s.mu.Lock()
	require.True(t, s.together, "a and b were not decided in one batch")
	s.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	require.EqualValues(t, 1, deliveries["r-a"], "a was delivered again while its batch retried b")
}
