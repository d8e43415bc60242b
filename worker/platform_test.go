package worker_test

// The platform path: stops of an instance bound to Amazon Connect go to the
// platform (the fake of platform/amazonconnect/connecttest, driven through
// the real AWS SDK adapter) with an intent recorded before the call and
// the outcome after. Each crash point of docs/design.md ("Platforms") is a
// test here.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/connect/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/amazonconnect"
	"github.com/contactstop/contactstop/platform/amazonconnect/connecttest"
	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/registry"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

const connectInstance = "11111111-2222-3333-4444-555555555555"

// bound is a test's fake Amazon Connect and the worker config that ends
// acme's contacts there.
type bound struct {
	srv *connecttest.Server
	cfg worker.Config
}

// bind binds instance acme to a fake Amazon Connect instance with the
// given budget and returns a worker config that uses it.
func (e *env) bind(rate float64, burst int, opts ...connecttest.Option) *bound {
	e.t.Helper()
	return e.bindWrapped(nil, rate, burst, opts...)
}

// bindWrapped is bind with the adapter wrapped (when wrap is not nil), so
// that a test can hold a call back to script an interleaving.
func (e *env) bindWrapped(wrap func(platform.Platform) platform.Platform, rate float64, burst int, opts ...connecttest.Option) *bound {
	e.t.Helper()
	ctx := e.t.Context()
	srv := connecttest.New(e.t, append([]connecttest.Option{connecttest.WithInstance(connectInstance)}, opts...)...)
	_, err := e.st.PutInstance(ctx, store.Instance{InstanceID: inst, Binding: &store.Binding{
		Platform: store.PlatformAmazonConnect, ConnectInstanceID: connectInstance, Region: srv.Region,
		Endpoint: srv.URL(), Rate: rate, Burst: burst}})
	require.NoError(e.t, err)
	bs, err := budget.Open(ctx, e.js, budget.Config{})
	require.NoError(e.t, err)
	e.t.Cleanup(bs.Close)
	reg, err := registry.New(registry.Config{Instances: e.st, Budgets: bs,
		New: func(ctx context.Context, b store.Binding, onAttempt func(string)) (platform.Platform, error) {
			p, err := amazonconnect.New(ctx, amazonconnect.Config{ConnectInstanceID: b.ConnectInstanceID, Region: b.Region,
				Endpoint: b.Endpoint, Credentials: srv.Credentials(), CallTimeout: 500 * time.Millisecond, OnAttempt: onAttempt})
			if err != nil || wrap == nil {
				return p, err
			}
			return wrap(p), nil
		}})
	require.NoError(e.t, err)
	cfg := fastConfig(e.t)
	cfg.Platforms = reg
	return &bound{srv: srv, cfg: cfg}
}

// contact adds an active contact to the fake and, unless unseen, a record
// of it to the store.
func (b *bound) contact(e *env, id string, queued, unseen bool) {
	e.t.Helper()
	c := connecttest.Contact{ID: id, Channel: types.ChannelVoice}
	if queued {
		c.QueueID, c.EnqueuedAt = "q1", time.Now().Add(-time.Minute)
	} else {
		c.AgentConnected = true
	}
	b.srv.AddContact(connectInstance, c)
	if !unseen {
		state := store.StateConnected
		if queued {
			state = store.StateQueued
		}
		_, err := e.st.PutContact(e.t.Context(), store.Contact{InstanceID: inst, ContactID: id, State: state,
			QueueID: c.QueueID, Channel: store.ChannelVoice, EnqueuedAt: c.EnqueuedAt})
		require.NoError(e.t, err)
	}
}

// stopCalls counts the StopContact calls the fake received for contactID,
// and those answered 200.
func (b *bound) stopCalls(contactID string) (all, ok int) {
	for _, c := range b.srv.Calls() {
		if c.Op == connecttest.OpStopContact && c.ContactID == contactID {
			all++
			if c.Status == 200 {
				ok++
			}
		}
	}
	return all, ok
}

