package store

import (
	"fmt"
	"time"
)

// Contact is one contact-center contact (a call, chat, email, SMS, voicemail
// or work item) as stored in the contacts bucket. Its JSON form is the record
// other services read and write; see docs/store.md.
type Contact struct {
	ContactID  string    `json:"contactId"`
	InstanceID string    `json:"instanceId"`
	State      State     `json:"state"`
	QueueID    string    `json:"queueId,omitempty"`
	Channel    Channel   `json:"channel"`
	EnqueuedAt time.Time `json:"enqueuedAt,omitzero"`
	UpdatedAt  time.Time `json:"updatedAt"`
	EndedAt    time.Time `json:"endedAt,omitzero"`
	// EndedBy is the requestId of the request that ended the contact.
	EndedBy string `json:"endedBy,omitempty"`
	// EndedBySeq is the sequence, in the requests stream, of the message
	// whose delivery ended the contact; absent (0) for a contact ended by
	// a bulk request or by a version that did not record it. A later
	// message with the same requestId is a resend of an answered request,
	// not a redelivery of the one that answered it.
	EndedBySeq       uint64 `json:"endedBySeq,omitempty"`
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// PreviousState is the state the contact was in when it was ended, kept
	// so that a replayed stop reports the same result as the first.
	PreviousState State `json:"previousState,omitempty"`
	// Intent, on a contact of an instance bound to a platform, is the stop
	// a request is carrying out there: recorded (revision-checked) before
	// the platform is called, replaced by the ENDED record once the
	// outcome is known. A redelivery of that request that finds it asks
	// the platform what became of the contact. See docs/design.md.
	Intent *Intent `json:"stopIntent,omitempty"`
	// EventAt is the time of the last platform event applied to the record
	// (POST /ingest/…): an older event changes nothing.
	EventAt time.Time `json:"eventAt,omitzero"`
	// Revision is the KV revision the record was read or written at. It is
	// not part of the stored JSON.
	Revision uint64 `json:"-"`
}

// Intent is a stop being carried out on a platform (Contact.Intent).
type Intent struct {
	// RequestID is the request carrying out the stop.
	RequestID string `json:"requestId"`
	// RequestSeq is the requests-stream sequence of its message (0 for a
	// bulk's contact).
	RequestSeq uint64 `json:"requestSeq,omitempty"`
	// DisconnectReason is the reason sent to the platform.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// At is when the intent was recorded: a disconnection the platform
	// reports from before it was not this request's doing.
	At time.Time `json:"at"`
}

// validate checks everything PutContact requires of a contact, returning an
// error that wraps ErrInvalidContact and names the offending field.
func (c *Contact) validate() error {
	if err := validateInstanceID(c.InstanceID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	if err := validateContactID(c.ContactID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	if !c.State.valid() {
		return fmt.Errorf("%w: state %q (valid: %s)", ErrInvalidContact, c.State, joinNames(states))
	}
	if !c.Channel.valid() {
		return fmt.Errorf("%w: channel %q (valid: %s)", ErrInvalidContact, c.Channel, joinNames(channels))
	}
	if c.Intent != nil && c.Intent.RequestID == "" {
		return fmt.Errorf("%w: stopIntent without a requestId", ErrInvalidContact)
	}
	if c.PreviousState != "" && !c.PreviousState.Active() {
		return fmt.Errorf("%w: previousState %q is not an active state", ErrInvalidContact, c.PreviousState)
	}
	return nil
}

// normalize fills UpdatedAt with now when it is zero and puts every time in
// UTC (without a monotonic reading), so that the contact a write returns is
// equal to the one a later read returns.
func (c *Contact) normalize(now time.Time) {
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = now
	}
	c.UpdatedAt = utc(c.UpdatedAt)
	c.EnqueuedAt = utc(c.EnqueuedAt)
	c.EndedAt = utc(c.EndedAt)
	c.EventAt = utc(c.EventAt)
	if c.Intent != nil {
		in := *c.Intent
		in.At = utc(in.At)
		c.Intent = &in
	}
}

// utc returns t in UTC, leaving the zero time zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// decodeContact decodes a stored record read under key (instanceID,
// contactID) at revision rev. The key is authoritative: empty id fields in
// the body are filled from it, and a body that names a different contact is
// an error. So is a body that is not JSON or whose state or channel is not
// valid: such a record was written by something other than this package and
// cannot be acted on safely. These errors wrap ErrBadRecord.
func decodeContact(instanceID, contactID string, data []byte, rev uint64) (Contact, error) {
	var c Contact
	if err := unmarshalContact(data, &c); err != nil {
		return Contact{}, fmt.Errorf("%w: contact %s/%q: malformed record at revision %d: %w", ErrBadRecord, instanceID, contactID, rev, err)
	}
	if c.InstanceID == "" {
		c.InstanceID = instanceID
	}
	if c.ContactID == "" {
		c.ContactID = contactID
	}
	if c.InstanceID != instanceID || c.ContactID != contactID {
		return Contact{}, fmt.Errorf("%w: contact %s/%q: record at revision %d names contact %s/%q",
			ErrBadRecord, instanceID, contactID, rev, c.InstanceID, c.ContactID)
	}
	if err := c.validate(); err != nil {
		//nolint:errorlint // deliberately not wrapped: a corrupt record is ErrBadRecord, not ErrInvalidContact (bad input)
		return Contact{}, fmt.Errorf("%w: contact %s/%q: invalid record at revision %d: %v", ErrBadRecord, instanceID, contactID, rev, err)
	}
	c.Revision = rev
	return c, nil
}
