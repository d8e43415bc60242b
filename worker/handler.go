package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// Handler decides the outcome of one request: a result (stopped or a
// permanent failure) or an error, which the worker treats as transient and
// redelivers until Config.MaxDeliveries is reached.
type Handler func(ctx context.Context, req *Request) (events.Result, error)

// Authorizer checks a request's security-user token (see package auth).
// at is when JetStream stored the request, so that a token valid when the
// request was published stays valid through redeliveries and backlogs. The
// error, when not nil, is an *auth.Error carrying the reason code.
type Authorizer interface {
	AuthorizeAt(token string, action auth.Action, resource string, at time.Time) (auth.Claims, error)
}

// authorize returns the failure result for a request whose token does not
// allow action on resource, or nil. Authorization off: always nil.
func (w *Worker) authorize(req *Request, token string, action auth.Action, resource string) *events.Result {
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
	res := req.failure(ae.Code, ae.Reason)
	return &res
}

// Store is the part of the state store the worker uses.
type Store interface {
	InstanceExists(ctx context.Context, instanceID string) (bool, error)
	GetContact(ctx context.Context, instanceID, contactID string) (store.Contact, error)
	EndContact(ctx context.Context, p store.EndContactParams) (store.EndContactResult, error)
	// EndContacts ends a batch of contacts as EndContact would each; the
	// worker's batched path uses it, retrying an error with EndContact.
	EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome

	// For bulk requests.
	WalkContacts(ctx context.Context, instanceID string, skip func(contactID string) bool, fn func(store.Contact) error) error
	GetBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	PutBulk(ctx context.Context, r store.BulkRecord) (store.BulkRecord, error)
	// A bulk run's pending slots: the contacts it may have ended without
	// a stored result (see bulk.go).
	PutBulkPending(ctx context.Context, instanceID, bulkID string, run, slot int, contactIDs []string) error
	ClearBulkPending(instanceID, bulkID string, run, slot int) error
	BulkPending(ctx context.Context, instanceID, bulkID string) (contactIDs, slots []string, err error)
	DeleteBulkPending(ctx context.Context, slots []string) error
	ContactsSequence(ctx context.Context) (uint64, error)
}

// stop is the core handler, the per-request path: the checks of
// precheck, then the contact ended by compare-and-set. Store errors other
// than the sentinels are retried with backoff here and returned, as
// transient, when they persist.
func (w *Worker) stop(ctx context.Context, req *Request) (events.Result, error) {
	if res, decided, err := w.precheck(ctx, req); decided || err != nil {
		return res, err
	}
	return w.endContact(ctx, req, nil)
}

// precheck decides what can be decided without touching the contact: bad
// input, the token, an unknown instance. decided is false when the request
// passed and its contact is to be ended. An error is a persistent failure
// to read the instance, transient.
func (w *Worker) precheck(ctx context.Context, req *Request) (res events.Result, decided bool, err error) {
	if req.Invalid != nil {
		return req.failure(req.Invalid.Code, req.Invalid.Error()), true, nil
	}
	inst := req.Stop.InstanceID
	// Before the instance check, so that a caller without a grant cannot
	// learn which instances exist.
	if res := w.authorize(req, req.Stop.SecurityUser, auth.ActionStop, auth.ContactResource(inst, req.Stop.ContactID)); res != nil {
		return *res, true, nil
	}
	var exists bool
	err = w.retry(ctx, req, func() (err error) {
		exists, err = w.store.InstanceExists(ctx, inst)
		return err
	})
	if err != nil {
		return events.Result{}, false, fmt.Errorf("look up instance: %w", err)
	}
	if !exists {
		return req.failure(events.ReasonResourceNotFound, fmt.Sprintf("instance %q is not known", inst)), true, nil
	}
	return events.Result{}, false, nil
}

// endParams are the store parameters ending req's contact; known, when
// set, is the contact as just read.
func (w *Worker) endParams(req *Request, known *store.Contact) store.EndContactParams {
	return store.EndContactParams{
		InstanceID:       req.Stop.InstanceID,
		ContactID:        req.Stop.ContactID,
		RequestID:        req.Identity,
		DisconnectReason: req.Stop.DisconnectReason,
		At:               w.cfg.Now(),
		Known:            known,
	}
}

// endContact ends the request's contact by compare-and-set and decides the
// result: stopped (also when this request had already ended it), or
// CONTACT_NOT_FOUND. known, when set, is the contact as just read. Store
// errors are retried with backoff, then returned as transient.
func (w *Worker) endContact(ctx context.Context, req *Request, known *store.Contact) (events.Result, error) {
	var res store.EndContactResult
	err := w.retry(ctx, req, func() (err error) {
		res, err = w.store.EndContact(ctx, w.endParams(req, known))
		if errors.Is(err, store.ErrContactNotFound) || errors.Is(err, store.ErrContactNotActive) {
			return permanent(err)
		}
		return err
	})
	return endResult(req, res, err)
}

// endResult turns the store's outcome of ending req's contact into the
// request's result, or a transient error.
func endResult(req *Request, res store.EndContactResult, err error) (events.Result, error) {
	switch {
	case errors.Is(err, store.ErrContactNotFound):
		return req.failure(events.ReasonContactNotFound, "contact does not exist"), nil
	case errors.Is(err, store.ErrContactNotActive):
		return req.failure(events.ReasonContactNotFound, "contact is not active: it was already ended by another request"), nil
	case err != nil:
		return events.Result{}, fmt.Errorf("end contact: %w", err)
	}
	return stoppedResult(req, res.Contact), nil
}

// replayed reports the stopped result when the contact was already ended
// by this very request (by an earlier delivery whose result may not have
// been published), without changing anything.
func (w *Worker) replayed(ctx context.Context, req *Request) (events.Result, bool) {
	if req.Invalid != nil || req.Stop.ContactID == "" { // a bulk request has no contact of its own
		return events.Result{}, false
	}
	var c store.Contact
	err := w.retry(ctx, req, func() (err error) {
		c, err = w.store.GetContact(ctx, req.Stop.InstanceID, req.Stop.ContactID)
		if errors.Is(err, store.ErrContactNotFound) {
			return permanent(err)
		}
		return err
	})
	if err != nil || c.State != store.StateEnded || c.EndedBy != req.Identity {
		return events.Result{}, false
	}
	return stoppedResult(req, c), true
}

func stoppedResult(req *Request, c store.Contact) events.Result {
	return events.Result{Stopped: &events.Stopped{
		RequestID:        req.Identity,
		ContactID:        c.ContactID,
		InstanceID:       c.InstanceID,
		PreviousState:    string(c.PreviousState),
		DisconnectReason: c.DisconnectReason,
		StoppedAt:        c.EndedAt,
	}}
}

// PanicError is a panic recovered while handling a request. It counts as a
// failed delivery: the request is redelivered and, if it keeps panicking,
// ends as INTERNAL_ERROR in the dead-letter stream.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic while handling request: %v", e.Value) }
