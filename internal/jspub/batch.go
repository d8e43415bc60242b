package jspub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishBatch publishes msgs, all bound for one stream that allows batch
// publishing (AllowBatchPublish), as one JetStream fast batch: the server
// answers the batch once, when its last message is stored, instead of
// answering every message. That saves the server an acknowledgement to
// build and deliver per message, and this process one to read.
//
// The batch is sent in "gap: fail" mode, so the batch's answer confirms a
// prefix: every message up to its count is stored (or was stored before:
// a duplicate Nats-Msg-Id is skipped inside a batch, as it is alone). A
// message after that prefix — the stream refused it, or the batch could
// not start at all (the stream does not allow batches, too many batches in
// flight) — is published again alone with Publish, which reports its own
// error. A copy of one that was stored after all is dropped by the
// stream's duplicate window when it has a Nats-Msg-Id, or refused by its
// expected-sequence check when it has one (the caller reads again, as for
// any conflict). So every message gets the Ack Publish would give it,
// except that a message confirmed by its batch carries no Sequence, and
// Duplicate false.
//
// A message the server refuses before it reaches the batch (too large,
// over a limit) is answered alone, not by the batch: then the whole batch
// is published again alone. A batch refused as a whole (a stream that does
// not allow batches, a server older than 2.14 that answers every message
// alone, too many batches in flight) also turns batches off for a minute:
// meanwhile PublishBatch is Publish. So it is with fewer than minBatch
// messages.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []*nats.Msg, timeout time.Duration) []Ack {
	if len(msgs) < minBatch || len(msgs) > maxBatch || time.Now().UnixNano() < p.batchesOffUntil.Load() {
		return p.Publish(ctx, msgs, timeout)
	}
	deadline := time.Now().Add(timeout)
	acks := make([]Ack, len(msgs))
	stored, err := p.fastBatch(ctx, msgs, timeout)
	if errors.Is(err, errBatchRefused) && !messageRefused(err) {
		p.batchesOffUntil.Store(time.Now().Add(batchesOff).UnixNano())
	}
	if errors.Is(err, ErrTimeout) || ctx.Err() != nil {
		// Whether the rest was stored is unknown, and there is no time
		// left to publish it again.
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		for i := stored; i < len(msgs); i++ {
			acks[i].Err = err
		}
		return acks
	}
	if stored == len(msgs) {
		return acks
	}
	p.batchShort.Add(1)
	for k, ack := range p.Publish(ctx, msgs[stored:], time.Until(deadline)) {
		acks[stored+k] = ack
	}
	return acks
}

// BatchesCut counts the batches whose answer confirmed fewer than all of
// their messages, the rest of which were published again alone.
func (p *Publisher) BatchesCut() uint64 { return p.batchShort.Load() }

// batchesOff is how long a refused batch turns batches off.
const batchesOff = time.Minute

// minBatch is the fewest messages sent as a batch. A batch costs the
// server a little more to set up and end than it saves on fewer: measured
// on nats-server 2.15.2, 100,000 messages in batches of 4, server and
// client CPU together were 21–24 µs per message as a batch against 20–21
// alone; in batches of 8, 20 against 20–22; of 16, 16–17 against 18–19.
const minBatch = 8

// maxBatch is the most messages one fast batch may announce as its flow
// (a uint16 on the server).
const maxBatch = 65535

// errBatchRefused is why a batch stored none of its messages: the server
// refused its first (or answered something unreadable).
var errBatchRefused = errors.New("jspub: batch refused")

