package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// A bulk request (or emergency broadcast) is carried out by one run at a
// time, which holds a lease on the request's record in the bulks bucket:
//
//  1. take the lease (a compare-and-set on the record), or hand the message
//     back if another live run holds it, or just ack if the request was
//     completed before;
//  2. walk the instance's contacts and stop every match (CAS at the
//     revision the walk read, then the result with requestId
//     <bulkId>/<contactId>) in batches, as the batched single path does,
//     BulkWorkers contacts at a time, renewing the lease and the progress
//     every second; a contact whose batched write or result fails takes
//     the per-contact path with its retries;
//  3. publish the one contact.stop.bulk.completed event, mark the record
//     COMPLETED, ack.
//
// A run that dies or is paused past its lease is taken over by the next
// delivery, which walks again. The run remembers every contact it
// dispatched; a contact ENDED by this bulk that it did not dispatch was
// ended by an earlier (or a late, paused) run: it counts as matched and
// stopped. The live walk also delivers the run's own writes again: they are
// skipped. Nothing is stopped twice (every write is a CAS with the same
// requestId), nothing is missed, and the completion event has a Nats-Msg-Id
// derived from the bulk, so it is stored once. A run that loses its lease
// hands the request back; it never answers for a bulk another runner holds.
//
// Results lost to a crash. Before a batch's writes, its goroutine records
// the batch's contacts in a pending slot of its own in the bulks bucket
// (PutBulkPending), and empties it once their results are stored. A run
// that takes over reads the contacts bucket's last sequence, then every
// slot: the contacts in them are the only ones an earlier run may have
// ended without a stored result, and it publishes their results again
// before it walks. A contact an earlier run ended later than that sequence
// (a paused run's late write, whose slot the read may have missed) has its
// result published again by the walk. Every other earlier result is stored
// already and is only counted, so a request taken over again and again, for
// longer than the duplicate window, does not store results twice.

var (
	errBulkBusy      = errors.New("another runner holds the bulk request's lease")
	errBulkDone      = errors.New("bulk request already completed")
	errBulkLeaseLost = errors.New("the bulk run lost its lease")
	errBulkStopping  = errors.New("the worker is stopping")
	errBulkAbandoned = errors.New("bulk run abandoned (test crash point)")
)

// bulkSpec is what to clear, from a bulk request or an emergency broadcast.
type bulkSpec struct {
	bulkID, instanceID string
	filter             events.BulkFilter
	disconnectReason   string
	token              string // the securityUser
	emergency          bool
	message            string // of an emergency broadcast

	states, queues, channels map[string]bool
}

func (s *bulkSpec) compile() {
	set := func(vs []string) map[string]bool {
		if len(vs) == 0 {
			return nil
		}
		m := make(map[string]bool, len(vs))
		for _, v := range vs {
			m[v] = true
		}
		return m
	}
	s.states = set(s.filter.EffectiveStates())
	s.queues = set(s.filter.QueueIDs)
	s.channels = set(s.filter.Channels)
}

// matches reports whether an active contact matches the filter.
func (s *bulkSpec) matches(c store.Contact) bool {
	if !s.states[string(c.State)] {
		return false
	}
	if s.queues != nil && !s.queues[c.QueueID] {
		return false
	}
	if s.channels != nil && !s.channels[string(c.Channel)] {
		return false
	}
	if t := s.filter.EnqueuedBefore; t != nil && (c.EnqueuedAt.IsZero() || !c.EnqueuedAt.Before(*t)) {
		return false
	}
	return true
}

