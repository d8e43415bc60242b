package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

func newBulkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bulk",
		Short: "List, inspect and cancel bulk requests (clears)",
		Example: `  contactstop bulk list --instance acme
  contactstop bulk status close-billing --instance acme
  contactstop bulk cancel close-billing --instance acme --wait`,
	}
	cmd.AddCommand(newBulkListCmd(), newBulkStatusCmd(), newBulkCancelCmd())
	return cmd
}

// bulkJSON is a bulk record as the bulk commands print it with --json: the
// record, and for a running one its average rate and the time left.
type bulkJSON struct {
	store.BulkRecord
	RatePerSecond float64  `json:"ratePerSecond,omitempty"`
	ETASeconds    *float64 `json:"etaSeconds,omitempty"`
}

func newBulkJSON(rec store.BulkRecord, now time.Time) bulkJSON {
	b := bulkJSON{BulkRecord: rec}
	p := recordProgress(rec, now)
	b.RatePerSecond = p.Rate
	if p.Rate > 0 && !p.Walking {
		eta := p.ETA.Seconds()
		b.ETASeconds = &eta
	}
	return b
}

func newBulkListCmd() *cobra.Command {
	var (
		o          clientOptions
		instanceID string
	)
	cmd := &cobra.Command{
		Use:   "list [--instance I]",
		Short: "List bulk requests, running and recent, newest first",
		Long: `List the bulk requests of one instance, or of every instance, newest first:
waiting, running, completing and completed ones, with their counts. With
--json it prints one JSON array of records.`,
		Example: `  contactstop bulk list
  contactstop bulk list --instance acme --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, err := o.connect("bulk list")
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.openStore(ctx)
			if err != nil {
				return err
			}
			recs, err := st.ListBulks(ctx, instanceID)
			if err != nil {
				return err
			}
			out, now := cmd.OutOrStdout(), time.Now()
			if o.json {
				l := &jsonList{w: out}
				for _, rec := range recs {
					if err := l.add(newBulkJSON(rec, now)); err != nil {
						return err
					}
				}
				return l.close()
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BULK ID\tINSTANCE\tSTATUS\tDONE/MATCHED\tSTOPPED\tFAILED\tSKIPPED\tSTARTED")
			for _, rec := range recs {
				started := "-"
				if !rec.StartedAt.IsZero() {
					started = rec.StartedAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", rec.BulkID, rec.InstanceID, statusText(rec),
					doneOfMatched(rec), rec.Stopped, rec.Failed, rec.Skipped, started)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%d bulk requests\n", len(recs))
			return err
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "only this instance's bulk requests (all instances when empty)")
	return cmd
}

// statusText is a record's status, with its cancel.
func statusText(rec store.BulkRecord) string {
	switch {
	case rec.Cancelled:
		return string(rec.Status) + " (cancelled)"
	case rec.CancelRequested:
		return string(rec.Status) + " (cancelling)"
	}
	return string(rec.Status)
}

func doneOfMatched(rec store.BulkRecord) string {
	s := fmt.Sprintf("%d/%d", rec.Done, rec.Matched)
	if rec.Walking {
		s += "+"
	}
	return s
}

func newBulkStatusCmd() *cobra.Command {
	var (
		o          clientOptions
		instanceID string
	)
	cmd := &cobra.Command{
		Use:   "status BULK_ID --instance I",
		Short: "Show a bulk request's progress or final counts",
		Long: `Show one bulk request: its status, done of matched, stopped, failed and
skipped contacts, the failures by reason code, and for a running one its
average rate and the time left. The exit code is 3 when there is no such
bulk request.`,
		Example: `  contactstop bulk status close-billing --instance acme
  contactstop bulk status close-billing --instance acme --json`,
		Args: cobra.ExactArgs(1),
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
				return printJSON(cmd.OutOrStdout(), newBulkJSON(rec, time.Now()))
			}
			printBulkStatus(cmd.OutOrStdout(), rec, time.Now())
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance of the bulk request (required)")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func printBulkStatus(out io.Writer, rec store.BulkRecord, now time.Time) {
	fmt.Fprintf(out, "bulk request %s on %s: %s (run %d)\n", rec.BulkID, rec.InstanceID, statusText(rec), rec.Run)
	if rec.Status == store.BulkWaiting {
		fmt.Fprintln(out, "  waiting for another bulk request of the instance to finish; nothing stopped yet")
	} else {
		fmt.Fprintf(out, "  done %s, stopped %d, failed %d, skipped %d\n", doneOfMatched(rec), rec.Stopped, rec.Failed, rec.Skipped)
	}
	if rec.Status == store.BulkRunning {
		if p := recordProgress(rec, now); p.Rate > 0 {
			fmt.Fprintf(out, "  progress: %s (average since it started)\n", p)
		}
	}
	if rec.Unreadable > 0 {
		fmt.Fprintf(out, "  %d records passed over (not valid contacts)\n", rec.Unreadable)
	}
	for code, n := range rec.ReasonCodes {
		fmt.Fprintf(out, "  %-22s %d\n", code, n)
	}
	if rec.CancelRequested && !rec.Cancelled && rec.Status != store.BulkCompleted {
		fmt.Fprintf(out, "  cancel requested at %s: it stops starting contacts and completes as cancelled\n", rec.CancelRequestedAt.Format(time.RFC3339))
	}
	if !rec.StartedAt.IsZero() {
		fmt.Fprintf(out, "  started %s, updated %s\n", rec.StartedAt.Format(time.RFC3339), rec.UpdatedAt.Format(time.RFC3339))
	}
	if !rec.CompletedAt.IsZero() {
		fmt.Fprintf(out, "  completed %s\n", rec.CompletedAt.Format(time.RFC3339))
	}
}

func newBulkCancelCmd() *cobra.Command {
	var (
		o          clientOptions
		instanceID string
		wait       bool
	)
	cmd := &cobra.Command{
		Use:   "cancel BULK_ID --instance I [--wait]",
		Short: "Cancel a running or waiting bulk request",
		Long: `Cancel a bulk request: it stops starting new contacts, finishes those in
hand, and completes with cancelled: true (its counts are those of the
contacts it reached; the others are left as they were). Cancelling again, or
cancelling a completed bulk request, changes nothing. With --wait it waits for
the completion and prints the summary (--timeout applies). The exit code is 3
when there is no such bulk request.`,
		Example: `  contactstop bulk cancel close-billing --instance acme
  contactstop bulk cancel close-billing --instance acme --wait --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, err := o.connect("bulk cancel")
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.openStore(ctx)
			if err != nil {
				return err
			}
			return runBulkCancel(ctx, cmd.OutOrStdout(), st, o, instanceID, args[0], wait)
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance of the bulk request (required)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the bulk request completes and print its summary")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func runBulkCancel(ctx context.Context, out io.Writer, st *store.KV, o clientOptions, instanceID, bulkID string, wait bool) error {
	rec, err := st.CancelBulk(ctx, instanceID, bulkID)
	if err != nil {
		return err
	}
	if !wait {
		if o.json {
			return printJSON(out, newBulkJSON(rec, time.Now()))
		}
		switch {
		case rec.Cancelled:
			_, err := fmt.Fprintf(out, "bulk request %s on %s was cancelled already and is %s: nothing changed\n", bulkID, instanceID, rec.Status)
			return err
		case rec.Status == store.BulkCompleting || rec.Status == store.BulkCompleted:
			_, err := fmt.Fprintf(out, "bulk request %s on %s is %s: too late to cancel, nothing changed\n", bulkID, instanceID, rec.Status)
			return err
		}
		_, err := fmt.Fprintf(out, "bulk request %s on %s: cancel requested; it stops starting contacts and completes as cancelled\n  follow it: %s\n",
			bulkID, instanceID, bulkCommand(o, "status", instanceID, bulkID))
		return err
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for rec.Status != store.BulkCompleted {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bulk request %s: not completed yet (%s): %w", bulkID, statusText(rec), ctx.Err())
		case <-tick.C:
		}
		if rec, err = st.GetBulk(ctx, instanceID, bulkID); err != nil {
			return err
		}
	}
	var done events.BulkCompleted
	if err := json.Unmarshal(rec.Completion, &done); err != nil {
		return errors.Join(fmt.Errorf("bulk request %s: its recorded completion does not decode", bulkID), err)
	}
	return printCompletion(out, o.json, &done)
}
