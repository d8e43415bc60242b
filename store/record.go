package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxFenceRounds bounds how often RecordFailures reads a contact again
// because another writer changed it while the failure was being fenced.
const maxFenceRounds = 16

// RecordFailureParams records one request's failure.
type RecordFailureParams struct {
	Key RequestKey
	// Failure is the outcome to record; its State is set to FAILED. Its
	// ids are those the failure result echoes (as received); when its
	// RequestID is empty, Key's are used.
	Failure Outcome
	// OutcomeRev is the outcome key's revision as read (View.OutcomeRev):
	// the record is written only if the key is still there.
	OutcomeRev uint64
	// ContactRev is the contact key's revision the decision was made on
	// (View.ContactRev). DependsOnContact says the failure follows from
	// the contact as read (absent, not active, not readable) rather than
	// from the request alone (invalid, unauthorized, unknown instance,
	// transient failures): if the contact has changed and is active by the
	// time the failure is recorded, the decision was made on a stale read.
	ContactRev       uint64
	DependsOnContact bool
	// Recorded says the failure is recorded already, at OutcomeRev (an
	// earlier attempt of the same message wrote it, and may have died or
	// failed before fencing it): it is fenced, not written again. A
	// message must not publish a failure it recorded before it was
	// fenced.
	Recorded bool
}

// RecordFailureResult is what RecordFailures did for one request.
type RecordFailureResult struct {
	// Outcome is the failure as recorded, with its Revision, when Err is nil
	// and Stopped is nil.
	Outcome Outcome
	// Stopped, when set, is the contact ENDED by this very request: a stop
	// of the same request (another message of it) landed while the failure
	// was being recorded. The failure is withdrawn; the request's outcome
	// is that stop.
	Stopped *Contact
	// Err wraps ErrRevisionConflict when the outcome key changed since it
	// was read, or when the decision rested on a contact that has changed
	// and is active now, or when the contact kept changing while it was
	// being fenced: read again and decide again. Any other error is
	// transient. Either way the failure may or may not be recorded, and
	// may not be fenced: a message that then finds its own failure recorded
	// must fence it (Recorded) before it publishes it.
	Err error
}

// RecordFailures records failures so that no request ever has both a
// failure and a stop, however its messages interleave. A stop of a request
// is its contact's compare-and-set to ENDED at the revision its reader saw,
// and that reader also sees the request's outcome record, if one exists
// then; so after writing the failure (conditioned on the outcome key's
// revision) RecordFailures reads the contact again, from the leader:
//
//   - ENDED by this same request: a stop won the race; the failure is
//     withdrawn and the stop is reported (Stopped).
//   - changed since the decision and active, for a failure that depended
//     on the contact's state: the decision was made on a stale read; the
//     failure is withdrawn (ErrRevisionConflict).
//   - active: a stop that read the contact before the failure was written
//     may still be on its way; the contact is rewritten unchanged at the
//     revision just read (a fence), so that such a stop's compare-and-set
//     fails and its next read sees the failure. Should the fence meet a
//     newer revision, the contact is read again.
//   - otherwise (absent, not active, unreadable): no stop can follow.
//
// Every write of a batch is published at once, each step one round trip.
// It returns one result per parameter, in order.
func (s *KV) RecordFailures(ctx context.Context, ps []RecordFailureParams) []RecordFailureResult {
	res := make([]RecordFailureResult, len(ps))
	// Write every failure, conditioned on its outcome key.
	msgs := make([]*nats.Msg, 0, len(ps))
	sent := make([]int, 0, len(ps))
	var fence []int
	for i, p := range ps {
		o := p.Failure
		o.State = OutcomeFailed
		if o.RequestID == "" {
			o.InstanceID, o.ContactID, o.RequestID = p.Key.InstanceID, p.Key.ContactID, p.Key.RequestID
		}
		o.FailedAt = utc(o.FailedAt)
		if p.Recorded {
			o.Revision, res[i].Outcome = p.OutcomeRev, o
			if _, ok := p.Key.contactKey(); ok {
				fence = append(fence, i)
			}
			continue
		}
		msg, err := s.outcomeMsg(p.Key, o, p.OutcomeRev)
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i].Outcome = o
		msgs, sent = append(msgs, msg), append(sent, i)
	}
	for k, ack := range s.pub.Publish(ctx, msgs, opTimeout) {
		i := sent[k]
		switch {
		case ack.Err == nil:
			res[i].Outcome.Revision = ack.Sequence
			if _, ok := ps[i].Key.contactKey(); ok {
				fence = append(fence, i)
			}
		case revisionMismatch(ack.Err):
			res[i] = RecordFailureResult{Err: fmt.Errorf("%w: outcome of request %q is past revision %d", ErrRevisionConflict, ps[i].Key.RequestID, ps[i].OutcomeRev)}
		default:
			res[i] = RecordFailureResult{Err: fmt.Errorf("store: record the failure of request %q: %w", ps[i].Key.RequestID, ack.Err)}
		}
	}
	for round := 0; len(fence) > 0; round++ {
		if round == maxFenceRounds {
			for _, i := range fence {
				res[i].Err = fmt.Errorf("store: record the failure of request %q: the contact kept changing: %w", ps[i].Key.RequestID, ErrRevisionConflict)
			}
			return res
		}
		fence = s.fenceRound(ctx, ps, res, fence)
	}
	return res
}

