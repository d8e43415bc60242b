package events

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of bulk requests and emergency broadcasts.
const (
	maxBulkIDChars       = 128
	maxFilterValues      = 1000
	maxQueueIDChars      = 256
	maxEmergencyMsgChars = 4096
)

// ContactStates are the states a contact can be in; all but ENDED are
// active. ChannelNames are the contact channels. Both are part of the
// contract: bulk filters name them.
var (
	ContactStates = []string{"INITIATED", "QUEUED", "CONNECTED", "ON_HOLD", "ENDED"}
	ChannelNames  = []string{"VOICE", "CHAT", "EMAIL", "SMS", "VOICEMAIL", "WORK_ITEM"}
)

// DefaultBulkStates is what a bulk filter without states matches.
var DefaultBulkStates = []string{"QUEUED"}

// BulkRequest asks for every contact of one instance that matches Filter
// to be stopped. It is the JSON body of a message on SubjectBulkRequested.
// Each matching contact is stopped as by a StopRequest whose requestId is
// BulkItemRequestID(BulkID, contactId), and one BulkCompleted summarises
// the whole.
type BulkRequest struct {
	// BulkID is the idempotency key of the bulk request, 1 to 128
	// characters, optional: when empty the worker uses the message's
	// Nats-Msg-Id, or failing that its stream sequence. A bulk request
	// with the BulkID of a finished one does nothing again.
	BulkID string `json:"bulkId,omitempty"`
	// InstanceID is the tenant whose contacts are cleared; required.
	InstanceID string `json:"instanceId"`
	// Filter selects the contacts; an empty filter matches every QUEUED
	// contact of the instance.
	Filter BulkFilter `json:"filter"`
	// DisconnectReason is recorded on every stopped contact; optional.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// SecurityUser is the caller's token when authorization is on.
	SecurityUser string `json:"securityUser,omitempty"`
}

// BulkFilter selects contacts: a contact matches when it matches every
// field given. An absent field matches all; an empty list is refused.
type BulkFilter struct {
	// States the contact is in; default DefaultBulkStates. ENDED is refused:
	// ended contacts cannot be stopped.
	States []string `json:"states,omitempty"`
	// QueueIDs the contact is queued in.
	QueueIDs []string `json:"queueIds,omitempty"`
	// Channels of the contact (ChannelNames).
	Channels []string `json:"channels,omitempty"`
	// EnqueuedBefore matches contacts enqueued strictly before this time
	// (RFC 3339). A contact never enqueued does not match.
	EnqueuedBefore *time.Time `json:"enqueuedBefore,omitempty"`
}

// EffectiveStates returns the states the filter matches.
func (f BulkFilter) EffectiveStates() []string {
	if len(f.States) == 0 {
		return DefaultBulkStates
	}
	return f.States
}

