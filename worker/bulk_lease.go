package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// acquire takes the bulk request's lease, as a new run, after the
// instance's bulk lock (emergencies excepted).
func (r *bulkRun) acquire(ctx context.Context) error {
	w := r.w
	var rec store.BulkRecord
	err := w.retry(ctx, r.log, func() (err error) {
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
	// A cancelled bulk request starts no contact: it need not wait for the
	// instance's turn, but takes the lock if it is free (or its own), so
	// that it lets it go at completion.
	cancelled := rec.CancelRequested
	if !r.spec.emergency {
		err := r.lockInstance(ctx)
		switch {
		case cancelled && errors.Is(err, errInstanceBusy):
		case errors.Is(err, errInstanceBusy) && rec.Revision == 0:
			// Waiting for its turn: a WAITING record lets it be listed and
			// cancelled meanwhile. Another delivery's write is as good.
			_, _ = w.store.PutBulk(ctx, store.BulkRecord{BulkID: r.spec.bulkID, InstanceID: r.spec.instanceID,
				Status: store.BulkWaiting})
			return err
		case err != nil:
			return err
		}
	}
	if rec.StartedAt.IsZero() {
		rec.StartedAt = now.UTC()
	}
	r.republishAll = rec.Run >= 1 && !rec.PendingSlots
	r.final = rec.Attempts+1 >= w.cfg.MaxAttempts
	rec.PendingSlots = true
	if rec.Status != store.BulkCompleting {
		rec.Status, rec.Walking = store.BulkRunning, true
		rec.Matched, rec.Done, rec.Stopped, rec.Failed, rec.Skipped, rec.Unreadable, rec.ReasonCodes = 0, 0, 0, 0, 0, 0, nil
	}
	rec.Owner, rec.Run = w.id+"/"+nuid.Next(), rec.Run+1
	rec.LeaseUntil = now.Add(w.cfg.BulkLease).UTC()
	rec, err = w.store.PutBulk(ctx, rec)
	if err != nil {
		// Another runner of this bulk request got there first: it shares
		// the instance's lock, which is left as it is.
		if errors.Is(err, store.ErrBulkConflict) {
			return fmt.Errorf("%w: %w", errBulkBusy, err)
		}
		_ = r.renewLock(ctx, time.Time{})
		return fmt.Errorf("take bulk lease: %w", err)
	}
	r.rec, r.run = rec, rec.Run
	r.setLease(rec.LeaseUntil)
	if cancelled {
		r.cancelled.Store(true)
	}
	return nil
}

// lockInstance takes the instance's bulk lock for this bulk request, or
// returns an error wrapping errInstanceBusy when another bulk request of
// the instance holds it. Runs of the same bulk request share it.
func (r *bulkRun) lockInstance(ctx context.Context) error {
	w := r.w
	for range 3 {
		l, err := w.store.GetInstanceLock(ctx, r.spec.instanceID)
		if err != nil {
			return fmt.Errorf("read the instance's bulk lock: %w", err)
		}
		now := w.cfg.Now()
		if l.BulkID != "" && l.BulkID != r.spec.bulkID && now.Before(l.LeaseUntil) {
			return fmt.Errorf("%w: bulk request %q of instance %s runs (until %s)", errInstanceBusy, l.BulkID, l.InstanceID,
				l.LeaseUntil.Format(time.RFC3339))
		}
		l.BulkID, l.LeaseUntil = r.spec.bulkID, now.Add(w.cfg.BulkLease)
		l, err = w.store.PutInstanceLock(ctx, l)
		switch {
		case errors.Is(err, store.ErrBulkConflict):
			continue
		case err != nil:
			return fmt.Errorf("take the instance's bulk lock: %w", err)
		}
		r.mu.Lock()
		r.lock, r.locked = l, true
		r.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%w: its bulk lock kept changing", errInstanceBusy)
}

// renewLock extends the instance's bulk lock with the lease, or, with
// until zero, lets it go; an error wraps errBulkLeaseLost when another bulk
// request took it.
func (r *bulkRun) renewLock(ctx context.Context, until time.Time) error {
	r.mu.Lock()
	l, locked := r.lock, r.locked
	r.mu.Unlock()
	if !locked {
		return nil
	}
	for range 3 {
		l.LeaseUntil = until
		next, err := r.w.store.PutInstanceLock(ctx, l)
		if err == nil {
			r.mu.Lock()
			r.lock = next
			r.mu.Unlock()
			return nil
		}
		if !errors.Is(err, store.ErrBulkConflict) {
			return err
		}
		// Another run of this bulk request (a paused one, late) renewed
		// it, or another bulk request took it after it lapsed.
		cur, err := r.w.store.GetInstanceLock(ctx, r.spec.instanceID)
		if err != nil {
			return err
		}
		if cur.BulkID != r.spec.bulkID {
			return fmt.Errorf("%w: bulk request %q of the instance took its lock", errBulkLeaseLost, cur.BulkID)
		}
		l = cur
	}
	return fmt.Errorf("%w: the instance's bulk lock kept changing", errBulkLeaseLost)
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
		_ = r.b.msg.InProgress()
		until := r.w.cfg.Now().Add(r.w.cfg.BulkLease).UTC()
		if err := r.renewLock(ctx, until); errors.Is(err, errBulkLeaseLost) {
			cancel(err)
			return
		}
		err := r.save(ctx, func(rec *store.BulkRecord) {
			rec.LeaseUntil = until
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
	c := r.counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	if rec.Status == store.BulkRunning {
		rec.Matched, rec.Done = int(r.matched.Load()), int(r.done.Load())
		rec.Stopped, rec.Failed, rec.Skipped, rec.Unreadable = c.Stopped, c.Failed, c.Skipped, c.Unreadable
		rec.ReasonCodes = make(map[string]int, len(c.ReasonCodes))
		for k, v := range c.ReasonCodes {
			rec.ReasonCodes[string(k)] = v
		}
	}
	base := rec
	change(&rec)
	saved, err := r.w.store.PutBulk(ctx, rec)
	if errors.Is(err, store.ErrBulkConflict) {
		// A cancel (CancelBulk) is the one write to the record that is not
		// the run's: take it in and write again.
		cur, gerr := r.w.store.GetBulk(ctx, base.InstanceID, base.BulkID)
		if gerr != nil || !cur.CancelRequested || base.CancelRequested || cur.Owner != base.Owner ||
			cur.Run != base.Run || cur.Status != base.Status {
			return err
		}
		r.cancelled.Store(true)
		r.rec.CancelRequested, r.rec.CancelRequestedAt, r.rec.Revision = true, cur.CancelRequestedAt, cur.Revision
		rec = base
		rec.CancelRequested, rec.CancelRequestedAt, rec.Revision = true, cur.CancelRequestedAt, cur.Revision
		change(&rec)
		saved, err = r.w.store.PutBulk(ctx, rec)
	}
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
	_ = r.renewLock(ctx, time.Time{})
}

// countAttempt counts a run that ended on transient errors in the bulk's
// record, if the record can still be written, and returns the attempts
// counted.
func (r *bulkRun) countAttempt() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := r.rec.Attempts + 1
	if err := r.save(ctx, func(rec *store.BulkRecord) { rec.Attempts, rec.LeaseUntil = n, time.Time{} }); err != nil {
		r.log.Warn("the failed bulk run could not be counted", zap.Error(err))
		return r.rec.Attempts
	}
	return n
}

// completionStored reports whether the results stream holds the completion
// event of this bulk request, looking from a little before it was recorded.
func (w *Worker) completionStored(ctx context.Context, done events.BulkCompleted) (bool, error) {
	start := done.CompletedAt.Add(-time.Minute)
	cons, err := w.js.OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.BulkCompletedSubject(done.InstanceID)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
	})
	if err != nil {
		return false, err
	}
	defer w.deleteOrdered(ctx, cons)
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return false, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var c events.BulkCompleted
			if json.Unmarshal(m.Data(), &c) == nil && c.BulkID == done.BulkID {
				return true, nil
			}
		}
		if err := batch.Error(); err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
	}
}