// requireEndedBy checks the store's record of contactID: ENDED by
// requestID, with no intent left.
func (e *env) requireEndedBy(contactID, requestID string) store.Contact {
	e.t.Helper()
	c, err := e.st.GetContact(e.t.Context(), inst, contactID)
	require.NoError(e.t, err)
	require.Equal(e.t, store.StateEnded, c.State, "%s", contactID)
	require.Equal(e.t, requestID, c.EndedBy, "%s", contactID)
	require.Nil(e.t, c.Intent, "%s: the intent is replaced by the outcome", contactID)
	return c
}

func TestPlatformStops(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	b := e.bind(50, 50)
	b.contact(e, "known", true, false)
	b.contact(e, "unseen", false, true)
	e.start(b.cfg, nil)

	req := func(requestID, contactID, reason string) []byte {
		return body(t, events.StopRequest{RequestID: requestID, ContactID: contactID, InstanceID: inst, DisconnectReason: reason})
	}
	e.publish("contact.stop.requested.acme", req("r-1", "known", "EMERGENCY"), nil)
	e.publish("contact.stop.requested.acme", req("r-2", "unseen", ""), nil)
	e.publish("contact.stop.requested.acme", req("r-3", "nowhere", ""), nil)
	rs := byRequest(t, e.waitIdle(3))

	s := rs["r-1"].result.Stopped
	require.NotNil(t, s, "r-1: %+v", rs["r-1"].result)
	require.Equal(t, string(store.StateQueued), string(s.PreviousState))
	e.requireEndedBy("known", "r-1")
	got, _ := b.srv.Contact(connectInstance, "known")
	require.True(t, got.Stopped)
	require.Equal(t, "EMERGENCY", got.DisconnectReason, "the reason reaches the platform")

	// The platform knows its own contacts: the store gains the record.
	s = rs["r-2"].result.Stopped
	require.NotNil(t, s, "r-2: %+v", rs["r-2"].result)
	require.Equal(t, string(store.StateConnected), string(s.PreviousState))
	e.requireEndedBy("unseen", "r-2")

	requireFailed(t, rs["r-3"], events.ReasonContactNotFound)
	_, err := e.st.GetContact(t.Context(), inst, "nowhere")
	require.ErrorIs(t, err, store.ErrContactNotFound, "no record for a contact nobody has")

	for _, id := range []string{"known", "unseen"} {
		require.Equal(t, 1, b.srv.StopEffects(id))
		all, _ := b.stopCalls(id)
		require.Equal(t, 1, all, "%s: one StopContact call", id)
	}
}

