package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/jspub"
	"github.com/contactstop/contactstop/store"
)

// Headers the worker adds to dead-letter copies.
const (
	HeaderDeadLetterError      = "Contactstop-Error"
	HeaderDeadLetterDeliveries = "Contactstop-Deliveries"
	HeaderDeadLetterSubject    = "Contactstop-Subject"
	HeaderDeadLetterSequence   = "Contactstop-Stream-Sequence"
)

// settle is the one place a single request's delivery ends:
//
//   - decided (stopped or failed, now or before): its result is published,
//     if this message publishes it, and stored; then the request is
//     acknowledged (with any redelivery of it that came meanwhile);
//   - its deadline passed, or the worker stops past its deadline: handed
//     back at once, not counted as an attempt;
//   - transient errors outlived the delivery's retries: the attempt is
//     counted in the request's outcome record and the request handed back
//     with a delay, or, at the last attempt, answered INTERNAL_ERROR and
//     copied to the dead-letter stream.
func (w *Worker) settle(ctx context.Context, ds []*delivery, start time.Time) {
	var answer, final []*delivery
	for _, d := range ds {
		switch d.it.out.kind {
		case stopped, failed:
			answer = append(answer, d)
		case transient:
			if ctx.Err() != nil {
				w.handBack(d, 0, "handed back at shutdown")
			} else if w.countAttempt(ctx, d) {
				final = append(final, d)
			}
		case expired:
			w.handBack(d, 0, "delivery past its deadline (the process was paused or starved); handed back")
		default:
			w.logger(d).Error("request reached no outcome; handed back", zap.Uint8("outcome", uint8(d.it.out.kind)))
			w.handBack(d, w.cfg.RedeliveryDelay, "")
		}
	}
	if len(final) > 0 {
		for _, d := range final {
			d.final = true
			d.progress(w.cfg.deliveryBudget())
		}
		w.decideWithRetries(ctx, final)
		for _, d := range final {
			switch d.it.out.kind {
			case stopped, failed:
				answer = append(answer, d)
			default:
				// Not even the answer could be recorded (the store is out
				// of reach): the request waits in the stream.
				w.logger(d).Error("the request's attempts are exhausted but its answer cannot be recorded; handed back",
					zap.Error(d.it.out.err))
				w.handBack(d, w.cfg.RedeliveryDelayMax, "")
			}
		}
	}
	w.answer(ctx, answer, start)
}

// handBack returns a delivery to the server for a later one, with a delay.
func (w *Worker) handBack(d *delivery, delay time.Duration, msg string) {
	if delay > 0 {
		_ = d.req.Msg.NakWithDelay(delay)
	} else {
		_ = d.req.Msg.Nak()
	}
	w.cfg.Metrics.handedBack()
	if msg != "" {
		w.logger(d).Info(msg)
	}
}

// countAttempt counts a failed attempt in the request's outcome record and
// hands the request back with a delay that grows with the attempts; it
// returns true instead when this was the last attempt. An attempt that
// cannot be counted (the store is unreachable) is handed back uncounted.
func (w *Worker) countAttempt(ctx context.Context, d *delivery) bool {
	v := d.it.view
	if v == nil {
		w.logger(d).Warn("request failed; the attempt could not be counted (the store cannot be read); handed back",
			zap.Error(d.attemptErr))
		w.handBack(d, w.redeliveryDelay(int(d.req.Deliveries)), "")
		return false
	}
	if o := v.Outcome; o.Final() && o.Seq == d.it.seq {
		// Its own failure is recorded, and could not be fenced: the
		// request is answered, and this message publishes the answer.
		// Counting an attempt would write over the failure, which other
		// messages of the request may have read and been acknowledged
		// on; the next delivery fences it and publishes it.
		w.logger(d).Warn("request failed; its failure is recorded but could not be fenced; handed back", zap.Error(d.attemptErr))
		w.handBack(d, w.redeliveryDelay(int(d.req.Deliveries)), "")
		return false
	}
	n := 1
	if o := v.Outcome; o != nil && o.State == store.OutcomeRetrying {
		n += o.Attempts
	}
	if n >= w.cfg.MaxAttempts {
		return true
	}
	errText := ""
	if d.attemptErr != nil {
		errText = d.attemptErr.Error()
	}
	_, err := w.store.RecordAttempt(ctx, store.RecordAttemptParams{Key: d.it.key, Attempts: n, LastError: errText, OutcomeRev: v.OutcomeRev})
	if err != nil {
		w.logger(d).Warn("request failed; the attempt could not be counted; handed back", zap.NamedError("attempt_error", d.attemptErr), zap.Error(err))
		w.handBack(d, w.redeliveryDelay(n), "")
		return false
	}
	delay := w.redeliveryDelay(n)
	w.cfg.Metrics.attempted()
	w.logger(d).Warn("request failed; will be attempted again", zap.String("outcome", "retry"), zap.Int("attempt", n),
		zap.Int("max_attempts", w.cfg.MaxAttempts), zap.Duration("delay", delay), zap.Error(d.attemptErr))
	w.handBack(d, delay, "")
	return false
}