// processBulk takes one delivery of a bulk request or emergency broadcast
// to its end: completed and acked, answered with a failure, or handed back.
func (w *Worker) processBulk(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	req, spec := w.newBulkRequest(msg)
	log := w.log.With(zap.String("bulk_id", req.Identity), zap.String("instance_id", req.Stop.InstanceID),
		zap.Uint64("stream_seq", req.StreamSeq), zap.Uint64("deliveries", req.Deliveries))
	if req.Invalid != nil {
		w.cfg.Metrics.bulkRun("refused")
		w.deliver(ctx, req, req.failure(req.Invalid.Code, req.Invalid.Error()), log, start)
		return
	}
	// Checked once, when the bulk request is taken on: a token that
	// expires during a long clear does not stop it half-way.
	if res := w.authorize(req, spec.token, auth.ActionBulkStop, auth.InstanceResource(spec.instanceID)); res != nil {
		w.cfg.Metrics.bulkRun("refused")
		w.deliver(ctx, req, *res, log, start)
		return
	}
	if spec.emergency {
		if meta, err := msg.Metadata(); err == nil && req.Deliveries == 1 && time.Since(meta.Timestamp) > w.cfg.EmergencyMaxAge {
			log.Warn("ignoring an emergency broadcast older than the emergency max age", zap.Time("published", meta.Timestamp))
			_ = msg.Ack()
			return
		}
	}

	var exists bool
	err := w.retry(ctx, req, func() (err error) {
		exists, err = w.store.InstanceExists(ctx, spec.instanceID)
		return err
	})
	if err == nil && !exists {
		w.cfg.Metrics.bulkRun("refused")
		w.deliver(ctx, req, req.failure(events.ReasonResourceNotFound, fmt.Sprintf("instance %q is not known", spec.instanceID)), log, start)
		return
	}
	if err == nil {
		if spec.emergency {
			log.Warn("EMERGENCY: clearing the instance's queued contacts",
				zap.Strings("queue_ids", spec.filter.QueueIDs), zap.String("message", spec.message))
		}
		final := req.Deliveries >= uint64(w.cfg.MaxDeliveries)
		w.cfg.Metrics.bulkStarted(1)
		err = w.runBulk(ctx, req, &spec, final, log)
		w.cfg.Metrics.bulkStarted(-1)
	}
	m := w.cfg.Metrics
	switch {
	case err == nil:
		_ = msg.Ack()
		m.bulkRun("completed")
	case errors.Is(err, errBulkDone):
		log.Info("bulk request already completed; nothing to do")
		_ = msg.Ack()
		m.bulkRun("already_completed")
	case errors.Is(err, errBulkAbandoned):
		// A test's crash point: neither ack nor nak.
	case errors.Is(err, errBulkBusy) || errors.Is(err, errBulkLeaseLost):
		// Another runner has it: never a failure of the bulk request,
		// whatever the delivery count.
		_ = msg.NakWithDelay(w.cfg.BulkLease / 2)
		m.bulkRun("busy")
		log.Info("bulk request is being run elsewhere; handed back", zap.Error(err))
	case errors.Is(err, errBulkStopping) || ctx.Err() != nil:
		_ = msg.Nak()
		m.bulkRun("handed_back")
		log.Info("bulk run handed back at shutdown; it resumes on redelivery")
	case req.Deliveries < uint64(w.cfg.MaxDeliveries):
		delay := w.redeliveryDelay(req.Deliveries)
		_ = msg.NakWithDelay(delay)
		m.bulkRun("failed")
		m.handedBack()
		log.Warn("bulk run failed; will be resumed", zap.String("outcome", "retry"), zap.Duration("delay", delay), zap.Error(err))
	default:
		// The last delivery failed. Unless another runner has the request
		// in hand or finished it, it ends as INTERNAL_ERROR.
		switch rec, gerr := w.store.GetBulk(ctx, spec.instanceID, spec.bulkID); {
		case gerr == nil && rec.Status == store.BulkCompleted:
			_ = msg.Ack()
			m.bulkRun("already_completed")
		case gerr == nil && rec.Owner != "" && w.cfg.Now().Before(rec.LeaseUntil):
			_ = msg.NakWithDelay(w.cfg.BulkLease / 2)
			m.bulkRun("busy")
		default:
			m.bulkRun("failed")
			w.finalize(ctx, req, err, log, start)
		}
	}
}

