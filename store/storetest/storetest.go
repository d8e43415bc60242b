// Package storetest is the behavioural test suite of contactstop's state
// store. Every implementation of the store runs it from its own tests:
//
//	func TestKV(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return newKV(t) })
//	}
//
// The suite states the contract the worker and the command line rely on:
// instances, contacts with awkward ids, listing and walking one instance's
// contacts (bad records included), reading requests' views, ending contacts
// by compare-and-set at the revision read, and recording failures so that
// no request ever has both a stop and a failure, however its messages
// interleave.
//
// A store that also implements [Raw] lets the suite read and write its
// buckets as another service would (records no contactstop writer makes,
// headers of stored messages); without it those tests, or checks, are
// skipped. [RunReplicated] runs the tests that hold on replicated buckets.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// Store is every operation of a contactstop state store. *store.KV
// implements it.
type Store interface {
	PutInstance(ctx context.Context, inst store.Instance) (store.Instance, error)
	GetInstance(ctx context.Context, instanceID string) (store.Instance, error)
	ListInstances(ctx context.Context) ([]store.Instance, error)
	InstanceExists(ctx context.Context, instanceID string) (bool, error)

	PutContact(ctx context.Context, c store.Contact) (store.Contact, error)
	ReplaceContact(ctx context.Context, p store.ReplaceContactParams) (store.Contact, error)
	GetContact(ctx context.Context, instanceID, contactID string) (store.Contact, error)
	ListContacts(ctx context.Context, instanceID string, fn func(store.Contact) error) error
	WalkContacts(ctx context.Context, p store.WalkParams, fn func(store.WalkEntry) error) error
	SeedContacts(ctx context.Context, contacts iter.Seq[store.Contact]) (int, error)

	Views(ctx context.Context, p store.ViewParams) ([]store.View, error)
	EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome
	RecordFailures(ctx context.Context, ps []store.RecordFailureParams) []store.RecordFailureResult
	RecordAttempt(ctx context.Context, p store.RecordAttemptParams) (store.Outcome, error)
	LookUpRequest(ctx context.Context, k store.RequestKey) (store.RequestOutcome, error)

	GetBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	PutBulk(ctx context.Context, r store.BulkRecord) (store.BulkRecord, error)
	PutBulkPending(ctx context.Context, instanceID, bulkID string, run, slot int, contactIDs []string) error
	ClearBulkPending(instanceID, bulkID string, run, slot int) error
	BulkPending(ctx context.Context, instanceID, bulkID string) (contactIDs, slots []string, err error)
	DeleteBulkPending(ctx context.Context, slots []string) error
	BulkPendingWritten(ctx context.Context, slots []string) (time.Time, error)
	BulkFailures(ctx context.Context, instanceID, bulkID string) (map[string]store.Outcome, error)
	ListBulks(ctx context.Context, instanceID string) ([]store.BulkRecord, error)
	CancelBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	CountMatching(ctx context.Context, instanceID string, f events.BulkFilter) (store.MatchCount, error)
	ContactsSequence(ctx context.Context) (uint64, error)
}

var _ Store = (*store.KV)(nil)

// Raw is implemented by a store on JetStream key-value buckets that lets
// the suite reach its buckets directly, as any other NATS client can
// (docs/store.md): to plant records contactstop never writes and to read
// the stored messages' headers.
type Raw interface {
	RawBuckets() RawBuckets
}

// RawBuckets names a store's buckets and the JetStream context they live on.
type RawBuckets struct {
	JS jetstream.JetStream
	// Contacts and Bulks are the bucket names (store.Config.ContactsBucket
	// and BulksBucket as opened).
	Contacts, Bulks string
	// OutcomeTTL is store.Config.OutcomeTTL as opened (defaults filled).
	OutcomeTTL time.Duration
}

// Run runs the suite. newStore must return a new, empty store isolated from
// every other it returned (a fresh server, or fresh buckets), cleaned up by
// t.Cleanup; subtests call it concurrently.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	run(t, newStore, false)
}

// RunReplicated runs the part of the suite whose every check reads what
// the store promises to read consistently (Views with Consistent,
// LookUpRequest, ReplaceContact, RecordFailures' own reads,
// acknowledged writes), or retries plain reads until they catch up. It is
// for stores on replicated buckets, whose plain reads (GetContact, Views
// without Consistent, walks) may be answered by a replica that has not
// applied the latest writes yet.
func RunReplicated(t *testing.T, newStore func(t *testing.T) Store) {
	run(t, newStore, true)
}

func run(t *testing.T, newStore func(t *testing.T) Store, replicatedOnly bool) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
		// replicated: every check holds on a replicated store.
		replicated bool
	}{
		{"Instances", testInstances, false},
		{"InstanceValidation", testInstanceValidation, false},
		{"ContactRoundTrip", testContactRoundTrip, false},
		{"ContactDefaults", testContactDefaults, false},
		{"ContactNotFound", testContactNotFound, false},
		{"AwkwardContactIDs", testAwkwardContactIDs, false},
		{"ListContactsOneInstance", testListContactsOneInstance, false},
		{"ListContactsEarlyStop", testListContactsEarlyStop, false},
		{"WalkContactsSkip", testWalkContactsSkip, false},
		{"WalkContactsBadRecords", testWalkContactsBadRecords, false},
		{"PutContactValidation", testPutContactValidation, false},
		{"ReplaceContact", testReplaceContact, true},
		{"SeedContacts", testSeedContacts, false},
		{"SeedContactsInvalid", testSeedContactsInvalid, false},
		{"EndContactsStates", testEndContactsStates, true},
		{"EndContactsStale", testEndContactsStale, true},
		{"EndContactsInvalid", testEndContactsInvalid, false},
		{"EndContactsBatch", testEndContactsBatch, true},
		{"EndContactsMany", testEndContactsMany, true},
		{"EndContactsConcurrent", testEndContactsConcurrent, true},
		{"Views", testViews, true},
		{"ViewsDeleted", testViewsDeleted, true},
		{"ViewsBadRecords", testViewsBadRecords, true},
		{"RecordFailures", testRecordFailures, true},
		{"RecordFailuresStopped", testRecordFailuresStopped, true},
		{"RecordFailuresDependsOnContact", testRecordFailuresDependsOnContact, true},
		{"RecordFailuresFence", testRecordFailuresFence, true},
		{"RecordFailuresBatch", testRecordFailuresBatch, true},
		{"StopOrFailRace", testStopOrFailRace, true},
		{"OutcomeTTL", testOutcomeTTL, true},
		{"RecordAttempt", testRecordAttempt, true},
		{"LookUpRequest", testLookUpRequest, true},
		{"OutcomeKey", testOutcomeKey, false},
		{"BulkRecords", testBulkRecords, false},
		{"BulkPending", testBulkPending, false},
		{"BulkFailures", testBulkFailures, false},
		{"ListBulks", testListBulks, false},
		{"CancelBulk", testCancelBulk, false},
		{"CancelBulkRacesWriters", testCancelBulkRacesWriters, false},
		{"CountMatching", testCountMatching, false},
		{"RecordFailuresTransient", testRecordFailuresTransient, false},
		{"EndContactsInvalidRecord", testEndContactsInvalidRecord, false},
	}
	for _, tt := range tests {
		if replicatedOnly && !tt.replicated {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// ctx returns a context that ends with the test or after a minute.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// at is a fixed, non-UTC time, so that tests see that instants survive.
var at = time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

// contact returns a valid active contact.
func contact(instanceID, contactID string) store.Contact {
	return store.Contact{
		ContactID:  contactID,
		InstanceID: instanceID,
		State:      store.StateQueued,
		QueueID:    "billing",
		Channel:    store.ChannelVoice,
		EnqueuedAt: at,
		UpdatedAt:  at.Add(time.Second),
	}
}

// put writes a contact and returns it as stored.
func put(t *testing.T, s Store, c store.Contact) store.Contact {
	t.Helper()
	got, err := s.PutContact(ctx(t), c)
	require.NoError(t, err, "PutContact(%s/%q)", c.InstanceID, c.ContactID)
	return got
}

// get reads a contact that must exist, consistently (it reflects every
// write acknowledged before).
func get(t *testing.T, s Store, instanceID, contactID string) store.Contact {
	t.Helper()
	vs, err := s.Views(ctx(t), store.ViewParams{Keys: []store.RequestKey{rk(instanceID, contactID, "")},
		Consistent: true, ContactsOnly: true})
	require.NoError(t, err)
	require.NoError(t, vs[0].Bad)
	require.NotNil(t, vs[0].Contact, "no contact %s/%q", instanceID, contactID)
	require.Equal(t, vs[0].ContactRev, vs[0].Contact.Revision)
	return *vs[0].Contact
}

// getContact reads a contact that must exist with GetContact.
func getContact(t *testing.T, s Store, instanceID, contactID string) store.Contact {
	t.Helper()
	got, err := s.GetContact(ctx(t), instanceID, contactID)
	require.NoError(t, err, "GetContact(%s/%q)", instanceID, contactID)
	return got
}

// rk is the key of a single request.
func rk(instanceID, contactID, requestID string) store.RequestKey {
	return store.RequestKey{InstanceID: instanceID, ContactID: contactID, RequestID: requestID}
}

// view reads one request's view, consistently.
func view(t *testing.T, s Store, k store.RequestKey) store.View {
	t.Helper()
	vs, err := s.Views(ctx(t), store.ViewParams{Keys: []store.RequestKey{k}, Consistent: true})
	require.NoError(t, err)
	require.Len(t, vs, 1)
	require.Equal(t, k, vs[0].Key)
	return vs[0]
}

// end ends c (as read) for requestID and returns the outcome.
func end(t *testing.T, s Store, p store.EndContactParams) store.EndOutcome {
	t.Helper()
	outs := s.EndContacts(ctx(t), []store.EndContactParams{p})
	require.Len(t, outs, 1)
	return outs[0]
}

// mustEnd ends c for requestID and returns the ENDED record.
func mustEnd(t *testing.T, s Store, c store.Contact, requestID string) store.Contact {
	t.Helper()
	o := end(t, s, store.EndContactParams{Contact: c, RequestID: requestID})
	require.NoError(t, o.Err, "end %s/%q for %s", c.InstanceID, c.ContactID, requestID)
	return o.Contact
}

// record records one failure and returns the result.
func record(t *testing.T, s Store, p store.RecordFailureParams) store.RecordFailureResult {
	t.Helper()
	res := s.RecordFailures(ctx(t), []store.RecordFailureParams{p})
	require.Len(t, res, 1)
	return res[0]
}

// failure is the failure a test records.
func failure(code string, seq uint64) store.Outcome {
	return store.Outcome{ReasonCode: code, Message: "because " + code, Seq: seq, FailedAt: at}
}

// requireSameContact fails unless the contacts are equal field by field,
// times compared as instants.
func requireSameContact(t require.TestingT, want, got store.Contact, msgAndArgs ...any) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	norm := func(c store.Contact) store.Contact {
		for _, tm := range []*time.Time{&c.EnqueuedAt, &c.UpdatedAt, &c.EndedAt} {
			if !tm.IsZero() {
				*tm = tm.UTC()
			}
		}
		return c
	}
	require.Equal(t, norm(want), norm(got), msgAndArgs...)
}

// requireUnchanged fails unless the contact is stored exactly as before
// (same record, same revision): nothing was written to it.
func requireUnchanged(t *testing.T, s Store, before store.Contact, msgAndArgs ...any) {
	t.Helper()
	requireSameContact(t, before, get(t, s, before.InstanceID, before.ContactID), msgAndArgs...)
}

// requireAbsent fails unless no contact is stored under the ids (read
// consistently).
func requireAbsent(t *testing.T, s Store, instanceID, contactID string, msgAndArgs ...any) {
	t.Helper()
	v := view(t, s, rk(instanceID, contactID, ""))
	require.NoError(t, v.Bad, msgAndArgs...)
	require.Nil(t, v.Contact, msgAndArgs...)
}

// requireNotFound fails unless GetContact finds no contact under the ids.
func requireNotFound(t *testing.T, s Store, instanceID, contactID string, msgAndArgs ...any) {
	t.Helper()
	_, err := s.GetContact(ctx(t), instanceID, contactID)
	require.ErrorIs(t, err, store.ErrContactNotFound, msgAndArgs...)
}

// checkViews reads views and runs check on them. A plain read (not
// Consistent) may lag behind on a replicated store: it is read again until
// check passes, for up to 10 seconds. A consistent read is read once.
func checkViews(t *testing.T, s Store, p store.ViewParams, check func(t require.TestingT, vs []store.View)) {
	t.Helper()
	if p.Consistent {
		vs, err := s.Views(ctx(t), p)
		require.NoError(t, err)
		require.Len(t, vs, len(p.Keys))
		check(t, vs)
		return
	}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		vs, err := s.Views(ctx(t), p)
		require.NoError(ct, err)
		require.Len(ct, vs, len(p.Keys))
		check(ct, vs)
	}, 10*time.Second, 20*time.Millisecond)
}

// listAll returns every contact of the instance, keyed by contactId, failing
// on a contact listed twice.
func listAll(t *testing.T, s Store, instanceID string) map[string]store.Contact {
	t.Helper()
	got := map[string]store.Contact{}
	require.NoError(t, s.ListContacts(ctx(t), instanceID, func(c store.Contact) error {
		if _, dup := got[c.ContactID]; dup {
			return fmt.Errorf("contact %q listed twice", c.ContactID)
		}
		got[c.ContactID] = c
		return nil
	}))
	return got
}

// rawOf returns the store's buckets, skipping the test for a store that
// does not expose them.
func rawOf(t *testing.T, s Store) RawBuckets {
	t.Helper()
	r, ok := s.(Raw)
	if !ok {
		t.Skip("the store does not expose its buckets (storetest.Raw)")
	}
	b := r.RawBuckets()
	require.NotNil(t, b.JS)
	require.NotEmpty(t, b.Contacts)
	require.NotEmpty(t, b.Bulks)
	return b
}

// kv opens one of the store's buckets with a plain KV client.
func (r RawBuckets) kv(t *testing.T, bucket string) jetstream.KeyValue {
	t.Helper()
	kv, err := r.JS.KeyValue(ctx(t), bucket)
	require.NoError(t, err)
	return kv
}

// put writes a record into the contacts bucket as another service would,
// and returns its revision.
func (r RawBuckets) put(t *testing.T, key, data string) uint64 {
	t.Helper()
	rev, err := r.kv(t, r.Contacts).Put(ctx(t), key, []byte(data))
	require.NoError(t, err, "raw put %s", key)
	return rev
}

// lastMsg returns the last message of a key in a bucket's stream (a marker
// included), or nil when the key has none. It asks the stream's leader, so
// it reflects every acknowledged write.
func (r RawBuckets) lastMsg(t *testing.T, bucket, key string) *jetstream.RawStreamMsg {
	t.Helper()
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	require.NoError(t, err)
	reply, err := r.JS.Conn().RequestWithContext(ctx(t), "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	require.NoError(t, err, "last message of %s in %s", key, bucket)
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject  string `json:"subject"`
			Sequence uint64 `json:"seq"`
			Header   []byte `json:"hdrs"`
			Data     []byte `json:"data"`
		} `json:"message"`
	}
	require.NoError(t, json.Unmarshal(reply.Data, &resp))
	if resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
		return nil
	}
	require.Nil(t, resp.Error, "last message of %s in %s", key, bucket)
	require.NotNil(t, resp.Message)
	m := &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Sequence, Data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header)
		require.NoError(t, err)
	}
	return m
}

// value returns the record stored under a key of the contacts bucket.
func (r RawBuckets) value(t *testing.T, key string) []byte {
	t.Helper()
	m := r.lastMsg(t, r.Contacts, key)
	require.NotNil(t, m, "no record under %s", key)
	return m.Data
}

