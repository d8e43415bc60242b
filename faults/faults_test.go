package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// TestFaults runs every scenario, one after the other (they share the two
// cores). Run one with -run 'TestFaults/<name>'.
func TestFaults(t *testing.T) {
	enabled(t)
	t.Logf("seed %d", suite.seed)
	for _, sc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"worker_kill", testWorkerKill},
		{"worker_pause", testWorkerPause},
		{"server_kill", testServerKill},
		{"cluster_leader_kill", testClusterLeaderKill},
		{"cluster_rolling_restart", testClusterRollingRestart},
		{"cluster_partition", testClusterPartition},
		{"publisher_resend", testPublisherResend},
		{"bulk_worker_kill", testBulkWorkerKill},
		{"bulk_runner_pause", testBulkRunnerPause},
		{"bulk_takeover_after_window", testBulkTakeoverAfterWindow},
		{"mixed_workload", testMixedWorkload},
		{"platform_clear", testPlatformClear(store.PlatformAmazonConnect)},
		{"platform_clear_cxone", testPlatformClear(store.PlatformCXone)},
		{"platform_clear_twilio", testPlatformClear(store.PlatformTwilio)},
		{"platform_clear_genesys", testPlatformClear(store.PlatformGenesys)},
	} {
		t.Run(sc.name, sc.run)
	}
}

// size picks the short or the long size.
func (s *scenario) size(short, long int) int {
	if s.long {
		return long
	}
	return short
}

func (s *scenario) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(s.t.Context(), d)
	s.t.Cleanup(cancel)
	return ctx
}

// requireAllStopped fails the test if any request got a failure: in these
// scenarios every request targets its own active contact.
func requireAllStopped(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Failed != 0 {
		t.Errorf("%d requests failed (%v), want every one stopped", rep.Failed, rep.FailedByReason)
	}
}

