package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The nats-server library keeps a few process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// A stream's setup of its source (CONTACT_STOP_NO_DEDUP) waits for
		// the consumer's answer up to a timeout, outliving Shutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"),
	)
}

const inst = "acme"

// env is one test's NATS server, store and provisioned streams.
type env struct {
	t   *testing.T
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	st  *store.KV
}

// setup starts a server, provisions the topology, opens the store and
// registers instance "acme".
func setup(t *testing.T, topo worker.TopologyConfig) *env {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.JetStream(t)
	ctx := t.Context()
	if topo.AckWait == 0 {
		topo.AckWait = 2 * time.Second
	}
	require.NoError(t, worker.Provision(ctx, js, topo))
	st, err := store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: inst})
	require.NoError(t, err)
	return &env{t: t, srv: srv, nc: nc, js: js, st: st}
}

// bothPaths runs a test against the per-request path (batch size 1) and
// the batched path (8), in parallel.
func bothPaths(t *testing.T, test func(t *testing.T, batch int)) {
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch size %d", batch), func(t *testing.T) {
			t.Parallel()
			test(t, batch)
		})
	}
}

// batchConfig is fastConfig with the given batch size.
func batchConfig(t *testing.T, batch int) worker.Config {
	cfg := fastConfig(t)
	cfg.BatchSize = batch
	return cfg
}

// fastConfig keeps retries and redeliveries short for tests.
func fastConfig(t *testing.T) worker.Config {
	return worker.Config{
		Workers:            8,
		AckWait:            2 * time.Second,
		MaxAttempts:        3,
		RetryInitial:       5 * time.Millisecond,
		RetryMax:           20 * time.Millisecond,
		RetryMaxElapsed:    100 * time.Millisecond,
		RedeliveryDelay:    50 * time.Millisecond,
		RedeliveryDelayMax: 200 * time.Millisecond,
		Logger:             zaptest.NewLogger(t),
	}
}

// start starts a worker on e's store (or st, if given) and stops it when
// the test ends.
func (e *env) start(cfg worker.Config, st worker.Store) *worker.Worker {
	e.t.Helper()
	if st == nil {
		st = e.st
	}
	w, err := worker.New(e.js, st, cfg)
	require.NoError(e.t, err)
	require.NoError(e.t, w.Start(e.t.Context()))
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w
}

func (e *env) seed(ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		_, err := e.st.PutContact(e.t.Context(), store.Contact{
			ContactID: id, InstanceID: inst, State: store.StateQueued, QueueID: "q1",
			Channel: store.ChannelVoice, EnqueuedAt: time.Now(),
		})
		require.NoError(e.t, err)
	}
}

// publish stores a raw request message in the requests stream.
func (e *env) publish(subject string, data []byte, hdr map[string]string) *jetstream.PubAck {
	e.t.Helper()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	ack, err := e.js.PublishMsg(e.t.Context(), m)
	require.NoError(e.t, err)
	return ack
}

// backlog seeds contacts c-0 … c-(n-1) and publishes a request r-i for
// each.
func (e *env) backlog(n int) {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c-%d", i)
	}
	e.seed(ids...)
	for i, id := range ids {
		e.publish("contact.stop.requested.acme", e.request(fmt.Sprintf("r-%d", i), id), nil)
	}
}

// countResults counts the messages in the results stream.
func (e *env) countResults() (uint64, error) {
	rs, err := e.js.Stream(e.t.Context(), events.StreamResults)
	if err != nil {
		return 0, err
	}
	info, err := rs.Info(e.t.Context())
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func (e *env) storedResults() uint64 {
	e.t.Helper()
	n, err := e.countResults()
	require.NoError(e.t, err)
	return n
}

// waitForResults waits until at least n results are stored.
func (e *env) waitForResults(n uint64) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		got, err := e.countResults()
		return err == nil && got >= n
	}, 30*time.Second, 5*time.Millisecond)
}

func (e *env) request(requestID, contactID string) []byte {
	e.t.Helper()
	b, err := json.Marshal(events.StopRequest{RequestID: requestID, ContactID: contactID, InstanceID: inst})
	require.NoError(e.t, err)
	return b
}

// stored is one message of the results stream.
type stored struct {
	subject string
	header  nats.Header
	data    []byte
	result  events.Result // zero for a completion event
}