// fastBatch sends msgs as one fast batch and returns how many of them,
// from the first, its answer confirms as stored. err is ErrTimeout, the
// context's, the connection's or errBatchRefused when that is not all.
//
// The protocol (nats-server 2.14, ADR-50): every message's reply subject
// is <prefix>.<batch id>.<flow>.<gap mode>.<batch sequence>.<operation>.$FI,
// the operation 0 for the first message, 1 for the next and 2 for the last,
// which commits the batch. The server answers on the reply subjects: flow
// control ({"type":"ack"|"gap"|"err",…}, which this sender does not need:
// it sends the whole batch at once) and, once, the batch's publish
// acknowledgement with "count", the batch sequence of the last message
// stored; or an error when the first message already failed.
func (p *Publisher) fastBatch(ctx context.Context, msgs []*nats.Msg, timeout time.Duration) (stored int, err error) {
	answer := make(chan *nats.Msg, 1)
	id, err := p.registerBatch(answer)
	if err != nil {
		return 0, err
	}
	defer p.unregisterBatch(id)

	// The batch id is a key in the stream, shared by every publisher: the
	// inbox's unique token makes it this publisher's.
	head := p.batchPrefix + strconv.FormatUint(id, 10) + "." + strconv.Itoa(len(msgs)) + ".fail."
	last := len(msgs) - 1
	for i, m := range msgs {
		op := "1"
		switch i {
		case 0:
			op = "0"
		case last:
			op = "2"
		}
		m.Reply = head + strconv.Itoa(i+1) + "." + op + ".$FI"
		if err := p.nc.PublishMsg(m); err != nil {
			// The server may store what it got, and answer for it, but
			// without the commit it waits for more until it gives up:
			// the rest is the caller's to publish again.
			return 0, err
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-answer:
		count, err := batchCount(m)
		if err != nil {
			return 0, err
		}
		return min(count, len(msgs)), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-timer.C:
		return 0, ErrTimeout
	}
}

// messageRefused reports whether a batch's answer refused one of its
// messages rather than the batch: any error but the batch protocol's own.
func messageRefused(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeBatchDisabled, errCodeBatchPattern, errCodeBatchID, errCodeBatchUnknown, errCodeBatchInflight:
		return false
	}
	return true
}

// The batch protocol's errors (nats-server's JSBatchPublish*).
const (
	errCodeBatchDisabled jetstream.ErrorCode = 10205
	errCodeBatchPattern  jetstream.ErrorCode = 10206
	errCodeBatchID       jetstream.ErrorCode = 10207
	errCodeBatchUnknown  jetstream.ErrorCode = 10208
	errCodeBatchInflight jetstream.ErrorCode = 10211
)

// batchCount reads a batch's answer: the count of its messages stored.
func batchCount(m *nats.Msg) (int, error) {
	ack := parseAck(m)
	if ack.Err != nil {
		return 0, fmt.Errorf("%w: %w", errBatchRefused, ack.Err)
	}
	digits := value(m.Data, countField)
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	count, err := strconv.Atoi(string(digits[:n]))
	if err != nil {
		return 0, fmt.Errorf("%w: answer without a count: %q", errBatchRefused, m.Data)
	}
	return count, nil
}

var (
	countField   = []byte(`"count"`)
	controlStart = []byte(`{"type":`)
)

func (p *Publisher) registerBatch(answer chan<- *nats.Msg) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.subscribeLocked(&p.batchSub, p.batchInbox+".*.*.fail.*.*.$FI", p.handleBatch); err != nil {
		return 0, err
	}
	p.next++
	p.batches[p.next] = answer
	return p.next, nil
}

func (p *Publisher) unregisterBatch(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.batches, id)
}

// handleBatch routes a batch's answer to it. Flow control is dropped, and
// so is anything after the first answer (a message the server had skipped
// once the batch ended is answered "unknown batch").
func (p *Publisher) handleBatch(m *nats.Msg) {
	if bytes.HasPrefix(m.Data, controlStart) {
		return
	}
	token, _, _ := strings.Cut(strings.TrimPrefix(m.Subject, p.batchPrefix), ".")
	id, err := strconv.ParseUint(token, 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	answer := p.batches[id]
	p.mu.Unlock()
	if answer == nil {
		return
	}
	select {
	case answer <- m:
	default:
	}
}
