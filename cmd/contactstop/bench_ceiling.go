package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/store"
)

// The latency ceiling's own bucket and streams, deleted before and after
// the phase.
const (
	ceilingBucket     = "contactstop-bench-ceiling"
	ceilingRequests   = "CONTACTSTOP_BENCH_CEILING_REQUESTS"
	ceilingResults    = "CONTACTSTOP_BENCH_CEILING_RESULTS"
	ceilingRequested  = "contactstop.bench.ceiling.requested"
	ceilingStopped    = "contactstop.bench.ceiling.stopped"
	ceilingIndexHdr   = "Bench-Index"
	ceilingInstanceID = "bench-ceiling"
)

// latencyCeiling measures, at the latency phase's rate and length, the
// ceiling of this design: a stop worker in this process doing nothing but
// the two writes each request needs, pipelined as the bound of compare.sh
// is. Per request: the contact's compare-and-set to ENDED, its revision
// known beforehand (no read), then a result, and the ack once both are
// stored; no validation, no logs. Its requests are published, and its
// results timed, exactly as the latency phase's.
func (b *bench) latencyCeiling(ctx context.Context) error {
	if b.o.rate == 0 || !b.o.ceiling {
		return nil
	}
	n := b.o.rate * int(b.o.latencyFor.Seconds())
	defer b.deleteCeiling()
	_, err := b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ceilingBucket, Storage: jetstream.FileStorage, Replicas: b.o.replicas})
	if err != nil {
		return err
	}
	for name, subject := range map[string]string{ceilingRequests: ceilingRequested, ceilingResults: ceilingStopped} {
		if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject},
			Storage: jetstream.FileStorage, Replicas: b.o.replicas}); err != nil {
			return err
		}
	}

	// Contact k<i> is stored at revision i+1: one publisher, in order, on
	// an empty bucket (checked below), so the worker needs no read.
	contact := func(i int) store.Contact {
		return store.Contact{ContactID: "k" + strconv.Itoa(i), InstanceID: ceilingInstanceID,
			State: store.StateQueued, QueueID: "k", Channel: store.ChannelVoice}
	}
	b.say("latency ceiling: seeding %d contacts", n)
	err = b.publishAll(ctx, n, func(i int) *nats.Msg {
		data, _ := json.Marshal(contact(i))
		return &nats.Msg{Subject: "$KV." + ceilingBucket + ".k" + strconv.Itoa(i), Data: data}
	}, b.bar(n, "seeding k"))
	if err != nil {
		return err
	}
	stream, err := b.js.Stream(ctx, "KV_"+ceilingBucket)
	if err != nil {
		return err
	}
	if si := stream.CachedInfo(); si.State.Msgs != uint64(n) || si.State.LastSeq != uint64(n) {
		return fmt.Errorf("latency ceiling: %d contacts seeded, last revision %d: want %d and %d", si.State.Msgs, si.State.LastSeq, n, n)
	}

	nc, err := nats.Connect(b.url, append(b.connOpts, nats.Name("contactstop bench ceiling"))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, ceilingRequests, jetstream.ConsumerConfig{Durable: "ceiling",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: max(1024, 2*b.o.workers)})
	if err != nil {
		return err
	}
	var (
		failMu sync.Mutex
		failed int
		first  error
	)
	fail := func(err error) {
		failMu.Lock()
		defer failMu.Unlock()
		if failed++; first == nil {
			first = err
		}
	}
	type step struct {
		msg    jetstream.Msg
		f      jetstream.PubAckFuture
		result *nats.Msg
	}
	// Two stages, as the bound's: the compare-and-set's acknowledgement,
	// then the result's, each awaited in order while the next requests'
	// writes are already published. quit ends them, and drops what the
	// consumer still hands over.
	written, stored, quit := make(chan step, 8192), make(chan step, 8192), make(chan struct{})
	// stage takes steps from in until quit, waits for each one's write to
	// be stored, then calls next.
	stage := func(in <-chan step, what string, next func(step)) {
		for {
			var s step
			select {
			case s = <-in:
			case <-quit:
				return
			}
			select {
			case <-s.f.Ok():
				next(s)
			case err := <-s.f.Err():
				fail(fmt.Errorf("%s: %w", what, err))
			}
		}
	}
	var stages sync.WaitGroup
	stages.Go(func() {
		stage(written, "compare-and-set", func(s step) {
			f, err := js.PublishMsgAsync(s.result)
			if err != nil {
				fail(fmt.Errorf("result: %w", err))
				return
			}
			select {
			case stored <- step{msg: s.msg, f: f}:
			case <-quit:
			}
		})
	})
	stages.Go(func() { stage(stored, "result", func(s step) { _ = s.msg.Ack() }) })
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		i, err := strconv.Atoi(msg.Headers().Get(ceilingIndexHdr))
		if err != nil {
			fail(fmt.Errorf("request without %s", ceilingIndexHdr))
			return
		}
		c := contact(i)
		at := time.Now().UTC()
		c.PreviousState, c.State, c.EndedBy, c.EndedAt, c.UpdatedAt = c.State, store.StateEnded, "c-"+strconv.Itoa(i), at, at
		data, _ := json.Marshal(c)
		end := &nats.Msg{Subject: "$KV." + ceilingBucket + "." + c.ContactID, Data: data, Header: nats.Header{}}
		end.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.Itoa(i+1))
		f, err := js.PublishMsgAsync(end)
		if err != nil {
			fail(fmt.Errorf("compare-and-set: %w", err))
			return
		}
		result := &nats.Msg{Subject: ceilingStopped, Data: data, Header: nats.Header{}}
		result.Header.Set(ceilingIndexHdr, strconv.Itoa(i))
		result.Header.Set(jetstream.MsgIDHeader, "c-"+strconv.Itoa(i))
		select {
		case written <- step{msg: msg, f: f, result: result}:
		case <-quit:
		}
	}, jetstream.PullMaxMessages(b.o.workers))
	if err != nil {
		return err
	}

	b.say("latency ceiling: %d requests at %d/s", n, b.o.rate)
	cpu0 := selfCPU()
	got, err := b.offer(ctx, n, "latency ceiling", ceilingStopped,
		func(i int) *nats.Msg {
			m := &nats.Msg{Subject: ceilingRequested, Header: nats.Header{},
				Data: fmt.Appendf(nil, `{"requestId":"c-%d","contactId":"k%d","instanceId":%q}`, i, i, ceilingInstanceID)}
			m.Header.Set(ceilingIndexHdr, strconv.Itoa(i))
			m.Header.Set(jetstream.MsgIDHeader, "c-"+strconv.Itoa(i))
			return m
		},
		func(m *nats.Msg) int {
			i, err := strconv.Atoi(m.Header.Get(ceilingIndexHdr))
			if err != nil {
				return -1
			}
			return i
		})
	cpu := selfCPU() - cpu0
	cc.Stop()
	close(quit)
	stages.Wait()
	failMu.Lock()
	defer failMu.Unlock()
	if failed > 0 {
		return fmt.Errorf("latency ceiling: %d requests failed, the first: %w", failed, first)
	}
	if err != nil {
		return err
	}
	b.rep.CeilingProcessCPUMicros = cpu.Seconds() / float64(n) * 1e6
	b.rep.CeilingLatencyMS, b.rep.CeilingLatencyWindows, b.rep.CeilingLatencyMinutes = b.summarize(got)
	return nil
}

// deleteCeiling deletes the latency ceiling's bucket and streams.
func (b *bench) deleteCeiling() {
	ctx := context.Background()
	_ = b.js.DeleteKeyValue(ctx, ceilingBucket)
	for _, s := range []string{ceilingRequests, ceilingResults} {
		if err := b.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.say("latency ceiling: delete stream %s: %v", s, err)
		}
	}
}

// selfCPU is this process's CPU time so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}