// answer publishes the results of decided deliveries that publish one
// (dead-letter copies first), waits for JetStream to store them, and
// acknowledges every delivery whose result is stored.
func (w *Worker) answer(ctx context.Context, ds []*delivery, start time.Time) {
	var dead []*nats.Msg
	var deadOf []*delivery
	out, outOf := make([]*nats.Msg, 0, len(ds)), make([]*delivery, 0, len(ds))
	now := time.Now()
	for _, d := range ds {
		if d.it.out.publish && !now.Before(d.deadline) {
			// Paused or starved past the deadline: the server may have
			// redelivered the request, and that delivery publishes the
			// recorded result; publishing it this late could fall outside
			// the duplicate window.
			w.handBack(d, 0, "delivery past its deadline before its result was published; handed back")
			continue
		}
		res := resultOf(&d.it)
		if w.hooks.afterDecide != nil && w.hooks.afterDecide(d.req, res) {
			continue
		}
		if !d.it.out.publish {
			if !time.Now().Before(d.deadline) {
				// Paused or starved past the deadline: the server may have
				// given the request to another worker, whose delivery may
				// yet record an outcome under this message and rely on
				// its redelivery to publish it. Acknowledging it here
				// would end that.
				w.handBack(d, 0, "delivery past its deadline before it was acknowledged; handed back")
				continue
			}
			// A later message of an answered request: its result is stored
			// already, and stays the only one.
			w.cfg.Metrics.resend()
			w.ack(d)
			w.logger(d).Info("request answered before; its result stands", zap.String("outcome", outcomeName(res)))
			continue
		}
		if f := res.Failed; f != nil && f.ReasonCode == events.ReasonInternalError && f.Retryable {
			dead, deadOf = append(dead, deadLetterMsg(d.req, f.Message)), append(deadOf, d)
		}
		d.res = res
		out, outOf = append(out, w.resultMsg(&d.it, res, d.req.Headers)), append(outOf, d)
	}
	// The dead-letter copy is stored before the answer: a request whose
	// copy cannot be stored is handed back, not answered.
	var failed map[*delivery]bool
	for k, ack := range w.pub.Publish(ctx, dead, w.cfg.RetryMaxElapsed) {
		d := deadOf[k]
		if ack.Err != nil {
			if failed == nil {
				failed = map[*delivery]bool{}
			}
			failed[d] = true
			w.logger(d).Error("dead-lettering failed; handed back", zap.Error(ack.Err))
			w.handBack(d, w.cfg.RedeliveryDelay, "")
			continue
		}
		w.cfg.Metrics.deadLettered()
		w.logger(d).Error("request answered INTERNAL_ERROR after its last attempt and copied to the dead-letter stream")
	}
	msgs, msgOf := out, outOf
	if len(failed) > 0 {
		msgs, msgOf = nil, nil
		for k, m := range out {
			if !failed[outOf[k]] {
				msgs, msgOf = append(msgs, m), append(msgOf, outOf[k])
			}
		}
	}
	for k, ack := range w.pub.PublishBatch(ctx, msgs, w.cfg.RetryMaxElapsed) {
		d, m := msgOf[k], msgs[k]
		if ack.Err != nil {
			// Timed out or refused: publish again, waiting, with retries;
			// the result's Nats-Msg-Id drops a copy of one that was stored.
			ack = w.republish(ctx, d, m)
		}
		switch {
		case ack.Err == nil:
			w.acknowledge(d, ack, start)
		case ctx.Err() != nil:
			w.handBack(d, 0, "handed back at shutdown")
		default:
			// The outcome is recorded: the next delivery publishes it. Not
			// an attempt.
			w.logger(d).Warn("publishing the result failed; handed back", zap.Error(ack.Err))
			w.handBack(d, w.cfg.RedeliveryDelay, "")
		}
	}
}

// republish publishes one result again until it is stored, with the
// backoff of transient errors.
func (w *Worker) republish(ctx context.Context, d *delivery, m *nats.Msg) jspub.Ack {
	var ack jspub.Ack
	err := w.retry(ctx, w.logger(d), func() error {
		ack = w.pub.Publish(ctx, []*nats.Msg{m}, w.cfg.RetryMaxElapsed)[0]
		return ack.Err
	})
	if err != nil {
		ack.Err = err
	}
	return ack
}