// waitIdle waits until every request has been acknowledged and at least n
// results are stored, then returns every stored result.
func (e *env) waitIdle(n int) []stored {
	e.t.Helper()
	ctx := e.t.Context()
	require.EventuallyWithT(e.t, func(c *assertT) {
		ci, err := e.js.Consumer(ctx, events.StreamRequests, events.ConsumerRequests)
		if !assertNoError(c, err) {
			return
		}
		info, err := ci.Info(ctx)
		if !assertNoError(c, err) {
			return
		}
		rs, err := e.js.Stream(ctx, events.StreamResults)
		if !assertNoError(c, err) {
			return
		}
		rinfo, err := rs.Info(ctx)
		if !assertNoError(c, err) {
			return
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || rinfo.State.Msgs < uint64(n) {
			c.Errorf("pending %d, ack pending %d, results %d of %d", info.NumPending, info.NumAckPending, rinfo.State.Msgs, n)
		}
	}, 60*time.Second, 20*time.Millisecond)
	return e.results()
}

// results reads the whole results stream.
func (e *env) results() []stored {
	e.t.Helper()
	return readStream(e.t, e.js, events.StreamResults)
}

func readStream(t *testing.T, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []stored
	if info.State.Msgs == 0 {
		return out
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(min(1000, int(info.State.Msgs)-len(out)), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		got := 0
		for m := range batch.Messages() {
			got++
			st := stored{subject: m.Subject(), header: m.Headers(), data: m.Data()}
			if stream == events.StreamResults && !strings.HasPrefix(m.Subject(), events.SubjectBulkCompleted+".") {
				st.result, err = events.DecodeResult(m.Subject(), m.Data())
				require.NoError(t, err)
			}
			out = append(out, st)
		}
		require.NoError(t, batch.Error())
		require.NotZero(t, got, "results stream ended early")
	}
	return out
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// byRequest indexes results by requestId and fails on any duplicate.
func byRequest(t *testing.T, rs []stored) map[string]stored {
	t.Helper()
	m := make(map[string]stored, len(rs))
	for _, r := range rs {
		if r.result.Stopped == nil && r.result.Failed == nil {
			continue // a bulk completion
		}
		id := r.result.RequestID()
		_, dup := m[id]
		require.False(t, dup, "request %s has more than one stored result", id)
		m[id] = r
	}
	return m
}

func requireFailed(t *testing.T, r stored, code events.ReasonCode) {
	t.Helper()
	require.NotNil(t, r.result.Failed, "want failure %s, got %+v", code, r.result.Stopped)
	require.Equal(t, code, r.result.Failed.ReasonCode, r.result.Failed.Message)
	require.Equal(t, code == events.ReasonInternalError, r.result.Failed.Retryable)
	require.False(t, r.result.Failed.FailedAt.IsZero())
	require.NotEmpty(t, r.result.Failed.Message)
}

func TestStopsContact(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("c-1")
		e.start(batchConfig(t, batch), nil)
		e.publish(events.StopRequestedSubject(inst),
			[]byte(`{"requestId":"r-1","contactId":"c-1","instanceId":"acme","disconnectReason":"EMERGENCY"}`),
			map[string]string{events.HeaderTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", events.HeaderCorrelationID: "corr-9"})

		rs := e.waitIdle(1)
		require.Len(t, rs, 1)
		r := rs[0]
		require.Equal(t, "contact.stopped.acme", r.subject)
		s := r.result.Stopped
		require.NotNil(t, s)
		require.Equal(t, "r-1", s.RequestID)
		require.Equal(t, "c-1", s.ContactID)
		require.Equal(t, inst, s.InstanceID)
		require.Equal(t, "QUEUED", s.PreviousState)
		require.Equal(t, "EMERGENCY", s.DisconnectReason)
		require.False(t, s.StoppedAt.IsZero())
		require.Equal(t, events.ResultMsgID(inst, "c-1", "r-1"), r.header.Get(events.HeaderMsgID))
		require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", r.header.Get(events.HeaderTraceparent))
		require.Equal(t, "corr-9", r.header.Get(events.HeaderCorrelationID))

		c, err := e.st.GetContact(t.Context(), inst, "c-1")
		require.NoError(t, err)
		require.Equal(t, store.StateEnded, c.State)
		require.Equal(t, "r-1", c.EndedBy)
		require.Equal(t, "EMERGENCY", c.DisconnectReason)
		require.Equal(t, s.StoppedAt.UTC(), c.EndedAt.UTC())
	})
}

func TestReasonCodes(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("active", "ended")
		endContact(t, e.st, "ended", "earlier")
		e.start(batchConfig(t, batch), nil)

		cases := []struct {
			requestID string
			subject   string
			body      string
			want      events.ReasonCode // "" = stopped
			failedOn  string
		}{
			{"ok", "contact.stop.requested", `{"requestId":"ok","contactId":"active","instanceId":"acme"}`, "", ""},
			{"not-json", "contact.stop.requested.acme", `{"requestId":"not-json",`, events.ReasonInvalidRequest, "contact.stop.failed.acme"},
			{"wrong-type", "contact.stop.requested", `{"requestId":"wrong-type","contactId":5,"instanceId":"acme"}`, events.ReasonInvalidRequest, "contact.stop.failed.acme"},
			{"no-contact", "contact.stop.requested", `{"requestId":"no-contact","instanceId":"acme"}`, events.ReasonInvalidParameter, "contact.stop.failed.acme"},
			{"bad-instance", "contact.stop.requested", `{"requestId":"bad-instance","contactId":"c","instanceId":"ac.me"}`, events.ReasonInvalidParameter, "contact.stop.failed"},
			{"subject-mismatch", "contact.stop.requested.other", `{"requestId":"subject-mismatch","contactId":"active","instanceId":"acme"}`, events.ReasonInvalidParameter, "contact.stop.failed.other"},
			{"unknown-instance", "contact.stop.requested", `{"requestId":"unknown-instance","contactId":"c","instanceId":"nobody"}`, events.ReasonResourceNotFound, "contact.stop.failed.nobody"},
			{"absent", "contact.stop.requested", `{"requestId":"absent","contactId":"nobody","instanceId":"acme"}`, events.ReasonContactNotFound, "contact.stop.failed.acme"},
			{"already-ended", "contact.stop.requested", `{"requestId":"already-ended","contactId":"ended","instanceId":"acme"}`, events.ReasonContactNotFound, "contact.stop.failed.acme"},
		}
		for _, c := range cases {
			// A body whose requestId is unreadable is identified by its
			// Nats-Msg-Id; the others carry theirs in the body.
			e.publish(c.subject, []byte(c.body), map[string]string{events.HeaderMsgID: c.requestID})
		}
		got := byRequest(t, e.waitIdle(len(cases)))
		require.Len(t, got, len(cases))
		for _, c := range cases {
			r, ok := got[c.requestID]
			require.True(t, ok, c.requestID)
			if c.want == "" {
				require.NotNil(t, r.result.Stopped, c.requestID)
				continue
			}
			requireFailed(t, r, c.want)
			require.Equal(t, c.failedOn, r.subject, c.requestID)
		}
		// Failures echo what was readable.
		require.Equal(t, "nobody", got["absent"].result.Failed.ContactID)
		require.Equal(t, "ac.me", got["bad-instance"].result.Failed.InstanceID)

		c, err := e.st.GetContact(t.Context(), inst, "ended")
		require.NoError(t, err)
		require.Equal(t, "earlier", c.EndedBy, "a failed request must not touch the contact")
	})
}

func TestRequestIdentity(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seed("c-1", "c-2")
	e.start(fastConfig(t), nil)
	e.publish("contact.stop.requested.acme", []byte(`{"contactId":"c-1","instanceId":"acme"}`), map[string]string{events.HeaderMsgID: "from-header"})
	ack := e.publish("contact.stop.requested.acme", []byte(`{"contactId":"c-2","instanceId":"acme"}`), nil)

	got := byRequest(t, e.waitIdle(2))
	require.NotNil(t, got["from-header"].result.Stopped)
	require.NotNil(t, got[fmt.Sprintf("seq-%d", ack.Sequence)].result.Stopped)
	c, err := e.st.GetContact(t.Context(), inst, "c-1")
	require.NoError(t, err)
	require.Equal(t, "from-header", c.EndedBy)
}

func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("c-ok")
		e.start(batchConfig(t, batch), nil)
		bodies := map[string][]byte{
			"empty":      {},
			"not-json":   []byte("hello"),
			"array":      []byte(`[{"contactId":"c-ok","instanceId":"acme"}]`),
			"string":     []byte(`"contactId"`),
			"number":     []byte(`42`),
			"null":       []byte(`null`),
			"binary":     {0x00, 0xff, 0xfe, 0x7b, 0x80, 0x01},
			"truncated":  []byte(`{"contactId":"c-ok","instanceId":"ac`),
			"trailing":   []byte(`{"contactId":"c-ok","instanceId":"acme"} x`),
			"wrongtypes": []byte(`{"contactId":["c-ok"],"instanceId":{"a":1}}`),
			"bool":       []byte(`{"contactId":true,"instanceId":"acme"}`),
			"too-large":  []byte(`{"contactId":"c-ok","instanceId":"acme","pad":"` + strings.Repeat("x", 70<<10) + `"}`),
		}
		for name, body := range bodies {
			e.publish("contact.stop.requested.acme", body, map[string]string{events.HeaderMsgID: name})
		}
		e.publish("contact.stop.requested.acme", e.request("valid", "c-ok"), nil)

		got := byRequest(t, e.waitIdle(len(bodies)+1))
		require.Len(t, got, len(bodies)+1)
		for name := range bodies {
			requireFailed(t, got[name], events.ReasonInvalidRequest)
			require.Equal(t, "contact.stop.failed.acme", got[name].subject, name)
		}
		require.NotNil(t, got["valid"].result.Stopped, "the worker keeps working after bad input")
	})
}

