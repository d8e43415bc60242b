package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// A bulk request (or emergency broadcast) is carried out by one run at a
// time, which holds a lease on the request's record in the bulks bucket
// (bulk_lease.go):
//
//  1. take the lease, or hand the message back if another live run holds
//     it, or just ack if the request was completed before;
//  2. publish again the results an earlier run may not have stored (its
//     pending slots), and read the failures earlier runs recorded;
//  3. walk the instance's contacts; every one that matches the filter goes
//     through the decision pipeline as a request "<bulkId>/<contactId>",
//     in batches, BulkWorkers contacts at a time: ended by compare-and-set
//     at the revision the walk read, so the filter holds at the write (a
//     contact changed since is read again, and skipped if it no longer
//     matches); the lease and the progress are renewed every second;
//  4. record the completion event, publish it, mark the record COMPLETED,
//     ack.
//
// Cancelling (store.CancelBulk) sets CancelRequested on the record. The
// run learns of it when it next writes the record (the lease's renewal,
// every second) or when it takes the lease, and then starts no contact:
// the batches in hand finish, and the walk goes on only to count the
// contacts earlier runs of the bulk ended (a first run has none, and stops
// walking at once), so that the completion (cancelled: true) counts every
// stored result of the bulk and nothing else. A cancel that meets the
// completion being recorded is taken into it, as long as it was accepted
// (CancelBulk leaves a COMPLETING or COMPLETED record alone).
//
// A run that dies or is paused past its lease is taken over by the next
// delivery, which walks again. The run remembers every contact it
// dispatched; a contact ENDED by this bulk that it did not dispatch was
// ended by an earlier (or a late, paused) run: it counts as stopped, as
// does a contact an earlier run recorded a failure for as failed, so the
// completion's counts are those of the bulk's stored results whatever the
// takeovers. Nothing is stopped twice (every write is a CAS at the revision
// read), nothing is missed.
//
// Results lost to a crash. Before a batch's writes, its goroutine records
// the batch's contacts in a pending slot of its own in the bulks bucket
// (PutBulkPending), and empties it once their results are stored. A run
// that takes over reads the contacts bucket's last sequence, then every
// slot: the contacts in them are the only ones an earlier run may have
// decided without a stored result, and it publishes their results again
// before it walks. A contact an earlier run ended later than that sequence
// (a paused run's late write, whose slot the read may have missed) has its
// result published again by the walk. Every other earlier result is stored
// already and is only counted.

var (
	errBulkBusy      = errors.New("another runner holds the bulk request's lease")
	errInstanceBusy  = errors.New("another bulk request of the instance runs")
	errBulkDone      = errors.New("bulk request already completed")
	errBulkLeaseLost = errors.New("the bulk run lost its lease")
	errBulkStopping  = errors.New("the worker is stopping")
	errBulkAbandoned = errors.New("bulk run abandoned (test crash point)")
)

// bulkRun is one run of a bulk request.
type bulkRun struct {
	w     *Worker
	b     *bulkRequest
	spec  *bulkSpec
	final bool // the last allowed attempt: contacts failing transiently end as INTERNAL_ERROR
	log   *zap.Logger

	// mine holds a hash of every contact this run dispatched, recorded
	// before its write is sent: an ENDED-by-this-bulk record the walk meets
	// that is not in it was ended by an earlier or concurrent run (a
	// replay); one that is, is this run's own write coming round again.
	mine map[uint64]struct{}
	seed maphash.Seed

	mu  sync.Mutex // guards rec, failures and lock
	rec store.BulkRecord
	// lock is the instance's bulk lock, when locked (not for emergencies).
	lock   store.InstanceLock
	locked bool
	// leaseOK is the time (UnixNano) until which contacts may be written:
	// the lease's end less a safety margin.
	leaseOK atomic.Int64

	matched, done, stopped, skipped, unreadable atomic.Int64
	// cancelled is set once the run learns that the bulk request was
	// cancelled (CancelBulk): from its record when it takes the lease, or
	// when a write of the record meets the cancel (every second, with the
	// lease). From then on it starts no contact.
	cancelled atomic.Bool
	// failures are the contacts of this bulk with a recorded failure, by
	// contactId: those of earlier runs, read at the start, and this run's.
	failures map[string]store.Outcome

	run int // the run's number, from the record
	// boundary is the contacts bucket's last sequence before the pending
	// slots were read: an earlier run's write above it may lack its
	// result. republishAll is set when the previous run did not keep
	// pending slots (an older version): every earlier result is
	// published again, as that version did.
	boundary     uint64
	republishAll bool
	// recheck holds the pending contacts not yet ENDED by this bulk when
	// their slots were read (a read may lag behind a write on a cluster):
	// the walk publishes their results if it finds them ended by it.
	recheck map[string]bool
}