// DecodeBulkRequest checks the size of a message body, decodes it and
// validates it. On failure it returns a *ValidationError (INVALID_REQUEST
// for a body that is not one JSON object of UTF-8 text with fields of the
// right types, INVALID_PARAMETER for a field that breaks a constraint) and
// whatever fields could be read, so that the failure event can echo them.
func DecodeBulkRequest(data []byte) (BulkRequest, error) {
	var r BulkRequest
	if err := decodeObject(data, &r); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// EmergencyBulkIDPrefix starts the bulkId of every clear an emergency
// broadcast starts ("emergency-<Nats-Msg-Id>"); a bulk request may not use
// it, so that no bulk request can pre-empt an emergency's clear.
const EmergencyBulkIDPrefix = "emergency-"

// Validate checks the constraints of a bulk request: instanceId, bulkId
// when set (1 to 128 characters, not starting with EmergencyBulkIDPrefix),
// disconnectReason when set, securityUser, then the filter.
func (r BulkRequest) Validate() error {
	if err := checkInstanceID(r.InstanceID); err != nil {
		return err
	}
	if r.BulkID != "" {
		if err := checkText("bulkId", r.BulkID, maxBulkIDChars); err != nil {
			return err
		}
		if strings.HasPrefix(r.BulkID, EmergencyBulkIDPrefix) {
			return invalidParameter("bulkId", fmt.Sprintf("must not start with %q: it is reserved for emergency broadcasts", EmergencyBulkIDPrefix))
		}
	}
	if r.DisconnectReason != "" {
		if err := checkText("disconnectReason", r.DisconnectReason, maxDisconnectReasonChars); err != nil {
			return err
		}
	}
	if len(r.SecurityUser) > maxSecurityUserBytes {
		return invalidParameter("securityUser", fmt.Sprintf("must be at most %d bytes, got %d", maxSecurityUserBytes, len(r.SecurityUser)))
	}
	return r.Filter.validate()
}

// Validate checks the filter as a bulk request's Validate does: known
// states (not ENDED) and channels, non-empty lists of at most 1000 values,
// queue ids of 1 to 256 characters. It returns a *ValidationError.
func (f BulkFilter) Validate() error {
	return f.validate()
}

func (f BulkFilter) validate() error {
	if f.States != nil {
		if err := checkNames("filter.states", f.States, ContactStates[:4], "ENDED contacts cannot be stopped"); err != nil {
			return err
		}
	}
	if f.Channels != nil {
		if err := checkNames("filter.channels", f.Channels, ChannelNames, ""); err != nil {
			return err
		}
	}
	if f.QueueIDs != nil {
		if err := checkQueueIDs("filter.queueIds", f.QueueIDs); err != nil {
			return err
		}
	}
	return nil
}

func checkList(field string, vs []string) *ValidationError {
	if len(vs) == 0 {
		return invalidParameter(field, "must not be empty; leave it out to match all")
	}
	if len(vs) > maxFilterValues {
		return invalidParameter(field, fmt.Sprintf("must have at most %d values, got %d", maxFilterValues, len(vs)))
	}
	return nil
}

func checkNames(field string, vs, valid []string, endedHint string) *ValidationError {
	if err := checkList(field, vs); err != nil {
		return err
	}
	for _, v := range vs {
		if !slices.Contains(valid, v) {
			msg := fmt.Sprintf("%q is not one of %s", v, strings.Join(valid, ", "))
			if v == "ENDED" && endedHint != "" {
				msg = endedHint
			}
			return invalidParameter(field, msg)
		}
	}
	return nil
}

func checkQueueIDs(field string, vs []string) *ValidationError {
	if err := checkList(field, vs); err != nil {
		return err
	}
	for _, v := range vs {
		if err := checkText(field, v, maxQueueIDChars); err != nil {
			return err
		}
	}
	return nil
}

// decodeObject decodes one JSON object into v with the checks every
// message gets: size, a single object, UTF-8, field types (null counts as
// absent).
func decodeObject(data []byte, v any) error {
	if len(data) > MaxMessageSize {
		return invalidRequest("", fmt.Sprintf("message is %d bytes, more than the limit of %d", len(data), MaxMessageSize))
	}
	if err := checkObjectStart(data); err != nil {
		return err
	}
	if !utf8.Valid(data) {
		return invalidRequest("", "message is not valid UTF-8")
	}
	err := json.Unmarshal(data, v)
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return invalidRequest(te.Field, "must be "+jsonTypeName(te.Type.Kind().String())+", got "+te.Value)
	case errors.As(err, &pe):
		return invalidParameter("filter.enqueuedBefore", "must be an RFC 3339 time, got "+pe.Value)
	default:
		return invalidRequest("", "message is not valid JSON: "+err.Error())
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "string":
		return "a string"
	case "ptr":
		return "a string"
	}
	return kind
}

// BulkItemRequestID is the requestId with which a bulk request stops one
// contact: "<bulkId>/<contactId>".
func BulkItemRequestID(bulkID, contactID string) string {
	return bulkID + "/" + contactID
}

// BulkMsgID is the Nats-Msg-Id Publisher.Bulk sets on a bulk request:
// "bulk:<instanceId>:<bulkId>".
func BulkMsgID(instanceID, bulkID string) string {
	return "bulk:" + instanceID + ":" + bulkID
}