func TestDuplicateDelivery(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("with-msg-id", "without-msg-id")
		e.start(batchConfig(t, batch), nil)

		// Same request twice with a Nats-Msg-Id: both are stored (the
		// requests stream keeps no duplicate window: a tenant's id must not
		// drop another's request) and the second is answered from the
		// first's record, with no second result.
		hdr := map[string]string{events.HeaderMsgID: "m-1"}
		e.publish("contact.stop.requested.acme", e.request("r-1", "with-msg-id"), hdr)
		ack := e.publish("contact.stop.requested.acme", e.request("r-1", "with-msg-id"), hdr)
		require.False(t, ack.Duplicate)
		// Same requestId twice without a Nats-Msg-Id: the same.
		e.publish("contact.stop.requested.acme", e.request("r-2", "without-msg-id"), nil)
		e.publish("contact.stop.requested.acme", e.request("r-2", "without-msg-id"), nil)

		rs := e.waitIdle(2)
		got := byRequest(t, rs)
		require.Len(t, got, 2)
		require.NotNil(t, got["r-1"].result.Stopped)
		require.NotNil(t, got["r-2"].result.Stopped)
	})
}

// TestReplayAfterDuplicateWindow publishes a request again after the
// results stream's duplicate window, when JetStream would store a second
// result: the worker answers it from its record, storing none (finding 5
// of the exactly-once issue: it used to store one).
func TestReplayAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		const window = time.Second
		e := setup(t, worker.TopologyConfig{DuplicateWindow: window})
		e.seed("c-1")
		e.start(batchConfig(t, batch), nil)
		hdr := map[string]string{events.HeaderMsgID: "acme:r-1"}
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), hdr)
		first := e.waitIdle(1)
		require.Len(t, first, 1)

		// Nothing to wait on: the window is a span of time that must pass.
		time.Sleep(window + 500*time.Millisecond)
		ack := e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), hdr)
		require.False(t, ack.Duplicate, "the request must be stored again after the window")

		rs := e.waitIdle(1)
		require.Len(t, rs, 1, "a resend after the window changes nothing and stores no second result")
		require.NotNil(t, rs[0].result.Stopped)
		c, err := e.st.GetContact(t.Context(), inst, "c-1")
		require.NoError(t, err)
		require.Equal(t, "r-1", c.EndedBy)
	})
}