// resultsStored returns which of msgIDs (results' Nats-Msg-Id) the results
// stream holds among the instance's results stored since since. It reads
// headers only, and stops once it has read up to the stream's end or found
// them all.
func (w *Worker) resultsStored(ctx context.Context, instanceID string, since time.Time, msgIDs map[string]bool) (map[string]bool, error) {
	found := make(map[string]bool, len(msgIDs))
	cons, err := w.js.OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.StoppedSubject(instanceID), events.StopFailedSubject(instanceID)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		HeadersOnly: true,
	})
	if err != nil {
		return nil, err
	}
	defer w.deleteOrdered(ctx, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.NumPending == 0 {
		return found, nil
	}
	for empty := 0; empty < 3; {
		batch, err := cons.Fetch(1024, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if id := m.Headers().Get(events.HeaderMsgID); msgIDs[id] {
				found[id] = true
			}
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if meta.NumPending == 0 || len(found) == len(msgIDs) {
				return found, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if n == 0 {
			empty++
		}
	}
	return nil, errors.New("the results stream delivered nothing while results were pending")
}

// deleteOrdered deletes an ordered consumer of the results stream once it
// has served, rather than leaving it to lapse after five minutes.
func (w *Worker) deleteOrdered(ctx context.Context, cons jetstream.Consumer) {
	if info := cons.CachedInfo(); info != nil && info.Name != "" {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = w.js.DeleteConsumer(dctx, events.StreamResults, info.Name)
	}
}
