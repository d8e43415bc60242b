// Package worker consumes contact.stop.requested messages from JetStream,
// ends contacts in the state store (or on the platform an instance is bound
// to) and publishes one result per request.
//
// Every request, single or a contact of a bulk request, goes through one
// decision pipeline (pipeline.go): read the contact and the request's
// outcome record, decide, and carry the decision out by a write
// conditioned on what was read — the contact's compare-and-set to ENDED,
// or the failure's outcome record. Every outcome is recorded before its
// result is published (a stop on the contact itself, a failure in its
// outcome record), and only then is the request acknowledged (settle.go),
// so a request delivered or sent again at any later time yields its
// recorded outcome and stores no second result.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/jspub"
)

// Worker consumes its lanes, each a durable consumer with its own pool of
// goroutines: single stop requests (Config.Workers in hand, decided in
// batches of Config.BatchSize), bulk requests (Config.Bulks at a time, each
// stopping Config.BulkWorkers contacts at a time) and, when enabled,
// emergency broadcasts. Bulk work thus never queues single requests behind
// it. Start it once; Stop it once.
type Worker struct {
	cfg   Config
	js    jetstream.JetStream
	store Store
	log   *zap.Logger
	// pipe decides and carries out every request to end a contact.
	pipe *pipeline
	// pub publishes results.
	pub *jspub.Publisher
	id  string // identifies this process's bulk runs

	// inHand holds the deliveries of single requests this process is
	// working on, by stream sequence: a redelivery of one of them (the
	// server gave up waiting) is not worked on twice, but settled with it.
	inHandMu sync.Mutex
	inHand   map[uint64]*delivery

	mu       sync.Mutex
	lanes    []*lane
	stopping bool
	quit     chan struct{} // closed by Stop: bulk runs hand back
	stopPull context.CancelFunc
	hardStop context.CancelFunc
	done     chan struct{}

	hooks testHooks
}

// lane is one consumer and the goroutines that process its messages.
type lane struct {
	stream, consumer string
	// buffer is the most messages pulled ahead, split among fetchers pull
	// requests kept outstanding at once.
	buffer, fetchers int
	goroutines       int
	// batchSize is the most messages process takes at once: what has
	// arrived, without waiting for more.
	batchSize int
	process   func(ctx context.Context, msgs []received)

	// cons pulls by the consumer's name, so it serves a consumer deleted
	// and made again too.
	cons jetstream.Consumer
}

// pullWait is how long a pull request waits at the server for messages.
// It bounds how long Stop waits for the requests outstanding when it is
// called, on an idle lane, and how soon a pull request parked on a server
// that died is replaced (the client gives up a second after it).
const pullWait = time.Second

// received is a message as it came off a lane's consumer.
type received struct {
	msg jetstream.Msg
	at  time.Time
}

// testHooks let tests stop work at a crash point: a hook returning true
// abandons the work there, neither acknowledged nor rejected, as if the
// process had died.
type testHooks struct {
	// afterDecide is called for each single request once its outcome is
	// recorded, before its result is published.
	afterDecide func(*Request, events.Result) bool
	// beforeAck is called once a single request's result is stored.
	beforeAck func(*Request) bool
	// bulkItem is called before each contact of a bulk run is stopped;
	// returning true abandons the run there.
	bulkItem func(bulkID string, n int) bool
	// bulkBeforeResults is called once a batch of a bulk run is written,
	// before its results are published; returning true abandons the run
	// there.
	bulkBeforeResults func(bulkID string) bool
	// bulkAfterResults is called once a batch's results are stored, before
	// its pending slot is emptied; returning true abandons the run there.
	bulkAfterResults func(bulkID string) bool
}

// New builds a Worker. js must reach the streams made by Provision. The
// contacts are ended by ender when not nil, else in st.
func New(js jetstream.JetStream, st Store, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	ender := cfg.Ender
	if ender == nil {
		ender = st
	}
	w := &Worker{cfg: cfg, js: js, store: st, log: cfg.Logger.Named("worker"), id: nuid.Next(),
		pipe:   &pipeline{store: st, ender: ender, now: func() time.Time { return cfg.Now().UTC() }, log: cfg.Logger.Named("worker")},
		inHand: map[uint64]*delivery{}}
	if js != nil {
		w.pub = jspub.New(js.Conn())
	}
	return w, nil
}

