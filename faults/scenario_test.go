package faults

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// Settings of every scenario's workers. AckWait is short so that requests
// held by a dead or paused worker come back within the test; retrying
// within one delivery stops well before it.
const (
	inst            = "acme"
	ackWait         = 3 * time.Second
	retryMaxElapsed = 2 * time.Second
	workersPerProc  = 32
	quietHold       = 3 * time.Second
)

// scenario is one subtest's servers, workers, publisher and record of
// what was injected when.
type scenario struct {
	t      *testing.T
	long   bool
	rng    *rand.Rand
	logDir string
	bin    string // contactstop
	natsB  string // nats-server

	nats     *natsCluster
	nc       *nats.Conn
	js       jetstream.JetStream
	st       *store.KV
	replicas int
	dupWin   time.Duration

	workers  []*proc
	logLevel string   // of the workers; default warn
	extra    []string // more flags for the workers
	env      []string // more environment for the workers (KEY=value)

	begin   time.Time
	mu      sync.Mutex
	faults  []fault
	results atomic.Uint64 // the results stream's size, sampled for progress

	expect Expect
	// workload, when set, describes what the scenario published and
	// wrote (the OUTCOME line shows it).
	workload string
	// afterCheck, when set, runs in finish once the checker has read
	// everything (the worker quiescent) and before the outcome is
	// recorded: the scenario's own checks, and figures for workload.
	afterCheck func(*Report)
}

// fault is one injected fault: when it began and (for those that end) when
// it was healed.
type fault struct {
	what        string
	begin, heal time.Time
}

type scenarioOptions struct {
	cluster         clusterOptions
	duplicateWindow time.Duration // default 2m
}

func newScenario(t *testing.T, o scenarioOptions) *scenario {
	t.Helper()
	long := enabled(t)
	s := &scenario{t: t, long: long, rng: testRand(t), begin: time.Now(), dupWin: o.duplicateWindow}
	if s.dupWin == 0 {
		s.dupWin = 2 * time.Minute
	}
	s.bin, s.natsB = binaries(t)
	s.logDir = filepath.Join(suite.runDir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of this scenario's processes: %s", s.logDir)
		}
	})
	s.nats = startNATS(t, s.natsB, s.logDir, o.cluster)
	s.replicas = 1
	if len(s.nats.nodes) > 1 {
		s.replicas = 3
	}
	var err error
	s.nc, err = nats.Connect(s.nats.urls(), nats.Name("faults "+t.Name()), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.nc.Close)
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(2048))
	if err != nil {
		t.Fatal(err)
	}
	// The same topology serve provisions with the flags workerArgs gives,
	// so that the backlog can be published before any worker runs.
	// A young cluster may still refuse placements for a moment ("peer
	// offline"), or lose an API request while its routes settle: retry,
	// each attempt bounded, for up to two minutes.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 15*time.Second)
		err = worker.Provision(attempt, s.js, worker.TopologyConfig{Replicas: s.replicas, DuplicateWindow: s.dupWin,
			AckWait: ackWait, MaxAckPending: max(1024, 2*workersPerProc)})
		if err == nil {
			s.st, err = store.Open(attempt, s.js, store.Config{Replicas: s.replicas})
		}
		if err == nil {
			_, err = s.st.PutInstance(attempt, store.Instance{InstanceID: inst})
		}
		cancelAttempt()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("provision the streams and buckets: %v", err)
		}
		s.logf("provisioning: %v; again", err)
		time.Sleep(time.Second)
	}
	s.expect.Instances = []string{inst}
	s.expect.DuplicateWindow = s.dupWin
	s.seed("idle", "idle", 200) // never targeted: must stay untouched
	go s.monitor()
	return s
}

func (s *scenario) logf(format string, args ...any) {
	s.t.Logf("[%7.2fs] %s", time.Since(s.begin).Seconds(), fmt.Sprintf(format, args...))
}

// inject records a fault that began now and returns its index for heal.
func (s *scenario) inject(format string, args ...any) int {
	what := fmt.Sprintf(format, args...)
	s.logf("FAULT %s (results so far %d)", what, s.results.Load())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{what: what, begin: time.Now()})
	return len(s.faults) - 1
}

