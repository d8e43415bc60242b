package worker

import (
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
)

// Request is one delivery of a contact.stop.requested message, decoded.
type Request struct {
	// Msg is the JetStream message; only the worker acknowledges it. It
	// is nil for the contacts of a bulk request.
	Msg jetstream.Msg
	// Headers are the message's headers (of the bulk request, for its
	// contacts); traceparent and Correlation-Id pass on to the result.
	Headers nats.Header
	// Identity is the requestId used for idempotency and reported in the
	// result: the body's requestId, else the Nats-Msg-Id header, else
	// "seq-<stream sequence>".
	Identity string
	// Stop is the decoded body. When Invalid is set it holds only what was
	// readable.
	Stop events.StopRequest
	// Invalid is why the request cannot be handled, or nil.
	Invalid *events.ValidationError
	// Instance is the instanceId the result is published under: the
	// subject's when valid, else the body's when valid, else "" (the bare
	// contact.stop.failed subject).
	Instance string
	// Deliveries counts this delivery: 1 the first time.
	Deliveries uint64
	// StreamSeq is the request's sequence in the requests stream.
	StreamSeq uint64
	// Published is when JetStream stored the request.
	Published time.Time
}

// newRequest decodes and validates a delivered message. It never fails: a
// bad message becomes a Request with Invalid set.
func newRequest(msg jetstream.Msg) *Request {
	r := &Request{Msg: msg, Headers: msg.Headers()}
	if meta, err := msg.Metadata(); err == nil {
		r.Deliveries = meta.NumDelivered
		r.StreamSeq = meta.Sequence.Stream
		r.Published = meta.Timestamp
	}
	stop, err := events.DecodeStopRequest(msg.Data())
	r.Stop = stop
	if err == nil {
		err = stop.CheckSubject(msg.Subject())
	}
	if err != nil {
		r.Invalid = asValidationError(err)
	}

	switch {
	case stop.RequestID != "" && (r.Invalid == nil || r.Invalid.Field != "requestId"):
		r.Identity = stop.RequestID
	case r.Headers.Get(events.HeaderMsgID) != "":
		r.Identity = r.Headers.Get(events.HeaderMsgID)
	default:
		r.Identity = "seq-" + strconv.FormatUint(r.StreamSeq, 10)
	}

	if inst, ok := events.SubjectInstance(msg.Subject()); ok && events.ValidInstanceID(inst) {
		r.Instance = inst
	} else if !ok && events.ValidInstanceID(stop.InstanceID) {
		r.Instance = stop.InstanceID
	}
	return r
}

func asValidationError(err error) *events.ValidationError {
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	return &events.ValidationError{Code: events.ReasonInvalidRequest, Reason: err.Error()}
}

// failure builds the failure result for this request.
func (r *Request) failure(code events.ReasonCode, message string) events.Result {
	return events.Result{Failed: &events.StopFailed{
		RequestID:  r.Identity,
		ContactID:  r.Stop.ContactID,
		InstanceID: r.Stop.InstanceID,
		ReasonCode: code,
		Message:    message,
		Retryable:  code.Retryable(),
	}}
}
