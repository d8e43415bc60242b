package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ContactEvent is a platform's report that one of its contacts changed (an
// Amazon Connect contact event, POST /ingest/…): the store's inventory of an
// instance bound to that platform follows it (ApplyContactEvent).
type ContactEvent struct {
	// InstanceID and ContactID name the contact.
	InstanceID, ContactID string
	// State is the state the contact is in after the event: an active
	// state, or ENDED when the platform disconnected it.
	State State
	// Channel is the contact's channel.
	Channel Channel
	// QueueID and EnqueuedAt are the queue the contact waits (or waited)
	// in and when it entered it, when the event says; empty (zero) keeps
	// what the record holds.
	QueueID    string
	EnqueuedAt time.Time
	// At is when the event happened on the platform, the order of events:
	// an event older than the record's last applied event (EventAt)
	// changes nothing. Required.
	At time.Time
	// DisconnectedAt is, for an ENDED event, when the platform
	// disconnected the contact: the record's EndedAt (At when zero).
	DisconnectedAt time.Time
}

// EndedByPlatform is the EndedBy of a contact that the platform reported
// disconnected, as opposed to one ended by a request (whose requestId is
// EndedBy).
const EndedByPlatform = "platform"

// maxEventRounds bounds how often ApplyContactEvent reads a contact again
// because another writer changed it between its read and its write.
const maxEventRounds = 16

// validate checks what ApplyContactEvent requires of an event; its errors
// wrap ErrInvalidContact.
func (e *ContactEvent) validate() error {
	if err := validateContactIDs(e.InstanceID, e.ContactID); err != nil {
		return err
	}
	switch {
	case !e.State.valid():
		return fmt.Errorf("%w: event state %q (valid: %s)", ErrInvalidContact, e.State, joinNames(states))
	case !e.Channel.valid():
		return fmt.Errorf("%w: event channel %q (valid: %s)", ErrInvalidContact, e.Channel, joinNames(channels))
	case e.At.IsZero():
		return fmt.Errorf("%w: event %s/%q has no time", ErrInvalidContact, e.InstanceID, e.ContactID)
	}
	return nil
}

// ApplyContactEvent brings the contact's record up to date with a platform
// event, idempotently and in the events' order, whatever order they arrive
// in and however often:
//
//   - An event older than the record's last applied event (EventAt)
//     changes nothing. So does one at the same time, unless it moves the
//     contact further along its lifecycle (INITIATED, QUEUED, CONNECTED or
//     ON_HOLD, ENDED): the same event delivered again changes nothing,
//     while two events the platform timed alike apply in lifecycle order.
//   - An ENDED contact never becomes active again. An ENDED event on an
//     ENDED contact (ended by a request, say) keeps it as it is and only
//     records the event's time.
//   - An ENDED event on an active contact ends it: EndedBy
//     EndedByPlatform, EndedAt the event's DisconnectedAt (or At),
//     PreviousState the state it was in.
//   - Everything the event does not carry is kept, above all a stop in
//     progress on the platform (Intent) and how a request ended the
//     contact (EndedBy, EndedBySeq, DisconnectReason).
//
// A contact the store has not seen is created. Every write is a
// compare-and-set at the revision read (create-only for an absent key);
// when another writer got there first the record is read again and the
// event decided again, a bounded number of times.
//
// It reports whether it wrote the record. A record that is not a valid
// contact is left untouched: the error wraps ErrBadRecord. An invalid event
// gives an error wrapping ErrInvalidContact; a contact that kept changing,
// ErrRevisionConflict; any other error is transient (the write may or may
// not have landed; applying the event again is safe).
func (s *KV) ApplyContactEvent(ctx context.Context, e ContactEvent) (applied bool, err error) {
	if err := e.validate(); err != nil {
		return false, err
	}
	e.At, e.EnqueuedAt, e.DisconnectedAt = utc(e.At), utc(e.EnqueuedAt), utc(e.DisconnectedAt)
	rk := RequestKey{InstanceID: e.InstanceID, ContactID: e.ContactID}
	for range maxEventRounds {
		views, err := s.Views(ctx, ViewParams{Keys: []RequestKey{rk}, Consistent: true, ContactsOnly: true})
		if err != nil {
			return false, err
		}
		v := views[0]
		if v.Bad != nil {
			return false, fmt.Errorf("store: apply %s event to %s/%q: the stored record is left as it is: %w",
				e.State, e.InstanceID, e.ContactID, v.Bad)
		}
		next, ok := eventRecord(v.Contact, e, s.now())
		if !ok {
			return false, nil
		}
		key, data, err := s.prepareContact(&next)
		if err != nil {
			return false, err
		}
		msg := &nats.Msg{Subject: s.contactsBucket.prefix + key, Data: data, Header: nats.Header{}}
		// 0 for a key never written: the write creates it or fails.
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(v.ContactRev, 10))
		ack := s.pub.Publish(ctx, []*nats.Msg{msg}, opTimeout)[0]
		switch {
		case ack.Err == nil:
			return true, nil
		case !revisionMismatch(ack.Err):
			return false, fmt.Errorf("store: apply %s event to %s/%q: %w", e.State, e.InstanceID, e.ContactID, ack.Err)
		}
	}
	return false, fmt.Errorf("store: apply %s event to %s/%q: it kept changing: %w", e.State, e.InstanceID, e.ContactID, ErrRevisionConflict)
}

