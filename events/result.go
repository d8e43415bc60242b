package events

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Stopped is the body of a message on StoppedSubject(InstanceID): the contact
// was active and this request moved it to ENDED. Of several requests for the
// same contact exactly one gets a Stopped event; the others get a StopFailed
// with CONTACT_NOT_FOUND.
type Stopped struct {
	// RequestID is the identity of the request: its requestId, or its
	// Nats-Msg-Id when that was absent, or its stream sequence.
	RequestID string `json:"requestId"`
	// ContactID and InstanceID are those of the request.
	ContactID  string `json:"contactId"`
	InstanceID string `json:"instanceId"`
	// PreviousState is the contact's state before it ended: INITIATED,
	// QUEUED, CONNECTED or ON_HOLD.
	PreviousState string `json:"previousState"`
	// DisconnectReason is the request's disconnectReason, when it had one.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// StoppedAt is when the contact ended, RFC 3339 with nanoseconds.
	StoppedAt time.Time `json:"stoppedAt"`
}

// StopFailed is the body of a message on StopFailedSubject(InstanceID): the
// request was refused or could not be carried out, and nothing was changed.
type StopFailed struct {
	// RequestID is the identity of the request, as for Stopped; it may be
	// empty only when the request could not be identified at all.
	RequestID string `json:"requestId"`
	// ContactID and InstanceID are echoed as received, when readable, even
	// if they are what made the request invalid.
	ContactID  string `json:"contactId"`
	InstanceID string `json:"instanceId"`
	// ReasonCode says why; see ReasonCode.
	ReasonCode ReasonCode `json:"reasonCode"`
	// Message explains the failure to a person. Do not parse it.
	Message string `json:"message"`
	// Retryable is ReasonCode.Retryable(): true only for INTERNAL_ERROR,
	// when publishing the same request again may succeed.
	Retryable bool `json:"retryable"`
	// FailedAt is when the failure was decided, RFC 3339 with nanoseconds.
	FailedAt time.Time `json:"failedAt"`
}

// Result is one decoded result event: exactly one of Stopped and Failed is
// set.
type Result struct {
	Stopped *Stopped
	Failed  *StopFailed
}

// RequestID returns the requestId of whichever event is set, or "" for the
// zero Result.
func (r Result) RequestID() string {
	switch {
	case r.Stopped != nil:
		return r.Stopped.RequestID
	case r.Failed != nil:
		return r.Failed.RequestID
	}
	return ""
}

// DecodeResult decodes the body of a result event, choosing the kind by the
// subject it arrived on: "contact.stopped.<instanceId>" gives a Stopped,
// "contact.stop.failed" or "contact.stop.failed.<instanceId>" a StopFailed.
// Unknown fields are ignored, so that results can gain fields. It returns an
// error for any other subject, or for a body that is not a JSON object of
// the kind's shape.
func DecodeResult(subject string, data []byte) (Result, error) {
	switch {
	case strings.HasPrefix(subject, SubjectStopped+"."):
		s := new(Stopped)
		if err := decodeResultBody(data, s); err != nil {
			return Result{}, fmt.Errorf("events: decode result on %s: %w", subject, err)
		}
		return Result{Stopped: s}, nil
	case subject == SubjectStopFailed || strings.HasPrefix(subject, SubjectStopFailed+"."):
		f := new(StopFailed)
		if err := decodeResultBody(data, f); err != nil {
			return Result{}, fmt.Errorf("events: decode result on %s: %w", subject, err)
		}
		return Result{Failed: f}, nil
	}
	return Result{}, fmt.Errorf("events: decode result: %q is not a result subject", subject)
}

func decodeResultBody(data []byte, v any) error {
	if err := checkObjectStart(data); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// resultMsgIDDomain separates these hashes from any other use of SHA-256 on
// the same strings, and versions the derivation.
const resultMsgIDDomain = "contactstop result v1"

// ResultMsgID returns the Nats-Msg-Id of the result of the request
// identified by (instanceID, contactID, requestID). It is deterministic, so a
// result published again within the stream's duplicate window is dropped by
// JetStream, and distinct for distinct triples, whatever bytes they hold.
//
// The derivation is part of the wire contract, so that any implementation
// computes the same ID: SHA-256 over the bytes "contactstop result v1"
// followed by instanceID, contactID and requestID, each preceded by its
// length in bytes as an unsigned varint (encoding/binary.AppendUvarint);
// the ID is "csr-" and the first 18 bytes of the hash in unpadded URL-safe
// base64, 28 characters in all.
func ResultMsgID(instanceID, contactID, requestID string) string {
	var stack [256]byte
	buf := append(stack[:0], resultMsgIDDomain...)
	buf = appendLengthPrefixed(buf, instanceID)
	buf = appendLengthPrefixed(buf, contactID)
	buf = appendLengthPrefixed(buf, requestID)
	sum := sha256.Sum256(buf)

	const prefix = "csr-"
	var id [len(prefix) + 24]byte
	copy(id[:], prefix)
	base64.RawURLEncoding.Encode(id[len(prefix):], sum[:18])
	return string(id[:])
}

// retryableResultMsgIDDomain separates RetryableResultMsgID's hashes from
// ResultMsgID's.
const retryableResultMsgIDDomain = "contactstop retryable result v1"

// RetryableResultMsgID returns the Nats-Msg-Id of a retryable INTERNAL_ERROR
// answering one message of a request: such an answer says "try again", and
// a later message of the same request, attempted afresh, must be able to
// store its own result. It is derived as ResultMsgID is, with the domain
// "contactstop retryable result v1" and the message's stream sequence
// appended as an unsigned varint, and the prefix "csr-r-": a redelivery of
// the same message gets the same ID (and JetStream drops the repeat), a
// resend a different one.
func RetryableResultMsgID(instanceID, contactID, requestID string, streamSeq uint64) string {
	var stack [256]byte
	buf := append(stack[:0], retryableResultMsgIDDomain...)
	buf = appendLengthPrefixed(buf, instanceID)
	buf = appendLengthPrefixed(buf, contactID)
	buf = appendLengthPrefixed(buf, requestID)
	buf = binary.AppendUvarint(buf, streamSeq)
	sum := sha256.Sum256(buf)
	return "csr-r-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

func appendLengthPrefixed(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// RequestMsgID returns the Nats-Msg-Id that Publisher sets on a request:
// instanceID + ":" + requestID. Request IDs therefore only need to be unique
// within an instance: two tenants both using "r-1" are not deduplicated
// against each other. The result is unambiguous for valid instance IDs,
// which cannot contain ":".
func RequestMsgID(instanceID, requestID string) string {
	return instanceID + ":" + requestID
}