func testInstances(t *testing.T, s Store) {
	c := ctx(t)

	insts, err := s.ListInstances(c)
	require.NoError(t, err)
	require.NotNil(t, insts, "an empty store lists an empty slice")
	require.Empty(t, insts)

	ok, err := s.InstanceExists(c, "acme")
	require.NoError(t, err)
	require.False(t, ok, "unknown instance")
	_, err = s.GetInstance(c, "acme")
	require.ErrorIs(t, err, store.ErrInstanceNotFound)

	acme, err := s.PutInstance(c, store.Instance{InstanceID: "acme", Name: "Acme Corp"})
	require.NoError(t, err)
	require.Equal(t, "acme", acme.InstanceID)
	require.Equal(t, "Acme Corp", acme.Name)
	require.False(t, acme.CreatedAt.IsZero(), "CreatedAt is set when zero")

	got, err := s.GetInstance(c, "acme")
	require.NoError(t, err)
	require.Equal(t, acme.InstanceID, got.InstanceID)
	require.Equal(t, acme.Name, got.Name)
	require.True(t, acme.CreatedAt.Equal(got.CreatedAt))

	ok, err = s.InstanceExists(c, "acme")
	require.NoError(t, err)
	require.True(t, ok)

	// Unknown first, added later: found at once.
	ok, err = s.InstanceExists(c, "beta_2")
	require.NoError(t, err)
	require.False(t, ok)
	created := at.Add(-time.Hour)
	_, err = s.PutInstance(c, store.Instance{InstanceID: "beta_2", CreatedAt: created})
	require.NoError(t, err)
	ok, err = s.InstanceExists(c, "beta_2")
	require.NoError(t, err)
	require.True(t, ok)
	beta, err := s.GetInstance(c, "beta_2")
	require.NoError(t, err)
	require.True(t, created.Equal(beta.CreatedAt), "a given CreatedAt is kept")

	_, err = s.PutInstance(c, store.Instance{InstanceID: "Aardvark-1"})
	require.NoError(t, err)

	// Registering again with a zero CreatedAt keeps the first one.
	again, err := s.PutInstance(c, store.Instance{InstanceID: "acme", Name: "Acme"})
	require.NoError(t, err)
	require.True(t, acme.CreatedAt.Equal(again.CreatedAt), "re-registering keeps CreatedAt")

	insts, err = s.ListInstances(c)
	require.NoError(t, err)
	var ids []string
	for _, inst := range insts {
		ids = append(ids, inst.InstanceID)
	}
	require.Equal(t, []string{"Aardvark-1", "acme", "beta_2"}, ids, "sorted by id")
	require.Equal(t, "Acme", insts[1].Name, "upsert replaced the name")
}

func testInstanceValidation(t *testing.T, s Store) {
	c := ctx(t)
	for _, id := range []string{"", "a.b", "a b", "a*", ">", "é", strings.Repeat("a", 101)} {
		_, err := s.PutInstance(c, store.Instance{InstanceID: id})
		require.ErrorIs(t, err, store.ErrInvalidInstance, "PutInstance(%q)", id)
		_, err = s.GetInstance(c, id)
		require.ErrorIs(t, err, store.ErrInvalidInstance, "GetInstance(%q)", id)
	}
	_, err := s.PutInstance(c, store.Instance{InstanceID: strings.Repeat("a", 100)})
	require.NoError(t, err, "100 characters is the limit")
	insts, err := s.ListInstances(c)
	require.NoError(t, err)
	require.Len(t, insts, 1)
}

func testContactRoundTrip(t *testing.T, s Store) {
	c := ctx(t)
	active := contact("acme", "c-1")
	stored := put(t, s, active)
	require.NotZero(t, stored.Revision)
	active.Revision = stored.Revision
	requireSameContact(t, active, stored)
	requireSameContact(t, active, getContact(t, s, "acme", "c-1"))

	// Every field, including those of an ended contact.
	full := store.Contact{
		ContactID:        "c-2",
		InstanceID:       "acme",
		State:            store.StateEnded,
		QueueID:          "support/tier-2",
		Channel:          store.ChannelWorkItem,
		EnqueuedAt:       at,
		UpdatedAt:        at.Add(time.Minute),
		EndedAt:          at.Add(2 * time.Minute),
		EndedBy:          "r-42",
		EndedBySeq:       4242,
		DisconnectReason: "EMERGENCY",
		PreviousState:    store.StateOnHold,
	}
	stored = put(t, s, full)
	full.Revision = stored.Revision
	requireSameContact(t, full, getContact(t, s, "acme", "c-2"))

	// An unconditional put replaces the record and moves the revision on.
	again := active
	again.State = store.StateConnected
	again.QueueID = ""
	again.EnqueuedAt = time.Time{}
	put2 := put(t, s, again)
	require.Greater(t, put2.Revision, active.Revision)
	again.Revision = put2.Revision
	requireSameContact(t, again, getContact(t, s, "acme", "c-1"))

	for _, ch := range []store.Channel{store.ChannelVoice, store.ChannelChat, store.ChannelEmail,
		store.ChannelSMS, store.ChannelVoicemail, store.ChannelWorkItem} {
		for _, st := range []store.State{store.StateInitiated, store.StateQueued, store.StateConnected,
			store.StateOnHold, store.StateEnded} {
			ct := contact("acme", string(ch)+"-"+string(st))
			ct.Channel, ct.State = ch, st
			_, err := s.PutContact(c, ct)
			require.NoError(t, err)
			got := getContact(t, s, "acme", ct.ContactID)
			require.Equal(t, ch, got.Channel)
			require.Equal(t, st, got.State)
		}
	}
}

func testContactDefaults(t *testing.T, s Store) {
	before := time.Now()
	ct := contact("acme", "c-1")
	ct.UpdatedAt = time.Time{}
	ct.EnqueuedAt = time.Time{}
	stored := put(t, s, ct)
	require.False(t, stored.UpdatedAt.Before(before.Add(-time.Second)), "UpdatedAt is set to now when zero")
	require.True(t, stored.EnqueuedAt.IsZero(), "EnqueuedAt stays zero")
	requireSameContact(t, stored, getContact(t, s, "acme", "c-1"))
}

func testContactNotFound(t *testing.T, s Store) {
	c := ctx(t)
	requireNotFound(t, s, "acme", "nope")
	put(t, s, contact("acme", "c-1"))
	requireNotFound(t, s, "acme-2", "c-1", "same contactId, other instance")
	requireNotFound(t, s, "acme", "C-1", "contactIds are case-sensitive")

	_, err := s.GetContact(c, "acme.x", "c-1")
	require.ErrorIs(t, err, store.ErrInvalidContact, "an invalid instanceId names no contact")
	_, err = s.GetContact(c, "acme", "")
	require.ErrorIs(t, err, store.ErrInvalidContact)

	called := false
	require.NoError(t, s.ListContacts(c, "empty", func(store.Contact) error { called = true; return nil }))
	require.False(t, called, "an instance without contacts lists nothing")
	require.ErrorIs(t, s.ListContacts(c, "bad instance", func(store.Contact) error { return nil }), store.ErrInvalidContact)
}

// awkwardContactIDs are contactIds that break naive key encodings. Every
// store must keep them apart and give them back exactly.
func awkwardContactIDs() []string {
	return []string{
		".", "..", "...", "*", ">", "a.b.c", "a/b", "/", "//a//", "with space", " ", "=", "==", "=2E", "=3D",
		"a=2Eb", "日本語", "😀", "👩‍👩‍👧", "é", "e\u0301", "tab\there", "new\nline", "nul\x00byte", "\u00a0",
		".leading", "trailing.", ".both.", "a..b", "$KV.x", "_INBOX.x", "-", "_", "A", "a", "0",
		"aA-_/09", "%2E", "+", "~", "'quote'\"", "back\\slash", "{json}", "550e8400-e29b-41d4-a716-446655440000",
		"=o", "=front", "f", "p",
		strings.Repeat("😀", 256), strings.Repeat(".", 256), strings.Repeat("a", 256),
	}
}

func testAwkwardContactIDs(t *testing.T, s Store) {
	c := ctx(t)
	ids := awkwardContactIDs()
	for i, id := range ids {
		ct := contact("acme", id)
		ct.QueueID = fmt.Sprint("q-", i)
		_, err := s.PutContact(c, ct)
		require.NoError(t, err, "PutContact(%q)", id)
	}
	keys := make([]store.RequestKey, len(ids))
	for i, id := range ids {
		got := getContact(t, s, "acme", id)
		require.Equal(t, id, got.ContactID)
		require.Equal(t, fmt.Sprint("q-", i), got.QueueID, "GetContact(%q) read another contact's record", id)
		keys[i] = rk("acme", id, "r-1")
	}
	listed := listAll(t, s, "acme")
	require.Len(t, listed, len(ids))
	for i, id := range ids {
		got, ok := listed[id]
		require.True(t, ok, "ListContacts misses %q", id)
		require.Equal(t, fmt.Sprint("q-", i), got.QueueID)
		require.Equal(t, "acme", got.InstanceID)
	}
	// Views reads each its own record.
	for _, consistent := range []bool{false, true} {
		checkViews(t, s, store.ViewParams{Keys: keys, Consistent: consistent}, func(t require.TestingT, vs []store.View) {
			for i, v := range vs {
				require.NotNil(t, v.Contact, ids[i])
				require.Equal(t, ids[i], v.Contact.ContactID)
				require.Equal(t, fmt.Sprint("q-", i), v.Contact.QueueID, "Views(%q) read another contact's record", ids[i])
			}
		})
	}

	abc := get(t, s, "acme", "a.b.c")
	ended := mustEnd(t, s, abc, "r-1")
	require.Equal(t, "a.b.c", ended.ContactID)
	require.Equal(t, store.StateQueued, get(t, s, "acme", "a=2Eb").State, "ending a.b.c touched no other contact")
	require.Equal(t, store.StateEnded, get(t, s, "acme", "a.b.c").State)
}

func testListContactsOneInstance(t *testing.T, s Store) {
	instances := map[string]int{"acme": 25, "acme-evil": 7, "acm": 3, "acme_2": 2, "xacme": 1}
	for inst, n := range instances {
		for i := range n {
			put(t, s, contact(inst, fmt.Sprintf("c-%d", i)))
		}
		// Ids that would leak across instances under a naive encoding.
		put(t, s, contact(inst, inst+".x"))
		put(t, s, contact(inst, ">"))
	}
	// Outcome records live in the same bucket and are no contacts.
	res := record(t, s, store.RecordFailureParams{Key: rk("acme", "c-1", "r-fail"), Failure: failure("X", 1)})
	require.NoError(t, res.Err)
	for inst, n := range instances {
		listed := listAll(t, s, inst)
		require.Len(t, listed, n+2, "instance %s", inst)
		for id, ct := range listed {
			require.Equal(t, inst, ct.InstanceID, "contact %q of %s", id, inst)
			require.NotZero(t, ct.Revision, "listed contacts carry their revision")
		}
		require.Contains(t, listed, inst+".x")
		require.Contains(t, listed, ">")
	}

	// A listed contact is the current version, and its revision is usable.
	listed := listAll(t, s, "acme")
	ended := mustEnd(t, s, listed["c-3"], "r")
	listed = listAll(t, s, "acme")
	require.Equal(t, store.StateEnded, listed["c-3"].State)
	require.Equal(t, ended.Revision, listed["c-3"].Revision)
}

func testListContactsEarlyStop(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.SeedContacts(c, func(yield func(store.Contact) bool) {
		for i := range 600 { // more than one batch of any sensible size
			if !yield(contact("acme", fmt.Sprintf("c-%03d", i))) {
				return
			}
		}
	})
	require.NoError(t, err)
	stop := errors.New("stop here")
	for _, after := range []int{1, 3, 300} {
		n := 0
		err := s.ListContacts(c, "acme", func(store.Contact) error {
			n++
			if n == after {
				return stop
			}
			return nil
		})
		require.ErrorIs(t, err, stop)
		require.Equal(t, after, n, "fn is not called after it returned an error")
	}
	// WalkContacts returns fn's error the same way.
	n := 0
	err = s.WalkContacts(c, store.WalkParams{InstanceID: "acme"}, func(store.WalkEntry) error {
		n++
		return stop
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
	// The store still works, and lists everything, after early stops.
	require.Len(t, listAll(t, s, "acme"), 600)

	cancelled, cancel := context.WithCancel(c)
	n = 0
	err = s.ListContacts(cancelled, "acme", func(store.Contact) error {
		if n++; n == 5 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, n, 600, "the walk stopped when its context ended")
}

// testWalkContactsSkip walks with a skip function: it is asked about every
// contact by its escaped contactId, and the ones it skips are not passed on.
func testWalkContactsSkip(t *testing.T, s Store) {
	c := ctx(t)
	for _, id := range []string{"keep-1", "skip-1", "keep-2", "skip-2", "a.b c", "skip.é"} {
		put(t, s, contact("acme", id))
	}
	put(t, s, contact("acme-2", "skip-3"))
	var asked, got []string
	require.NoError(t, s.WalkContacts(c, store.WalkParams{InstanceID: "acme", Skip: func(esc string) bool {
		asked = append(asked, esc)
		return strings.HasPrefix(esc, "skip")
	}}, func(e store.WalkEntry) error {
		require.NoError(t, e.Bad)
		got = append(got, e.Contact.ContactID)
		require.NotZero(t, e.Contact.Revision)
		return nil
	}))
	require.ElementsMatch(t, []string{"keep-1", "skip-1", "keep-2", "skip-2", "a=2Eb=20c", "skip=2E=C3=A9"}, asked,
		"asked by escaped contactId, once each, only for the instance")
	require.ElementsMatch(t, []string{"keep-1", "keep-2", "a.b c"}, got)

	// Without Skip, everything; an invalid instance is refused.
	got = nil
	require.NoError(t, s.WalkContacts(c, store.WalkParams{InstanceID: "acme"}, func(e store.WalkEntry) error {
		got = append(got, e.Contact.ContactID)
		return nil
	}))
	require.Len(t, got, 6)
	err := s.WalkContacts(c, store.WalkParams{InstanceID: "a.b"}, func(store.WalkEntry) error { return nil })
	require.ErrorIs(t, err, store.ErrInvalidContact)
}

// testWalkContactsBadRecords plants records another service might write
// wrongly and sees WalkContacts report each as bad and go on, ListContacts
// and GetContact refuse them, and nothing else be affected.
func testWalkContactsBadRecords(t *testing.T, s Store) {
	r := rawOf(t, s)
	c := ctx(t)
	for _, id := range []string{"good-1", "good-2", "a.b"} {
		put(t, s, contact("acme", id))
	}
	put(t, s, contact("acme-2", "fine"))
	valid := `{"state":"QUEUED","channel":"VOICE","updatedAt":"2026-11-20T10:00:00Z"}`
	bad := map[string]string{
		"acme.a=2eb":         valid, // lower-case hex: not canonical
		"acme.=41":           valid, // 'A' escaped: not canonical
		"acme.x.y":           valid, // a third token
		"acme.weird":         `{"state":"WEIRD","channel":"VOICE"}`,
		"acme.notjson":       `not json`,
		"acme.fax":           `{"state":"QUEUED","channel":"FAX"}`,
		"acme.impostor":      `{"contactId":"someone-else","state":"QUEUED","channel":"VOICE"}`,
		"acme.other-inst":    `{"instanceId":"beta","state":"QUEUED","channel":"VOICE"}`,
		"acme.lowercase-st8": `{"state":"queued","channel":"VOICE"}`,
	}
	for key, data := range bad {
		r.put(t, key, data)
	}

	var good []string
	badKeys := map[string]error{}
	require.NoError(t, s.WalkContacts(c, store.WalkParams{InstanceID: "acme"}, func(e store.WalkEntry) error {
		if e.Bad != nil {
			require.ErrorIs(t, e.Bad, store.ErrBadRecord)
			for key := range bad {
				if strings.Contains(e.Bad.Error(), strconv.Quote(strings.TrimPrefix(key, "acme."))) ||
					strings.Contains(e.Bad.Error(), strconv.Quote(key)) {
					require.NotContains(t, badKeys, key, "bad record %s yielded twice", key)
					badKeys[key] = e.Bad
					return nil
				}
			}
			t.Errorf("bad entry names none of the planted keys: %v", e.Bad)
			return nil
		}
		good = append(good, e.Contact.ContactID)
		return nil
	}))
	require.ElementsMatch(t, []string{"good-1", "good-2", "a.b"}, good, "the walk goes on past bad records")
	require.Len(t, badKeys, len(bad), "every bad record is yielded: %v", badKeys)

	// A walk that skips the bad keys sees no bad record.
	require.NoError(t, s.WalkContacts(c, store.WalkParams{InstanceID: "acme", Skip: func(esc string) bool {
		_, isBad := bad["acme."+esc]
		return isBad
	}}, func(e store.WalkEntry) error {
		require.NoError(t, e.Bad)
		return nil
	}))

	// ListContacts stops at a bad record with ErrBadRecord.
	err := s.ListContacts(c, "acme", func(store.Contact) error { return nil })
	require.ErrorIs(t, err, store.ErrBadRecord)
	require.Len(t, listAll(t, s, "acme-2"), 1, "other instances list as before")

	// GetContact refuses a bad record with ErrBadRecord, none of the others.
	for _, id := range []string{"weird", "notjson", "fax", "impostor", "other-inst", "lowercase-st8"} {
		_, err := s.GetContact(c, "acme", id)
		require.ErrorIs(t, err, store.ErrBadRecord, id)
		require.NotErrorIs(t, err, store.ErrContactNotFound, id)
		require.NotErrorIs(t, err, store.ErrInvalidContact, id)
	}
	// The non-canonical key names no contact: "a.b" is read from its own.
	require.Equal(t, store.StateQueued, get(t, s, "acme", "a.b").State)

	// A bad record can be repaired by ReplaceContact.
	fixed, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "weird")})
	require.NoError(t, err)
	requireSameContact(t, fixed, get(t, s, "acme", "weird"))
}

