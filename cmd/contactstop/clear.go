package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

func newClearCmd() *cobra.Command {
	var (
		o      clientOptions
		req    events.BulkRequest
		before string
		wait   bool
	)
	cmd := &cobra.Command{
		Use:   "clear --instance I [--queue Q]... [--state S]... [--channel CH]... [--before T] [--reason R] [--bulk-id ID] [--wait]",
		Short: "Stop every contact of an instance that matches a filter (a bulk request)",
		Long: `Publish one contact.stop.bulk.requested message: every contact of the
instance matching all the given filters is stopped (default: state QUEUED),
each with requestId <bulkId>/<contactId>, and one
contact.stop.bulk.completed.<instance> event summarises the whole.

With --wait a progress bar runs on stderr until the completion event, then the
summary is printed (as JSON with --json); the exit code is 0 when every matched
contact was stopped and 2 when any failed. Publishing the same --bulk-id again
stops nothing twice: the first summary stands.`,
		Example: `  contactstop clear --instance acme --queue billing --wait
  contactstop clear --instance acme --state QUEUED --state ON_HOLD --channel CHAT --before 2026-11-20T10:00:00Z --reason QUEUE_CLOSED --wait --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before != "" {
				t, err := time.Parse(time.RFC3339, before)
				if err != nil {
					return fmt.Errorf("--before %q: want an RFC 3339 time such as 2026-11-20T10:00:00Z", before)
				}
				req.Filter.EnqueuedBefore = &t
			}
			for i, s := range req.Filter.States {
				req.Filter.States[i] = strings.ToUpper(s)
			}
			for i, s := range req.Filter.Channels {
				req.Filter.Channels[i] = strings.ToUpper(s)
			}
			ctx := cmd.Context()
			if !wait {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.timeout)
				defer cancel()
			}
			c, err := o.connect("clear")
			if err != nil {
				return err
			}
			defer c.Close()
			return runClear(ctx, cmd.OutOrStdout(), c, o, req, wait)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&req.InstanceID, "instance", "", "instance (tenant) to clear (required)")
	f.StringArrayVar(&req.Filter.QueueIDs, "queue", nil, "only contacts in this queue (repeatable)")
	f.StringArrayVar(&req.Filter.States, "state", nil, "only contacts in this state (repeatable; default QUEUED)")
	f.StringArrayVar(&req.Filter.Channels, "channel", nil, "only contacts on this channel (repeatable)")
	f.StringVar(&before, "before", "", "only contacts enqueued before this RFC 3339 time")
	f.StringVar(&req.DisconnectReason, "reason", "", "disconnect reason recorded on every stopped contact")
	f.StringVar(&req.BulkID, "bulk-id", "", "idempotency key; a random one when empty")
	f.StringVar(&req.SecurityUser, "token", "", "security-user token granting contact:BulkStop, when authorization is on (prefer CONTACTSTOP_TOKEN)")
	f.BoolVar(&wait, "wait", false, "show progress, wait for the completion and print the summary (--timeout does not apply)")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func runClear(ctx context.Context, out io.Writer, c *client, o clientOptions, req events.BulkRequest, wait bool) error {
	var results *resultWaiter
	if wait {
		var err error
		results, err = newResultWaiter(ctx, c.js, events.BulkCompletedSubject(req.InstanceID), events.StopFailedSubject(req.InstanceID))
		if err != nil {
			return err
		}
	}
	receipt, err := events.NewPublisher(c.js).Bulk(ctx, req)
	if err != nil {
		return fmt.Errorf("publish bulk request: %w", err)
	}
	if !wait {
		if o.json {
			return printJSON(out, receipt)
		}
		_, err := fmt.Fprintf(out, "bulk request %s published as %s #%d%s\n", receipt.RequestID, receipt.Stream, receipt.Sequence,
			map[bool]string{true: " (duplicate of an earlier one: not stored again)"}[receipt.Duplicate])
		return err
	}

	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	progressCtx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		showProgress(progressCtx, st, req.InstanceID, receipt.RequestID, !o.json && isTerminal(os.Stderr))
	}()

	// A bulk request completed before stores no second completion: its
	// record says when it completed.
	var from time.Time
	if rec, err := st.GetBulk(ctx, req.InstanceID, receipt.RequestID); err == nil && rec.Status != store.BulkRunning {
		from = rec.CompletingAt
	}
	var done *events.BulkCompleted
	var failed *events.StopFailed
	err = results.find(ctx, receipt.Duplicate, from, func(subject string, data []byte) bool {
		if strings.HasPrefix(subject, events.SubjectBulkCompleted+".") {
			var bc events.BulkCompleted
			if json.Unmarshal(data, &bc) == nil && bc.BulkID == receipt.RequestID {
				done = &bc
				return true
			}
			return false
		}
		r, err := events.DecodeResult(subject, data)
		if err == nil && r.Failed != nil && r.Failed.RequestID == receipt.RequestID && r.Failed.ContactID == "" {
			failed = r.Failed
			return true
		}
		return false
	})
	stopProgress()
	<-progressDone
	if err != nil {
		return fmt.Errorf("bulk request %s: %w", receipt.RequestID, err)
	}
	if failed != nil {
		if o.json {
			_ = printJSON(out, failed)
		}
		return &exitError{code: 2, err: fmt.Errorf("bulk request %s refused: %s: %s", failed.RequestID, failed.ReasonCode, failed.Message)}
	}
	if o.json {
		if err := printJSON(out, done); err != nil {
			return err
		}
	} else {
		printBulkSummary(out, done)
	}
	if done.Failed > 0 {
		return &exitError{code: 2, err: fmt.Errorf("bulk request %s: %d of %d contacts failed", done.BulkID, done.Failed, done.Matched)}
	}
	return nil
}

func printBulkSummary(out io.Writer, d *events.BulkCompleted) {
	fmt.Fprintf(out, "bulk request %s on %s completed in %s: matched %d, stopped %d, failed %d, skipped %d (no longer matching when reached)\n",
		d.BulkID, d.InstanceID, d.CompletedAt.Sub(d.StartedAt).Round(time.Millisecond), d.Matched, d.Stopped, d.Failed, d.Skipped)
	if d.Unreadable > 0 {
		fmt.Fprintf(out, "  %d records of the instance are not valid contacts and were passed over (contacts list shows them)\n", d.Unreadable)
	}
	codes := make([]string, 0, len(d.ReasonCodes))
	for code := range d.ReasonCodes {
		codes = append(codes, string(code))
	}
	sort.Strings(codes)
	for _, code := range codes {
		fmt.Fprintf(out, "  %-22s %d\n", code, d.ReasonCodes[events.ReasonCode(code)])
	}
}

// showProgress draws a progress bar from the bulk request's record until
// ctx ends. The total grows while the run is still walking the contacts.
func showProgress(ctx context.Context, st *store.KV, instanceID, bulkID string, visible bool) {
	if !visible {
		return
	}
	bar := progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("clearing (finding contacts)"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("contacts"),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(100*time.Millisecond),
	)
	defer func() { _ = bar.Finish() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rec, err := st.GetBulk(ctx, instanceID, bulkID)
		if errors.Is(err, store.ErrBulkNotFound) || err != nil {
			continue
		}
		if !rec.Walking {
			bar.Describe("clearing")
			bar.ChangeMax(rec.Matched)
		}
		_ = bar.Set(rec.Done)
	}
}

func newBulkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bulk",
		Short: "Inspect bulk requests",
	}
	var (
		o          clientOptions
		instanceID string
	)
	status := &cobra.Command{
		Use:   "status BULK_ID --instance I",
		Short: "Show a bulk request's progress or final counts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, err := o.connect("bulk status")
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.openStore(ctx)
			if err != nil {
				return err
			}
			rec, err := st.GetBulk(ctx, instanceID, args[0])
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), rec)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "bulk request %s on %s: %s (run %d)\n", rec.BulkID, rec.InstanceID, rec.Status, rec.Run)
			total := fmt.Sprint(rec.Matched)
			if rec.Walking {
				total += "+ (still finding contacts)"
			}
			fmt.Fprintf(out, "  matched %s, done %d, stopped %d, failed %d\n", total, rec.Done, rec.Stopped, rec.Failed)
			for code, n := range rec.ReasonCodes {
				fmt.Fprintf(out, "  %-22s %d\n", code, n)
			}
			fmt.Fprintf(out, "  started %s, updated %s\n", rec.StartedAt.Format(time.RFC3339), rec.UpdatedAt.Format(time.RFC3339))
			if !rec.CompletedAt.IsZero() {
				fmt.Fprintf(out, "  completed %s\n", rec.CompletedAt.Format(time.RFC3339))
			}
			return nil
		},
	}
	o.register(status)
	status.Flags().StringVar(&instanceID, "instance", "", "instance of the bulk request (required)")
	_ = status.MarkFlagRequired("instance")
	cmd.AddCommand(status)
	return cmd
}
