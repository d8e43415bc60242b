package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/contactstop/contactstop/store"
)

func newContactsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contacts",
		Short: "Write, read, list, seed and sync contacts in the state store",
		Example: `  contactstop contacts seed --instance acme --count 1000 --queue billing
  contactstop contacts list --instance acme`,
	}
	cmd.AddCommand(newContactsPutCmd(), newContactsGetCmd(), newContactsListCmd(), newContactsSeedCmd(), newContactsSyncCmd())
	return cmd
}

// contactFlags are the record fields settable from the command line.
type contactFlags struct {
	state, queue, channel string
}

func (f *contactFlags) register(cmd *cobra.Command, defaultQueue string) {
	cmd.Flags().StringVar(&f.state, "state", string(store.StateQueued), "state: INITIATED, QUEUED, CONNECTED, ON_HOLD or ENDED")
	cmd.Flags().StringVar(&f.queue, "queue", defaultQueue, "queue id")
	cmd.Flags().StringVar(&f.channel, "channel", string(store.ChannelVoice), "channel: VOICE, CHAT, EMAIL, SMS, VOICEMAIL or WORK_ITEM")
}

func (f *contactFlags) template(instanceID string) (store.Contact, error) {
	state, err := store.ParseState(f.state)
	if err != nil {
		return store.Contact{}, fmt.Errorf("--state: %w", err)
	}
	channel, err := store.ParseChannel(f.channel)
	if err != nil {
		return store.Contact{}, fmt.Errorf("--channel: %w", err)
	}
	now := time.Now().UTC()
	c := store.Contact{InstanceID: instanceID, State: state, QueueID: f.queue, Channel: channel, UpdatedAt: now}
	if state == store.StateQueued {
		c.EnqueuedAt = now
	}
	return c, nil
}

// ensureInstance registers the instance unless it is known already.
func ensureInstance(ctx context.Context, st *store.KV, instanceID string) error {
	ok, err := st.InstanceExists(ctx, instanceID)
	if err != nil || ok {
		return err
	}
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: instanceID})
	return err
}