// Start opens the lanes' consumers, begins pulling and returns. Work
// continues until Stop.
func (w *Worker) Start(ctx context.Context) error {
	lanes := []*lane{{
		stream: events.StreamRequests, consumer: events.ConsumerRequests,
		buffer: w.cfg.Workers, fetchers: min(2, w.cfg.Workers), goroutines: (w.cfg.Workers + w.cfg.BatchSize - 1) / w.cfg.BatchSize,
		batchSize: w.cfg.BatchSize, process: w.processRequests,
	}, {
		stream: events.StreamBulk, consumer: events.ConsumerBulk,
		buffer: 1, fetchers: 1, goroutines: w.cfg.Bulks, batchSize: 1,
		process: w.processBulks,
	}}
	if w.cfg.Emergency {
		lanes = append(lanes, &lane{
			stream: events.StreamEmergency, consumer: events.ConsumerEmergency,
			buffer: 1, fetchers: 1, goroutines: 1, batchSize: 1,
			process: w.processBulks,
		})
	}
	for _, l := range lanes {
		cons, err := w.js.Consumer(ctx, l.stream, l.consumer)
		if err != nil {
			return fmt.Errorf("open consumer %s: %w", l.consumer, err)
		}
		l.cons = cons
	}
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	pullCtx, stopPull := context.WithCancel(hardCtx)
	w.mu.Lock()
	w.lanes, w.hardStop, w.stopPull, w.done, w.quit = lanes, hardStop, stopPull, make(chan struct{}), make(chan struct{})
	w.mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range lanes {
		work := make(chan received, l.batchSize)
		wg.Go(func() {
			defer close(work)
			w.pull(pullCtx, l, work)
		})
		for range l.goroutines {
			wg.Go(func() { w.batches(hardCtx, l, work) })
		}
	}
	go func() {
		wg.Wait()
		hardStop()
		close(w.done)
	}()
	w.log.Info("worker started", zap.Int("workers", w.cfg.Workers), zap.Int("batch_size", w.cfg.BatchSize), zap.Int("bulks", w.cfg.Bulks),
		zap.Int("bulk_workers", w.cfg.BulkWorkers), zap.Bool("emergency", w.cfg.Emergency),
		zap.Int("max_attempts", w.cfg.MaxAttempts))
	return nil
}

// pull feeds a lane's messages to its goroutines until Stop, from
// l.fetchers pull requests kept outstanding at once: while one's messages
// are handed over, the next is already waiting at the server.
func (w *Worker) pull(ctx context.Context, l *lane, work chan<- received) {
	var wg sync.WaitGroup
	for range l.fetchers {
		wg.Go(func() { w.fetch(ctx, l, work) })
	}
	wg.Wait()
}

// fetch sends one pull request after another until Stop, handing over
// each one's messages. It stops only between requests, once the last has
// ended at the server (its batch delivered, or its wait over): a pull
// request cancelled while the server is sending it messages leaves those
// delivered to no one, pending until AckWait ends (nats.go issue 898), so
// Stop does not cancel one; it ends ctx, which ends the loop between
// requests. If a pull fails (the consumer was deleted, its leader changed),
// it waits for the consumer with backoff and goes on.
func (w *Worker) fetch(ctx context.Context, l *lane, work chan<- received) {
	size := max(1, l.buffer/l.fetchers)
	for ctx.Err() == nil {
		batch, err := l.cons.Fetch(size, jetstream.FetchMaxWait(pullWait))
		if err == nil {
			for msg := range batch.Messages() {
				work <- received{msg: msg, at: time.Now()}
			}
			err = batch.Error()
		}
		if err == nil {
			continue
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
			return
		}
		w.log.Warn("pulling failed; waiting for the consumer", zap.String("consumer", l.consumer), zap.Error(err))
		b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
			backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(5*time.Second)), ctx)
		_ = backoff.Retry(func() error {
			_, err := w.js.Consumer(ctx, l.stream, l.consumer)
			if ctx.Err() != nil {
				return backoff.Permanent(ctx.Err())
			}
			if err != nil {
				w.log.Warn("consumer unavailable", zap.String("consumer", l.consumer), zap.Error(err))
			}
			return err
		}, b)
	}
}