// runBulk carries out a bulk request; see the comment at the top of this
// file. It returns nil once the completion event is stored; the run, when
// it got as far as taking the lease, for the caller to count a failed
// attempt.
func (w *Worker) runBulk(ctx context.Context, b *bulkRequest, log *zap.Logger) (*bulkRun, error) {
	r := &bulkRun{w: w, b: b, spec: &b.spec, log: log, mine: map[uint64]struct{}{}, seed: maphash.MakeSeed(),
		failures: map[string]store.Outcome{}}
	if err := r.acquire(ctx); err != nil {
		return nil, err
	}
	if r.rec.Status == store.BulkCompleting {
		return r, r.complete(ctx)
	}
	log.Info("bulk run started", zap.Int("run", r.rec.Run), zap.Bool("final_attempt", r.final),
		zap.Strings("states", r.spec.filter.EffectiveStates()), zap.Strings("queue_ids", r.spec.filter.QueueIDs),
		zap.Strings("channels", r.spec.filter.Channels))

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		r.renew(runCtx, cancel)
	}()

	// Under the renewer: the lease and the message stay ours meanwhile.
	err := r.recoverPending(runCtx)
	if err != nil && runCtx.Err() != nil {
		err = context.Cause(runCtx) // the lease was lost, or the worker stops
	}
	if err == nil {
		err = r.walk(runCtx)
	}
	if err == nil {
		err = context.Cause(runCtx)
	}
	cancel(errBulkStopping) // stops the renewer
	<-renewed
	switch {
	case errors.Is(err, errBulkAbandoned):
		return r, err
	case err != nil:
		r.release()
		return r, err
	}
	return r, r.complete(ctx)
}

