package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// The platform path: how the pipeline ends a contact of an instance bound
// to a contact-center platform (store.Binding). The store is then the
// ledger and the inventory; the effect is outside it, so it is recorded as
// an intent before and an outcome after (docs/design.md, "Platforms"):
//
//  1. intent: the contact's record gets this request's stop intent by
//     compare-and-set at the revision decided on (created from the
//     platform's description when the store has not seen the contact). A
//     record holding another request's intent is not stopped by this one
//     (it waits), so no contact gets two successful stops from two
//     requests.
//  2. call: StopContact, within the binding's budget (single requests
//     before bulk work); a throttling answer slows every replica down and
//     the call waits for the budget again.
//  3. outcome: the ENDED record, by compare-and-set; the result is
//     published after it (settle.go, bulk_run.go).
//
// A message that finds its own request's intent (its worker died, a call
// timed out, its outcome could not be written) asks the platform first
// (DescribeContact): disconnected after the intent → stopped by this
// request; disconnected before → CONTACT_NOT_FOUND; still active → stop
// it; unknown to the platform → stopped (this request may have ended it).

// Budget paces the calls of one kind to a platform, shared by every
// replica bound to the same quota key (platform/budget).
type Budget interface {
	// Wait blocks until a call may be made; single requests go before
	// bulk work.
	Wait(ctx context.Context, single bool) error
	// Throttled tells every replica that the platform refused a call for
	// its rate limit.
	Throttled(retryAfter time.Duration)
}

// Bound is an instance's binding to a platform, ready to use.
type Bound struct {
	// Name is the platform's name (store.PlatformAmazonConnect).
	Name     string
	Platform platform.Platform
	// Stops paces StopContact; Describes paces DescribeContact.
	Stops, Describes Budget
}

// Platforms resolves instances to their platform bindings.
type Platforms interface {
	// For returns the binding of instanceID, or nil when it is not bound
	// (its contacts live and end in the store). An error is transient.
	For(ctx context.Context, instanceID string) (*Bound, error)
}

// staleIntent is how old another request's intent must be before a
// request may take the contact over: its request is then taken to be
// gone (its messages expired or deleted). The takeover asks the platform
// before it calls, as a redelivery does.
const staleIntent = 2 * time.Minute

// intentSkew is how much earlier than an intent a disconnection the
// platform reports may be and still count as that intent's doing: the
// platform's clock and contactstop's are not the same clock.
const intentSkew = time.Second

// decideBound is decide's part for a contact of a bound instance, after
// what the request did before and its refusals: the store may not have
// seen the contact (the platform knows its own), and a record may carry a
// stop in progress. ok is false when the generic rules apply.
func decideBound(it *item, v *store.View, now time.Time) (d decision, ok bool) {
	c := v.Contact
	switch {
	case v.Bad != nil:
		return decision{}, false
	case c == nil:
		if it.bulk() {
			// A clear selects from the inventory: nothing to select.
			return decision{}, false
		}
		return decision{act: actEnd}, true
	case c.Intent == nil:
		return decision{}, false
	case c.Intent.RequestID == it.key.RequestID:
		// Its own stop, in progress or done on the platform: finish it.
		return decision{act: actEnd}, true
	case c.State == store.StateEnded:
		return decision{}, false
	case now.Sub(c.Intent.At) >= staleIntent:
		return decision{act: actEnd}, true
	case it.bulk():
		// A single request is stopping it.
		it.out = outcome{kind: skipped}
		return decision{act: actDone}, true
	}
	it.out = outcome{kind: transient, err: fmt.Errorf("contact is being stopped on the platform by request %q", c.Intent.RequestID)}
	return decision{act: actDone}, true
}

// ownIntent reports whether the item's contact carries the item's own
// request's stop intent on a bound instance: a run taking over a bulk
// finishes such contacts of the dead run's pending slots at once (asking
// the platform), rather than leaving them, and the single requests behind
// them, waiting for its walk.
func ownIntent(it *item, v *store.View) bool {
	c := v.Contact
	return it.bound != nil && c != nil && c.Intent != nil && c.Intent.RequestID == it.key.RequestID
}

// callTimeBudget is the time a platform call may take (the adapters'
// default call timeout): a single's delivery is kept alive before a call
// that could outlast it.
const callTimeBudget = 10 * time.Second

// keepAliveMargin is how long before an item's deadline a wait for the
// platform's budget stops to keep the delivery alive.
const keepAliveMargin = time.Second

// errItemExpired: the item's deadline passed while it waited, and its
// delivery could not be kept alive.
var errItemExpired = errors.New("the delivery's deadline passed while waiting for the platform's budget")

