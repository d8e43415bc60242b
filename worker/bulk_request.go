package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// bulkSpec is what to clear, from a bulk request or an emergency broadcast.
type bulkSpec struct {
	bulkID, instanceID string
	filter             events.BulkFilter
	match              *events.Matcher
	disconnectReason   string
	token              string // the securityUser
	emergency          bool
	message            string // of an emergency broadcast
	bound              *Bound // the instance's platform, if bound
}

// bulkRequest is one delivery of a bulk request or emergency broadcast.
type bulkRequest struct {
	msg     jetstream.Msg
	headers nats.Header
	spec    bulkSpec
	invalid *events.ValidationError
	// instance is where its own refusal is published ("" for the bare
	// subject): the subject's; on the bare subject the body's, claimed,
	// which stands with authorization on only once the token authorizes the
	// bulk request (as for single requests).
	instance   string
	claimed    bool
	deliveries uint64
	streamSeq  uint64
	published  time.Time
}

// newBulkRequest decodes a bulk request or emergency broadcast.
func newBulkRequest(msg jetstream.Msg) *bulkRequest {
	b := &bulkRequest{msg: msg, headers: msg.Headers()}
	if meta, err := msg.Metadata(); err == nil {
		b.deliveries, b.streamSeq, b.published = meta.NumDelivered, meta.Sequence.Stream, meta.Timestamp
	}
	subjInst, onInstance := events.BulkSubjectInstance(msg.Subject())
	if inst, ok := events.EmergencyInstance(msg.Subject()); ok || msg.Subject() != events.SubjectBulkRequested && !onInstance {
		e, err := events.DecodeEmergencyBroadcast(msg.Data())
		if ok {
			b.instance = inst
		} else {
			err = &events.ValidationError{Code: events.ReasonInvalidParameter, Field: "instanceId",
				Reason: fmt.Sprintf("subject %q does not end in a valid instance ID", msg.Subject())}
		}
		if err != nil {
			b.invalid = asValidationError(err)
		}
		b.spec = bulkSpec{bulkID: "emergency-" + events.RequestIdentity("", b.headers.Get(events.HeaderMsgID), b.streamSeq),
			instanceID: inst, emergency: true, disconnectReason: "EMERGENCY", message: e.Message, token: e.SecurityUser,
			filter: events.BulkFilter{States: []string{"QUEUED"}, QueueIDs: e.QueueIDs}}
	} else {
		r, err := events.DecodeBulkRequest(msg.Data())
		if err == nil {
			err = r.CheckSubject(msg.Subject())
		}
		if err != nil {
			b.invalid = asValidationError(err)
		}
		bulkID := r.BulkID
		if b.invalid != nil && b.invalid.Field == "bulkId" {
			bulkID = ""
		}
		switch {
		case onInstance && events.ValidInstanceID(subjInst):
			b.instance = subjInst
		case !onInstance && events.ValidInstanceID(r.InstanceID):
			b.instance, b.claimed = r.InstanceID, true
		}
		b.spec = bulkSpec{bulkID: events.RequestIdentity(bulkID, b.headers.Get(events.HeaderMsgID), b.streamSeq),
			instanceID: r.InstanceID, filter: r.Filter, disconnectReason: r.DisconnectReason, token: r.SecurityUser}
	}
	b.spec.match = b.spec.filter.Matcher()
	return b
}

// refusal is the bulk request's own failure result. Its Nats-Msg-Id is
// that of its message: a redelivery stores it once, a resend (refused
// again) gets its own.
func (b *bulkRequest) refusalMsg(code events.ReasonCode, message string, at time.Time) *nats.Msg {
	f := &events.StopFailed{RequestID: b.spec.bulkID, InstanceID: b.spec.instanceID, ReasonCode: code,
		Message: message, Retryable: code.Retryable(), FailedAt: at}
	m := &nats.Msg{Subject: events.StopFailedSubject(b.instance), Data: f.AppendJSON(nil), Header: nats.Header{}}
	m.Header.Set(events.HeaderMsgID, events.RetryableResultMsgID(b.instance, "", b.spec.bulkID, b.streamSeq))
	events.PassHeaders(m.Header, b.headers)
	return m
}

// processBulks is the bulk lanes' processing: one message at a time.
func (w *Worker) processBulks(ctx context.Context, batch []received) {
	for _, r := range batch {
		w.processBulk(ctx, r.msg)
	}
}