func testPutContactValidation(t *testing.T, s Store) {
	c := ctx(t)
	tests := map[string]func(*store.Contact){
		"empty contactId":           func(c *store.Contact) { c.ContactID = "" },
		"257 characters":            func(c *store.Contact) { c.ContactID = strings.Repeat("é", 257) },
		"invalid UTF-8":             func(c *store.Contact) { c.ContactID = "a\xc3" },
		"empty instanceId":          func(c *store.Contact) { c.InstanceID = "" },
		"instanceId with dot":       func(c *store.Contact) { c.InstanceID = "acme.prod" },
		"instanceId with wildcard":  func(c *store.Contact) { c.InstanceID = "*" },
		"instanceId too long":       func(c *store.Contact) { c.InstanceID = strings.Repeat("a", 101) },
		"empty state":               func(c *store.Contact) { c.State = "" },
		"unknown state":             func(c *store.Contact) { c.State = "DONE" },
		"lower-case state":          func(c *store.Contact) { c.State = "queued" },
		"empty channel":             func(c *store.Contact) { c.Channel = "" },
		"unknown channel":           func(c *store.Contact) { c.Channel = "FAX" },
		"previousState not active":  func(c *store.Contact) { c.State, c.PreviousState = store.StateEnded, store.StateEnded },
		"previousState not a state": func(c *store.Contact) { c.PreviousState = "NOPE" },
	}
	for name, mutate := range tests {
		ct := contact("acme", "c-1")
		mutate(&ct)
		_, err := s.PutContact(c, ct)
		require.ErrorIs(t, err, store.ErrInvalidContact, name)
		_, err = s.ReplaceContact(c, store.ReplaceContactParams{Contact: ct, Force: true})
		require.ErrorIs(t, err, store.ErrInvalidContact, "ReplaceContact: %s", name)
	}
	require.Empty(t, listAll(t, s, "acme"), "nothing invalid was written")

	ok := contact("acme", strings.Repeat("é", 256))
	_, err := s.PutContact(c, ok)
	require.NoError(t, err, "256 characters is the limit")
}

// testReplaceContact: ReplaceContact creates and replaces contacts, but
// never brings an ENDED contact back to an active state unless forced.
func testReplaceContact(t *testing.T, s Store) {
	c := ctx(t)
	// Absent: created.
	created, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "c-1")})
	require.NoError(t, err)
	require.NotZero(t, created.Revision)
	requireSameContact(t, created, get(t, s, "acme", "c-1"))

	// Active: replaced, the revision moves on.
	moved := created
	moved.State, moved.QueueID = store.StateConnected, "sales"
	replaced, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: moved})
	require.NoError(t, err)
	require.Greater(t, replaced.Revision, created.Revision)
	require.Equal(t, store.StateConnected, replaced.State)
	requireSameContact(t, replaced, get(t, s, "acme", "c-1"))

	// ENDED: not revived without Force; the stop is kept as it was.
	ended := mustEnd(t, s, replaced, "r-stop")
	for _, st := range []store.State{store.StateInitiated, store.StateQueued, store.StateConnected, store.StateOnHold} {
		revive := contact("acme", "c-1")
		revive.State = st
		_, err = s.ReplaceContact(c, store.ReplaceContactParams{Contact: revive})
		require.ErrorIs(t, err, store.ErrContactEnded, st)
		requireUnchanged(t, s, ended, "a refused replace writes nothing")
	}
	lk, err := s.LookUpRequest(c, rk("acme", "c-1", "r-stop"))
	require.NoError(t, err)
	require.NotNil(t, lk.Stopped, "the request's stop is still recorded")

	// ENDED by ENDED: allowed (nothing is revived).
	reEnded := ended
	reEnded.DisconnectReason = "corrected"
	reEnded.Revision = 0
	got, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: reEnded})
	require.NoError(t, err)
	require.Equal(t, "corrected", get(t, s, "acme", "c-1").DisconnectReason)
	require.Greater(t, got.Revision, ended.Revision)

	// Forced: revived.
	revived, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "c-1"), Force: true})
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, revived.State)
	requireSameContact(t, revived, get(t, s, "acme", "c-1"))

	// Over a deleted contact, and over a bad record: written.
	if r, ok := s.(Raw); ok {
		rb := r.RawBuckets()
		put(t, s, contact("acme", "deleted"))
		require.NoError(t, rb.kv(t, rb.Contacts).Delete(c, store.ContactKey("acme", "deleted")))
		again, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "deleted")})
		require.NoError(t, err)
		requireSameContact(t, again, get(t, s, "acme", "deleted"))

		rb.put(t, store.ContactKey("acme", "bad"), `{"state":"WEIRD"}`)
		fixed, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "bad")})
		require.NoError(t, err)
		requireSameContact(t, fixed, get(t, s, "acme", "bad"))
	}
}

// seq yields n contacts of the instance named c-0 … c-(n-1).
func seq(instanceID string, n int) iter.Seq[store.Contact] {
	return func(yield func(store.Contact) bool) {
		for i := range n {
			if !yield(contact(instanceID, fmt.Sprint("c-", i))) {
				return
			}
		}
	}
}

func testSeedContacts(t *testing.T, s Store) {
	c := ctx(t)
	const n = 10_000
	written, err := s.SeedContacts(c, seq("acme", n))
	require.NoError(t, err)
	require.Equal(t, n, written)
	_, err = s.SeedContacts(c, seq("other", 10))
	require.NoError(t, err)

	count := 0
	seen := make(map[string]bool, n)
	require.NoError(t, s.ListContacts(c, "acme", func(ct store.Contact) error {
		count++
		seen[ct.ContactID] = true
		return nil
	}))
	require.Equal(t, n, count)
	require.Len(t, seen, n)

	got := getContact(t, s, "acme", fmt.Sprint("c-", n-1))
	require.NotZero(t, got.Revision)
	want := contact("acme", fmt.Sprint("c-", n-1))
	want.Revision = got.Revision
	requireSameContact(t, want, got)

	// Seeded contacts are ordinary contacts.
	ended := mustEnd(t, s, get(t, s, "acme", "c-17"), "r")
	require.Equal(t, store.StateQueued, ended.PreviousState)

	written, err = s.SeedContacts(c, seq("acme", 0))
	require.NoError(t, err)
	require.Zero(t, written)
}

func testSeedContactsInvalid(t *testing.T, s Store) {
	c := ctx(t)
	contacts := func(yield func(store.Contact) bool) {
		for i := range 10 {
			ct := contact("acme", fmt.Sprint("c-", i))
			if i == 5 {
				ct.State = "BOGUS"
			}
			if !yield(ct) {
				return
			}
		}
	}
	written, err := s.SeedContacts(c, contacts)
	require.ErrorIs(t, err, store.ErrInvalidContact)
	require.Equal(t, 5, written, "the contacts before the invalid one are written")
	listed := listAll(t, s, "acme")
	require.Len(t, listed, 5)
	ids := slices.Sorted(maps.Keys(listed))
	require.Equal(t, []string{"c-0", "c-1", "c-2", "c-3", "c-4"}, ids)
}

// testEndContactsStates ends a contact in every active state and checks
// the ENDED record returned and stored, and that the contact is then
// beyond any further end.
func testEndContactsStates(t *testing.T, s Store) {
	for i, st := range []store.State{store.StateInitiated, store.StateQueued, store.StateConnected, store.StateOnHold} {
		id := fmt.Sprint("c-", i)
		ct := contact("acme", id)
		ct.State = st
		stored := put(t, s, ct)

		endAt := at.Add(time.Hour)
		o := end(t, s, store.EndContactParams{Contact: stored, RequestID: "r-1", RequestSeq: uint64(100 + i),
			DisconnectReason: "EMERGENCY", At: endAt})
		require.NoError(t, o.Err, st)
		want := stored
		want.State = store.StateEnded
		want.PreviousState = st
		want.EndedAt = endAt
		want.UpdatedAt = endAt
		want.EndedBy = "r-1"
		want.EndedBySeq = uint64(100 + i)
		want.DisconnectReason = "EMERGENCY"
		require.Greater(t, o.Contact.Revision, stored.Revision)
		want.Revision = o.Contact.Revision
		requireSameContact(t, want, o.Contact)
		require.Equal(t, time.UTC, o.Contact.EndedAt.Location(), "times are returned in UTC")
		requireSameContact(t, want, get(t, s, "acme", id), "the stored record is the one returned")

		v := view(t, s, rk("acme", id, "r-1"))
		require.True(t, v.EndedByThis())
		require.Equal(t, o.Contact.Revision, v.ContactRev)
		other := view(t, s, rk("acme", id, "r-2"))
		require.False(t, other.EndedByThis(), "ended by r-1, not by r-2")

		// The ENDED record as read: not active, refused, nothing written.
		o = end(t, s, store.EndContactParams{Contact: get(t, s, "acme", id), RequestID: "r-2"})
		require.ErrorIs(t, o.Err, store.ErrInvalidContact)
		require.NotErrorIs(t, o.Err, store.ErrRevisionConflict)
		// The record read before the end: stale, refused, nothing written.
		o = end(t, s, store.EndContactParams{Contact: stored, RequestID: "r-1"})
		require.ErrorIs(t, o.Err, store.ErrRevisionConflict, "the same request at the old revision")
		o = end(t, s, store.EndContactParams{Contact: stored, RequestID: "r-2"})
		require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
		requireSameContact(t, want, get(t, s, "acme", id), "refused ends write nothing")
	}

	// A zero At means now; an empty reason and a zero sequence are
	// recorded as empty.
	before := time.Now().Add(-time.Second)
	stored := put(t, s, contact("acme", "now"))
	o := end(t, s, store.EndContactParams{Contact: stored, RequestID: "bulk-7/now"})
	require.NoError(t, o.Err)
	require.True(t, o.Contact.EndedAt.After(before))
	require.False(t, o.Contact.EndedAt.After(time.Now().Add(time.Second)))
	require.True(t, o.Contact.EndedAt.Equal(o.Contact.UpdatedAt))
	require.Empty(t, o.Contact.DisconnectReason)
	require.Zero(t, o.Contact.EndedBySeq)
	require.Equal(t, "bulk-7/now", o.Contact.EndedBy)
	requireSameContact(t, o.Contact, get(t, s, "acme", "now"))

	// The record is the documented JSON.
	if r, ok := s.(Raw); ok {
		rb := r.RawBuckets()
		stored := put(t, s, contact("acme", "json"))
		o := end(t, s, store.EndContactParams{Contact: stored, RequestID: "r-j", RequestSeq: 7, DisconnectReason: "WHY", At: at})
		require.NoError(t, o.Err)
		require.JSONEq(t, `{"contactId":"json","instanceId":"acme","state":"ENDED","queueId":"billing","channel":"VOICE",
			"enqueuedAt":"2026-11-20T09:00:00.123456789Z","updatedAt":"2026-11-20T09:00:00.123456789Z",
			"endedAt":"2026-11-20T09:00:00.123456789Z","endedBy":"r-j","endedBySeq":7,"disconnectReason":"WHY",
			"previousState":"QUEUED"}`, string(rb.value(t, store.ContactKey("acme", "json"))))
		m := rb.lastMsg(t, rb.Contacts, store.ContactKey("acme", "json"))
		require.Empty(t, m.Header.Get("Nats-TTL"), "an ENDED contact does not expire")
	}
}

// testEndContactsStale ends contacts at a revision they are no longer at:
// nothing is written, and the error says to read again.
func testEndContactsStale(t *testing.T, s Store) {
	c := ctx(t)
	// Changed since it was read.
	read := put(t, s, contact("acme", "moved"))
	moved := read
	moved.State = store.StateOnHold
	moved = put(t, s, moved)
	o := end(t, s, store.EndContactParams{Contact: read, RequestID: "r-1"})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	require.NotErrorIs(t, o.Err, store.ErrInvalidContact)
	require.Zero(t, o.Contact.Revision, "no record is reported for a refused end")
	requireUnchanged(t, s, moved, "a stale end writes nothing")
	// Read again, decided again: ended from the newer state.
	require.Equal(t, store.StateOnHold, mustEnd(t, s, get(t, s, "acme", "moved"), "r-1").PreviousState)

	// Ended by another request since it was read.
	read = put(t, s, contact("acme", "taken"))
	winner := mustEnd(t, s, read, "other")
	o = end(t, s, store.EndContactParams{Contact: read, RequestID: "r-1"})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	requireUnchanged(t, s, winner)

	// A revision that was never this contact's, or a contact that does
	// not exist: refused, nothing created.
	a := put(t, s, contact("acme", "a"))
	b := put(t, s, contact("acme", "b"))
	borrowed := a
	borrowed.Revision = b.Revision
	o = end(t, s, store.EndContactParams{Contact: borrowed, RequestID: "r-1"})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	requireUnchanged(t, s, a)
	ghost := contact("acme", "ghost")
	ghost.Revision = b.Revision
	o = end(t, s, store.EndContactParams{Contact: ghost, RequestID: "r-1"})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	requireAbsent(t, s, "acme", "ghost", "ending an absent contact creates nothing")
	ghost.Revision = 1 << 40
	o = end(t, s, store.EndContactParams{Contact: ghost, RequestID: "r-1"})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	requireAbsent(t, s, "acme", "ghost")

	// Deleted since it was read.
	if r, ok := s.(Raw); ok {
		rb := r.RawBuckets()
		read := put(t, s, contact("acme", "deleted"))
		require.NoError(t, rb.kv(t, rb.Contacts).Delete(c, store.ContactKey("acme", "deleted")))
		o = end(t, s, store.EndContactParams{Contact: read, RequestID: "r-1"})
		require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
		requireAbsent(t, s, "acme", "deleted", "a deleted contact is not brought back by a stale end")
	}
}

