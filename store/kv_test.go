package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
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

// suiteConfig is the configuration the shared suite runs with: bucket
// names and an outcome TTL other than the defaults, so that nothing in the
// store depends on those.
var suiteConfig = store.Config{
	ContactsBucket:  "suite-contacts",
	InstancesBucket: "suite-instances",
	BulksBucket:     "suite-bulks",
	OutcomeTTL:      90 * time.Minute,
}

// rawKV is a *store.KV that lets the suite reach its buckets.
type rawKV struct {
	*store.KV
	raw storetest.RawBuckets
}

func (s rawKV) RawBuckets() storetest.RawBuckets { return s.raw }

var _ storetest.Raw = rawKV{}

func TestKV(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		_, js := natstest.Start(t).JetStream(t)
		kv, err := store.Open(t.Context(), js, suiteConfig)
		require.NoError(t, err)
		return rawKV{KV: kv, raw: storetest.RawBuckets{JS: js, Contacts: suiteConfig.ContactsBucket,
			Bulks: suiteConfig.BulksBucket, OutcomeTTL: suiteConfig.OutcomeTTL}}
	})
}

// TestKVReplicated runs the suite's consistency tests on buckets with three
// replicas in a three-server cluster, where consistent reads go to the
// stream leader and plain reads may be answered by a lagging follower.
// Every subtest gets buckets of its own on the one cluster.
func TestKVReplicated(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	var n atomic.Int64
	storetest.RunReplicated(t, func(t *testing.T) storetest.Store {
		_, js := cluster.JetStream(t)
		i := n.Add(1)
		cfg := store.Config{
			ContactsBucket:  fmt.Sprint("contacts-", i),
			InstancesBucket: fmt.Sprint("instances-", i),
			BulksBucket:     fmt.Sprint("bulks-", i),
			Replicas:        3,
			OutcomeTTL:      time.Hour,
		}
		var kv *store.KV
		// Retried: creating streams may time out while the cluster is busy.
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			var err error
			kv, err = store.Open(t.Context(), js, cfg)
			require.NoError(ct, err)
		}, 60*time.Second, 100*time.Millisecond)
		return rawKV{KV: kv, raw: storetest.RawBuckets{JS: js, Contacts: cfg.ContactsBucket, Bulks: cfg.BulksBucket, OutcomeTTL: cfg.OutcomeTTL}}
	})
}

// TestKVDefaults checks the outcome TTL of a store opened with the zero
// configuration (default bucket names): 7 days.
func TestKVDefaults(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	_, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	res := kv.RecordFailures(ctx, []store.RecordFailureParams{{Key: store.RequestKey{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"},
		Failure: store.Outcome{ReasonCode: "X"}}})[0]
	require.NoError(t, res.Err)
	st, err := js.Stream(ctx, "KV_contactstop-contacts")
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, "$KV.contactstop-contacts."+store.OutcomeKey("acme", "c-1", "r-1"))
	require.NoError(t, err)
	require.Equal(t, "604800", m.Header.Get("Nats-TTL"), "7 days by default")
	require.Equal(t, res.Outcome.Revision, m.Sequence)
}

