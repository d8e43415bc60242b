package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

func newStopCmd() *cobra.Command {
	var (
		o             clientOptions
		req           events.StopRequest
		wait          bool
		traceparent   string
		correlationID string
	)
	cmd := &cobra.Command{
		Use:   "stop --instance I --contact C [--reason R] [--request-id ID] [--wait]",
		Short: "Publish a request to stop one contact",
		Long: `Publish one contact.stop.requested message.

Without --wait it prints the request's identity once JetStream has stored it.
With --wait it then waits for the request's result on the results stream and
prints it; the exit code is 0 for contact.stopped and 2 for
contact.stop.failed. Publishing the same --request-id again is idempotent at
any time: it changes nothing, and --wait prints the result of the first at
once (a retryable INTERNAL_ERROR is the exception: the request is attempted
again, and --wait prints the new result).`,
		Example: `  contactstop stop --instance acme --contact c-1 --wait
  contactstop stop --instance acme --contact "call/42" --reason EMERGENCY --request-id r-42 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, err := o.connect("stop")
			if err != nil {
				return err
			}
			defer c.Close()
			return runStop(ctx, cmd.OutOrStdout(), c, o, req, wait, traceparent, correlationID)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&req.InstanceID, "instance", "", "instance (tenant) of the contact (required)")
	f.StringVar(&req.ContactID, "contact", "", "contact to stop (required)")
	f.StringVar(&req.DisconnectReason, "reason", "", "disconnect reason recorded on the contact")
	f.StringVar(&req.RequestID, "request-id", "", "idempotency key; a random one when empty")
	f.StringVar(&req.SecurityUser, "token", "", "security-user token, needed when the worker has authorization on (prefer CONTACTSTOP_TOKEN)")
	f.BoolVar(&wait, "wait", false, "wait for the result and print it; exit 2 if the request failed")
	f.StringVar(&traceparent, "traceparent", "", "W3C traceparent header to pass on to the result")
	f.StringVar(&correlationID, "correlation-id", "", "Correlation-Id header to pass on to the result")
	_ = cmd.MarkFlagRequired("instance")
	_ = cmd.MarkFlagRequired("contact")
	return cmd
}

func runStop(ctx context.Context, out io.Writer, c *client, o clientOptions, req events.StopRequest, wait bool, traceparent, correlationID string) error {
	var opts []events.PublishOption
	if traceparent != "" {
		opts = append(opts, events.WithTraceparent(traceparent))
	}
	if correlationID != "" {
		opts = append(opts, events.WithCorrelationID(correlationID))
	}
	// Open the results cursor before publishing, so the result cannot slip
	// past between the two.
	var results *resultWaiter
	if wait {
		var err error
		results, err = newResultWaiter(ctx, c.js, events.StoppedSubject(req.InstanceID), events.StopFailedSubject(req.InstanceID))
		if err != nil {
			return err
		}
	}
	receipt, err := events.NewPublisher(c.js).Stop(ctx, req, opts...)
	if err != nil {
		return fmt.Errorf("publish request: %w", err)
	}
	if !wait {
		if o.json {
			return printJSON(out, receipt)
		}
		dup := ""
		if receipt.Duplicate {
			dup = " (duplicate of an earlier request: not stored again)"
		}
		_, err := fmt.Fprintf(out, "request %s published as %s #%d%s\n", receipt.RequestID, receipt.Stream, receipt.Sequence, dup)
		return err
	}
	// A request answered before (this is a resend) stores no new result:
	// its recorded outcome tells from when to look for the one it has.
	from := answeredAt(ctx, c, store.RequestKey{InstanceID: req.InstanceID, ContactID: req.ContactID, RequestID: receipt.RequestID}, receipt.Duplicate)
	var res events.Result
	err = results.find(ctx, receipt.Duplicate, from, func(subject string, data []byte) bool {
		r, err := events.DecodeResult(subject, data)
		if err != nil || r.RequestID() != receipt.RequestID || resultContact(r) != req.ContactID {
			return false
		}
		res = r
		return true
	})
	if err != nil {
		return fmt.Errorf("request %s: %w", receipt.RequestID, err)
	}
	switch {
	case o.json:
		if err := printResult(out, res); err != nil {
			return err
		}
	case res.Stopped != nil:
		s := res.Stopped
		fmt.Fprintf(out, "stopped contact %q of %s (was %s) by request %s at %s\n",
			s.ContactID, s.InstanceID, s.PreviousState, s.RequestID, s.StoppedAt.Format(time.RFC3339))
	default:
		f := res.Failed
		fmt.Fprintf(out, "request %s failed: %s: %s (retryable: %t)\n", f.RequestID, f.ReasonCode, f.Message, f.Retryable)
	}
	if res.Failed != nil {
		return &exitError{code: 2, err: fmt.Errorf("request %s failed with %s", res.Failed.RequestID, res.Failed.ReasonCode)}
	}
	return nil
}

func printResult(out io.Writer, res events.Result) error {
	if res.Stopped != nil {
		return printJSON(out, res.Stopped)
	}
	return printJSON(out, res.Failed)
}

// resultWaiter finds one result on the results stream.
type resultWaiter struct {
	js       jetstream.JetStream
	subjects []string
	startSeq uint64
	window   time.Duration
}

// newResultWaiter notes where the results stream ends now; call it before
// publishing the request whose result is awaited.
func newResultWaiter(ctx context.Context, js jetstream.JetStream, subjects ...string) (*resultWaiter, error) {
	rs, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		return nil, fmt.Errorf("results stream (has contactstop serve run against this server?): %w", err)
	}
	req, err := js.Stream(ctx, events.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("requests stream: %w", err)
	}
	return &resultWaiter{
		js:       js,
		subjects: subjects,
		startSeq: rs.CachedInfo().State.LastSeq + 1,
		window:   req.CachedInfo().Config.Duplicates,
	}, nil
}

// answeredAt returns the time around which the result of an answered
// request was published, read from the request's record in the store, or
// the zero time when it has none (not answered yet), or only a retryable
// INTERNAL_ERROR that this fresh message will be attempted again after.
// A store that cannot be read gives the zero time too: the results stream
// is then searched as for a new request.
func answeredAt(ctx context.Context, c *client, k store.RequestKey, duplicate bool) time.Time {
	st, err := c.openStore(ctx)
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

// find waits until match accepts a result published after the waiter was
// made, or, when from is set, since a minute before from (the result of a
// request answered before). For a duplicate publication the original
// request was published within the duplicate window, so results are
// searched from that far back.
func (rw *resultWaiter) find(ctx context.Context, duplicate bool, from time.Time, match func(subject string, data []byte) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: rw.subjects}
	switch {
	case !from.IsZero():
		start := from.Add(-time.Minute)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	case duplicate:
		start := time.Now().Add(-rw.window - time.Minute)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	default:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, rw.startSeq
	}
	cons, err := rw.js.OrderedConsumer(ctx, events.StreamResults, cfg)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("no result yet (is contactstop serve running?): %w", err)
			}
			return fmt.Errorf("read results: %w", err)
		}
		if match(msg.Subject(), msg.Data()) {
			return nil
		}
	}
}

func resultContact(res events.Result) string {
	if res.Stopped != nil {
		return res.Stopped.ContactID
	}
	return res.Failed.ContactID
}