// wait waits for a grant of bg for the item. A single request's delivery
// is kept alive meanwhile (its deadline moves on), so that a long wait
// behind the budget does not let the server hand the request to another
// worker; a bulk's contact waits within its run's lease.
func (p *pipeline) wait(ctx context.Context, it *item, bg Budget) error {
	for {
		if it.keepAlive == nil || it.deadline.IsZero() {
			return bg.Wait(ctx, !it.bulk())
		}
		wctx, cancel := context.WithDeadline(ctx, it.deadline.Add(-keepAliveMargin))
		err := bg.Wait(wctx, !it.bulk())
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !it.keepAlive() {
			return errItemExpired
		}
	}
}

// keepDoneAlive keeps the deliveries of the items marked done alive until
// stop: they are settled with their batch, once its last item is done.
func keepDoneAlive(items []*item, done []atomic.Bool, stop <-chan struct{}) {
	t := time.NewTicker(keepAliveMargin / 4)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for k, it := range items {
			if done[k].Load() && it.keepAlive != nil && time.Until(it.deadline) < keepAliveMargin {
				it.keepAlive()
			}
		}
	}
}

// platformEnd is what became of one item on the platform path.
type platformEnd struct {
	// contact, when set, is the ENDED record: stopped by this request.
	contact *store.Contact
	// again: read and decide again (the record moved on, or the item got
	// a refusal from the platform's answer).
	again   bool
	expired bool
	err     error // transient
}

// endOnPlatform carries out the stop of one item of a bound instance.
func (p *pipeline) endOnPlatform(ctx context.Context, it *item, now time.Time) platformEnd {
	b, v := it.bound, it.view
	c := v.Contact
	intent := &store.Intent{RequestID: it.key.RequestID, RequestSeq: it.seq, DisconnectReason: it.reason, At: now}
	var rec store.Contact // the record carrying this request's intent
	switch {
	case c == nil:
		// Unseen: the platform knows its own contacts. The store gains its
		// record, with the intent.
		st, err := p.describe(ctx, it)
		switch {
		case platform.KindOf(err) == platform.NotFound:
			return p.refuse(it, events.ReasonContactNotFound, "contact does not exist on the platform")
		case err != nil:
			return p.platformFailed(it, "DescribeContact", err)
		}
		rec = contactOf(it.key, st, now)
		if !st.Active {
			// Ended before this request: the inventory learns it.
			rec.EndedBy = store.EndedByPlatform
			if _, err := p.store.WriteContact(ctx, rec, v.ContactRev); err != nil {
				// The store gained the contact since the read: perhaps
				// with the intent of another message of this request,
				// whose stop is this disconnection. Decide again on it.
				return writeFailed(err)
			}
			return p.refuse(it, events.ReasonContactNotFound, "contact is not active on the platform: it was disconnected "+st.DisconnectedAt.Format(time.RFC3339))
		}
		rec.Intent = intent
		w, err := p.store.WriteContact(ctx, rec, v.ContactRev)
		if err != nil {
			return writeFailed(err)
		}
		rec = w
	case c.Intent != nil && c.Intent.RequestID == it.key.RequestID:
		// Its own intent: what became of the contact?
		st, err := p.describe(ctx, it)
		switch {
		case platform.KindOf(err) == platform.NotFound:
			// Gone: this request may have ended it.
			return p.finish(ctx, it, *c, now)
		case err != nil:
			return p.platformFailed(it, "DescribeContact", err)
		case !st.Active && !st.DisconnectedAt.Before(c.Intent.At.Add(-intentSkew)):
			return p.finish(ctx, it, *c, now)
		case !st.Active:
			return p.endedBefore(ctx, it, *c, st)
		}
		rec = *c
	default:
		// Active, or another request's stale intent: take it over, then
		// ask the platform first if that request may have called.
		rec = *c
		rec.Intent = intent
		w, err := p.store.WriteContact(ctx, rec, c.Revision)
		if err != nil {
			return writeFailed(err)
		}
		rec = w
		if c.Intent != nil {
			st, err := p.describe(ctx, it)
			switch {
			case platform.KindOf(err) == platform.NotFound:
				return p.endedBefore(ctx, it, rec, platform.Status{})
			case err != nil:
				return p.platformFailed(it, "DescribeContact", err)
			case !st.Active:
				return p.endedBefore(ctx, it, rec, st)
			}
		}
	}
	// The call.
	for {
		if !it.deadline.IsZero() && !p.now().Before(it.deadline) {
			return platformEnd{expired: true}
		}
		if err := p.wait(ctx, it, b.Stops); err != nil {
			if errors.Is(err, errItemExpired) || !it.deadline.IsZero() && !p.now().Before(it.deadline) {
				return platformEnd{expired: true}
			}
			return platformEnd{err: fmt.Errorf("waiting for the platform's budget: %w", err)}
		}
		if it.keepAlive != nil && time.Until(it.deadline) < callTimeBudget && !it.keepAlive() {
			return platformEnd{expired: true}
		}
		err := b.Platform.StopContact(ctx, it.key.ContactID, it.reason)
		if err == nil {
			return p.finish(ctx, it, rec, p.now())
		}
		var pe *platform.Error
		errors.As(err, &pe)
		switch platform.KindOf(err) {
		case platform.Throttled:
			var after time.Duration
			if pe != nil {
				after = pe.RetryAfter
			}
			b.Stops.Throttled(after)
			continue
		case platform.NotFound:
			if rec.Intent != nil && rec.Intent.At.Before(now) {
				// An earlier attempt of this request may have ended it:
				// the next round asks the platform.
				return platformEnd{err: err}
			}
			// The intent is this attempt's, but another delivery of the
			// request may have found it since and stopped the contact:
			// when was it disconnected?
			return p.stopNotFound(ctx, it, rec, now)
		case platform.ResourceNotFound:
			return p.dropIntent(ctx, it, rec, events.ReasonResourceNotFound, err)
		case platform.InvalidParameter:
			return p.dropIntent(ctx, it, rec, events.ReasonInvalidParameter, err)
		case platform.InvalidRequest:
			return p.dropIntent(ctx, it, rec, events.ReasonInvalidRequest, err)
		}
		return p.platformFailed(it, "StopContact", err)
	}
}

