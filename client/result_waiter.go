package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
)

// ResultWaiter finds one result on the results stream. Make it with
// NewResultWaiter before publishing the request whose result it awaits.
type ResultWaiter struct {
	js       jetstream.JetStream
	subjects []string
	startSeq uint64
	window   time.Duration
}

// NewResultWaiter notes where the results stream ends now, for results on
// the given subjects; call it before publishing the request whose result is
// awaited. It fails when the results or requests stream does not exist
// (contactstop serve has not run against this server).
func NewResultWaiter(ctx context.Context, js jetstream.JetStream, subjects ...string) (*ResultWaiter, error) {
	rs, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		return nil, fmt.Errorf("results stream (has contactstop serve run against this server?): %w", err)
	}
	req, err := js.Stream(ctx, events.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("requests stream: %w", err)
	}
	return &ResultWaiter{
		js:       js,
		subjects: subjects,
		startSeq: rs.CachedInfo().State.LastSeq + 1,
		window:   req.CachedInfo().Config.Duplicates,
	}, nil
}

// Find waits until match accepts a result published after the waiter was
// made, or, when from is set, since a minute before from (the result of a
// request answered before). For a duplicate publication the original
// request was published within the duplicate window, so results are
// searched from that far back. When ctx ends first it returns an error
// wrapping ErrNoResult and ctx.Err().
func (rw *ResultWaiter) Find(ctx context.Context, duplicate bool, from time.Time, match func(subject string, data []byte) bool) error {
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
	// Deleted on return; the server reaps it should the process die first.
	cfg.InactiveThreshold = 30 * time.Second
	cons, err := rw.js.OrderedConsumer(ctx, events.StreamResults, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (is contactstop serve running?): %w", ErrNoResult, ctx.Err())
		}
		return fmt.Errorf("read results: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if info := cons.CachedInfo(); info != nil && info.Name != "" {
			_ = rw.js.DeleteConsumer(dctx, events.StreamResults, info.Name)
		}
	}()
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w (is contactstop serve running?): %w", ErrNoResult, err)
			}
			return fmt.Errorf("read results: %w", err)
		}
		if match(msg.Subject(), msg.Data()) {
			return nil
		}
	}
}
