package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// platform_clear: the platform path (worker/platform.go, docs/design.md
// "Platforms") under faults. Two instances, acme and beta, are bound to
// two Connect instances of one fake Amazon Connect API (connecttest, in
// this process, reached by the workers through the AWS SDK) under one
// quota key, so that their clears share one budget; the fake enforces a
// StopContact and a DescribeContact quota equal to the binding's budget,
// and throttles anything beyond it, as AWS does. Each instance's queue is
// cleared by a bulk request while single requests come in for contacts of
// the clear (two for each), for contacts only the platform knows, for
// contacts nobody knows and for contacts that hung up before the run (the
// inventory behind), some resent; customers hang up mid-run. Faults:
// kill -9 of a worker process, and the platform's own: throttling, 500s
// and dropped connections on StopContact and DescribeContact, stops that
// take effect but whose answer is lost or never comes, latency spikes, and
// the account's quota squeezed by another application for a moment.
// Then, besides the generic checker (which knows the bound instances'
// intents and platform ends), the fake's call log is checked against the
// results (checkPlatform).

const (
	betaInst = "beta"
	connectA = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	connectB = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	// platRate and platBurst are the binding's budget and the fake's
	// quota of StopContact (and of DescribeContact, the registry giving
	// it a budget of the binding's size).
	platRate     = 100
	platBurst    = 20
	platQuotaKey = "faults-connect"
	clearQueue   = "clear"
	// platJitter is how much longer than 1 s a window of calls as the
	// fake logs them may span what the budget granted in 1 s: between a
	// grant and the call's arrival at the fake are a KV acknowledgement,
	// a goroutine's wake-up, an HTTP round on loopback and the fake's
	// body read, in processes sharing two cores. The check allows
	// burst + rate·(1 s + platJitter) calls in any 1 s of the fake's log.
	platJitter = 100 * time.Millisecond
)

// singleKind is what a single request of the scenario targets.
type singleKind int

const (
	kindClear      singleKind = iota // a contact of a clear, active on the platform
	kindUnseen                       // a contact only the platform knows, active
	kindUnknown                      // a contact nobody knows
	kindHungBefore                   // a contact of a clear that hung up before the run
)

func (k singleKind) String() string {
	return [...]string{"clear", "unseen", "unknown", "hung-up"}[k]
}

// platSizes are the workload's sizes in one mode.
type platSizes struct {
	perInstance int // QUEUED contacts of each instance's clear, in the store and on the platform
	hungBefore  int // of them, per instance, hung up on the platform before the run
	dup         int // contacts of the clears that get two single requests
	unseen      int // contacts only on the platform, one request each (a quarter two)
	unknown     int // contacts nowhere, one request each
	hungSingles int // single requests for contacts hung up before the run
	hangMid     int // customers hanging up during the run
	kills       int // kill -9 of a worker process
	rounds      int // rounds of platform faults, each with one fault of every kind
}

// platRun is the state of one platform_clear run.
type platRun struct {
	s    *scenario
	sz   platSizes
	fake platFake

	instOf     map[string]string // contact id → contactstop instance, for every contact of the run
	clear      []ContactRef      // the clears' contacts
	hungBefore map[string]bool
	unseen     []ContactRef
	unknown    []ContactRef
	singles    map[RequestKey]singleKind
	resent     map[RequestKey]bool
	bulkIDs    map[string]string // instance → its clear's bulkId
	queue      string            // the clears' queue, as the platform names it
	baseline   uint64            // the contacts bucket's last sequence before the run

	watch *intentLog

	start time.Time
	est   time.Duration // the expected length of the clears

	mu       sync.Mutex
	hungMid  map[string]time.Time // contacts the test hung up during the run
	restarts sync.WaitGroup

	comp platComposition
}

// platComposition counts what the workload did.
type platComposition struct {
	messages, resendsID, resendsNoID int
	hangMid, hangMidLate             int // hang-ups made; found the contact already ended
	kills                            int
	fakeFaults                       map[string]int // by kind
	scriptedThrottles                int
}

// requestMsg is a single stop request; its disconnectReason names it, so
// that the fake's log tells which request each StopContact came from.
func requestMsg(k RequestKey, withMsgID bool) *nats.Msg {
	body, _ := json.Marshal(events.StopRequest{RequestID: k.ID, ContactID: k.ContactID, InstanceID: k.Instance,
		DisconnectReason: "single " + k.ID})
	m := &nats.Msg{Subject: events.StopRequestedSubject(k.Instance), Data: body, Header: nats.Header{}}
	if withMsgID {
		m.Header.Set(events.HeaderMsgID, events.RequestMsgID(k.Instance, k.ID))
	}
	return m
}

// identityOf is the request identity a StopContact call came from, by its
// disconnect reason ("single <requestId>" or "bulk <bulkId>").
func identityOf(reason, contactID string) string {
	if id, ok := strings.CutPrefix(reason, "single "); ok {
		return id
	}
	if b, ok := strings.CutPrefix(reason, "bulk "); ok {
		return events.BulkItemRequestID(b, contactID)
	}
	return "unknown reason " + strconv.Quote(reason)
}

// testPlatformClear runs platform_clear against the fake of platform
// (platformFakes). Amazon Connect's run is the full size; the others',
// in short mode, a third of it.
func testPlatformClear(platform string) func(*testing.T) {
	return func(t *testing.T) { runPlatformClear(t, platform) }
}