// BulkCompletedMsgID is the Nats-Msg-Id of the completion event of a bulk
// request, derived from its instance and bulkId, so that it is stored once.
func BulkCompletedMsgID(instanceID, bulkID string) string {
	h := sha256.New()
	h.Write([]byte("contactstop bulk completed v1\x00"))
	h.Write([]byte(instanceID))
	h.Write([]byte{0})
	h.Write([]byte(bulkID))
	return "csb-" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

// BulkRequestedSubject returns "contact.stop.bulk.requested.<instanceID>",
// the subject on which NATS permissions can confine a publisher of bulk
// requests to its own instances. The instance ID must be valid.
func BulkRequestedSubject(instanceID string) string {
	return SubjectBulkRequested + "." + instanceID
}

// BulkSubjectInstance reports the instance token of a bulk request subject:
// ("acme", true) for "contact.stop.bulk.requested.acme", ("", false) for the
// bare subject or any other. The token is returned unvalidated.
func BulkSubjectInstance(subject string) (string, bool) {
	return instanceToken(subject, SubjectBulkRequested)
}

// CheckSubject checks a bulk request against the subject it arrived on: on
// "contact.stop.bulk.requested.<X>", X must be a valid instance ID equal to
// r.InstanceID, else a *ValidationError (INVALID_PARAMETER, field
// "instanceId"). On the bare subject it returns nil.
func (r BulkRequest) CheckSubject(subject string) error {
	inst, ok := BulkSubjectInstance(subject)
	return checkSubjectInstance(subject, inst, ok, r.InstanceID)
}

// BulkCompletedSubject returns "contact.stop.bulk.completed.<instanceID>".
func BulkCompletedSubject(instanceID string) string {
	return SubjectBulkCompleted + "." + instanceID
}

// BulkCompleted is the body of the one message on
// BulkCompletedSubject(InstanceID) that ends a bulk request, published when
// every matched contact has its result.
type BulkCompleted struct {
	BulkID     string `json:"bulkId"`
	InstanceID string `json:"instanceId"`
	// Matched contacts: Matched = Stopped + Failed + Skipped. Stopped of
	// them got contact.stopped and Failed contact.stop.failed (one stored
	// result each, whatever the takeovers); Skipped matched when the clear
	// found them but no longer when it came to end them (answered by an
	// agent, moved to another queue, ended by another request) and were
	// left alone, without a result.
	Matched int `json:"matched"`
	Stopped int `json:"stopped"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Unreadable counts the instance's records that could not be read as
	// contacts (a body that does not decode, a key not in the documented
	// encoding, an unknown state): they were passed over, not matched.
	Unreadable int `json:"unreadable"`
	// ReasonCodes counts the failures by reason code; always present, empty
	// when nothing failed.
	ReasonCodes map[ReasonCode]int `json:"reasonCodes"`
	// Cancelled is true when the bulk request was cancelled (bulk cancel)
	// before it reached every matching contact: the counts are those of the
	// contacts it reached; the others were left as they were.
	Cancelled   bool      `json:"cancelled"`
	StartedAt   time.Time `json:"startedAt"`
	CompletedAt time.Time `json:"completedAt"`
}

// EmergencyBroadcast is the body of a message on
// "emergency.broadcast.<instanceId>": an emergency for the instance. When
// the worker's emergency handler is on, it clears the instance's QUEUED
// contacts in QueueIDs (all queues when absent) with disconnectReason
// EMERGENCY.
type EmergencyBroadcast struct {
	QueueIDs []string `json:"queueIds,omitempty"`
	Message  string   `json:"message,omitempty"`
	// SecurityUser is the alerting system's token when authorization is
	// on; it needs contact:BulkStop on the instance.
	SecurityUser string `json:"securityUser,omitempty"`
}

// DecodeEmergencyBroadcast decodes and validates a broadcast body. An empty
// body is an empty broadcast (every queue).
func DecodeEmergencyBroadcast(data []byte) (EmergencyBroadcast, error) {
	var b EmergencyBroadcast
	if len(strings.TrimSpace(string(data))) == 0 {
		return b, nil
	}
	if err := decodeObject(data, &b); err != nil {
		return b, err
	}
	if b.QueueIDs != nil {
		if err := checkQueueIDs("queueIds", b.QueueIDs); err != nil {
			return b, err
		}
	}
	if len(b.SecurityUser) > maxSecurityUserBytes {
		return b, invalidParameter("securityUser", fmt.Sprintf("must be at most %d bytes, got %d", maxSecurityUserBytes, len(b.SecurityUser)))
	}
	if utf8.RuneCountInString(b.Message) > maxEmergencyMsgChars {
		return b, invalidParameter("message", fmt.Sprintf("must be at most %d characters", maxEmergencyMsgChars))
	}
	return b, nil
}

// EmergencySubject returns "emergency.broadcast.<instanceID>".
func EmergencySubject(instanceID string) string {
	return SubjectEmergencyBroadcast + "." + instanceID
}

// EmergencyInstance returns the instance of an emergency subject, and
// whether it is a valid instance ID.
func EmergencyInstance(subject string) (string, bool) {
	inst, ok := strings.CutPrefix(subject, SubjectEmergencyBroadcast+".")
	return inst, ok && ValidInstanceID(inst)
}