// newBulkRequest decodes a bulk request or emergency broadcast.
func (w *Worker) newBulkRequest(msg jetstream.Msg) (*Request, bulkSpec) {
	req := &Request{Msg: msg, Headers: msg.Headers()}
	if meta, err := msg.Metadata(); err == nil {
		req.Deliveries, req.StreamSeq, req.Published = meta.NumDelivered, meta.Sequence.Stream, meta.Timestamp
	}
	fallbackID := req.Headers.Get(events.HeaderMsgID)
	if fallbackID == "" {
		fallbackID = "seq-" + strconv.FormatUint(req.StreamSeq, 10)
	}

	var spec bulkSpec
	if inst, ok := events.EmergencyInstance(msg.Subject()); ok || msg.Subject() != events.SubjectBulkRequested {
		b, err := events.DecodeEmergencyBroadcast(msg.Data())
		req.Identity = "emergency-" + fallbackID
		req.Stop.InstanceID = inst
		if ok {
			req.Instance = inst
		} else {
			err = &events.ValidationError{Code: events.ReasonInvalidParameter, Field: "instanceId",
				Reason: fmt.Sprintf("subject %q does not end in a valid instance ID", msg.Subject())}
		}
		if err != nil {
			req.Invalid = asValidationError(err)
		}
		spec = bulkSpec{bulkID: req.Identity, instanceID: inst, emergency: true, disconnectReason: "EMERGENCY", message: b.Message, token: b.SecurityUser,
			filter: events.BulkFilter{States: []string{"QUEUED"}, QueueIDs: b.QueueIDs}}
	} else {
		b, err := events.DecodeBulkRequest(msg.Data())
		req.Identity = b.BulkID
		if req.Identity == "" || err != nil && asValidationError(err).Field == "bulkId" {
			req.Identity = fallbackID
		}
		req.Stop.InstanceID = b.InstanceID
		if events.ValidInstanceID(b.InstanceID) {
			req.Instance = b.InstanceID
		}
		if err != nil {
			req.Invalid = asValidationError(err)
		}
		spec = bulkSpec{bulkID: req.Identity, instanceID: b.InstanceID, filter: b.Filter, disconnectReason: b.DisconnectReason, token: b.SecurityUser}
	}
	spec.compile()
	return req, spec
}

// bulkRun is one run of a bulk request.
type bulkRun struct {
	w     *Worker
	req   *Request // the bulk request
	spec  *bulkSpec
	final bool // the last allowed delivery: contacts failing transiently end as INTERNAL_ERROR
	log   *zap.Logger

	// mine holds a hash of every contact this run dispatched, recorded
	// before its write is sent: an ENDED-by-this-bulk record the walk meets
	// that is not in it was ended by an earlier or concurrent run (a
	// replay); one that is, is this run's own write coming round again.
	mine map[uint64]struct{}
	seed maphash.Seed

	mu  sync.Mutex // guards rec and reasons
	rec store.BulkRecord
	// leaseOK is the time (UnixNano) until which contacts may be written:
	// the lease's end less a safety margin.
	leaseOK atomic.Int64

	matched, done, stopped, failed atomic.Int64
	reasons                        map[events.ReasonCode]int

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
// file. It returns nil once the completion event is stored.
func (w *Worker) runBulk(ctx context.Context, req *Request, spec *bulkSpec, final bool, log *zap.Logger) error {
	r := &bulkRun{w: w, req: req, spec: spec, final: final, log: log, reasons: map[events.ReasonCode]int{},
		mine: map[uint64]struct{}{}, seed: maphash.MakeSeed()}
	if err := r.acquire(ctx); err != nil {
		return err
	}
	log.Info("bulk run started", zap.Int("run", r.rec.Run),
		zap.Strings("states", spec.filter.EffectiveStates()), zap.Strings("queue_ids", spec.filter.QueueIDs),
		zap.Strings("channels", spec.filter.Channels))

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
		return err
	case err != nil:
		r.release()
		return err
	}
	return r.complete(ctx)
}

