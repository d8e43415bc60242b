package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
)

// delivery is one delivery of a single stop request, in hand.
type delivery struct {
	req *Request
	it  item
	log *zap.Logger // made on first use (logger)
	// deadline is when this delivery must be settled: the server
	// redelivers it a quarter of AckWait later. Signalling progress
	// (InProgress) moves it.
	deadline time.Time
	// final: every attempt met transient errors; the request is to be
	// answered INTERNAL_ERROR (unless it was decided after all).
	final bool
	// attemptErr is the last transient error of this delivery.
	attemptErr error
	// dups are redeliveries of the same message that arrived while this
	// one was in hand; they are settled with it.
	dups []jetstream.Msg
	// res is the result it publishes (answer), once built.
	res events.Result
}

// processRequests takes a batch of single-request deliveries to their
// ends.
func (w *Worker) processRequests(ctx context.Context, batch []received) {
	ds := make([]*delivery, 0, len(batch))
	for _, r := range batch {
		req := newRequest(r.msg, r.at)
		d := &delivery{req: req, deadline: r.at.Add(w.cfg.deliveryBudget())}
		if !w.claim(d) {
			continue // a redelivery of a request in hand: settled with it
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return
	}
	defer w.release(ds)
	w.cfg.Metrics.addInFlight(len(ds))
	defer w.cfg.Metrics.addInFlight(-len(ds))
	w.handle(ctx, ds, time.Now())
}

// handle decides and settles deliveries. A panic (a bug, or in a
// dependency) is contained: the deliveries of a batch that panicked are
// handled again one by one, and one that panics on its own has a failed
// attempt, so that a request that always panics ends as INTERNAL_ERROR
// instead of coming back for ever; the worker carries on.
func (w *Worker) handle(ctx context.Context, ds []*delivery, start time.Time) {
	pe := catch(func() {
		w.decideWithRetries(ctx, ds)
		w.settle(ctx, ds, start)
	})
	if pe == nil {
		return
	}
	w.log.Error("panic while handling requests", zap.Int("requests", len(ds)), zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
	if len(ds) > 1 {
		for _, d := range ds {
			w.handle(ctx, []*delivery{d}, start)
		}
		return
	}
	d := ds[0]
	d.attemptErr = pe
	d.it.out = outcome{kind: transient, err: pe}
	if pe := catch(func() { w.settle(ctx, ds, start) }); pe != nil {
		w.logger(d).Error("panic while answering a request that panicked; handed back", zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		w.handBack(d, w.cfg.RedeliveryDelayMax, "")
	}
}

// PanicError is a panic recovered while handling a request. It counts as
// a failed attempt.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic while handling the request: %v", e.Value)
}

// catch runs fn and returns the panic it raised, if any.
func catch(fn func()) (pe *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			pe = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	fn()
	return nil
}

// claim records d as in hand, unless another delivery of its message is:
// then d's message is attached to that one, to be settled with it.
func (w *Worker) claim(d *delivery) bool {
	w.inHandMu.Lock()
	defer w.inHandMu.Unlock()
	if held, ok := w.inHand[d.req.StreamSeq]; ok {
		held.dups = append(held.dups, d.req.Msg)
		return false
	}
	w.inHand[d.req.StreamSeq] = d
	return true
}

func (w *Worker) release(ds []*delivery) {
	w.inHandMu.Lock()
	defer w.inHandMu.Unlock()
	for _, d := range ds {
		if w.inHand[d.req.StreamSeq] == d {
			delete(w.inHand, d.req.StreamSeq)
		}
	}
}

// decideWithRetries decides the deliveries, retrying those that meet
// transient errors with backoff (up to RetryMaxElapsed), and signals their
// progress to the server while it does.
func (w *Worker) decideWithRetries(ctx context.Context, ds []*delivery) {
	b := w.newBackOff()
	todo := ds
	for {
		w.decide(ctx, todo)
		var retry []*delivery
		for _, d := range todo {
			if d.it.out.kind == transient {
				d.attemptErr = d.it.out.err
				retry = append(retry, d)
			}
		}
		if len(retry) == 0 || ctx.Err() != nil {
			return
		}
		next := b.NextBackOff()
		if next == backoff.Stop {
			return
		}
		w.cfg.Metrics.retried(len(retry))
		w.logger(retry[0]).Debug("transient error; retrying", zap.Int("requests", len(retry)), zap.Duration("next", next), zap.Error(retry[0].attemptErr))
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
		// Every delivery of the batch waits for these retries, the ones
		// decided already too (they are settled with the batch): all are
		// kept alive, so that the server hands none to another worker
		// meanwhile.
		for _, d := range ds {
			d.progress(w.cfg.deliveryBudget())
		}
		todo = retry
	}
}

// progress tells the server the delivery is being worked on, which
// restarts its AckWait, and moves the delivery's deadline accordingly.
func (d *delivery) progress(budget time.Duration) {
	if err := d.req.Msg.InProgress(); err == nil {
		d.deadline = time.Now().Add(budget)
	}
}

// decide prepares each delivery's item (the checks that need no contact)
// and runs the pipeline on them, within the earliest of their deadlines.
func (w *Worker) decide(ctx context.Context, ds []*delivery) {
	deadline := ds[0].deadline
	for _, d := range ds[1:] {
		if d.deadline.Before(deadline) {
			deadline = d.deadline
		}
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	items := make([]*item, 0, len(ds))
	bound := false
	for _, d := range ds {
		if w.prepare(pctx, d) {
			items = append(items, &d.it)
			bound = bound || d.it.bound != nil
		}
	}
	if bound {
		// A platform's budget may keep items waiting past the deadline:
		// their deliveries are kept alive (keepAlive), and every write
		// checks each item's own deadline.
		pctx = ctx
	}
	w.pipe.run(pctx, items)
}

// prepare fills d's item from its request: the refusal that needs no
// contact (invalid, unauthorized, unknown instance, attempts exhausted),
// if any. It returns false when the item is decided already (transient:
// the instance could not be read).
func (w *Worker) prepare(ctx context.Context, d *delivery) bool {
	req := d.req
	d.it = item{seq: req.StreamSeq, reason: req.Stop.DisconnectReason,
		echoInstance: req.Stop.InstanceID, deadline: d.deadline}
	it := &d.it
	// The key last: a request refused before its claimed instance is
	// vouched for is answered, and recorded, outside that instance.
	defer func() { it.key = req.key() }()
	if req.Invalid != nil {
		it.refusal = &refusal{code: req.Invalid.Code, msg: req.Invalid.Error()}
		if w.cfg.Authorizer != nil {
			req.disown()
		}
		return true
	}
	// Before the instance check, so that a caller without a grant cannot
	// learn which instances exist; before the last attempt's refusal, so
	// that it too goes to a claimed instance only once vouched for (the
	// token is checked as of the request's publication: every delivery
	// gets the same answer).
	if w.cfg.Authorizer != nil { // off: no resource to name
		if r := w.authorize(req, req.Stop.SecurityUser, auth.ActionStop, auth.ContactResource(req.Stop.InstanceID, req.Stop.ContactID)); r != nil {
			it.refusal = r
			req.disown()
			return true
		}
	}
	if d.final {
		msg := "transient failures outlived every attempt"
		if d.attemptErr != nil {
			msg += ": " + d.attemptErr.Error()
		}
		it.refusal = &refusal{code: events.ReasonInternalError, msg: msg}
		return true
	}
	exists, err := w.store.InstanceExists(ctx, req.Stop.InstanceID)
	switch {
	case err != nil:
		it.out = outcome{kind: transient, err: fmt.Errorf("look up instance: %w", err)}
		return false
	case !exists:
		it.refusal = &refusal{code: events.ReasonResourceNotFound, msg: fmt.Sprintf("instance %q is not known", req.Stop.InstanceID)}
		return true
	}
	if w.cfg.Platforms != nil {
		b, err := w.cfg.Platforms.For(ctx, req.Stop.InstanceID)
		if err != nil {
			it.out = outcome{kind: transient, err: fmt.Errorf("look up the instance's platform: %w", err)}
			return false
		}
		it.bound = b
		if b != nil {
			it.keepAlive = func() bool {
				if d.req.Msg.InProgress() != nil {
					return false
				}
				d.deadline = time.Now().Add(w.cfg.deliveryBudget())
				it.deadline = d.deadline
				return true
			}
		}
	}
	return true
}

// Authorizer checks a request's security-user token (see package auth).
// at is when JetStream stored the request, so that a token valid when the
// request was published stays valid through redeliveries and backlogs. The
// error, when not nil, is an *auth.Error carrying the reason code.
type Authorizer interface {
	AuthorizeAt(token string, action auth.Action, resource string, at time.Time) (auth.Claims, error)
}

// authorize returns the refusal of a request whose token does not allow
// action on resource, or nil. Authorization off: always nil.
func (w *Worker) authorize(req *Request, token string, action auth.Action, resource string) *refusal {
	if w.cfg.Authorizer == nil {
		return nil
	}
	_, err := w.cfg.Authorizer.AuthorizeAt(token, action, resource, req.Published)
	if err == nil {
		return nil
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		ae = &auth.Error{Code: events.ReasonInvalidSecurityUser, Reason: err.Error()}
	}
	return &refusal{code: ae.Code, msg: ae.Reason}
}

// logger is the delivery's logger, with the request's fields.
func (w *Worker) logger(d *delivery) *zap.Logger {
	if d.log == nil {
		d.log = w.log.With(requestFields(d.req)...)
	}
	return d.log
}

func requestFields(req *Request) []zap.Field {
	return []zap.Field{
		zap.String("request_id", req.Identity),
		zap.String("contact_id", req.Stop.ContactID),
		zap.String("instance_id", req.Stop.InstanceID),
		zap.Uint64("stream_seq", req.StreamSeq),
		zap.Uint64("deliveries", req.Deliveries),
	}
}
