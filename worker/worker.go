// Package worker consumes contact.stop.requested messages from JetStream,
// ends contacts in the state store and publishes one result per request.
//
// Per delivery the worker: decodes and validates the request; checks the
// instance; ends the contact by a revision-checked compare-and-set (or
// finds it already ended by this same request); publishes the result with a
// Nats-Msg-Id derived from the request's identity and waits for JetStream to
// store it; and only then acknowledges the request. A crash at any point
// leads to a redelivery whose outcome is the same, and whose result, if
// published again, is dropped by the results stream's duplicate window.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
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

// Headers the worker adds to dead-letter copies.
const (
	HeaderDeadLetterError      = "Contactstop-Error"
	HeaderDeadLetterDeliveries = "Contactstop-Deliveries"
	HeaderDeadLetterSubject    = "Contactstop-Subject"
	HeaderDeadLetterSequence   = "Contactstop-Stream-Sequence"
)

// Worker consumes its lanes, each a durable consumer with its own pool of
// goroutines: single stop requests (Config.Workers goroutines), bulk
// requests (Config.Bulks at a time, each stopping Config.BulkWorkers
// contacts at a time) and, when enabled, emergency broadcasts. Bulk work
// thus never queues single requests behind it. Start it once; Stop it once.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	store   Store
	log     *zap.Logger
	handler Handler
	// pub publishes the batched path's results.
	pub *jspub.Publisher
	id  string // identifies this process's bulk runs

	mu       sync.Mutex
	lanes    []*lane
	stopping bool
	quit     chan struct{} // closed by Stop: bulk runs hand back
	hardStop context.CancelFunc
	done     chan struct{}

	hooks testHooks
}

// lane is one consumer and the goroutines that process its messages.
type lane struct {
	stream, consumer string
	buffer           int // messages pulled ahead
	goroutines       int
	process          func(ctx context.Context, msg jetstream.Msg)
	// batch, when set, takes the lane's messages up to batchSize at a
	// time instead of process one at a time.
	batch     func(ctx context.Context, msgs []jetstream.Msg)
	batchSize int

	mc jetstream.MessagesContext // guarded by Worker.mu
}

// testHooks let tests stop a delivery at a crash point: a hook returning
// true abandons the message there, neither acknowledged nor rejected, as if
// the process had died.
type testHooks struct {
	afterDecide func(*Request, events.Result) bool
	beforeAck   func(*Request) bool
	// bulkItem is called before each contact of a bulk run is stopped;
	// returning true abandons the run there.
	bulkItem func(bulkID string, n int) bool
	// bulkBeforeResults is called once a batch of a bulk run is written,
	// before its results are published; returning true abandons the run
	// there.
	bulkBeforeResults func(bulkID string) bool
}

// New builds a Worker. js must reach the streams made by Provision.
func New(js jetstream.JetStream, st Store, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	w := &Worker{cfg: cfg, js: js, store: st, log: cfg.Logger.Named("worker"), id: nuid.Next()}
	w.handler = recoverer(cfg.Metrics.middleware(w.stop))
	if js != nil {
		w.pub = jspub.New(js.Conn())
	}
	return w, nil
}

