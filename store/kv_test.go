package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/store/storetest"
)

// setup starts a fresh server and opens a store on it with the default
// configuration.
func setup(t *testing.T) (*natstest.Server, jetstream.JetStream, *store.KV) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	kv, err := store.Open(t.Context(), js, store.Config{})
	require.NoError(t, err)
	return srv, js, kv
}

func TestKV(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		_, _, kv := setup(t)
		return kv
	})
}

// TestFrontMarker sees the front marker written once, as the bucket's first
// message, kept by a second Open, and returned by no listing.
func TestFrontMarker(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	raw, err := js.KeyValue(ctx, "contactstop-contacts")
	require.NoError(t, err)
	e, err := raw.Get(ctx, store.FrontKey)
	require.NoError(t, err)
	require.EqualValues(t, 1, e.Revision(), "the first message of a new bucket")

	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	_, err = store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	e, err = raw.Get(ctx, store.FrontKey)
	require.NoError(t, err)
	require.EqualValues(t, 1, e.Revision(), "not rewritten by another Open")

	for _, inst := range []string{"acme", "=front", ""} {
		_ = kv.ListContacts(ctx, inst, func(c store.Contact) error {
			require.Equal(t, "c-1", c.ContactID)
			return nil
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]store.Config{
		"empty contacts bucket": {ContactsBucket: "", InstancesBucket: "i", Replicas: 1},
		"dot in bucket":         {ContactsBucket: "a.b", InstancesBucket: "i", Replicas: 1},
		"same bucket":           {ContactsBucket: "x", InstancesBucket: "x", Replicas: 1},
		"no replicas":           {ContactsBucket: "c", InstancesBucket: "i"},
		"six replicas":          {ContactsBucket: "c", InstancesBucket: "i", Replicas: 6},
	} {
		require.Error(t, cfg.Validate(), name)
	}
	require.NoError(t, store.Config{ContactsBucket: "c", InstancesBucket: "i", BulksBucket: "b", Replicas: 3}.Validate())

	_, js := natstest.Start(t).JetStream(t)
	_, err := store.Open(t.Context(), js, store.Config{ContactsBucket: "bad bucket"})
	require.Error(t, err)
}

// TestOpenIdempotent opens the store repeatedly, as every worker does at
// start-up, and finds the data it wrote.
func TestOpenIdempotent(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	_, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)

	again, err := store.Open(ctx, js, store.Config{ContactsBucket: "contactstop-contacts", InstancesBucket: "contactstop-instances", Replicas: 1})
	require.NoError(t, err)
	got, err := again.GetContact(ctx, "acme", "c-1")
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, got.State)

	for _, bucket := range []string{"contactstop-contacts", "contactstop-instances"} {
		b, err := js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		st, err := b.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, jetstream.FileStorage, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage)
	}

	// Other bucket names give another, separate store.
	other, err := store.Open(ctx, js, store.Config{ContactsBucket: "c2", InstancesBucket: "i2"})
	require.NoError(t, err)
	_, err = other.GetContact(ctx, "acme", "c-1")
	require.ErrorIs(t, err, store.ErrContactNotFound)
}

// TestInstanceExistsSeesOtherProcesses checks that a cache miss is read from
// the bucket: an instance registered through another store (another
// process) is found at once.
func TestInstanceExistsSeesOtherProcesses(t *testing.T) {
	t.Parallel()
	srv, _, a := setup(t)
	_, js2 := srv.JetStream(t)
	b, err := store.Open(t.Context(), js2, store.Config{})
	require.NoError(t, err)
	ctx := t.Context()

	ok, err := a.InstanceExists(ctx, "acme")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = b.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	ok, err = a.InstanceExists(ctx, "acme")
	require.NoError(t, err)
	require.True(t, ok, "registered by another process")

	_, err = a.InstanceExists(ctx, "not valid")
	require.ErrorIs(t, err, store.ErrInvalidInstance)
}

