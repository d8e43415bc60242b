package worker_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// The cluster tests run contactstop on three clustered nats-servers with
// every stream and bucket replicated three times, and drain a backlog of
// CONTACTSTOP_CLUSTER_N requests (default 20000, one per contact) while
// servers fail. Whatever fails, afterwards:
//
//   - every request has exactly one stored result, and it is contact.stopped;
//   - every contact is ENDED, by its own request;
//   - every contact was written exactly once after it was seeded (the
//     contacts stream holds 2N writes in all), so none was ended twice;
//   - nothing was dead-lettered.

// clusterAckWait is long enough that a leader election (a few seconds on a
// loaded machine) does not by itself cause redeliveries, and above
// clusterRetryMaxElapsed, which outlasts an election.
const (
	clusterAckWait         = 15 * time.Second
	clusterRetryMaxElapsed = 10 * time.Second
	// clusterStall fails a drain that makes no progress for this long.
	clusterStall = 90 * time.Second
)

// clusterN is the size of the backlog: CONTACTSTOP_CLUSTER_N, default 20000.
func clusterN(t *testing.T) int {
	t.Helper()
	v := os.Getenv("CONTACTSTOP_CLUSTER_N")
	if v == "" {
		return 20000
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "CONTACTSTOP_CLUSTER_N")
	require.Positive(t, n, "CONTACTSTOP_CLUSTER_N")
	return n
}

// clusterEnv is a three-node cluster with the topology provisioned at R3,
// the store opened at R3, instance "acme" registered, and (after backlog)
// n contacts c-i, each with a request r-i waiting.
type clusterEnv struct {
	*env
	c *natstest.Cluster
	n int
	m *monitor
}

func setupCluster(t *testing.T) *clusterEnv {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	nc, js := c.JetStream(t, asyncErrors("test client"))
	ctx := t.Context()
	require.NoError(t, worker.Provision(ctx, js, clusterTopology()))
	st, err := store.Open(ctx, js, store.Config{Replicas: 3})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: inst})
	require.NoError(t, err)
	ce := &clusterEnv{env: &env{t: t, nc: nc, js: js, st: st}, c: c, n: clusterN(t)}
	ce.watch()
	return ce
}

func clusterTopology() worker.TopologyConfig {
	return worker.TopologyConfig{Replicas: 3, AckWait: clusterAckWait}
}

// clusterConfig is a worker configuration whose retries outlast a leader
// election. It logs warnings and errors only: 20000 lines of "contact
// stopped" would drown what matters.
func clusterConfig(t *testing.T) worker.Config {
	cfg := fastConfig(t)
	cfg.Workers = 128
	cfg.AckWait = clusterAckWait
	cfg.MaxAttempts = 5
	cfg.RetryInitial = 20 * time.Millisecond
	cfg.RetryMax = 500 * time.Millisecond
	cfg.RetryMaxElapsed = clusterRetryMaxElapsed
	cfg.RedeliveryDelay = 200 * time.Millisecond
	cfg.RedeliveryDelayMax = 2 * time.Second
	cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	return cfg
}

// asyncErrors reports a connection's asynchronous errors (a slow consumer)
// on stderr, naming the connection. (Not in the test log: they may come
// after the test has ended.)
func asyncErrors(name string) nats.Option {
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		fmt.Fprintf(os.Stderr, "%s (%s): nats: %v (subscription %q)\n", name, nc.ConnectedServerName(), err, subject)
	})
}

// connect returns a JetStream context on a connection of its own, as a
// separate serve process would have, trying the servers in the order given
// first and then every other, reconnecting forever.
func (ce *clusterEnv) connect(name string, first ...int) jetstream.JetStream {
	ce.t.Helper()
	url := ce.c.URLs()
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.Timeout(5 * time.Second),
		asyncErrors(name)}
	if len(first) > 0 {
		for i := len(first) - 1; i >= 0; i-- {
			url = ce.c.URL(first[i]) + "," + url
		}
		opts = append(opts, nats.DontRandomize())
	}
	nc, err := nats.Connect(url, opts...)
	require.NoError(ce.t, err)
	ce.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(ce.t, err)
	return js
}