func TestConcurrentRequestsForOneContact(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("contested")
		cfg := batchConfig(t, batch)
		cfg.Workers = 32
		e.start(cfg, nil)

		const n = 50
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				e.publish("contact.stop.requested.acme", e.request(fmt.Sprintf("r-%d", i), "contested"), nil)
			})
		}
		wg.Wait()

		got := byRequest(t, e.waitIdle(n))
		require.Len(t, got, n)
		var winner string
		for id, r := range got {
			if r.result.Stopped != nil {
				require.Empty(t, winner, "two requests stopped the same contact")
				winner = id
				continue
			}
			requireFailed(t, r, events.ReasonContactNotFound)
		}
		require.NotEmpty(t, winner)
		c, err := e.st.GetContact(t.Context(), inst, "contested")
		require.NoError(t, err)
		require.Equal(t, winner, c.EndedBy)
	})
}

func TestAwkwardContactIDs(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		ids := []string{".", "..", "*", ">", "a.b.c", "a/b", "with space", "=", "=2E", "日本語", "📞☎️", "tab\there",
			strings.Repeat("é", 256), `quote"and\backslash`}
		e.seed(ids...)
		e.start(batchConfig(t, batch), nil)
		for i, id := range ids {
			e.publish("contact.stop.requested.acme", e.request(fmt.Sprintf("r-%d", i), id), nil)
		}
		got := byRequest(t, e.waitIdle(len(ids)))
		for i, id := range ids {
			r := got[fmt.Sprintf("r-%d", i)]
			require.NotNil(t, r.result.Stopped, "contact %q", id)
			require.Equal(t, id, r.result.Stopped.ContactID)
			c, err := e.st.GetContact(t.Context(), inst, id)
			require.NoError(t, err)
			require.Equal(t, store.StateEnded, c.State)
		}
	})
}