// Start opens the lanes' consumers, begins pulling and returns. Work
// continues until Stop.
func (w *Worker) Start(ctx context.Context) error {
	requests := &lane{
		stream: StreamRequests, consumer: ConsumerName,
		buffer: w.cfg.Workers, goroutines: w.cfg.Workers,
		process: w.safely(w.process),
	}
	if w.cfg.BatchSize > 1 {
		requests.batch, requests.batchSize = w.safelyBatch(w.processBatch), w.cfg.BatchSize
		requests.goroutines = (w.cfg.Workers + w.cfg.BatchSize - 1) / w.cfg.BatchSize
	}
	lanes := []*lane{requests, {
		stream: StreamBulk, consumer: BulkConsumerName,
		buffer: 1, goroutines: w.cfg.Bulks,
		process: w.safely(w.processBulk),
	}}
	if w.cfg.Emergency {
		lanes = append(lanes, &lane{
			stream: StreamEmergency, consumer: EmergencyConsumerName,
			buffer: 1, goroutines: 1,
			process: w.safely(w.processBulk),
		})
	}
	for _, l := range lanes {
		mc, err := w.open(ctx, l)
		if err != nil {
			for _, opened := range lanes {
				if opened.mc != nil {
					opened.mc.Stop()
				}
			}
			return err
		}
		l.mc = mc
	}
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	w.mu.Lock()
	w.lanes, w.hardStop, w.done, w.quit = lanes, hardStop, make(chan struct{}), make(chan struct{})
	w.mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range lanes {
		work := make(chan jetstream.Msg, l.batchSize)
		wg.Go(func() {
			defer close(work)
			w.pull(hardCtx, l, work)
		})
		for range l.goroutines {
			if l.batch != nil {
				wg.Go(func() { w.batches(hardCtx, l, work) })
				continue
			}
			wg.Go(func() {
				for msg := range work {
					if hardCtx.Err() != nil {
						_ = msg.Nak() // shutting down past the deadline: hand back at once
						continue
					}
					l.process(hardCtx, msg)
				}
			})
		}
	}
	go func() {
		wg.Wait()
		hardStop()
		close(w.done)
	}()
	w.log.Info("worker started", zap.Int("workers", w.cfg.Workers), zap.Int("batch_size", w.cfg.BatchSize), zap.Int("bulks", w.cfg.Bulks),
		zap.Int("bulk_workers", w.cfg.BulkWorkers), zap.Bool("emergency", w.cfg.Emergency),
		zap.Int("max_deliveries", w.cfg.MaxDeliveries))
	return nil
}

func (w *Worker) open(ctx context.Context, l *lane) (jetstream.MessagesContext, error) {
	cons, err := w.js.Consumer(ctx, l.stream, l.consumer)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s: %w", l.consumer, err)
	}
	// Pull requests live on the consumer's leader only and are not
	// replicated: when that server dies, the client learns it only from
	// missing heartbeats (two intervals of half the expiry). nats.go's 30 s
	// default made a leader loss stall the worker for about 30 s; 5 s
	// bounds it to a few seconds plus the election.
	mc, err := cons.Messages(jetstream.PullMaxMessages(l.buffer), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("pull from consumer %s: %w", l.consumer, err)
	}
	return mc, nil
}

// pull feeds a lane's messages to its goroutines until Stop. If the pull
// ends for another reason (the consumer was deleted), it reopens it with
// backoff.
func (w *Worker) pull(ctx context.Context, l *lane, work chan<- jetstream.Msg) {
	mc := w.current(l)
	for {
		msg, err := mc.Next()
		if err == nil {
			work <- msg
			continue
		}
		if w.isStopping() || errors.Is(err, jetstream.ErrConnectionClosed) {
			return
		}
		if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			w.log.Error("pulling failed; reopening the consumer", zap.String("consumer", l.consumer), zap.Error(err))
			mc.Stop()
		}
		b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(5*time.Second)), ctx)
		err = backoff.Retry(func() error {
			if w.isStopping() {
				return backoff.Permanent(errors.New("stopping"))
			}
			next, err := w.open(ctx, l)
			if err != nil {
				w.log.Warn("consumer unavailable", zap.String("consumer", l.consumer), zap.Error(err))
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.stopping {
				next.Stop()
				return backoff.Permanent(errors.New("stopping"))
			}
			l.mc, mc = next, next
			return nil
		}, b)
		if err != nil {
			return
		}
	}
}

func (w *Worker) current(l *lane) jetstream.MessagesContext {
	w.mu.Lock()
	defer w.mu.Unlock()
	return l.mc
}