func runPlatformClear(t *testing.T, platform string) {
	s := newScenario(t, scenarioOptions{})
	sz := platSizes{perInstance: 500, hungBefore: 15, dup: 40, unseen: 30, unknown: 15, hungSingles: 6, hangMid: 6, kills: 2, rounds: 1}
	if platform != store.PlatformAmazonConnect {
		sz = platSizes{perInstance: 170, hungBefore: 6, dup: 15, unseen: 12, unknown: 6, hungSingles: 3, hangMid: 3, kills: 1, rounds: 1}
	}
	if s.long {
		sz = platSizes{perInstance: 3000, hungBefore: 60, dup: 250, unseen: 150, unknown: 60, hungSingles: 20, hangMid: 25, kills: 5, rounds: 3}
	}
	ctx := s.ctx(10 * time.Minute)
	r := &platRun{s: s, sz: sz, fake: platformFakes[platform](t, platRate, platBurst),
		instOf: map[string]string{}, hungBefore: map[string]bool{}, singles: map[RequestKey]singleKind{}, resent: map[RequestKey]bool{},
		bulkIDs: map[string]string{}, hungMid: map[string]time.Time{}}
	r.comp.fakeFaults = map[string]int{}
	r.setUp(ctx)

	s.logLevel = "info" // bulk runs; the platform's refusals
	s.startWorkers(2, nil)

	genRng, hangRng, faultRng := rngFrom(s.rng), rngFrom(s.rng), rngFrom(s.rng)
	nSingles := sz.dup*2 + sz.unseen*5/4 + sz.unknown + sz.hungSingles
	r.est = time.Duration(float64(2*sz.perInstance+nSingles)/platRate*float64(time.Second)) + time.Second
	requests := r.requestEvents(genRng)
	hangups := r.hangupEvents(hangRng)
	faults := r.faultEvents(faultRng)
	r.start = time.Now()
	for _, instance := range []string{inst, betaInst} {
		id := r.bulkIDs[instance]
		if _, err := events.NewPublisher(s.js).Bulk(ctx, events.BulkRequest{BulkID: id, InstanceID: instance,
			Filter: events.BulkFilter{QueueIDs: []string{r.queue}}, DisconnectReason: "bulk " + id}); err != nil {
			t.Fatal(err)
		}
	}
	s.logf("platform clear: 2 bulk requests published; %d request events, %d hang-ups, %d faults over about %s",
		len(requests), len(hangups), len(faults), r.est.Round(100*time.Millisecond))
	var wg sync.WaitGroup
	wg.Go(func() { runEventsFrom(ctx, r.start, requests, 0) })
	wg.Go(func() { runEventsFrom(ctx, r.start, hangups, 0) })
	wg.Go(func() { runEventsFrom(ctx, r.start, faults, 500*time.Millisecond) })
	wg.Wait()
	r.restarts.Wait()
	r.fake.SetLatency(opStop, 0)
	if ctx.Err() != nil {
		t.Fatalf("the workload ran out of time: %v", ctx.Err())
	}

	s.expect.Instances = []string{inst, betaInst}
	s.expect.Bound = []string{inst, betaInst}
	s.expect.Bulks = []BulkExpect{{InstanceID: inst, BulkID: r.bulkIDs[inst]}, {InstanceID: betaInst, BulkID: r.bulkIDs[betaInst]}}
	s.expect.Allowed = map[RequestKey][]string{}
	for k, kind := range r.singles {
		switch kind {
		case kindClear, kindUnseen:
			s.expect.Allowed[k] = []string{OutcomeStopped, string(events.ReasonContactNotFound)}
		default:
			s.expect.Allowed[k] = []string{string(events.ReasonContactNotFound)}
		}
	}
	s.afterCheck = func(rep *Report) { r.check(ctx, rep) }
	nFaults := r.comp.kills
	for _, n := range r.comp.fakeFaults {
		nFaults += n
	}
	s.finish(uint64(len(r.singles)+2), fmt.Sprintf("%d× kill -9 of one of 2 worker processes (restarted after 0–1 s); %s faults %s; at random points of the clears",
		r.comp.kills, r.fake.Name(), kvString(r.comp.fakeFaults)), nFaults)
}

// kvString writes a map's counts in key order.
func kvString(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ", ")
}

// setUp starts the fake, binds both instances to it and writes the
// inventory: the clears' contacts in the store and on the platform, those
// that hung up before the run (still QUEUED in the store), and the
// contacts only the platform has. It starts the log of intents and sets
// the workers' AWS environment.
func (r *platRun) setUp(ctx context.Context) {
	s, rng := r.s, rngFrom(r.s.rng)
	t := s.t
	for _, instance := range []string{inst, betaInst} {
		b := r.fake.Binding(instance)
		b.Rate, b.Burst, b.QuotaKey = platRate, platBurst, platQuotaKey
		if _, err := s.st.PutInstance(ctx, store.Instance{InstanceID: instance, Binding: &b}); err != nil {
			t.Fatalf("bind %s: %v", instance, err)
		}
		r.bulkIDs[instance] = fmt.Sprintf("clear-%s-%d", instance, suite.seed)
	}
	s.env = r.fake.Env(t)
	r.queue = r.fake.QueueID(clearQueue)

	enqueued := time.Now().Add(-time.Minute).UTC()
	for _, instance := range []string{inst, betaInst} {
		prefix := map[string]string{inst: "a", betaInst: "b"}[instance]
		contacts := make([]store.Contact, r.sz.perInstance)
		for i := range contacts {
			id := r.fake.ID(prefix + strconv.Itoa(i))
			contacts[i] = store.Contact{ContactID: id, InstanceID: instance, State: store.StateQueued, QueueID: r.queue,
				Channel: store.ChannelVoice, EnqueuedAt: enqueued}
			r.instOf[id] = instance
			r.clear = append(r.clear, ContactRef{instance, id})
			r.fake.Add(instance, platContact{ID: id, QueueID: r.queue, EnqueuedAt: enqueued})
		}
		got, err := s.st.SeedContacts(ctx, iter.Seq[store.Contact](slices.Values(contacts)))
		if err != nil || got != len(contacts) {
			t.Fatalf("seed %d contacts of %s: seeded %d, %v", len(contacts), instance, got, err)
		}
		// The customer hung up; no event reached the store yet.
		for _, i := range rng.Perm(r.sz.perInstance)[:r.sz.hungBefore] {
			id := r.fake.ID(prefix + strconv.Itoa(i))
			r.hungBefore[id] = true
			r.fake.Add(instance, platContact{ID: id, QueueID: r.queue, EnqueuedAt: enqueued,
				DisconnectedAt: time.Now().Add(-10 * time.Second)})
		}
	}
	for i := range r.sz.unseen {
		id, instance := r.fake.ID("u"+strconv.Itoa(i)), []string{inst, betaInst}[i%2]
		c := platContact{ID: id, AgentConnected: true}
		if i%4 < 2 {
			// Queued in the clear's queue: the store learns it from a
			// single request, maybe while the clear walks.
			c = platContact{ID: id, QueueID: r.queue, EnqueuedAt: enqueued}
		}
		r.fake.Add(instance, c)
		r.instOf[id] = instance
		r.unseen = append(r.unseen, ContactRef{instance, id})
	}
	for i := range r.sz.unknown {
		id, instance := r.fake.ID("x"+strconv.Itoa(i)), []string{inst, betaInst}[i%2]
		r.instOf[id] = instance
		r.unknown = append(r.unknown, ContactRef{instance, id})
	}
	// The contacts nothing targets (newScenario's "idle") wait in another
	// queue, on the platform too: a listing platform's sync would rightly
	// record ENDED what it does not have.
	for i := range 200 {
		r.fake.Add(inst, platContact{ID: "idle" + strconv.Itoa(i), QueueID: r.fake.QueueID("idle"), EnqueuedAt: enqueued})
	}
	seq, err := s.st.ContactsSequence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.baseline = seq
	r.watch = watchIntents(ctx, t, s.js, []string{inst, betaInst})
	s.logf("bound %s and %s to the fake %s at %s (quota key %q, %d/s burst %d; the fake's stop and read quotas the same); "+
		"seeded %d QUEUED contacts each in queue %q (%d each hung up on the platform), %d contacts only on the platform",
		inst, betaInst, r.fake.Name(), r.fake.URL(), platQuotaKey, platRate, platBurst, r.sz.perInstance, clearQueue, r.sz.hungBefore, len(r.unseen))
}

// at returns a random point in [lo, hi) of the expected run.
func (r *platRun) at(rng *rand.Rand, lo, hi float64) time.Duration {
	return time.Duration((lo + (hi-lo)*rng.Float64()) * float64(r.est))
}