// TestCrashAfterStateChange abandons the first delivery right after the
// contact was ended, before its result is published, as if the worker died
// there. The redelivery must publish the one result, as contact.stopped.
func TestCrashAfterStateChange(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{AckWait: time.Second})
		e.seed("c-1")
		cfg := batchConfig(t, batch)
		cfg.AckWait = time.Second
		w, err := worker.New(e.js, e.st, cfg)
		require.NoError(t, err)
		var crashed atomic.Int32
		worker.SetCrashHooks(w, func(r *worker.Request, res events.Result) bool {
			return r.Deliveries == 1 && crashed.Add(1) == 1
		}, nil)
		require.NoError(t, w.Start(t.Context()))
		t.Cleanup(func() { _ = w.Stop(context.Background()) })

		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		rs := e.waitIdle(1)
		require.EqualValues(t, 1, crashed.Load())
		require.Len(t, rs, 1)
		require.NotNil(t, rs[0].result.Stopped)
		c, err := e.st.GetContact(t.Context(), inst, "c-1")
		require.NoError(t, err)
		require.Equal(t, "r-1", c.EndedBy)
	})
}

// TestCrashAfterResultBeforeAck abandons every first delivery after its
// result was stored and before the ack: the redeliveries publish the same
// results again, and the results stream keeps exactly one of each.
func TestCrashAfterResultBeforeAck(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{AckWait: time.Second})
		const n = 20
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("c-%d", i)
		}
		e.seed(ids...)
		cfg := batchConfig(t, batch)
		cfg.AckWait = time.Second
		w, err := worker.New(e.js, e.st, cfg)
		require.NoError(t, err)
		var crashes atomic.Int32
		worker.SetCrashHooks(w, nil, func(r *worker.Request) bool {
			if r.Deliveries == 1 {
				crashes.Add(1)
				return true
			}
			return false
		})
		require.NoError(t, w.Start(t.Context()))
		t.Cleanup(func() { _ = w.Stop(context.Background()) })

		for i, id := range ids {
			e.publish("contact.stop.requested.acme", e.request(fmt.Sprintf("r-%d", i), id), nil)
		}
		got := byRequest(t, e.waitIdle(n))
		require.EqualValues(t, n, crashes.Load())
		require.Len(t, got, n)
		for _, r := range got {
			require.NotNil(t, r.result.Stopped)
		}
	})
}

// flakyStore wraps the real store and injects transient errors.
type flakyStore struct {
	*store.KV
	failEnd func(contactID string) error
}

func (f *flakyStore) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	outs := make([]store.EndOutcome, len(ps))
	var pass []store.EndContactParams
	var at []int
	for i, p := range ps {
		if err := f.failEnd(p.Contact.ContactID); err != nil {
			outs[i].Err = err
			continue
		}
		pass, at = append(pass, p), append(at, i)
	}
	for k, o := range f.KV.EndContacts(ctx, pass) {
		outs[at[k]] = o
	}
	return outs
}