// processBulk takes one delivery of a bulk request or emergency broadcast
// to its end: completed and acked, refused, or handed back.
func (w *Worker) processBulk(ctx context.Context, msg jetstream.Msg) {
	b := newBulkRequest(msg)
	spec := &b.spec
	log := w.log.With(zap.String("bulk_id", spec.bulkID), zap.String("instance_id", spec.instanceID),
		zap.Uint64("stream_seq", b.streamSeq), zap.Uint64("deliveries", b.deliveries))
	if b.invalid != nil {
		if w.cfg.Authorizer != nil && b.claimed {
			b.instance = ""
		}
		w.refuseBulk(ctx, b, b.invalid.Code, b.invalid.Error(), log)
		return
	}
	// Checked once, when the bulk request is taken on: a token that
	// expires during a long clear does not stop it half-way.
	if w.cfg.Authorizer != nil {
		if _, err := w.cfg.Authorizer.AuthorizeAt(spec.token, auth.ActionBulkStop, auth.InstanceResource(spec.instanceID), b.published); err != nil {
			var ae *auth.Error
			if !errors.As(err, &ae) {
				ae = &auth.Error{Code: events.ReasonInvalidSecurityUser, Reason: err.Error()}
			}
			if b.claimed {
				b.instance = ""
			}
			w.refuseBulk(ctx, b, ae.Code, ae.Reason, log)
			return
		}
	}
	if spec.emergency && b.deliveries == 1 && time.Since(b.published) > w.cfg.EmergencyMaxAge {
		log.Warn("ignoring an emergency broadcast older than the emergency max age", zap.Time("published", b.published))
		_ = msg.Ack()
		return
	}
	var exists bool
	err := w.retry(ctx, log, func() (err error) {
		exists, err = w.store.InstanceExists(ctx, spec.instanceID)
		if err == nil && exists && w.cfg.Platforms != nil {
			b.spec.bound, err = w.cfg.Platforms.For(ctx, spec.instanceID)
		}
		return err
	})
	if err == nil && !exists {
		w.refuseBulk(ctx, b, events.ReasonResourceNotFound, fmt.Sprintf("instance %q is not known", spec.instanceID), log)
		return
	}
	var run *bulkRun
	if err == nil {
		if spec.emergency {
			log.Warn("EMERGENCY: clearing the instance's queued contacts",
				zap.Strings("queue_ids", spec.filter.QueueIDs), zap.String("message", spec.message))
		}
		w.cfg.Metrics.bulkStarted(1)
		run, err = w.runBulk(ctx, b, log)
		w.cfg.Metrics.bulkStarted(-1)
	}
	m := w.cfg.Metrics
	switch {
	case err == nil:
		_ = msg.Ack()
		m.bulkRun("completed")
	case errors.Is(err, errBulkDone):
		log.Info("bulk request already completed; nothing to do")
		_ = msg.Ack()
		m.bulkRun("already_completed")
	case errors.Is(err, errBulkAbandoned):
		// A test's crash point: neither ack nor nak.
	case errors.Is(err, errInstanceBusy):
		// Another bulk request of the instance runs: this one waits its
		// turn, and the runners serve other instances meanwhile.
		_ = msg.NakWithDelay(min(time.Second, w.cfg.BulkLease/2))
		m.bulkRun("instance_busy")
		log.Debug("another bulk request of the instance runs; handed back", zap.Error(err))
	case errors.Is(err, errBulkBusy) || errors.Is(err, errBulkLeaseLost):
		// Another runner has it: never a failure of the bulk request.
		_ = msg.NakWithDelay(w.cfg.BulkLease / 2)
		m.bulkRun("busy")
		log.Info("bulk request is being run elsewhere; handed back", zap.Error(err))
	case errors.Is(err, errBulkStopping) || ctx.Err() != nil:
		_ = msg.Nak()
		m.bulkRun("handed_back")
		log.Info("bulk run handed back at shutdown; it resumes on redelivery")
	default:
		// A transient failure: the attempt is counted in the bulk's record
		// (when the run got that far), and the next delivery resumes it.
		attempts := 0
		if run != nil {
			attempts = run.countAttempt()
		}
		delay := w.redeliveryDelay(max(attempts, 1))
		_ = msg.NakWithDelay(delay)
		m.bulkRun("failed")
		m.handedBack()
		log.Warn("bulk run failed; will be resumed", zap.String("outcome", "retry"), zap.Int("attempt", attempts),
			zap.Duration("delay", delay), zap.Error(err))
	}
}

// refuseBulk answers a bulk request that cannot be run with a failure
// result, then acks it.
func (w *Worker) refuseBulk(ctx context.Context, b *bulkRequest, code events.ReasonCode, message string, log *zap.Logger) {
	w.cfg.Metrics.bulkRun("refused")
	m := b.refusalMsg(code, message, w.cfg.Now().UTC())
	err := w.retry(ctx, log, func() error {
		return w.pub.Publish(ctx, []*nats.Msg{m}, w.cfg.RetryMaxElapsed)[0].Err
	})
	if err != nil {
		_ = b.msg.NakWithDelay(w.cfg.RedeliveryDelay)
		log.Warn("publishing the bulk request's refusal failed; handed back", zap.Error(err))
		return
	}
	_ = b.msg.Ack()
	log.Info("bulk request refused", zap.String("reason_code", string(code)), zap.String("message", message))
}

// bulkItemRequestKey is the store's name of one contact of a bulk.
func bulkItemRequestKey(spec *bulkSpec, contactID string) store.RequestKey {
	return store.RequestKey{InstanceID: spec.instanceID, ContactID: contactID,
		RequestID: events.BulkItemRequestID(spec.bulkID, contactID), BulkID: spec.bulkID}
}