// heal records that fault i ended now.
func (s *scenario) heal(i int, format string, args ...any) {
	s.logf("HEAL  %s (results so far %d)", fmt.Sprintf(format, args...), s.results.Load())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[i].heal = time.Now()
}

// monitor samples the size of the results stream every 100ms until the
// test ends, for the progress in the log and the waits.
func (s *scenario) monitor() {
	ctx := s.t.Context()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := s.js.Stream(rctx, events.StreamResults); err == nil {
			n := st.CachedInfo().State.Msgs
			s.results.Store(n)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitResults waits until at least n results are stored (by the monitor's
// count).
func (s *scenario) waitResults(ctx context.Context, n uint64) error {
	for s.results.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d results (have %d): %w", n, s.results.Load(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// seed writes n QUEUED contacts <prefix>0 … in queue.
func (s *scenario) seed(prefix, queue string, n int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 5*time.Minute)
	defer cancel()
	now := time.Now().UTC()
	got, err := s.st.SeedContacts(ctx, iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
		for i := range n {
			if !yield(store.Contact{ContactID: prefix + strconv.Itoa(i), InstanceID: inst, State: store.StateQueued,
				QueueID: queue, Channel: store.ChannelVoice, EnqueuedAt: now}) {
				return
			}
		}
	}))
	if err != nil || got != n {
		s.t.Fatalf("seed %d contacts %s…: seeded %d, %v", n, prefix, got, err)
	}
}

// request builds the stop request <reqPrefix>-<i> for contact
// <contactPrefix><i>, with Nats-Msg-Id as events.Publisher sets it when
// withMsgID.
func request(reqPrefix, contactPrefix string, i int, withMsgID bool) *nats.Msg {
	id := reqPrefix + "-" + strconv.Itoa(i)
	body, _ := json.Marshal(events.StopRequest{RequestID: id, ContactID: contactPrefix + strconv.Itoa(i), InstanceID: inst})
	m := &nats.Msg{Subject: events.StopRequestedSubject(inst), Data: body, Header: nats.Header{}}
	if withMsgID {
		m.Header.Set(events.HeaderMsgID, events.RequestMsgID(inst, id))
	}
	return m
}

// publishAll publishes the messages asynchronously with a bounded window
// and republishes (the same message, so the same Nats-Msg-Id) any whose
// acknowledgement did not come, until every one is acknowledged. It
// returns how many acknowledgements said "duplicate".
func (s *scenario) publishAll(ctx context.Context, msgs []*nats.Msg) (duplicates int, err error) {
	const chunk = 2000
	for len(msgs) > 0 {
		n := min(chunk, len(msgs))
		part := msgs[:n]
		msgs = msgs[n:]
		futures := make([]jetstream.PubAckFuture, len(part))
		for i, m := range part {
			if futures[i], err = s.js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
				futures[i] = nil
			}
		}
		select {
		case <-s.js.PublishAsyncComplete():
		case <-time.After(60 * time.Second):
		case <-ctx.Done():
			return duplicates, ctx.Err()
		}
		for i, f := range futures {
			var ack *jetstream.PubAck
			if f != nil {
				select {
				case ack = <-f.Ok():
				case <-f.Err():
				default:
				}
			}
			if ack == nil {
				if ack, err = s.publishSync(ctx, part[i]); err != nil {
					return duplicates, err
				}
			}
			if ack.Duplicate {
				duplicates++
			}
		}
	}
	return duplicates, nil
}

