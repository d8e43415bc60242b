package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/natstest"
)

// eventStore opens a store on a fresh in-process server.
func eventStore(t *testing.T) *KV {
	t.Helper()
	_, js := natstest.Start(t).JetStream(t)
	kv, err := Open(t.Context(), js, Config{})
	require.NoError(t, err)
	return kv
}

// eventAt is a time of the tests' events: t0 plus n seconds.
func eventAt(n int) time.Time {
	return time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second)
}

// contactEvent is an event of contact acme/c-1.
func contactEvent(state State, at time.Time) ContactEvent {
	e := ContactEvent{InstanceID: "acme", ContactID: "c-1", State: state, Channel: ChannelVoice, At: at}
	if state == StateQueued {
		e.QueueID, e.EnqueuedAt = "q-sales", at
	}
	return e
}

func applyEvent(t *testing.T, kv *KV, e ContactEvent) bool {
	t.Helper()
	applied, err := kv.ApplyContactEvent(t.Context(), e)
	require.NoError(t, err)
	return applied
}

func getContact(t *testing.T, kv *KV) Contact {
	t.Helper()
	c, err := kv.GetContact(t.Context(), "acme", "c-1")
	require.NoError(t, err)
	return c
}

// TestApplyContactEventCreates: a contact the store has not seen is
// created from its event.
func TestApplyContactEventCreates(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(2))))
	c := getContact(t, kv)
	require.Equal(t, StateQueued, c.State)
	require.Equal(t, ChannelVoice, c.Channel)
	require.Equal(t, "q-sales", c.QueueID)
	require.Equal(t, eventAt(2), c.EnqueuedAt)
	require.Equal(t, eventAt(2), c.EventAt)
	require.False(t, c.UpdatedAt.IsZero())
	require.Nil(t, c.Intent)

	// A disconnection the store learns first creates an ENDED record.
	e := contactEvent(StateEnded, eventAt(9))
	e.ContactID, e.DisconnectedAt = "c-2", eventAt(8)
	require.True(t, applyEvent(t, kv, e))
	c, err := kv.GetContact(t.Context(), "acme", "c-2")
	require.NoError(t, err)
	require.Equal(t, StateEnded, c.State)
	require.Equal(t, EndedByPlatform, c.EndedBy)
	require.Equal(t, eventAt(8), c.EndedAt)
	require.Empty(t, c.PreviousState)
}

// TestApplyContactEventOrder: an event older than the last applied one
// changes nothing, whatever order events arrive in.
func TestApplyContactEventOrder(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(2))))
	queued := getContact(t, kv)

	require.False(t, applyEvent(t, kv, contactEvent(StateInitiated, eventAt(1))), "older")
	require.Equal(t, queued, getContact(t, kv), "not written")

	connected := contactEvent(StateConnected, eventAt(3))
	require.True(t, applyEvent(t, kv, connected))
	c := getContact(t, kv)
	require.Equal(t, StateConnected, c.State)
	require.Equal(t, "q-sales", c.QueueID, "kept: the event does not carry it")
	require.Equal(t, eventAt(2), c.EnqueuedAt)
	require.Equal(t, eventAt(3), c.EventAt)

	require.False(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(2))), "older")
	require.Equal(t, c, getContact(t, kv))

	// A later event moves the contact on, to any state.
	requeued := contactEvent(StateQueued, eventAt(4))
	requeued.QueueID = "q-support"
	require.True(t, applyEvent(t, kv, requeued))
	c = getContact(t, kv)
	require.Equal(t, StateQueued, c.State)
	require.Equal(t, "q-support", c.QueueID)
	require.Equal(t, eventAt(4), c.EnqueuedAt)
}

// TestApplyContactEventRepeat: the same event again changes nothing.
func TestApplyContactEventRepeat(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	for _, e := range []ContactEvent{contactEvent(StateQueued, eventAt(1)), contactEvent(StateEnded, eventAt(2))} {
		require.True(t, applyEvent(t, kv, e))
		first := getContact(t, kv)
		for range 3 {
			require.False(t, applyEvent(t, kv, e))
		}
		require.Equal(t, first, getContact(t, kv))
	}
}