// eventRecord returns the record that applying e to old (nil: no record)
// writes, with UpdatedAt now, and false when e changes nothing (see
// ApplyContactEvent).
func eventRecord(old *Contact, e ContactEvent, now time.Time) (Contact, bool) {
	endedAt := e.DisconnectedAt
	if endedAt.IsZero() {
		endedAt = e.At
	}
	if old == nil {
		c := Contact{InstanceID: e.InstanceID, ContactID: e.ContactID, State: e.State, Channel: e.Channel,
			QueueID: e.QueueID, EnqueuedAt: e.EnqueuedAt, EventAt: e.At, UpdatedAt: now}
		if e.State == StateEnded {
			// Its state before is unknown: PreviousState stays empty.
			c.EndedAt, c.EndedBy = endedAt, EndedByPlatform
		}
		return c, true
	}
	if !old.EventAt.IsZero() {
		if e.At.Before(old.EventAt) || e.At.Equal(old.EventAt) && lifecycleRank(e.State) <= lifecycleRank(old.State) {
			return Contact{}, false
		}
	}
	c := *old
	c.Revision = 0
	c.EventAt, c.UpdatedAt = e.At, now
	if old.State == StateEnded {
		if e.State != StateEnded {
			return Contact{}, false // never active again
		}
		return c, true // as it was ended, by whom it was ended
	}
	c.Channel = e.Channel
	if e.QueueID != "" {
		c.QueueID = e.QueueID
	}
	if !e.EnqueuedAt.IsZero() {
		c.EnqueuedAt = e.EnqueuedAt
	}
	if e.State == StateEnded {
		c.PreviousState = old.State
		c.EndedAt, c.EndedBy, c.EndedBySeq = endedAt, EndedByPlatform, 0
	}
	c.State = e.State
	return c, true
}

// lifecycleRank orders states along a contact's lifecycle, for events the
// platform timed alike.
func lifecycleRank(s State) int {
	switch s {
	case StateInitiated:
		return 1
	case StateQueued:
		return 2
	case StateConnected, StateOnHold:
		return 3
	case StateEnded:
		return 4
	}
	return 0
}

// BindingIndex finds the instance bound to a platform's instance, for the
// platform's events (which name their own instance, not contactstop's). It
// answers from a copy of the instances bucket's bindings, read again when
// it is older than bindingTTL or when an id is not in it (at most once a
// second), so that an instance bound by another process is found at once.
// Safe for concurrent use.
type BindingIndex struct {
	kv *KV
	// snap is the current copy; refreshing serializes its readers of the
	// bucket.
	snap       atomic.Pointer[bindingSnapshot]
	refreshing sync.Mutex
}