// testEndContactsInvalid: parameters that cannot end a contact are refused
// with ErrInvalidContact, and nothing is written.
func testEndContactsInvalid(t *testing.T, s Store) {
	stored := put(t, s, contact("acme", "c-1"))
	with := func(f func(p *store.EndContactParams)) store.EndContactParams {
		p := store.EndContactParams{Contact: stored, RequestID: "r-1"}
		f(&p)
		return p
	}
	cases := map[string]store.EndContactParams{
		"no requestId":     with(func(p *store.EndContactParams) { p.RequestID = "" }),
		"no revision":      with(func(p *store.EndContactParams) { p.Contact.Revision = 0 }),
		"ENDED":            with(func(p *store.EndContactParams) { p.Contact.State = store.StateEnded }),
		"no state":         with(func(p *store.EndContactParams) { p.Contact.State = "" }),
		"unknown state":    with(func(p *store.EndContactParams) { p.Contact.State = "WEIRD" }),
		"lower-case state": with(func(p *store.EndContactParams) { p.Contact.State = "queued" }),
		"no contactId":     with(func(p *store.EndContactParams) { p.Contact.ContactID = "" }),
		"no instanceId":    with(func(p *store.EndContactParams) { p.Contact.InstanceID = "" }),
		"bad instanceId":   with(func(p *store.EndContactParams) { p.Contact.InstanceID = "acme.>" }),
		"long instanceId":  with(func(p *store.EndContactParams) { p.Contact.InstanceID = strings.Repeat("a", 101) }),
		"long contactId":   with(func(p *store.EndContactParams) { p.Contact.ContactID = strings.Repeat("x", 257) }),
		"invalid UTF-8":    with(func(p *store.EndContactParams) { p.Contact.ContactID = "\xff" }),
	}
	names := slices.Sorted(maps.Keys(cases))
	ps := make([]store.EndContactParams, len(names))
	for i, name := range names {
		ps[i] = cases[name]
	}
	outs := s.EndContacts(ctx(t), ps)
	require.Len(t, outs, len(ps))
	for i, o := range outs {
		require.ErrorIs(t, o.Err, store.ErrInvalidContact, names[i])
		require.NotErrorIs(t, o.Err, store.ErrRevisionConflict, names[i])
	}
	requireUnchanged(t, s, stored, "invalid requests touch nothing")
	require.Len(t, listAll(t, s, "acme"), 1)
}

// testEndContactsBatch ends a batch mixing every case, and checks each
// outcome, in order, and the records.
func testEndContactsBatch(t *testing.T, s Store) {
	recs := map[string]store.Contact{}
	for _, id := range []string{"active", "stale", "other", "a.b c/é*>", "twice"} {
		recs[id] = put(t, s, contact("acme", id))
	}
	beta := put(t, s, contact("beta", "active"))
	moved := recs["stale"]
	moved.State = store.StateOnHold
	put(t, s, moved)
	mustEnd(t, s, recs["other"], "someone")

	later := at.Add(time.Hour)
	ps := []store.EndContactParams{
		{Contact: recs["active"], RequestID: "r-active", RequestSeq: 11, DisconnectReason: "EMERGENCY", At: later},
		{Contact: recs["stale"], RequestID: "r-stale"},
		{Contact: recs["other"], RequestID: "r-other"},
		{Contact: recs["a.b c/é*>"], RequestID: "r-awkward"},
		{Contact: recs["twice"], RequestID: "r-twice-1", RequestSeq: 1},
		{Contact: recs["twice"], RequestID: "r-twice-2", RequestSeq: 2},
		{Contact: recs["twice"], RequestID: "r-twice-1", RequestSeq: 3},
		{Contact: recs["active"]},
		{Contact: beta, RequestID: "r-beta"},
	}
	outs := s.EndContacts(ctx(t), ps)
	require.Len(t, outs, len(ps))
	requireEnded := func(i int) {
		t.Helper()
		o := outs[i]
		require.NoError(t, o.Err, ps[i].Contact.ContactID)
		require.Equal(t, store.StateEnded, o.Contact.State)
		require.Equal(t, ps[i].Contact.State, o.Contact.PreviousState, ps[i].Contact.ContactID)
		require.Equal(t, ps[i].RequestID, o.Contact.EndedBy)
		require.Equal(t, ps[i].RequestSeq, o.Contact.EndedBySeq)
		require.Equal(t, ps[i].Contact.InstanceID, o.Contact.InstanceID)
		got, stored := o.Contact, get(t, s, ps[i].Contact.InstanceID, ps[i].Contact.ContactID)
		if got.Revision == 0 {
			// Confirmed with its batch, whose answer names no revision.
			got.Revision = stored.Revision
		}
		requireSameContact(t, stored, got, "what was stored is what was returned")
	}
	requireEnded(0)
	require.True(t, outs[0].Contact.EndedAt.Equal(later))
	require.Equal(t, "EMERGENCY", outs[0].Contact.DisconnectReason)
	require.Equal(t, "billing", outs[0].Contact.QueueID, "the record's other fields are kept")
	require.ErrorIs(t, outs[1].Err, store.ErrRevisionConflict)
	require.ErrorIs(t, outs[2].Err, store.ErrRevisionConflict)
	requireEnded(3)
	requireEnded(4)
	require.ErrorIs(t, outs[5].Err, store.ErrRevisionConflict, "a second end of a contact in the batch")
	require.ErrorIs(t, outs[6].Err, store.ErrRevisionConflict, "the same request twice in one batch")
	require.ErrorIs(t, outs[7].Err, store.ErrInvalidContact)
	requireEnded(8)

	require.Equal(t, "someone", get(t, s, "acme", "other").EndedBy, "a contact ended by another request is not touched")
	require.Equal(t, store.StateOnHold, get(t, s, "acme", "stale").State)
	require.Equal(t, uint64(1), get(t, s, "acme", "twice").EndedBySeq)
	require.Empty(t, s.EndContacts(ctx(t), nil))
}

// testEndContactsMany reads and ends more contacts in one call than one
// batched read asks for.
func testEndContactsMany(t *testing.T, s Store) {
	c := ctx(t)
	const n = 300
	_, err := s.SeedContacts(c, seq("acme", n))
	require.NoError(t, err)
	keys := make([]store.RequestKey, n)
	for i := range keys {
		keys[i] = rk("acme", fmt.Sprint("c-", i), fmt.Sprint("r-", i))
	}
	// A failure recorded for one request is read with the rest.
	res := record(t, s, store.RecordFailureParams{Key: keys[n-1], Failure: failure("X", 1)})
	require.NoError(t, res.Err)

	var vs []store.View
	for _, consistent := range []bool{false, true} {
		checkViews(t, s, store.ViewParams{Keys: keys, Consistent: consistent}, func(t require.TestingT, got []store.View) {
			for i, v := range got {
				require.Equal(t, keys[i], v.Key)
				require.NotNil(t, v.Contact, "consistent %v: %s", consistent, keys[i].ContactID)
				require.Equal(t, keys[i].ContactID, v.Contact.ContactID)
				require.Equal(t, v.Contact.Revision, v.ContactRev)
				if i == n-1 {
					require.True(t, v.Outcome.Final())
					require.Equal(t, "X", v.Outcome.ReasonCode)
				} else {
					require.Nil(t, v.Outcome, keys[i].ContactID)
					require.Zero(t, v.OutcomeRev)
				}
			}
			vs = got
		})
	}
	ps := make([]store.EndContactParams, n-1)
	for i := range ps {
		ps[i] = store.EndContactParams{Contact: *vs[i].Contact, RequestID: keys[i].RequestID, RequestSeq: uint64(i + 1)}
	}
	for i, o := range s.EndContacts(c, ps) {
		require.NoError(t, o.Err, i)
		require.Equal(t, ps[i].Contact.ContactID, o.Contact.ContactID)
		require.Equal(t, uint64(i+1), o.Contact.EndedBySeq)
	}
	for _, consistent := range []bool{false, true} {
		checkViews(t, s, store.ViewParams{Keys: keys, Consistent: consistent}, func(t require.TestingT, vs []store.View) {
			for i := range n - 1 {
				require.True(t, viewAt(vs, i).EndedByThis(), keys[i].ContactID)
				require.Equal(t, uint64(i+1), vs[i].Contact.EndedBySeq)
			}
			require.False(t, viewAt(vs, n-1).EndedByThis())
			require.Equal(t, store.StateQueued, vs[n-1].Contact.State)
		})
	}
}

