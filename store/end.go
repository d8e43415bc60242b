package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EndContactParams ends one contact: the contact as the caller read it
// (with its Revision) and the request ending it.
type EndContactParams struct {
	// Contact is the active contact as read; the write is conditioned on
	// its Revision.
	Contact Contact
	// RequestID identifies the request; it is recorded as EndedBy.
	// Required.
	RequestID string
	// RequestSeq is recorded as EndedBySeq: the requests-stream sequence
	// of the message whose delivery ends the contact (0 for a bulk's).
	RequestSeq uint64
	// DisconnectReason is recorded on the contact; it may be empty.
	DisconnectReason string
	// At is recorded as EndedAt and UpdatedAt; now when zero.
	At time.Time
}

// EndOutcome is what EndContacts did for one contact.
type EndOutcome struct {
	// Contact is the ENDED record as stored, with its PreviousState, when
	// Err is nil. Its Revision is the record's new revision when the
	// write was answered alone, and 0 when it was confirmed with its batch
	// (a fast batch's answer names no message's sequence).
	Contact Contact
	// Err wraps ErrRevisionConflict when the contact changed since it was
	// read (nothing was written; read it again and decide again),
	// ErrInvalidContact for invalid parameters or a contact that is not
	// active, and is otherwise transient: the write may or may not have
	// landed, and ending the contact again at the same revision is safe.
	Err error
}

// EndContacts moves contacts to ENDED, each by a compare-and-set at the
// revision it was read at, so that a contact is ended at most once however
// many writers race, and only from the record the caller decided on. The
// writes go out together as one JetStream fast batch, answered once (a
// write the batch's answer does not confirm, such as one that meets a
// newer revision, is published again alone and answered alone): one round
// trip for the batch. It returns one outcome per parameter, in order.
func (s *KV) EndContacts(ctx context.Context, ps []EndContactParams) []EndOutcome {
	outs := make([]EndOutcome, len(ps))
	msgs := make([]*nats.Msg, 0, len(ps))
	sent := make([]int, 0, len(ps))
	// The batch's messages, records and header values are allocated
	// together: a few allocations per batch instead of four per contact.
	structs := make([]nats.Msg, len(ps))
	revs := make([]string, len(ps))
	records := make([]byte, 0, len(ps)*320)
	for i, p := range ps {
		ended, err := endedRecord(p, s.now)
		if err != nil {
			outs[i].Err = err
			continue
		}
		outs[i].Contact = ended
		start := len(records)
		records = ended.appendRecord(records)
		revs[i] = strconv.FormatUint(p.Contact.Revision, 10)
		msg := &structs[i]
		msg.Subject = contactSubject(s.contactsBucket.prefix, ended.InstanceID, ended.ContactID)
		msg.Data = records[start:len(records):len(records)]
		// As Header.Set would, with the value's slice from revs.
		msg.Header = nats.Header{jetstream.ExpectedLastSubjSeqHeader: revs[i : i+1 : i+1]}
		msgs, sent = append(msgs, msg), append(sent, i)
	}
	for k, ack := range s.pub.PublishBatch(ctx, msgs, opTimeout) {
		i := sent[k]
		c := &ps[i].Contact
		switch {
		case ack.Err == nil:
			outs[i].Contact.Revision = ack.Sequence
		case revisionMismatch(ack.Err):
			outs[i] = EndOutcome{Err: fmt.Errorf("%w: contact %s/%q is past revision %d", ErrRevisionConflict, c.InstanceID, c.ContactID, c.Revision)}
		default:
			outs[i] = EndOutcome{Err: fmt.Errorf("store: end contact %s/%q at revision %d: %w", c.InstanceID, c.ContactID, c.Revision, ack.Err)}
		}
	}
	return outs
}

// endedRecord is the ENDED record that ending p.Contact for p writes.
func endedRecord(p EndContactParams, now func() time.Time) (Contact, error) {
	c := p.Contact
	if err := c.validate(); err != nil {
		return Contact{}, err
	}
	switch {
	case p.RequestID == "":
		return Contact{}, fmt.Errorf("%w: requestId is required to end a contact", ErrInvalidContact)
	case c.Revision == 0:
		return Contact{}, fmt.Errorf("%w: contact %s/%q: a revision is required", ErrInvalidContact, c.InstanceID, c.ContactID)
	case !c.State.Active():
		return Contact{}, fmt.Errorf("%w: contact %s/%q is %s, not active", ErrInvalidContact, c.InstanceID, c.ContactID, c.State)
	}
	at := utc(p.At)
	if at.IsZero() {
		at = now()
	}
	ended := c
	ended.PreviousState = c.State
	ended.State = StateEnded
	ended.EndedAt, ended.UpdatedAt = at, at
	ended.EndedBy, ended.EndedBySeq = p.RequestID, p.RequestSeq
	ended.DisconnectReason = p.DisconnectReason
	ended.Revision = 0
	return ended, nil
}

// revisionMismatch reports whether a write failed its expected-revision
// check (the codes differ between single servers and clusters).
func revisionMismatch(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
