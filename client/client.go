package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// ErrNoResult is returned (wrapped, together with the context's error) by
// Stop with Wait when the context ends before the request's result is
// published. The request was stored and goes on; publishing it again with
// the same requestId is safe and yields its outcome.
var ErrNoResult = errors.New("no result yet")

// Receipt tells what JetStream stored for a published request: its
// requestId (or bulkId), where it was stored and whether it was a duplicate
// of an earlier one.
type Receipt = events.Receipt

// StopOptions are the options of one Stop.
type StopOptions struct {
	// Wait makes Stop wait for the request's result and return it.
	Wait bool
	// Traceparent is the W3C traceparent header the request carries and
	// the worker passes on to the result; empty: none.
	Traceparent string
	// CorrelationID is the Correlation-Id header the request carries and
	// the worker passes on to the result; empty: none.
	CorrelationID string
}

// Client publishes requests through one JetStream context.
type Client struct {
	js  jetstream.JetStream
	pub *events.Publisher

	mu sync.Mutex
	st *store.KV // nil until needed when New was given none
}

// New returns a Client that publishes through js and reads requests'
// recorded outcomes from st. st may be nil: the store is then opened when
// Stop with Wait first needs it, without changing the buckets' configuration
// (they must exist: contactstop serve creates them).
func New(js jetstream.JetStream, st *store.KV) *Client {
	return &Client{js: js, pub: events.NewPublisher(js), st: st}
}

// Stop publishes req and, with opts.Wait, waits for its result.
//
// When req.RequestID is empty a random one is made; the Receipt holds the
// identity used. An invalid request is refused before anything is sent with
// an error that wraps the *events.ValidationError (match it with
// errors.As). Other publishing errors mean JetStream did not acknowledge the
// request; sending it again with the same RequestID is safe.
//
// Without Wait the Result is nil. With Wait, Stop returns the result the
// worker published for this request (a contact.stopped or a
// contact.stop.failed event), or, for a request sent again, the result of
// the first one. When ctx ends first it returns the Receipt, a nil Result
// and an error wrapping ErrNoResult and ctx.Err().
func (c *Client) Stop(ctx context.Context, req events.StopRequest, opts StopOptions) (Receipt, *events.Result, error) {
	var popts []events.PublishOption
	if opts.Traceparent != "" {
		popts = append(popts, events.WithTraceparent(opts.Traceparent))
	}
	if opts.CorrelationID != "" {
		popts = append(popts, events.WithCorrelationID(opts.CorrelationID))
	}
	// Open the results cursor before publishing, so the result cannot slip
	// past between the two.
	var results *ResultWaiter
	if opts.Wait {
		var err error
		results, err = NewResultWaiter(ctx, c.js, events.StoppedSubject(req.InstanceID), events.StopFailedSubject(req.InstanceID))
		if err != nil {
			return Receipt{}, nil, err
		}
	}
	receipt, err := c.pub.Stop(ctx, req, popts...)
	if err != nil {
		return Receipt{}, nil, fmt.Errorf("publish request: %w", err)
	}
	if !opts.Wait {
		return receipt, nil, nil
	}
	// A request answered before (this is a resend) stores no new result:
	// its recorded outcome tells from when to look for the one it has.
	from := c.answeredAt(ctx, store.RequestKey{InstanceID: req.InstanceID, ContactID: req.ContactID, RequestID: receipt.RequestID}, receipt.Duplicate)
	var res events.Result
	err = results.Find(ctx, receipt.Duplicate, from, func(subject string, data []byte) bool {
		r, err := events.DecodeResult(subject, data)
		if err != nil || r.RequestID() != receipt.RequestID || resultContact(r) != req.ContactID {
			return false
		}
		res = r
		return true
	})
	if err != nil {
		return receipt, nil, fmt.Errorf("request %s: %w", receipt.RequestID, err)
	}
	return receipt, &res, nil
}

// Clear publishes one bulk request and returns once JetStream has stored
// it. When req.BulkID is empty a random one is made; the Receipt's
// RequestID is the bulkId. An invalid request is refused before anything is
// sent with an error that wraps the *events.ValidationError. The bulk's
// summary is published later on events.BulkCompletedSubject(instance).
func (c *Client) Clear(ctx context.Context, req events.BulkRequest) (Receipt, error) {
	receipt, err := c.pub.Bulk(ctx, req)
	if err != nil {
		return Receipt{}, fmt.Errorf("publish bulk request: %w", err)
	}
	return receipt, nil
}

// store returns the store, opening it on first use.
func (c *Client) store(ctx context.Context) (*store.KV, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil {
		return c.st, nil
	}
	st, err := store.Open(ctx, c.js, store.Config{KeepExisting: true})
	if err != nil {
		return nil, fmt.Errorf("open store (is contactstop serve or a NATS server with JetStream running?): %w", err)
	}
	c.st = st
	return st, nil
}

// answeredAt returns the time around which the result of an answered
// request was published, read from the request's record in the store, or
// the zero time when it has none (not answered yet), or only a retryable
// INTERNAL_ERROR that this fresh message will be attempted again after.
// A store that cannot be read gives the zero time too: the results stream
// is then searched as for a new request.
func (c *Client) answeredAt(ctx context.Context, k store.RequestKey, duplicate bool) time.Time {
	st, err := c.store(ctx)
	if err != nil {
		return time.Time{}
	}
	o, err := st.LookUpRequest(ctx, k)
	switch {
	case err != nil:
		return time.Time{}
	case o.Stopped != nil:
		return o.Stopped.EndedAt
	case o.Failed != nil && (!o.Failed.Retryable || duplicate):
		return o.Failed.FailedAt
	}
	return time.Time{}
}

func resultContact(res events.Result) string {
	if res.Stopped != nil {
		return res.Stopped.ContactID
	}
	return res.Failed.ContactID
}