// testEndContactsConcurrent races 50 requests ending one contact at the
// revision they all read: exactly one wins, the others are told the
// contact changed.
func testEndContactsConcurrent(t *testing.T, s Store) {
	c := ctx(t)
	const n = 50
	read := put(t, s, contact("acme", "hot"))

	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		outs     = make([]store.EndOutcome, n)
		requests = make([]string, n)
	)
	for i := range n {
		requests[i] = fmt.Sprint("r-", i)
		wg.Go(func() {
			<-start
			o := s.EndContacts(c, []store.EndContactParams{{Contact: read, RequestID: requests[i],
				RequestSeq: uint64(i + 1), DisconnectReason: requests[i]}})
			outs[i] = o[0]
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, o := range outs {
		if o.Err == nil {
			require.Equal(t, -1, winner, "requests %d and %d both ended the contact", winner, i)
			winner = i
			continue
		}
		require.ErrorIs(t, o.Err, store.ErrRevisionConflict, "request %d", i)
	}
	require.NotEqual(t, -1, winner, "no request ended the contact")

	got := get(t, s, "acme", "hot")
	require.Equal(t, store.StateEnded, got.State)
	require.Equal(t, requests[winner], got.EndedBy)
	require.Equal(t, uint64(winner+1), got.EndedBySeq)
	require.Equal(t, requests[winner], got.DisconnectReason)
	require.Equal(t, store.StateQueued, got.PreviousState)
	require.Equal(t, outs[winner].Contact.Revision, got.Revision)
	requireSameContact(t, outs[winner].Contact, got)

	// Each request reads again: only the winner's view shows its stop.
	for i := range n {
		v := view(t, s, rk("acme", "hot", requests[i]))
		require.Equal(t, i == winner, v.EndedByThis(), "request %d", i)
	}
}

// testViews reads requests: absent, active and ended contacts, with and
// without outcomes, consistently and not, contacts only, invalid keys,
// duplicates.
func testViews(t *testing.T, s Store) {
	c := ctx(t)
	active := put(t, s, contact("acme", "active"))
	endedRead := put(t, s, contact("acme", "ended"))
	ended := mustEnd(t, s, endedRead, "r-ended")
	failed := put(t, s, contact("acme", "failed"))
	res := record(t, s, store.RecordFailureParams{Key: rk("acme", "failed", "r-failed"),
		Failure: store.Outcome{ReasonCode: "NOT_AUTHORIZED", Message: "no", Seq: 9, FailedAt: at}, ContactRev: failed.Revision})
	require.NoError(t, res.Err)
	absentFail := record(t, s, store.RecordFailureParams{Key: rk("acme", "absent-failed", "r-x"), Failure: failure("CONTACT_NOT_FOUND", 3),
		DependsOnContact: true})
	require.NoError(t, absentFail.Err)
	invalidFail := record(t, s, store.RecordFailureParams{Key: rk("not valid", "c", "r-inv"), Failure: failure("INVALID", 4)})
	require.NoError(t, invalidFail.Err, "a request refused for its instanceId has an outcome too")

	keys := []store.RequestKey{
		rk("acme", "absent", "r-1"),
		rk("acme", "active", "r-1"),
		rk("acme", "ended", "r-ended"),
		rk("acme", "ended", "r-other"),
		rk("acme", "failed", "r-failed"),
		rk("acme", "failed", "r-other"),
		rk("acme", "absent-failed", "r-x"),
		rk("not valid", "c", "r-inv"),
		rk("acme", "", "r-1"),
		rk("beta", "active", "r-1"),
		rk("acme", "active", "r-1"), // a duplicate
	}
	for _, consistent := range []bool{false, true} {
		checkViews(t, s, store.ViewParams{Keys: keys, Consistent: consistent}, func(t require.TestingT, vs []store.View) {
			checkTestViews(t, vs, keys, consistent, active, ended, failed, res, absentFail)
		})
	}

	// ContactsOnly skips the outcomes.
	checkViews(t, s, store.ViewParams{Keys: keys, ContactsOnly: true}, func(t require.TestingT, vs []store.View) {
		for i, v := range vs {
			require.Nil(t, v.Outcome, keys[i])
			require.Zero(t, v.OutcomeRev, keys[i])
		}
		require.NotNil(t, viewAt(vs, 1).Contact)
		require.True(t, viewAt(vs, 2).EndedByThis())
	})

	vs, err := s.Views(c, store.ViewParams{})
	require.NoError(t, err)
	require.Empty(t, vs)
}

// viewAt returns a pointer to vs[i], for View's pointer methods.
func viewAt(vs []store.View, i int) *store.View { return &vs[i] }

// checkTestViews checks the views of testViews.
func checkTestViews(t require.TestingT, vs []store.View, keys []store.RequestKey, consistent bool,
	active, ended, failed store.Contact, res, absentFail store.RecordFailureResult) {
	for i, v := range vs {
		require.Equal(t, keys[i], v.Key, "views are in order")
		require.NoError(t, v.Bad, keys[i])
	}
	msg := fmt.Sprintf("consistent %v", consistent)
	require.Nil(t, vs[0].Contact, msg)
	require.Zero(t, vs[0].ContactRev, msg)
	require.Nil(t, vs[0].Outcome, msg)
	require.Zero(t, vs[0].OutcomeRev, msg)
	require.False(t, vs[0].EndedByThis())

	for _, v := range []store.View{vs[1], vs[10]} {
		require.NotNil(t, v.Contact, msg)
		requireSameContact(t, active, *v.Contact, msg)
		require.Equal(t, active.Revision, v.ContactRev, msg)
		require.False(t, v.EndedByThis())
		require.Nil(t, v.Outcome)
	}

	require.NotNil(t, vs[2].Contact, msg)
	requireSameContact(t, ended, *vs[2].Contact, msg)
	require.Equal(t, ended.Revision, vs[2].ContactRev)
	require.True(t, vs[2].EndedByThis(), msg)
	require.False(t, vs[3].EndedByThis(), "ended by another request")
	requireSameContact(t, ended, *vs[3].Contact)

	require.NotNil(t, vs[4].Outcome, msg)
	o := *vs[4].Outcome
	require.True(t, o.Final())
	require.Equal(t, store.OutcomeFailed, o.State)
	require.Equal(t, "NOT_AUTHORIZED", o.ReasonCode)
	require.Equal(t, "no", o.Message)
	require.Equal(t, uint64(9), o.Seq)
	require.True(t, o.FailedAt.Equal(at))
	require.Equal(t, "r-failed", o.RequestID)
	require.Equal(t, "failed", o.ContactID)
	require.Equal(t, "acme", o.InstanceID)
	require.Equal(t, res.Outcome.Revision, o.Revision)
	require.Equal(t, o.Revision, vs[4].OutcomeRev)
	require.Greater(t, vs[4].ContactRev, failed.Revision, "the failure fenced the active contact")
	require.Nil(t, vs[5].Outcome, "another request of the same contact has no outcome")
	require.Zero(t, vs[5].OutcomeRev)

	require.Nil(t, vs[6].Contact)
	require.Zero(t, vs[6].ContactRev, "recording a failure creates no contact")
	require.True(t, vs[6].Outcome.Final(), msg)
	require.Equal(t, absentFail.Outcome.Revision, vs[6].OutcomeRev)

	require.Nil(t, vs[7].Contact, "an invalid instanceId names no contact")
	require.Zero(t, vs[7].ContactRev)
	require.True(t, vs[7].Outcome.Final(), msg)
	require.Equal(t, "INVALID", vs[7].Outcome.ReasonCode)

	require.Nil(t, vs[8].Contact, "an empty contactId names no contact")
	require.Zero(t, vs[8].ContactRev)
	require.Nil(t, vs[9].Contact, "contacts are per instance")
}

// testViewsDeleted: a deleted or purged contact has no record, but its key
// has the revision of the marker, on which a write can be conditioned.
func testViewsDeleted(t *testing.T, s Store) {
	r := rawOf(t, s)
	c := ctx(t)
	kv := r.kv(t, r.Contacts)
	deleted := put(t, s, contact("acme", "deleted"))
	purged := put(t, s, contact("acme", "purged"))
	require.NoError(t, kv.Delete(c, store.ContactKey("acme", "deleted")))
	require.NoError(t, kv.Purge(c, store.ContactKey("acme", "purged")))

	markers := map[string]uint64{}
	for _, id := range []string{"deleted", "purged"} {
		m := r.lastMsg(t, r.Contacts, store.ContactKey("acme", id))
		require.NotNil(t, m, "the marker of %s", id)
		markers[id] = m.Sequence
	}
	for _, consistent := range []bool{false, true} {
		checkViews(t, s, store.ViewParams{Keys: []store.RequestKey{rk("acme", "deleted", "r"), rk("acme", "purged", "r")},
			Consistent: consistent}, func(t require.TestingT, vs []store.View) {
			for i, before := range []store.Contact{deleted, purged} {
				v := vs[i]
				require.Nil(t, v.Contact, before.ContactID)
				require.NoError(t, v.Bad)
				require.Greater(t, v.ContactRev, before.Revision, "%s: the marker's revision", before.ContactID)
				require.Equal(t, markers[before.ContactID], v.ContactRev)
			}
		})
	}
	requireAbsent(t, s, "acme", "deleted")
	requireAbsent(t, s, "acme", "purged")

	// A failure recorded on a deleted contact writes no contact back.
	v := view(t, s, rk("acme", "deleted", "r"))
	res := record(t, s, store.RecordFailureParams{Key: v.Key, Failure: failure("CONTACT_NOT_FOUND", 1),
		ContactRev: v.ContactRev, DependsOnContact: true})
	require.NoError(t, res.Err)
	after := view(t, s, v.Key)
	require.Nil(t, after.Contact)
	require.Equal(t, v.ContactRev, after.ContactRev, "the marker is not rewritten")
	require.True(t, after.Outcome.Final())
}

// testViewsBadRecords: a record that is not a valid contact is reported,
// not hidden and not fatal to the other views.
func testViewsBadRecords(t *testing.T, s Store) {
	r := rawOf(t, s)
	bodies := map[string]string{
		"weird":    `{"state":"WEIRD"}`,
		"notjson":  `not json`,
		"impostor": `{"contactId":"someone","state":"QUEUED","channel":"VOICE"}`,
		"fax":      `{"state":"QUEUED","channel":"FAX"}`,
	}
	revs := map[string]uint64{}
	for id, body := range bodies {
		revs[id] = r.put(t, store.ContactKey("acme", id), body)
	}
	good := put(t, s, contact("acme", "good"))
	ids := slices.Sorted(maps.Keys(bodies))
	keys := []store.RequestKey{rk("acme", "good", "r")}
	for _, id := range ids {
		keys = append(keys, rk("acme", id, "r"))
	}
	for _, consistent := range []bool{false, true} {
		// Bad records are no read error.
		checkViews(t, s, store.ViewParams{Keys: keys, Consistent: consistent}, func(t require.TestingT, vs []store.View) {
			require.NotNil(t, vs[0].Contact)
			requireSameContact(t, good, *vs[0].Contact)
			for i, id := range ids {
				v := vs[i+1]
				require.Nil(t, v.Contact, id)
				require.ErrorIs(t, v.Bad, store.ErrBadRecord, id)
				require.ErrorContains(t, v.Bad, "acme", id)
				require.ErrorContains(t, v.Bad, strconv.Quote(id), "the error names the record")
				require.Equal(t, revs[id], v.ContactRev, "%s: the bad record's revision", id)
				require.False(t, viewAt(vs, i+1).EndedByThis())
			}
		})
	}

	// A failure on a bad record is recorded and leaves the record alone.
	v := view(t, s, rk("acme", "weird", "r"))
	res := record(t, s, store.RecordFailureParams{Key: v.Key, Failure: failure("INTERNAL_ERROR", 1), ContactRev: v.ContactRev})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)
	after := view(t, s, v.Key)
	require.Equal(t, v.ContactRev, after.ContactRev, "a bad record is not fenced")
	require.Equal(t, `{"state":"WEIRD"}`, string(r.value(t, store.ContactKey("acme", "weird"))))
	require.True(t, after.Outcome.Final())
}

// testRecordFailures records a failure, reads it back through Views and
// LookUpRequest, and refuses a second record at a stale revision.
func testRecordFailures(t *testing.T, s Store) {
	c := ctx(t)
	k := rk("acme", "absent", "r-1")
	v := view(t, s, k)
	res := record(t, s, store.RecordFailureParams{Key: k, Failure: store.Outcome{ReasonCode: "CONTACT_NOT_FOUND",
		Message: "contact does not exist", Retryable: true, Seq: 5, FailedAt: at}, OutcomeRev: v.OutcomeRev,
		ContactRev: v.ContactRev, DependsOnContact: true})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)
	o := res.Outcome
	require.NotZero(t, o.Revision)
	require.Equal(t, store.OutcomeFailed, o.State)
	require.Equal(t, "acme", o.InstanceID, "ids from the key when the failure has none")
	require.Equal(t, "absent", o.ContactID)
	require.Equal(t, "r-1", o.RequestID)
	require.Equal(t, "CONTACT_NOT_FOUND", o.ReasonCode)
	require.Equal(t, "contact does not exist", o.Message)
	require.True(t, o.Retryable)
	require.Equal(t, uint64(5), o.Seq)
	require.True(t, o.FailedAt.Equal(at))
	require.Equal(t, time.UTC, o.FailedAt.Location())

	v = view(t, s, k)
	require.NotNil(t, v.Outcome)
	require.Equal(t, o, *v.Outcome, "Views reads the failure as recorded")
	require.Equal(t, o.Revision, v.OutcomeRev)
	require.Nil(t, v.Contact)
	lk, err := s.LookUpRequest(c, k)
	require.NoError(t, err)
	require.Nil(t, lk.Stopped)
	require.NotNil(t, lk.Failed)
	require.Equal(t, o, *lk.Failed)

	// The same request, another contact or another request: no outcome.
	for _, other := range []store.RequestKey{rk("acme", "absent", "r-2"), rk("acme", "absent2", "r-1"), rk("beta", "absent", "r-1")} {
		lk, err := s.LookUpRequest(c, other)
		require.NoError(t, err)
		require.Nil(t, lk.Failed, other)
		require.Nil(t, lk.Stopped, other)
	}

	// A second record at the revision read before the first: refused.
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("OTHER", 6)})
	require.ErrorIs(t, res.Err, store.ErrRevisionConflict)
	require.Nil(t, res.Stopped)
	require.Equal(t, o, *view(t, s, k).Outcome, "a refused record writes nothing")
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("OTHER", 6), OutcomeRev: o.Revision + 1000})
	require.ErrorIs(t, res.Err, store.ErrRevisionConflict)
	// At the revision read: replaced.
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("OTHER", 6), OutcomeRev: o.Revision})
	require.NoError(t, res.Err)
	require.Greater(t, res.Outcome.Revision, o.Revision)
	require.Equal(t, "OTHER", view(t, s, k).Outcome.ReasonCode)

	// The failure's ids are recorded as given (the ids the result echoes).
	k2 := rk("acme", "absent", "r-echo")
	res = record(t, s, store.RecordFailureParams{Key: k2, Failure: store.Outcome{InstanceID: "ACME ", ContactID: "absent",
		RequestID: "r-echo", ReasonCode: "X"}})
	require.NoError(t, res.Err)
	require.Equal(t, "ACME ", view(t, s, k2).Outcome.InstanceID)

	// A failure of an ENDED contact (ended by another request) is recorded
	// and leaves the contact alone.
	ended := mustEnd(t, s, put(t, s, contact("acme", "ended")), "someone")
	k3 := rk("acme", "ended", "r-late")
	v = view(t, s, k3)
	res = record(t, s, store.RecordFailureParams{Key: k3, Failure: failure("CONTACT_NOT_FOUND", 1),
		ContactRev: v.ContactRev, DependsOnContact: true})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)
	requireUnchanged(t, s, ended, "an ENDED contact is not fenced")
	require.True(t, view(t, s, k3).Outcome.Final())

	require.Empty(t, s.RecordFailures(c, nil))
}

// testRecordFailuresStopped: a stop of the same request that landed first
// wins; the failure is withdrawn and the stop reported.
func testRecordFailuresStopped(t *testing.T, s Store) {
	c := ctx(t)
	read := put(t, s, contact("acme", "c-1"))
	k := rk("acme", "c-1", "r-1")
	before := view(t, s, k) // the failing message's read: active, no outcome
	stopped := end(t, s, store.EndContactParams{Contact: read, RequestID: "r-1", RequestSeq: 10})
	require.NoError(t, stopped.Err)

	res := record(t, s, store.RecordFailureParams{Key: k, Failure: failure("INTERNAL_ERROR", 11),
		OutcomeRev: before.OutcomeRev, ContactRev: before.ContactRev})
	require.NoError(t, res.Err)
	require.NotNil(t, res.Stopped)
	requireSameContact(t, stopped.Contact, *res.Stopped, "the stop is reported")
	require.Zero(t, res.Outcome.Revision, "no failure is reported")

	v := view(t, s, k)
	require.True(t, v.EndedByThis())
	require.False(t, v.Outcome.Final(), "the failure was withdrawn")
	require.Nil(t, v.Outcome)
	requireSameContact(t, stopped.Contact, *v.Contact, "the contact is left as the stop wrote it")
	lk, err := s.LookUpRequest(c, k)
	require.NoError(t, err)
	require.Nil(t, lk.Failed)
	require.NotNil(t, lk.Stopped)
	requireSameContact(t, stopped.Contact, *lk.Stopped)

	// A contact ENDED by another request is no stop of this one.
	read = put(t, s, contact("acme", "c-2"))
	mustEnd(t, s, read, "r-other")
	k = rk("acme", "c-2", "r-1")
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("X", 1)})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)
	require.True(t, view(t, s, k).Outcome.Final())
}

// testRecordFailuresDependsOnContact: a failure decided on the contact as
// read is withdrawn when the contact has since changed and is active.
func testRecordFailuresDependsOnContact(t *testing.T, s Store) {
	c := ctx(t)
	requireNoOutcome := func(k store.RequestKey) {
		t.Helper()
		v := view(t, s, k)
		require.False(t, v.Outcome.Final(), "no failure is left recorded")
		lk, err := s.LookUpRequest(c, k)
		require.NoError(t, err)
		require.Nil(t, lk.Failed)
		require.Nil(t, lk.Stopped)
	}

	// Decided "not found"; the contact was created meanwhile.
	k := rk("acme", "late", "r-1")
	v := view(t, s, k)
	require.Nil(t, v.Contact)
	created := put(t, s, contact("acme", "late"))
	res := record(t, s, store.RecordFailureParams{Key: k, Failure: failure("CONTACT_NOT_FOUND", 1),
		OutcomeRev: v.OutcomeRev, ContactRev: v.ContactRev, DependsOnContact: true})
	require.ErrorIs(t, res.Err, store.ErrRevisionConflict)
	require.Nil(t, res.Stopped)
	requireNoOutcome(k)
	requireUnchanged(t, s, created, "a withdrawn failure does not fence")
	// Read again, decided again: the contact can be stopped.
	v = view(t, s, k)
	require.NotNil(t, v.Contact)
	o := end(t, s, store.EndContactParams{Contact: *v.Contact, RequestID: "r-1"})
	require.NoError(t, o.Err)

	// Decided "not active" on an ENDED record; revived (forced) meanwhile.
	ended := mustEnd(t, s, put(t, s, contact("acme", "revived")), "r-other")
	k = rk("acme", "revived", "r-2")
	v = view(t, s, k)
	require.Equal(t, ended.Revision, v.ContactRev)
	_, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", "revived"), Force: true})
	require.NoError(t, err)
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("CONTACT_NOT_FOUND", 1),
		OutcomeRev: v.OutcomeRev, ContactRev: v.ContactRev, DependsOnContact: true})
	require.ErrorIs(t, res.Err, store.ErrRevisionConflict)
	requireNoOutcome(k)
	// The withdrawn record's key moved on: a next decision is conditioned
	// on it, and one at the old revision is refused.
	after := view(t, s, k)
	require.Greater(t, after.OutcomeRev, v.OutcomeRev)
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("X", 2), OutcomeRev: v.OutcomeRev})
	require.ErrorIs(t, res.Err, store.ErrRevisionConflict)
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("X", 2), OutcomeRev: after.OutcomeRev})
	require.NoError(t, res.Err)
	require.True(t, view(t, s, k).Outcome.Final())

	// Changed, but not active now: the failure stands.
	read := put(t, s, contact("acme", "gone-ended"))
	k = rk("acme", "gone-ended", "r-3")
	v = view(t, s, k)
	moved := read
	moved.State = store.StateConnected
	moved = put(t, s, moved)
	endedNow := mustEnd(t, s, moved, "r-other")
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("CONTACT_NOT_FOUND", 1),
		OutcomeRev: v.OutcomeRev, ContactRev: v.ContactRev, DependsOnContact: true})
	require.NoError(t, res.Err)
	require.True(t, view(t, s, k).Outcome.Final())
	requireUnchanged(t, s, endedNow)

	// Unchanged and active (the contact was read active, yet the failure
	// depends on it, e.g. a filter): recorded and fenced.
	read = put(t, s, contact("acme", "same"))
	k = rk("acme", "same", "r-4")
	v = view(t, s, k)
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("X", 1), OutcomeRev: v.OutcomeRev,
		ContactRev: v.ContactRev, DependsOnContact: true})
	require.NoError(t, res.Err)
	require.Greater(t, get(t, s, "acme", "same").Revision, read.Revision)

	// Not depending on the contact: a change does not matter.
	read = put(t, s, contact("acme", "indep"))
	k = rk("acme", "indep", "r-5")
	v = view(t, s, k)
	moved = read
	moved.State = store.StateOnHold
	moved = put(t, s, moved)
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: failure("NOT_AUTHORIZED", 1), OutcomeRev: v.OutcomeRev,
		ContactRev: v.ContactRev})
	require.NoError(t, res.Err)
	require.True(t, view(t, s, k).Outcome.Final())
	require.Greater(t, get(t, s, "acme", "indep").Revision, moved.Revision, "fenced at its newer revision")
}

