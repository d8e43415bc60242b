package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/events"
)

func newResultsCmd() *cobra.Command {
	var (
		o          clientOptions
		instanceID string
		follow     bool
		last       int
	)
	cmd := &cobra.Command{
		Use:   "results [--instance I] [--follow] [--last N]",
		Short: "Print results from the results stream (contact.stopped and contact.stop.failed)",
		Long: `Print stored results, oldest first, from the results stream.

Without --follow it prints what is stored and exits; with --follow it then
waits for new results until interrupted (--timeout does not apply). With
--json each result is one JSON object per line, with its subject.`,
		Example: `  contactstop results --instance acme --last 20
  contactstop results --follow --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !follow {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.timeout)
				defer cancel()
			}
			cl, err := o.connect("results")
			if err != nil {
				return err
			}
			defer cl.Close()
			return printResults(ctx, cmd.OutOrStdout(), cl.js, instanceID, follow, last, o.json)
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "only this instance's results (default: all, including failures of invalid instances)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep waiting for new results")
	cmd.Flags().IntVar(&last, "last", 0, "start with only the last N stored results (0: all)")
	return cmd
}

func printResults(ctx context.Context, out io.Writer, js jetstream.JetStream, instanceID string, follow bool, last int, asJSON bool) error {
	if instanceID != "" && !events.ValidInstanceID(instanceID) {
		return fmt.Errorf("--instance %q: must be 1-100 characters of [A-Za-z0-9_-]", instanceID)
	}
	stream, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		return fmt.Errorf("results stream (has contactstop serve run against this server?): %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if instanceID != "" {
		cfg.FilterSubjects = []string{events.StoppedSubject(instanceID), events.StopFailedSubject(instanceID)}
	}
	// stored is how many results match now; with --follow, newer ones
	// follow them.
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("results stream: %w", err)
	}
	stored := info.State.Msgs
	if instanceID != "" {
		stored = info.State.Subjects[cfg.FilterSubjects[0]] + info.State.Subjects[cfg.FilterSubjects[1]]
	}
	var skip uint64
	if last > 0 && uint64(last) < stored {
		if instanceID == "" {
			// Unfiltered, the server can start at the right sequence.
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = info.State.LastSeq - uint64(last) + 1
			stored = uint64(last)
		} else {
			skip, stored = stored-uint64(last), uint64(last)
		}
	}
	cfg.InactiveThreshold = orderedInactive
	cons, err := js.OrderedConsumer(ctx, events.StreamResults, cfg)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer deleteOrdered(js, events.StreamResults, cons)
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer it.Stop()
	var seen uint64
	for follow || seen < stored {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if follow && errors.Is(err, context.Canceled) {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("read results: timed out after %d of %d", seen, stored)
			}
			return fmt.Errorf("read results: %w", err)
		}
		if skip > 0 {
			skip--
			continue
		}
		seen++
		if err := printResultLine(out, msg, asJSON); err != nil {
			return err
		}
	}
	return nil
}

func printResultLine(out io.Writer, msg jetstream.Msg, asJSON bool) error {
	if asJSON {
		// The message as stored, with its subject added: a result or a
		// bulk completion. One that is not a JSON object is reported as
		// such, still as one line of JSON.
		var line map[string]any
		if err := json.Unmarshal(msg.Data(), &line); err != nil || line == nil {
			line = map[string]any{"unreadable": fmt.Sprintf("not a JSON object: %q", msg.Data())}
		}
		line["subject"] = msg.Subject()
		return writeJSONLine(out, line)
	}
	if strings.HasPrefix(msg.Subject(), events.SubjectBulkCompleted+".") {
		var d events.BulkCompleted
		if err := json.Unmarshal(msg.Data(), &d); err != nil {
			_, err = fmt.Fprintf(out, "%s: unreadable bulk completion: %v\n", msg.Subject(), err)
			return err
		}
		what := "completed"
		if d.Cancelled {
			what = "cancelled"
		}
		_, err := fmt.Fprintf(out, "%s  bulk %s %s/%q: matched %d, stopped %d, failed %d, skipped %d\n", d.CompletedAt.Format(time.RFC3339), what,
			d.InstanceID, d.BulkID, d.Matched, d.Stopped, d.Failed, d.Skipped)
		return err
	}
	res, err := events.DecodeResult(msg.Subject(), msg.Data())
	if err != nil {
		_, err = fmt.Fprintf(out, "%s: unreadable result: %v\n", msg.Subject(), err)
		return err
	}
	if s := res.Stopped; s != nil {
		_, err = fmt.Fprintf(out, "%s  stopped  %s/%q (was %s) by %s\n", s.StoppedAt.Format(time.RFC3339), s.InstanceID, s.ContactID, s.PreviousState, s.RequestID)
		return err
	}
	f := res.Failed
	_, err = fmt.Fprintf(out, "%s  failed   %s/%q %s: %s (request %s)\n", f.FailedAt.Format(time.RFC3339), f.InstanceID, f.ContactID, f.ReasonCode, f.Message, f.RequestID)
	return err
}
