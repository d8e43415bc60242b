package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// The decision pipeline. Every request to end one contact — a single stop
// request, or a contact of a bulk request — is an item, and every item goes
// through the same steps, however many are taken together:
//
//  1. read: the contact and the request's outcome record, in one read for
//     the batch (a bulk's contacts come with the record its walk read);
//  2. decide (decide, below): what the request did before stands (the
//     contact ENDED by it, or its recorded failure); then a refusal known
//     without the store (invalid, unauthorized, unknown instance); then
//     the contact: absent, ENDED by another, unreadable, or — for a bulk —
//     no longer matching its filter; else end it;
//  3. commit: end the contacts by compare-and-set at the revision read
//     (Ender), record the failures conditioned on their outcome keys and
//     fenced against a concurrent stop (store.RecordFailures); a write
//     that meets a newer revision sends its item back to 1 with a
//     consistent read.
//
// The outcome is then settled by the caller: for a single request,
// publish its result and acknowledge it (settle.go); for a bulk's contact,
// publish its result and count it (bulk_run.go).

// maxDecideRounds bounds how often one item is read and decided again
// because other writers keep changing its contact or outcome key.
const maxDecideRounds = 16

// Ender ends contacts where they live: in contactstop's store, or (for an
// instance bound to one) on a contact-center platform. Each contact is
// ended only from the record it was read at, for the request named, and
// EndContacts reports per contact what happened (store.EndOutcome):
// ended, changed since it was read (store.ErrRevisionConflict: the
// pipeline reads and decides again), or a transient error after which
// ending it again at the same revision is safe.
type Ender interface {
	EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome
}

// decisionStore is what the pipeline reads and records in the store.
type decisionStore interface {
	Views(ctx context.Context, p store.ViewParams) ([]store.View, error)
	RecordFailures(ctx context.Context, ps []store.RecordFailureParams) []store.RecordFailureResult
	// WriteContact writes a record by compare-and-set (the platform
	// path's intents and outcomes).
	WriteContact(ctx context.Context, c store.Contact, rev uint64) (store.Contact, error)
}

// item is one request to end one contact.
type item struct {
	key store.RequestKey
	// seq is the requests-stream sequence of the message carrying the
	// request; 0 for a contact of a bulk request.
	seq uint64
	// reason is the disconnectReason to record.
	reason string
	// echoInstance is the instanceId a failure result echoes: the
	// request's, as received.
	echoInstance string
	// refusal, when set, fails the request unless it was decided before:
	// invalid, unauthorized, unknown instance, or attempts exhausted.
	refusal *refusal
	// filter, for a bulk's contact, must still match when it is ended.
	filter *events.Matcher
	// deadline, when set, is when the item's delivery (or bulk lease) ends:
	// nothing is written for it after that.
	deadline time.Time
	// onlyDecided: yield what was decided before, decide nothing new (a
	// takeover recovering an earlier run's pending contacts).
	onlyDecided bool
	// bound, when set, is the platform the contact's instance is bound
	// to: the contact is ended there (platform.go).
	bound *Bound
	// keepAlive, for a single request's item, tells the server its
	// delivery is still being worked on and moves deadline on; false when
	// that failed. A platform's budget can keep an item waiting longer
	// than a delivery lasts.
	keepAlive func() bool

	// view is the store's record of the request: read by the pipeline, or
	// given (the record a bulk's walk read).
	view *store.View
	out  outcome
}

func (it *item) bulk() bool { return it.key.BulkID != "" }

// refusal is a failure decided without the contact.
type refusal struct {
	code events.ReasonCode
	msg  string
	// dependsOnContact: the refusal is about the contact (CONTACT_NOT_FOUND
	// from the platform), recorded as decide's own would be.
	dependsOnContact bool
	// skip: a bulk's contact the platform no longer has is skipped.
	skip bool
	// fromPlatform: the platform's answer about the record read then
	// (platform.go's refuse).
	fromPlatform bool
}

type outcomeKind uint8

const (
	undecided outcomeKind = iota
	// stopped: the contact is ENDED by this request (now, or before).
	stopped
	// failed: the request failed (now, or before).
	failed
	// skipped: a bulk's contact that no longer matches, or is gone.
	skipped
	// unreadable: a bulk's contact whose record cannot be read.
	unreadable
	// transient: nothing decided; err says why. Retry.
	transient
	// expired: the delivery's deadline (or the bulk's lease) passed before
	// anything was written: hand it back.
	expired
)

// outcome is what became of an item.
type outcome struct {
	kind outcomeKind
	// contact is the ENDED record (stopped).
	contact *store.Contact
	// failure is the recorded failure (failed).
	failure *store.Outcome
	// fresh: decided by this pass, not found decided before.
	fresh bool
	// publish: this message (or bulk run) publishes the result: it decided
	// it, or it is the message that did and may have died before its
	// result was stored. A later message of an answered request publishes
	// nothing: its result is stored already.
	publish bool
	err     error
}