// testRecordFailuresFence: a failure of a request whose contact is active
// rewrites the contact unchanged, so that a stop of the same request that
// read the contact before the failure was written cannot land.
func testRecordFailuresFence(t *testing.T, s Store) {
	c := ctx(t)
	read := put(t, s, contact("acme", "c-1"))
	k := rk("acme", "c-1", "r-1")
	stopperView := view(t, s, k) // another message of r-1 read the contact
	var rawBefore []byte
	r, hasRaw := s.(Raw)
	if hasRaw {
		rb := r.RawBuckets()
		rawBefore = rb.value(t, store.ContactKey("acme", "c-1"))
	}

	res := record(t, s, store.RecordFailureParams{Key: k, Failure: failure("INTERNAL_ERROR", 2),
		OutcomeRev: stopperView.OutcomeRev, ContactRev: stopperView.ContactRev})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)

	fenced := get(t, s, "acme", "c-1")
	require.Greater(t, fenced.Revision, read.Revision, "the fence moved the revision on")
	want := read
	want.Revision = fenced.Revision
	requireSameContact(t, want, fenced, "the fence rewrites the contact unchanged")
	if hasRaw {
		rb := r.RawBuckets()
		require.Equal(t, string(rawBefore), string(rb.value(t, store.ContactKey("acme", "c-1"))), "byte for byte")
		m := rb.lastMsg(t, rb.Contacts, store.ContactKey("acme", "c-1"))
		require.Empty(t, m.Header.Get("Nats-TTL"), "the fence gives the contact no TTL")
	}

	// The stop read before the failure: refused.
	o := end(t, s, store.EndContactParams{Contact: *stopperView.Contact, RequestID: "r-1", RequestSeq: 1})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	requireUnchanged(t, s, fenced)
	// Read again, it sees the failure.
	v := view(t, s, k)
	require.True(t, v.Outcome.Final())
	require.False(t, v.EndedByThis())
	// Another request may still stop the contact at the fenced revision.
	o = end(t, s, store.EndContactParams{Contact: *v.Contact, RequestID: "r-2"})
	require.NoError(t, o.Err)
	lk, err := s.LookUpRequest(c, k)
	require.NoError(t, err)
	require.NotNil(t, lk.Failed, "r-1 failed")
	require.Nil(t, lk.Stopped)
	lk, err = s.LookUpRequest(c, rk("acme", "c-1", "r-2"))
	require.NoError(t, err)
	require.NotNil(t, lk.Stopped, "r-2 stopped it")
	require.Nil(t, lk.Failed)
}

// testRecordFailuresBatch records many failures in one call, every kind
// mixed, and checks each result in order.
func testRecordFailuresBatch(t *testing.T, s Store) {
	c := ctx(t)
	const n = 40
	var ps []store.RecordFailureParams
	var actives []store.Contact
	for i := range n {
		actives = append(actives, put(t, s, contact("acme", fmt.Sprint("active-", i))))
		ps = append(ps, store.RecordFailureParams{Key: rk("acme", fmt.Sprint("active-", i), "r"), Failure: failure("X", uint64(i))})
	}
	stopRead := put(t, s, contact("acme", "stopped"))
	mustEnd(t, s, stopRead, "r")
	ps = append(ps,
		store.RecordFailureParams{Key: rk("acme", "stopped", "r"), Failure: failure("X", 1)},
		store.RecordFailureParams{Key: rk("acme", "absent", "r"), Failure: failure("X", 1)},
		store.RecordFailureParams{Key: rk("acme", "stale", "r"), Failure: failure("X", 1), OutcomeRev: 1 << 40},
		store.RecordFailureParams{Key: store.RequestKey{InstanceID: "bad id", ContactID: "x", RequestID: "r", BulkID: "b"},
			Failure: failure("X", 1)},
	)
	res := s.RecordFailures(c, ps)
	require.Len(t, res, len(ps))
	for i := range n {
		require.NoError(t, res[i].Err, i)
		require.Nil(t, res[i].Stopped)
		require.Equal(t, uint64(i), res[i].Outcome.Seq)
		require.Greater(t, get(t, s, "acme", fmt.Sprint("active-", i)).Revision, actives[i].Revision, "fenced")
	}
	require.NoError(t, res[n].Err)
	require.NotNil(t, res[n].Stopped)
	require.NoError(t, res[n+1].Err)
	require.NotZero(t, res[n+1].Outcome.Revision)
	require.ErrorIs(t, res[n+2].Err, store.ErrRevisionConflict)
	require.Error(t, res[n+3].Err, "a bulk key with an invalid instance has no outcome key")
	require.NotErrorIs(t, res[n+3].Err, store.ErrRevisionConflict)

	keys := make([]store.RequestKey, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
	}
	vs, err := s.Views(c, store.ViewParams{Keys: keys, Consistent: true})
	require.NoError(t, err)
	for i := range n {
		require.True(t, vs[i].Outcome.Final(), i)
		require.Equal(t, res[i].Outcome.Revision, vs[i].OutcomeRev)
	}
	require.True(t, vs[n].EndedByThis())
	require.Nil(t, vs[n].Outcome)
	require.True(t, vs[n+1].Outcome.Final())
	require.Nil(t, vs[n+2].Outcome)
	require.Nil(t, vs[n+3].Outcome)
}

// testStopOrFailRace races, for many requests, messages of one request
// that stop its contact against messages of it that record its failure,
// each acting as the worker does: read the view; done if the request has
// an outcome; else stop an active contact, or record a failure; read again
// on a conflict. Some contacts appear, or change, meanwhile. Afterwards no
// request is both stopped and failed, and exactly one message of each
// decided its outcome.
func testStopOrFailRace(t *testing.T, s Store) {
	c := ctx(t)
	// Each request has three messages that fail it and, for even requests,
	// three that stop it (one of them late), for odd ones only a late one.
	const requests, failers = 24, 3
	type result struct {
		stopped, failed bool // this message decided the outcome
		seq             uint64
	}
	var (
		mu      sync.Mutex
		results = map[int][]result{}
	)
	// Every message reads its first view, then all act at once: many act
	// on a view another message's write has made stale. A late message
	// acts on its first view only once it sees the request decided, as
	// one held up between its read and its write would.
	var (
		read sync.WaitGroup
		act  = make(chan struct{})
	)
	decided := func(k store.RequestKey) bool {
		vs, err := s.Views(c, store.ViewParams{Keys: []store.RequestKey{k}})
		return err == nil && (vs[0].EndedByThis() || vs[0].Outcome.Final())
	}
	settle := func(i int, seq uint64, failer, late bool) {
		id := fmt.Sprint("c-", i)
		k := rk("acme", id, fmt.Sprint("r-", i))
		for round := range 200 {
			vs, err := s.Views(c, store.ViewParams{Keys: []store.RequestKey{k}, Consistent: failer})
			if round == 0 {
				read.Done()
				<-act
				for late && c.Err() == nil {
					if decided(k) {
						break
					}
				}
			}
			if !assert.NoError(t, err) {
				return
			}
			v := vs[0]
			if v.EndedByThis() || v.Outcome.Final() {
				return // another message decided
			}
			active := v.Contact != nil && v.Contact.State.Active()
			if active && !failer {
				o := s.EndContacts(c, []store.EndContactParams{{Contact: *v.Contact, RequestID: k.RequestID, RequestSeq: seq}})[0]
				switch {
				case o.Err == nil:
					mu.Lock()
					results[i] = append(results[i], result{stopped: true, seq: seq})
					mu.Unlock()
					return
				case errors.Is(o.Err, store.ErrRevisionConflict):
					continue
				}
				t.Errorf("end %s: %v", id, o.Err)
				return
			}
			// A stopper meets an absent or inactive contact (its failure
			// depends on the contact); a failer fails whatever the contact
			// (attempts exhausted).
			r := s.RecordFailures(c, []store.RecordFailureParams{{Key: k, Failure: failure("F", seq),
				OutcomeRev: v.OutcomeRev, ContactRev: v.ContactRev, DependsOnContact: !failer}})[0]
			switch {
			case r.Err == nil && r.Stopped != nil:
				assert.Equal(t, k.RequestID, r.Stopped.EndedBy)
				return
			case r.Err == nil:
				mu.Lock()
				results[i] = append(results[i], result{failed: true, seq: seq})
				mu.Unlock()
				return
			case errors.Is(r.Err, store.ErrRevisionConflict):
				continue
			}
			t.Errorf("record %s: %v", id, r.Err)
			return
		}
		t.Errorf("request %d did not settle", i)
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range requests {
		id := fmt.Sprint("c-", i)
		switch i % 3 {
		case 0: // active from the start
			put(t, s, contact("acme", id))
		case 1: // created while the messages race
			wg.Go(func() {
				<-start
				_, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: contact("acme", id)})
				assert.NoError(t, err)
			})
		case 2: // active, and changed while the messages race
			put(t, s, contact("acme", id))
			wg.Go(func() {
				<-start
				for j := range 5 {
					ct := contact("acme", id)
					ct.State = []store.State{store.StateConnected, store.StateOnHold}[j%2]
					_, err := s.ReplaceContact(c, store.ReplaceContactParams{Contact: ct})
					if errors.Is(err, store.ErrContactEnded) {
						return
					}
					assert.NoError(t, err)
				}
			})
		}
		stoppers := 1 + 2*((i+1)%2)
		for m := range stoppers + failers {
			seq := uint64(i*100 + m + 1)
			read.Add(1)
			wg.Go(func() {
				<-start
				settle(i, seq, m >= stoppers, m == 0)
			})
		}
	}
	close(start)
	read.Wait()
	close(act)
	wg.Wait()
	require.False(t, t.Failed())

	keys := make([]store.RequestKey, requests)
	for i := range keys {
		keys[i] = rk("acme", fmt.Sprint("c-", i), fmt.Sprint("r-", i))
	}
	vs, err := s.Views(c, store.ViewParams{Keys: keys, Consistent: true})
	require.NoError(t, err)
	for i, v := range vs {
		require.False(t, v.EndedByThis() && v.Outcome.Final(), "request %d is both stopped and failed", i)
		require.Len(t, results[i], 1, "request %d: exactly one message decides: %+v", i, results[i])
		won := results[i][0]
		lk, err := s.LookUpRequest(c, keys[i])
		require.NoError(t, err)
		if won.stopped {
			require.True(t, v.EndedByThis(), "request %d", i)
			require.Equal(t, won.seq, v.Contact.EndedBySeq, "request %d", i)
			require.NotNil(t, lk.Stopped)
			require.Nil(t, lk.Failed)
		} else {
			require.True(t, v.Outcome.Final(), "request %d", i)
			require.Equal(t, won.seq, v.Outcome.Seq, "request %d", i)
			require.Nil(t, lk.Stopped)
			require.NotNil(t, lk.Failed)
		}
	}
}

// testOutcomeTTL: outcome records of single requests expire (a Nats-TTL
// header of the configured TTL); contacts and a bulk's records do not.
func testOutcomeTTL(t *testing.T, s Store) {
	r := rawOf(t, s)
	c := ctx(t)
	ttl := r.OutcomeTTL
	if ttl == 0 {
		ttl = 7 * 24 * time.Hour
	}
	wantTTL := strconv.FormatInt(int64(ttl/time.Second), 10)
	ttlOf := func(bucket, key string) string {
		t.Helper()
		m := r.lastMsg(t, bucket, key)
		require.NotNil(t, m, "no message for %s", key)
		return m.Header.Get("Nats-TTL")
	}

	read := put(t, s, contact("acme", "c-1"))
	res := record(t, s, store.RecordFailureParams{Key: rk("acme", "c-1", "r-1"), Failure: failure("X", 1)})
	require.NoError(t, res.Err)
	key := store.OutcomeKey("acme", "c-1", "r-1")
	require.Equal(t, wantTTL, ttlOf(r.Contacts, key), "a failure expires")
	m := r.lastMsg(t, r.Contacts, key)
	require.Equal(t, res.Outcome.Revision, m.Sequence, "stored under OutcomeKey")
	var stored map[string]any
	require.NoError(t, json.Unmarshal(m.Data, &stored))
	require.Equal(t, "FAILED", stored["state"])
	require.Equal(t, "r-1", stored["requestId"])
	require.Equal(t, "X", stored["reasonCode"])
	require.Empty(t, ttlOf(r.Contacts, store.ContactKey("acme", "c-1")), "the fenced contact does not expire")
	require.Greater(t, get(t, s, "acme", "c-1").Revision, read.Revision)

	att, err := s.RecordAttempt(c, store.RecordAttemptParams{Key: rk("acme", "c-1", "r-2"), Attempts: 1, LastError: "timeout"})
	require.NoError(t, err)
	require.Equal(t, wantTTL, ttlOf(r.Contacts, store.OutcomeKey("acme", "c-1", "r-2")), "a count of attempts expires")
	require.Equal(t, att.Revision, r.lastMsg(t, r.Contacts, store.OutcomeKey("acme", "c-1", "r-2")).Sequence)

	inv := record(t, s, store.RecordFailureParams{Key: rk("bad inst", "c", "r"), Failure: failure("X", 1)})
	require.NoError(t, inv.Err)
	invKey := store.OutcomeKey("bad inst", "c", "r")
	require.True(t, strings.HasPrefix(invKey, "=o.=."))
	require.Equal(t, wantTTL, ttlOf(r.Contacts, invKey))

	// A bulk's contacts: next to the bulk record, living as long as it.
	bk := store.RequestKey{InstanceID: "acme", ContactID: "c-1", RequestID: "b/c-1", BulkID: "b"}
	res = record(t, s, store.RecordFailureParams{Key: bk, Failure: failure("X", 0)})
	require.NoError(t, res.Err)
	bulkKey := store.ContactKey("acme", "b") + ".f." + store.EscapeContactID("c-1")
	require.NotNil(t, r.lastMsg(t, r.Bulks, bulkKey))
	require.Empty(t, ttlOf(r.Bulks, bulkKey), "a bulk's failure lives as long as the bulk record")

	// An ENDED contact does not expire either.
	ended := mustEnd(t, s, put(t, s, contact("acme", "c-2")), "r-3")
	require.Empty(t, ttlOf(r.Contacts, store.ContactKey("acme", "c-2")))
	requireUnchanged(t, s, ended)
}

// testRecordAttempt counts failed attempts by compare-and-set; a count is
// no outcome.
func testRecordAttempt(t *testing.T, s Store) {
	c := ctx(t)
	read := put(t, s, contact("acme", "c-1"))
	k := rk("acme", "c-1", "r-1")
	o1, err := s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 1, LastError: "timeout"})
	require.NoError(t, err)
	require.NotZero(t, o1.Revision)
	require.Equal(t, store.OutcomeRetrying, o1.State)
	require.False(t, o1.Final())
	require.Equal(t, 1, o1.Attempts)
	require.Equal(t, "timeout", o1.LastError)
	require.Equal(t, "acme", o1.InstanceID)
	require.Equal(t, "c-1", o1.ContactID)
	require.Equal(t, "r-1", o1.RequestID)

	v := view(t, s, k)
	require.NotNil(t, v.Outcome)
	require.Equal(t, o1, *v.Outcome)
	require.Equal(t, o1.Revision, v.OutcomeRev)
	require.False(t, v.Outcome.Final())
	requireUnchanged(t, s, read, "an attempt does not touch the contact")
	lk, err := s.LookUpRequest(c, k)
	require.NoError(t, err)
	require.Nil(t, lk.Failed, "attempts are no outcome")
	require.Nil(t, lk.Stopped)

	// Stale: refused, nothing written.
	_, err = s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 2, LastError: "again"})
	require.ErrorIs(t, err, store.ErrRevisionConflict)
	_, err = s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 2, OutcomeRev: o1.Revision + 1000})
	require.ErrorIs(t, err, store.ErrRevisionConflict)
	require.Equal(t, o1, *view(t, s, k).Outcome)

	// At the revision read: counted.
	o2, err := s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 2, LastError: "again", OutcomeRev: o1.Revision})
	require.NoError(t, err)
	require.Greater(t, o2.Revision, o1.Revision)
	require.Equal(t, 2, view(t, s, k).Outcome.Attempts)

	// Two writers at the same revision: one wins.
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 3, OutcomeRev: o2.Revision})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, store.ErrRevisionConflict)
	}
	require.Equal(t, 1, won)

	// The failure after the last attempt replaces the count.
	v = view(t, s, k)
	res := record(t, s, store.RecordFailureParams{Key: k, Failure: failure("INTERNAL_ERROR", 1), OutcomeRev: v.OutcomeRev})
	require.NoError(t, res.Err)
	require.True(t, view(t, s, k).Outcome.Final())
	_, err = s.RecordAttempt(c, store.RecordAttemptParams{Key: k, Attempts: 4, OutcomeRev: v.OutcomeRev})
	require.ErrorIs(t, err, store.ErrRevisionConflict, "a count at a revision before the failure")
	require.True(t, view(t, s, k).Outcome.Final())

	// A count does not stop a stop: the request may still stop its contact.
	k2 := rk("acme", "c-2", "r-2")
	read = put(t, s, contact("acme", "c-2"))
	_, err = s.RecordAttempt(c, store.RecordAttemptParams{Key: k2, Attempts: 1})
	require.NoError(t, err)
	mustEnd(t, s, read, "r-2")
	lk, err = s.LookUpRequest(c, k2)
	require.NoError(t, err)
	require.NotNil(t, lk.Stopped)
}