// acquire takes the bulk request's lease, as a new run.
func (r *bulkRun) acquire(ctx context.Context) error {
	w := r.w
	var rec store.BulkRecord
	err := w.retry(ctx, r.req, func() (err error) {
		rec, err = w.store.GetBulk(ctx, r.spec.instanceID, r.spec.bulkID)
		if errors.Is(err, store.ErrBulkNotFound) {
			rec, err = store.BulkRecord{BulkID: r.spec.bulkID, InstanceID: r.spec.instanceID}, nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("read bulk record: %w", err)
	}
	now := w.cfg.Now()
	switch {
	case rec.Status == store.BulkCompleted:
		return errBulkDone
	case rec.Owner != "" && now.Before(rec.LeaseUntil):
		return fmt.Errorf("%w (%s, until %s)", errBulkBusy, rec.Owner, rec.LeaseUntil.Format(time.RFC3339))
	}
	if rec.StartedAt.IsZero() {
		rec.StartedAt = now.UTC()
	}
	r.republishAll = rec.Run >= 1 && !rec.PendingSlots
	rec.PendingSlots = true
	rec.Status, rec.Owner, rec.Run, rec.Walking = store.BulkRunning, w.id+"/"+nuid.Next(), rec.Run+1, true
	rec.Matched, rec.Done, rec.Stopped, rec.Failed, rec.ReasonCodes = 0, 0, 0, 0, nil
	rec.LeaseUntil = now.Add(w.cfg.BulkLease).UTC()
	rec, err = w.store.PutBulk(ctx, rec)
	if errors.Is(err, store.ErrBulkConflict) {
		return fmt.Errorf("%w: %w", errBulkBusy, err)
	}
	if err != nil {
		return fmt.Errorf("take bulk lease: %w", err)
	}
	r.rec, r.run = rec, rec.Run
	r.setLease(rec.LeaseUntil)
	return nil
}

// recoverPending publishes again the results of the contacts in earlier
// runs' pending slots that this bulk request ended, then deletes the
// slots. It reads the contacts bucket's last sequence first (r.boundary):
// an earlier run's write its slot read misses lands above it.
func (r *bulkRun) recoverPending(ctx context.Context) error {
	w := r.w
	var ids, slots []string
	err := w.retry(ctx, r.req, func() (err error) {
		if r.boundary, err = w.store.ContactsSequence(ctx); err != nil {
			return err
		}
		ids, slots, err = w.store.BulkPending(ctx, r.spec.instanceID, r.spec.bulkID)
		return err
	})
	if err != nil {
		return fmt.Errorf("read pending contacts: %w", err)
	}
	republished := 0
	for _, id := range ids {
		var c store.Contact
		err := w.retry(ctx, r.req, func() (err error) {
			c, err = w.store.GetContact(ctx, r.spec.instanceID, id)
			if errors.Is(err, store.ErrContactNotFound) {
				return permanent(err)
			}
			return err
		})
		switch {
		case errors.Is(err, store.ErrContactNotFound):
			continue // deleted since
		case err != nil:
			return fmt.Errorf("read pending contact %q: %w", id, err)
		case c.State != store.StateEnded || c.EndedBy != events.BulkItemRequestID(r.spec.bulkID, id):
			// Not ended by this bulk, as far as this read shows: the walk
			// stops it, or publishes its result should it find it ended.
			if r.recheck == nil {
				r.recheck = map[string]bool{}
			}
			r.recheck[id] = true
			continue
		}
		req := r.itemRequest(c)
		if _, err := w.publishResult(ctx, req, stoppedResult(req, c)); err != nil {
			return fmt.Errorf("result of pending contact %q: %w", id, err)
		}
		republished++
	}
	if len(slots) > 0 {
		err = w.retry(ctx, r.req, func() error { return w.store.DeleteBulkPending(ctx, slots) })
		if err != nil {
			return fmt.Errorf("delete pending slots: %w", err)
		}
		r.log.Info("published the results of an earlier run's pending contacts again",
			zap.Int("pending", len(ids)), zap.Int("republished", republished), zap.Int("slots", len(slots)))
	}
	return nil
}

func (r *bulkRun) setLease(until time.Time) {
	r.leaseOK.Store(until.Add(-r.w.cfg.BulkLease / 3).UnixNano())
}

// leaseValid reports whether the run may still write contacts.
func (r *bulkRun) leaseValid() bool {
	return r.w.cfg.Now().UnixNano() < r.leaseOK.Load()
}

// renew extends the lease and records progress every second, and keeps the
// bulk message in progress, until ctx ends. Losing the lease cancels the
// run.
func (r *bulkRun) renew(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.w.quit:
			cancel(errBulkStopping)
			return
		case <-tick.C:
		}
		_ = r.req.Msg.InProgress()
		err := r.save(ctx, func(rec *store.BulkRecord) {
			rec.LeaseUntil = r.w.cfg.Now().Add(r.w.cfg.BulkLease).UTC()
		})
		if errors.Is(err, store.ErrBulkConflict) {
			cancel(fmt.Errorf("%w: %w", errBulkLeaseLost, err))
			return
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("renewing the bulk lease failed; retrying", zap.Error(err))
		}
	}
}