// recoverPending publishes again the results of the contacts in earlier
// runs' pending slots that this bulk request decided, then deletes the
// slots, and reads the failures earlier runs recorded. It reads the
// contacts bucket's last sequence first (r.boundary): an earlier run's
// write its slot read misses lands above it.
func (r *bulkRun) recoverPending(ctx context.Context) error {
	w := r.w
	var ids, slots []string
	err := w.retry(ctx, r.log, func() (err error) {
		if r.boundary, err = w.store.ContactsSequence(ctx); err != nil {
			return err
		}
		if ids, slots, err = w.store.BulkPending(ctx, r.spec.instanceID, r.spec.bulkID); err != nil {
			return err
		}
		failures, err := w.store.BulkFailures(ctx, r.spec.instanceID, r.spec.bulkID)
		if err != nil {
			return err
		}
		r.mu.Lock()
		maps.Copy(r.failures, failures)
		r.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("read pending contacts: %w", err)
	}
	// Through the pipeline, yielding only what was decided before (a
	// failure is fenced first: its run may have died before fencing it).
	todo := make([]*item, len(ids))
	for i, id := range ids {
		todo[i] = &item{key: bulkItemRequestKey(r.spec, id), onlyDecided: true, deadline: time.Unix(0, r.leaseOK.Load()),
			bound: r.spec.bound, reason: r.spec.disconnectReason, echoInstance: r.spec.instanceID, filter: r.spec.match}
	}
	var items []*item
	err = w.retry(ctx, r.log, func() error {
		w.pipe.run(ctx, todo)
		var retry []*item
		for _, it := range todo {
			switch it.out.kind {
			case stopped, failed:
				items = append(items, it)
			case expired:
				return permanent(errBulkLeaseLost)
			case transient:
				retry = append(retry, it)
			default:
				// Not decided by this bulk, as far as this read shows: the
				// walk decides it, or publishes its result should it find
				// it ended.
				if r.recheck == nil {
					r.recheck = map[string]bool{}
				}
				r.recheck[it.key.ContactID] = true
			}
		}
		if len(retry) > 0 {
			todo = retry
			return fmt.Errorf("%d pending contacts: %w", len(retry), retry[0].out.err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("decide pending contacts: %w", err)
	}
	if items, err = r.unpublished(ctx, items, slots); err != nil {
		return fmt.Errorf("look for the pending contacts' results: %w", err)
	}
	if err := r.publish(ctx, items, false); err != nil {
		return fmt.Errorf("results of pending contacts: %w", err)
	}
	if len(slots) > 0 {
		err = w.retry(ctx, r.log, func() error { return w.store.DeleteBulkPending(ctx, slots) })
		if err != nil {
			return fmt.Errorf("delete pending slots: %w", err)
		}
		r.log.Info("published the results of an earlier run's pending contacts again",
			zap.Int("pending", len(ids)), zap.Int("republished", len(items)), zap.Int("slots", len(slots)))
	}
	return nil
}

// unpublished returns those of items, decided by an earlier run and held
// in its pending slots, whose results the results stream does not hold. A
// run that stopped between storing a batch's results and emptying its slot
// left them there; publishing them again is harmless within the duplicate
// window, but a takeover can come later than that (a paused run keeps its
// lease until it lapses, and the request's next delivery may come later
// still), and JetStream would then store each result a second time.
func (r *bulkRun) unpublished(ctx context.Context, items []*item, slots []string) ([]*item, error) {
	if len(items) == 0 {
		return items, nil
	}
	w := r.w
	var since time.Time
	err := w.retry(ctx, r.log, func() (err error) {
		since, err = w.store.BulkPendingWritten(ctx, slots)
		return err
	})
	if err != nil || since.IsZero() {
		return items, err
	}
	// Bulk results are never retryable, so their Nats-Msg-Id is
	// ResultMsgID's (see resultMsg).
	ids := make(map[string]bool, len(items))
	for _, it := range items {
		ids[events.ResultMsgID(it.key.InstanceID, it.key.ContactID, it.key.RequestID)] = true
	}
	var stored map[string]bool
	err = w.retry(ctx, r.log, func() (err error) {
		// A second's margin for the clocks of the servers that stamped
		// the slot and the results.
		stored, err = w.resultsStored(ctx, r.spec.instanceID, since.Add(-time.Second), ids)
		return err
	})
	if err != nil {
		return nil, err
	}
	todo := items[:0:0]
	for _, it := range items {
		if !stored[events.ResultMsgID(it.key.InstanceID, it.key.ContactID, it.key.RequestID)] {
			todo = append(todo, it)
		}
	}
	if len(todo) < len(items) {
		r.log.Info("an earlier run stored the results of some pending contacts; they are not published again",
			zap.Int("decided", len(items)), zap.Int("stored", len(items)-len(todo)))
	}
	return todo, nil
}

// bulkItem is one contact the walk hands to a batch: to decide, or (a
// replay) decided by an earlier run, whose result is published again when
// republish is set.
type bulkItem struct {
	contact   store.Contact
	replay    outcomeKind // stopped or failed by an earlier run; undecided otherwise
	republish bool
}

// walk enumerates the instance's contacts and decides the matching ones in
// batches of BatchSize, BulkWorkers contacts at a time. It returns the
// first error of any batch, having finished the others.
func (r *bulkRun) walk(ctx context.Context) error {
	w := r.w
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	size := max(1, min(w.cfg.BatchSize, w.cfg.BulkWorkers))
	batches := make(chan []bulkItem)
	var wg sync.WaitGroup
	for slot := range max(1, w.cfg.BulkWorkers/size) {
		wg.Go(func() {
			for batch := range batches {
				if ctx.Err() != nil {
					continue
				}
				if err := r.stopBatch(ctx, slot, batch); err != nil {
					cancel(err)
				}
			}
		})
	}
	batch := make([]bulkItem, 0, size)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case batches <- batch:
			batch = make([]bulkItem, 0, size)
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	// The live walk delivers this run's own writes again: skipped unread.
	dispatched := func(escapedID string) bool {
		_, ok := r.mine[maphash.String(r.seed, escapedID)]
		return ok
	}
	// Once cancelled, a first run has nothing more to count: every contact
	// ended by the bulk is one it dispatched.
	stopWalk := func() bool { return r.cancelled.Load() && r.run == 1 && !r.republishAll }
	var err error
	if !stopWalk() {
		err = w.store.WalkContacts(ctx, store.WalkParams{InstanceID: r.spec.instanceID, Skip: dispatched}, r.walkEntry(&batch, send, stopWalk))
	}
	if errors.Is(err, errBulkWalkStopped) {
		err = nil
	}
	if err == nil {
		err = send()
	}
	close(batches)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// errBulkWalkStopped ends a cancelled first run's walk.
var errBulkWalkStopped = errors.New("the bulk request was cancelled")

// walkEntry returns the walk's function: it puts every contact to decide
// or to count again into the batch, and sends the batch when full.
func (r *bulkRun) walkEntry(batchp *[]bulkItem, send func() error, stopWalk func() bool) func(e store.WalkEntry) error {
	w := r.w
	size := cap(*batchp)
	return func(e store.WalkEntry) error {
		if stopWalk() {
			return errBulkWalkStopped
		}
		if e.Bad != nil {
			r.unreadable.Add(1)
			r.log.Warn("passing over a record that cannot be read as a contact", zap.Error(e.Bad))
			return nil
		}
		c := e.Contact
		it := bulkItem{contact: c}
		r.mu.Lock()
		_, failed := r.failures[c.ContactID]
		r.mu.Unlock()
		switch {
		case failed:
			// An earlier run recorded its failure: decided; counted from
			// the record at completion.
			return nil
		case c.State == store.StateEnded:
			if c.EndedBy != events.BulkItemRequestID(r.spec.bulkID, c.ContactID) {
				return nil // ended by another request
			}
			// By an earlier or concurrent run of this bulk.
			it.replay = stopped
			it.republish = r.republishAll || c.Revision > r.boundary || r.recheck[c.ContactID]
		case r.cancelled.Load():
			// Cancelled: no contact is started.
			return nil
		case r.spec.match.Match(string(c.State), c.QueueID, string(c.Channel), c.EnqueuedAt):
		default:
			return nil
		}
		r.mine[maphash.String(r.seed, store.EscapeContactID(c.ContactID))] = struct{}{}
		n := r.matched.Add(1)
		if w.hooks.bulkItem != nil && w.hooks.bulkItem(r.spec.bulkID, int(n)) {
			return errBulkAbandoned
		}
		if *batchp = append(*batchp, it); len(*batchp) == size {
			return send()
		}
		return nil
	}
}

// stopBatch decides a batch of contacts: it records them in its pending
// slot, runs them through the pipeline (each ended at the revision the walk
// read, if it still matches), publishes their results, and empties the
// slot.
func (r *bulkRun) stopBatch(ctx context.Context, slot int, batch []bulkItem) error {
	w := r.w
	if !r.leaseValid() {
		return errBulkLeaseLost
	}
	if r.cancelled.Load() {
		// Not started yet: only earlier runs' contacts are still counted.
		kept := batch[:0]
		for _, bi := range batch {
			if bi.replay != undecided {
				kept = append(kept, bi)
			}
		}
		r.matched.Add(int64(len(kept) - len(batch)))
		if batch = kept; len(batch) == 0 {
			return nil
		}
	}
	var pending []string
	for _, bi := range batch {
		if bi.replay == undecided || bi.republish {
			pending = append(pending, bi.contact.ContactID)
		}
	}
	if len(pending) > 0 {
		err := w.retry(ctx, r.log, func() error {
			return w.store.PutBulkPending(ctx, r.spec.instanceID, r.spec.bulkID, r.run, slot, pending)
		})
		if err != nil {
			return fmt.Errorf("record pending contacts: %w", err)
		}
	}
	items := make([]*item, 0, len(batch))
	var decide []*item
	for i := range batch {
		bi := &batch[i]
		v := &store.View{Key: bulkItemRequestKey(r.spec, bi.contact.ContactID), Contact: &bi.contact, ContactRev: bi.contact.Revision}
		it := &item{key: v.Key, reason: r.spec.disconnectReason, echoInstance: r.spec.instanceID, filter: r.spec.match, view: v, bound: r.spec.bound}
		items = append(items, it)
		if bi.replay != undecided {
			it.out = outcome{kind: bi.replay, contact: &bi.contact, publish: bi.republish}
			continue
		}
		decide = append(decide, it)
	}
	if err := r.decide(ctx, decide); err != nil {
		return err
	}
	if w.hooks.bulkBeforeResults != nil && w.hooks.bulkBeforeResults(r.spec.bulkID) {
		return errBulkAbandoned
	}
	if err := r.publish(ctx, items, true); err != nil {
		return err
	}
	if w.hooks.bulkAfterResults != nil && w.hooks.bulkAfterResults(r.spec.bulkID) {
		return errBulkAbandoned
	}
	if len(pending) > 0 {
		// Every result is stored. Not waited for: should this be lost, a
		// run taking over publishes these results once more.
		if err := w.store.ClearBulkPending(r.spec.instanceID, r.spec.bulkID, r.run, slot); err != nil {
			r.log.Debug("emptying a pending slot failed", zap.Error(err))
		}
	}
	return nil
}

// decide runs items through the pipeline, retrying transient errors with
// backoff; on the last attempt, a contact that still fails transiently is
// answered INTERNAL_ERROR. Writes stop when the lease is about to end.
func (r *bulkRun) decide(ctx context.Context, items []*item) error {
	w := r.w
	todo := items
	b := w.newBackOff()
	for {
		deadline := time.Unix(0, r.leaseOK.Load())
		for _, it := range todo {
			it.deadline = deadline
		}
		w.pipe.run(ctx, todo)
		var retry []*item
		var last error
		for _, it := range todo {
			switch it.out.kind {
			case transient:
				retry, last = append(retry, it), it.out.err
			case expired:
				return errBulkLeaseLost
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		next := b.NextBackOff()
		if next == backoff.Stop {
			if !r.final {
				return fmt.Errorf("%d contacts: %w", len(retry), last)
			}
			// The last attempt answers for them.
			for _, it := range retry {
				it.refusal = &refusal{code: events.ReasonInternalError, msg: "transient failures outlived every attempt: " + it.out.err.Error()}
				it.view = nil
			}
			w.pipe.run(ctx, retry)
			for _, it := range retry {
				if it.out.kind == transient || it.out.kind == expired {
					return fmt.Errorf("contact %q: %w", it.key.ContactID, it.out.err)
				}
			}
			return nil
		}
		w.cfg.Metrics.retried(len(retry))
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(next):
		}
		todo = retry
	}
}

// publish publishes the results of items that publish one and counts every
// item decided. counted is false for results published again for an
// earlier run (counted by the walk).
func (r *bulkRun) publish(ctx context.Context, items []*item, count bool) error {
	w := r.w
	if !r.leaseValid() {
		// Past the lease another run may have taken over and published
		// these results (they are in this run's pending slot); publishing
		// them this late could fall outside the duplicate window.
		return errBulkLeaseLost
	}
	var msgs []*nats.Msg
	var msgOf []*item
	for _, it := range items {
		switch it.out.kind {
		case stopped, failed:
			if it.out.publish {
				msgs, msgOf = append(msgs, w.resultMsg(it, resultOf(it), r.b.headers)), append(msgOf, it)
				continue
			}
			if count {
				r.count(it)
			}
		case skipped, unreadable:
			if count {
				r.count(it)
			}
		}
	}
	for k, ack := range w.pub.PublishBatch(ctx, msgs, w.cfg.RetryMaxElapsed) {
		it, m := msgOf[k], msgs[k]
		if ack.Err != nil {
			err := w.retry(ctx, r.log, func() error {
				return w.pub.Publish(ctx, []*nats.Msg{m}, w.cfg.RetryMaxElapsed)[0].Err
			})
			if err != nil {
				return fmt.Errorf("result of contact %q: %w", it.key.ContactID, err)
			}
		}
		if count {
			r.count(it)
		}
	}
	return nil
}

// count counts a contact whose outcome is settled (its result stored).
func (r *bulkRun) count(it *item) {
	switch it.out.kind {
	case stopped:
		r.stopped.Add(1)
		r.w.cfg.Metrics.bulkItem("stopped", "")
	case failed:
		r.mu.Lock()
		r.failures[it.key.ContactID] = *it.out.failure
		r.mu.Unlock()
		r.w.cfg.Metrics.bulkItem("failed", it.out.failure.ReasonCode)
	case skipped:
		r.skipped.Add(1)
		r.w.cfg.Metrics.bulkItem("skipped", "")
	case unreadable:
		r.unreadable.Add(1)
		r.w.cfg.Metrics.bulkItem("unreadable", "")
		return
	}
	r.done.Add(1)
}

// counts returns the run's counts: the contacts it matched, stopped,
// skipped and found unreadable, and the failures recorded by every run.
func (r *bulkRun) counts() (c events.BulkCompleted) {
	c.Stopped, c.Skipped, c.Unreadable = int(r.stopped.Load()), int(r.skipped.Load()), int(r.unreadable.Load())
	c.ReasonCodes = map[events.ReasonCode]int{}
	r.mu.Lock()
	for _, f := range r.failures {
		c.ReasonCodes[events.ReasonCode(f.ReasonCode)]++
		c.Failed++
	}
	r.mu.Unlock()
	c.Matched = c.Stopped + c.Failed + c.Skipped
	return c
}

// complete records the completion event, publishes it once every matched
// contact has its result, then marks the record COMPLETED.
func (r *bulkRun) complete(ctx context.Context) error {
	w := r.w
	var done events.BulkCompleted
	if r.rec.Status == store.BulkCompleting {
		// An earlier run recorded it: publish it, unless it is stored.
		if err := json.Unmarshal(r.rec.Completion, &done); err != nil {
			return fmt.Errorf("recorded completion: %w", err)
		}
	} else {
		done = r.counts()
		done.BulkID, done.InstanceID = r.spec.bulkID, r.spec.instanceID
		done.StartedAt, done.CompletedAt = r.rec.StartedAt, w.cfg.Now().UTC()
		// Recording it also proves the lease is still ours. A cancel
		// accepted until then is in the record (save takes it in).
		err := w.retry(ctx, r.log, func() error {
			var encErr error
			err := r.save(ctx, func(rec *store.BulkRecord) {
				done.Cancelled = rec.CancelRequested
				data, err := json.Marshal(done)
				if err != nil {
					encErr = err
				}
				rec.Walking, rec.Status, rec.Completion, rec.CompletingAt = false, store.BulkCompleting, data, done.CompletedAt
				rec.Matched, rec.Done, rec.Cancelled = done.Matched, done.Matched, done.Cancelled
			})
			if encErr != nil {
				return permanent(fmt.Errorf("encode completion: %w", encErr))
			}
			if errors.Is(err, store.ErrBulkConflict) {
				return permanent(fmt.Errorf("%w: %w", errBulkLeaseLost, err))
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if n := done.ReasonCodes[events.ReasonInternalError]; n > 0 {
		if err := r.deadLetter(ctx, n); err != nil {
			return err
		}
	}
	if err := r.publishCompletion(ctx, done); err != nil {
		return err
	}
	err := w.retry(ctx, r.log, func() error {
		err := r.save(ctx, func(rec *store.BulkRecord) {
			rec.Status, rec.Owner, rec.LeaseUntil, rec.CompletedAt = store.BulkCompleted, "", time.Time{}, done.CompletedAt
			rec.Cancelled = done.Cancelled
		})
		if errors.Is(err, store.ErrBulkConflict) {
			return permanent(err)
		}
		return err
	})
	if err != nil {
		// The completion is recorded and stored; a later run finds it
		// stored and only marks the record.
		return fmt.Errorf("mark bulk completed: %w", err)
	}
	// The next bulk request of the instance may start.
	if err := r.renewLock(ctx, time.Time{}); err != nil {
		r.log.Debug("letting the instance's bulk lock go failed; it lapses with the lease", zap.Error(err))
	}
	// The slots are empty now (this run's) or were deleted when it began.
	_, slots, err := w.store.BulkPending(ctx, r.spec.instanceID, r.spec.bulkID)
	if err == nil {
		err = w.store.DeleteBulkPending(ctx, slots)
	}
	if err != nil {
		r.log.Warn("deleting the bulk request's pending slots failed; they are left in the bulks bucket", zap.Error(err))
	}
	codes := make([]string, 0, len(done.ReasonCodes))
	for k := range done.ReasonCodes {
		codes = append(codes, string(k))
	}
	slices.Sort(codes)
	r.log.Info("bulk request completed", zap.Bool("cancelled", done.Cancelled), zap.Int("matched", done.Matched), zap.Int("stopped", done.Stopped),
		zap.Int("failed", done.Failed), zap.Int("skipped", done.Skipped), zap.Int("unreadable", done.Unreadable),
		zap.Strings("reason_codes", codes), zap.Int("run", r.rec.Run))
	return nil
}

// publishCompletion publishes the completion event unless an earlier run
// stored it (it recorded the completion, then died): the results stream is
// searched from the time it was recorded, so that the event is stored once
// however late the takeover.
func (r *bulkRun) publishCompletion(ctx context.Context, done events.BulkCompleted) error {
	w := r.w
	stored, err := w.completionStored(ctx, done)
	if err != nil {
		return fmt.Errorf("look for a stored completion: %w", err)
	}
	if stored {
		r.log.Info("the completion event was stored by an earlier run")
		return nil
	}
	data, err := json.Marshal(done)
	if err != nil {
		return fmt.Errorf("encode completion: %w", err)
	}
	msg := &nats.Msg{Subject: events.BulkCompletedSubject(r.spec.instanceID), Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, events.BulkCompletedMsgID(r.spec.instanceID, r.spec.bulkID))
	events.PassHeaders(msg.Header, r.b.headers)
	err = w.retry(ctx, r.log, func() error {
		return w.pub.Publish(ctx, []*nats.Msg{msg}, w.cfg.RetryMaxElapsed)[0].Err
	})
	if err != nil {
		return fmt.Errorf("publish completion: %w", err)
	}
	return nil
}

// deadLetter copies the bulk request to the dead-letter stream when some of
// its contacts ended as INTERNAL_ERROR.
func (r *bulkRun) deadLetter(ctx context.Context, n int) error {
	b := r.b
	req := &Request{Msg: b.msg, Headers: b.headers, Identity: r.spec.bulkID, Instance: b.instance,
		Deliveries: b.deliveries, StreamSeq: b.streamSeq}
	dl := deadLetterMsg(req, fmt.Sprintf("%d contacts ended as INTERNAL_ERROR", n))
	return r.w.retry(ctx, r.log, func() error {
		return r.w.pub.Publish(ctx, []*nats.Msg{dl}, r.w.cfg.RetryMaxElapsed)[0].Err
	})
}
