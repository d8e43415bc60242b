package worker

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// Request is one delivery of a contact.stop.requested message, decoded.
type Request struct {
	// Msg is the JetStream message; only the worker acknowledges it.
	Msg jetstream.Msg
	// Headers are the message's headers; traceparent and Correlation-Id
	// pass on to the result.
	Headers nats.Header
	// Identity is the requestId used for idempotency and reported in the
	// result (events.RequestIdentity).
	Identity string
	// Stop is the decoded body. When Invalid is set it holds only what was
	// readable.
	Stop events.StopRequest
	// Invalid is why the request cannot be handled, or nil.
	Invalid *events.ValidationError
	// Instance is the instanceId the result is published under, and the
	// request's outcome recorded under: the subject's when valid (NATS
	// permissions vouch for it), else, on the bare subject, the body's when
	// valid (claimed: see Claimed), else "" (the bare contact.stop.failed
	// subject).
	Instance string
	// Claimed: Instance comes from the body of a request on the bare
	// subject, which no subject permission vouches for. With authorization
	// on, it stands only once the token authorizes the request; a request
	// refused before that is answered on the bare subject, and nothing is
	// recorded under that instance.
	Claimed bool
	// Deliveries counts this delivery: 1 the first time.
	Deliveries uint64
	// StreamSeq is the request's sequence in the requests stream.
	StreamSeq uint64
	// Published is when JetStream stored the request.
	Published time.Time
	// Received is when this process took the delivery from the consumer.
	Received time.Time
}

// newRequest decodes and validates a delivered message. It never fails: a
// bad message becomes a Request with Invalid set.
func newRequest(msg jetstream.Msg, received time.Time) *Request {
	r := &Request{Msg: msg, Headers: msg.Headers(), Received: received}
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
	requestID := stop.RequestID
	if r.Invalid != nil && r.Invalid.Field == "requestId" {
		requestID = ""
	}
	r.Identity = events.RequestIdentity(requestID, r.Headers.Get(events.HeaderMsgID), r.StreamSeq)

	if inst, ok := events.SubjectInstance(msg.Subject()); ok && events.ValidInstanceID(inst) {
		r.Instance = inst
	} else if !ok && events.ValidInstanceID(stop.InstanceID) {
		r.Instance, r.Claimed = stop.InstanceID, true
	}
	return r
}

// disown answers the request on the bare subject: its claimed instance
// was not vouched for.
func (r *Request) disown() {
	if r.Claimed {
		r.Instance, r.Claimed = "", false
	}
}

// key names the request in the store. Its instance is the one its result
// goes to (the subject's, which NATS permissions vouch for), so that a
// request refused for naming another instance in its body can never
// record anything under that instance.
func (r *Request) key() store.RequestKey {
	return store.RequestKey{InstanceID: r.Instance, ContactID: r.Stop.ContactID, RequestID: r.Identity}
}

func asValidationError(err error) *events.ValidationError {
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	return &events.ValidationError{Code: events.ReasonInvalidRequest, Reason: err.Error()}
}