// requestEvents are the single requests and their resends.
func (r *platRun) requestEvents(rng *rand.Rand) []event {
	var evs []event
	add := func(k RequestKey, kind singleKind, at time.Duration) {
		r.singles[k] = kind
		evs = append(evs, event{at: at, what: "request " + k.String(), do: func(ctx context.Context) { r.publish(ctx, k, true) }})
		if rng.Float64() < 0.1 {
			// Resent, with the same Nats-Msg-Id or without one: the
			// requests stream stores both, answered from the outcome.
			withID := rng.IntN(2) == 0
			later := at + 200*time.Millisecond + time.Duration(rng.Int64N(int64(4*time.Second)))
			r.resent[k] = true
			evs = append(evs, event{at: later, what: "resend " + k.String(), do: func(ctx context.Context) {
				r.publish(ctx, k, withID)
				if withID {
					r.comp.resendsID++
				} else {
					r.comp.resendsNoID++
				}
			}})
		}
	}
	var active []ContactRef
	for _, ref := range r.clear {
		if !r.hungBefore[ref.ContactID] {
			active = append(active, ref)
		}
	}
	for _, i := range rng.Perm(len(active))[:r.sz.dup] {
		ref := active[i]
		at := r.at(rng, 0.03, 0.85)
		add(RequestKey{ref.Instance, ref.ContactID, "s1-" + ref.ContactID}, kindClear, at)
		second := r.at(rng, 0.03, 0.85)
		if rng.IntN(2) == 0 {
			second = at + time.Duration(rng.Int64N(int64(300*time.Millisecond))) // racing
		}
		add(RequestKey{ref.Instance, ref.ContactID, "s2-" + ref.ContactID}, kindClear, second)
	}
	for i, ref := range r.unseen {
		at := r.at(rng, 0.03, 0.85)
		add(RequestKey{ref.Instance, ref.ContactID, "u-" + ref.ContactID}, kindUnseen, at)
		if i%4 == 1 {
			add(RequestKey{ref.Instance, ref.ContactID, "u2-" + ref.ContactID}, kindUnseen, at+time.Duration(rng.Int64N(int64(time.Second))))
		}
	}
	for _, ref := range r.unknown {
		add(RequestKey{ref.Instance, ref.ContactID, "x-" + ref.ContactID}, kindUnknown, r.at(rng, 0.03, 0.85))
	}
	hung := slices.Sorted(maps.Keys(r.hungBefore))
	for _, i := range rng.Perm(len(hung))[:min(len(hung), r.sz.hungSingles)] {
		id := hung[i]
		add(RequestKey{r.instOf[id], id, "h-" + id}, kindHungBefore, r.at(rng, 0.03, 0.85))
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

func (r *platRun) publish(ctx context.Context, k RequestKey, withMsgID bool) {
	if _, err := r.s.publishSync(ctx, requestMsg(k, withMsgID)); err != nil {
		r.s.t.Errorf("publish %s: %v", k, err)
		return
	}
	r.comp.messages++
}

// hangupEvents are customers hanging up during the run: contacts of the
// clears (active) and contacts only the platform knows.
func (r *platRun) hangupEvents(rng *rand.Rand) []event {
	var pool []ContactRef
	for _, ref := range r.clear {
		if !r.hungBefore[ref.ContactID] {
			pool = append(pool, ref)
		}
	}
	pool = append(pool, r.unseen...)
	var evs []event
	for _, i := range rng.Perm(len(pool))[:r.sz.hangMid] {
		ref := pool[i]
		evs = append(evs, event{at: r.at(rng, 0.05, 0.8), what: "hang up " + ref.String(), do: func(context.Context) {
			if r.fake.Disconnect(ref.Instance, ref.ContactID) {
				r.mu.Lock()
				r.hungMid[ref.ContactID] = time.Now()
				r.mu.Unlock()
				r.comp.hangMid++
			} else {
				r.comp.hangMidLate++
			}
		}})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

// faultEvents are the kills and the platform's faults, every choice drawn
// now.
func (r *platRun) faultEvents(rng *rand.Rand) []event {
	s := r.s
	var evs []event
	for range r.sz.kills {
		pick, down := rng.IntN(2), time.Duration(rng.Int64N(int64(time.Second)+1))
		evs = append(evs, event{at: r.at(rng, 0.1, 0.8), what: "kill", do: func(ctx context.Context) { r.kill(ctx, pick, down) }})
	}
	fake := r.fake
	script := func(kind string, do func()) func(context.Context) {
		return func(context.Context) {
			r.comp.fakeFaults[kind]++
			do()
		}
	}
	for range r.sz.rounds {
		// Enough throttled answers that many calls in flight meet one:
		// every one must wait for the budget again.
		n := 3 + rng.IntN(s.size(8, 28))
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("throttling", func() {
			s.inject("platform: the next %d stop calls answered throttled (429, Retry-After 1 s)", n)
			fake.Fail(opStop, n, faultThrottle)
			r.comp.scriptedThrottles += n
		})})
		n5 := 1 + rng.IntN(5)
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("500", func() {
			s.inject("platform: the next %d stop calls answered 500", n5)
			fake.Fail(opStop, n5, faultServer)
		})})
		nd := 1 + rng.IntN(3)
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("dropped", func() {
			s.inject("platform: the next %d stop calls dropped (connection closed before it is carried out)", nd)
			fake.Fail(opStop, nd, faultDrop)
		})})
		ndesc, which := 1+rng.IntN(3), rng.IntN(3)
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("describe", func() {
			name := []string{"throttled (429, Retry-After 1 s)", "500", "a dropped connection"}[which]
			s.inject("platform: the next %d reads answered %s", ndesc, name)
			fake.Fail(opRead, ndesc, platFault(which))
			if which == 0 {
				r.comp.scriptedThrottles += ndesc
			}
		})})
		nl := 1 + rng.IntN(5)
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("lost", func() {
			s.inject("platform: the next %d stop calls take effect and lose their answer (connection closed)", nl)
			fake.LoseNext(opStop, nl)
		})})
		nh := 1 + rng.IntN(3)
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("hung", func() {
			s.inject("platform: the next %d stop calls take effect and hold their answer until the caller gives up", nh)
			fake.HangNext(opStop, nh)
		})})
		// A platform that keeps throttling: a call retried without
		// waiting for the budget would exceed it at once.
		squeeze := time.Duration(s.size(500, 1000))*time.Millisecond + time.Duration(rng.Int64N(int64(s.size(500, 1000))*int64(time.Millisecond)))
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("quota", func() {
			f := s.inject("platform: stop quota squeezed to %d/s burst %d for %s (another application of the account takes the rest)",
				platRate/4, platBurst/4, squeeze.Round(time.Millisecond))
			fake.SetQuota(opStop, platRate/4, platBurst/4)
			time.Sleep(squeeze)
			fake.SetQuota(opStop, platRate, platBurst)
			s.heal(f, "platform: stop quota back to %d/s burst %d", platRate, platBurst)
		})})
		lat := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
		spell := time.Second + time.Duration(rng.Int64N(int64(time.Second)))
		evs = append(evs, event{at: r.at(rng, 0.05, 0.75), do: script("latency", func() {
			f := s.inject("platform: stop answers delayed %s for %s", lat.Round(time.Millisecond), spell.Round(time.Millisecond))
			fake.SetLatency(opStop, lat)
			time.Sleep(spell)
			fake.SetLatency(opStop, 0)
			s.heal(f, "platform: stop latency back to none")
		})})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

