// Package client publishes requests to contactstop and waits for their
// results: what `contactstop stop --wait` does, for any Go program (the
// command line, the HTTP API of `serve`).
//
//	cl := client.New(js, nil) // the store is opened when first needed
//	receipt, res, err := cl.Stop(ctx, events.StopRequest{
//		RequestID: "r-42", InstanceID: "acme", ContactID: "c-1",
//	}, client.StopOptions{Wait: true})
//
// Stop publishes one stop request (validated, with its Nats-Msg-Id, and the
// traceparent and Correlation-Id headers when given) and, with Wait, returns
// the result the worker published for it. Waiting is exact: the results
// cursor is opened before the request is published, so the result cannot
// slip past, and a request sent again (the same requestId) is answered with
// the result of the first, found from the request's outcome recorded in the
// store. Clear publishes one bulk request.
//
// A Client is safe for concurrent use.
package client