// publishSync publishes one message, retrying until JetStream
// acknowledges it or ctx ends.
func (s *scenario) publishSync(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ack, err := s.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return ack, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: %w (last error: %w)", m.Subject, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// backlog seeds contacts c0 … c(n-1) and publishes requests r-0 … r-(n-1)
// for them, all with Nats-Msg-Id.
func (s *scenario) backlog(n int) {
	s.t.Helper()
	s.seed("c", "q", n)
	msgs := make([]*nats.Msg, n)
	for i := range n {
		msgs[i] = request("r", "c", i, true)
	}
	start := time.Now()
	if _, err := s.publishAll(s.t.Context(), msgs); err != nil {
		s.t.Fatal(err)
	}
	s.logf("backlog: %d contacts seeded and %d requests published in %.1fs", n, n, time.Since(start).Seconds())
}

// live publishes requests l-0 … for contacts l0 … (seeded first) at rate
// per second from 4 publishers, each request retried until acknowledged,
// until stop is called, which returns how many were acknowledged. Requests
// not acknowledged when it stops may or may not be stored: the checker
// reads the stream.
func (s *scenario) live(rate, max int) (stop func() int) {
	s.seed("l", "live", max)
	ctx, cancel := context.WithCancel(s.t.Context())
	var acked atomic.Int64
	var wg sync.WaitGroup
	const publishers = 4
	start := time.Now()
	for g := range publishers {
		wg.Go(func() {
			interval := publishers * time.Second / time.Duration(rate)
			for i := g; i < max; i += publishers {
				next := start.Add(time.Duration(i/publishers) * interval)
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				if _, err := s.publishSync(ctx, request("l", "l", i, true)); err != nil {
					return
				}
				acked.Add(1)
			}
		})
	}
	return func() int {
		cancel()
		wg.Wait()
		n := int(acked.Load())
		s.logf("live publisher: %d requests acknowledged", n)
		return n
	}
}

// workerArgs are the arguments of every worker process.
func (s *scenario) workerArgs(url string, extra ...string) []string {
	args := []string{"serve", "--nats-url", url,
		"--workers", strconv.Itoa(workersPerProc), "--bulk-workers", strconv.Itoa(workersPerProc),
		"--ack-wait", ackWait.String(), "--retry-max-elapsed", retryMaxElapsed.String(),
		"--replicas", strconv.Itoa(s.replicas), "--duplicate-window", s.dupWin.String(),
		"--shutdown-timeout", "5s", "--log-level", cmp.Or(s.logLevel, "warn")}
	return append(append(args, s.extra...), extra...)
}

// startWorkers starts n worker processes, each connected to urls(i).
func (s *scenario) startWorkers(n int, urls func(i int) string) {
	s.t.Helper()
	for i := range n {
		url := s.nats.urls()
		if urls != nil {
			url = urls(i)
		}
		p := newProc(s.t, s.logDir, fmt.Sprintf("worker-%d", i), s.bin, s.workerArgs(url)...)
		p.env = s.env
		p.mustStart()
		s.workers = append(s.workers, p)
	}
	s.logf("started %d worker processes", n)
}

// thresholds returns k result counts spread at random over [lo, hi) of
// total, in increasing order.
func (s *scenario) thresholds(k int, total uint64, lo, hi float64) []uint64 {
	out := make([]uint64, k)
	for i := range out {
		out[i] = uint64((lo + (hi-lo)*s.rng.Float64()) * float64(total))
	}
	slices.Sort(out)
	return out
}

// killWorkers kill -9s a random running worker each time the results
// reach one of the thresholds (after a random 0–200ms more), and restarts
// it after a random 0–maxDown. It returns when every kill was made and
// every killed worker restarted, with the number of kills.
func (s *scenario) killWorkers(ctx context.Context, at []uint64, maxDown time.Duration) (int, error) {
	var wg sync.WaitGroup
	defer wg.Wait()
	kills := 0
	for _, n := range at {
		if err := s.waitResults(ctx, n); err != nil {
			return kills, err
		}
		jitter := time.Duration(s.rng.Int64N(int64(200 * time.Millisecond)))
		down := time.Duration(s.rng.Int64N(int64(maxDown) + 1))
		pick := s.rng.IntN(len(s.workers))
		time.Sleep(jitter)
		var p *proc
		for deadline := time.Now().Add(30 * time.Second); p == nil; {
			for i := range s.workers {
				if w := s.workers[(pick+i)%len(s.workers)]; w.running() {
					p = w
					break
				}
			}
			if p == nil {
				if time.Now().After(deadline) {
					return kills, errors.New("no worker running for 30s")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		f := s.inject("kill -9 %s", p.name)
		pid, err := p.kill()
		if err != nil {
			return kills, err
		}
		kills++
		s.logf("      killed %s pid %d; restarting it in %s", p.name, pid, down.Round(time.Millisecond))
		wg.Go(func() {
			time.Sleep(down)
			if err := p.start(); err != nil {
				s.t.Errorf("restart %s: %v", p.name, err)
				return
			}
			s.heal(f, "%s restarted (pid %d)", p.name, p.pid())
		})
	}
	return kills, nil
}

// outcome is one scenario's line in docs/reliability.md.
type outcome struct {
	Scenario   string  `json:"scenario"`
	Mode       string  `json:"mode"`
	Seed       uint64  `json:"seed"`
	Requests   int     `json:"requests"`
	BulkItems  int     `json:"bulkItems,omitempty"`
	Workload   string  `json:"workload,omitempty"`
	Faults     string  `json:"faults"`
	FaultCount int     `json:"faultCount"`
	Report     *Report `json:"report"`
	// MaxStallS is the longest time, between the first result and the
	// last, during which no new result was stored.
	MaxStallS float64 `json:"maxStallSeconds"`
	// ResumeS is, over the faults that end (a restart, a resume, a healed
	// partition), the longest time from the healing to the next stored
	// result.
	ResumeS float64 `json:"resumeSeconds"`
	// DrainS is from the first result to the last.
	DrainS float64 `json:"drainSeconds"`
	// TotalS is the whole subtest, servers' start-up included.
	TotalS float64 `json:"totalSeconds"`
}

// finish waits until the worker is quiescent, runs the checker, fails the
// test on any violation or unexpected process exit, and records the
// outcome. wantResults is how many result messages to wait for first.
func (s *scenario) finish(wantResults uint64, faultsDesc string, nFaults int) *Report {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 5*time.Minute)
	defer cancel()
	// Idle consumers mean every request was acknowledged, which the worker
	// does only once its result is stored: no need to wait for a count.
	backlog, err := WaitQuiescent(ctx, s.js, quietHold)
	if err != nil {
		s.t.Fatalf("waiting for quiescence: %v", err)
	}
	s.logf("quiescent: %+v", backlog)
	if backlog.Results < wantResults {
		s.t.Errorf("quiescent with %d results stored, want at least %d", backlog.Results, wantResults)
	}
	for _, b := range s.expect.Bulks {
		if rec, err := s.st.GetBulk(ctx, b.InstanceID, b.BulkID); err == nil {
			s.logf("bulk record %s: status %s, run %d, matched %d, done %d, stopped %d, failed %d %v, walking %v, owner %q, lease until %s",
				b.BulkID, rec.Status, rec.Run, rec.Matched, rec.Done, rec.Stopped, rec.Failed, rec.ReasonCodes, rec.Walking, rec.Owner,
				rec.LeaseUntil.Format(time.RFC3339Nano))
		}
	}
	// Reading may meet a transient error just after a fault (no responders
	// while a server's JetStream starts): read everything again.
	var rep *Report
	for attempt := 1; ; attempt++ {
		if rep, err = Check(ctx, s.js, s.expect); err == nil {
			break
		}
		if attempt == 5 {
			s.t.Fatalf("checker: %v", err)
		}
		s.logf("checker (connected to %s): %v; reading again", s.nc.ConnectedServerName(), err)
		time.Sleep(2 * time.Second)
	}
	s.logf("CHECK %s", rep)
	for _, p := range rep.Problems {
		s.t.Errorf("checker: %s", p)
	}
	for i, n := range rep.Notes {
		if i == 5 {
			s.logf("checker note: … (%d more)", len(rep.Notes)-5)
			break
		}
		s.logf("checker note: %s", n)
	}
	if rep.Violations() != 0 {
		s.t.Errorf("%d violations of the guarantees (seed %d)", rep.Violations(), suite.seed)
	}
	if s.afterCheck != nil {
		s.afterCheck(rep)
	}
	for _, w := range s.allProcs() {
		for _, u := range w.unexpectedExits() {
			s.t.Errorf("unexpected exit: %s", u)
		}
	}
	o := s.outcome(rep, faultsDesc, nFaults)
	s.logf("OUTCOME %s: requests %d, bulk contacts %d, faults %d (%s): lost %d, duplicated %d, double-terminated %d, "+
		"wrongly ended %d, other violations %d; drain %.1fs, max stall %.1fs, resume after heal %.1fs, total %.1fs",
		o.Scenario, o.Requests, o.BulkItems, o.FaultCount, o.Faults, rep.Lost, rep.Duplicated, rep.DoubleTerminated+rep.Phantom,
		rep.WronglyEnded, rep.Violations()-rep.Lost-rep.Duplicated-rep.DoubleTerminated-rep.Phantom-rep.WronglyEnded,
		o.DrainS, o.MaxStallS, o.ResumeS, o.TotalS)
	if s.workload != "" {
		s.logf("OUTCOME %s workload: %s", o.Scenario, s.workload)
	}
	if path := os.Getenv("CONTACTSTOP_FAULTS_REPORT"); path != "" {
		line, _ := json.Marshal(o)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			_, _ = f.Write(append(line, '\n'))
			_ = f.Close()
		}
	}
	return rep
}

func (s *scenario) allProcs() []*proc {
	out := slices.Clone(s.workers)
	for _, n := range s.nats.nodes {
		out = append(out, n.p)
	}
	return out
}

func (s *scenario) outcome(rep *Report, faultsDesc string, nFaults int) outcome {
	s.mu.Lock()
	faults := slices.Clone(s.faults)
	s.mu.Unlock()
	o := outcome{Scenario: s.t.Name(), Mode: suite.mode, Seed: suite.seed, Requests: rep.Requests, BulkItems: rep.BulkItems,
		Workload: s.workload, Faults: faultsDesc, FaultCount: nFaults, Report: rep, TotalS: time.Since(s.begin).Seconds()}
	o.DrainS, o.MaxStallS, o.ResumeS = recovery(rep.ResultTimes, faults)
	return o
}

// recovery computes, from the times the results stream stored its
// messages (in stream order), the drain (first to last), the longest stall
// (the largest gap between two consecutive messages) and, over the faults
// that heal before the last message, the longest time from a healing to
// the next message. JetStream's own timestamps, not samples: a stall while
// the stream could not be read is counted whole.
func recovery(times []time.Time, faults []fault) (drain, stall, resume float64) {
	if len(times) == 0 {
		return 0, 0, 0
	}
	drain = times[len(times)-1].Sub(times[0]).Seconds()
	for i := 1; i < len(times); i++ {
		stall = max(stall, times[i].Sub(times[i-1]).Seconds())
	}
	for _, f := range faults {
		if f.heal.IsZero() {
			continue
		}
		i, _ := slices.BinarySearchFunc(times, f.heal, func(t, heal time.Time) int { return t.Compare(heal) })
		if i < len(times) {
			resume = max(resume, times[i].Sub(f.heal).Seconds())
		}
	}
	return drain, stall, resume
}

// waitReplicasCurrent waits until every stream and consumer of contactstop
// has a leader and every replica is online and current: what an operator
// checks before restarting the next server of a cluster.
func (s *scenario) waitReplicasCurrent(timeout time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), timeout)
	defer cancel()
	streams := []string{events.StreamRequests, events.StreamResults, events.StreamDeadLetter, events.StreamBulk,
		"KV_contactstop-contacts", "KV_contactstop-instances", "KV_contactstop-bulks"}
	consumers := [][2]string{{events.StreamRequests, events.ConsumerRequests}, {events.StreamBulk, events.ConsumerBulk}}
	check := func() error {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		current := func(what string, ci *jetstream.ClusterInfo) error {
			if ci == nil || ci.Leader == "" {
				return fmt.Errorf("%s has no leader", what)
			}
			for _, r := range ci.Replicas {
				if !r.Current || r.Offline {
					return fmt.Errorf("%s: replica %s not current (offline %v, lag %d)", what, r.Name, r.Offline, r.Lag)
				}
			}
			return nil
		}
		for _, name := range streams {
			st, err := s.js.Stream(rctx, name)
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			if err := current("stream "+name, st.CachedInfo().Cluster); err != nil {
				return err
			}
		}
		for _, c := range consumers {
			cons, err := s.js.Consumer(rctx, c[0], c[1])
			if err != nil {
				return fmt.Errorf("consumer %s: %w", c[1], err)
			}
			if err := current("consumer "+c[1], cons.CachedInfo().Cluster); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("replicas not current within %s: %v", timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