// kill kill -9s a running worker (the pick-th, or the next running one)
// and restarts it after down.
func (r *platRun) kill(ctx context.Context, pick int, down time.Duration) {
	s := r.s
	var p *proc
	for deadline := time.Now().Add(30 * time.Second); p == nil && ctx.Err() == nil; {
		for i := range s.workers {
			if w := s.workers[(pick+i)%len(s.workers)]; w.running() {
				p = w
				break
			}
		}
		if p == nil {
			if time.Now().After(deadline) {
				s.t.Errorf("no worker running for 30s")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if p == nil {
		return
	}
	f := s.inject("kill -9 %s", p.name)
	pid, err := p.kill()
	if err != nil {
		s.t.Error(err)
		return
	}
	r.comp.kills++
	s.logf("      killed %s pid %d; restarting it in %s", p.name, pid, down.Round(time.Millisecond))
	r.restarts.Go(func() {
		time.Sleep(down)
		if err := p.start(); err != nil {
			s.t.Errorf("restart %s: %v", p.name, err)
			return
		}
		s.heal(f, "%s restarted (pid %d)", p.name, p.pid())
	})
}

// runEventsFrom runs events in order, each at start+its time or as soon
// after as the previous one (and gap after it) allows.
func runEventsFrom(ctx context.Context, start time.Time, evs []event, gap time.Duration) {
	var prev time.Time
	for _, ev := range evs {
		at := start.Add(ev.at)
		if !prev.IsZero() && at.Before(prev.Add(gap)) {
			at = prev.Add(gap)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		ev.do(ctx)
		prev = time.Now()
	}
}

// intentLog records, from a watch of the contacts bucket, every stop
// intent written on the instances' records and the last revision of each.
type intentLog struct {
	mu      sync.Mutex
	intents map[ContactRef][]store.Intent
	last    map[ContactRef]uint64
	writes  int
}

func watchIntents(ctx context.Context, t *testing.T, js jetstream.JetStream, instances []string) *intentLog {
	kv, err := js.KeyValue(ctx, contactsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(instances))
	for i, instance := range instances {
		keys[i] = instance + ".*"
	}
	w, err := kv.WatchFiltered(ctx, keys, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatalf("watch the contacts: %v", err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	l := &intentLog{intents: map[ContactRef][]store.Intent{}, last: map[ContactRef]uint64{}}
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			instance, id, err := store.ParseContactKey(e.Key())
			if err != nil {
				continue
			}
			var c store.Contact
			_ = json.Unmarshal(e.Value(), &c)
			ref := ContactRef{instance, id}
			l.mu.Lock()
			l.writes++
			l.last[ref] = max(l.last[ref], e.Revision())
			if c.Intent != nil {
				in := *c.Intent
				if n := len(l.intents[ref]); n == 0 || l.intents[ref][n-1] != in {
					l.intents[ref] = append(l.intents[ref], in)
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// caughtUp waits until the log has seen every record written after
// baseline at its final revision.
func (l *intentLog) caughtUp(ctx context.Context, final map[ContactRef]store.Contact, baseline uint64) error {
	for {
		var behind []string
		l.mu.Lock()
		for ref, c := range final {
			if c.Revision > baseline && l.last[ref] < c.Revision {
				behind = append(behind, ref.String())
			}
		}
		l.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the watch of the contacts has not seen the last writes of %d contacts (%v…)", len(behind), behind[:min(3, len(behind))])
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check runs once the worker is quiescent and the generic checker has
// run: it reads the results, the records and the fake's log, runs
// checkPlatform and reports its figures.
func (r *platRun) check(ctx context.Context, rep *Report) {
	s := r.s
	t := s.t
	final := map[ContactRef]store.Contact{}
	for _, instance := range []string{inst, betaInst} {
		err := s.st.WalkContacts(ctx, store.WalkParams{InstanceID: instance}, func(e store.WalkEntry) error {
			if e.Bad == nil {
				final[ContactRef{instance, e.Contact.ContactID}] = e.Contact
			}
			return nil
		})
		if err != nil {
			t.Errorf("platform check: read the contacts of %s: %v", instance, err)
			return
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := r.watch.caughtUp(wctx, final, r.baseline); err != nil {
		t.Errorf("platform check: %v", err)
	}
	results := map[RequestKey][]storedResult{}
	completions := map[string]events.BulkCompleted{}
	err := readStream(ctx, s.js, events.StreamResults, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		if strings.HasPrefix(m.Subject(), events.SubjectBulkCompleted+".") {
			var bc events.BulkCompleted
			if json.Unmarshal(m.Data(), &bc) == nil {
				completions[bc.InstanceID] = bc
			}
			return nil
		}
		res, err := events.DecodeResult(m.Subject(), m.Data())
		if err != nil {
			return nil // counted by the checker
		}
		sr := storedResult{seq: md.Sequence.Stream, at: md.Timestamp, stopped: res.Stopped, failed: res.Failed}
		var k RequestKey
		if res.Stopped != nil {
			k = RequestKey{res.Stopped.InstanceID, res.Stopped.ContactID, res.Stopped.RequestID}
		} else {
			k = RequestKey{res.Failed.InstanceID, res.Failed.ContactID, res.Failed.RequestID}
		}
		results[k] = append(results[k], sr)
		return nil
	})
	if err != nil {
		t.Errorf("platform check: read the results: %v", err)
		return
	}
	f := &platformFacts{rate: platRate, burst: platBurst, jitter: platJitter, calls: r.fake.Calls(),
		platform: map[string]platContact{}, instOf: r.instOf, effects: map[string]int{}, results: results,
		store: final, singles: r.singles, resent: r.resent, hungUp: map[string]bool{}}
	r.watch.mu.Lock()
	f.intents = maps.Clone(r.watch.intents)
	writes := r.watch.writes
	r.watch.mu.Unlock()
	for id, instance := range r.instOf {
		if c, ok := r.fake.Contact(instance, id); ok {
			f.platform[id] = c
			f.effects[id] = r.fake.StopEffects(id)
		}
	}
	r.mu.Lock()
	for id := range r.hungMid {
		f.hungUp[id] = true
	}
	r.mu.Unlock()
	f.clear = r.clear
	for i := range 200 {
		f.untouched = append(f.untouched, ContactRef{inst, "idle" + strconv.Itoa(i)})
	}
	fig, problems := checkPlatform(f)
	for i, p := range problems {
		if i == 50 {
			t.Errorf("platform check: … %d more", len(problems)-50)
			break
		}
		t.Errorf("platform check: %s", p)
	}
	if len(problems) > 0 {
		t.Errorf("%d violations of the platform path's guarantees (seed %d)", len(problems), suite.seed)
	}
	var bulks []string
	for _, instance := range []string{inst, betaInst} {
		bc, ok := completions[instance]
		if !ok {
			bulks = append(bulks, instance+" no completion")
			continue
		}
		bulks = append(bulks, fmt.Sprintf("%s matched %d stopped %d skipped %d failed %d", instance, bc.Matched, bc.Stopped, bc.Skipped, bc.Failed))
		if bc.Failed != 0 {
			t.Errorf("bulk %s: %d contacts failed %v, want none (stopped, or skipped: hung up, or taken by a single request)", bc.BulkID, bc.Failed, bc.ReasonCodes)
		}
	}
	c := r.comp
	s.workload = fmt.Sprintf("inventory: %s and %s bound to the fake %s under one quota key (budget and the fake's stop and read quotas %d/s burst %d), "+
		"%d QUEUED contacts each in queue %q (%d each hung up on the platform before the run, inventory behind), %d contacts only on the platform, %d unknown; "+
		"2 bulk clears (one per instance, sharing the budget): %s; %d single requests in %d messages (%d contacts of the clears ×2, %d unseen (+%d twice), %d unknown, %d hung-up; "+
		"resent %d with the same Nats-Msg-Id, %d without); %d customers hung up mid-run (%d more found already ended); "+
		"singles: %d stopped, %d CONTACT_NOT_FOUND, %d ran out of attempts behind another request's stop (retryable INTERNAL_ERROR), %d retryable INTERNAL_ERRORs in all; results %d (stopped %d, failed %v); "+
		"StopContact calls %d: %d took effect (%d of them answer lost), %d ContactNotFoundException, %d ThrottlingException (%d scripted), %d 5xx, %d dropped; "+
		"DescribeContact calls %d (%d throttled); busiest 1 s: %d StopContact calls (limit %d + %d for %s of jitter), %d calls took at least %s; "+
		"contact writes seen %d, intents %d; stopped on a hang-up after the intent %d; second StopContact from the request that had stopped the contact %d (%d of them resent); platform violations %d",
		inst, betaInst, r.fake.Name(), platRate, platBurst, r.sz.perInstance, clearQueue, r.sz.hungBefore, len(r.unseen), len(r.unknown),
		strings.Join(bulks, "; "), len(r.singles), c.messages, r.sz.dup, r.sz.unseen, (r.sz.unseen+2)/4, r.sz.unknown, min(r.sz.hungSingles, 2*r.sz.hungBefore),
		c.resendsID, c.resendsNoID, c.hangMid, c.hangMidLate,
		fig.singlesStopped, fig.singlesNotFound, fig.blocked, fig.retryable, rep.Results, rep.Stopped, rep.FailedByReason,
		fig.stopCalls, fig.effects, fig.answerLost, fig.notFound, fig.throttled, c.scriptedThrottles, fig.serverErrors, fig.dropped,
		fig.describeCalls, fig.describeThrottled, fig.maxWindow, platBurst+platRate, fig.limit-platBurst-platRate, platJitter, platBurst+platRate+1, fig.tightest.Round(time.Millisecond),
		writes, fig.intents, fig.stoppedOnHangUp, fig.secondCalls, fig.secondCallsResent, len(problems))
	for _, n := range fig.notes {
		s.logf("platform check note: %s", n)
	}
}

// platformFacts is what checkPlatform judges: the fake's log and final
// state, the stored results and records, and what the scenario did.
type platformFacts struct {
	rate   float64
	burst  int
	jitter time.Duration
	calls  []platCall
	// platform holds every contact of the run the platform has, as it
	// ends, and effects how many stop calls ended each; instOf maps every
	// contact of the run to its contactstop instance.
	platform map[string]platContact
	effects  map[string]int
	instOf   map[string]string
	results  map[RequestKey][]storedResult
	store    map[ContactRef]store.Contact
	// intents are every intent written on a record, from the watch.
	intents map[ContactRef][]store.Intent
	singles map[RequestKey]singleKind
	// resent: single requests published more than once (their messages
	// may be worked on at the same time).
	resent map[RequestKey]bool
	// hungUp: contacts the customer (the test) hung up during the run.
	hungUp    map[string]bool
	clear     []ContactRef
	untouched []ContactRef
}

// platformFigures are checkPlatform's counts.
type platformFigures struct {
	stopCalls, effects, answerLost, notFound, throttled, serverErrors, dropped int
	describeCalls, describeThrottled                                           int
	// maxWindow is the most StopContact calls in any 1 s of the fake's
	// log, limit what the check allows; tightest is the shortest time
	// that burst+rate+1 consecutive calls took.
	maxWindow, limit int
	tightest         time.Duration
	singlesStopped   int
	singlesNotFound  int
	retryable        int
	intents          int
	stoppedOnHangUp  int
	// secondCalls counts the contacts that got another StopContact
	// (ContactNotFoundException) from the request that had stopped them,
	// secondCallsResent those of them whose request was resent; notes
	// shows some.
	secondCalls, secondCallsResent int
	// blocked counts the single requests answered only INTERNAL_ERROR
	// (retryable) because another request's intent held their contact
	// for all their attempts (that request stopped it).
	blocked int
	notes   []string
}

// checkPlatform checks the platform path's promises against the fake's
// call log (each StopContact names its request by its disconnect reason):
//
//   - no contact got more than one StopContact that took effect, and the
//     StopContact calls that reached a contact (took effect, or found it
//     gone) all came from one request: never two requests' stops, even
//     one answered ContactNotFoundException; a second call of the same
//     request after its stop took effect is counted (secondCalls);
//   - every stop that took effect has a contact.stopped of the request
//     that made it, and every contact.stopped was either that request's
//     effect or a hang-up at or after its intent (1 s of skew, as the
//     worker allows);
//   - the budget held: at most burst + rate·(1 s + jitter) StopContact
//     calls (any answer) in any 1 s;
//   - no INTERNAL_ERROR mentions throttling;
//   - every single request ended as its target allows: contact.stopped or
//     CONTACT_NOT_FOUND for an active contact (the latter only when
//     another request stopped it or the customer hung up),
//     CONTACT_NOT_FOUND for one nobody has (and no record made for it) or
//     that hung up before the run. One exception, counted (blocked): a
//     request answered only INTERNAL_ERROR (retryable) because another
//     request's intent held the contact through all its attempts, that
//     request having stopped it (docs/reliability.md, platform_clear);
//   - the records end consistent with the platform: the clears' contacts
//     all ENDED, and disconnected on the platform; a contact ENDED by the
//     platform was not stopped by contactstop; the contacts nothing
//     targeted untouched. (Intents left on records are the generic
//     checker's.)
func checkPlatform(f *platformFacts) (fig platformFigures, problems []string) {
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	type reached struct {
		effects, gone []platCall
		callers       map[string]bool
	}
	byContact := map[string]*reached{}
	history := map[string][]platCall{}
	// callerOf is the identity of the request a call came from: what the
	// call says (its disconnect reason), or on a platform whose calls say
	// nothing of it, the request whose intent was on the contact's record
	// when the call was made (the intent protocol writes it before every
	// call).
	callerOf := func(c platCall) string {
		if c.Caller != "" {
			return identityOf(c.Caller, c.ContactID)
		}
		var by *store.Intent
		for i, in := range f.intents[ContactRef{f.instOf[c.ContactID], c.ContactID}] {
			if !in.At.After(c.At) && (by == nil || in.At.After(by.At)) {
				by = &f.intents[ContactRef{f.instOf[c.ContactID], c.ContactID}][i]
			}
		}
		if by == nil {
			return "no intent before the call"
		}
		return by.RequestID
	}
	// calls is a contact's calls, for a problem's line.
	calls := func(id string) string {
		var b strings.Builder
		for _, c := range history[id] {
			fmt.Fprintf(&b, " [%s %s %q → %d %s", c.At.Format("15:04:05.000000"), c.Op, callerOf(c), c.Status, c.Code)
			if c.Effect {
				b.WriteString(" EFFECT")
			}
			b.WriteString("]")
		}
		return b.String()
	}
	var stops []time.Time
	for _, c := range f.calls {
		history[c.ContactID] = append(history[c.ContactID], c)
		if c.Op == opRead {
			fig.describeCalls++
			if c.Throttled {
				fig.describeThrottled++
			}
			continue
		}
		if c.Op != opStop {
			continue
		}
		fig.stopCalls++
		stops = append(stops, c.At)
		switch {
		case c.Effect:
			fig.effects++
			if c.Status == 0 {
				fig.answerLost++
			}
		case c.Gone:
			fig.notFound++
		case c.Throttled:
			fig.throttled++
		case c.Status >= 500:
			fig.serverErrors++
		case c.Status == 0:
			fig.dropped++
		}
		if !c.Effect && !c.Gone {
			continue // not carried out
		}
		x := byContact[c.ContactID]
		if x == nil {
			x = &reached{callers: map[string]bool{}}
			byContact[c.ContactID] = x
		}
		x.callers[callerOf(c)] = true
		if c.Effect {
			x.effects = append(x.effects, c)
		} else {
			x.gone = append(x.gone, c)
		}
	}
	stoppedBy := map[string][]RequestKey{} // contact → identities with a contact.stopped
	for k, rs := range f.results {
		if slices.ContainsFunc(rs, func(r storedResult) bool { return r.stopped != nil }) {
			stoppedBy[k.ContactID] = append(stoppedBy[k.ContactID], k)
		}
		for _, r := range rs {
			if r.failed != nil && r.failed.ReasonCode == events.ReasonInternalError {
				if m := strings.ToLower(r.failed.Message); strings.Contains(m, "throttl") || strings.Contains(m, "rate exceeded") {
					problem("THROTTLED RESULT: %s answered %s", k, describe([]storedResult{r}))
				}
			}
		}
	}

	// One stop per contact, from one request, never a blind second call.
	for _, id := range slices.Sorted(maps.Keys(byContact)) {
		x := byContact[id]
		if len(x.effects) > 1 || f.effects[id] > 1 {
			problem("STOPPED TWICE: contact %q was stopped by %d StopContact calls", id, max(len(x.effects), f.effects[id]))
		}
		if len(x.callers) > 1 {
			problem("TWO CALLERS: StopContact calls from %d requests %q reached contact %q; its calls:%s", len(x.callers), slices.Sorted(maps.Keys(x.callers)), id, calls(id))
		}
		if len(x.effects) > 0 && len(x.gone) > 0 && len(x.callers) == 1 {
			// The request that stopped the contact called again after: two
			// deliveries of it (two messages of a resent request, or one
			// message redelivered while still in another process's hands)
			// that both asked the platform before either call took
			// effect. Harmless to the contact: the platform ends it once
			// and answers the second call ContactNotFoundException, and
			// the request is answered once (the rules above and below).
			// Counted, not a violation; a second call from another
			// request is one (TWO CALLERS).
			e := x.effects[0]
			k := RequestKey{f.instOf[id], id, callerOf(e)}
			fig.secondCalls++
			if f.resent[k] {
				fig.secondCallsResent++
			}
			if len(fig.notes) < 5 {
				fig.notes = append(fig.notes, fmt.Sprintf("contact %q got %d more StopContact from %s (resent %v) after it took effect; its calls:%s",
					id, len(x.gone), k, f.resent[k], calls(id)))
			}
		}
		// Every effect is announced by the request that made it.
		for _, e := range x.effects {
			k := RequestKey{f.instOf[id], id, callerOf(e)}
			if !slices.Contains(stoppedBy[id], k) {
				problem("STOP WITHOUT RESULT: contact %q was stopped on the platform at %s by %s, which has no contact.stopped (results: %s; contact.stopped by %v); its calls:%s",
					id, e.At.Format(time.RFC3339Nano), k, describeOrNone(f.results[k]), stoppedBy[id], calls(id))
			}
		}
	}
	// Every contact.stopped is its request's effect, or a hang-up after
	// its intent.
	for _, id := range slices.Sorted(maps.Keys(stoppedBy)) {
		for _, k := range stoppedBy[id] {
			x := byContact[id]
			if x != nil && len(x.effects) > 0 {
				if by := callerOf(x.effects[0]); by != k.ID {
					problem("STOPPED BY ANOTHER: %s has contact.stopped, but the stop that took effect came from %q", k, by)
				}
				continue
			}
			p, ok := f.platform[id]
			var first *store.Intent
			for i, in := range f.intents[k.contact()] {
				if in.RequestID == k.ID && (first == nil || in.At.Before(first.At)) {
					first = &f.intents[k.contact()][i]
				}
			}
			switch {
			case !ok:
				problem("STOPPED, NOT ON THE PLATFORM: %s has contact.stopped for a contact the platform never had", k)
			case p.Active():
				problem("STOPPED, STILL ACTIVE: %s has contact.stopped, but the contact is active on the platform", k)
			case first == nil:
				problem("STOPPED WITHOUT A STOP: %s has contact.stopped; no StopContact took effect (the customer hung up at %s) and it wrote no intent",
					k, p.DisconnectedAt.Format(time.RFC3339Nano))
			case p.DisconnectedAt.Before(first.At.Add(-time.Second)):
				problem("STOPPED WITHOUT A STOP: %s has contact.stopped; no StopContact took effect, and the customer hung up at %s, before its intent (%s)",
					k, p.DisconnectedAt.Format(time.RFC3339Nano), first.At.Format(time.RFC3339Nano))
			default:
				fig.stoppedOnHangUp++
			}
		}
	}

	// The budget.
	slices.SortFunc(stops, func(a, b time.Time) int { return a.Compare(b) })
	fig.limit = f.burst + int(math.Floor(f.rate*(time.Second+f.jitter).Seconds()+1e-9))
	n := f.burst + int(f.rate)
	fig.tightest = -1
	for i, j := 0, 0; i < len(stops); i++ {
		for j < len(stops) && stops[j].Sub(stops[i]) < time.Second {
			j++
		}
		if j-i > fig.maxWindow {
			fig.maxWindow = j - i
		}
		if i+n < len(stops) {
			if d := stops[i+n].Sub(stops[i]); fig.tightest < 0 || d < fig.tightest {
				fig.tightest = d
			}
		}
	}
	if fig.maxWindow > fig.limit {
		problem("BUDGET: %d StopContact calls within 1 s, more than burst %d + rate %v × (1 s + %s jitter) = %d", fig.maxWindow, f.burst, f.rate, f.jitter, fig.limit)
	}

	// The single requests' outcomes.
	for _, k := range slices.SortedFunc(maps.Keys(f.singles), func(a, b RequestKey) int { return strings.Compare(a.ID, b.ID) }) {
		kind := f.singles[k]
		final, retry := finals(f.results[k])
		fig.retryable += len(retry)
		if len(final) == 0 && len(retry) > 0 && kind != kindUnknown && blockedBy(retry, stoppedBy[k.ContactID], k) {
			// It waited behind another request's intent until its attempts
			// ran out, and that request did stop the contact: answered
			// INTERNAL_ERROR (retryable), which SPEC allows (a resend is
			// answered CONTACT_NOT_FOUND). Counted, not a violation.
			fig.blocked++
			if len(fig.notes) < 10 {
				fig.notes = append(fig.notes, fmt.Sprintf("single request %s (%s) ran out of attempts behind another request's stop: %s", k, kind, describe(retry)))
			}
			continue
		}
		if len(final) == 0 {
			problem("NO OUTCOME: single request %s (%s) has no final result: %s", k, kind, describeOrNone(retry))
			continue
		}
		o := final[0].outcome()
		switch {
		case o == OutcomeStopped:
			fig.singlesStopped++
		case o == string(events.ReasonContactNotFound):
			fig.singlesNotFound++
		}
		switch kind {
		case kindClear, kindUnseen:
			others := slices.DeleteFunc(slices.Clone(stoppedBy[k.ContactID]), func(x RequestKey) bool { return x == k })
			switch {
			case o == OutcomeStopped:
			case o != string(events.ReasonContactNotFound):
				problem("WRONG OUTCOME: single request %s for a contact active on the platform (%s): %s, want contact.stopped or CONTACT_NOT_FOUND", k, kind, describe(final))
			case len(others) == 0 && !f.hungUp[k.ContactID]:
				problem("NOT FOUND, NO WINNER: single request %s (%s) got CONTACT_NOT_FOUND, but no other request stopped the contact and the customer did not hang up", k, kind)
			}
		case kindUnknown:
			if o != string(events.ReasonContactNotFound) {
				problem("WRONG OUTCOME: single request %s for a contact nobody has: %s, want CONTACT_NOT_FOUND", k, describe(final))
			}
			if c, ok := f.store[k.contact()]; ok {
				problem("RECORD MADE UP: contact %s, which the platform does not have, has a record (%s, endedBy %q)", k.contact(), c.State, c.EndedBy)
			}
		case kindHungBefore:
			if o != string(events.ReasonContactNotFound) {
				problem("WRONG OUTCOME: single request %s for a contact that hung up before the run: %s, want CONTACT_NOT_FOUND", k, describe(final))
			}
		}
	}

	// The records against the platform.
	for _, ref := range f.clear {
		c, ok := f.store[ref]
		switch p := f.platform[ref.ContactID]; {
		case !ok || c.State != store.StateEnded:
			problem("NOT CLEARED: contact %s of a clear is %s in the store (endedBy %q)", ref, c.State, c.EndedBy)
		case p.Active():
			problem("NOT CLEARED: contact %s is ENDED in the store (by %q) but active on the platform", ref, c.EndedBy)
		}
	}
	for _, ref := range slices.SortedFunc(maps.Keys(f.store), func(a, b ContactRef) int { return strings.Compare(a.ContactID, b.ContactID) }) {
		c := f.store[ref]
		fig.intents += len(f.intents[ref])
		p, ok := f.platform[ref.ContactID]
		if c.State != store.StateEnded || !ok {
			continue
		}
		if p.Active() {
			problem("ENDED, STILL ACTIVE: contact %s is ENDED in the store (by %q) but active on the platform", ref, c.EndedBy)
		}
		if c.EndedBy == store.EndedByPlatform && p.Stopped {
			problem("STOP RECORDED AS A HANG-UP: contact %s is ENDED by the platform in the store, but a StopContact (%q) ended it", ref, p.Caller)
		}
	}
	for _, ref := range f.untouched {
		if c, ok := f.store[ref]; !ok || c.State != store.StateQueued || c.Intent != nil {
			problem("TOUCHED: contact %s, which nothing targeted, is %s (intent %v)", ref, c.State, c.Intent)
		}
	}
	return fig, problems
}

// blockedMsg starts the message of a single request's failure while
// another request's intent is on its contact (worker/platform.go).
const blockedMsg = "contact is being stopped on the platform by request "

// blockedBy reports whether every retryable INTERNAL_ERROR of single
// request k says it waited for another request's stop, and that request
// (one of those that stopped the contact) is the one named.
func blockedBy(retry []storedResult, stoppers []RequestKey, k RequestKey) bool {
	for _, r := range retry {
		_, by, ok := strings.Cut(r.failed.Message, blockedMsg)
		id, err := strconv.Unquote(by)
		if !ok || err != nil || id == k.ID || !slices.Contains(stoppers, RequestKey{k.Instance, k.ContactID, id}) {
			return false
		}
	}
	return true
}

// TestPlatformChecker: checkPlatform finds each violation in a history
// made by hand (it needs no processes).
func TestPlatformChecker(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	stopped := func(k RequestKey) storedResult {
		return storedResult{stopped: &events.Stopped{RequestID: k.ID, ContactID: k.ContactID, InstanceID: k.Instance}}
	}
	failed := func(k RequestKey, code events.ReasonCode, msg string, retryable bool) storedResult {
		return storedResult{failed: &events.StopFailed{RequestID: k.ID, ContactID: k.ContactID, InstanceID: k.Instance,
			ReasonCode: code, Message: msg, Retryable: retryable}}
	}
	stop := func(ms int, contact, reason string, status int, code string, effect bool) platCall {
		return platCall{Op: opStop, ContactID: contact, Caller: reason, At: at(ms), Status: status, Code: code, Effect: effect,
			Gone: code == "ContactNotFoundException", Throttled: code == "ThrottlingException"}
	}
	bulkA0 := RequestKey{inst, "a0", "B/a0"}
	s1, s2 := RequestKey{inst, "a1", "s1-a1"}, RequestKey{inst, "a1", "s2-a1"}
	x := RequestKey{inst, "x0", "x-x0"}
	// base: a0 stopped by the bulk (its first call refused 500), a1 by
	// s1 (s2 not found), a2 hung up after the bulk's intent, x0 unknown.
	base := func() *platformFacts {
		ended := func(id, by string) store.Contact {
			return store.Contact{ContactID: id, InstanceID: inst, State: store.StateEnded, EndedBy: by}
		}
		return &platformFacts{rate: 10, burst: 5, jitter: 100 * time.Millisecond,
			calls: []platCall{
				stop(0, "a0", "bulk B", 500, "InternalServiceException", false),
				stop(100, "a0", "bulk B", 0, "", true),
				stop(200, "a1", "single s1-a1", 200, "", true),
				{Op: opRead, ContactID: "a0", At: at(3100), Status: 200},
			},
			platform: map[string]platContact{
				"a0": {ID: "a0", DisconnectedAt: at(100), Stopped: true, Caller: "bulk B"},
				"a1": {ID: "a1", DisconnectedAt: at(200), Stopped: true, Caller: "single s1-a1"},
				"a2": {ID: "a2", DisconnectedAt: at(900)},
			},
			effects: map[string]int{"a0": 1, "a1": 1},
			instOf:  map[string]string{"a0": inst, "a1": inst, "a2": inst, "x0": inst},
			results: map[RequestKey][]storedResult{
				bulkA0:               {stopped(bulkA0)},
				s1:                   {stopped(s1)},
				s2:                   {failed(s2, events.ReasonInternalError, "transient", true), failed(s2, events.ReasonContactNotFound, "", false)},
				{inst, "a2", "B/a2"}: {stopped(RequestKey{inst, "a2", "B/a2"})},
				x:                    {failed(x, events.ReasonContactNotFound, "", false)},
			},
			store: map[ContactRef]store.Contact{
				{inst, "a0"}: ended("a0", "B/a0"), {inst, "a1"}: ended("a1", "s1-a1"), {inst, "a2"}: ended("a2", "B/a2"),
				{inst, "idle0"}: {ContactID: "idle0", InstanceID: inst, State: store.StateQueued},
			},
			intents: map[ContactRef][]store.Intent{
				{inst, "a0"}: {{RequestID: "B/a0", At: at(-10)}},
				{inst, "a1"}: {{RequestID: "s1-a1", At: at(150)}},
				{inst, "a2"}: {{RequestID: "B/a2", At: at(1500)}}, // 0.6 s after the hang-up: within the skew
			},
			singles:   map[RequestKey]singleKind{s1: kindClear, s2: kindClear, x: kindUnknown},
			hungUp:    map[string]bool{"a2": true},
			clear:     []ContactRef{{inst, "a0"}, {inst, "a1"}, {inst, "a2"}},
			untouched: []ContactRef{{inst, "idle0"}},
		}
	}
	// anonymous strips what the calls say of their callers, as Genesys
	// Cloud's disconnect carries none.
	anonymous := func(f *platformFacts) {
		for i := range f.calls {
			f.calls[i].Caller = ""
		}
		for id, c := range f.platform {
			c.Caller = ""
			f.platform[id] = c
		}
	}
	burst := func(f *platformFacts) {
		for i := range 17 { // 5 + 10 + 2 in 1 s: over 5 + 10·1.1
			f.calls = append(f.calls, stop(5000+i*50, "z"+strconv.Itoa(i), "single z", 429, "ThrottlingException", false))
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(f *platformFacts)
		want   []string // the problems' first words, in order
		second int      // secondCalls
	}{
		{name: "all well", mutate: func(*platformFacts) {}},
		{name: "a second call of the request that stopped it (counted)", mutate: func(f *platformFacts) {
			f.calls = append(f.calls, stop(3000, "a0", "bulk B", 410, "ContactNotFoundException", false))
		}, second: 1},
		{name: "two requests calling one contact", mutate: func(f *platformFacts) {
			f.calls = append(f.calls, stop(300, "a1", "single s2-a1", 410, "ContactNotFoundException", false))
		}, want: []string{"TWO CALLERS"}},
		{name: "two requests calling a contact that hung up", mutate: func(f *platformFacts) {
			f.calls = append(f.calls, stop(1000, "a2", "bulk B", 410, "ContactNotFoundException", false),
				stop(1100, "a2", "single s9", 410, "ContactNotFoundException", false))
		}, want: []string{"TWO CALLERS"}},
		{name: "a stop without its result", mutate: func(f *platformFacts) {
			f.results[s1] = []storedResult{failed(s1, events.ReasonInternalError, "no answer", true)}
			f.results[s2] = []storedResult{stopped(s2)}
			f.store[ContactRef{inst, "a1"}] = store.Contact{ContactID: "a1", InstanceID: inst, State: store.StateEnded, EndedBy: "s2-a1"}
		}, want: []string{"STOP WITHOUT RESULT", "STOPPED BY ANOTHER", "NO OUTCOME"}},
		{name: "a single that ran out of attempts behind the bulk's stop (counted)", mutate: func(f *platformFacts) {
			s3 := RequestKey{inst, "a0", "s3-a0"}
			f.singles[s3] = kindClear
			f.results[s3] = []storedResult{failed(s3, events.ReasonInternalError, "transient failures outlived every attempt: "+blockedMsg+`"B/a0"`, true)}
		}},
		{name: "a single that ran out of attempts behind a stop that never came", mutate: func(f *platformFacts) {
			s3 := RequestKey{inst, "a0", "s3-a0"}
			f.singles[s3] = kindClear
			f.results[s3] = []storedResult{failed(s3, events.ReasonInternalError, "transient failures outlived every attempt: "+blockedMsg+`"s9-a0"`, true)}
		}, want: []string{"NO OUTCOME"}},
		{name: "stopped though it hung up before the intent", mutate: func(f *platformFacts) {
			f.intents[ContactRef{inst, "a2"}] = []store.Intent{{RequestID: "B/a2", At: at(2000)}}
		}, want: []string{"STOPPED WITHOUT A STOP"}},
		{name: "a stop recorded as a hang-up", mutate: func(f *platformFacts) {
			f.results[bulkA0] = nil
			f.store[ContactRef{inst, "a0"}] = store.Contact{ContactID: "a0", InstanceID: inst, State: store.StateEnded, EndedBy: store.EndedByPlatform}
		}, want: []string{"STOP WITHOUT RESULT", "STOP RECORDED AS A HANG-UP"}},
		{name: "over the budget, a throttled result, a wrong not-found", mutate: func(f *platformFacts) {
			burst(f)
			f.results[x] = []storedResult{failed(x, events.ReasonInternalError, "StopContact: throttled: Rate exceeded", true)}
			f.results[s1] = []storedResult{failed(s1, events.ReasonContactNotFound, "", false)}
		}, want: []string{"THROTTLED RESULT", "STOP WITHOUT RESULT", "BUDGET", "NOT FOUND, NO WINNER", "NOT FOUND, NO WINNER", "NO OUTCOME"}},
		{name: "calls that name no request, attributed by the intents (Genesys Cloud)", mutate: func(f *platformFacts) {
			anonymous(f)
		}},
		{name: "a call that names no request, with no intent before it", mutate: func(f *platformFacts) {
			anonymous(f)
			f.intents[ContactRef{inst, "a1"}] = []store.Intent{{RequestID: "s1-a1", At: at(250)}}
		}, want: []string{"STOP WITHOUT RESULT", "STOPPED BY ANOTHER"}},
		{name: "two requests' anonymous calls, each after its own intent", mutate: func(f *platformFacts) {
			anonymous(f)
			f.calls = append(f.calls, stop(400, "a1", "", 404, "not.found", false))
			f.calls[len(f.calls)-1].Gone = true
			f.intents[ContactRef{inst, "a1"}] = append(f.intents[ContactRef{inst, "a1"}], store.Intent{RequestID: "s2-a1", At: at(300)})
		}, want: []string{"TWO CALLERS"}},
		{name: "not cleared, touched, made up", mutate: func(f *platformFacts) {
			f.store[ContactRef{inst, "a2"}] = store.Contact{ContactID: "a2", InstanceID: inst, State: store.StateQueued}
			f.store[ContactRef{inst, "idle0"}] = store.Contact{ContactID: "idle0", InstanceID: inst, State: store.StateQueued, Intent: &store.Intent{RequestID: "?"}}
			f.store[ContactRef{inst, "x0"}] = store.Contact{ContactID: "x0", InstanceID: inst, State: store.StateEnded, EndedBy: store.EndedByPlatform}
		}, want: []string{"RECORD MADE UP", "NOT CLEARED", "TOUCHED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.mutate(f)
			fig, problems := checkPlatform(f)
			t.Logf("%+v", fig)
			var got []string
			for _, p := range problems {
				t.Logf("problem: %s", p)
				head, _, _ := strings.Cut(p, ":")
				got = append(got, head)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
			if fig.secondCalls != tc.second {
				t.Errorf("second calls %d, want %d", fig.secondCalls, tc.second)
			}
		})
	}
}
