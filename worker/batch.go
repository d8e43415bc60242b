package worker

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// The batched path. The per-request path costs three dependent round trips
// per request (read the contact, write it, publish the result); the
// batched path pays them once per batch: the contacts of a batch are read
// in one request, their compare-and-set writes are published without
// waiting in between and then awaited together, and so are the results.
// The order per request is unchanged — the write is confirmed before the
// result is published, the result before the request is acknowledged — so
// every guarantee and crash point of the per-request path holds. Anything
// unusual takes the per-request path, with its retries, delivery limit and
// dead-lettering: a redelivery, a store or publish error, a conflict with
// another writer (handled inside store.EndContacts).

// batches feeds a batched lane's messages to l.batch, taking what has
// arrived, up to l.batchSize, without waiting for more.
func (w *Worker) batches(ctx context.Context, l *lane, work <-chan jetstream.Msg) {
	batch := make([]jetstream.Msg, 0, l.batchSize)
	for msg := range work {
		batch = append(batch[:0], msg)
	fill:
		for len(batch) < l.batchSize {
			select {
			case msg, ok := <-work:
				if !ok {
					break fill
				}
				batch = append(batch, msg)
			default:
				break fill
			}
		}
		if ctx.Err() != nil {
			for _, msg := range batch {
				_ = msg.Nak() // shutting down past the deadline: hand back at once
			}
			continue
		}
		l.batch(ctx, batch)
	}
}

// safelyBatch is safely for a batch: a panic hands the whole batch back
// (a Nak of a request already acknowledged is ignored by the server), and
// the redeliveries take the per-request path, which has its own recovery.
func (w *Worker) safelyBatch(process func(context.Context, []jetstream.Msg)) func(context.Context, []jetstream.Msg) {
	return func(ctx context.Context, msgs []jetstream.Msg) {
		defer func() {
			if v := recover(); v != nil {
				w.log.Error("panic while processing a batch; handed back",
					zap.Any("panic", v), zap.ByteString("stack", debug.Stack()), zap.Int("requests", len(msgs)))
				for _, msg := range msgs {
					_ = msg.NakWithDelay(w.cfg.RedeliveryDelay)
				}
			}
		}()
		process(ctx, msgs)
	}
}

// batchItem is one request of a batch.
type batchItem struct {
	req     *Request
	res     events.Result
	decided bool // res is its result
	slow    bool // it takes the per-request path
}

// processBatch takes a batch of deliveries to their ends: results
// published and requests acknowledged, or handed to the per-request path.
// It returns when every request of the batch is done.
func (w *Worker) processBatch(ctx context.Context, msgs []jetstream.Msg) {
	start := time.Now()
	items := make([]batchItem, len(msgs))
	ends := make([]store.EndContactParams, 0, len(msgs))
	endOf := make([]int, 0, len(msgs))
	w.cfg.Metrics.addInFlight(len(msgs))
	for i, msg := range msgs {
		it := &items[i]
		it.req = newRequest(msg)
		if it.req.Deliveries > 1 {
			// A redelivery follows a failure or a crash: the per-request
			// path has the delivery limit, the replay check and the dead
			// letter.
			it.slow = true
			continue
		}
		res, decided, err := w.precheck(ctx, it.req)
		switch {
		case err != nil:
			it.slow = true
		case decided:
			it.res, it.decided = res, true
		default:
			ends = append(ends, w.endParams(it.req, nil))
			endOf = append(endOf, i)
		}
	}
	if len(ends) > 0 {
		for k, o := range w.store.EndContacts(ctx, ends) {
			it := &items[endOf[k]]
			res, err := endResult(it.req, o.Result, o.Err)
			if err != nil {
				it.slow = true
				continue
			}
			it.res, it.decided = res, true
		}
	}

	var slow sync.WaitGroup
	took := time.Since(start)
	var outs []*nats.Msg
	var outOf []int
	for i := range items {
		it := &items[i]
		w.cfg.Metrics.addInFlight(-1)
		if it.slow {
			slow.Go(func() { w.process(ctx, it.req.Msg) })
			continue
		}
		w.cfg.Metrics.decided(it.res, nil, took)
		if w.hooks.afterDecide != nil && w.hooks.afterDecide(it.req, it.res) {
			continue
		}
		outs, outOf = append(outs, w.resultMsg(it.req, it.res)), append(outOf, i)
	}
	for k, ack := range w.pub.Publish(ctx, outs, w.cfg.RetryMaxElapsed) {
		it := &items[outOf[k]]
		switch {
		case ack.Err == nil:
			w.acknowledge(it.req, it.res, &jetstream.PubAck{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, start)
		case ctx.Err() != nil:
			_ = it.req.Msg.Nak()
		default:
			// Timed out or refused: publish again, waiting, with retries;
			// the result's Nats-Msg-Id drops a copy of one that was stored.
			slow.Go(func() { w.deliver(ctx, it.req, it.res, w.log.With(requestFields(it.req)...), start) })
		}
	}
	slow.Wait()
}