// worker_kill: kill -9 of worker processes at random moments of a backlog
// drain, each restarted.
func testWorkerKill(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	n, kills := s.size(20_000, 200_000), s.size(5, 24)
	s.backlog(n)
	s.startWorkers(2, nil)
	k, err := s.killWorkers(s.ctx(10*time.Minute), s.thresholds(kills, uint64(n), 0.05, 0.9), 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rep := s.finish(uint64(n), fmt.Sprintf("%d× kill -9 of one of 2 worker processes, restarted after 0–1.5 s", k), k)
	requireAllStopped(t, rep)
}

// worker_pause: a worker stopped with SIGSTOP for longer than AckWait, then
// continued: its late writes must change nothing. A publisher keeps
// requests coming, so that every pause catches requests in the worker's
// hands; the pauses alternate between the two workers.
func testWorkerPause(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	n, pauses := s.size(10_000, 100_000), s.size(2, 6)
	s.backlog(n)
	stopLive := s.live(300, 300*s.size(60, 200))
	s.startWorkers(2, nil)
	ctx := s.ctx(10 * time.Minute)
	if err := s.waitResults(ctx, uint64(n)/10); err != nil {
		t.Fatal(err)
	}
	for i := range pauses {
		d := 2 * ackWait
		if s.long {
			d = ackWait + time.Second + time.Duration(s.rng.Int64N(int64(3*ackWait)))
		}
		w := s.workers[i%len(s.workers)]
		b, _ := ReadBacklog(ctx, s.js)
		f := s.inject("SIGSTOP %s for %s (AckWait %s; %d requests unacknowledged in the two workers)", w.name, d.Round(time.Millisecond), ackWait, b.AckPending)
		if _, err := w.pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		if _, err := w.resume(); err != nil {
			t.Fatal(err)
		}
		s.heal(f, "SIGCONT %s", w.name)
		time.Sleep(time.Duration(500+s.rng.IntN(1500)) * time.Millisecond)
	}
	live := stopLive()
	rep := s.finish(uint64(n+live), fmt.Sprintf("%d× SIGSTOP of a worker (alternating) for %s, then SIGCONT; publisher running",
		pauses, map[bool]string{false: (2 * ackWait).String(), true: "4–13s"}[s.long]), pauses)
	requireAllStopped(t, rep)
}

// server_kill: kill -9 of a single nats-server mid-drain, restarted on the
// same store, with a publisher publishing throughout.
func testServerKill(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	n, kills := s.size(10_000, 100_000), s.size(2, 5)
	s.backlog(n)
	stopLive := s.live(200, 200*s.size(60, 300))
	s.startWorkers(2, nil)
	ctx := s.ctx(10 * time.Minute)
	node := s.nats.nodes[0]
	for _, at := range s.thresholds(kills, uint64(n), 0.1, 0.8) {
		if err := s.waitResults(ctx, at); err != nil {
			t.Fatal(err)
		}
		down := time.Second + time.Duration(s.rng.Int64N(int64(2*time.Second)))
		f := s.inject("kill -9 nats-server (single node), restart after %s", down.Round(time.Millisecond))
		if _, err := node.p.kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(down)
		node.p.mustStart()
		s.heal(f, "nats-server restarted on the same store")
		s.nats.waitHealthy(2 * time.Minute)
	}
	if err := s.waitResults(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
	live := stopLive()
	rep := s.finish(uint64(n+live), fmt.Sprintf("%d× kill -9 of the nats-server, restarted after 1–3 s on the same store; publisher running", kills), kills)
	requireAllStopped(t, rep)
}

// streamLeader returns the name of the server leading stream.
func (s *scenario) streamLeader(ctx context.Context, stream string) string {
	s.t.Helper()
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := s.js.Stream(rctx, stream)
		cancel()
		if err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader != "" {
			return st.CachedInfo().Cluster.Leader
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("no leader of %s: %v", stream, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clusterOutcome accepts INTERNAL_ERROR results in cluster scenarios
// (a request whose every delivery met an election may end so), and logs them.
func clusterOutcome(t *testing.T, rep *Report) {
	t.Helper()
	for code, n := range rep.FailedByReason {
		if code != string(events.ReasonInternalError) {
			t.Errorf("%d requests failed with %s, want every one stopped (or INTERNAL_ERROR)", n, code)
		} else {
			t.Logf("note: %d requests ended INTERNAL_ERROR (retries exhausted during the fault)", n)
		}
	}
}

// cluster_leader_kill: kill -9 of the requests stream's leader in a
// three-node cluster (R3), restarted after a few seconds.
func testClusterLeaderKill(t *testing.T) {
	s := newScenario(t, scenarioOptions{cluster: clusterOptions{nodes: 3}})
	n, kills := s.size(6_000, 50_000), s.size(1, 4)
	s.backlog(n)
	stopLive := s.live(100, 100*s.size(120, 400))
	s.startWorkers(2, nil)
	ctx := s.ctx(15 * time.Minute)
	for _, at := range s.thresholds(kills, uint64(n), 0.1, 0.7) {
		if err := s.waitResults(ctx, at); err != nil {
			t.Fatal(err)
		}
		leader := s.streamLeader(ctx, events.StreamRequests)
		node := s.nats.node(leader)
		down := time.Second + time.Duration(s.rng.Int64N(int64(3*time.Second)))
		f := s.inject("kill -9 %s, leader of %s; restart after %s", leader, events.StreamRequests, down.Round(time.Millisecond))
		if _, err := node.p.kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(down)
		node.p.mustStart()
		s.heal(f, "%s restarted", leader)
		s.nats.waitHealthy(3 * time.Minute)
		s.waitReplicasCurrent(3 * time.Minute)
		s.logf("cluster healthy again; %s now led by %s", events.StreamRequests, s.streamLeader(ctx, events.StreamRequests))
	}
	if err := s.waitResults(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
	live := stopLive()
	rep := s.finish(uint64(n+live), fmt.Sprintf("%d× kill -9 of the requests stream leader (R3), restarted after 1–4 s; publisher running", kills), kills)
	clusterOutcome(t, rep)
}

// cluster_rolling_restart: every server of the cluster restarted in turn
// (SIGTERM, start, wait until healthy), mid-drain.
func testClusterRollingRestart(t *testing.T) {
	s := newScenario(t, scenarioOptions{cluster: clusterOptions{nodes: 3}})
	n, rounds := s.size(10_000, 50_000), s.size(1, 2)
	s.backlog(n)
	stopLive := s.live(200, 200*s.size(120, 400))
	s.startWorkers(2, nil)
	ctx := s.ctx(20 * time.Minute)
	restarts := 0
	for _, at := range s.thresholds(rounds, uint64(n), 0.05, 0.5) {
		if err := s.waitResults(ctx, at); err != nil {
			t.Fatal(err)
		}
		for _, i := range s.rng.Perm(len(s.nats.nodes)) {
			node := s.nats.nodes[i]
			f := s.inject("rolling restart: SIGTERM %s", node.name)
			if err := node.p.terminate(60 * time.Second); err != nil {
				t.Error(err)
			}
			node.p.mustStart()
			s.nats.waitHealthy(3 * time.Minute)
			s.waitReplicasCurrent(3 * time.Minute)
			s.heal(f, "%s restarted, the cluster healthy and every replica current", node.name)
			restarts++
		}
	}
	if err := s.waitResults(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
	live := stopLive()
	rep := s.finish(uint64(n+live), fmt.Sprintf("%d rolling restart(s) of all 3 servers (SIGTERM, restart, wait healthy); publisher running", rounds), restarts)
	clusterOutcome(t, rep)
}

// cluster_partition: one server cut off from the other two by toxiproxy on
// its routes, first silently (data dropped), then by closing and refusing
// its route connections; a worker connected only to it.
func testClusterPartition(t *testing.T) {
	s := newScenario(t, scenarioOptions{cluster: clusterOptions{nodes: 3, proxied: true}})
	n := s.size(6_000, 50_000)
	hole, cut := time.Duration(s.size(10, 20))*time.Second, time.Duration(s.size(8, 20))*time.Second
	s.backlog(n)
	ctx := s.ctx(15 * time.Minute)
	leader := s.streamLeader(ctx, events.StreamRequests)
	k := 0
	for i, node := range s.nats.nodes {
		if node.name == leader {
			k = i
		}
	}
	// worker-0 talks only to the server that will be cut off; worker-1
	// to the other two.
	others := ""
	for i, node := range s.nats.nodes {
		if i != k {
			others += node.url() + ","
		}
	}
	stopLive := s.live(100, 100*s.size(120, 400))
	s.startWorkers(2, func(i int) string {
		if i == 0 {
			return s.nats.nodes[k].url()
		}
		return others[:len(others)-1]
	})
	if err := s.waitResults(ctx, uint64(n)/5); err != nil {
		t.Fatal(err)
	}
	name := s.nats.nodes[k].name
	f := s.inject("partition %s (leader of %s; worker-0's only server): its routes black-holed for %s", name, events.StreamRequests, hole)
	if err := s.nats.mesh.blackhole(k); err != nil {
		t.Fatal(err)
	}
	time.Sleep(hole)
	if err := s.nats.mesh.unblackhole(k); err != nil {
		t.Fatal(err)
	}
	s.heal(f, "%s's routes restored", name)
	s.nats.waitHealthy(3 * time.Minute)
	s.waitReplicasCurrent(3 * time.Minute)
	s.logf("cluster healthy again; %s led by %s", events.StreamRequests, s.streamLeader(ctx, events.StreamRequests))

	m := (k + 1 + s.rng.IntN(2)) % 3
	name = s.nats.nodes[m].name
	f = s.inject("partition %s: its route connections closed and refused for %s", name, cut)
	s.nats.mesh.disconnect(m)
	time.Sleep(cut)
	if err := s.nats.mesh.reconnect(m); err != nil {
		t.Fatal(err)
	}
	s.heal(f, "%s's routes accepted again", name)
	s.nats.waitHealthy(3 * time.Minute)
	s.waitReplicasCurrent(3 * time.Minute)
	if err := s.waitResults(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
	live := stopLive()
	rep := s.finish(uint64(n+live), fmt.Sprintf("partition of the stream leader (routes black-holed %s), then of another server (routes refused %s); publisher running", hole, cut), 2)
	clusterOutcome(t, rep)
}

// publisher_resend: 20% of requests published again: with the same
// Nats-Msg-Id, without it, and after the results' duplicate window (6s
// here: the shortest serve accepts with an AckWait of 3s). The requests
// stream keeps no duplicate window (a tenant's id must not drop another's
// request, docs/security.md), so every resend is stored and answered from
// the durable outcome, with no second result.
func testPublisherResend(t *testing.T) {
	const window = 2 * ackWait
	s := newScenario(t, scenarioOptions{duplicateWindow: window})
	n := s.size(5_000, 50_000)
	s.seed("c", "q", n)
	s.startWorkers(2, nil)
	ctx := s.ctx(10 * time.Minute)
	const (
		sameID = iota
		noID
		afterWindow
	)
	var nSame, nNoID int
	var late []int
	const chunk = 500
	for from := 0; from < n; from += chunk {
		var msgs []*nats.Msg
		for i := from; i < min(n, from+chunk); i++ {
			msgs = append(msgs, request("r", "c", i, true))
			if s.rng.Float64() >= 0.2 {
				continue
			}
			switch s.rng.IntN(3) {
			case sameID:
				msgs = append(msgs, request("r", "c", i, true))
				nSame++
			case noID:
				msgs = append(msgs, request("r", "c", i, false))
				nNoID++
			case afterWindow:
				late = append(late, i)
			}
		}
		dups, err := s.publishAll(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		if dups != 0 {
			t.Errorf("%d requests acknowledged as duplicates: the requests stream must keep no duplicate window", dups)
		}
		time.Sleep(250 * time.Millisecond)
	}
	f := s.inject("resent %d requests at once with the same Nats-Msg-Id and %d without one", nSame, nNoID)
	s.heal(f, "resends published")
	if err := s.waitResults(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
	// Quiet for longer than the window: every first result is older.
	if _, err := WaitQuiescent(ctx, s.js, window+time.Second); err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for j, i := range late {
		msgs = append(msgs, request("r", "c", i, j%2 == 0))
	}
	f = s.inject("resent %d requests after the %s duplicate window (half with the same Nats-Msg-Id)", len(late), window)
	dups, err := s.publishAll(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	s.heal(f, "late resends published")
	if dups != 0 {
		t.Errorf("%d resends after the window were dropped as duplicates, want 0", dups)
	}
	rep := s.finish(uint64(n), fmt.Sprintf("%d of %d requests resent: %d with the same Nats-Msg-Id, %d without, %d after the %s window",
		nSame+nNoID+len(late), n, nSame, nNoID, len(late), window), nSame+nNoID+len(late))
	requireAllStopped(t, rep)
	if want := n + nSame + nNoID + len(late); rep.StoredRequests != want {
		t.Errorf("%d requests stored, want %d (originals and every resend)", rep.StoredRequests, want)
	}
	if rep.Results != n {
		t.Errorf("%d results stored, want %d: a resend, even after the window, stores no second result", rep.Results, n)
	}
}

// bulk_worker_kill: one bulk clear, its worker processes killed while it
// runs.
func testBulkWorkerKill(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	n, kills := s.size(20_000, 200_000), s.size(3, 8)
	s.seed("b", "bulk", n)
	s.seed("keep", "keep", 500) // another queue: must stay untouched
	s.logLevel = "info"         // the runs' start and end
	s.startWorkers(2, nil)
	ctx := s.ctx(15 * time.Minute)
	bulkID := fmt.Sprintf("bulk-%d", suite.seed)
	if _, err := events.NewPublisher(s.js).Bulk(ctx, events.BulkRequest{BulkID: bulkID, InstanceID: inst,
		Filter: events.BulkFilter{QueueIDs: []string{"bulk"}}}); err != nil {
		t.Fatal(err)
	}
	s.expect.Bulks = []BulkExpect{{InstanceID: inst, BulkID: bulkID, Matched: n}}
	s.logf("bulk request %s published for %d contacts", bulkID, n)
	k, err := s.killWorkers(ctx, s.thresholds(kills, uint64(n), 0.05, 0.85), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rep := s.finish(uint64(n+1), fmt.Sprintf("%d× kill -9 of one of 2 worker processes (restarted after 0–1 s) during one bulk clear", k), k)
	requireAllStopped(t, rep)
	if rep.Completions != 1 {
		t.Errorf("%d completion events, want 1", rep.Completions)
	}
}

// busiest returns the running worker that used the most CPU over 300ms
// (during a bulk clear: the one running it).
func (s *scenario) busiest() *proc {
	cpu := func(p *proc) float64 {
		c, err := cpuSeconds(p.pid())
		if err != nil {
			return 0
		}
		return c
	}
	before := make([]float64, len(s.workers))
	for i, w := range s.workers {
		before[i] = cpu(w)
	}
	time.Sleep(300 * time.Millisecond)
	best, most := s.workers[0], -1.0
	for i, w := range s.workers {
		if d := cpu(w) - before[i]; w.running() && d > most {
			best, most = w, d
		}
	}
	return best
}

// bulk_runner_pause: the process running a bulk clear paused with SIGSTOP
// for a little longer than the bulk lease, several times.
//
// It found finding 1 of docs/reliability.md: each takeover used up a
// delivery of the bulk request, and a run at its last allowed delivery that
// lost its lease (or met a transient error) answered the whole bulk
// INTERNAL_ERROR while another runner completed it.
func testBulkRunnerPause(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	n, maxPauses := s.size(40_000, 200_000), s.size(8, 40)
	s.seed("b", "bulk", n)
	s.seed("keep", "keep", 500)
	s.logLevel = "info" // the runs' start and end
	// A slow clear (4 contacts at a time), so that it outlasts many pauses.
	s.extra = []string{"--bulk-workers", "4"}
	// Three processes: the redelivered bulk request may go to the paused
	// one's waiting pull; with two others, a takeover is likely.
	s.startWorkers(3, nil)
	ctx := s.ctx(15 * time.Minute)
	bulkID := fmt.Sprintf("bulkp-%d", suite.seed)
	if _, err := events.NewPublisher(s.js).Bulk(ctx, events.BulkRequest{BulkID: bulkID, InstanceID: inst,
		Filter: events.BulkFilter{QueueIDs: []string{"bulk"}}}); err != nil {
		t.Fatal(err)
	}
	s.expect.Bulks = []BulkExpect{{InstanceID: inst, BulkID: bulkID, Matched: n}}
	if err := s.waitResults(ctx, uint64(n)/20); err != nil {
		t.Fatal(err)
	}
	// Pause whichever process is running the bulk, again and again, until
	// it completes: each takeover uses up deliveries of the bulk request.
	pauses := 0
	for ; pauses < maxPauses && s.results.Load() <= uint64(n); pauses++ {
		w := s.busiest()
		d := ackWait + 500*time.Millisecond + time.Duration(s.rng.Int64N(int64(ackWait)))
		f := s.inject("pause %d: SIGSTOP %s (the busiest) for %s (bulk lease %s)", pauses+1, w.name, d.Round(time.Millisecond), ackWait)
		if _, err := w.pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		if _, err := w.resume(); err != nil {
			t.Fatal(err)
		}
		s.heal(f, "SIGCONT %s", w.name)
		time.Sleep(time.Duration(500+s.rng.IntN(1000)) * time.Millisecond)
	}
	rep := s.finish(uint64(n+1), fmt.Sprintf("%d× SIGSTOP of the bulk runner's process for 1.2–2.2× the lease", pauses), pauses)
	requireAllStopped(t, rep)
}

// bulk_takeover_after_window: a bulk clear whose runner is killed once the
// duplicate window has passed since its first results (a 6 s window here,
// the shortest serve accepts with an AckWait of 3 s; 2 minutes by default,
// which a long clear outlasts). The run that takes
// over must publish again only the results the killed run may not have
// stored (its pending slots), not every earlier one: those older than the
// window would be stored a second time (finding 5 of docs/reliability.md).
func testBulkTakeoverAfterWindow(t *testing.T) {
	const window = 2 * ackWait
	s := newScenario(t, scenarioOptions{duplicateWindow: window})
	n, kills := s.size(20_000, 100_000), s.size(2, 4)
	s.seed("b", "bulk", n)
	s.extra = []string{"--bulk-workers", "1"} // a clear that outlasts the window: one contact at a time
	s.logLevel = "info"
	s.startWorkers(2, nil)
	ctx := s.ctx(10 * time.Minute)
	bulkID := fmt.Sprintf("bulkw-%d", suite.seed)
	if _, err := events.NewPublisher(s.js).Bulk(ctx, events.BulkRequest{BulkID: bulkID, InstanceID: inst,
		Filter: events.BulkFilter{QueueIDs: []string{"bulk"}}}); err != nil {
		t.Fatal(err)
	}
	s.expect.Bulks = []BulkExpect{{InstanceID: inst, BulkID: bulkID, Matched: n}}
	if err := s.waitResults(ctx, 1); err != nil {
		t.Fatal(err)
	}
	k := 0
	for ; k < kills && s.results.Load() < uint64(n)*8/10; k++ {
		time.Sleep(window + time.Second)
		w := s.busiest()
		f := s.inject("kill -9 %s (the busiest), %s after the previous fault or the first result", w.name, window+time.Second)
		if _, err := w.kill(); err != nil {
			t.Fatal(err)
		}
		w.mustStart()
		s.heal(f, "%s restarted", w.name)
	}
	s.finish(uint64(n+1), fmt.Sprintf("%d× kill -9 of the bulk runner, each more than the %s duplicate window after the bulk's first results", k, window), k)
}