// TestApplyContactEventTies: events the platform timed alike apply in
// lifecycle order, whatever order they arrive in.
func TestApplyContactEventTies(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	at := eventAt(5)
	require.True(t, applyEvent(t, kv, contactEvent(StateInitiated, at)))
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, at)))
	require.False(t, applyEvent(t, kv, contactEvent(StateInitiated, at)))
	require.True(t, applyEvent(t, kv, contactEvent(StateConnected, at)))
	require.False(t, applyEvent(t, kv, contactEvent(StateQueued, at)))
	require.True(t, applyEvent(t, kv, contactEvent(StateEnded, at)))
	require.False(t, applyEvent(t, kv, contactEvent(StateConnected, at)))
	c := getContact(t, kv)
	require.Equal(t, StateEnded, c.State)
	require.Equal(t, StateConnected, c.PreviousState)
}

// TestApplyContactEventDisconnected: a disconnection ends an active
// contact, by the platform.
func TestApplyContactEventDisconnected(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(1))))
	require.True(t, applyEvent(t, kv, contactEvent(StateConnected, eventAt(2))))
	e := contactEvent(StateEnded, eventAt(10))
	e.DisconnectedAt = eventAt(9)
	require.True(t, applyEvent(t, kv, e))
	c := getContact(t, kv)
	require.Equal(t, StateEnded, c.State)
	require.Equal(t, StateConnected, c.PreviousState)
	require.Equal(t, EndedByPlatform, c.EndedBy)
	require.Zero(t, c.EndedBySeq)
	require.Equal(t, eventAt(9), c.EndedAt)
	require.Equal(t, eventAt(10), c.EventAt)
	require.Equal(t, "q-sales", c.QueueID)

	// Without a disconnection time, the event's time.
	e = contactEvent(StateEnded, eventAt(3))
	e.ContactID = "c-2"
	_, err := kv.PutContact(t.Context(), Contact{InstanceID: "acme", ContactID: "c-2", State: StateInitiated, Channel: ChannelChat})
	require.NoError(t, err)
	require.True(t, applyEvent(t, kv, e))
	c, err = kv.GetContact(t.Context(), "acme", "c-2")
	require.NoError(t, err)
	require.Equal(t, eventAt(3), c.EndedAt)
	require.Equal(t, StateInitiated, c.PreviousState)
	require.Equal(t, ChannelVoice, c.Channel, "the platform's channel")
}

// TestApplyContactEventNeverResurrects: an ENDED contact stays ENDED, as
// it was ended; a later disconnection only records its time.
func TestApplyContactEventNeverResurrects(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	ctx := t.Context()
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(1))))
	out := kv.EndContacts(ctx, []EndContactParams{{Contact: getContact(t, kv), RequestID: "r-1", RequestSeq: 42,
		DisconnectReason: "SPAM", At: eventAt(3)}})[0]
	require.NoError(t, out.Err)
	ended := getContact(t, kv)

	for _, s := range []State{StateInitiated, StateQueued, StateConnected} {
		require.False(t, applyEvent(t, kv, contactEvent(s, eventAt(5))), s)
	}
	require.Equal(t, ended, getContact(t, kv), "not written")

	e := contactEvent(StateEnded, eventAt(6))
	e.DisconnectedAt = eventAt(4)
	require.True(t, applyEvent(t, kv, e))
	c := getContact(t, kv)
	require.Equal(t, eventAt(6), c.EventAt)
	c.EventAt, c.UpdatedAt, c.Revision = ended.EventAt, ended.UpdatedAt, ended.Revision
	require.Equal(t, ended, c, "ended by r-1 at 3 s, with its reason and sequence")

	require.False(t, applyEvent(t, kv, contactEvent(StateConnected, eventAt(7))), "newer, but ENDED")
	require.False(t, applyEvent(t, kv, e), "the same disconnection again")
}

