package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"sort"
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
)

// mixed_workload: a seeded random mix of everything at once, under worker
// kills, a worker pause and a server restart. Single requests for
// contacts that exist, that are created later, that never exist, of an
// instance registered only mid-run, and for bad records; fresh and
// repeated requestIds, with and without Nats-Msg-Id, resent at once and
// after the (6 s) duplicate window; bulk clears with several filters while
// a mover moves contacts between states and queues (revision-checked, as
// another service would) and single requests target the same contacts.
// Every write the scenario makes to a contact is logged for the checker,
// which then judges every rule (see Check).

const (
	lateInst     = "late"
	mixWindow    = 6 * time.Second
	badJSONID    = "bad-json"
	badStateID   = "bad-state"
	nonCanonical = "a.b" // stored under the non-canonical key acme.a=2eb
)

var (
	mixQueues   = []string{"q1", "q2", "q3"}
	mixStates   = []store.State{store.StateQueued, store.StateConnected, store.StateOnHold}
	mixChannels = []store.Channel{store.ChannelVoice, store.ChannelChat, store.ChannelEmail}
)

// mixSizes are the workload's sizes in one mode.
type mixSizes struct {
	contacts, future, late int           // acme contacts seeded; contacts created mid-run; late's contacts
	hot                    int           // seeded contacts that the mover and requests favour
	run                    time.Duration // how long requests, moves and faults go on
	rate, moveRate         int           // single requests and moves per second
	bulks                  int           // acme's bulk requests (late gets one more)
	kills, pauses          int           // worker kill -9s and SIGSTOPs
	restarts               int           // nats-server kill -9s and restarts
}

// history is the log of every write of a contact record.
type history struct {
	mu sync.Mutex
	m  map[ContactRef][]Version
}

func (h *history) add(ref ContactRef, v Version) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[ref] = append(h.m[ref], v)
	return len(h.m[ref]) - 1
}

// resolve records that the unacknowledged write i of ref landed: its
// record was read back at rev.
func (h *history) resolve(ref ContactRef, i int, rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[ref][i].Revision, h.m[ref][i].At = rev, time.Now()
}

func version(c store.Contact, rev, expected uint64, sent time.Time) Version {
	return Version{Revision: rev, ExpectedRevision: expected, State: c.State, QueueID: c.QueueID, Channel: c.Channel,
		EnqueuedAt: c.EnqueuedAt, SentAt: sent, At: time.Now()}
}

// composition counts what the workload did. Each goroutine owns its
// fields; they are read once every goroutine is done.
type composition struct {
	seeded, future, futureCreated, late, bad int

	requests, requestsLateBefore   int
	byTarget, byStyle              map[string]int
	resendNow, resendLate, dropped int
	reused                         int

	movers mover // the movers' counts, summed

	bulks, bulkResends int

	kills, pauses, restarts int
}

func (c *composition) String() string {
	kv := func(m map[string]int) string {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		})
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " " + strconv.Itoa(m[k])
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("contacts: %d acme seeded in q1–q3 (QUEUED/CONNECTED/ON_HOLD), %d of %d future-* created mid-run, %d of instance %q (registered mid-run), %d bad records; "+
		"%d single requests (%s; %d for %q before its registration) by identity (%s); resent: %d at once, %d after the %s window (%d dropped as duplicates, want 0), %d requestIds reused for another contact; "+
		"2 movers: %d writes (%d in bursts while bulks start), %d conflicts, %d unacknowledged (%d found landed), %d refused, %d ENDED found; "+
		"%d bulk requests (+%d resent after the window); faults: %d worker kill -9, %d SIGSTOP > AckWait, %d nats-server restarts",
		c.seeded, c.futureCreated, c.future, c.late, lateInst, c.bad,
		c.requests, kv(c.byTarget), c.requestsLateBefore, lateInst, kv(c.byStyle), c.resendNow, c.resendLate, mixWindow, c.dropped, c.reused,
		c.movers.moves, c.movers.burst, c.movers.conflicts, c.movers.unacked, c.movers.resolved, c.movers.refused, c.movers.ended,
		c.bulks, c.bulkResends, c.kills, c.pauses, c.restarts)
}

