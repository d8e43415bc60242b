package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

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
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "clear --instance I [--queue Q]... [--state S]... [--channel CH]... [--before T] [--reason R] [--bulk-id ID] [--dry-run] [--wait]",
		Short: "Stop every contact of an instance that matches a filter (a bulk request)",
		Long: `Publish one contact.stop.bulk.requested message: every contact of the
instance matching all the given filters is stopped (default: state QUEUED),
each with requestId <bulkId>/<contactId>, and one
contact.stop.bulk.completed.<instance> event summarises the whole.

--dry-run publishes nothing: it counts the contacts the filter matches now,
in total, per queue and per state, with the rule the clear applies.

With --wait the progress (done of total, rate, ETA) is shown on stderr until
the completion event — a bar on a terminal, a line every 2 s otherwise, none
with --json — then the summary is printed on stdout (as JSON with --json).
The exit code is 0 when every contact it reached was stopped or skipped, and
2 when the request was refused or any contact failed. Interrupting it
(Ctrl-C) does not stop the clear: it goes on in the background, the commands
to follow and to cancel it are printed, and the exit code is 130.

Publishing the same --bulk-id again stops nothing twice: the first summary
stands.`,
		Example: `  contactstop clear --instance acme --queue billing --dry-run
  contactstop clear --instance acme --queue billing --bulk-id close-billing --wait
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
			if dryRun && wait {
				return fmt.Errorf("--dry-run publishes nothing, so there is nothing to --wait for")
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
			if dryRun {
				return runDryRun(ctx, cmd.OutOrStdout(), c, o, req)
			}
			interrupt := make(chan os.Signal, 1)
			if wait {
				signal.Notify(interrupt, os.Interrupt, syscall.SIGTERM)
				defer signal.Stop(interrupt)
			}
			return runClear(ctx, clearIO{out: cmd.OutOrStdout(), progress: cmd.ErrOrStderr(), interrupt: interrupt,
				every: 2 * time.Second, bar: !o.json && isTerminal(os.Stderr)}, c, o, req, wait)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&req.InstanceID, "instance", "", "instance (tenant) to clear (required)")
	f.StringArrayVar(&req.Filter.QueueIDs, "queue", nil, "only contacts in this queue (repeatable)")
	f.StringArrayVar(&req.Filter.States, "state", nil, "only contacts in this state (repeatable; QUEUED when none is given)")
	f.StringArrayVar(&req.Filter.Channels, "channel", nil, "only contacts on this channel (repeatable)")
	f.StringVar(&before, "before", "", "only contacts enqueued before this RFC 3339 time")
	f.StringVar(&req.DisconnectReason, "reason", "", "disconnect reason recorded on every stopped contact")
	f.StringVar(&req.BulkID, "bulk-id", "", "idempotency key; a random one when empty")
	f.StringVar(&req.SecurityUser, "token", "", "security-user token granting contact:BulkStop, when authorization is on (prefer CONTACTSTOP_TOKEN)")
	f.BoolVar(&dryRun, "dry-run", false, "count what the filter matches now, per queue and state; publish nothing")
	f.BoolVar(&wait, "wait", false, "show progress, wait for the completion and print the summary (--timeout does not apply)")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

// dryRun is what clear --dry-run --json prints.
type dryRun struct {
	DryRun     bool              `json:"dryRun"`
	InstanceID string            `json:"instanceId"`
	Filter     events.BulkFilter `json:"filter"`
	store.MatchCount
}

// runDryRun counts what the clear would match, publishing nothing.
func runDryRun(ctx context.Context, out io.Writer, c *client, o clientOptions, req events.BulkRequest) error {
	if !events.ValidInstanceID(req.InstanceID) {
		return fmt.Errorf("--instance %q: must be 1-100 characters of [A-Za-z0-9_-]", req.InstanceID)
	}
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	n, err := st.CountMatching(ctx, req.InstanceID, req.Filter)
	if err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	if o.json {
		f := req.Filter
		f.States = f.EffectiveStates()
		return printJSON(out, dryRun{DryRun: true, InstanceID: req.InstanceID, Filter: f, MatchCount: n})
	}
	fmt.Fprintf(out, "dry run: %d contacts of %s match (states %s); nothing was published\n",
		n.Matched, req.InstanceID, strings.Join(req.Filter.EffectiveStates(), ", "))
	printCounts(out, "by queue", n.ByQueue, "(no queue)")
	printCounts(out, "by state", n.ByState, "")
	if n.Unreadable > 0 {
		fmt.Fprintf(out, "  %d records of the instance are not valid contacts; a clear passes over them\n", n.Unreadable)
	}
	return nil
}

func printCounts(out io.Writer, title string, m map[string]int, empty string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(out, "  %s:\n", title)
	for _, k := range keys {
		name := k
		if name == "" {
			name = empty
		}
		fmt.Fprintf(out, "    %-24s %d\n", name, m[k])
	}
}

// clearIO is where clear --wait writes and what interrupts it.
type clearIO struct {
	out, progress io.Writer
	interrupt     <-chan os.Signal
	// every is how often a progress line is written when bar is false;
	// bar draws a bar instead (on a terminal).
	every time.Duration
	bar   bool
}

func runClear(ctx context.Context, cio clearIO, c *client, o clientOptions, req events.BulkRequest, wait bool) error {
	out := cio.out
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
		_, err := fmt.Fprintf(out, "bulk request %s published as %s #%d%s\n  follow it: %s\n", receipt.RequestID, receipt.Stream, receipt.Sequence,
			map[bool]string{true: " (duplicate of an earlier one: not stored again)"}[receipt.Duplicate],
			bulkCommand(o, "status", req.InstanceID, receipt.RequestID))
		return err
	}

	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	waitCtx, stopWaiting := context.WithCancelCause(ctx)
	defer stopWaiting(nil)
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-cio.interrupt:
			close(interrupted)
			stopWaiting(errInterrupted)
		case <-waitCtx.Done():
		}
	}()
	// While the run is still finding contacts, the total shown is the
	// client's own count.
	var estimate atomic.Int64
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if o.json {
			return
		}
		go func() {
			if n, err := estimateTotal(waitCtx, st, req, receipt.RequestID); err == nil {
				estimate.Store(int64(n))
			}
		}()
		showProgress(waitCtx, cio, st, req.InstanceID, receipt.RequestID, func() int { return int(estimate.Load()) })
	}()

	// A bulk request completed before stores no second completion: its
	// record says when it completed.
	var from time.Time
	if rec, err := st.GetBulk(ctx, req.InstanceID, receipt.RequestID); err == nil && (rec.Status == store.BulkCompleting || rec.Status == store.BulkCompleted) {
		from = rec.CompletingAt
	}
	var done *events.BulkCompleted
	var failed *events.StopFailed
	err = results.find(waitCtx, receipt.Duplicate, from, func(subject string, data []byte) bool {
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
	stopWaiting(nil)
	<-progressDone
	select {
	case <-interrupted:
		return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: bulk request %s goes on in the background; follow it with: %s; cancel it with: %s",
			receipt.RequestID, bulkCommand(o, "status", req.InstanceID, receipt.RequestID), bulkCommand(o, "cancel", req.InstanceID, receipt.RequestID))}
	default:
	}
	if err != nil {
		return fmt.Errorf("bulk request %s: %w", receipt.RequestID, err)
	}
	if failed != nil {
		if o.json {
			_ = printJSON(out, failed)
		}
		return &exitError{code: exitRequestFailed, err: fmt.Errorf("bulk request %s refused: %s: %s", failed.RequestID, failed.ReasonCode, failed.Message)}
	}
	return printCompletion(out, o.json, done)
}

// errInterrupted ends clear --wait on SIGINT.
var errInterrupted = fmt.Errorf("interrupted")

// printCompletion prints a bulk request's summary; exit code 2 when some
// of its contacts failed.
func printCompletion(out io.Writer, asJSON bool, done *events.BulkCompleted) error {
	if asJSON {
		if err := printJSON(out, done); err != nil {
			return err
		}
	} else {
		printBulkSummary(out, done)
	}
	if done.Failed > 0 {
		return &exitError{code: exitRequestFailed, err: fmt.Errorf("bulk request %s: %d of %d contacts failed", done.BulkID, done.Failed, done.Matched)}
	}
	return nil
}

// bulkCommand is the command line that runs bulk verb (status or cancel)
// on a bulk request, with the --nats-url given to this one.
func bulkCommand(o clientOptions, verb, instanceID, bulkID string) string {
	cmd := "contactstop bulk " + verb + " " + shellQuote(bulkID) + " --instance " + instanceID
	if o.natsURL != "" && o.natsURL != defaultNATSURL {
		cmd += " --nats-url " + shellQuote(o.natsURL)
	}
	return cmd
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printBulkSummary(out io.Writer, d *events.BulkCompleted) {
	what := "completed"
	if d.Cancelled {
		what = "was cancelled; it completed"
	}
	fmt.Fprintf(out, "bulk request %s on %s %s in %s: matched %d, stopped %d, failed %d, skipped %d (no longer matching when reached)\n",
		d.BulkID, d.InstanceID, what, d.CompletedAt.Sub(d.StartedAt).Round(time.Millisecond), d.Matched, d.Stopped, d.Failed, d.Skipped)
	if d.Cancelled {
		fmt.Fprintln(out, "  cancelled: the counts are those of the contacts it reached; the others were left as they were")
	}
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