// testLookUpRequest: what became of a request, from the store alone.
func testLookUpRequest(t *testing.T, s Store) {
	c := ctx(t)
	lookUp := func(k store.RequestKey) store.RequestOutcome {
		t.Helper()
		o, err := s.LookUpRequest(c, k)
		require.NoError(t, err)
		return o
	}
	// Unknown: neither.
	o := lookUp(rk("acme", "nothing", "r-1"))
	require.Nil(t, o.Stopped)
	require.Nil(t, o.Failed)
	o = lookUp(rk("bad inst", "x", "r-1"))
	require.Nil(t, o.Stopped)
	require.Nil(t, o.Failed)

	// Stopped.
	read := put(t, s, contact("acme", "c-1"))
	stopped := end(t, s, store.EndContactParams{Contact: read, RequestID: "r-1", RequestSeq: 3, DisconnectReason: "WHY"})
	require.NoError(t, stopped.Err)
	o = lookUp(rk("acme", "c-1", "r-1"))
	require.NotNil(t, o.Stopped)
	require.Nil(t, o.Failed)
	requireSameContact(t, stopped.Contact, *o.Stopped)
	// Another request of the same contact did not stop it.
	o = lookUp(rk("acme", "c-1", "r-2"))
	require.Nil(t, o.Stopped)
	require.Nil(t, o.Failed)
	// An active contact: not decided.
	put(t, s, contact("acme", "c-2"))
	o = lookUp(rk("acme", "c-2", "r-1"))
	require.Nil(t, o.Stopped)
	require.Nil(t, o.Failed)

	// Failed, for an invalid instance too.
	for _, k := range []store.RequestKey{rk("acme", "c-2", "r-3"), rk("bad inst", "x", "r-3"), rk("acme", "", "r-3")} {
		res := record(t, s, store.RecordFailureParams{Key: k, Failure: failure("INVALID", 1)})
		require.NoError(t, res.Err, k)
		o = lookUp(k)
		require.Nil(t, o.Stopped)
		require.NotNil(t, o.Failed, k)
		require.Equal(t, "INVALID", o.Failed.ReasonCode)
		require.Equal(t, res.Outcome.Revision, o.Failed.Revision)
	}
}

// testOutcomeKey pins the documented derivation of outcome keys.
func testOutcomeKey(t *testing.T, _ Store) {
	documented := func(inst, contactID, requestID string) string {
		b := []byte("contactstop outcome v1")
		for _, s := range []string{inst, contactID, requestID} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		sum := sha256.Sum256(b)
		return base64.RawURLEncoding.EncodeToString(sum[:18])
	}
	kvKey := regexp.MustCompile(`^[-/_=.A-Za-z0-9]+$`)
	type triple struct{ inst, contact, request string }
	triples := []triple{
		{"acme", "c-1", "r-1"},
		{"acme", "c-1", "r-2"},
		{"acme", "c-2", "r-1"},
		{"acme2", "c-1", "r-1"},
		{"acme", "c-1r", "-1"}, // the same bytes split otherwise
		{"acme", "c", "-1r-1"},
		{"acmec", "-1", "r-1"},
		{"acme", "", "c-1r-1"},
		{"", "acme", "c-1r-1"},
		{"acme", "a.b c/é*>", "bulk/a.b c/é*>"},
		{"acme", strings.Repeat("😀", 256), strings.Repeat("r", 300)},
		{"not valid", "c-1", "r-1"},
		{"acme.>", "c-1", "r-1"},
		{"", "", ""},
	}
	seen := map[string]triple{}
	for _, tr := range triples {
		key := store.OutcomeKey(tr.inst, tr.contact, tr.request)
		require.Equal(t, key, store.OutcomeKey(tr.inst, tr.contact, tr.request), "deterministic")
		prev, dup := seen[key]
		require.False(t, dup, "%v and %v share the key %s", prev, tr, key)
		seen[key] = tr

		require.True(t, strings.HasPrefix(key, "=o."), key)
		require.True(t, kvKey.MatchString(key), "%q is a valid KV key", key)
		require.Len(t, strings.Split(key, "."), 3, key)
		hash := strings.Split(key, ".")[2]
		require.Equal(t, documented(tr.inst, tr.contact, tr.request), hash, "the documented derivation for %v", tr)
		if tr.inst != "" {
			require.False(t, strings.HasPrefix(key, tr.inst), "%s starts with its instance id", key)
		}
		_, _, err := store.ParseContactKey(key)
		require.Error(t, err, "an outcome key is never a contact key")
	}
	require.True(t, strings.HasPrefix(store.OutcomeKey("acme", "c-1", "r-1"), "=o.acme."))
	require.True(t, strings.HasPrefix(store.OutcomeKey("acme-2_x", "c", "r"), "=o.acme-2_x."))
	for _, inst := range []string{"not valid", "acme.>", "", "é", strings.Repeat("a", 101)} {
		require.True(t, strings.HasPrefix(store.OutcomeKey(inst, "c", "r"), "=o.=."), "invalid instance %q", inst)
	}
}

func testBulkRecords(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.GetBulk(c, "acme", "b 1/é")
	require.ErrorIs(t, err, store.ErrBulkNotFound)

	rec := store.BulkRecord{BulkID: "b 1/é", InstanceID: "acme", Status: store.BulkRunning, Owner: "runner-1", Run: 1, StartedAt: at}
	created, err := s.PutBulk(c, rec)
	require.NoError(t, err)
	require.NotZero(t, created.Revision)
	_, err = s.PutBulk(c, rec)
	require.ErrorIs(t, err, store.ErrBulkConflict, "create fails when the record exists")

	got, err := s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, "runner-1", got.Owner)
	require.Equal(t, created.Revision, got.Revision)
	require.Equal(t, store.BulkRunning, got.Status)

	got.Done, got.Stopped, got.ReasonCodes = 5, 4, map[string]int{"CONTACT_NOT_FOUND": 1}
	got.Skipped, got.Unreadable, got.Attempts = 2, 1, 3
	updated, err := s.PutBulk(c, got)
	require.NoError(t, err)
	_, err = s.PutBulk(c, got)
	require.ErrorIs(t, err, store.ErrBulkConflict, "an update at an old revision fails")

	again, err := s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, updated.Revision, again.Revision)
	require.Equal(t, 4, again.Stopped)
	require.Equal(t, 2, again.Skipped)
	require.Equal(t, 1, again.Unreadable)
	require.Equal(t, 3, again.Attempts)
	require.Equal(t, map[string]int{"CONTACT_NOT_FOUND": 1}, again.ReasonCodes)

	// COMPLETING keeps the completion event as recorded, byte for byte.
	completion := json.RawMessage(`{"bulkId":"b 1/é","stopped":4,"reasonCodes":{"CONTACT_NOT_FOUND":1}}`)
	again.Status, again.Completion, again.CompletingAt = store.BulkCompleting, completion, at
	completing, err := s.PutBulk(c, again)
	require.NoError(t, err)
	got, err = s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, store.BulkCompleting, got.Status)
	require.JSONEq(t, string(completion), string(got.Completion))
	require.True(t, got.CompletingAt.Equal(at))
	require.Equal(t, completing.Revision, got.Revision)
	got.Status, got.CompletedAt = store.BulkCompleted, at.Add(time.Second)
	_, err = s.PutBulk(c, got)
	require.NoError(t, err)
	got, err = s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, store.BulkCompleted, got.Status)
	require.True(t, got.CompletedAt.Equal(at.Add(time.Second)))

	_, err = s.GetBulk(c, "other", "b 1/é")
	require.ErrorIs(t, err, store.ErrBulkNotFound, "bulk records are per instance")
	_, err = s.GetBulk(c, "bad inst", "b")
	require.ErrorIs(t, err, store.ErrInvalidInstance)
}

// testBulkPending fills, empties and deletes the pending slots of two runs
// of a bulk request, and sees that they are neither bulk records nor the
// slots of another bulk request.
func testBulkPending(t *testing.T, s Store) {
	c := ctx(t)
	const bulk = "b 1/é"
	start := time.Now()
	ids, slots, err := s.BulkPending(c, "acme", bulk)
	require.NoError(t, err)
	require.Empty(t, ids)
	require.Empty(t, slots)

	require.NoError(t, s.PutBulkPending(c, "acme", bulk, 1, 0, []string{"a", "b"}))
	require.NoError(t, s.PutBulkPending(c, "acme", bulk, 1, 1, []string{"c"}))
	require.NoError(t, s.PutBulkPending(c, "acme", bulk, 2, 0, []string{"b", "d.e f/é"}))
	require.NoError(t, s.PutBulkPending(c, "acme", "other", 1, 0, []string{"x"}))
	require.NoError(t, s.PutBulkPending(c, "beta", bulk, 1, 0, []string{"y"}))
	// Emptied without waiting, then filled again: the later write wins.
	require.NoError(t, s.ClearBulkPending("acme", bulk, 1, 1))
	require.NoError(t, s.PutBulkPending(c, "acme", bulk, 1, 1, []string{"e"}))
	require.NoError(t, s.ClearBulkPending("acme", bulk, 2, 0))
	// A failure next to the bulk record is no pending slot.
	res := record(t, s, store.RecordFailureParams{Key: store.RequestKey{InstanceID: "acme", ContactID: "z",
		RequestID: bulk + "/z", BulkID: bulk}, Failure: failure("X", 0)})
	require.NoError(t, res.Err)

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		ids, slots, err = s.BulkPending(c, "acme", bulk)
		require.NoError(ct, err)
		require.ElementsMatch(ct, []string{"a", "b", "e"}, ids)
		require.Len(ct, slots, 3, "three slots, one of them empty")
	}, 10*time.Second, 20*time.Millisecond)
	_, err = s.GetBulk(c, "acme", bulk)
	require.ErrorIs(t, err, store.ErrBulkNotFound, "slots are not bulk records")
	written, err := s.BulkPendingWritten(c, slots)
	require.NoError(t, err)
	require.WithinDuration(t, start, written, 5*time.Second, "the earliest slot was written after the test began")
	require.False(t, written.Before(start.Add(-time.Second)))

	require.NoError(t, s.DeleteBulkPending(c, slots))
	written, err = s.BulkPendingWritten(c, slots)
	require.NoError(t, err)
	require.True(t, written.IsZero(), "deleted slots have no time")
	ids, slots, err = s.BulkPending(c, "acme", bulk)
	require.NoError(t, err)
	require.Empty(t, ids)
	require.Empty(t, slots)
	ids, _, err = s.BulkPending(c, "acme", "other")
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, ids, "another bulk's slots are kept")
	fs, err := s.BulkFailures(c, "acme", bulk)
	require.NoError(t, err)
	require.Contains(t, fs, "z", "deleting slots keeps the failures")

	// Every contact written before ContactsSequence has a revision at most
	// it; one written after, above it.
	before := put(t, s, contact("acme", "seq"))
	sq, err := s.ContactsSequence(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, sq, before.Revision)
	after := put(t, s, contact("acme", "seq"))
	require.Greater(t, after.Revision, sq)
}

// testBulkFailures: the failures of a bulk request's contacts are kept
// next to its record, listed by BulkFailures, and are not single requests'
// outcome records.
func testBulkFailures(t *testing.T, s Store) {
	c := ctx(t)
	const bulk = "b 1/é"
	bk := func(inst, bulkID, contactID string) store.RequestKey {
		return store.RequestKey{InstanceID: inst, ContactID: contactID, RequestID: bulkID + "/" + contactID, BulkID: bulkID}
	}
	fs, err := s.BulkFailures(c, "acme", bulk)
	require.NoError(t, err)
	require.Empty(t, fs)

	active := put(t, s, contact("acme", "active"))
	stopRead := put(t, s, contact("acme", "stopped"))
	mustEnd(t, s, stopRead, bk("acme", bulk, "stopped").RequestID)
	ps := []store.RecordFailureParams{
		{Key: bk("acme", bulk, "absent"), Failure: failure("CONTACT_NOT_FOUND", 0), DependsOnContact: true},
		{Key: bk("acme", bulk, "a.b c/é"), Failure: failure("CONTACT_NOT_FOUND", 0), DependsOnContact: true},
		{Key: bk("acme", bulk, "active"), Failure: failure("INTERNAL_ERROR", 0), ContactRev: active.Revision},
		{Key: bk("acme", bulk, "stopped"), Failure: failure("INTERNAL_ERROR", 0)},
		{Key: bk("acme", "other bulk", "absent"), Failure: failure("OTHER", 0)},
		{Key: bk("beta", bulk, "absent"), Failure: failure("BETA", 0)},
	}
	res := s.RecordFailures(c, ps)
	for i, r := range res {
		require.NoError(t, r.Err, i)
	}
	require.NotNil(t, res[3].Stopped, "a contact the bulk's own write ended")
	_, err = s.RecordAttempt(c, store.RecordAttemptParams{Key: bk("acme", bulk, "retrying"), Attempts: 1, LastError: "x"})
	require.NoError(t, err)
	require.Greater(t, get(t, s, "acme", "active").Revision, active.Revision, "a bulk's failure fences its contact too")

	fs, err = s.BulkFailures(c, "acme", bulk)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"absent", "a.b c/é", "active"}, slices.Collect(maps.Keys(fs)),
		"withdrawn failures and counts of attempts are not listed")
	for id, o := range fs {
		require.Equal(t, store.OutcomeFailed, o.State, id)
		require.Equal(t, id, o.ContactID)
		require.Equal(t, bulk+"/"+id, o.RequestID)
		require.NotZero(t, o.Revision)
	}
	require.Equal(t, "INTERNAL_ERROR", fs["active"].ReasonCode)
	require.Equal(t, res[0].Outcome.Revision, fs["absent"].Revision)
	fs, err = s.BulkFailures(c, "acme", "other bulk")
	require.NoError(t, err)
	require.Len(t, fs, 1)
	require.Equal(t, "OTHER", fs["absent"].ReasonCode)
	fs, err = s.BulkFailures(c, "beta", bulk)
	require.NoError(t, err)
	require.Equal(t, "BETA", fs["absent"].ReasonCode)
	_, err = s.BulkFailures(c, "bad inst", bulk)
	require.Error(t, err)

	// Views and LookUpRequest read them by the bulk's key.
	v := view(t, s, bk("acme", bulk, "absent"))
	require.True(t, v.Outcome.Final())
	require.Equal(t, res[0].Outcome.Revision, v.OutcomeRev)
	lk, err := s.LookUpRequest(c, bk("acme", bulk, "a.b c/é"))
	require.NoError(t, err)
	require.NotNil(t, lk.Failed)
	v = view(t, s, bk("acme", bulk, "stopped"))
	require.True(t, v.EndedByThis())
	require.Nil(t, v.Outcome)
	v = view(t, s, bk("acme", bulk, "retrying"))
	require.NotNil(t, v.Outcome)
	require.False(t, v.Outcome.Final())
	// A second record at a stale revision is refused as for single requests.
	r := record(t, s, store.RecordFailureParams{Key: bk("acme", bulk, "absent"), Failure: failure("X", 0)})
	require.ErrorIs(t, r.Err, store.ErrRevisionConflict)

	// They are not single requests' outcome records.
	for _, id := range []string{"absent", "a.b c/é", "active"} {
		single := bk("acme", bulk, id)
		single.BulkID = ""
		v := view(t, s, single)
		require.Nil(t, v.Outcome, id)
		require.Zero(t, v.OutcomeRev, "%s: nothing under its =o. key", id)
	}
	if rb, ok := s.(Raw); ok {
		r := rb.RawBuckets()
		for _, id := range []string{"absent", "a.b c/é", "active"} {
			require.Nil(t, r.lastMsg(t, r.Contacts, store.OutcomeKey("acme", id, bulk+"/"+id)), id)
			require.NotNil(t, r.lastMsg(t, r.Bulks, store.ContactKey("acme", bulk)+".f."+store.EscapeContactID(id)), id)
		}
	}
	// Nor bulk records, nor contacts.
	_, err = s.GetBulk(c, "acme", bulk)
	require.ErrorIs(t, err, store.ErrBulkNotFound)
	require.Len(t, listAll(t, s, "acme"), 2)
}