// Every crash point of the intent protocol: the request is finished by a
// later attempt or delivery, with exactly one result, and the contact gets
// no second StopContact.
func TestPlatformCrashPoints(t *testing.T) {
	t.Parallel()
	intentOf := func(e *env, id, requestID string, at time.Time) {
		c, err := e.st.GetContact(t.Context(), inst, id)
		require.NoError(t, err)
		c.Intent = &store.Intent{RequestID: requestID, At: at}
		_, err = e.st.WriteContact(t.Context(), c, c.Revision)
		require.NoError(t, err)
	}
	cases := []struct {
		name string
		// prepare scripts the crash; calls is how many StopContact calls
		// the fake must have seen in all.
		prepare func(e *env, b *bound)
		calls   int
		want    events.ReasonCode // "" for stopped
	}{
		{name: "crash after the intent, before the call", calls: 1, prepare: func(e *env, b *bound) {
			intentOf(e, "c-1", "r-1", time.Now().Add(-time.Second))
		}},
		{name: "the platform stopped it, its answer lost", calls: 1, prepare: func(e *env, b *bound) {
			b.srv.LoseNext(connecttest.OpStopContact, 1)
		}},
		{name: "the platform stopped it, its answer never came (timeout)", calls: 1, prepare: func(e *env, b *bound) {
			b.srv.HangNext(connecttest.OpStopContact, 1)
		}},
		{name: "crash after the answer, before the outcome was recorded", calls: 0, prepare: func(e *env, b *bound) {
			intentOf(e, "c-1", "r-1", time.Now().Add(-time.Second))
			require.True(t, b.srv.Disconnect(connectInstance, "c-1"))
		}},
		{name: "disconnected before the intent", calls: 0, want: events.ReasonContactNotFound, prepare: func(e *env, b *bound) {
			require.True(t, b.srv.Disconnect(connectInstance, "c-1"))
			time.Sleep(1500 * time.Millisecond) // beyond the allowed skew
			intentOf(e, "c-1", "r-1", time.Now())
		}},
		{name: "disconnected before the request, the inventory behind", calls: 1, want: events.ReasonContactNotFound, prepare: func(e *env, b *bound) {
			require.True(t, b.srv.Disconnect(connectInstance, "c-1"))
		}},
		{name: "throttled, then a 500, then a dropped connection", calls: 4, prepare: func(e *env, b *bound) {
			b.srv.FailNext(connecttest.OpStopContact, 1, connecttest.Throttling("1"))
			b.srv.FailNext(connecttest.OpStopContact, 1, connecttest.InternalError())
			b.srv.FailNext(connecttest.OpStopContact, 1, connecttest.DropConnection())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{})
			b := e.bind(50, 50)
			b.contact(e, "c-1", true, false)
			tc.prepare(e, b)
			e.start(b.cfg, nil)
			e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
			rs := e.waitIdle(1)
			require.Len(t, rs, 1, "one result")
			if tc.want == "" {
				require.NotNil(t, rs[0].result.Stopped, "%+v", rs[0].result)
				e.requireEndedBy("c-1", "r-1")
			} else {
				requireFailed(t, rs[0], tc.want)
				c, err := e.st.GetContact(t.Context(), inst, "c-1")
				require.NoError(t, err)
				require.Equal(t, store.StateEnded, c.State)
				require.Equal(t, store.EndedByPlatform, c.EndedBy)
				require.Nil(t, c.Intent)
			}
			all, ok := b.stopCalls("c-1")
			require.Equal(t, tc.calls, all, "StopContact calls")
			require.LessOrEqual(t, ok, 1)
			require.LessOrEqual(t, b.srv.StopEffects("c-1"), 1)
		})
	}
}

// Crash after the outcome was recorded, before the result: the
// redelivery publishes the recorded result and calls nothing.
func TestPlatformCrashBeforeResult(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	b := e.bind(50, 50)
	b.contact(e, "c-1", true, false)
	w := e.start(b.cfg, nil)
	var once sync.Once
	worker.SetCrashHooks(w, func(*worker.Request, events.Result) bool {
		crashed := false
		once.Do(func() { crashed = true })
		return crashed
	}, nil)
	e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
	rs := e.waitIdle(1)
	require.Len(t, rs, 1)
	require.NotNil(t, rs[0].result.Stopped)
	all, _ := b.stopCalls("c-1")
	require.Equal(t, 1, all)
}

// Two requests for each contact, at once: one is stopped, the other gets
// CONTACT_NOT_FOUND, and no contact gets two StopContact calls that
// succeed.
func TestPlatformTwoRequestsOneContact(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	b := e.bind(100, 100, connecttest.WithQuota(connecttest.OpStopContact, 100, 100))
	const n = 20
	for i := range n {
		b.contact(e, fmt.Sprint("c-", i), i%2 == 0, i%3 == 0)
	}
	cfg := b.cfg
	cfg.BatchSize = 4
	e.start(cfg, nil)
	e.start(cfg, nil) // a second worker in the same process: two pipelines race
	for i := range n {
		e.publish("contact.stop.requested.acme", e.request(fmt.Sprint("a-", i), fmt.Sprint("c-", i)), nil)
		e.publish("contact.stop.requested.acme", e.request(fmt.Sprint("b-", i), fmt.Sprint("c-", i)), nil)
	}
	rs := byRequest(t, e.waitIdle(2*n))
	for i := range n {
		id := fmt.Sprint("c-", i)
		a, bb := rs[fmt.Sprint("a-", i)], rs[fmt.Sprint("b-", i)]
		stopped := 0
		for _, r := range []stored{a, bb} {
			if r.result.Stopped != nil {
				stopped++
				e.requireEndedBy(id, r.result.Stopped.RequestID)
			} else {
				requireFailed(t, r, events.ReasonContactNotFound)
			}
		}
		require.Equal(t, 1, stopped, "%s: exactly one request stopped it", id)
		_, ok := b.stopCalls(id)
		require.Equal(t, 1, ok, "%s: one successful StopContact", id)
		require.Equal(t, 1, b.srv.StopEffects(id))
	}
}

