package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	csclient "github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
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
	receipt, result, err := csclient.New(c.js, nil).Stop(ctx, req, csclient.StopOptions{Wait: wait, Traceparent: traceparent, CorrelationID: correlationID})
	if err != nil {
		return err
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
	res := *result
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

// resultWaiter is the client package's waiter, for clear --wait.
type resultWaiter struct{ *csclient.ResultWaiter }

// newResultWaiter notes where the results stream ends now; call it before
// publishing the request whose result is awaited.
func newResultWaiter(ctx context.Context, js jetstream.JetStream, subjects ...string) (*resultWaiter, error) {
	rw, err := csclient.NewResultWaiter(ctx, js, subjects...)
	if err != nil {
		return nil, err
	}
	return &resultWaiter{rw}, nil
}

// find is csclient.ResultWaiter.Find.
func (rw *resultWaiter) find(ctx context.Context, duplicate bool, from time.Time, match func(subject string, data []byte) bool) error {
	return rw.Find(ctx, duplicate, from, match)
}