// bindingSnapshot is one reading of the instances bucket.
type bindingSnapshot struct {
	at time.Time
	// byID maps a platform's own instance id (an Amazon Connect instance
	// id, a Twilio TaskRouter workspace sid), prefixed with the platform's
	// name and a NUL, to its instance.
	byID map[string]Instance
	// bad names the records that could not be read, if any: an id not
	// found may be bound by one of them.
	bad error
}

// How long BindingIndex trusts a reading: a binding changed by
// `instances add` is seen within bindingTTL; an unknown id reads the
// bucket again at most every bindingMissInterval.
const (
	bindingTTL          = 30 * time.Second
	bindingMissInterval = time.Second
)

// NewBindingIndex returns an index of kv's instance bindings.
func NewBindingIndex(kv *KV) *BindingIndex { return &BindingIndex{kv: kv} }

// InstanceByConnectID returns the instance bound to the Amazon Connect
// instance connectInstanceID (Binding.Platform PlatformAmazonConnect,
// Binding.ConnectInstanceID). When several are, it is the one with the
// smallest instance id. It returns an error wrapping ErrInstanceNotFound
// when none is, and a transient error when the instances bucket cannot be
// read (or holds records that cannot be, one of which may be the binding).
func (x *BindingIndex) InstanceByConnectID(ctx context.Context, connectInstanceID string) (Instance, error) {
	return x.InstanceByPlatformID(ctx, PlatformAmazonConnect, connectInstanceID)
}

// InstanceByPlatformID is InstanceByConnectID for any platform whose
// events name their own instance: Amazon Connect's instance id, Twilio's
// TaskRouter workspace sid.
func (x *BindingIndex) InstanceByPlatformID(ctx context.Context, platform, id string) (Instance, error) {
	key := platform + "\x00" + id
	if snap := x.snap.Load(); snap != nil && x.kv.now().Sub(snap.at) < bindingTTL {
		if inst, ok := snap.byID[key]; ok {
			return inst, nil
		}
	}
	x.refreshing.Lock()
	defer x.refreshing.Unlock()
	snap := x.snap.Load()
	if snap == nil || x.kv.now().Sub(snap.at) >= bindingMissInterval {
		fresh, err := x.read(ctx)
		if err != nil {
			return Instance{}, err
		}
		x.snap.Store(fresh)
		snap = fresh
	}
	if inst, ok := snap.byID[key]; ok {
		return inst, nil
	}
	if snap.bad != nil {
		return Instance{}, fmt.Errorf("store: find the instance bound to %s instance %q: %w", platform, id, snap.bad)
	}
	return Instance{}, fmt.Errorf("%w: no instance is bound to %s instance %q", ErrInstanceNotFound, platform, id)
}

// read reads every instance's binding. A record that cannot be read is
// skipped, and named in the snapshot's bad.
func (x *BindingIndex) read(ctx context.Context) (*bindingSnapshot, error) {
	snap := &bindingSnapshot{at: x.kv.now(), byID: map[string]Instance{}}
	var bad []error
	err := x.kv.walk(ctx, x.kv.instancesBucket, "*", func(key string, data []byte, _ uint64) error {
		inst, err := decodeInstance(key, data)
		if err == nil {
			err = validateInstanceID(key)
		}
		if err != nil {
			bad = append(bad, err)
			return nil
		}
		b := inst.Binding
		var id string
		switch {
		case b == nil:
			return nil
		case b.Platform == PlatformAmazonConnect:
			id = b.ConnectInstanceID
		case b.Platform == PlatformTwilio && b.WorkspaceSID != "":
			id = b.WorkspaceSID
		default:
			return nil
		}
		byKey := b.Platform + "\x00" + id
		if prev, ok := snap.byID[byKey]; !ok || inst.InstanceID < prev.InstanceID {
			snap.byID[byKey] = inst
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read the instances' platform bindings: %w", err)
	}
	if len(bad) > 0 {
		snap.bad = fmt.Errorf("unreadable instance records: %w", errors.Join(bad...))
	}
	return snap, nil
}