// stopCarriedOut waits until the fake has carried out a stop of the
// contact, or ctx ends.
func stopCarriedOut(ctx context.Context, srv *connecttest.Server, contactID string) error {
	for srv.StopEffects(contactID) == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// heldDescribes is a platform whose DescribeContact calls after the first
// wait until the fake has carried out a stop of the contact, and then,
// when gone is set, answer that the platform no longer has it (as
// platforms that forget ended contacts do).
type heldDescribes struct {
	platform.Platform
	srv   *connecttest.Server
	gone  bool
	calls atomic.Int32
}

func (h *heldDescribes) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	if h.calls.Add(1) == 1 {
		return h.Platform.DescribeContact(ctx, contactID)
	}
	if err := stopCarriedOut(ctx, h.srv, contactID); err != nil {
		return platform.Status{}, err
	}
	if h.gone {
		return platform.Status{}, &platform.Error{Kind: platform.NotFound, Op: "DescribeContact", Code: "ResourceNotFoundException", Status: 404}
	}
	return h.Platform.DescribeContact(ctx, contactID)
}

// Two messages of one request (a resend with another Nats-Msg-Id) for a
// contact the store has not seen, at once: both ask the platform; the
// first records its intent and stops the contact, its answer lost; the
// second's description comes after that stop and reports the contact
// disconnected (or gone). That disconnection is the request's own stop:
// the request is stopped, once, and no intent is left.
func TestPlatformUnseenContactTwoMessagesOfOneRequest(t *testing.T) {
	t.Parallel()
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("gone %v", gone), func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{})
			var b *bound
			b = e.bindWrapped(func(p platform.Platform) platform.Platform {
				return &heldDescribes{Platform: p, srv: b.srv, gone: gone}
			}, 50, 50)
			b.contact(e, "c-1", true, true)
			b.srv.HangNext(connecttest.OpStopContact, 1)
			all := b.stopTwoMessagesOfOneRequest(t, e)
			require.Equal(t, 1, all, "one StopContact call")
			require.Equal(t, 1, b.srv.StopEffects("c-1"))
		})
	}
}

// stopTwoMessagesOfOneRequest publishes request r-1 for c-1 twice, under
// two message ids, starts a worker taking them one per goroutine, and
// requires one result, a stop by r-1. It returns the StopContact calls.
func (b *bound) stopTwoMessagesOfOneRequest(t *testing.T, e *env) int {
	t.Helper()
	e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), map[string]string{events.HeaderMsgID: "m-1"})
	e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), map[string]string{events.HeaderMsgID: "m-2"})
	cfg := b.cfg
	cfg.BatchSize = 1 // the two messages in two goroutines, at once
	e.start(cfg, nil)
	rs := e.waitIdle(1)
	require.Len(t, rs, 1, "one result: %+v", rs)
	require.NotNil(t, rs[0].result.Stopped, "%+v", rs[0].result)
	e.requireEndedBy("c-1", "r-1")
	all, _ := b.stopCalls("c-1")
	return all
}

// heldStops is a platform whose first StopContact call waits until the
// fake has carried out another stop of the contact, and is then made.
type heldStops struct {
	platform.Platform
	srv   *connecttest.Server
	calls atomic.Int32
}

func (h *heldStops) StopContact(ctx context.Context, contactID, reason string) error {
	if h.calls.Add(1) == 1 {
		if err := stopCarriedOut(ctx, h.srv, contactID); err != nil {
			return err
		}
	}
	return h.Platform.StopContact(ctx, contactID, reason)
}