func newContactsPutCmd() *cobra.Command {
	var (
		o                     clientOptions
		f                     contactFlags
		instanceID, contactID string
		force                 bool
	)
	cmd := &cobra.Command{
		Use:     "put --instance I --contact C [--state S] [--queue Q] [--channel CH] [--force]",
		Short:   "Write one contact (registering its instance)",
		Example: `  contactstop contacts put --instance acme --contact c-1 --state QUEUED --queue billing --channel CHAT`,
		Long: `Write one contact, replacing whatever is stored under its id, and register
its instance. A contact that is ENDED stays ended: writing it back in an
active state is refused unless --force is given (its record is also the
record of the request that ended it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			c, err := f.template(instanceID)
			if err != nil {
				return err
			}
			c.ContactID = contactID
			cl, err := o.connect("contacts put")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			if err := ensureInstance(ctx, st, instanceID); err != nil {
				return err
			}
			c, err = st.ReplaceContact(ctx, store.ReplaceContactParams{Contact: c, Force: force})
			if errors.Is(err, store.ErrContactEnded) {
				return fmt.Errorf("%w (use --force to replace it)", err)
			}
			if err != nil {
				return err
			}
			return printContact(cmd.OutOrStdout(), c, o.json)
		},
	}
	o.register(cmd)
	f.register(cmd, "default")
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance (required)")
	cmd.Flags().StringVar(&contactID, "contact", "", "contact id (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an ENDED contact with an active one")
	_ = cmd.MarkFlagRequired("instance")
	_ = cmd.MarkFlagRequired("contact")
	return cmd
}

func newContactsGetCmd() *cobra.Command {
	var (
		o                     clientOptions
		instanceID, contactID string
	)
	cmd := &cobra.Command{
		Use:   "get --instance I --contact C",
		Short: "Read one contact",
		Long: `Read one contact from the state store. The exit code is 3 when there is no
such contact.`,
		Example: `  contactstop contacts get --instance acme --contact c-1
  contactstop contacts get --instance acme --contact "call/42" --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("contacts get")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			c, err := st.GetContact(ctx, instanceID, contactID)
			if err != nil {
				return err
			}
			return printContact(cmd.OutOrStdout(), c, o.json)
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance (required)")
	cmd.Flags().StringVar(&contactID, "contact", "", "contact id (required)")
	_ = cmd.MarkFlagRequired("instance")
	_ = cmd.MarkFlagRequired("contact")
	return cmd
}

func printContact(out io.Writer, c store.Contact, asJSON bool) error {
	if asJSON {
		return printJSON(out, c)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	row("contactId", c.ContactID)
	row("instanceId", c.InstanceID)
	row("state", string(c.State))
	row("queueId", c.QueueID)
	row("channel", string(c.Channel))
	row("enqueuedAt", ts(c.EnqueuedAt))
	row("updatedAt", ts(c.UpdatedAt))
	row("endedAt", ts(c.EndedAt))
	row("endedBy", c.EndedBy)
	row("previousState", string(c.PreviousState))
	row("disconnectReason", c.DisconnectReason)
	row("revision", strconv.FormatUint(c.Revision, 10))
	return tw.Flush()
}

func newContactsListCmd() *cobra.Command {
	var (
		o          clientOptions
		instanceID string
	)
	cmd := &cobra.Command{
		Use:   "list --instance I",
		Short: "List an instance's contacts (one JSON array with --json)",
		Example: `  contactstop contacts list --instance acme
  contactstop contacts list --instance acme --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("contacts list")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "CONTACT\tSTATE\tQUEUE\tCHANNEL\tUPDATED")
			}
			n, bad := 0, 0
			list := &jsonList{w: out}
			err = st.WalkContacts(ctx, store.WalkParams{InstanceID: instanceID}, func(e store.WalkEntry) error {
				if e.Bad != nil {
					bad++
					if o.json {
						return writeJSONLine(cmd.ErrOrStderr(), map[string]string{"warning": e.Bad.Error()})
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", e.Bad)
					return nil
				}
				c := e.Contact
				n++
				if o.json {
					return list.add(c)
				}
				_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ContactID, c.State, c.QueueID, c.Channel, c.UpdatedAt.Format(time.RFC3339))
				return err
			})
			if err != nil {
				return err
			}
			if o.json {
				return list.close()
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if bad > 0 {
				_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%d contacts; %d records that are not valid contacts (see the warnings)\n", n, bad)
				return err
			}
			_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%d contacts\n", n)
			return err
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance (required)")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

func newContactsSeedCmd() *cobra.Command {
	var (
		o          clientOptions
		f          contactFlags
		instanceID string
		count      int
		prefix     string
		start      int
	)
	cmd := &cobra.Command{
		Use:   "seed --instance I --count N [--queue Q] [--state S] [--channel CH] [--prefix P] [--start K]",
		Short: "Register an instance and write N synthetic contacts named P<K> … P<K+N-1>",
		Example: `  contactstop contacts seed --instance acme --count 10000 --queue billing
  contactstop contacts seed --instance acme --count 500 --state CONNECTED --prefix agent- --start 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 {
				return fmt.Errorf("--count must be at least 1, got %d", count)
			}
			if start < 0 {
				return fmt.Errorf("--start must not be negative, got %d", start)
			}
			tmpl, err := f.template(instanceID)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("contacts seed")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			if err := ensureInstance(ctx, st, instanceID); err != nil {
				return err
			}
			bar := progressbar.NewOptions(count,
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription("seeding"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetVisibility(!o.json && isTerminal(os.Stderr)),
				progressbar.OptionClearOnFinish(),
			)
			began := time.Now()
			contacts := iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
				for i := range count {
					c := tmpl
					c.ContactID = prefix + strconv.Itoa(start+i)
					if !yield(c) {
						return
					}
					_ = bar.Add(1)
				}
			})
			n, err := st.SeedContacts(ctx, contacts)
			_ = bar.Finish()
			if err != nil {
				return fmt.Errorf("seeded %d contacts, then: %w", n, err)
			}
			took := time.Since(began)
			if o.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"instanceId": instanceID, "seeded": n, "seconds": took.Seconds()})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "seeded %d contacts in %s (%s%d … %s%d) in %.2fs\n",
				n, instanceID, prefix, start, prefix, start+n-1, took.Seconds())
			return err
		},
	}
	o.register(cmd)
	f.register(cmd, "default")
	cmd.Flags().StringVar(&instanceID, "instance", "", "instance (required)")
	cmd.Flags().IntVar(&count, "count", 0, "number of contacts (required)")
	cmd.Flags().StringVar(&prefix, "prefix", "c", "contact id prefix")
	cmd.Flags().IntVar(&start, "start", 0, "first number")
	_ = cmd.MarkFlagRequired("instance")
	_ = cmd.MarkFlagRequired("count")
	return cmd
}

// isTerminal reports whether f is a terminal, where progress is drawn in
// place.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