// testRecordFailuresTransient: a failure whose write landed although
// RecordFailures reported a transient error (its context ended, or the
// acknowledgement was lost) may not be fenced. The message that wrote it,
// reading again, finds it recorded and fences it (Recorded) before it
// publishes it: a stop of the same request that read the contact before
// then fails, and the request is never both failed and stopped. A context
// that has ended before the call stands in, deterministically, for one
// that ends while the acknowledgement is on its way: the write is
// published, its answer not awaited.
func testRecordFailuresTransient(t *testing.T, s Store) {
	c := ctx(t)
	read := put(t, s, contact("acme", "c-1"))
	k := rk("acme", "c-1", "r-1")
	stopper := view(t, s, k) // one message of r-1 read the contact: active, no outcome

	// Another message of r-1 records its failure; the call reports a
	// transient error.
	ended, cancel := context.WithCancel(c)
	cancel()
	p := store.RecordFailureParams{Key: k, Failure: failure("INTERNAL_ERROR", 2), OutcomeRev: stopper.OutcomeRev, ContactRev: stopper.ContactRev}
	res := s.RecordFailures(ended, []store.RecordFailureParams{p})[0]
	require.Error(t, res.Err)
	require.NotErrorIs(t, res.Err, store.ErrRevisionConflict)
	require.Eventually(t, func() bool {
		v := view(t, s, k)
		return v.Outcome.Final()
	}, 10*time.Second, 10*time.Millisecond, "the failure's write was published")

	// Reading again, it finds its own failure recorded, and fences it
	// before it publishes it.
	mine := view(t, s, k)
	require.True(t, mine.Outcome.Final())
	res = record(t, s, store.RecordFailureParams{Key: k, Failure: *mine.Outcome, OutcomeRev: mine.OutcomeRev, Recorded: true})
	require.NoError(t, res.Err)
	require.Nil(t, res.Stopped)
	require.Equal(t, mine.OutcomeRev, res.Outcome.Revision, "a recorded failure is not written again")

	// The first message now ends the contact at the revision it read: too
	// late.
	o := end(t, s, store.EndContactParams{Contact: *stopper.Contact, RequestID: "r-1", RequestSeq: 1})
	require.ErrorIs(t, o.Err, store.ErrRevisionConflict)
	v := view(t, s, k)
	require.False(t, v.EndedByThis() && v.Outcome.Final(),
		"request r-1 is both failed (outcome at revision %d) and stopped (contact at revision %d, end error %v; read at %d)",
		v.OutcomeRev, v.ContactRev, o.Err, read.Revision)
}

// testEndContactsInvalidRecord: EndContacts refuses a contact that is not a
// valid record (here an unknown channel) instead of writing an ENDED
// record that no reader can use.
func testEndContactsInvalidRecord(t *testing.T, s Store) {
	stored := put(t, s, contact("acme", "c-1"))
	for _, channel := range []store.Channel{"FAX", ""} {
		name := fmt.Sprintf("channel %q", channel)
		bad := stored
		bad.Channel = channel
		o := end(t, s, store.EndContactParams{Contact: bad, RequestID: "r-1"})
		require.ErrorIs(t, o.Err, store.ErrInvalidContact, name)
		requireUnchanged(t, s, stored, "%s: nothing is written", name)
	}
}

// testListBulks lists the bulk records of one instance and of all, newest
// first, and sees that pending slots, recorded failures and instance locks
// in the same bucket are not listed.
func testListBulks(t *testing.T, s Store) {
	c := ctx(t)
	got, err := s.ListBulks(c, "acme")
	require.NoError(t, err)
	require.Empty(t, got)

	mk := func(inst, id string, started time.Time, status store.BulkStatus) store.BulkRecord {
		r, err := s.PutBulk(c, store.BulkRecord{BulkID: id, InstanceID: inst, Status: status, Run: 1, StartedAt: started})
		require.NoError(t, err)
		return r
	}
	b1 := mk("acme", "b1", at, store.BulkCompleted)
	b2 := mk("acme", "b 2/é", at.Add(time.Minute), store.BulkRunning)
	b3 := mk("beta", "b3", at.Add(30*time.Second), store.BulkRunning)
	b4 := mk("acme2", "b4", at.Add(2*time.Minute), store.BulkRunning)
	// What else the bucket holds next to bulk records.
	require.NoError(t, s.PutBulkPending(c, "acme", "b1", 1, 0, []string{"x", "y"}))
	res := record(t, s, store.RecordFailureParams{Key: store.RequestKey{InstanceID: "acme", ContactID: "z",
		RequestID: "b1/z", BulkID: "b1"}, Failure: failure("X", 0)})
	require.NoError(t, res.Err)
	if r, ok := s.(Raw); ok {
		b := r.RawBuckets()
		_, err := b.kv(t, b.Bulks).Put(c, "=lock.acme", []byte(`{"instanceId":"acme","bulkId":"b1"}`))
		require.NoError(t, err)
	}

	ids := func(rs []store.BulkRecord) (out []string) {
		for _, r := range rs {
			out = append(out, r.InstanceID+"/"+r.BulkID)
		}
		return out
	}
	got, err = s.ListBulks(c, "acme")
	require.NoError(t, err)
	require.Equal(t, []string{"acme/b 2/é", "acme/b1"}, ids(got), "one instance's, newest first; acme2's are not acme's")
	require.Equal(t, b2.Revision, got[0].Revision)
	require.Equal(t, store.BulkRunning, got[0].Status)
	require.Equal(t, b1.Revision, got[1].Revision)
	require.Equal(t, store.BulkCompleted, got[1].Status)

	got, err = s.ListBulks(c, "")
	require.NoError(t, err)
	require.Equal(t, []string{"acme2/b4", "acme/b 2/é", "beta/b3", "acme/b1"}, ids(got), "every instance's, newest first")
	require.Equal(t, b3.Revision, got[2].Revision)
	require.Equal(t, b4.Revision, got[0].Revision)

	_, err = s.ListBulks(c, "bad inst")
	require.ErrorIs(t, err, store.ErrInvalidInstance)
}

// testCancelBulk cancels a running bulk request once, idempotently, and
// leaves completed ones as they are.
func testCancelBulk(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.CancelBulk(c, "acme", "none")
	require.ErrorIs(t, err, store.ErrBulkNotFound)
	_, err = s.CancelBulk(c, "bad inst", "b")
	require.ErrorIs(t, err, store.ErrInvalidInstance)

	running, err := s.PutBulk(c, store.BulkRecord{BulkID: "b 1/é", InstanceID: "acme", Status: store.BulkRunning,
		Owner: "runner-1", Run: 1, Matched: 10, Done: 4, Walking: true, StartedAt: at})
	require.NoError(t, err)
	cancelled, err := s.CancelBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.True(t, cancelled.CancelRequested)
	require.False(t, cancelled.CancelRequestedAt.IsZero())
	require.Greater(t, cancelled.Revision, running.Revision)
	require.Equal(t, store.BulkRunning, cancelled.Status, "the run completes it")
	require.Equal(t, "runner-1", cancelled.Owner, "the lease stays with the run")
	require.Equal(t, 4, cancelled.Done)

	got, err := s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.True(t, got.CancelRequested)
	require.Equal(t, cancelled.Revision, got.Revision)

	again, err := s.CancelBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, cancelled.Revision, again.Revision, "a second cancel writes nothing")
	require.True(t, again.CancelRequested)

	// The run's write at the revision it read before the cancel fails: it
	// must read the record again, and so learns of the cancel.
	_, err = s.PutBulk(c, running)
	require.ErrorIs(t, err, store.ErrBulkConflict)

	// Too late: completing and completed bulk requests are left alone.
	for _, st := range []store.BulkStatus{store.BulkCompleting, store.BulkCompleted} {
		done, err := s.PutBulk(c, store.BulkRecord{BulkID: "done-" + string(st), InstanceID: "acme", Status: st, Run: 1, StartedAt: at})
		require.NoError(t, err)
		got, err := s.CancelBulk(c, "acme", done.BulkID)
		require.NoError(t, err, st)
		require.False(t, got.CancelRequested, st)
		require.Equal(t, done.Revision, got.Revision, st)
		require.Equal(t, st, got.Status)
	}
	// A WAITING one can be cancelled before it starts.
	waiting, err := s.PutBulk(c, store.BulkRecord{BulkID: "w", InstanceID: "acme", Status: store.BulkWaiting})
	require.NoError(t, err)
	got, err = s.CancelBulk(c, "acme", "w")
	require.NoError(t, err)
	require.True(t, got.CancelRequested)
	require.Greater(t, got.Revision, waiting.Revision)
}

// testCancelBulkRacesWriters cancels while runners renew the record by
// compare-and-set, as a running bulk does: the cancel gets through, and no
// runner's write undoes it.
func testCancelBulkRacesWriters(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.PutBulk(c, store.BulkRecord{BulkID: "b", InstanceID: "acme", Status: store.BulkRunning, Owner: "r", Run: 1, StartedAt: at})
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var renewals atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := s.GetBulk(c, "acme", "b")
				if !assert.NoError(t, err) {
					return
				}
				r.Done++
				if _, err := s.PutBulk(c, r); err == nil {
					renewals.Add(1)
				} else if !assert.ErrorIs(t, err, store.ErrBulkConflict) {
					return
				}
			}
		})
	}
	require.Eventually(t, func() bool { return renewals.Load() >= 20 }, 10*time.Second, time.Millisecond)
	got, err := s.CancelBulk(c, "acme", "b")
	require.NoError(t, err)
	require.True(t, got.CancelRequested)
	before := renewals.Load()
	require.Eventually(t, func() bool { return renewals.Load() >= before+20 }, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	final, err := s.GetBulk(c, "acme", "b")
	require.NoError(t, err)
	require.True(t, final.CancelRequested, "no write at an older revision undid the cancel")
	require.Greater(t, final.Done, got.Done, "the runners went on writing after the cancel")
}

// testCountMatching counts what a clear would match, with the clear's
// filter rule, and changes nothing.
func testCountMatching(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.CountMatching(c, "acme", events.BulkFilter{})
	require.ErrorIs(t, err, store.ErrInstanceNotFound)
	_, err = s.PutInstance(c, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	_, err = s.PutInstance(c, store.Instance{InstanceID: "beta"})
	require.NoError(t, err)

	n, err := s.CountMatching(c, "acme", events.BulkFilter{})
	require.NoError(t, err)
	require.Equal(t, store.MatchCount{ByQueue: map[string]int{}, ByState: map[string]int{}}, n)

	mk := func(id string, state store.State, queue string, ch store.Channel, enq time.Time) store.Contact {
		k := contact("acme", id)
		k.State, k.QueueID, k.Channel, k.EnqueuedAt = state, queue, ch, enq
		return put(t, s, k)
	}
	var all []store.Contact
	for i := range 5 {
		all = append(all, mk(fmt.Sprintf("q-billing-%d", i), store.StateQueued, "billing", store.ChannelVoice, at.Add(-time.Hour)))
	}
	for i := range 3 {
		all = append(all, mk(fmt.Sprintf("q-sales-%d", i), store.StateQueued, "sales", store.ChannelChat, at.Add(time.Hour)))
	}
	all = append(all,
		mk("conn", store.StateConnected, "billing", store.ChannelVoice, at.Add(-time.Hour)),
		mk("hold", store.StateOnHold, "sales", store.ChannelVoice, at.Add(-time.Hour)),
		mk("no-queue", store.StateQueued, "", store.ChannelVoice, time.Time{}),
		mustEnd(t, s, put(t, s, contact("acme", "ended")), "r-1"),
	)
	put(t, s, contact("beta", "beta-1"))
	bad := 0
	if r, ok := s.(Raw); ok {
		r.RawBuckets().put(t, "acme.notjson", "not json")
		bad = 1
	}

	tests := []struct {
		name string
		f    events.BulkFilter
		want store.MatchCount
	}{
		{"default QUEUED", events.BulkFilter{}, store.MatchCount{Matched: 9,
			ByQueue: map[string]int{"billing": 5, "sales": 3, "": 1}, ByState: map[string]int{"QUEUED": 9}}},
		{"queue", events.BulkFilter{QueueIDs: []string{"billing"}}, store.MatchCount{Matched: 5,
			ByQueue: map[string]int{"billing": 5}, ByState: map[string]int{"QUEUED": 5}}},
		{"states", events.BulkFilter{States: []string{"QUEUED", "CONNECTED", "ON_HOLD"}, QueueIDs: []string{"billing", "sales"}},
			store.MatchCount{Matched: 10, ByQueue: map[string]int{"billing": 6, "sales": 4},
				ByState: map[string]int{"QUEUED": 8, "CONNECTED": 1, "ON_HOLD": 1}}},
		{"channel", events.BulkFilter{Channels: []string{"CHAT"}}, store.MatchCount{Matched: 3,
			ByQueue: map[string]int{"sales": 3}, ByState: map[string]int{"QUEUED": 3}}},
		{"enqueued before", events.BulkFilter{EnqueuedBefore: &at}, store.MatchCount{Matched: 5,
			ByQueue: map[string]int{"billing": 5}, ByState: map[string]int{"QUEUED": 5}}},
		{"nothing", events.BulkFilter{QueueIDs: []string{"none"}}, store.MatchCount{
			ByQueue: map[string]int{}, ByState: map[string]int{}}},
	}
	for _, tt := range tests {
		tt.want.Unreadable = bad
		n, err := s.CountMatching(c, "acme", tt.f)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.want, n, tt.name)
		// The clear's rule, contact by contact.
		m, want := tt.f.Matcher(), 0
		for _, k := range all {
			if m.Match(string(k.State), k.QueueID, string(k.Channel), k.EnqueuedAt) {
				want++
			}
		}
		require.Equal(t, want, n.Matched, "%s: the count is the clear's filter rule", tt.name)
	}
	for _, k := range all {
		requireUnchanged(t, s, k, "counting changes nothing")
	}

	_, err = s.CountMatching(c, "acme", events.BulkFilter{States: []string{"ENDED"}})
	var ve *events.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "filter.states", ve.Field)
	_, err = s.CountMatching(c, "bad inst", events.BulkFilter{})
	require.ErrorIs(t, err, store.ErrInvalidInstance)
}