// mixWorkload is the state of one mixed_workload run.
type mixWorkload struct {
	s     *scenario
	sz    mixSizes
	kv    jetstream.KeyValue
	start time.Time
	until time.Time // the end of requests, moves and faults

	seeded []string // acme's seeded contacts that requests and the mover target
	hot    []string // the first few of them: targeted more often
	hist   history

	bulkTimes []time.Duration // when acme's bulks are published

	poolMu sync.Mutex
	pool   []ContactRef // contacts the mover moves: created and not known ENDED

	registered atomic.Bool // instance late is registered
	// burstUntil (UnixNano): until then the movers move as fast as they
	// can, so that a bulk clear meets records changing under it.
	burstUntil atomic.Int64

	allowedMu sync.Mutex
	allowed   map[RequestKey][]string

	badRecords map[string]uint64
	bulks      []BulkExpect
	outages    []Outage // the server restarts
	comp       composition
}

// rngFrom derives an independent random source for a goroutine, so that
// each one's choices follow from the seed whatever the interleaving.
func rngFrom(r *rand.Rand) *rand.Rand { return rand.New(rand.NewPCG(r.Uint64(), r.Uint64())) }

// mixedContactID is the i-th seeded contact's id: mostly c<i>, some with
// characters that the key encoding escapes.
func mixedContactID(i int) string {
	switch {
	case i%20 == 3:
		return "ç" + strconv.Itoa(i)
	case i%10 == 7:
		return "c." + strconv.Itoa(i)
	case i%10 == 8:
		return "c/" + strconv.Itoa(i)
	case i%10 == 9:
		return "c " + strconv.Itoa(i)
	}
	return "c" + strconv.Itoa(i)
}

func randomContact(rng *rand.Rand, instance, id string, now time.Time) store.Contact {
	return store.Contact{ContactID: id, InstanceID: instance, State: mixStates[rng.IntN(len(mixStates))],
		QueueID: mixQueues[rng.IntN(len(mixQueues))], Channel: mixChannels[rng.IntN(len(mixChannels))],
		EnqueuedAt: now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))).UTC(), UpdatedAt: now.UTC()}
}

func testMixedWorkload(t *testing.T) {
	s := newScenario(t, scenarioOptions{duplicateWindow: mixWindow})
	sz := mixSizes{contacts: 1500, future: 40, late: 100, hot: 60, run: 20 * time.Second, rate: 50, moveRate: 60,
		bulks: 3, kills: 1, pauses: 1, restarts: 1}
	if s.long {
		sz = mixSizes{contacts: 10000, future: 400, late: 1000, hot: 300, run: 120 * time.Second, rate: 150, moveRate: 150,
			bulks: 8, kills: 4, pauses: 2, restarts: 2}
	}
	ctx := s.ctx(10 * time.Minute)
	kv, err := s.js.KeyValue(ctx, contactsBucket)
	if err != nil {
		t.Fatal(err)
	}
	w := &mixWorkload{s: s, sz: sz, kv: kv, hist: history{m: map[ContactRef][]Version{}},
		allowed: map[RequestKey][]string{}, badRecords: map[string]uint64{}}
	w.comp.byTarget, w.comp.byStyle = map[string]int{}, map[string]int{}
	w.comp.future, w.comp.late = sz.future, sz.late
	w.setUp(ctx)

	s.logLevel = "info" // bulk runs, failures
	// A slow clear (2 contacts at a time), so that it meets the mover,
	// single requests and faults.
	s.extra = []string{"--bulk-workers", "2"}
	s.startWorkers(2, nil)

	// Every choice is made here, from the seed, before anything runs.
	genRng, ctlRng, faultRng := rngFrom(s.rng), rngFrom(s.rng), rngFrom(s.rng)
	movers := []*mover{{name: "router", rng: rngFrom(s.rng)}, {name: "agent desktop", rng: rngFrom(s.rng)}}
	control := w.controlEvents(ctlRng)
	faults := w.faultEvents(faultRng)
	w.start = time.Now()
	w.until = w.start.Add(sz.run)
	s.logf("mixed workload: %d s of requests at %d/s and moves at %d/s; %d control events, %d faults",
		int(sz.run/time.Second), sz.rate, sz.moveRate, len(control), len(faults))
	var wg sync.WaitGroup
	wg.Go(func() { w.publishRequests(ctx, genRng) })
	for _, m := range movers {
		wg.Go(func() { w.moveContacts(ctx, m) })
	}
	wg.Go(func() { w.runEvents(ctx, control, 0) })
	// Faults at least 1.5 s apart: a worker restarted just before the
	// server dies cannot connect, and exits.
	wg.Go(func() { w.runEvents(ctx, faults, 1500*time.Millisecond) })
	wg.Wait()
	for _, m := range movers {
		w.comp.movers.add(m)
	}
	if ctx.Err() != nil {
		t.Fatalf("the workload ran out of time: %v", ctx.Err())
	}

	s.expect.Instances = []string{inst, lateInst}
	s.expect.History = w.hist.m
	s.expect.BadRecords = w.badRecords
	s.expect.Allowed = w.allowed
	s.expect.Bulks = w.bulks
	s.expect.Outages = w.outages
	s.workload = w.comp.String()
	s.logf("WORKLOAD %s", s.workload)
	nFaults := w.comp.kills + w.comp.pauses + w.comp.restarts
	rep := s.finish(uint64(len(w.bulks)), fmt.Sprintf("%d× kill -9 of a worker, %d× SIGSTOP of a worker for AckWait+1–2 s, %d× kill -9 and restart of the nats-server, at random points",
		w.comp.kills, w.comp.pauses, w.comp.restarts), nFaults)
	if w.comp.dropped > 0 {
		t.Errorf("%d requests dropped by the stream as duplicates: the requests stream must keep no duplicate window", w.comp.dropped)
	}
	if rep.Unreadable != len(w.badRecords) {
		t.Errorf("the checker read %d unreadable records, want the %d planted", rep.Unreadable, len(w.badRecords))
	}
	w.checkIdle(ctx)
}