// stopNotFound settles a StopContact the platform answered "not active or
// does not exist" when this attempt wrote the intent (at intentAt): another
// delivery of the same request may have found the intent since and
// stopped the contact. Disconnected at or after the intent: that stop, so
// stopped by this request. Before it, or unknown to the platform: gone
// before this request. No clock skew is allowed here, unlike for an
// earlier attempt's intent: the other delivery's stop comes a round trip
// or more after the intent, and a hang-up just before this request must
// not count as its stop.
func (p *pipeline) stopNotFound(ctx context.Context, it *item, rec store.Contact, intentAt time.Time) platformEnd {
	st, err := p.describe(ctx, it)
	switch {
	case platform.KindOf(err) == platform.NotFound:
		return p.endedBefore(ctx, it, rec, platform.Status{})
	case err != nil:
		return p.platformFailed(it, "DescribeContact", err)
	case st.Active:
		// Contradicts the stop's answer: the next round asks again.
		return platformEnd{err: errors.New("the platform answered that the contact is not active, then that it is")}
	case !st.DisconnectedAt.Before(intentAt):
		return p.finish(ctx, it, rec, p.now())
	}
	return p.endedBefore(ctx, it, rec, st)
}

// describe asks the platform about the item's contact, within its budget.
func (p *pipeline) describe(ctx context.Context, it *item) (platform.Status, error) {
	b := it.bound
	for {
		if err := p.wait(ctx, it, b.Describes); err != nil {
			return platform.Status{}, err
		}
		st, err := b.Platform.DescribeContact(ctx, it.key.ContactID)
		var pe *platform.Error
		if errors.As(err, &pe) && pe.Kind == platform.Throttled {
			b.Describes.Throttled(pe.RetryAfter)
			continue
		}
		return st, err
	}
}

// finish records rec's contact ENDED by the item's request, rec being the
// record that carries its intent, re-reading it while other writers (a
// platform event) move it on.
func (p *pipeline) finish(ctx context.Context, it *item, rec store.Contact, at time.Time) platformEnd {
	for range maxDecideRounds {
		ended := rec
		if rec.State.Active() {
			ended.PreviousState = rec.State
		}
		ended.State = store.StateEnded
		ended.EndedAt, ended.UpdatedAt = at, at
		ended.EndedBy, ended.EndedBySeq = it.key.RequestID, it.seq
		ended.DisconnectReason = it.reason
		ended.Intent = nil
		w, err := p.store.WriteContact(ctx, ended, rec.Revision)
		if err == nil {
			return platformEnd{contact: &w}
		}
		if !errors.Is(err, store.ErrRevisionConflict) {
			// The intent stays: the next round asks the platform.
			return platformEnd{err: fmt.Errorf("the platform stopped the contact; recording it: %w", err)}
		}
		views, err := p.store.Views(ctx, store.ViewParams{Keys: []store.RequestKey{it.key}, Consistent: true, ContactsOnly: true})
		if err != nil {
			return platformEnd{err: err}
		}
		cur := views[0].Contact
		switch {
		case cur == nil:
			return platformEnd{again: true}
		case views[0].EndedByThis():
			return platformEnd{contact: cur}
		case cur.Intent == nil || cur.Intent.RequestID != it.key.RequestID:
			// Someone replaced the record, intent and all: decide again.
			return platformEnd{again: true}
		}
		rec = *cur
	}
	return platformEnd{err: fmt.Errorf("recording the stop: %w", store.ErrRevisionConflict)}
}