// fenceRound reads the contacts of the failures in todo from the leader
// and acts as RecordFailures says; it returns those to read again.
func (s *KV) fenceRound(ctx context.Context, ps []RecordFailureParams, res []RecordFailureResult, todo []int) []int {
	keys := make([]RequestKey, len(todo))
	for j, i := range todo {
		keys[j] = ps[i].Key
	}
	views, err := s.Views(ctx, ViewParams{Keys: keys, Consistent: true, ContactsOnly: true})
	if err != nil {
		for _, i := range todo {
			res[i].Err = err
		}
		return nil
	}
	var withdraw, touch []int
	var touched []View
	for j, i := range todo {
		v, p := views[j], ps[i]
		switch {
		case v.EndedByThis():
			c := *v.Contact
			res[i].Stopped = &c
			withdraw = append(withdraw, i)
		case p.DependsOnContact && v.ContactRev != p.ContactRev && v.Contact != nil && v.Contact.State.Active():
			res[i].Err = fmt.Errorf("%w: contact %s/%q changed from revision %d to %d and is active",
				ErrRevisionConflict, p.Key.InstanceID, p.Key.ContactID, p.ContactRev, v.ContactRev)
			withdraw = append(withdraw, i)
		case v.Contact != nil && v.Contact.State.Active():
			touch, touched = append(touch, i), append(touched, v)
		}
	}
	s.withdraw(ctx, ps, res, withdraw)

	// The fence: the contact rewritten as it is, at the revision read.
	msgs := make([]*nats.Msg, len(touch))
	for j, v := range touched {
		ck, _ := v.Key.contactKey()
		msgs[j] = &nats.Msg{Subject: s.contactsBucket.prefix + ck, Data: v.raw, Header: nats.Header{}}
		msgs[j].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(v.ContactRev, 10))
	}
	var again []int
	for j, ack := range s.pub.Publish(ctx, msgs, opTimeout) {
		i := touch[j]
		switch {
		case ack.Err == nil:
		case revisionMismatch(ack.Err):
			again = append(again, i) // changed meanwhile: look again
		default:
			res[i].Err = fmt.Errorf("store: fence contact %s/%q: %w", ps[i].Key.InstanceID, ps[i].Key.ContactID, ack.Err)
		}
	}
	return again
}