func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, batch int) {
		e := setup(t, worker.TopologyConfig{})
		e.seed("c-1")
		var calls atomic.Int32
		fs := &flakyStore{KV: e.st, failEnd: func(string) error {
			if calls.Add(1) <= 3 {
				return nats.ErrTimeout
			}
			return nil
		}}
		e.start(batchConfig(t, batch), fs)
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		rs := e.waitIdle(1)
		require.Len(t, rs, 1)
		require.NotNil(t, rs[0].result.Stopped)
		require.EqualValues(t, 4, calls.Load())
	})
}

func TestPersistentFailureIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seed("doomed", "fine")
	var doomedCalls atomic.Int32
	fs := &flakyStore{KV: e.st, failEnd: func(id string) error {
		if id == "doomed" {
			doomedCalls.Add(1)
			return jetstream.ErrNoHeartbeat
		}
		return nil
	}}
	cfg := fastConfig(t)
	e.start(cfg, fs)
	e.publish("contact.stop.requested.acme", e.request("r-doomed", "doomed"), map[string]string{events.HeaderCorrelationID: "x-1"})
	e.publish("contact.stop.requested.acme", e.request("r-fine", "fine"), nil)

	got := byRequest(t, e.waitIdle(2))
	requireFailed(t, got["r-doomed"], events.ReasonInternalError)
	require.NotNil(t, got["r-fine"].result.Stopped)
	require.Greater(t, doomedCalls.Load(), int32(cfg.MaxAttempts), "retried within and across deliveries")

	dl := readStream(t, e.js, events.StreamDeadLetter)
	require.Len(t, dl, 1)
	require.Equal(t, "contact.stop.deadletter.acme", dl[0].subject)
	require.Equal(t, "x-1", dl[0].header.Get(events.HeaderCorrelationID))
	require.Equal(t, "3", dl[0].header.Get(worker.HeaderDeadLetterDeliveries))
	require.Contains(t, dl[0].header.Get(worker.HeaderDeadLetterError), "heartbeat")

	c, err := e.st.GetContact(t.Context(), inst, "doomed")
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, c.State, "the contact is untouched")
}

// panickyStore panics ending the contact "always", and "once" the first
// time, as a bug in a handler's dependency would.
type panickyStore struct {
	*store.KV
	once     sync.Once
	panicked atomic.Int32
}

func (p *panickyStore) check(contactID string) {
	if contactID == "always" {
		p.panicked.Add(1)
		panic("boom: always")
	}
	if contactID == "once" {
		p.once.Do(func() {
			p.panicked.Add(1)
			panic("boom: once")
		})
	}
}

func (p *panickyStore) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	for _, e := range ps {
		p.check(e.Contact.ContactID)
	}
	return p.KV.EndContacts(ctx, ps)
}

func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch size %d", batch), func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{})
			e.seed("once", "always", "fine")
			cfg := fastConfig(t)
			cfg.Workers, cfg.BatchSize = 8, batch
			ps := &panickyStore{KV: e.st}
			e.start(cfg, ps)
			for _, id := range []string{"once", "always", "fine"} {
				e.publish("contact.stop.requested.acme", e.request("r-"+id, id), nil)
			}
			got := byRequest(t, e.waitIdle(3))
			require.NotNil(t, got["r-once"].result.Stopped, "a one-off panic is retried")
			require.NotNil(t, got["r-fine"].result.Stopped)
			requireFailed(t, got["r-always"], events.ReasonInternalError)
			require.Contains(t, got["r-always"].result.Failed.Message, "panic")
			require.Len(t, readStream(t, e.js, events.StreamDeadLetter), 1)
			require.GreaterOrEqual(t, ps.panicked.Load(), int32(cfg.MaxAttempts))
		})
	}
}

func TestServerRestartMidBacklog(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	const n = 1000
	e.backlog(n)
	cfg := fastConfig(t)
	cfg.RetryMaxElapsed = time.Second
	e.start(cfg, nil)

	// Restart once some, but not all, results are in.
	e.waitForResults(50)
	e.srv.Restart()

	got := byRequest(t, e.waitIdle(n))
	require.Len(t, got, n)
	for id, r := range got {
		require.NotNil(t, r.result.Stopped, id)
	}
}