// startWorker opens the store on js, as serve does, and starts a worker on
// it (wrapped by wrap, if given). The worker is stopped when the test ends.
func (ce *clusterEnv) startWorker(js jetstream.JetStream, wrap func(*store.KV) worker.Store) *worker.Worker {
	ce.t.Helper()
	ctx := ce.t.Context()
	kv, err := store.Open(ctx, js, store.Config{Replicas: 3})
	require.NoError(ce.t, err)
	var st worker.Store = kv
	if wrap != nil {
		st = wrap(kv)
	}
	w, err := worker.New(js, st, clusterConfig(ce.t))
	require.NoError(ce.t, err)
	require.NoError(ce.t, w.Start(ctx))
	ce.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w
}

// backlog seeds contacts c-0 … c-(n-1) and publishes request r-i for
// each contact c-i.
func (ce *clusterEnv) backlog() {
	ce.t.Helper()
	began := time.Now()
	ce.seedContacts()
	ce.publish(0, ce.n)
	ce.t.Logf("seeded %d contacts and published %d requests in %s", ce.n, ce.n, time.Since(began).Round(time.Millisecond))
}

func (ce *clusterEnv) seedContacts() {
	ce.t.Helper()
	ce.seedN("c-", ce.n, store.StateQueued, "q1", store.ChannelVoice, time.Now())
}

// publish publishes requests r-from … r-(to-1), r-i for contact c-i, with
// Nats-Msg-Id r-i: a publish that fails (a server or leader lost meanwhile)
// is retried, and stored once however often it was sent. It returns when
// the requests stream has stored every one of them.
func (ce *clusterEnv) publish(from, to int) {
	ce.t.Helper()
	ctx := ce.t.Context()
	const window = 1024
	pending := make([]jetstream.PubAckFuture, 0, window)
	await := func() {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case <-f.Err():
				require.Eventually(ce.t, func() bool {
					_, err := ce.js.PublishMsg(ctx, f.Msg())
					return err == nil
				}, 60*time.Second, 100*time.Millisecond, "publish %s", f.Msg().Header.Get(events.HeaderMsgID))
			}
		}
		pending = pending[:0]
	}
	for i := from; i < to; i++ {
		id := fmt.Sprintf("r-%d", i)
		m := &nats.Msg{Subject: events.StopRequestedSubject(inst), Data: ce.request(id, fmt.Sprintf("c-%d", i)),
			Header: nats.Header{events.HeaderMsgID: []string{id}}}
		f, err := ce.js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second))
		require.NoError(ce.t, err)
		if pending = append(pending, f); len(pending) == window {
			await()
		}
	}
	await()
}

// progress is what the drain has achieved so far.
type progress struct {
	results             uint64
	pending, ackPending uint64
	ackFloor            uint64
}

func (p progress) idle(n int) bool {
	return p.pending == 0 && p.ackPending == 0 && p.results >= uint64(n)
}

func (ce *clusterEnv) progress() (progress, error) {
	ctx, cancel := context.WithTimeout(ce.t.Context(), 2*time.Second)
	defer cancel()
	var p progress
	cons, err := ce.js.Consumer(ctx, events.StreamRequests, events.ConsumerRequests)
	if err != nil {
		return p, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return p, err
	}
	p.pending, p.ackPending, p.ackFloor = ci.NumPending, uint64(ci.NumAckPending), ci.AckFloor.Stream
	rs, err := ce.js.Stream(ctx, events.StreamResults)
	if err != nil {
		return p, err
	}
	ri, err := rs.Info(ctx)
	if err != nil {
		return p, err
	}
	p.results = ri.State.Msgs
	return p, nil
}

// monitor samples the drain's progress in the background, to measure the
// longest pause: the longest time without a new result or ack while
// requests were waiting or unacknowledged.
type monitor struct {
	mu      sync.Mutex
	last    progress
	lastErr error
	moved   time.Time // when results or the ack floor last moved, or work was last idle
	longest time.Duration
	stop    chan struct{}
	done    chan struct{}
}