// Two messages of one request at once (a redelivery while the first is
// still in hand elsewhere, or a resend): the first writes the request's
// intent and calls; the second finds that intent, asks the platform (still
// active) and stops the contact before the first's call arrives, whose
// answer is then "not active". The first attempt wrote the intent, yet the
// contact was stopped by its request: stopped, once, and not recorded as a
// hang-up (fault suite: platform_clear_genesys, seed 877105716).
func TestPlatformStopNotFoundAfterAnotherMessageStopped(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	var b *bound
	b = e.bindWrapped(func(p platform.Platform) platform.Platform {
		return &heldStops{Platform: p, srv: b.srv}
	}, 50, 50)
	b.contact(e, "c-1", true, false)
	// The second message's stop takes effect and its answer is lost: it
	// records nothing, and the first's "not active" comes first.
	b.srv.LoseNext(connecttest.OpStopContact, 1)
	all := b.stopTwoMessagesOfOneRequest(t, e)
	require.Equal(t, 2, all, "both messages called")
	require.Equal(t, 1, b.srv.StopEffects("c-1"))
}

// A budget above the platform's quota: the platform throttles, every
// replica slows down, and nothing reaches a result as throttled.
func TestPlatformThrottling(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{AckWait: 10 * time.Second})
	b := e.bind(40, 20, connecttest.WithQuota(connecttest.OpStopContact, 10, 5))
	const n = 40
	for i := range n {
		b.contact(e, fmt.Sprint("c-", i), true, false)
	}
	cfg := b.cfg
	cfg.AckWait = 10 * time.Second
	e.start(cfg, nil)
	for i := range n {
		e.publish("contact.stop.requested.acme", e.request(fmt.Sprint("r-", i), fmt.Sprint("c-", i)), nil)
	}
	rs := e.waitIdle(n)
	require.Len(t, rs, n)
	for _, r := range rs {
		require.NotNil(t, r.result.Stopped, "%+v", r.result)
	}
	throttled := 0
	for _, c := range b.srv.Calls() {
		if c.Code == "ThrottlingException" {
			throttled++
		}
	}
	require.Positive(t, throttled, "the platform throttled some calls")
	t.Logf("%d StopContact calls throttled by the platform", throttled)
}

// The platform refuses for good: the intent is withdrawn and the request
// answered with the platform's reason; contactstop's own credentials
// refused: INTERNAL_ERROR (retryable) after the attempts, the contact
// untouched.
func TestPlatformRefusals(t *testing.T) {
	t.Parallel()
	t.Run("unknown Connect instance", func(t *testing.T) {
		t.Parallel()
		e := setup(t, worker.TopologyConfig{})
		b := e.bind(50, 50)
		_, err := e.st.PutInstance(t.Context(), store.Instance{InstanceID: inst, Binding: &store.Binding{
			Platform: store.PlatformAmazonConnect, ConnectInstanceID: "not-there", Region: b.srv.Region,
			Endpoint: b.srv.URL(), Rate: 50, Burst: 50}})
		require.NoError(t, err)
		e.seed("c-1")
		e.start(b.cfg, nil)
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		rs := e.waitIdle(1)
		requireFailed(t, rs[0], events.ReasonResourceNotFound)
		c, err := e.st.GetContact(t.Context(), inst, "c-1")
		require.NoError(t, err)
		require.Equal(t, store.StateQueued, c.State)
		require.Nil(t, c.Intent, "the intent is withdrawn")
	})
	t.Run("invalid parameter", func(t *testing.T) {
		t.Parallel()
		e := setup(t, worker.TopologyConfig{})
		b := e.bind(50, 50)
		b.contact(e, "c-1", true, false)
		b.srv.FailNext(connecttest.OpStopContact, 1, connecttest.InvalidParameter())
		e.start(b.cfg, nil)
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		requireFailed(t, e.waitIdle(1)[0], events.ReasonInvalidParameter)
	})
	t.Run("access denied", func(t *testing.T) {
		t.Parallel()
		e := setup(t, worker.TopologyConfig{})
		b := e.bind(50, 50)
		b.contact(e, "c-1", true, false)
		b.srv.FailNext(connecttest.OpStopContact, 1000, connecttest.AccessDenied())
		e.start(b.cfg, nil)
		e.publish("contact.stop.requested.acme", e.request("r-1", "c-1"), nil)
		rs := e.waitIdle(1)
		requireFailed(t, rs[0], events.ReasonInternalError)
		require.True(t, rs[0].result.Failed.Retryable, "contactstop's own credentials: try again once fixed")
		got, _ := b.srv.Contact(connectInstance, "c-1")
		require.True(t, got.Active())
	})
}

