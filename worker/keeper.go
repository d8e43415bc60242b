package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
)

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	// Topology is what Provision made, and makes again.
	Topology TopologyConfig
	// Ensure re-creates whatever else the worker needs that is missing
	// (the store's buckets) and returns what it re-created. Optional.
	Ensure func(ctx context.Context) (recreated []string, err error)
	// Interval between checks. Default 5s.
	Interval time.Duration
	// Logger receives the keeper's logs, named "keeper". Default: none.
	Logger *zap.Logger
}

// Keeper watches the streams and consumers Provision made (and, through
// Ensure, the store's buckets) and re-creates any that disappears — deleted
// by hand, or by an account's reset — so that intake never stops for good.
// Missing reports what is missing and could not be made again yet, for
// readiness. Start it once; Stop it once.
type Keeper struct {
	js  jetstream.JetStream
	cfg KeeperConfig
	log *zap.Logger

	mu      sync.Mutex
	missing []string
	stop    chan struct{}
	done    chan struct{}
}

// NewKeeper returns a Keeper of js's contactstop streams and consumers.
func NewKeeper(js jetstream.JetStream, cfg KeeperConfig) *Keeper {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Keeper{js: js, cfg: cfg, log: cfg.Logger.Named("keeper")}
}

// Start checks every Interval, in a goroutine, until Stop.
func (k *Keeper) Start(ctx context.Context) {
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(k.done)
		tick := time.NewTicker(k.cfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cctx, cancel := context.WithTimeout(ctx, k.cfg.Interval)
			k.Check(cctx)
			cancel()
		}
	}()
}

// Stop ends the checks and waits for the one running.
func (k *Keeper) Stop() {
	if k.stop == nil {
		return
	}
	close(k.stop)
	<-k.done
}

// Missing returns what the last check found missing and could not make
// again, or nil.
func (k *Keeper) Missing() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.missing)
}

// Ready reports, as an error, what is missing now (looked up at once, not
// as of the last check) or was missing and could not be made again at the
// last check; nil when nothing is.
func (k *Keeper) Ready(ctx context.Context) error {
	missing, err := k.absent(ctx)
	if err != nil {
		return err
	}
	for _, m := range k.Missing() {
		if !slices.Contains(missing, m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing, being created again: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Check looks for every stream and consumer of the topology and, when one
// is missing, provisions the topology again; it does the same for the
// store through Ensure. It records what is still missing.
func (k *Keeper) Check(ctx context.Context) {
	missing, err := k.absent(ctx)
	if err != nil {
		k.log.Debug("checking the topology failed", zap.Error(err))
		return // the server is out of reach: nothing to re-create
	}
	if len(missing) > 0 {
		k.log.Warn("contactstop's streams or consumers are missing; creating them again", zap.Strings("missing", missing))
		if err := Provision(ctx, k.js, k.cfg.Topology); err != nil {
			k.log.Error("re-creating the topology failed", zap.Error(err))
		}
		if missing, err = k.absent(ctx); err != nil {
			missing = append(missing, "(unknown: "+err.Error()+")")
		}
	}
	if k.cfg.Ensure != nil {
		recreated, err := k.cfg.Ensure(ctx)
		if len(recreated) > 0 {
			k.log.Warn("store buckets were missing; created them again", zap.Strings("buckets", recreated))
		}
		if err != nil {
			k.log.Error("re-creating the store's buckets failed", zap.Error(err))
			missing = append(missing, "store: "+err.Error())
		}
	}
	k.mu.Lock()
	k.missing = missing
	k.mu.Unlock()
}

// absent lists the streams and consumers of the topology that do not exist.
func (k *Keeper) absent(ctx context.Context) ([]string, error) {
	streams := []string{StreamNoDedup, events.StreamRequests, events.StreamResults, events.StreamDeadLetter, events.StreamBulk}
	consumers := map[string]string{events.ConsumerRequests: events.StreamRequests, events.ConsumerBulk: events.StreamBulk}
	if k.cfg.Topology.Emergency {
		streams = append(streams, events.StreamEmergency)
		consumers[events.ConsumerEmergency] = events.StreamEmergency
	}
	var missing []string
	for _, name := range streams {
		_, err := k.js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, "stream "+name)
		case err != nil:
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	for name, stream := range consumers {
		_, err := k.js.Consumer(ctx, stream, name)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, "consumer "+name)
		case err != nil:
			return nil, fmt.Errorf("consumer %s: %w", name, err)
		}
	}
	slices.Sort(missing)
	return missing, nil
}
