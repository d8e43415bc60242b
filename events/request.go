package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxMessageSize is the largest request body accepted, in bytes: a body of
// exactly 64 KiB is decoded, one byte more is INVALID_REQUEST.
const MaxMessageSize = 64 << 10

// Field limits of a StopRequest. Lengths are in characters (Unicode code
// points) except for securityUser, which is in bytes.
const (
	maxInstanceIDChars       = 100
	maxContactIDChars        = 256
	maxRequestIDChars        = 128
	maxDisconnectReasonChars = 128
	maxSecurityUserBytes     = 8 << 10
)

// StopRequest asks for one contact to be stopped. It is the JSON body of a
// message on "contact.stop.requested" or StopRequestedSubject(InstanceID).
// Unknown fields in a received message are ignored.
type StopRequest struct {
	// RequestID is the idempotency key, 1 to 128 characters, optional. When
	// it is empty the worker identifies the request by its Nats-Msg-Id
	// header, or failing that by its stream sequence; the result's requestId
	// is the identity that was used. Publisher.Stop fills it in when empty.
	RequestID string `json:"requestId,omitempty"`
	// ContactID is the contact to stop: required, 1 to 256 characters of any
	// UTF-8 text (UUIDs, numbers, strings with "/", ".", spaces or
	// non-ASCII all occur).
	ContactID string `json:"contactId"`
	// InstanceID is the tenant: required, 1 to 100 characters of
	// [A-Za-z0-9_-] (see ValidInstanceID).
	InstanceID string `json:"instanceId"`
	// DisconnectReason is recorded on the contact: optional, 1 to 128
	// characters when given.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// SecurityUser is the caller's token, required when the worker has
	// authorization on; at most 8 KiB. Its content is checked by the worker,
	// not here.
	SecurityUser string `json:"securityUser,omitempty"`
}

// stopRequestWire is the decoding form of StopRequest, which keeps whether
// each field was present and of the right type. The fields' text goes to
// one buffer, so that the strings of a request cost one allocation.
type stopRequestWire struct {
	RequestID        jsonString `json:"requestId"`
	ContactID        jsonString `json:"contactId"`
	InstanceID       jsonString `json:"instanceId"`
	DisconnectReason jsonString `json:"disconnectReason"`
	SecurityUser     jsonString `json:"securityUser"`

	text strings.Builder
}

// textBufferSize bounds the buffer allocated up front for the text of a
// request's fields: the text is never longer than the body, and usually
// much shorter than this; a longer text grows the buffer.
const textBufferSize = 512

func newStopRequestWire(bodySize int) *stopRequestWire {
	w := new(stopRequestWire)
	w.text.Grow(min(bodySize, textBufferSize))
	for _, f := range w.fields() {
		f.s.text = &w.text
	}
	return w
}

// fields lists the fields in the order they are checked.
func (w *stopRequestWire) fields() [5]struct {
	name string
	s    *jsonString
} {
	return [...]struct {
		name string
		s    *jsonString
	}{
		{"instanceId", &w.InstanceID},
		{"contactId", &w.ContactID},
		{"requestId", &w.RequestID},
		{"disconnectReason", &w.DisconnectReason},
		{"securityUser", &w.SecurityUser},
	}
}

// request returns the fields that could be read as strings.
func (w *stopRequestWire) request() StopRequest {
	text := w.text.String()
	return StopRequest{
		RequestID:        w.RequestID.value(text),
		ContactID:        w.ContactID.value(text),
		InstanceID:       w.InstanceID.value(text),
		DisconnectReason: w.DisconnectReason.value(text),
		SecurityUser:     w.SecurityUser.value(text),
	}
}

// DecodeStopRequest checks the size of one message body, decodes it and
// validates it, returning the request and nil when it is acceptable.
//
// On failure the error is a *ValidationError, and the first failure found
// is returned, in this order:
//
//   - INVALID_REQUEST, field "": the body is larger than MaxMessageSize
//     (checked before decoding), is not one JSON object and nothing else,
//     or is not UTF-8.
//   - INVALID_REQUEST, field set: a known field is not a string, or holds a
//     \u escape of an unpaired surrogate. JSON null counts as absent.
//     Fields are checked in the order instanceId, contactId, requestId,
//     disconnectReason, securityUser.
//   - INVALID_PARAMETER, field set: a field breaks a constraint of
//     Validate, in the same order; a requestId or disconnectReason that is
//     present but "" is refused too.
//
// Even on failure the returned StopRequest holds every field that could be
// read as a string (with bytes that are not UTF-8 replaced by U+FFFD), so
// that the failure event can echo them; it is empty when the body is too
// large or not a JSON object.
//
// Field names are matched as encoding/json matches them, preferring an
// exact match but also accepting a different case ("ContactId"); when a
// field appears twice, the last one counts. Unknown fields are ignored,
// whatever they hold.
func DecodeStopRequest(data []byte) (StopRequest, error) {
	if len(data) > MaxMessageSize {
		return StopRequest{}, invalidRequest("", fmt.Sprintf("message is %d bytes, more than the limit of %d", len(data), MaxMessageSize))
	}
	if r, requestIDSet, reasonSet, ok := decodeCanonicalStopRequest(data); ok {
		if err := r.validate(requestIDSet, reasonSet); err != nil {
			return r, err
		}
		return r, nil
	}
	return decodeStopRequestJSON(data)
}

