package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/inventory"
	"github.com/contactstop/contactstop/platform/registry"
	"github.com/contactstop/contactstop/store"
)

func newContactsSyncCmd() *cobra.Command {
	var (
		o        clientOptions
		instance string
	)
	cmd := &cobra.Command{
		Use:   "sync --instance I",
		Short: "Bring the store's inventory of a bound instance up to date from its platform",
		Long: `Ask the platform an instance is bound to for its active contacts (NICE
CXone, Twilio's TaskRouter tasks, Genesys Cloud's queued conversations) and
make the store's records match: listed contacts are added or updated, and
active records the platform no longer lists are recorded ENDED by the
platform. A stop in progress is left to its request. Credentials come from
this command's environment, as for serve. serve does the same every
--sync-interval; this runs one now. Amazon Connect cannot list its contacts:
its inventory comes from its contact events (POST /ingest/amazon-connect).`,
		Example: `  contactstop contacts sync --instance acme-cx`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("contacts sync")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			inst, err := st.GetInstance(ctx, instance)
			if err != nil {
				return err
			}
			if inst.Binding == nil {
				return fmt.Errorf("instance %s is not bound to a platform: its store is its inventory", instance)
			}
			bs, err := budget.Open(ctx, cl.js, budget.Config{})
			if err != nil {
				return err
			}
			defer bs.Close()
			reg, err := registry.New(registry.Config{Instances: st, Budgets: bs})
			if err != nil {
				return err
			}
			l, err := reg.Lister(ctx, instance)
			if err != nil {
				return err
			}
			if l == nil {
				return fmt.Errorf("instance %s is bound to %s, which cannot list its contacts: its inventory comes from its events", instance, inst.Binding.Platform)
			}
			stats, err := inventory.Sync(ctx, st, instance, l, time.Now)
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"instanceId": instance, "listed": stats.Listed,
					"applied": stats.Applied, "ended": stats.Ended, "missed": stats.Missed, "unconfirmed": stats.Unconfirmed,
					"seconds": stats.Took.Seconds()})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "synced %s from %s: %d active listed (%d new or changed), %d no longer listed recorded ENDED "+
				"(the platform confirmed each; %d left out but active, %d not confirmed, kept), in %s\n",
				instance, inst.Binding.Platform, stats.Listed, stats.Applied, stats.Ended, stats.Missed, stats.Unconfirmed, stats.Took.Round(time.Millisecond))
			return err
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&instance, "instance", "", "the bound instance (required)")
	_ = cmd.MarkFlagRequired("instance")
	return cmd
}

// runSyncs syncs the inventory of every instance bound to a platform that
// lists its contacts, each once per interval across the replicas, until
// ctx ends. The turns are kept in the budgets bucket; until it can be
// opened, nothing is synced.
func runSyncs(ctx context.Context, js jetstream.JetStream, st *store.KV, reg *registry.Registry, interval time.Duration, log *zap.Logger) {
	tick := time.NewTicker(max(time.Second, interval/4))
	defer tick.Stop()
	var turns *inventory.Turns
	for {
		if turns == nil {
			kv, err := js.KeyValue(ctx, budget.DefaultBucket)
			switch {
			case err == nil:
				turns = &inventory.Turns{KV: kv, Interval: interval, Now: time.Now}
			case ctx.Err() == nil:
				log.Warn("inventory sync waits: the budgets bucket cannot be opened yet", zap.Error(err))
			}
		}
		if turns != nil {
			syncDue(ctx, st, reg, turns, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// syncDue syncs each bound instance whose turn this replica claims.
func syncDue(ctx context.Context, st *store.KV, reg *registry.Registry, turns *inventory.Turns, log *zap.Logger) {
	insts, err := st.ListInstances(ctx)
	if err != nil && ctx.Err() == nil {
		log.Warn("inventory sync: listing instances failed", zap.Error(err))
	}
	for _, in := range insts {
		if in.Binding == nil || ctx.Err() != nil {
			continue
		}
		l, err := reg.Lister(ctx, in.InstanceID)
		if err != nil || l == nil {
			continue
		}
		if ok, err := turns.Claim(ctx, in.InstanceID); err != nil || !ok {
			continue
		}
		stats, err := inventory.Sync(ctx, st, in.InstanceID, l, time.Now)
		fields := []zap.Field{zap.String("instance_id", in.InstanceID), zap.String("platform", in.Binding.Platform),
			zap.Int("listed", stats.Listed), zap.Int("applied", stats.Applied), zap.Int("ended", stats.Ended),
			zap.Int("missed", stats.Missed), zap.Int("unconfirmed", stats.Unconfirmed), zap.Duration("took", stats.Took)}
		if err != nil {
			log.Warn("inventory sync failed; the next interval tries again", append(fields, zap.Error(err))...)
			continue
		}
		log.Info("inventory synced", fields...)
	}
}