// endedBefore records that the contact was disconnected before this
// request could end it, and refuses the request CONTACT_NOT_FOUND (a
// bulk's contact is skipped).
func (p *pipeline) endedBefore(ctx context.Context, it *item, rec store.Contact, st platform.Status) platformEnd {
	ended := rec
	if rec.State.Active() {
		ended.PreviousState = rec.State
		ended.State = store.StateEnded
		ended.EndedBy = store.EndedByPlatform
		ended.EndedAt = st.DisconnectedAt
		if ended.EndedAt.IsZero() {
			ended.EndedAt = p.now()
		}
		ended.UpdatedAt = p.now()
	}
	ended.Intent = nil
	if _, err := p.store.WriteContact(ctx, ended, rec.Revision); err != nil {
		return writeFailed(err)
	}
	return p.refuse(it, events.ReasonContactNotFound, "contact is not active on the platform: it was disconnected before this request")
}

// dropIntent withdraws the request's intent after the platform refused the
// stop for good, and refuses the request with code.
func (p *pipeline) dropIntent(ctx context.Context, it *item, rec store.Contact, code events.ReasonCode, cause error) platformEnd {
	cleared := rec
	cleared.Intent = nil
	if _, err := p.store.WriteContact(ctx, cleared, rec.Revision); err != nil {
		return writeFailed(err)
	}
	return p.refuse(it, code, "the platform refused the stop: "+cause.Error())
}

// refuse gives the item the platform's answer as its refusal, to be
// recorded by the next round. A bulk's contact that the platform no longer
// has is skipped; its other refusals end as INTERNAL_ERROR, a bulk's only
// failure.
func (p *pipeline) refuse(it *item, code events.ReasonCode, msg string) platformEnd {
	if it.bulk() && code != events.ReasonInternalError {
		if code == events.ReasonContactNotFound {
			it.refusal = &refusal{skip: true, fromPlatform: true}
			return platformEnd{again: true}
		}
		msg = string(code) + ": " + msg
		code = events.ReasonInternalError
	}
	it.refusal = &refusal{code: code, msg: msg, dependsOnContact: code == events.ReasonContactNotFound, fromPlatform: true}
	return platformEnd{again: true}
}

// platformFailed is a call that failed for now: throttled past the
// deadline, a timeout, a 5xx, or contactstop's own credentials refused
// (logged at error level: someone must fix them).
func (p *pipeline) platformFailed(it *item, op string, err error) platformEnd {
	if platform.KindOf(err) == platform.Denied && p.log != nil {
		p.log.Error("the platform refused contactstop's credentials; check the AWS credentials and IAM policy of serve",
			zap.String("platform", it.bound.Name), zap.String("operation", op),
			zap.String("instance_id", it.key.InstanceID), zap.String("contact_id", it.key.ContactID), zap.Error(err))
	}
	return platformEnd{err: err}
}

// writeFailed maps a failed record write: a conflict reads and decides
// again; anything else is transient.
func writeFailed(err error) platformEnd {
	if errors.Is(err, store.ErrRevisionConflict) {
		return platformEnd{again: true}
	}
	return platformEnd{err: err}
}

// contactOf is the record of a contact the store learns from the
// platform's description.
func contactOf(k store.RequestKey, st platform.Status, now time.Time) store.Contact {
	c := store.Contact{InstanceID: k.InstanceID, ContactID: k.ContactID, State: st.State, Channel: st.Channel,
		QueueID: st.QueueID, EnqueuedAt: st.EnqueuedAt, UpdatedAt: now}
	if c.Channel == "" {
		c.Channel = store.ChannelVoice
	}
	if !st.Active {
		c.State, c.EndedAt = store.StateEnded, st.DisconnectedAt
	} else if !c.State.Active() {
		c.State = store.StateInitiated
	}
	return c
}