// pipeline decides items and carries the decisions out.
type pipeline struct {
	store decisionStore
	ender Ender
	now   func() time.Time
	log   *zap.Logger
}

// run takes items through read, decide and commit until each has an
// outcome. Items without a view are read first. It never fails as a whole:
// an item that could not be decided is left transient, with the error.
func (p *pipeline) run(ctx context.Context, items []*item) {
	var unread []*item
	for _, it := range items {
		it.out = outcome{}
		if it.view == nil {
			unread = append(unread, it)
		}
	}
	p.read(ctx, unread, false)
	pending := items
	for round := 0; len(pending) > 0; round++ {
		if round == maxDecideRounds {
			for _, it := range pending {
				it.out = outcome{kind: transient, err: fmt.Errorf("still conflicting after %d reads: %w", round, store.ErrRevisionConflict)}
			}
			return
		}
		pending = p.commit(ctx, pending)
		// Another writer got there first: read again, from the leader,
		// and decide again.
		p.read(ctx, pending, true)
	}
}

// read reads the items' views; on failure they become transient.
func (p *pipeline) read(ctx context.Context, items []*item, consistent bool) {
	if len(items) == 0 {
		return
	}
	keys := make([]store.RequestKey, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	views, err := p.store.Views(ctx, store.ViewParams{Keys: keys, Consistent: consistent})
	for i, it := range items {
		if err != nil {
			it.view, it.out = nil, outcome{kind: transient, err: err}
			continue
		}
		it.view = &views[i]
	}
}

// commit decides every item that has a view and carries the decisions
// out; it returns the items to read and decide again.
func (p *pipeline) commit(ctx context.Context, items []*item) (again []*item) {
	now := p.now()
	// Sized for the common batch, where every item is ended: one
	// allocation each, not a growing copy of every contact.
	ends := make([]store.EndContactParams, 0, len(items))
	endOf := make([]*item, 0, len(items))
	var fails []store.RecordFailureParams
	var failOf []*item
	var onPlatform []*item
	for _, it := range items {
		if it.view == nil {
			continue // its read failed: transient
		}
		d := decide(it, it.view, now)
		if d.act == actDone {
			continue
		}
		if !it.deadline.IsZero() && !now.Before(it.deadline) {
			it.out = outcome{kind: expired}
			continue
		}
		switch d.act {
		case actEnd:
			if it.bound != nil {
				onPlatform = append(onPlatform, it)
				continue
			}
			ends = append(ends, store.EndContactParams{Contact: *it.view.Contact, RequestID: it.key.RequestID,
				RequestSeq: it.seq, DisconnectReason: it.reason, At: now})
			endOf = append(endOf, it)
		case actFail:
			d.failure.InstanceID, d.failure.ContactID, d.failure.RequestID = it.echoInstance, it.key.ContactID, it.key.RequestID
			d.failure.Seq, d.failure.FailedAt = it.seq, now
			fallthrough
		case actFence:
			fails = append(fails, store.RecordFailureParams{Key: it.key, Failure: d.failure, Recorded: d.act == actFence,
				OutcomeRev: it.view.OutcomeRev, ContactRev: it.view.ContactRev, DependsOnContact: d.dependsOnContact})
			failOf = append(failOf, it)
		}
	}
	if len(ends) > 0 {
		outs := p.ender.EndContacts(ctx, ends)
		for k := range outs {
			it, o := endOf[k], &outs[k]
			switch {
			case o.Err == nil:
				it.out = outcome{kind: stopped, contact: &o.Contact, fresh: true, publish: true}
			case errors.Is(o.Err, store.ErrRevisionConflict):
				again = append(again, it)
			default:
				it.out = outcome{kind: transient, err: o.Err}
			}
		}
	}
	if len(onPlatform) > 0 {
		res := make([]platformEnd, len(onPlatform))
		done := make([]atomic.Bool, len(onPlatform))
		var wg sync.WaitGroup
		for k, it := range onPlatform {
			wg.Go(func() {
				res[k] = p.endOnPlatform(ctx, it, now)
				done[k].Store(true)
			})
		}
		// The items done first wait for the batch's slowest (the budget
		// paces them): their deliveries are kept alive meanwhile.
		stop := make(chan struct{})
		var keeper sync.WaitGroup
		keeper.Go(func() { keepDoneAlive(onPlatform, done, stop) })
		wg.Wait()
		close(stop)
		keeper.Wait()
		for k, it := range onPlatform {
			switch r := res[k]; {
			case r.contact != nil:
				it.out = outcome{kind: stopped, contact: r.contact, fresh: true, publish: true}
			case r.again:
				again = append(again, it)
			case r.expired:
				it.out = outcome{kind: expired}
			default:
				it.out = outcome{kind: transient, err: r.err}
			}
		}
	}
	if len(fails) > 0 {
		for k, r := range p.store.RecordFailures(ctx, fails) {
			it := failOf[k]
			switch {
			case r.Err == nil && r.Stopped != nil:
				// Another message of this request stopped the contact
				// meanwhile: that is its outcome, and that message
				// publishes it. A bulk's contact has no other message: its
				// own earlier write landed.
				it.out = outcome{kind: stopped, contact: r.Stopped, publish: it.bulk() || r.Stopped.EndedBySeq == it.seq}
			case r.Err == nil:
				o := r.Outcome
				it.out = outcome{kind: failed, failure: &o, fresh: !fails[k].Recorded, publish: true}
			case errors.Is(r.Err, store.ErrRevisionConflict):
				again = append(again, it)
			default:
				it.out = outcome{kind: transient, err: r.Err}
			}
		}
	}
	return again
}

type action uint8

const (
	actDone  action = iota // it.out is set
	actEnd                 // end the contact
	actFail                // record the failure
	actFence               // fence the failure recorded before, then yield it
)

type decision struct {
	act              action
	failure          store.Outcome
	dependsOnContact bool
}

// decide is the one place that decides what a request to end a contact
// comes to, given what the store holds (v). It sets it.out when nothing is
// to be written.
func decide(it *item, v *store.View, now time.Time) decision {
	// What the request did before stands, whatever came since: a contact
	// or instance created later, another token, a changed filter.
	if v.EndedByThis() {
		it.out = outcome{kind: stopped, contact: v.Contact, publish: it.bulk() || publishesRecorded(it.seq, v.Contact.EndedBySeq)}
		return decision{act: actDone}
	}
	if o := v.Outcome; o.Final() {
		switch {
		case it.bulk() || it.seq == o.Seq:
			// Its own failure, recorded by an earlier attempt of this
			// message (or run), which may have died before fencing it:
			// fenced before it is published.
			return decision{act: actFence, failure: *o}
		case !o.Retryable || it.seq < o.Seq:
			// Answered by another message: that answer stands, and that
			// message publishes it. (An earlier message of a request a
			// later one answered INTERNAL_ERROR is answered by it too.)
			it.out = outcome{kind: failed, failure: o}
			return decision{act: actDone}
		}
		// A later message after INTERNAL_ERROR: attempted afresh.
	}
	if r := it.refusal; r != nil && r.fromPlatform && ownIntent(it, v) {
		// The platform answered about an older record. Since then another
		// message of this request recorded its intent, and its stop may be
		// what the platform reported: finish that stop, asking again.
		it.refusal = nil
	}
	if it.onlyDecided && !ownIntent(it, v) {
		it.out = outcome{kind: undecided}
		return decision{act: actDone}
	}
	if r := it.refusal; r != nil {
		if r.skip {
			it.out = outcome{kind: skipped}
			return decision{act: actDone}
		}
		return fail(r.code, r.msg, r.dependsOnContact)
	}
	if it.bound != nil {
		if d, ok := decideBound(it, v, now); ok {
			return d
		}
	}
	c := v.Contact
	switch {
	case v.Bad != nil:
		if it.bulk() {
			it.out = outcome{kind: unreadable, err: v.Bad}
			return decision{act: actDone}
		}
		return fail(events.ReasonInternalError, "the contact's record cannot be read: "+v.Bad.Error(), true)
	case c == nil:
		if it.bulk() {
			it.out = outcome{kind: skipped}
			return decision{act: actDone}
		}
		return fail(events.ReasonContactNotFound, "contact does not exist", true)
	case c.State == store.StateEnded:
		if it.bulk() {
			it.out = outcome{kind: skipped}
			return decision{act: actDone}
		}
		return fail(events.ReasonContactNotFound, "contact is not active: it was already ended by another request", true)
	case it.filter != nil && !it.filter.Match(string(c.State), c.QueueID, string(c.Channel), c.EnqueuedAt):
		// The filter holds at the write: answered by an agent, moved to
		// another queue… since the clear found it.
		it.out = outcome{kind: skipped}
		return decision{act: actDone}
	}
	return decision{act: actEnd}
}

// publishesRecorded reports whether the message with sequence seq
// publishes the result of an outcome recorded by the message with
// sequence by: only a redelivery of that message does (its result may not
// be stored); a later message of an answered request is a resend, whose
// result is stored already. An outcome of unknown origin (0, from a
// version that did not record it) is published again.
func publishesRecorded(seq, by uint64) bool {
	return by == 0 || by == seq
}

func fail(code events.ReasonCode, msg string, dependsOnContact bool) decision {
	return decision{act: actFail, dependsOnContact: dependsOnContact, failure: store.Outcome{
		ReasonCode: string(code), Message: msg, Retryable: code.Retryable() && !dependsOnContact,
	}}
}