// TestOutcomeExpires: an outcome record is gone after the outcome TTL; the
// request then has no outcome, its key keeps a revision (the server's
// marker), and a new outcome can be recorded at it.
func TestOutcomeExpires(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	kv, err := store.Open(t.Context(), js, store.Config{OutcomeTTL: time.Second})
	require.NoError(t, err)
	ctx := t.Context()
	k := store.RequestKey{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"}
	res := kv.RecordFailures(ctx, []store.RecordFailureParams{{Key: k, Failure: store.Outcome{ReasonCode: "X"}}})[0]
	require.NoError(t, res.Err)
	var v store.View
	require.Eventually(t, func() bool {
		vs, err := kv.Views(ctx, store.ViewParams{Keys: []store.RequestKey{k}, Consistent: true})
		require.NoError(t, err)
		v = vs[0]
		return v.Outcome == nil
	}, 20*time.Second, 50*time.Millisecond, "the outcome record never expired")
	lk, err := kv.LookUpRequest(ctx, k)
	require.NoError(t, err)
	require.Nil(t, lk.Failed)
	res = kv.RecordFailures(ctx, []store.RecordFailureParams{{Key: k, Failure: store.Outcome{ReasonCode: "Y"}, OutcomeRev: v.OutcomeRev}})[0]
	require.NoError(t, res.Err, "recorded again at the revision read after expiry")
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
		"same bulks bucket":     {ContactsBucket: "c", InstancesBucket: "i", BulksBucket: "c", Replicas: 1, OutcomeTTL: time.Hour},
		"short outcome TTL":     {ContactsBucket: "c", InstancesBucket: "i", BulksBucket: "b", Replicas: 1, OutcomeTTL: time.Millisecond},
	} {
		require.Error(t, cfg.Validate(), name)
	}
	require.NoError(t, store.Config{ContactsBucket: "c", InstancesBucket: "i", BulksBucket: "b", Replicas: 3, OutcomeTTL: time.Second}.Validate())

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
	views := func(keys ...store.RequestKey) []store.View {
		t.Helper()
		vs, err := kv.Views(ctx, store.ViewParams{Keys: keys})
		require.NoError(t, err)
		return vs
	}
	key := func(id string) store.RequestKey {
		return store.RequestKey{InstanceID: "acme", ContactID: id, RequestID: "r-1"}
	}

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
	v := views(key("a.b c"))[0]
	require.NotNil(t, v.Contact)
	o := kv.EndContacts(ctx, []store.EndContactParams{{Contact: *v.Contact, RequestID: "r-1"}})[0]
	require.NoError(t, o.Err)
	require.Equal(t, store.StateConnected, o.Contact.PreviousState)

	// A foreign update between the read and the end: the end is refused.
	v = views(key("c-1"))[0]
	_, err = raw.Update(ctx, "acme.c-1", []byte(`{"state":"ON_HOLD","channel":"VOICE"}`), v.ContactRev)
	require.NoError(t, err)
	o = kv.EndContacts(ctx, []store.EndContactParams{{Contact: *v.Contact, RequestID: "r-1"}})[0]
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	c, err = kv.GetContact(ctx, "acme", "c-1")
	require.NoError(t, err)
	require.Equal(t, store.StateOnHold, c.State, "the foreign write stands")

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
	}
	// The batched read sees the same: markers are not contacts, a body
	// without ids is the key's contact.
	vs := views(key("gone"), key("purged"), key("c-1"))
	require.Nil(t, vs[0].Contact)
	require.NotZero(t, vs[0].ContactRev)
	require.Nil(t, vs[1].Contact)
	require.NotZero(t, vs[1].ContactRev)
	require.NotNil(t, vs[2].Contact)
	require.Equal(t, "c-1", vs[2].Contact.ContactID)
	require.Equal(t, "acme", vs[2].Contact.InstanceID)
	var ids []string
	require.NoError(t, kv.ListContacts(ctx, "acme", func(c store.Contact) error {
		ids = append(ids, c.ContactID)
		return nil
	}))
	require.ElementsMatch(t, []string{"c-1", "a.b c"}, ids)

	// A malformed record is ErrBadRecord, none of the other sentinels: the
	// caller cannot take it for "not found" or "invalid request".
	_, err = raw.Put(ctx, "acme.bad", []byte(`{"state":"DONE","channel":"VOICE"}`))
	require.NoError(t, err)
	_, err = kv.GetContact(ctx, "acme", "bad")
	require.ErrorIs(t, err, store.ErrBadRecord)
	for _, sentinel := range []error{store.ErrContactNotFound, store.ErrInvalidContact} {
		require.NotErrorIs(t, err, sentinel)
	}
	v = views(key("bad"))[0]
	require.Nil(t, v.Contact)
	require.ErrorIs(t, v.Bad, store.ErrBadRecord)
	err = kv.ListContacts(ctx, "acme", func(store.Contact) error { return nil })
	require.ErrorIs(t, err, store.ErrBadRecord)

	// A key that is not in the canonical encoding stops a listing, and is
	// reported by a walk.
	_, err = raw.Put(ctx, "beta.=2e", []byte(`{"state":"QUEUED","channel":"VOICE"}`))
	require.NoError(t, err)
	err = kv.ListContacts(ctx, "beta", func(store.Contact) error { return nil })
	require.ErrorIs(t, err, store.ErrBadRecord)
	var bad []error
	require.NoError(t, kv.WalkContacts(ctx, store.WalkParams{InstanceID: "beta"}, func(e store.WalkEntry) error {
		bad = append(bad, e.Bad)
		return nil
	}))
	require.Len(t, bad, 1)
	require.ErrorIs(t, bad[0], store.ErrBadRecord)
	require.ErrorContains(t, bad[0], `"beta.=2e"`)
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
// one instance's contacts: a KV watch on "<instanceId>.>". Outcome records,
// in the same bucket, are not seen by it. (The bucket keeps one value per
// key, so a watcher that has not yet received a value when the key is
// written again sees only the newer one: the test waits for each.)
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
	next := func() store.Contact {
		t.Helper()
		select {
		case e := <-w.Updates():
			require.NotNil(t, e)
			inst, id, err := store.ParseContactKey(e.Key())
			require.NoError(t, err)
			require.Equal(t, "acme", inst)
			require.Equal(t, "a.b", id)
			var c store.Contact
			require.NoError(t, json.Unmarshal(e.Value(), &c))
			return c
		case <-ctx.Done():
			t.Fatal("watch saw no update")
		}
		return store.Contact{}
	}

	_, err = kv.PutContact(ctx, store.Contact{InstanceID: "acme-evil", ContactID: "x", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	res := kv.RecordFailures(ctx, []store.RecordFailureParams{{Key: store.RequestKey{InstanceID: "acme", ContactID: "absent", RequestID: "r-0"},
		Failure: store.Outcome{ReasonCode: "CONTACT_NOT_FOUND"}, DependsOnContact: true}})[0]
	require.NoError(t, res.Err)
	c, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "a.b", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, next().State)
	o := kv.EndContacts(ctx, []store.EndContactParams{{Contact: c, RequestID: "r-1"}})[0]
	require.NoError(t, o.Err)
	ended := next()
	require.Equal(t, store.StateEnded, ended.State)
	require.Equal(t, "r-1", ended.EndedBy)
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
	k := store.RequestKey{InstanceID: "acme", ContactID: "c-2", RequestID: "r-2"}
	failed := kv.RecordFailures(ctx, []store.RecordFailureParams{{Key: k, Failure: store.Outcome{ReasonCode: "X"}}})[0]
	require.NoError(t, failed.Err)

	srv.Restart()

	var o store.EndOutcome
	require.Eventually(t, func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		vs, err := kv.Views(c, store.ViewParams{Keys: []store.RequestKey{{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"}}})
		if err != nil || vs[0].Contact == nil {
			return false
		}
		o = kv.EndContacts(c, []store.EndContactParams{{Contact: *vs[0].Contact, RequestID: "r-1"}})[0]
		return o.Err == nil
	}, 20*time.Second, 50*time.Millisecond, "last outcome: %+v", o)
	require.Equal(t, store.StateOnHold, o.Contact.PreviousState)
	lk, err := kv.LookUpRequest(ctx, k)
	require.NoError(t, err)
	require.NotNil(t, lk.Failed, "outcome records survive a restart")
	require.Equal(t, failed.Outcome.Revision, lk.Failed.Revision)
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
	c1, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: "c-1", State: store.StateQueued, Channel: store.ChannelVoice})
	require.NoError(t, err)
	srv.Shutdown()

	sentinels := []error{store.ErrContactNotFound, store.ErrInvalidContact, store.ErrRevisionConflict,
		store.ErrBadRecord, store.ErrContactEnded, store.ErrInstanceNotFound}
	requireTransient := func(err error, what string) {
		t.Helper()
		require.Error(t, err, what)
		for _, sentinel := range sentinels {
			require.NotErrorIs(t, err, sentinel, what)
		}
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	k := store.RequestKey{InstanceID: "acme", ContactID: "c-1", RequestID: "r-1"}

	_, err = kv.GetContact(short(), "acme", "c-1")
	requireTransient(err, "GetContact")
	_, err = kv.Views(short(), store.ViewParams{Keys: []store.RequestKey{k}})
	requireTransient(err, "Views")
	_, err = kv.Views(short(), store.ViewParams{Keys: []store.RequestKey{k}, Consistent: true})
	requireTransient(err, "consistent Views")
	for _, o := range kv.EndContacts(short(), []store.EndContactParams{{Contact: c1, RequestID: "r-1"}, {Contact: c1, RequestID: "r-2"}}) {
		requireTransient(o.Err, "EndContacts")
	}
	for _, r := range kv.RecordFailures(short(), []store.RecordFailureParams{{Key: k, Failure: store.Outcome{ReasonCode: "X"}}}) {
		requireTransient(r.Err, "RecordFailures")
	}
	_, err = kv.RecordAttempt(short(), store.RecordAttemptParams{Key: k, Attempts: 1})
	requireTransient(err, "RecordAttempt")
	_, err = kv.LookUpRequest(short(), k)
	requireTransient(err, "LookUpRequest")
	_, err = kv.ReplaceContact(short(), store.ReplaceContactParams{Contact: c1})
	requireTransient(err, "ReplaceContact")
	err = kv.WalkContacts(short(), store.WalkParams{InstanceID: "acme"}, func(store.WalkEntry) error { return nil })
	requireTransient(err, "WalkContacts")
	_, err = kv.BulkFailures(short(), "acme", "b")
	requireTransient(err, "BulkFailures")
	ok, err := kv.InstanceExists(short(), "acme")
	requireTransient(err, "InstanceExists")
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

// TestValueSizeLimits: the buckets refuse values larger than a record can
// be, whoever writes them.
func TestValueSizeLimits(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t)
	ctx := t.Context()
	for bucket, limit := range map[string]int{"contactstop-contacts": store.MaxContactRecord, "contactstop-instances": store.MaxContactRecord,
		"contactstop-bulks": 1 << 20} {
		kv, err := js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		st, err := kv.Status(ctx)
		require.NoError(t, err)
		require.EqualValues(t, limit, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.MaxMsgSize, bucket)
		_, err = kv.Put(ctx, "acme.big", make([]byte, limit+1))
		require.Error(t, err, "%s takes no value over %d bytes", bucket, limit)
		_, err = kv.Put(ctx, "acme.fits", make([]byte, limit-1<<10))
		require.NoError(t, err, bucket)
	}
}

// TestInstanceLock: the instance's bulk lock is written only by
// compare-and-set, and lives outside every instance's keys.
func TestInstanceLock(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	l, err := kv.GetInstanceLock(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, store.InstanceLock{InstanceID: "acme"}, l, "no lock yet")

	until := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	l.BulkID, l.LeaseUntil = "b-1", until
	held, err := kv.PutInstanceLock(ctx, l)
	require.NoError(t, err)
	require.NotZero(t, held.Revision)
	_, err = kv.PutInstanceLock(ctx, l) // a second create
	require.ErrorIs(t, err, store.ErrBulkConflict)

	got, err := kv.GetInstanceLock(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, held, got)
	stale := got
	got.BulkID = "b-2"
	_, err = kv.PutInstanceLock(ctx, got)
	require.NoError(t, err)
	_, err = kv.PutInstanceLock(ctx, stale) // written since it was read
	require.ErrorIs(t, err, store.ErrBulkConflict)

	_, err = kv.GetInstanceLock(ctx, "ac.me")
	require.ErrorIs(t, err, store.ErrInvalidInstance)
	// The lock's key is no instance's: a listing of acme's bulks under
	// "acme.>" does not see it.
	b, err := js.KeyValue(ctx, "contactstop-bulks")
	require.NoError(t, err)
	keys, err := b.ListKeysFiltered(ctx, "acme.>")
	require.NoError(t, err)
	for k := range keys.Keys() {
		t.Errorf("key %q under acme.>", k)
	}
}

// TestEndContactsInOneBatch: Open lets the contacts bucket's stream take
// fast batches, again after an update of the bucket turned that off, and
// EndContacts' writes go out as one batch, answered once.
func TestEndContactsInOneBatch(t *testing.T) {
	t.Parallel()
	_, js, kv := setup(t)
	ctx := t.Context()
	allows := func() bool {
		st, err := js.Stream(ctx, "KV_contactstop-contacts")
		require.NoError(t, err)
		return st.CachedInfo().Config.AllowBatchPublish
	}
	require.True(t, allows())
	// Another process updating the bucket as a plain bucket turns it off;
	// its Open turns it on again.
	_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "contactstop-contacts", History: 1,
		Storage: jetstream.FileStorage, LimitMarkerTTL: time.Minute, MaxValueSize: store.MaxContactRecord})
	require.NoError(t, err)
	require.False(t, allows())
	kv, err = store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	require.True(t, allows())

	const n = 50
	ps := make([]store.EndContactParams, n)
	for i := range ps {
		c, err := kv.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: fmt.Sprint("c-", i), State: store.StateQueued, Channel: store.ChannelVoice})
		require.NoError(t, err)
		ps[i] = store.EndContactParams{Contact: c, RequestID: fmt.Sprint("r-", i)}
	}
	// Every acknowledgement of the contacts stream the server sends.
	nc := js.Conn()
	var acks atomic.Int64
	tap, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"stream":"KV_contactstop-contacts"`) {
			acks.Add(1)
		}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	for i, o := range kv.EndContacts(ctx, ps) {
		require.NoError(t, o.Err, i)
		require.Zero(t, o.Contact.Revision, "confirmed with its batch")
		got, err := kv.GetContact(ctx, "acme", ps[i].Contact.ContactID)
		require.NoError(t, err)
		require.Equal(t, store.StateEnded, got.State)
	}
	require.NoError(t, nc.Flush())
	require.NoError(t, tap.Unsubscribe())
	require.EqualValues(t, 1, acks.Load(), "one answer for the batch")
}