// TestApplyContactEventKeepsIntent: a stop in progress on the platform is
// the worker's; events never touch it.
func TestApplyContactEventKeepsIntent(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	intent := &Intent{RequestID: "r-7", RequestSeq: 3, DisconnectReason: "FRAUD", At: eventAt(2)}
	_, err := kv.PutContact(t.Context(), Contact{InstanceID: "acme", ContactID: "c-1", State: StateQueued, QueueID: "q-sales",
		Channel: ChannelVoice, EventAt: eventAt(1), Intent: intent})
	require.NoError(t, err)

	require.True(t, applyEvent(t, kv, contactEvent(StateConnected, eventAt(3))))
	require.Equal(t, intent, getContact(t, kv).Intent)

	require.True(t, applyEvent(t, kv, contactEvent(StateEnded, eventAt(4))))
	c := getContact(t, kv)
	require.Equal(t, StateEnded, c.State)
	require.Equal(t, EndedByPlatform, c.EndedBy)
	require.Equal(t, intent, c.Intent, "the worker decides, from its intent, whether the stop was its own")
}

// TestApplyContactEventConflict: a write that lost to another writer is
// decided again on what that writer wrote.
func TestApplyContactEventConflict(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	ctx := t.Context()
	require.True(t, applyEvent(t, kv, contactEvent(StateQueued, eventAt(1))))

	// Between the event's read and its write, the worker records an
	// intent (revision-checked). The hook writes raw: the store's own
	// writes read the clock too.
	intent := &Intent{RequestID: "r-9", At: eventAt(2)}
	key := ContactKey("acme", "c-1")
	var writes atomic.Int32
	now := kv.now
	kv.now = func() time.Time {
		if writes.Load() == 0 {
			writes.Add(1)
			c := getContact(t, kv)
			c.Intent = intent
			_, err := kv.contacts.Update(ctx, key, c.appendRecord(nil), c.Revision)
			require.NoError(t, err)
		}
		return now()
	}
	require.True(t, applyEvent(t, kv, contactEvent(StateConnected, eventAt(3))))
	require.EqualValues(t, 1, writes.Load())
	c := getContact(t, kv)
	require.Equal(t, StateConnected, c.State, "decided again, on the other writer's record")
	require.Equal(t, intent, c.Intent, "the other writer's intent is kept")

	// A writer that never stops changing the contact wins: the event gives
	// up with ErrRevisionConflict after a bounded number of rounds.
	writes.Store(0)
	kv.now = func() time.Time {
		writes.Add(1)
		c := getContact(t, kv)
		_, err := kv.contacts.Put(ctx, key, c.appendRecord(nil))
		require.NoError(t, err)
		return now()
	}
	_, err := kv.ApplyContactEvent(ctx, contactEvent(StateEnded, eventAt(4)))
	require.ErrorIs(t, err, ErrRevisionConflict)
	require.GreaterOrEqual(t, writes.Load(), int32(maxEventRounds))
	kv.now = now
	require.Equal(t, StateConnected, getContact(t, kv).State)
}

