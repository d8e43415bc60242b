package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxEndAttempts bounds how often EndContact re-reads and retries after
// another writer changed the contact between its read and its write.
const maxEndAttempts = 16

// EndContactParams names the contact to end and the request ending it.
type EndContactParams struct {
	InstanceID, ContactID string
	// RequestID identifies the request; it is recorded as EndedBy and makes
	// the operation idempotent. Required.
	RequestID string
	// DisconnectReason is recorded on the contact; it may be empty.
	DisconnectReason string
	// At is recorded as EndedAt and UpdatedAt; now when zero.
	At time.Time
	// Known, when set, is the contact as the caller just read it (with its
	// Revision), for example from ListContacts: the first attempt writes
	// at that revision without reading the contact again, and falls back
	// to reading it if it changed since.
	Known *Contact
}

// EndContactResult is the outcome of a successful EndContact.
type EndContactResult struct {
	// Contact is the ENDED record, with PreviousState, as stored.
	Contact Contact
	// Replayed is true when the contact had already been ended by the same
	// RequestID: nothing was written, and Contact is the record that the
	// first call stored.
	Replayed bool
}

// EndContact moves an active contact to ENDED, recording EndedAt, EndedBy,
// DisconnectReason and PreviousState. The write is a compare-and-set on the
// revision just read, so a contact is ended at most once however many
// processes race to end it.
//
// It returns an error wrapping ErrContactNotFound when the contact does not
// exist, and ErrContactNotActive when it was ended by a different request.
// When it was already ended by the same RequestID it writes nothing and
// returns the stored record with Replayed set: retrying EndContact after an
// error of unknown outcome (a timeout) is always safe. Invalid ids or an
// empty RequestID give an error wrapping ErrInvalidContact. When other
// writers keep changing the contact between read and write, it re-reads and
// decides again, up to 16 times, then returns an error wrapping
// jetstream.ErrKeyRevisionMismatch. Any other error (timeout, no responders,
// an unreadable record) is returned wrapped with context, unclassified: the
// caller may retry.
func (s *KV) EndContact(ctx context.Context, p EndContactParams) (res EndContactResult, err error) {
	if err := p.validate(); err != nil {
		return EndContactResult{}, err
	}
	at := s.endTime(p)
	key := ContactKey(p.InstanceID, p.ContactID)
	var conflict error
	for attempt := range maxEndAttempts {
		var c Contact
		if attempt == 0 && p.usableKnown() {
			c = *p.Known
		} else if c, err = s.GetContact(ctx, p.InstanceID, p.ContactID); err != nil {
			return EndContactResult{}, err
		}
		ended, data, done, err := decideEnd(c, p, at)
		if done || err != nil {
			return ended, err
		}
		rev, err := s.contacts.Update(ctx, key, data, c.Revision)
		if err == nil {
			ended.Contact.Revision = rev
			return ended, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return EndContactResult{}, fmt.Errorf("store: end contact %s/%q at revision %d: %w", p.InstanceID, p.ContactID, c.Revision, err)
		}
		conflict = err
	}
	return EndContactResult{}, fmt.Errorf("store: end contact %s/%q: still conflicting after %d attempts: %w",
		p.InstanceID, p.ContactID, maxEndAttempts, conflict)
}

// validate checks the ids and the RequestID.
func (p EndContactParams) validate() error {
	if err := validateContactIDs(p.InstanceID, p.ContactID); err != nil {
		return err
	}
	if p.RequestID == "" {
		return fmt.Errorf("%w: requestId is required to end a contact", ErrInvalidContact)
	}
	return nil
}

// usableKnown reports whether Known can stand in for a first read.
func (p EndContactParams) usableKnown() bool {
	return p.Known != nil && p.Known.Revision != 0 &&
		p.Known.InstanceID == p.InstanceID && p.Known.ContactID == p.ContactID
}

// endTime is the time to record as EndedAt.
func (s *KV) endTime(p EndContactParams) time.Time {
	if at := utc(p.At); !at.IsZero() {
		return at
	}
	return s.now()
}

// decideEnd decides what ending the contact c (as read, with its Revision)
// for p means. done is true when nothing is to be written: c was already
// ended by p's request (the result is Replayed) or by another (err wraps
// ErrContactNotActive). Otherwise res holds the ENDED record to write at
// c's revision, and data its encoding.
func decideEnd(c Contact, p EndContactParams, at time.Time) (res EndContactResult, data []byte, done bool, err error) {
	if c.State == StateEnded {
		if c.EndedBy == p.RequestID {
			return EndContactResult{Contact: c, Replayed: true}, nil, true, nil
		}
		return EndContactResult{}, nil, true, fmt.Errorf("%w: %s/%q was ended by request %q", ErrContactNotActive, p.InstanceID, p.ContactID, c.EndedBy)
	}
	ended := c
	ended.PreviousState = c.State
	ended.State = StateEnded
	ended.EndedAt = at
	ended.UpdatedAt = at
	ended.EndedBy = p.RequestID
	ended.DisconnectReason = p.DisconnectReason
	ended.Revision = 0
	return EndContactResult{Contact: ended}, ended.appendRecord(make([]byte, 0, 384)), false, nil
}