// decodeStopRequestJSON is DecodeStopRequest for any body, through
// encoding/json.
func decodeStopRequestJSON(data []byte) (StopRequest, error) {
	if err := checkObjectStart(data); err != nil {
		return StopRequest{}, err
	}
	w := newStopRequestWire(len(data))
	if err := json.Unmarshal(data, w); err != nil {
		return StopRequest{}, invalidRequest("", "message is not valid JSON: "+err.Error())
	}
	r := w.request()
	if !utf8.Valid(data) {
		r.RequestID = strings.ToValidUTF8(r.RequestID, string(utf8.RuneError))
		r.ContactID = strings.ToValidUTF8(r.ContactID, string(utf8.RuneError))
		r.InstanceID = strings.ToValidUTF8(r.InstanceID, string(utf8.RuneError))
		r.DisconnectReason = strings.ToValidUTF8(r.DisconnectReason, string(utf8.RuneError))
		r.SecurityUser = strings.ToValidUTF8(r.SecurityUser, string(utf8.RuneError))
		return r, invalidRequest("", "message is not valid UTF-8")
	}
	for _, f := range w.fields() {
		if err := f.s.readError(f.name); err != nil {
			return r, err
		}
	}
	if err := r.validate(w.RequestID.state == jsonSet, w.DisconnectReason.state == jsonSet); err != nil {
		return r, err
	}
	return r, nil
}

// checkObjectStart refuses a body whose first non-whitespace byte is not
// '{'. json.Unmarshal would accept null as a no-op and report other kinds
// of values with a type error; the rest of the syntax it checks itself,
// including trailing data after the object.
func checkObjectStart(data []byte) error {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return nil
		}
		return invalidRequest("", "message is not a JSON object")
	}
	return invalidRequest("", "message is empty, want a JSON object")
}

// Validate checks the field constraints of a request built in Go, as
// DecodeStopRequest checks a received one: instanceId, then contactId, then
// requestId and disconnectReason (an empty one counts as absent, as it is
// when encoded), then securityUser. It returns the first failure as a
// *ValidationError, INVALID_PARAMETER for a broken constraint or
// INVALID_REQUEST for a field that is not valid UTF-8 (json.Marshal would
// silently alter it), and nil when the request is acceptable.
func (r StopRequest) Validate() error {
	if err := r.validate(r.RequestID != "", r.DisconnectReason != ""); err != nil {
		return err
	}
	return nil
}

// validate returns a *ValidationError or nil; the optional fields are
// checked when set, even if empty.
func (r StopRequest) validate(requestIDSet, disconnectReasonSet bool) *ValidationError {
	if err := checkInstanceID(r.InstanceID); err != nil {
		return err
	}
	if r.ContactID == "" {
		return invalidParameter("contactId", "is required")
	}
	if err := checkText("contactId", r.ContactID, maxContactIDChars); err != nil {
		return err
	}
	if requestIDSet {
		if err := checkText("requestId", r.RequestID, maxRequestIDChars); err != nil {
			return err
		}
	}
	if disconnectReasonSet {
		if err := checkText("disconnectReason", r.DisconnectReason, maxDisconnectReasonChars); err != nil {
			return err
		}
	}
	if r.SecurityUser != "" {
		if !utf8.ValidString(r.SecurityUser) {
			return invalidRequest("securityUser", "is not valid UTF-8")
		}
		if len(r.SecurityUser) > maxSecurityUserBytes {
			return invalidParameter("securityUser", fmt.Sprintf("must be at most %d bytes, got %d", maxSecurityUserBytes, len(r.SecurityUser)))
		}
	}
	return nil
}

// checkText checks a text field of 1 to maxChars characters.
func checkText(field, s string, maxChars int) *ValidationError {
	if !utf8.ValidString(s) {
		return invalidRequest(field, "is not valid UTF-8")
	}
	n := len(s)
	if n > maxChars { // only then can the count of characters exceed it
		n = utf8.RuneCountInString(s)
	}
	if n == 0 || n > maxChars {
		return invalidParameter(field, fmt.Sprintf("must be 1 to %d characters, got %d", maxChars, n))
	}
	return nil
}

func checkInstanceID(s string) *ValidationError {
	const field = "instanceId"
	if s == "" {
		return invalidParameter(field, "is required")
	}
	if !utf8.ValidString(s) {
		return invalidRequest(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > maxInstanceIDChars {
		return invalidParameter(field, fmt.Sprintf("must be 1 to %d characters, got %d", maxInstanceIDChars, n))
	}
	for i, c := range s {
		if !instanceIDChar(c) {
			return invalidParameter(field, fmt.Sprintf("must be only characters of [A-Za-z0-9_-], got %q at byte %d", c, i))
		}
	}
	return nil
}

// CheckSubject checks the request against the subject it arrived on. On
// "contact.stop.requested.<X>" it returns a *ValidationError
// (INVALID_PARAMETER, field "instanceId") unless X is a valid instance ID
// equal to r.InstanceID. On the bare "contact.stop.requested", or a subject
// that is not a request subject, it returns nil.
func (r StopRequest) CheckSubject(subject string) error {
	inst, ok := SubjectInstance(subject)
	return checkSubjectInstance(subject, inst, ok, r.InstanceID)
}

// ValidInstanceID reports whether s is a valid instance ID: 1 to 100
// characters of [A-Za-z0-9_-]. Such an ID is always a single NATS subject
// token.
func ValidInstanceID(s string) bool {
	if len(s) == 0 || len(s) > maxInstanceIDChars {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !instanceIDChar(rune(s[i])) {
			return false
		}
	}
	return true
}

func instanceIDChar(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}