// acknowledge acks a request whose result JetStream has stored, and logs
// the outcome: failures at info, stops at debug (at thousands a second a
// line per stop is too much; the metrics count them).
func (w *Worker) acknowledge(d *delivery, ack jspub.Ack, start time.Time) {
	if w.hooks.beforeAck != nil && w.hooks.beforeAck(d.req) {
		return
	}
	w.ack(d)
	res := d.res
	took := time.Since(start)
	w.cfg.Metrics.decided(res, took)
	level := zap.InfoLevel
	if res.Stopped != nil {
		level = zap.DebugLevel
	}
	if !w.log.Core().Enabled(level) {
		return
	}
	fields := []zap.Field{zap.String("outcome", outcomeName(res)), zap.Duration("took", took), zap.Bool("decided_before", !d.it.out.fresh)}
	if ack.Duplicate {
		// Known only of a result published alone: a batch's answer does
		// not say which of its results were stored before.
		fields = append(fields, zap.Bool("duplicate_result", true))
	}
	if res.Stopped != nil {
		w.logger(d).Debug("contact stopped", fields...)
		return
	}
	w.logger(d).Info("request failed", append(fields, zap.String("reason_code", string(res.Failed.ReasonCode)),
		zap.String("message", res.Failed.Message))...)
}

// ack acknowledges a delivery and the redeliveries attached to it. A lost
// ack only causes a redelivery, which finds the recorded outcome; no need
// to wait for the server.
func (w *Worker) ack(d *delivery) {
	_ = d.req.Msg.Ack()
	w.inHandMu.Lock()
	dups := d.dups
	d.dups = nil
	w.inHandMu.Unlock()
	for _, m := range dups {
		_ = m.Ack()
	}
}

func outcomeName(res events.Result) string {
	if res.Stopped != nil {
		return "stopped"
	}
	return "failed"
}

// resultOf is the result event of an item's outcome, stopped or failed.
// It is built from the record alone, so that a result published again is
// the same, byte for byte.
func resultOf(it *item) events.Result {
	if it.out.kind == stopped {
		c := it.out.contact
		return events.Result{Stopped: &events.Stopped{
			RequestID:        it.key.RequestID,
			ContactID:        c.ContactID,
			InstanceID:       c.InstanceID,
			PreviousState:    string(c.PreviousState),
			DisconnectReason: c.DisconnectReason,
			StoppedAt:        c.EndedAt,
		}}
	}
	f := it.out.failure
	return events.Result{Failed: &events.StopFailed{
		RequestID:  f.RequestID,
		ContactID:  f.ContactID,
		InstanceID: f.InstanceID,
		ReasonCode: events.ReasonCode(f.ReasonCode),
		Message:    f.Message,
		Retryable:  f.Retryable,
		FailedAt:   f.FailedAt,
	}}
}

// resultMsg encodes a result with its subject and headers: its
// Nats-Msg-Id, derived from the request's identity (for a retryable
// INTERNAL_ERROR, also from its message), and the headers the request
// passes on.
func (w *Worker) resultMsg(it *item, res events.Result, from nats.Header) *nats.Msg {
	var subject string
	data := make([]byte, 0, 320)
	k := it.key
	msgID := events.ResultMsgID(k.InstanceID, k.ContactID, k.RequestID)
	if res.Stopped != nil {
		subject = events.StoppedSubject(res.Stopped.InstanceID)
		data = res.Stopped.AppendJSON(data)
	} else {
		subject = events.StopFailedSubject(k.InstanceID)
		data = res.Failed.AppendJSON(data)
		if res.Failed.Retryable && !it.bulk() {
			msgID = events.RetryableResultMsgID(k.InstanceID, k.ContactID, k.RequestID, it.out.failure.Seq)
		}
	}
	m := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 3)}
	m.Header.Set(events.HeaderMsgID, msgID)
	events.PassHeaders(m.Header, from)
	return m
}

// deadLetterMsg is the dead-letter copy of a request: its body and headers,
// with a Nats-Msg-Id derived from its identity and message, and the cause
// and delivery count in headers.
func deadLetterMsg(req *Request, cause string) *nats.Msg {
	dl := &nats.Msg{
		Subject: events.DeadLetterSubject(req.Instance),
		Data:    req.Msg.Data(),
		Header:  nats.Header{},
	}
	for k, v := range req.Headers {
		dl.Header[k] = v
	}
	dl.Header.Set(events.HeaderMsgID, "dl-"+events.RetryableResultMsgID(req.Instance, req.Stop.ContactID, req.Identity, req.StreamSeq))
	dl.Header.Set(HeaderDeadLetterError, cause)
	dl.Header.Set(HeaderDeadLetterDeliveries, strconv.FormatUint(req.Deliveries, 10))
	dl.Header.Set(HeaderDeadLetterSubject, req.Msg.Subject())
	dl.Header.Set(HeaderDeadLetterSequence, strconv.FormatUint(req.StreamSeq, 10))
	return dl
}