// setUp seeds acme's contacts, plants the bad records and logs every
// contact's first version.
func (w *mixWorkload) setUp(ctx context.Context) {
	s, rng := w.s, rngFrom(w.s.rng)
	now := time.Now()
	contacts := make([]store.Contact, w.sz.contacts)
	for i := range contacts {
		contacts[i] = randomContact(rng, inst, mixedContactID(i), now)
		w.seeded = append(w.seeded, contacts[i].ContactID)
	}
	w.hot = w.seeded[:w.sz.hot]
	got, err := s.st.SeedContacts(ctx, iter.Seq[store.Contact](slices.Values(contacts)))
	if err != nil || got != len(contacts) {
		s.t.Fatalf("seed %d contacts: seeded %d, %v", len(contacts), got, err)
	}
	w.comp.seeded = len(contacts)
	for _, id := range w.seeded {
		w.pool = append(w.pool, ContactRef{inst, id})
	}

	// Bad data: a body that is not JSON, a key not in the canonical
	// encoding ("=2e" for "."), an unknown state.
	for _, r := range [][2]string{
		{store.ContactKey(inst, badJSONID), `{"contactId": "bad-json", "state": `},
		{inst + ".a=2eb", `{"contactId":"a.b","instanceId":"acme","state":"QUEUED","queueId":"q1","channel":"VOICE"}`},
		{store.ContactKey(inst, badStateID), `{"contactId":"bad-state","instanceId":"acme","state":"PARKED","queueId":"q1","channel":"VOICE"}`},
	} {
		key := r[0]
		rev, err := w.kv.Put(ctx, key, []byte(r[1]))
		if err != nil {
			s.t.Fatalf("plant bad record %s: %v", key, err)
		}
		w.badRecords[key] = rev
	}
	w.comp.bad = len(w.badRecords)

	// The first version of every contact (the idle ones too), as read.
	sent := time.Now()
	var snapshot []store.Contact
	err = s.st.WalkContacts(ctx, store.WalkParams{InstanceID: inst}, func(e store.WalkEntry) error {
		if e.Bad == nil {
			snapshot = append(snapshot, e.Contact)
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("read the seeded contacts: %v", err)
	}
	if want := w.sz.contacts + 200; len(snapshot) != want {
		s.t.Fatalf("read %d seeded contacts, want %d", len(snapshot), want)
	}
	for _, c := range snapshot {
		w.hist.add(ContactRef{inst, c.ContactID}, version(c, c.Revision, 0, sent))
	}
	s.logf("seeded %d contacts (+200 idle), planted %d bad records", w.sz.contacts, len(w.badRecords))
}

// event is something the workload does at a point of the run.
type event struct {
	at   time.Duration
	what string
	do   func(ctx context.Context)
}

// runEvents runs events in order, each at its time or as soon after as
// the previous one (and gap after it) allows.
func (w *mixWorkload) runEvents(ctx context.Context, evs []event, gap time.Duration) {
	var prev time.Time
	for _, ev := range evs {
		at := w.start.Add(ev.at)
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

// at returns a random point in [lo, hi) of the run.
func (w *mixWorkload) at(rng *rand.Rand, lo, hi float64) time.Duration {
	return time.Duration((lo + (hi-lo)*rng.Float64()) * float64(w.sz.run))
}

// bulkFilter returns the filter of acme's i-th bulk request: by state,
// by queue, by channel, by enqueue time, in turn from a random start.
func bulkFilter(rng *rand.Rand, kind int, now time.Time) (events.BulkFilter, string) {
	switch kind % 4 {
	case 0:
		return events.BulkFilter{States: []string{"QUEUED"}, QueueIDs: mixQueues}, "QUEUED in q1–q3"
	case 1:
		q := mixQueues[rng.IntN(len(mixQueues))]
		return events.BulkFilter{States: []string{"QUEUED", "ON_HOLD"}, QueueIDs: []string{q}}, "QUEUED or ON_HOLD in " + q
	case 2:
		ch := []string{"CHAT", "EMAIL"}[rng.IntN(2)]
		return events.BulkFilter{States: []string{"QUEUED", "CONNECTED", "ON_HOLD"}, Channels: []string{ch}}, "any active " + ch
	}
	before := now.Add(-30 * time.Minute).UTC()
	return events.BulkFilter{QueueIDs: mixQueues, EnqueuedBefore: &before}, "QUEUED in q1–q3 enqueued before " + before.Format(time.TimeOnly)
}

// controlEvents are the creation of future contacts, the registration of
// instance late with its contacts, and the bulk requests.
func (w *mixWorkload) controlEvents(rng *rand.Rand) []event {
	s := w.s
	var evs []event
	for i := range w.sz.future {
		c := randomContact(rng, inst, "future-"+strconv.Itoa(i), time.Now())
		evs = append(evs, event{at: w.at(rng, 0.05, 0.8), what: "create " + c.ContactID, do: func(ctx context.Context) {
			if w.create(ctx, c) {
				w.comp.futureCreated++
			}
		}})
	}
	lateContacts := make([]store.Contact, w.sz.late)
	for i := range lateContacts {
		lateContacts[i] = randomContact(rng, lateInst, "l"+strconv.Itoa(i), time.Now())
		lateContacts[i].State = store.StateQueued // a clear of them has work
	}
	regAt := w.at(rng, 0.3, 0.6)
	evs = append(evs, event{at: regAt, what: "register " + lateInst, do: func(ctx context.Context) {
		for _, c := range lateContacts {
			w.create(ctx, c)
		}
		for {
			_, err := s.st.PutInstance(ctx, store.Instance{InstanceID: lateInst})
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		w.registered.Store(true)
		s.logf("instance %q registered with %d contacts", lateInst, len(lateContacts))
	}})
	kinds := rng.Perm(4)
	for i := range w.sz.bulks {
		f, desc := bulkFilter(rng, kinds[i%4], time.Now())
		id := fmt.Sprintf("mix-%d-%d", suite.seed, i)
		at := w.at(rng, 0.1, 0.8)
		w.bulkTimes = append(w.bulkTimes, at)
		evs = append(evs, event{at: at, what: "bulk " + id, do: func(ctx context.Context) { w.bulk(ctx, inst, id, f, desc, false) }})
		w.bulks = append(w.bulks, BulkExpect{InstanceID: inst, BulkID: id, Unreadable: 3})
		if i == 0 {
			// The same bulk request published again after the window:
			// delivered twice, it must stop nothing twice, complete once.
			resend := at + mixWindow + time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
			evs = append(evs, event{at: resend, what: "bulk " + id + " again", do: func(ctx context.Context) { w.bulk(ctx, inst, id, f, desc, true) }})
		}
	}
	lateID := fmt.Sprintf("mix-%d-late", suite.seed)
	lateAt := regAt + time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
	evs = append(evs, event{at: lateAt, what: "bulk " + lateID, do: func(ctx context.Context) {
		w.bulk(ctx, lateInst, lateID, events.BulkFilter{States: []string{"QUEUED"}}, "QUEUED", false)
	}})
	w.bulks = append(w.bulks, BulkExpect{InstanceID: lateInst, BulkID: lateID})
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

// bulk publishes a bulk request (with Nats-Msg-Id, as Publisher.Bulk does).
func (w *mixWorkload) bulk(ctx context.Context, instance, id string, f events.BulkFilter, desc string, again bool) {
	w.burstUntil.Store(time.Now().Add(1500 * time.Millisecond).UnixNano())
	data, _ := json.Marshal(events.BulkRequest{BulkID: id, InstanceID: instance, Filter: f})
	m := &nats.Msg{Subject: events.SubjectBulkRequested, Data: data, Header: nats.Header{}}
	m.Header.Set(events.HeaderMsgID, events.BulkMsgID(instance, id))
	ack, err := w.s.publishSync(ctx, m)
	if err != nil {
		return
	}
	if again {
		w.comp.bulkResends++
	} else {
		w.comp.bulks++
	}
	w.s.logf("bulk request %s:%s (%s) published%s, seq %d, duplicate %v", instance, id, desc,
		map[bool]string{true: " again"}[again], ack.Sequence, ack.Duplicate)
}

// create writes a new contact (a create: only if the key is free) and
// logs it, making sure of the outcome of a write whose acknowledgement is
// lost; then the mover may move it. It returns whether it is created.
func (w *mixWorkload) create(ctx context.Context, c store.Contact) bool {
	ref := ContactRef{c.InstanceID, c.ContactID}
	key := store.ContactKey(c.InstanceID, c.ContactID)
	data, _ := json.Marshal(c)
	sent := time.Now()
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rev, err := w.kv.Create(cctx, key, data)
		cancel()
		if err == nil {
			c.Revision = rev
			w.hist.add(ref, version(c, rev, 0, sent))
			w.addToPool(ref)
			return true
		}
		// It may have landed although the answer was lost: read it back.
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		e, gerr := w.kv.Get(gctx, key)
		cancel()
		switch {
		case gerr == nil && bytes.Equal(e.Value(), data):
			w.hist.add(ref, version(c, e.Revision(), 0, sent))
			w.addToPool(ref)
			return true
		case gerr == nil:
			w.s.t.Errorf("create %s: the key holds another record: %q", key, e.Value())
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Unknown; logged so that the checker knows it may exist.
	w.hist.add(ref, version(c, 0, 0, sent))
	return false
}

func (w *mixWorkload) addToPool(ref ContactRef) {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	w.pool = append(w.pool, ref)
}

// pick picks a contact to move: one of the hot ones half of the time,
// so that the two movers meet.
func (w *mixWorkload) pick(rng *rand.Rand) ContactRef {
	if rng.IntN(2) == 0 {
		return ContactRef{inst, w.hot[rng.IntN(len(w.hot))]}
	}
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	return w.pool[rng.IntN(len(w.pool))]
}

// revisionConflict reports whether a KV write failed its revision check.
func revisionConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// unacked is a write without an acknowledgement: it may have landed.
type unacked struct {
	i    int // in the history
	data []byte
}

// mover is one service that moves contacts, and its counts.
type mover struct {
	name string
	rng  *rand.Rand

	moves, conflicts, unacked, resolved, refused, ended int
	burst                                               int // moves during bursts
}

func (m *mover) add(o *mover) {
	m.moves += o.moves
	m.conflicts += o.conflicts
	m.unacked += o.unacked
	m.resolved += o.resolved
	m.refused += o.refused
	m.ended += o.ended
	m.burst += o.burst
}

// moveContacts moves contacts between states and queues, as an ACD's
// router or an agent's desktop would: read, change, write back
// conditioned on the revision read; on a conflict read again and maybe try
// again. ENDED contacts are left alone. Each of the two movers moves at
// half the rate.
func (w *mixWorkload) moveContacts(ctx context.Context, mv *mover) {
	rng := mv.rng
	tick := time.NewTicker(2 * time.Second / time.Duration(w.sz.moveRate))
	defer tick.Stop()
	ended := map[ContactRef]bool{}
	pending := map[ContactRef][]unacked{}
	for time.Now().Before(w.until) {
		bursting := time.Now().UnixNano() < w.burstUntil.Load()
		if !bursting {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		ref := w.pick(rng)
		if ended[ref] {
			continue
		}
		key := store.ContactKey(ref.Instance, ref.ContactID)
	attempts:
		for range 3 {
			gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			e, err := w.kv.Get(gctx, key)
			cancel()
			if err != nil {
				break
			}
			// An unacknowledged write read back: it landed.
			for j, u := range pending[ref] {
				if bytes.Equal(e.Value(), u.data) {
					w.hist.resolve(ref, u.i, e.Revision())
					mv.resolved++
					pending[ref] = slices.Delete(pending[ref], j, j+1)
					break
				}
			}
			var c store.Contact
			if err := json.Unmarshal(e.Value(), &c); err != nil {
				w.s.t.Errorf("%s: %s holds %q: %v", mv.name, key, e.Value(), err)
				break
			}
			if c.State == store.StateEnded {
				ended[ref] = true
				mv.ended++
				break
			}
			// An agent or router takes a moment to decide: the contact
			// may change meanwhile (the write then conflicts).
			think := 15 * time.Millisecond
			if bursting {
				think = 2 * time.Millisecond
			}
			time.Sleep(time.Duration(rng.Int64N(int64(think))))
			now := time.Now().UTC()
			c.State = mixStates[rng.IntN(len(mixStates))]
			if q := mixQueues[rng.IntN(len(mixQueues))]; rng.IntN(2) == 0 && q != c.QueueID {
				c.QueueID, c.EnqueuedAt = q, now // re-enqueued elsewhere
			}
			c.UpdatedAt = now
			data, _ := json.Marshal(c)
			sent := time.Now()
			uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			rev, err := w.kv.Update(uctx, key, data, e.Revision())
			cancel()
			switch {
			case err == nil:
				w.hist.add(ref, version(c, rev, e.Revision(), sent))
				mv.moves++
				if bursting {
					mv.burst++
				}
				break attempts
			case revisionConflict(err):
				mv.conflicts++
				if rng.IntN(2) == 0 {
					break attempts // give up; another move comes
				}
			case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
				mv.refused++ // never reached the stream
				break attempts
			default:
				i := w.hist.add(ref, version(c, 0, e.Revision(), sent))
				pending[ref] = append(pending[ref], unacked{i, data})
				mv.unacked++
				break attempts
			}
		}
	}
}

// target is what a single request names.
type target struct {
	instance, contact, kind string
	allowed                 []string
}

func (w *mixWorkload) pickTarget(rng *rand.Rand) target {
	stopOrGone := []string{OutcomeStopped, string(events.ReasonContactNotFound)}
	switch p := rng.Float64(); {
	case p < 0.15:
		return target{inst, w.hot[rng.IntN(len(w.hot))], "existing", stopOrGone}
	case p < 0.45:
		return target{inst, w.seeded[rng.IntN(len(w.seeded))], "existing", stopOrGone}
	case p < 0.60:
		return target{inst, "future-" + strconv.Itoa(rng.IntN(w.sz.future)), "future", stopOrGone}
	case p < 0.70:
		return target{inst, "ghost-" + strconv.Itoa(rng.IntN(1000)), "never existing", []string{string(events.ReasonContactNotFound)}}
	case p < 0.90:
		return target{lateInst, "l" + strconv.Itoa(rng.IntN(w.sz.late)), "late", stopOrGone}
	}
	switch rng.IntN(3) {
	case 0:
		return target{inst, badJSONID, "bad record", []string{string(events.ReasonInternalError)}}
	case 1:
		return target{inst, badStateID, "bad record", []string{string(events.ReasonInternalError)}}
	}
	// Its record is stored under a key that is not its canonical one: the
	// canonical key holds nothing.
	return target{inst, nonCanonical, "non-canonical key", []string{string(events.ReasonContactNotFound)}}
}

// published is a request message published, for resends.
type published struct {
	m         *nats.Msg
	requestID string
	instance  string
	at        time.Time
}

// publishRequests publishes single requests at the workload's rate until
// the run ends, then the resends still due.
func (w *mixWorkload) publishRequests(ctx context.Context, rng *rand.Rand) {
	type delayed struct {
		due time.Time
		m   *nats.Msg
	}
	var sent []published // with an identity that a resend repeats
	var later []delayed
	sendDue := func(all bool) {
		for len(later) > 0 {
			i := slices.IndexFunc(later, func(d delayed) bool { return all || !time.Now().Before(d.due) })
			if i < 0 {
				return
			}
			if d := time.Until(later[i].due); d > 0 {
				time.Sleep(d)
			}
			if ack := w.send(ctx, later[i].m); ack != nil && ack.Duplicate {
				w.comp.dropped++
			}
			later = slices.Delete(later, i, i+1)
		}
	}
	interval := time.Second / time.Duration(w.sz.rate)
	next := time.Now()
	n := 0
	for time.Now().Before(w.until) && ctx.Err() == nil {
		sendDue(false)
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else if d < -time.Second {
			next = time.Now() // held up (a server restart): no burst
		}
		switch p := rng.Float64(); {
		case p < 0.10 && len(sent) > 0:
			// One of the last messages again at once: stored again (the
			// requests stream keeps no duplicate window) and answered
			// from the request's durable outcome.
			last := sent[max(0, len(sent)-1-rng.IntN(3))]
			if time.Since(last.at) > mixWindow/4 {
				continue
			}
			if ack := w.send(ctx, last.m); ack != nil {
				w.comp.resendNow++
				if ack.Duplicate {
					w.comp.dropped++
				}
			}
		case p < 0.20 && len(sent) > 0:
			// The same message after the window: stored again.
			later = append(later, delayed{time.Now().Add(mixWindow + 500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))),
				sent[rng.IntN(len(sent))].m})
			w.comp.resendLate++
		case p < 0.24 && len(sent) > 0:
			// A requestId used before, for another contact: another request.
			old := sent[rng.IntN(len(sent))]
			if old.requestID == "" {
				continue
			}
			tg := w.pickTarget(rng)
			if tg.instance != old.instance || tg.contact == "" {
				continue
			}
			w.publishNew(ctx, tg, old.requestID, "")
			w.comp.reused++
		default:
			n++
			tg := w.pickTarget(rng)
			var id, msgID, style string
			switch q := rng.Float64(); {
			case q < 0.55:
				id, style = fmt.Sprintf("r-%d", n), "requestId and Nats-Msg-Id"
				msgID = events.RequestMsgID(tg.instance, id)
			case q < 0.75:
				id, style = fmt.Sprintf("r-%d", n), "requestId only"
			case q < 0.88:
				msgID, style = fmt.Sprintf("m-%d", n), "Nats-Msg-Id only"
			default:
				style = "neither (stream sequence)"
			}
			m := w.publishNew(ctx, tg, id, msgID)
			if m == nil {
				continue
			}
			w.comp.byStyle[style]++
			w.comp.byTarget[tg.kind]++
			if id != "" || msgID != "" {
				sent = append(sent, published{m, id, tg.instance, time.Now()})
			}
		}
	}
	sendDue(true)
}

// publishNew publishes a request to tg with requestId id and Nats-Msg-Id
// msgID (either may be empty) and notes the outcomes it may have.
func (w *mixWorkload) publishNew(ctx context.Context, tg target, id, msgID string) *nats.Msg {
	body, _ := json.Marshal(events.StopRequest{RequestID: id, ContactID: tg.contact, InstanceID: tg.instance})
	m := &nats.Msg{Subject: events.StopRequestedSubject(tg.instance), Data: body, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(events.HeaderMsgID, msgID)
	}
	allowed := tg.allowed
	if tg.instance == lateInst && !w.registered.Load() {
		allowed = append(slices.Clone(allowed), string(events.ReasonResourceNotFound))
		w.comp.requestsLateBefore++
	}
	if identity := events.RequestIdentity(id, msgID, 0); identity != "seq-0" {
		k := RequestKey{tg.instance, tg.contact, identity}
		w.allowedMu.Lock()
		if _, ok := w.allowed[k]; !ok {
			w.allowed[k] = allowed
		}
		w.allowedMu.Unlock()
	}
	if w.send(ctx, m) == nil {
		return nil
	}
	w.comp.requests++
	return m
}

// send publishes a request until JetStream acknowledges it.
func (w *mixWorkload) send(ctx context.Context, m *nats.Msg) *jetstream.PubAck {
	ack, err := w.s.publishSync(ctx, m)
	if err != nil {
		return nil
	}
	return ack
}

// faultEvents are the faults, at random points of the run.
func (w *mixWorkload) faultEvents(rng *rand.Rand) []event {
	s := w.s
	var evs []event
	// Half of the faults come while a bulk request runs (shortly after
	// one is published), the others anywhere.
	when := func() time.Duration {
		if rng.IntN(2) == 0 {
			return w.bulkTimes[rng.IntN(len(w.bulkTimes))] + time.Duration(30+rng.IntN(250))*time.Millisecond
		}
		return w.at(rng, 0.1, 0.85)
	}
	for range w.sz.kills {
		pick, down := rng.IntN(2), time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
		evs = append(evs, event{at: when(), what: "kill", do: func(context.Context) {
			p := s.workers[pick]
			f := s.inject("kill -9 %s; restart after %s", p.name, down.Round(time.Millisecond))
			if _, err := p.kill(); err != nil {
				s.t.Error(err)
				return
			}
			w.comp.kills++
			time.Sleep(down)
			if err := p.start(); err != nil {
				s.t.Errorf("restart %s: %v", p.name, err)
				return
			}
			s.heal(f, "%s restarted (pid %d)", p.name, p.pid())
		}})
	}
	for range w.sz.pauses {
		pick := rng.IntN(2)
		d := ackWait + time.Second + time.Duration(rng.Int64N(int64(time.Second)))
		evs = append(evs, event{at: when(), what: "pause", do: func(context.Context) {
			p := s.workers[pick]
			f := s.inject("SIGSTOP %s for %s (AckWait %s)", p.name, d.Round(time.Millisecond), ackWait)
			if _, err := p.pause(); err != nil {
				s.t.Error(err)
				return
			}
			w.comp.pauses++
			time.Sleep(d)
			if _, err := p.resume(); err != nil {
				s.t.Error(err)
			}
			s.heal(f, "SIGCONT %s", p.name)
		}})
	}
	for range w.sz.restarts {
		down := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		evs = append(evs, event{at: when(), what: "restart", do: func(context.Context) {
			node := s.nats.nodes[0]
			f := s.inject("kill -9 nats-server; restart after %s on the same store", down.Round(time.Millisecond))
			// The outage: from the server's exit (kill waits for it) to
			// its restart (nothing is stored before the new process
			// starts).
			if _, err := node.p.kill(); err != nil {
				s.t.Error(err)
				return
			}
			from := time.Now()
			w.comp.restarts++
			time.Sleep(down)
			if err := node.p.start(); err != nil {
				s.t.Errorf("restart nats-server: %v", err)
				return
			}
			w.outages = append(w.outages, Outage{From: from, To: time.Now(), What: "nats-server down"})
			if err := s.nats.healthy(2 * time.Minute); err != nil {
				s.t.Error(err)
			}
			s.heal(f, "nats-server restarted and healthy")
		}})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

// checkIdle checks that the idle contacts, which nothing targets (every
// bulk filter names queues q1–q3 or a channel they do not have), are
// untouched.
func (w *mixWorkload) checkIdle(ctx context.Context) {
	touched, seen := 0, 0
	err := w.s.st.WalkContacts(ctx, store.WalkParams{InstanceID: inst}, func(e store.WalkEntry) error {
		if e.Bad != nil || !strings.HasPrefix(e.Contact.ContactID, "idle") {
			return nil
		}
		seen++
		if e.Contact.State != store.StateQueued || e.Contact.QueueID != "idle" {
			touched++
		}
		return nil
	})
	switch {
	case err != nil:
		w.s.t.Errorf("read the idle contacts: %v", err)
	case seen != 200 || touched != 0:
		w.s.t.Errorf("idle contacts: %d found, %d changed; want 200 untouched", seen, touched)
	}
}
