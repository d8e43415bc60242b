package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Publisher publishes stop requests to JetStream the way the worker expects
// them: validated, on the instance's subject, with a Nats-Msg-Id so that a
// request published twice is stored once. It is safe for concurrent use.
//
// A stream must capture the request subjects ("contact.stop.requested.>");
// the worker creates it on start.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher that publishes through js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js}
}

// PublishOption adds to one published request.
type PublishOption func(*publishOptions)

type publishOptions struct {
	traceparent   string
	correlationID string
}

// WithTraceparent sets the request's W3C traceparent header, which the
// worker passes on to the result. An empty value sets nothing.
func WithTraceparent(v string) PublishOption {
	return func(o *publishOptions) { o.traceparent = v }
}

// WithCorrelationID sets the request's Correlation-Id header, which the
// worker passes on to the result. An empty value sets nothing.
func WithCorrelationID(v string) PublishOption {
	return func(o *publishOptions) { o.correlationID = v }
}

// Receipt tells what JetStream stored for a published request.
type Receipt struct {
	// RequestID is the request's requestId: the caller's, or the one
	// Publisher.Stop generated. The result event carries the same ID.
	RequestID string `json:"requestId"`
	// Stream and Sequence locate the stored request.
	Stream   string `json:"stream"`
	Sequence uint64 `json:"sequence"`
	// Duplicate is true when JetStream had already stored a request with the
	// same instance and requestId within the stream's duplicate window; the
	// request was not stored again and Sequence is that of the first one.
	Duplicate bool `json:"duplicate"`
}

// Stop publishes one stop request and waits for JetStream to acknowledge it.
//
// It first validates req and returns the *ValidationError, having sent
// nothing, when req is invalid. When req.RequestID is empty it is set to a
// new random 22-character ID, returned in the Receipt; set it yourself to be
// able to publish the same request again safely. The request goes to
// StopRequestedSubject(req.InstanceID) with the Nats-Msg-Id header
// RequestMsgID(req.InstanceID, req.RequestID).
//
// Any other error means JetStream did not acknowledge the request, e.g. no
// stream captures the subject, or ctx ended; the request may or may not have
// been stored, and publishing it again with the same RequestID is safe
// within the duplicate window.
func (p *Publisher) Stop(ctx context.Context, req StopRequest, opts ...PublishOption) (Receipt, error) {
	if err := req.Validate(); err != nil {
		return Receipt{}, err
	}
	if req.RequestID == "" {
		req.RequestID = nuid.Next()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return Receipt{}, fmt.Errorf("events: encode stop request %s: %w", req.RequestID, err)
	}
	if len(data) > MaxMessageSize {
		return Receipt{}, invalidRequest("", fmt.Sprintf("message is %d bytes encoded, more than the limit of %d", len(data), MaxMessageSize))
	}

	return p.publish(ctx, StopRequestedSubject(req.InstanceID), data, RequestMsgID(req.InstanceID, req.RequestID), req.RequestID, opts)
}

// Bulk publishes one bulk request and waits for JetStream to acknowledge
// it, as Stop does for a stop request: it validates req first, fills BulkID
// with a new random ID when empty, and publishes to
// BulkRequestedSubject(req.InstanceID) with the Nats-Msg-Id
// BulkMsgID(req.InstanceID, req.BulkID). The receipt's RequestID is the
// BulkID.
func (p *Publisher) Bulk(ctx context.Context, req BulkRequest, opts ...PublishOption) (Receipt, error) {
	if err := req.Validate(); err != nil {
		return Receipt{}, err
	}
	if req.BulkID == "" {
		req.BulkID = nuid.Next()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return Receipt{}, fmt.Errorf("events: encode bulk request %s: %w", req.BulkID, err)
	}
	if len(data) > MaxMessageSize {
		return Receipt{}, invalidRequest("", fmt.Sprintf("message is %d bytes encoded, more than the limit of %d", len(data), MaxMessageSize))
	}
	return p.publish(ctx, BulkRequestedSubject(req.InstanceID), data, BulkMsgID(req.InstanceID, req.BulkID), req.BulkID, opts)
}

// publish sends one request with its Nats-Msg-Id and the options' headers.
func (p *Publisher) publish(ctx context.Context, subject string, data []byte, msgID, requestID string, opts []PublishOption) (Receipt, error) {
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 3)}
	msg.Header.Set(HeaderMsgID, msgID)
	if o.traceparent != "" {
		msg.Header.Set(HeaderTraceparent, o.traceparent)
	}
	if o.correlationID != "" {
		msg.Header.Set(HeaderCorrelationID, o.correlationID)
	}
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		return Receipt{}, fmt.Errorf("events: publish %s to %s: %w", requestID, subject, err)
	}
	return Receipt{RequestID: requestID, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