// batches feeds a lane's messages to l.process, taking what has arrived,
// up to l.batchSize, without waiting for more: under light load a batch is
// one message and nothing waits for a batch to fill.
func (w *Worker) batches(ctx context.Context, l *lane, work <-chan received) {
	batch := make([]received, 0, l.batchSize)
	for r := range work {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < l.batchSize {
			select {
			case r, ok := <-work:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if ctx.Err() != nil {
			for _, r := range batch {
				_ = r.msg.Nak() // shutting down past the deadline: hand back at once
			}
			continue
		}
		w.safely(ctx, l, batch)
	}
}

// safely runs a lane's processing with a last line of defence: a panic is
// logged and the messages handed back (a Nak of a message already
// acknowledged is ignored by the server), and the lane carries on. A
// handed-back request is not an attempt; should it panic every time, its
// deliveries grow without bound and the log says why.
func (w *Worker) safely(ctx context.Context, l *lane, batch []received) {
	defer func() {
		if v := recover(); v != nil {
			w.log.Error("panic while processing messages; handed back",
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()), zap.String("consumer", l.consumer), zap.Int("messages", len(batch)))
			for _, r := range batch {
				_ = r.msg.NakWithDelay(w.cfg.RedeliveryDelayMax)
			}
		}
	}()
	l.process(ctx, batch)
}

// ErrNotReady is wrapped by Ready's errors.
var ErrNotReady = errors.New("worker not ready")

// Ready reports whether the worker is taking work: started, not stopping,
// and every lane's consumer present on the server. It asks the server, so
// it fails when NATS is unreachable.
func (w *Worker) Ready(ctx context.Context) error {
	w.mu.Lock()
	started, stopping, lanes := w.done != nil, w.stopping, w.lanes
	w.mu.Unlock()
	switch {
	case !started:
		return fmt.Errorf("%w: not started", ErrNotReady)
	case stopping:
		return fmt.Errorf("%w: draining for shutdown", ErrNotReady)
	}
	for _, l := range lanes {
		if _, err := w.js.Consumer(ctx, l.stream, l.consumer); err != nil {
			return fmt.Errorf("%w: consumer %s: %w", ErrNotReady, l.consumer, err)
		}
	}
	return nil
}

// Stop stops pulling: no pull request is sent after it, and those
// outstanding are let end at the server (within pullWait). It lets every
// request they deliver finish, and returns when all are done. If ctx ends
// first, in-flight handling is cancelled and unfinished requests, and any
// the outstanding pulls still deliver, are handed back to the server (Nak)
// for another worker, none of them counted as an attempt; Stop then
// returns ctx's error. Nothing is lost either way: a bulk request handed
// back mid-run is resumed by its next delivery.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.done == nil {
		w.mu.Unlock()
		return errors.New("worker not started")
	}
	if !w.stopping {
		w.stopping = true
		close(w.quit)
		w.stopPull()
	}
	done := w.done
	w.mu.Unlock()

	select {
	case <-done:
		w.log.Info("worker stopped")
		return nil
	case <-ctx.Done():
		w.hardStop()
		<-done
		w.log.Warn("worker stopped at its deadline; unfinished requests were handed back")
		return ctx.Err()
	}
}

// newBackOff is the exponential backoff, with jitter, of transient errors
// within one delivery.
func (w *Worker) newBackOff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.RetryInitial),
		backoff.WithMaxInterval(w.cfg.RetryMax),
		backoff.WithMaxElapsedTime(w.cfg.RetryMaxElapsed),
		backoff.WithRandomizationFactor(0.5),
	)
}

// retry runs op with the backoff of newBackOff until it succeeds, returns
// a permanent error or ctx ends. The returned error is op's last.
func (w *Worker) retry(ctx context.Context, log *zap.Logger, op func() error) error {
	return backoff.RetryNotify(func() error {
		err := op()
		if err != nil && ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(w.newBackOff(), ctx), func(err error, next time.Duration) {
		w.cfg.Metrics.retried(1)
		log.Debug("transient error; retrying", zap.Duration("next", next), zap.Error(err))
	})
}

func permanent(err error) error { return backoff.Permanent(err) }

// redeliveryDelay is the delay before the next delivery after the given
// number of failed attempts.
func (w *Worker) redeliveryDelay(attempts int) time.Duration {
	d := w.cfg.RedeliveryDelay
	for i := 1; i < attempts && d < w.cfg.RedeliveryDelayMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.RedeliveryDelayMax)
}