// withdraw removes the failures just recorded for the requests in idx,
// each only if it is still the record written. A failure left behind
// changes nothing: a contact ENDED by a request is its outcome whatever
// the request's outcome record says, and a stale one is replaced by the
// next decision.
func (s *KV) withdraw(ctx context.Context, ps []RecordFailureParams, res []RecordFailureResult, idx []int) {
	msgs := make([]*nats.Msg, 0, len(idx))
	for _, i := range idx {
		b, key, err := s.outcomeLocation(ps[i].Key)
		if err != nil {
			continue
		}
		msg := &nats.Msg{Subject: b.prefix + key, Header: nats.Header{}}
		msg.Header.Set("KV-Operation", "DEL")
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(res[i].Outcome.Revision, 10))
		s.setTTL(msg, b)
		msgs = append(msgs, msg)
	}
	_ = s.pub.Publish(ctx, msgs, opTimeout)
	for _, i := range idx {
		res[i].Outcome = Outcome{}
	}
}

// RecordAttemptParams records an attempt of a request that met a transient
// error.
type RecordAttemptParams struct {
	Key RequestKey
	// Attempts is the number of failed attempts so far, this one
	// included; LastError its error.
	Attempts  int
	LastError string
	// OutcomeRev is the outcome key's revision as read.
	OutcomeRev uint64
}

// RecordAttempt stores the count of a request's failed attempts, by a
// compare-and-set on its outcome key. It returns the record as stored, an
// error wrapping ErrRevisionConflict when the key changed since it was read,
// or a transient error.
func (s *KV) RecordAttempt(ctx context.Context, p RecordAttemptParams) (Outcome, error) {
	o := Outcome{InstanceID: p.Key.InstanceID, ContactID: p.Key.ContactID, RequestID: p.Key.RequestID,
		State: OutcomeRetrying, Attempts: p.Attempts, LastError: p.LastError}
	msg, err := s.outcomeMsg(p.Key, o, p.OutcomeRev)
	if err != nil {
		return Outcome{}, err
	}
	ack := s.pub.Publish(ctx, []*nats.Msg{msg}, opTimeout)[0]
	switch {
	case ack.Err == nil:
		o.Revision = ack.Sequence
		return o, nil
	case revisionMismatch(ack.Err):
		return Outcome{}, fmt.Errorf("%w: outcome of request %q is past revision %d", ErrRevisionConflict, p.Key.RequestID, p.OutcomeRev)
	}
	return Outcome{}, fmt.Errorf("store: record an attempt of request %q: %w", p.Key.RequestID, ack.Err)
}

// outcomeMsg is the write of o at k's outcome key, conditioned on rev and
// expiring after the outcome TTL.
func (s *KV) outcomeMsg(k RequestKey, o Outcome, rev uint64) (*nats.Msg, error) {
	b, key, err := s.outcomeLocation(k)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("store: encode the outcome of request %q: %w", k.RequestID, err)
	}
	msg := &nats.Msg{Subject: b.prefix + key, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	s.setTTL(msg, b)
	return msg, nil
}

// setTTL makes a record in the contacts bucket expire after the outcome
// TTL. (Records next to a bulk's record live as long as it.)
func (s *KV) setTTL(msg *nats.Msg, b bucket) {
	if b == s.contactsBucket {
		msg.Header.Set(jetstream.MsgTTLHeader, strconv.FormatInt(int64(s.cfg.OutcomeTTL/time.Second), 10))
	}
}

// RequestOutcome is what the store knows of one request's outcome.
type RequestOutcome struct {
	// Stopped is the contact the request ENDED, when it did.
	Stopped *Contact
	// Failed is the request's failure, when it failed.
	Failed *Outcome
}

// LookUpRequest reads, consistently, what became of a request: the contact
// it ended, its recorded failure, or neither (not decided yet, or not
// known to the store).
func (s *KV) LookUpRequest(ctx context.Context, k RequestKey) (RequestOutcome, error) {
	views, err := s.Views(ctx, ViewParams{Keys: []RequestKey{k}, Consistent: true})
	if err != nil {
		return RequestOutcome{}, err
	}
	v := views[0]
	switch {
	case v.EndedByThis():
		return RequestOutcome{Stopped: v.Contact}, nil
	case v.Outcome.Final():
		return RequestOutcome{Failed: v.Outcome}, nil
	}
	return RequestOutcome{}, nil
}