// save writes the record with the current progress, after change, by
// compare-and-set on the run's revision.
func (r *bulkRun) save(ctx context.Context, change func(*store.BulkRecord)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	rec.Matched, rec.Done = int(r.matched.Load()), int(r.done.Load())
	rec.Stopped, rec.Failed = int(r.stopped.Load()), int(r.failed.Load())
	rec.ReasonCodes = make(map[string]int, len(r.reasons))
	for k, v := range r.reasons {
		rec.ReasonCodes[string(k)] = v
	}
	change(&rec)
	saved, err := r.w.store.PutBulk(ctx, rec)
	if err != nil {
		return err
	}
	r.rec = saved
	r.setLease(saved.LeaseUntil)
	return nil
}

// release gives the lease up early, so that the next delivery can resume
// the request at once. Failure only delays that until the lease lapses.
func (r *bulkRun) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.save(ctx, func(rec *store.BulkRecord) { rec.LeaseUntil = time.Time{} })
}

// bulkItem is one contact to stop; replay marks a contact an earlier run of
// this bulk request already ended, republish one of those whose result may
// not be stored.
type bulkItem struct {
	contact   store.Contact
	replay    bool
	republish bool
}

// walk enumerates the instance's contacts and stops the matching ones in
// batches of BatchSize, BulkWorkers contacts at a time. It returns the
// first error of any contact, having stopped the rest.
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
	dispatched := func(contactID string) bool {
		_, ok := r.mine[maphash.String(r.seed, contactID)]
		return ok
	}
	err := w.store.WalkContacts(ctx, r.spec.instanceID, dispatched, func(c store.Contact) error {
		var it bulkItem
		h := maphash.String(r.seed, c.ContactID)
		switch {
		case c.State == store.StateEnded:
			if c.EndedBy != events.BulkItemRequestID(r.spec.bulkID, c.ContactID) {
				return nil // ended by another request
			}
			// By an earlier or concurrent run of this bulk.
			it = bulkItem{contact: c, replay: true,
				republish: r.republishAll || c.Revision > r.boundary || r.recheck[c.ContactID]}
		case r.spec.matches(c):
			it = bulkItem{contact: c}
		default:
			return nil
		}
		r.mine[h] = struct{}{}
		n := r.matched.Add(1)
		if w.hooks.bulkItem != nil && w.hooks.bulkItem(r.spec.bulkID, int(n)) {
			return errBulkAbandoned
		}
		if batch = append(batch, it); len(batch) == size {
			return send()
		}
		return nil
	})
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

// itemRequest is the per-contact request of a bulk run for contact c.
func (r *bulkRun) itemRequest(c store.Contact) *Request {
	return &Request{
		Identity: events.BulkItemRequestID(r.spec.bulkID, c.ContactID),
		Stop: events.StopRequest{ContactID: c.ContactID, InstanceID: c.InstanceID,
			DisconnectReason: r.spec.disconnectReason},
		Instance:   c.InstanceID,
		Headers:    r.req.Headers,
		Deliveries: r.req.Deliveries,
		StreamSeq:  r.req.StreamSeq,
	}
}

