package store

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// OutcomeState says what an outcome record holds.
type OutcomeState string

const (
	// OutcomeFailed: the request failed, for good. Its reason code and
	// message are the failure result that was (or is being) published;
	// every later message of the request yields it. Retryable failures
	// (INTERNAL_ERROR after every attempt) are kept as well: the message
	// that got one yields it again, a later message is attempted afresh.
	OutcomeFailed OutcomeState = "FAILED"
	// OutcomeRetrying: not an outcome yet. Attempts counts the attempts
	// that met transient errors so far, so that a request is answered
	// INTERNAL_ERROR after a number of real attempts, whatever its
	// deliveries.
	OutcomeRetrying OutcomeState = "RETRYING"
)

// Outcome is the durable record of a request that did not end its
// contact: its failure, or its failed attempts so far. (A request that
// stopped its contact is recorded on the contact itself: ENDED, endedBy.)
// Outcome records of single requests live in the contacts bucket under
// [OutcomeKey], those of a bulk request's contacts next to the bulk's
// record (docs/store.md). They expire after Config.OutcomeTTL.
type Outcome struct {
	InstanceID string       `json:"instanceId"`
	ContactID  string       `json:"contactId"`
	RequestID  string       `json:"requestId"`
	State      OutcomeState `json:"state"`
	// The failure, when State is FAILED: as published in the result.
	ReasonCode string    `json:"reasonCode,omitempty"`
	Message    string    `json:"message,omitempty"`
	Retryable  bool      `json:"retryable,omitempty"`
	FailedAt   time.Time `json:"failedAt,omitzero"`
	// Seq is the requests-stream sequence of the message whose delivery
	// decided the failure (0 for a contact of a bulk request): only that
	// message publishes its result (again, if redelivered).
	Seq uint64 `json:"seq,omitempty"`
	// Attempts counts the attempts that met transient errors; LastError
	// is the last such error.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// Revision is the KV revision the record was read or written at. It is
	// not part of the stored JSON.
	Revision uint64 `json:"-"`
}

// Final reports whether o is an outcome (a failure) rather than a count
// of attempts.
func (o *Outcome) Final() bool { return o != nil && o.State == OutcomeFailed }

// RequestKey names one request to end one contact: the contact and the
// request's identity. BulkID is set for the contacts of a bulk request
// (RequestID is then "<bulkId>/<contactId>"): their failures are recorded
// next to the bulk's record.
type RequestKey struct {
	InstanceID, ContactID, RequestID string
	BulkID                           string
}

// contactKey returns the contact's key, and false when the ids cannot name
// a contact (an invalid request).
func (k RequestKey) contactKey() (string, bool) {
	if validateContactIDs(k.InstanceID, k.ContactID) != nil {
		return "", false
	}
	return ContactKey(k.InstanceID, k.ContactID), true
}

// outcomeDomain separates outcome-key hashes from any other SHA-256 of the
// same strings and versions the derivation.
const outcomeDomain = "contactstop outcome v1"

// OutcomeKey returns the key, in the contacts bucket, of the outcome record
// of a single request: "=o.<instanceId>.<hash>", or "=o.=.<hash>" when the
// instanceId is not valid (a request refused for it). The hash is the first
// 18 bytes, in unpadded URL-safe base64, of SHA-256 over "contactstop
// outcome v1" and then instanceId, contactId and requestId, each preceded
// by its length in bytes as an unsigned varint: any client can compute it.
// No contact key starts with "=", so listing an instance's contacts
// ("<instanceId>.>") never meets one.
func OutcomeKey(instanceID, contactID, requestID string) string {
	var stack [512]byte
	buf := append(stack[:0], outcomeDomain...)
	for _, s := range []string{instanceID, contactID, requestID} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	sum := sha256.Sum256(buf)
	inst := instanceID
	if validateInstanceID(inst) != nil {
		inst = "="
	}
	key := append(stack[:0], "=o."...)
	key = append(append(key, inst...), '.')
	return string(base64.RawURLEncoding.AppendEncode(key, sum[:18]))
}

// bulkFailureKey is the key, in the bulks bucket, of the failure record of
// one contact of a bulk request: "<bulk key>.f.<escaped contactId>".
func bulkFailureKey(instanceID, bulkID, contactID string) (string, error) {
	key, err := bulkKey(instanceID, bulkID)
	if err != nil {
		return "", err
	}
	if err := validateContactID(contactID); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	return key + ".f." + EscapeContactID(contactID), nil
}

// outcomeLocation returns the bucket and key of k's outcome record.
func (s *KV) outcomeLocation(k RequestKey) (bucket, string, error) {
	if k.BulkID != "" {
		key, err := bulkFailureKey(k.InstanceID, k.BulkID, k.ContactID)
		return s.bulksBucket, key, err
	}
	return s.contactsBucket, OutcomeKey(k.InstanceID, k.ContactID, k.RequestID), nil
}

// decodeOutcome decodes an outcome record; a record that does not decode
// is reported, and callers treat the key as holding no outcome.
func decodeOutcome(key string, data []byte, rev uint64) (*Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("store: outcome record %s at revision %d: %w", key, rev, err)
	}
	switch o.State {
	case OutcomeFailed, OutcomeRetrying:
	default:
		return nil, fmt.Errorf("store: outcome record %s at revision %d: unknown state %q", key, rev, o.State)
	}
	o.Revision = rev
	return &o, nil
}