// TestForeignWriters writes records as another service would, with a plain
// KV client, and checks how the store reads them.
func TestForeignWriters(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	raw, err := js.KeyValue(ctx, "contactstop-contacts")
	require.NoError(t, err)

	// The documented example: ids may be left out of the body.
	_, err = raw.Put(ctx, "acme.c-1", []byte(`{"state":"QUEUED","channel":"VOICE","queueId":"billing","updatedAt":"2026-11-20T10:00:00Z"}`))
	require.NoError(t, err)
	_, err = raw.Put(ctx, store.ContactKey("acme", "a.b c"), []byte(`{"contactId":"a.b c","instanceId":"acme","state":"CONNECTED","channel":"CHAT","updatedAt":"2026-11-20T10:00:00Z"}`))
	require.NoError(t, err)
	c, err := kv.GetContact(ctx, "acme", "c-1")
	require.NoError(t, err)
	require.Equal(t, "c-1", c.ContactID)
	require.Equal(t, "acme", c.InstanceID)
	require.Equal(t, "billing", c.QueueID)
	res, err := kv.EndContact(ctx, store.EndContactParams{InstanceID: "acme", ContactID: "a.b c", RequestID: "r-1"})
	require.NoError(t, err)
	require.Equal(t, store.StateConnected, res.Contact.PreviousState)

	// A deleted or purged contact is gone.
	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "gone", State: store.StateQueued, Channel: store.ChannelSMS})
	require.NoError(t, err)
	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "purged", State: store.StateQueued, Channel: store.ChannelSMS})
	require.NoError(t, err)
	require.NoError(t, raw.Delete(ctx, "acme.gone"))
	require.NoError(t, raw.Purge(ctx, "acme.purged"))
	for _, id := range []string{"gone", "purged"} {
		_, err = kv.GetContact(ctx, "acme", id)
		require.ErrorIs(t, err, store.ErrContactNotFound, id)
		_, err = kv.EndContact(ctx, store.EndContactParams{InstanceID: "acme", ContactID: id, RequestID: "r-1"})
		require.ErrorIs(t, err, store.ErrContactNotFound, id)
	}
	// The batched path reads the same: markers are not contacts, a body
	// without ids is the key's contact.
	outs := kv.EndContacts(ctx, []store.EndContactParams{
		{InstanceID: "acme", ContactID: "gone", RequestID: "r-2"},
		{InstanceID: "acme", ContactID: "purged", RequestID: "r-2"},
		{InstanceID: "acme", ContactID: "c-1", RequestID: "r-2"},
	})
	require.ErrorIs(t, outs[0].Err, store.ErrContactNotFound)
	require.ErrorIs(t, outs[1].Err, store.ErrContactNotFound)
	require.NoError(t, outs[2].Err)
	require.Equal(t, "c-1", outs[2].Result.Contact.ContactID)
	require.Equal(t, "billing", outs[2].Result.Contact.QueueID)
	var ids []string
	require.NoError(t, kv.ListContacts(ctx, "acme", func(c store.Contact) error {
		ids = append(ids, c.ContactID)
		return nil
	}))
	require.ElementsMatch(t, []string{"c-1", "a.b c"}, ids)

	// A malformed record is an error, but none of the sentinels: the
	// caller cannot branch on it as "not found" or "not active".
	_, err = raw.Put(ctx, "acme.bad", []byte(`{"state":"DONE","channel":"VOICE"}`))
	require.NoError(t, err)
	_, err = kv.GetContact(ctx, "acme", "bad")
	require.Error(t, err)
	for _, sentinel := range []error{store.ErrContactNotFound, store.ErrContactNotActive, store.ErrInvalidContact} {
		require.NotErrorIs(t, err, sentinel)
	}
	outs = kv.EndContacts(ctx, []store.EndContactParams{{InstanceID: "acme", ContactID: "bad", RequestID: "r-3"}})
	require.Error(t, outs[0].Err)
	for _, sentinel := range []error{store.ErrContactNotFound, store.ErrContactNotActive, store.ErrInvalidContact} {
		require.NotErrorIs(t, outs[0].Err, sentinel)
	}
	// A key that is not in the canonical encoding stops a listing.
	_, err = raw.Put(ctx, "beta.=2e", []byte(`{"state":"QUEUED","channel":"VOICE"}`))
	require.NoError(t, err)
	err = kv.ListContacts(ctx, "beta", func(store.Contact) error { return nil })
	require.Error(t, err)
}

// TestListContactsLeavesNoConsumer checks that a listing, finished or
// stopped early, removes the consumer it read through.
func TestListContactsLeavesNoConsumer(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	_, err := kv.SeedContacts(ctx, func(yield func(store.Contact) bool) {
		for i := range 1000 {
			if !yield(store.Contact{InstanceID: "acme", ContactID: fmt.Sprint(i), State: store.StateQueued, Channel: store.ChannelVoice}) {
				return
			}
		}
	})
	require.NoError(t, err)
	stop := errors.New("stop")
	require.ErrorIs(t, kv.ListContacts(ctx, "acme", func(store.Contact) error { return stop }), stop)
	require.NoError(t, kv.ListContacts(ctx, "acme", func(store.Contact) error { return nil }))
	_, err = kv.ListInstances(ctx)
	require.NoError(t, err)

	for _, stream := range []string{"KV_contactstop-contacts", "KV_contactstop-instances"} {
		s, err := js.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Zero(t, info.State.Consumers, "consumers left on %s", stream)
	}
}