func (w *Worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
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

// Stop stops pulling, lets in-flight and already-buffered requests finish,
// and returns when all are done. If ctx ends first, in-flight handling is
// cancelled and unfinished requests are handed back to the server (Nak) for
// another worker; Stop then returns ctx's error. Nothing is lost either way:
// a bulk request handed back mid-run is resumed by its next delivery.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.done == nil {
		w.mu.Unlock()
		return errors.New("worker not started")
	}
	if !w.stopping {
		w.stopping = true
		close(w.quit)
		for _, l := range w.lanes {
			l.mc.Drain()
		}
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

// safely wraps a lane's processing with a last line of defence: a panic
// outside the handler (which has its own recovery) is logged and the
// message handed back, and the lane's goroutine carries on.
func (w *Worker) safely(process func(context.Context, jetstream.Msg)) func(context.Context, jetstream.Msg) {
	return func(ctx context.Context, msg jetstream.Msg) {
		defer func() {
			if v := recover(); v != nil {
				w.log.Error("panic while processing a message; handed back",
					zap.Any("panic", v), zap.ByteString("stack", debug.Stack()), zap.String("subject", msg.Subject()))
				_ = msg.NakWithDelay(w.cfg.RedeliveryDelay)
			}
		}()
		process(ctx, msg)
	}
}

// process takes one delivery to its end: a published result and an ack, or
// a Nak for a later retry.
func (w *Worker) process(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	req := newRequest(msg)
	log := w.log.With(requestFields(req)...)

	var res events.Result
	var err error
	if req.Deliveries > uint64(w.cfg.MaxDeliveries) {
		// An earlier delivery already decided this request ends as
		// INTERNAL_ERROR, or died publishing its result. Change nothing.
		err = errors.New("maximum deliveries exceeded by an earlier attempt")
	} else {
		res, err = w.handler(ctx, req)
	}
	if err != nil {
		if ctx.Err() != nil {
			_ = msg.Nak()
			log.Info("request handed back at shutdown", zap.Error(err))
			return
		}
		var pe *PanicError
		if errors.As(err, &pe) {
			log.Error("panic while handling request", zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		}
		if req.Deliveries < uint64(w.cfg.MaxDeliveries) {
			delay := w.redeliveryDelay(req.Deliveries)
			_ = msg.NakWithDelay(delay)
			w.cfg.Metrics.handedBack()
			log.Warn("request failed; will be redelivered", zap.String("outcome", "retry"), zap.Duration("delay", delay), zap.Error(err))
			return
		}
		w.finalize(ctx, req, err, log, start)
		return
	}
	if w.hooks.afterDecide != nil && w.hooks.afterDecide(req, res) {
		return
	}
	w.deliver(ctx, req, res, log, start)
}

// finalize ends a request whose transient failures outlived every delivery:
// unless the contact turns out to have been ended by this very request, it
// is answered INTERNAL_ERROR and copied to the dead-letter stream.
func (w *Worker) finalize(ctx context.Context, req *Request, cause error, log *zap.Logger, start time.Time) {
	if res, ok := w.replayed(ctx, req); ok {
		w.deliver(ctx, req, res, log, start)
		return
	}
	dl := deadLetterMsg(req, cause)
	err := w.retry(ctx, req, func() error {
		_, err := w.js.PublishMsg(ctx, dl)
		return err
	})
	if err != nil {
		_ = req.Msg.NakWithDelay(w.cfg.RedeliveryDelayMax)
		log.Error("dead-lettering failed; will be redelivered", zap.String("outcome", "retry"), zap.Error(err))
		return
	}
	w.cfg.Metrics.deadLettered()
	log.Error("request dead-lettered after its last delivery", zap.Error(cause))
	res := req.failure(events.ReasonInternalError, "transient failures outlived every retry: "+cause.Error())
	w.deliver(ctx, req, res, log, start)
}

// deadLetterMsg is the dead-letter copy of a request: its body and headers,
// with a Nats-Msg-Id derived from its identity and the cause and delivery
// count in headers.
func deadLetterMsg(req *Request, cause error) *nats.Msg {
	dl := &nats.Msg{
		Subject: events.DeadLetterSubject(req.Instance),
		Data:    req.Msg.Data(),
		Header:  nats.Header{},
	}
	for k, v := range req.Headers {
		dl.Header[k] = v
	}
	dl.Header.Set(events.HeaderMsgID, "dl-"+events.ResultMsgID(req.Instance, req.Stop.ContactID, req.Identity))
	dl.Header.Set(HeaderDeadLetterError, cause.Error())
	dl.Header.Set(HeaderDeadLetterDeliveries, strconv.FormatUint(req.Deliveries, 10))
	dl.Header.Set(HeaderDeadLetterSubject, req.Msg.Subject())
	dl.Header.Set(HeaderDeadLetterSequence, strconv.FormatUint(req.StreamSeq, 10))
	return dl
}

// deliver publishes the result, waits for JetStream to store it, then acks.
func (w *Worker) deliver(ctx context.Context, req *Request, res events.Result, log *zap.Logger, start time.Time) {
	ack, err := w.publishResult(ctx, req, res)
	if err != nil {
		if ctx.Err() != nil {
			_ = req.Msg.Nak()
			log.Info("request handed back at shutdown", zap.Error(err))
			return
		}
		delay := w.redeliveryDelay(req.Deliveries)
		_ = req.Msg.NakWithDelay(delay)
		w.cfg.Metrics.handedBack()
		log.Warn("publishing the result failed; will be redelivered", zap.String("outcome", "retry"), zap.Duration("delay", delay), zap.Error(err))
		return
	}
	w.acknowledge(req, res, ack, start)
}

// acknowledge acks a request whose result JetStream has stored, and logs
// the outcome: failures at info, stops at debug (at thousands a second a
// line per stop is too much; the metrics count them).
func (w *Worker) acknowledge(req *Request, res events.Result, ack *jetstream.PubAck, start time.Time) {
	if w.hooks.beforeAck != nil && w.hooks.beforeAck(req) {
		return
	}
	// A lost ack only causes a redelivery, which republishes the same
	// result (dropped as a duplicate); no need to wait for the server.
	_ = req.Msg.Ack()

	level := zap.InfoLevel
	if res.Stopped != nil {
		level = zap.DebugLevel
	}
	if !w.log.Core().Enabled(level) {
		return
	}
	fields := append(requestFields(req), zap.Duration("took", time.Since(start)), zap.Bool("duplicate_result", ack.Duplicate))
	if res.Stopped != nil {
		w.log.Debug("contact stopped", append(fields, zap.String("outcome", "stopped"))...)
	} else {
		w.log.Info("request failed", append(fields, zap.String("outcome", "failed"),
			zap.String("reason_code", string(res.Failed.ReasonCode)), zap.String("message", res.Failed.Message))...)
	}
}

// publishResult publishes a request's result, retrying transient errors,
// and returns JetStream's acknowledgement.
func (w *Worker) publishResult(ctx context.Context, req *Request, res events.Result) (*jetstream.PubAck, error) {
	out := w.resultMsg(req, res)
	var ack *jetstream.PubAck
	err := w.retry(ctx, req, func() (err error) {
		ack, err = w.js.PublishMsg(ctx, out)
		return err
	})
	return ack, err
}

// resultMsg encodes a result with its subject and headers.
func (w *Worker) resultMsg(req *Request, res events.Result) *nats.Msg {
	var subject string
	data := make([]byte, 0, 320)
	if res.Stopped != nil {
		subject = events.StoppedSubject(res.Stopped.InstanceID)
		data = res.Stopped.AppendJSON(data)
	} else {
		res.Failed.FailedAt = w.cfg.Now().UTC()
		subject = events.StopFailedSubject(req.Instance)
		data = res.Failed.AppendJSON(data)
	}
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header.Set(events.HeaderMsgID, events.ResultMsgID(req.Instance, req.Stop.ContactID, req.Identity))
	for _, h := range []string{events.HeaderTraceparent, events.HeaderCorrelationID} {
		if v := req.Headers.Get(h); v != "" {
			m.Header.Set(h, v)
		}
	}
	return m
}

func (w *Worker) redeliveryDelay(deliveries uint64) time.Duration {
	d := w.cfg.RedeliveryDelay
	for i := uint64(1); i < deliveries && d < w.cfg.RedeliveryDelayMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.RedeliveryDelayMax)
}

// retry runs op with exponential backoff and jitter, bounded by
// Config.RetryMaxElapsed, until it succeeds or returns a permanent error.
// The returned error is op's last, unwrapped.
func (w *Worker) retry(ctx context.Context, req *Request, op func() error) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.RetryInitial),
		backoff.WithMaxInterval(w.cfg.RetryMax),
		backoff.WithMaxElapsedTime(w.cfg.RetryMaxElapsed),
		backoff.WithRandomizationFactor(0.5),
	)
	return backoff.RetryNotify(func() error {
		err := op()
		if err != nil && ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, next time.Duration) {
		w.cfg.Metrics.retried()
		w.log.Debug("transient error; retrying", append(requestFields(req), zap.Duration("next", next), zap.Error(err))...)
	})
}

func permanent(err error) error { return backoff.Permanent(err) }

// recoverer turns a panic in the handler into a *PanicError, logged with
// its stack; the worker carries on.
func recoverer(next Handler) Handler {
	return func(ctx context.Context, req *Request) (res events.Result, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return next(ctx, req)
	}
}

func requestFields(req *Request) []zap.Field {
	return []zap.Field{
		zap.String("request_id", req.Identity),
		zap.String("contact_id", req.Stop.ContactID),
		zap.String("instance_id", req.Stop.InstanceID),
		zap.Uint64("stream_seq", req.StreamSeq),
		zap.Uint64("deliveries", req.Deliveries),
	}
}