// TestApplyContactEventConcurrent: events applied at once, in any order,
// leave the newest one's state.
func TestApplyContactEventConcurrent(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	states := []State{StateInitiated, StateQueued, StateConnected, StateQueued, StateConnected, StateEnded}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(states))
	for round := range 3 {
		for i := len(states) - 1; i >= 0; i-- {
			wg.Go(func() {
				e := contactEvent(states[i], eventAt(i))
				e.QueueID = fmt.Sprint("q-", i)
				if _, err := kv.ApplyContactEvent(context.Background(), e); err != nil {
					errs <- fmt.Errorf("round %d, event %d: %w", round, i, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	c := getContact(t, kv)
	require.Equal(t, StateEnded, c.State)
	require.Equal(t, eventAt(len(states)-1), c.EventAt)
	require.Equal(t, "q-5", c.QueueID)
}

// TestApplyContactEventBadRecord: a record that is not a valid contact is
// not overwritten.
func TestApplyContactEventBadRecord(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	ctx := t.Context()
	key := ContactKey("acme", "c-1")
	for _, raw := range []string{`not json`, `{"contactId":"c-1","state":"SLEEPING","channel":"VOICE"}`} {
		rev, err := kv.contacts.Put(ctx, key, []byte(raw))
		require.NoError(t, err)
		_, err = kv.ApplyContactEvent(ctx, contactEvent(StateConnected, eventAt(1)))
		require.ErrorIs(t, err, ErrBadRecord)
		require.ErrorContains(t, err, "left as it is")
		e, err := kv.contacts.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, rev, e.Revision())
		require.Equal(t, raw, string(e.Value()))
	}
}

func TestApplyContactEventInvalid(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	for name, edit := range map[string]func(*ContactEvent){
		"no instance":   func(e *ContactEvent) { e.InstanceID = "" },
		"bad instance":  func(e *ContactEvent) { e.InstanceID = "a.b" },
		"no contact":    func(e *ContactEvent) { e.ContactID = "" },
		"bad state":     func(e *ContactEvent) { e.State = "queued" },
		"bad channel":   func(e *ContactEvent) { e.Channel = "TASK" },
		"no event time": func(e *ContactEvent) { e.At = time.Time{} },
	} {
		e := contactEvent(StateQueued, eventAt(1))
		edit(&e)
		_, err := kv.ApplyContactEvent(t.Context(), e)
		require.ErrorIs(t, err, ErrInvalidContact, name)
	}
	_, err := kv.GetContact(t.Context(), "acme", "c-1")
	require.ErrorIs(t, err, ErrContactNotFound)
}

// TestBindingIndex finds instances by their Amazon Connect instance id.
func TestBindingIndex(t *testing.T) {
	t.Parallel()
	kv := eventStore(t)
	ctx := t.Context()
	var clock atomic.Int64 // seconds past eventAt(0)
	kv.now = func() time.Time { return eventAt(int(clock.Load())) }
	bind := func(instanceID, connectID string) {
		t.Helper()
		inst := Instance{InstanceID: instanceID}
		if connectID != "" {
			inst.Binding = &Binding{Platform: PlatformAmazonConnect, ConnectInstanceID: connectID, Region: "us-west-2"}
		}
		_, err := kv.PutInstance(ctx, inst)
		require.NoError(t, err)
	}
	bind("acme", "conn-a")
	bind("zeta", "conn-z")
	bind("alpha", "conn-z") // two bindings of one Connect instance: the smallest instance id
	bind("plain", "")
	idx := NewBindingIndex(kv)

	find := func(connectID string) (string, error) {
		t.Helper()
		inst, err := idx.InstanceByConnectID(ctx, connectID)
		return inst.InstanceID, err
	}
	got, err := find("conn-a")
	require.NoError(t, err)
	require.Equal(t, "acme", got)
	got, err = find("conn-z")
	require.NoError(t, err)
	require.Equal(t, "alpha", got)
	_, err = find("conn-new")
	require.ErrorIs(t, err, ErrInstanceNotFound)
	require.ErrorContains(t, err, `"conn-new"`)

	// A binding made since is found on the next miss, a second later.
	bind("newco", "conn-new")
	_, err = find("conn-new")
	require.ErrorIs(t, err, ErrInstanceNotFound, "misses read the bucket at most once a second")
	clock.Add(1)
	got, err = find("conn-new")
	require.NoError(t, err)
	require.Equal(t, "newco", got)

	// A binding changed is seen once the reading is older than its TTL.
	bind("acme", "conn-b")
	got, err = find("conn-a")
	require.NoError(t, err)
	require.Equal(t, "acme", got, "answered from the reading")
	clock.Add(int64(bindingTTL / time.Second))
	_, err = find("conn-a")
	require.ErrorIs(t, err, ErrInstanceNotFound)
	got, err = find("conn-b")
	require.NoError(t, err)
	require.Equal(t, "acme", got)

	// A record that cannot be read hides no binding silently: a miss is
	// then an error, not "not found"; the others are still found.
	_, err = kv.instances.Put(ctx, "broken", []byte("{"))
	require.NoError(t, err)
	clock.Add(int64(bindingTTL / time.Second))
	_, err = find("conn-unknown")
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrInstanceNotFound))
	require.ErrorContains(t, err, "broken")
	got, err = find("conn-b")
	require.NoError(t, err)
	require.Equal(t, "acme", got)
}