// TestWatchContacts shows the documented way for another service to follow
// one instance's contacts: a KV watch on "<instanceId>.>".
func TestWatchContacts(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	raw, err := js.KeyValue(ctx, "contactstop-contacts")
	require.NoError(t, err)
	w, err := raw.Watch(ctx, "acme.>", jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()

	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme-evil", ContactID: "x", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "a.b", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	_, err = kv.EndContact(ctx, store.EndContactParams{InstanceID: "acme", ContactID: "a.b", RequestID: "r-1"})
	require.NoError(t, err)

	var states []store.State
	for len(states) < 2 {
		select {
		case e := <-w.Updates():
			require.NotNil(t, e)
			inst, id, err := store.ParseContactKey(e.Key())
			require.NoError(t, err)
			require.Equal(t, "acme", inst)
			require.Equal(t, "a.b", id)
			var c store.Contact
			require.NoError(t, json.Unmarshal(e.Value(), &c))
			states = append(states, c.State)
		case <-ctx.Done():
			t.Fatal("watch saw no updates")
		}
	}
	require.Equal(t, []store.State{store.StateQueued, store.StateEnded}, states)
}

// TestServerRestart checks that contacts survive a restart of the server
// (file storage) and the store works again once the client reconnects.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv, _, kv := setup(t)
	ctx := t.Context()
	_, err := kv.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateOnHold, Channel: store.ChannelVoice})
	require.NoError(t, err)

	srv.Restart()

	var res store.EndContactResult
	require.Eventually(t, func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err = kv.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"})
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "last error: %v", err)
	require.Equal(t, store.StateOnHold, res.Contact.PreviousState)
	insts, err := kv.ListInstances(ctx)
	require.NoError(t, err)
	require.Len(t, insts, 1)
}

// TestTransientErrors checks that a failure of the server is reported as an
// error that is none of the sentinels, so the caller retries it.
func TestTransientErrors(t *testing.T) {
	t.Parallel()
	srv, _, kv := setup(t)
	ctx := t.Context()
	_, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	srv.Shutdown()

	c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = kv.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"})
	require.Error(t, err)
	for _, sentinel := range []error{store.ErrContactNotFound, store.ErrContactNotActive, store.ErrInvalidContact} {
		require.NotErrorIs(t, err, sentinel)
	}
	c3, cancel3 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel3()
	known := store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice, Revision: 1}
	outs := kv.EndContacts(c3, []store.EndContactParams{
		{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"},
		{InstanceID: "acme", ContactID: "c-1", RequestID: "r-2", Known: &known},
	})
	for _, o := range outs {
		require.Error(t, o.Err)
		for _, sentinel := range []error{store.ErrContactNotFound, store.ErrContactNotActive, store.ErrInvalidContact} {
			require.NotErrorIs(t, o.Err, sentinel)
		}
	}
	c2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	ok, err := kv.InstanceExists(c2, "acme")
	require.Error(t, err)
	require.False(t, ok)
}

// BenchmarkSeedContacts measures SeedContacts against an in-process server.
func BenchmarkSeedContacts(b *testing.B) {
	srv := natstest.Start(b)
	_, js := srv.JetStream(b)
	kv, err := store.Open(b.Context(), js, store.Config{})
	require.NoError(b, err)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		const batch = 1000
		written, err := kv.SeedContacts(b.Context(), func(yield func(store.Contact) bool) {
			for i := range batch {
				if !yield(store.Contact{InstanceID: "acme", ContactID: fmt.Sprint("c-", n+i), State: store.StateQueued, Channel: store.ChannelVoice}) {
					return
				}
			}
		})
		require.NoError(b, err)
		require.Equal(b, batch, written)
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "contacts/s")
}

// TestOpenKeepExisting checks that a client opening the store leaves the
// buckets' configuration as serve set it, and still creates missing ones.
func TestOpenKeepExisting(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "contactstop-contacts", History: 5})
	require.NoError(t, err)
	history := func(bucket string) uint64 {
		b, err := js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		st, err := b.Status(ctx)
		require.NoError(t, err)
		return uint64(st.History())
	}

	_, err = store.Open(ctx, js, store.Config{KeepExisting: true})
	require.NoError(t, err)
	require.EqualValues(t, 5, history("contactstop-contacts"), "an existing bucket is not updated")
	require.EqualValues(t, 1, history("contactstop-instances"), "a missing bucket is created")

	_, err = store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	require.EqualValues(t, 1, history("contactstop-contacts"), "without KeepExisting the configuration is applied")
}