// watch starts the monitor; it stops when the test ends.
func (ce *clusterEnv) watch() {
	m := &monitor{moved: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	ce.m = m
	go func() {
		defer close(m.done)
		for {
			p, err := ce.progress()
			m.mu.Lock()
			m.lastErr = err
			if err == nil {
				now := time.Now()
				if p.results != m.last.results || p.ackFloor != m.last.ackFloor || p.pending+p.ackPending == 0 {
					m.moved = now
				}
				m.longest = max(m.longest, now.Sub(m.moved))
				m.last = p
			}
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	ce.t.Cleanup(func() {
		close(m.stop)
		<-m.done
	})
}

func (m *monitor) state() (p progress, stalled time.Duration, longest time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, time.Since(m.moved), m.longest, m.lastErr
}

// waitFor waits until done holds for the drain's progress, or the drain
// is over. It fails the test if the drain makes no progress (neither a new
// result nor a new ack, with work outstanding) for clusterStall: a worker
// that stopped working after a leader change.
func (ce *clusterEnv) waitFor(what string, done func(progress) bool) progress {
	ce.t.Helper()
	for {
		p, stalled, _, err := ce.m.state()
		if done(p) || p.idle(ce.n) {
			return p
		}
		if stalled > clusterStall {
			ce.t.Fatalf("waiting for %s: no progress for %s: results %d of %d, pending %d, ack pending %d, ack floor %d (last error: %v)",
				what, stalled.Round(time.Second), p.results, ce.n, p.pending, p.ackPending, p.ackFloor, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitResults waits until at least k results are stored.
func (ce *clusterEnv) waitResults(k int) progress {
	ce.t.Helper()
	return ce.waitFor(fmt.Sprintf("%d results", k), func(p progress) bool { return p.results >= uint64(k) })
}

// waitDrained waits until every request is acknowledged and has a result.
func (ce *clusterEnv) waitDrained() {
	ce.t.Helper()
	ce.waitFor("the drain", func(p progress) bool { return p.idle(ce.n) })
	_, _, longest, _ := ce.m.state()
	ce.t.Logf("longest pause in the drain (no new result or ack with work outstanding): %s", longest.Round(time.Millisecond))
}

// read reads a whole stream, as readStream does, retrying from the start
// when a read fails: on a cluster, the first pull from a new consumer can
// find no responders before the consumer's interest has reached every
// server.
func (ce *clusterEnv) read(stream string) []stored {
	ce.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := ce.tryRead(stream)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			ce.t.Fatalf("read %s: %v", stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ce *clusterEnv) tryRead(stream string) ([]stored, error) {
	ctx := ce.t.Context()
	s, err := ce.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []stored
	if info.State.Msgs == 0 {
		return out, nil
	}
	cons, err := ce.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(min(1000, int(info.State.Msgs)-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			st := stored{subject: m.Subject(), header: m.Headers(), data: m.Data()}
			if stream == events.StreamResults {
				if st.result, err = events.DecodeResult(m.Subject(), m.Data()); err != nil {
					return nil, fmt.Errorf("result %s: %w", m.Data(), err)
				}
			}
			out = append(out, st)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("%s ended after %d of %d messages", stream, len(out), info.State.Msgs)
		}
	}
	return out, nil
}

// verify checks the invariants listed at the top of this file. It tallies
// every violation before failing, so that a failure shows how much broke.
func (ce *clusterEnv) verify() {
	t := ce.t
	t.Helper()
	ctx := t.Context()
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}

	results := map[string][]events.Result{}
	for _, r := range ce.read(events.StreamResults) {
		results[r.result.RequestID()] = append(results[r.result.RequestID()], r.result)
	}
	var missing, duplicated, failed, unknown int
	for id := range results {
		if !strings.HasPrefix(id, "r-") {
			unknown++
			problem("a result for unknown request %q", id)
		}
	}
	for i := range ce.n {
		id := fmt.Sprintf("r-%d", i)
		rs := results[id]
		switch {
		case len(rs) == 0:
			missing++
			problem("%s: no result", id)
			continue
		case len(rs) > 1:
			duplicated++
			problem("%s: %d results", id, len(rs))
		}
		for _, r := range rs {
			if r.Stopped == nil {
				failed++
				problem("%s: failed %s: %s", id, r.Failed.ReasonCode, r.Failed.Message)
			}
		}
	}

	var contacts, notEnded, endedByOther int
	require.NoError(t, ce.st.ListContacts(ctx, inst, func(c store.Contact) error {
		contacts++
		want := "r-" + c.ContactID[len("c-"):]
		switch {
		case c.State != store.StateEnded:
			notEnded++
			problem("%s: %s", c.ContactID, c.State)
		case c.EndedBy != want:
			endedByOther++
			problem("%s: ended by %q", c.ContactID, c.EndedBy)
		case len(results[want]) > 0 && results[want][0].Stopped != nil && !results[want][0].Stopped.StoppedAt.Equal(c.EndedAt):
			problem("%s: ended at %s, but its result says %s", c.ContactID, c.EndedAt, results[want][0].Stopped.StoppedAt)
		}
		return nil
	}))

	// The bucket keeps one revision per key, but its stream's sequence
	// counts every write: the front marker, n seeds, then exactly one end
	// per contact.
	s, err := ce.js.Stream(ctx, "KV_contactstop-contacts")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	deadLetters := len(ce.read(events.StreamDeadLetter))
	rs, err := ce.js.Stream(ctx, events.StreamRequests)
	require.NoError(t, err)
	rinfo, err := rs.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, ce.n, rinfo.State.Msgs, "every request is stored once")
	cons, err := ce.js.Consumer(ctx, events.StreamRequests, events.ConsumerRequests)
	require.NoError(t, err)
	cinfo, err := cons.Info(ctx)
	require.NoError(t, err)
	t.Logf("%d deliveries of %d requests", cinfo.Delivered.Consumer, ce.n)

	t.Logf("verified: results missing %d, duplicated %d, failed %d, unknown %d; contacts %d, not ended %d, ended by another request %d; contact writes %d (want %d); dead letters %d",
		missing, duplicated, failed, unknown, contacts, notEnded, endedByOther, info.State.LastSeq, 2*ce.n+1, deadLetters)
	require.Empty(t, problems, "invariants broken")
	require.Equal(t, ce.n, contacts, "contacts listed")
	require.EqualValues(t, 2*ce.n+1, info.State.LastSeq, "writes to the contacts bucket: the front marker, one seed and one end per contact")
	require.Zero(t, deadLetters, "nothing dead-lettered")
}

// TestClusterStreamLeaderLoss kills the server leading the requests stream
// in the middle of the drain. The worker's consumer is led by the same
// server, so both leaders are lost at once, and the worker is connected to
// another server, so it has to notice the loss without a reconnect (the
// rolling restart below kills the worker's own server too). The worker
// carries on under the new leaders; the server comes back and catches up.
func TestClusterStreamLeaderLoss(t *testing.T) {
	t.Parallel()
	ce := setupCluster(t)
	ce.backlog()
	leader := ce.c.StreamLeader(events.StreamRequests)
	ce.c.MoveLeader(events.StreamRequests, events.ConsumerRequests, leader)
	other := (leader + 1) % ce.c.Size()
	t.Logf("requests stream and consumer led by n%d; the worker connects to n%d", leader, other)

	began := time.Now()
	since := func() time.Duration { return time.Since(began).Round(time.Millisecond) }
	// The worker ends the first twentieth of the contacts, then waits for
	// the kill: it is in the middle of the drain however fast this machine
	// drains.
	gate := &gatedEnds{after: int64(ce.n / 20), open: make(chan struct{})}
	ce.startWorker(ce.connect("worker", other), func(kv *store.KV) worker.Store { gate.KV = kv; return gate })
	p := ce.waitResults(ce.n / 20)
	require.Less(t, p.results, uint64(ce.n), "the drain ended before the kill")
	t.Logf("killing n%d at %d results, %s into the drain", leader, p.results, since())
	killed := time.Now()
	ce.c.Kill(leader)
	close(gate.open)
	t.Logf("new leaders: stream n%d, consumer n%d, %s after the kill", ce.c.StreamLeader(events.StreamRequests),
		ce.c.ConsumerLeader(events.StreamRequests, events.ConsumerRequests), time.Since(killed).Round(time.Millisecond))
	// The worker carries on with the leaders' server down. How long it
	// pauses first is measured (waitDrained logs the longest pause), not
	// asserted; waitFor fails the test if it never resumes.
	p = ce.waitResults(int(p.results) + ce.n/10)
	t.Logf("%d results with n%d down, %s into the drain; restarting it", p.results, leader, since())
	ce.c.Restart(leader)
	t.Logf("n%d back, %s into the drain", leader, since())

	ce.waitDrained()
	t.Logf("drained %d requests in %s", ce.n, since())
	ce.verify()
}

// gatedEnds ends contacts until after have been ended, then holds every
// further batch until open is closed.
type gatedEnds struct {
	*store.KV
	after int64
	ended atomic.Int64
	open  chan struct{}
}

func (g *gatedEnds) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	if g.ended.Add(int64(len(ps))) > g.after+int64(len(ps)) {
		select {
		case <-g.open:
		case <-ctx.Done():
		}
	}
	return g.KV.EndContacts(ctx, ps)
}

// TestClusterRollingRestart kills and restarts each of the three servers
// in turn, waiting for each to be current again before the next, as an
// upgrade would, while the worker drains and publishers publish. So that
// the worker is busy whenever a server goes down or comes back, however
// fast this machine drains, the requests are published in seven chunks:
// one before the worker starts, and for each server one just before it is
// killed and one while it is down, just before it is restarted.
func TestClusterRollingRestart(t *testing.T) {
	t.Parallel()
	ce := setupCluster(t)
	ce.seedContacts()
	chunk := func(k int) (int, int) { return k * ce.n / 7, (k + 1) * ce.n / 7 }
	ce.publish(chunk(0))

	began := time.Now()
	since := func() time.Duration { return time.Since(began).Round(time.Millisecond) }
	ce.startWorker(ce.connect("worker"), nil)
	_, first := chunk(0)
	ce.waitResults(first / 2)
	for i := range ce.c.Size() {
		_, published := chunk(2*i + 1)
		ce.publish(chunk(2*i + 1))
		p, _, _, _ := ce.m.state()
		t.Logf("killing n%d at %d of %d published answered, %s into the drain", i, p.results, published, since())
		ce.c.Kill(i)
		// The worker carries on with a server down...
		want := min(int(p.results)+ce.n/20, published)
		p = ce.waitFor(fmt.Sprintf("%d results with n%d down", want, i), func(p progress) bool { return p.results >= uint64(want) })
		// ... and publishers too.
		_, published = chunk(2*i + 2)
		ce.publish(chunk(2*i + 2))
		t.Logf("%d results with n%d down, %d published; restarting it, %s into the drain", p.results, i, published, since())
		ce.c.Restart(i)
		p, _, _, _ = ce.m.state()
		t.Logf("n%d back at %d of %d answered, %s into the drain", i, p.results, published, since())
	}

	ce.waitDrained()
	t.Logf("drained %d requests in %s", ce.n, since())
	ce.verify()
}

// countingStore counts the contacts a worker ends.
type countingStore struct {
	*store.KV
	ends atomic.Int64
}

func (c *countingStore) EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome {
	c.ends.Add(int64(len(ps)))
	return c.KV.EndContacts(ctx, ps)
}

// TestClusterTwoReplicas runs two workers, each on its own connection as
// two serve replicas would be, on the same consumer: both take a share of
// the drain, with the same invariants.
func TestClusterTwoReplicas(t *testing.T) {
	t.Parallel()
	ce := setupCluster(t)
	ce.backlog()

	began := time.Now()
	stores := make([]*countingStore, 2)
	for i := range stores {
		ce.startWorker(ce.connect(fmt.Sprintf("worker %d", i)), func(kv *store.KV) worker.Store {
			stores[i] = &countingStore{KV: kv}
			return stores[i]
		})
	}
	ce.waitDrained()
	t.Logf("drained %d requests in %s; contacts ended by replica: %d and %d", ce.n,
		time.Since(began).Round(time.Millisecond), stores[0].ends.Load(), stores[1].ends.Load())
	for i, s := range stores {
		require.Positive(t, s.ends.Load(), "replica %d did no work", i)
	}
	ce.verify()
}