// TestResultsPublishedInBatches drains a backlog and counts the
// acknowledgements JetStream sends for results: a batch's results are
// published as one fast batch, answered once, not once per result.
func TestResultsPublishedInBatches(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	const n = 400
	e.backlog(n)
	// Every reply the server sends: the worker's acknowledgements come to
	// its inboxes, which any connection of the account may also hear.
	var resultAcks atomic.Int64
	tap, err := e.nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if bytes.Contains(m.Data, []byte(`"stream":"`+events.StreamResults+`"`)) {
			resultAcks.Add(1)
		}
	})
	require.NoError(t, err)
	require.NoError(t, e.nc.Flush())
	cfg := fastConfig(t)
	cfg.Workers, cfg.BatchSize = 64, 32
	e.start(cfg, nil)

	got := byRequest(t, e.waitIdle(n))
	require.Len(t, got, n)
	for id, r := range got {
		require.NotNil(t, r.result.Stopped, id)
	}
	require.NoError(t, tap.Unsubscribe())
	require.Positive(t, resultAcks.Load())
	require.Less(t, resultAcks.Load(), int64(n/2), "one acknowledgement per batch of results, not per result")
}

// TestGracefulShutdownMidBacklog stops a worker mid-backlog, five times
// over: each Stop finishes what it took, and leaves no request pending at
// the server, not even one the server was sending it as it stopped (that
// one would wait out AckWait).
func TestGracefulShutdownMidBacklog(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	const n, rounds = 4000, 5
	e.backlog(n)
	cons, err := e.js.Consumer(t.Context(), events.StreamRequests, events.ConsumerRequests)
	require.NoError(t, err)
	for round := range rounds {
		before := e.storedResults()
		w, err := worker.New(e.js, e.st, fastConfig(t))
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		e.waitForResults(before + 50)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, w.Stop(ctx))
		cancel()

		require.Less(t, e.storedResults(), uint64(n), "stopped mid-backlog")
		ci, err := cons.Info(t.Context())
		require.NoError(t, err)
		require.Zero(t, ci.NumAckPending, "round %d: in-flight requests were finished or handed back", round)
	}

	e.start(fastConfig(t), nil)
	got := byRequest(t, e.waitIdle(n))
	require.Len(t, got, n)
}

// blockingStore holds every EndContacts until its context ends, as a store
// that hangs would.
type blockingStore struct {
	*store.KV
	entered chan struct{}
}

func (b *blockingStore) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	outs := make([]store.EndOutcome, len(ps))
	for i := range outs {
		outs[i].Err = ctx.Err()
	}
	return outs
}

// TestStopDeadlineHandsBack stops a worker whose requests cannot finish:
// at the deadline they are handed back at once, not left to AckWait, and
// another worker completes them.
func TestStopDeadlineHandsBack(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 30 * time.Second})
	e.backlog(5)
	cfg := fastConfig(t)
	cfg.AckWait = 30 * time.Second
	cfg.RetryMaxElapsed = 20 * time.Second
	bs := &blockingStore{KV: e.st, entered: make(chan struct{}, 1)}
	w, err := worker.New(e.js, bs, cfg)
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	<-bs.entered

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
	require.Zero(t, e.storedResults())

	// Handed back: a new worker finishes well within the 30 s AckWait.
	e.start(cfg, nil)
	require.Eventually(t, func() bool {
		n, err := e.countResults()
		return err == nil && n == 5
	}, 10*time.Second, 10*time.Millisecond, "handed-back requests are redelivered at once")
	got := byRequest(t, e.waitIdle(5))
	for id, r := range got {
		require.NotNil(t, r.result.Stopped, id)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := worker.New(nil, nil, worker.Config{Workers: 10, MaxAckPending: 5})
	require.ErrorContains(t, err, "max ack pending")
	_, err = worker.New(nil, nil, worker.Config{AckWait: 2 * time.Second, RetryMaxElapsed: 5 * time.Second})
	require.ErrorContains(t, err, "below ack wait")
}

// endContact writes contact id of instance "acme" as ENDED by request by,
// as an earlier request would have left it.
func endContact(t *testing.T, st *store.KV, id, by string) {
	t.Helper()
	c, err := st.GetContact(t.Context(), inst, id)
	require.NoError(t, err)
	at := time.Now()
	c.PreviousState, c.State, c.EndedBy, c.EndedAt, c.UpdatedAt = c.State, store.StateEnded, by, at, at
	_, err = st.PutContact(t.Context(), c)
	require.NoError(t, err)
}