// A clear of a bound instance selects from the store's inventory and stops
// each contact on the platform, within the budget; a contact the platform
// already disconnected is skipped.
func TestPlatformBulkClear(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	b := e.bind(100, 100, connecttest.WithQuota(connecttest.OpStopContact, 100, 100))
	const n = 30
	for i := range n {
		b.contact(e, fmt.Sprint("q-", i), true, false)
	}
	b.contact(e, "talking", false, false)
	require.True(t, b.srv.Disconnect(connectInstance, "q-0"))
	e.start(b.cfg, nil)
	rc := e.bulk(events.BulkRequest{BulkID: "clear-1", InstanceID: inst, Filter: events.BulkFilter{States: []string{"QUEUED"}}})
	require.False(t, rc.Duplicate)
	_, done := e.waitBulk("clear-1")
	require.Equal(t, n, done.Matched)
	require.Equal(t, n-1, done.Stopped)
	require.Equal(t, 1, done.Skipped, "the contact the customer hung up on")
	for i := 1; i < n; i++ {
		id := fmt.Sprint("q-", i)
		require.Equal(t, 1, b.srv.StopEffects(id), id)
		e.requireEndedBy(id, "clear-1/"+id)
	}
	got, _ := b.srv.Contact(connectInstance, "talking")
	require.True(t, got.Active(), "outside the filter")
}

// An emergency broadcast for a bound instance clears its queued contacts on
// the platform, with the EMERGENCY disconnect reason, and leaves the
// contacts with agents alone.
func TestPlatformEmergency(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{Emergency: true})
	b := e.bind(100, 100, connecttest.WithQuota(connecttest.OpStopContact, 100, 100))
	for i := range 20 {
		b.contact(e, fmt.Sprint("q-", i), true, false)
	}
	b.contact(e, "talking", false, false)
	cfg := b.cfg
	cfg.Emergency = true
	e.start(cfg, nil)
	e.publish(events.EmergencySubject(inst), []byte(`{"queueIds":["q1"],"message":"fire alarm"}`), map[string]string{events.HeaderMsgID: "alarm-1"})
	_, done := e.waitBulk("emergency-alarm-1")
	require.Equal(t, 20, done.Stopped)
	for i := range 20 {
		got, _ := b.srv.Contact(connectInstance, fmt.Sprint("q-", i))
		require.False(t, got.Active())
		require.Equal(t, "EMERGENCY", got.DisconnectReason)
		require.Equal(t, 1, b.srv.StopEffects(got.ID))
	}
	got, _ := b.srv.Contact(connectInstance, "talking")
	require.True(t, got.Active())
}

// Singles waiting behind a slow budget longer than a delivery lasts are
// kept alive: none is handed back or redelivered meanwhile (another worker
// would take it up while it is in hand), and each is answered once, with
// one StopContact.
func TestPlatformBudgetWaitKeepsDeliveriesAlive(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	b := e.bind(2, 1)
	const n = 8
	for i := range n {
		b.contact(e, fmt.Sprint("c-", i), false, false)
	}
	reg := prometheus.NewRegistry()
	cfg := b.cfg
	cfg.Metrics = worker.NewMetrics(reg, e.js)
	e.start(cfg, nil) // AckWait 2 s; eight stops at 2 a second take 3.5 s
	for i := range n {
		e.publish("contact.stop.requested.acme", e.request(fmt.Sprint("r-", i), fmt.Sprint("c-", i)), nil)
	}
	rs := e.waitIdle(n)
	require.Len(t, rs, n)
	for _, r := range rs {
		require.NotNil(t, r.result.Stopped, "%+v", r.result)
	}
	require.Zero(t, metricValue(t, reg, "contactstop_redeliveries_total", nil), "no delivery was handed back")
	for i := range n {
		all, _ := b.stopCalls(fmt.Sprint("c-", i))
		require.Equal(t, 1, all)
	}
}