// stopBatch stops a batch of contacts: it records them in its pending
// slot, then sends their compare-and-set writes at the revisions the walk
// read, then their results, each group published without waiting in
// between, and empties the slot. A contact whose write or result fails
// takes stopOne, with its retries.
func (r *bulkRun) stopBatch(ctx context.Context, slot int, batch []bulkItem) error {
	w := r.w
	if !r.leaseValid() {
		return errBulkLeaseLost
	}
	var pending []string
	for _, it := range batch {
		if !it.replay || it.republish {
			pending = append(pending, it.contact.ContactID)
		}
	}
	if len(pending) > 0 {
		err := w.retry(ctx, r.req, func() error {
			return w.store.PutBulkPending(ctx, r.spec.instanceID, r.spec.bulkID, r.run, slot, pending)
		})
		if err != nil {
			return fmt.Errorf("record pending contacts: %w", err)
		}
		if !r.leaseValid() {
			return errBulkLeaseLost
		}
	}
	reqs := make([]*Request, len(batch))
	results := make([]events.Result, len(batch))
	decided := make([]bool, len(batch))
	var ends []store.EndContactParams
	var endOf []int
	for i, it := range batch {
		reqs[i] = r.itemRequest(it.contact)
		if it.replay {
			results[i], decided[i] = stoppedResult(reqs[i], it.contact), true
			continue
		}
		ends = append(ends, w.endParams(reqs[i], &batch[i].contact))
		endOf = append(endOf, i)
	}
	if len(ends) > 0 {
		for k, o := range w.store.EndContacts(ctx, ends) {
			i := endOf[k]
			if res, err := endResult(reqs[i], o.Result, o.Err); err == nil {
				results[i], decided[i] = res, true
			}
		}
	}

	if w.hooks.bulkBeforeResults != nil && w.hooks.bulkBeforeResults(r.spec.bulkID) {
		return errBulkAbandoned
	}

	var slow errs
	var msgs []*nats.Msg
	var msgOf []int
	for i, it := range batch {
		switch {
		case it.replay && !it.republish:
			r.count(results[i]) // its result is stored
		case !decided[i]:
			slow.Go(func() error { return r.stopOne(ctx, batch[i]) })
		default:
			msgs, msgOf = append(msgs, w.resultMsg(reqs[i], results[i])), append(msgOf, i)
		}
	}
	for k, ack := range w.pub.Publish(ctx, msgs, w.cfg.RetryMaxElapsed) {
		i := msgOf[k]
		if ack.Err != nil {
			slow.Go(func() error {
				if _, err := w.publishResult(ctx, reqs[i], results[i]); err != nil {
					return fmt.Errorf("result of contact %q: %w", batch[i].contact.ContactID, err)
				}
				r.count(results[i])
				return nil
			})
			continue
		}
		r.count(results[i])
	}
	if err := slow.Wait(); err != nil {
		return err
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

// errs runs functions in goroutines and keeps the first error.
type errs struct {
	wg    sync.WaitGroup
	once  sync.Once
	first error
}

func (e *errs) Go(fn func() error) {
	e.wg.Go(func() {
		if err := fn(); err != nil {
			e.once.Do(func() { e.first = err })
		}
	})
}

// Wait waits for every function and returns the first error.
func (e *errs) Wait() error {
	e.wg.Wait()
	return e.first
}

// count counts a contact whose result is stored.
func (r *bulkRun) count(res events.Result) {
	r.done.Add(1)
	r.w.cfg.Metrics.bulkItem(res)
	if res.Stopped != nil {
		r.stopped.Add(1)
		return
	}
	r.failed.Add(1)
	r.mu.Lock()
	r.reasons[res.Failed.ReasonCode]++
	r.mu.Unlock()
}

// stopOne stops one contact through the per-contact path and publishes its
// result.
func (r *bulkRun) stopOne(ctx context.Context, it bulkItem) error {
	w := r.w
	c := it.contact
	req := r.itemRequest(c)
	var res events.Result
	if it.replay {
		res = stoppedResult(req, c)
	} else {
		if !r.leaseValid() {
			return errBulkLeaseLost
		}
		var err error
		res, err = w.endContact(ctx, req, &c)
		if err != nil {
			if !r.final || ctx.Err() != nil {
				return fmt.Errorf("contact %q: %w", c.ContactID, err)
			}
			// The last delivery answers for the contact, but only while it
			// still holds the lease (a paused run's retries run out while
			// it sleeps), and not if the contact was ended by this very
			// request after all (a write whose outcome was unknown).
			if !r.leaseValid() {
				return errBulkLeaseLost
			}
			if replay, ok := w.replayed(ctx, req); ok {
				res = replay
			} else {
				res = req.failure(events.ReasonInternalError, "transient failures outlived every retry: "+err.Error())
			}
		}
	}
	if _, err := w.publishResult(ctx, req, res); err != nil {
		return fmt.Errorf("result of contact %q: %w", c.ContactID, err)
	}
	r.count(res)
	return nil
}

// complete publishes the completion event once every matched contact has
// its result, then marks the record COMPLETED.
func (r *bulkRun) complete(ctx context.Context) error {
	w := r.w
	// Make sure the lease is still ours before speaking for the bulk.
	err := w.retry(ctx, r.req, func() error {
		err := r.save(ctx, func(rec *store.BulkRecord) {
			rec.Walking = false
			rec.LeaseUntil = w.cfg.Now().Add(w.cfg.BulkLease).UTC()
		})
		if errors.Is(err, store.ErrBulkConflict) {
			return permanent(fmt.Errorf("%w: %w", errBulkLeaseLost, err))
		}
		return err
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	done := events.BulkCompleted{
		BulkID: r.spec.bulkID, InstanceID: r.spec.instanceID,
		Matched: int(r.matched.Load()), Stopped: int(r.stopped.Load()), Failed: int(r.failed.Load()),
		ReasonCodes: make(map[events.ReasonCode]int, len(r.reasons)),
		StartedAt:   r.rec.StartedAt, CompletedAt: w.cfg.Now().UTC(),
	}
	for k, v := range r.reasons {
		done.ReasonCodes[k] = v
	}
	r.mu.Unlock()
	if n := done.ReasonCodes[events.ReasonInternalError]; n > 0 {
		if err := r.deadLetter(ctx, n); err != nil {
			return err
		}
	}
	data, err := json.Marshal(done)
	if err != nil {
		return fmt.Errorf("encode completion: %w", err)
	}
	msg := &nats.Msg{Subject: events.BulkCompletedSubject(r.spec.instanceID), Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, events.BulkCompletedMsgID(r.spec.instanceID, r.spec.bulkID))
	for _, h := range []string{events.HeaderTraceparent, events.HeaderCorrelationID} {
		if v := r.req.Headers.Get(h); v != "" {
			msg.Header.Set(h, v)
		}
	}
	err = w.retry(ctx, r.req, func() error {
		_, err := w.js.PublishMsg(ctx, msg)
		return err
	})
	if err != nil {
		return fmt.Errorf("publish completion: %w", err)
	}
	err = w.retry(ctx, r.req, func() error {
		err := r.save(ctx, func(rec *store.BulkRecord) {
			rec.Status, rec.Owner, rec.LeaseUntil, rec.CompletedAt = store.BulkCompleted, "", time.Time{}, done.CompletedAt
		})
		if errors.Is(err, store.ErrBulkConflict) {
			return permanent(err)
		}
		return err
	})
	if err != nil {
		// The completion event is stored; a later run publishes it again
		// (a duplicate) and marks the record.
		return fmt.Errorf("mark bulk completed: %w", err)
	}
	// The slots are empty now (this run's) or were deleted when it began.
	_, slots, err := w.store.BulkPending(ctx, r.spec.instanceID, r.spec.bulkID)
	if err == nil {
		err = w.store.DeleteBulkPending(ctx, slots)
	}
	if err != nil {
		r.log.Warn("deleting the bulk request's pending slots failed; they are left in the bulks bucket", zap.Error(err))
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range done.ReasonCodes {
			if !yield(string(k)) {
				return
			}
		}
	})
	r.log.Info("bulk request completed", zap.Int("matched", done.Matched), zap.Int("stopped", done.Stopped),
		zap.Int("failed", done.Failed), zap.Strings("reason_codes", keys), zap.Int("run", r.rec.Run))
	return nil
}

// deadLetter copies the bulk request to the dead-letter stream when some of
// its contacts ended as INTERNAL_ERROR.
func (r *bulkRun) deadLetter(ctx context.Context, n int) error {
	dl := deadLetterMsg(r.req, fmt.Errorf("%d contacts ended as INTERNAL_ERROR", n))
	return r.w.retry(ctx, r.req, func() error {
		_, err := r.w.js.PublishMsg(ctx, dl)
		return err
	})
}
