// Package storetest is the behavioural test suite of contactstop's state
// store. Every implementation of the store runs it from its own tests:
//
//	func TestKV(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return newKV(t) })
//	}
//
// The suite states the contract the worker and the command line rely on:
// instances, contacts with awkward ids, listing one instance's contacts, and
// ending a contact at most once, idempotently, under concurrency.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	GetContact(ctx context.Context, instanceID, contactID string) (store.Contact, error)
	ListContacts(ctx context.Context, instanceID string, fn func(store.Contact) error) error
	WalkContacts(ctx context.Context, instanceID string, skip func(contactID string) bool, fn func(store.Contact) error) error
	SeedContacts(ctx context.Context, contacts iter.Seq[store.Contact]) (int, error)
	EndContact(ctx context.Context, p store.EndContactParams) (store.EndContactResult, error)
	EndContacts(ctx context.Context, ps []store.EndContactParams) []store.EndOutcome

	GetBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	PutBulk(ctx context.Context, r store.BulkRecord) (store.BulkRecord, error)
	PutBulkPending(ctx context.Context, instanceID, bulkID string, run, slot int, contactIDs []string) error
	ClearBulkPending(instanceID, bulkID string, run, slot int) error
	BulkPending(ctx context.Context, instanceID, bulkID string) (contactIDs, slots []string, err error)
	DeleteBulkPending(ctx context.Context, slots []string) error
	ContactsSequence(ctx context.Context) (uint64, error)
}

var _ Store = (*store.KV)(nil)

// Run runs the suite. newStore must return a new, empty store isolated from
// every other it returned (a fresh server, or fresh buckets), cleaned up by
// t.Cleanup; subtests call it concurrently.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Instances", testInstances},
		{"InstanceValidation", testInstanceValidation},
		{"ContactRoundTrip", testContactRoundTrip},
		{"ContactDefaults", testContactDefaults},
		{"ContactNotFound", testContactNotFound},
		{"AwkwardContactIDs", testAwkwardContactIDs},
		{"ListContactsOneInstance", testListContactsOneInstance},
		{"ListContactsEarlyStop", testListContactsEarlyStop},
		{"WalkContactsSkip", testWalkContactsSkip},
		{"EndContact", testEndContact},
		{"EndContactErrors", testEndContactErrors},
		{"EndContactConcurrent", testEndContactConcurrent},
		{"EndContactKnown", testEndContactKnown},
		{"EndContacts", testEndContacts},
		{"EndContactsMany", testEndContactsMany},
		{"EndContactsConcurrent", testEndContactsConcurrent},
		{"BulkRecords", testBulkRecords},
		{"BulkPending", testBulkPending},
		{"PutContactValidation", testPutContactValidation},
		{"SeedContacts", testSeedContacts},
		{"SeedContactsInvalid", testSeedContactsInvalid},
	}
	for _, tt := range tests {
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

// requireSameContact fails unless the contacts are equal field by field,
// times compared as instants.
func requireSameContact(t *testing.T, want, got store.Contact, msgAndArgs ...any) {
	t.Helper()
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
	put, err := s.PutContact(c, active)
	require.NoError(t, err)
	require.NotZero(t, put.Revision)
	active.Revision = put.Revision
	requireSameContact(t, active, put)

	got, err := s.GetContact(c, "acme", "c-1")
	require.NoError(t, err)
	requireSameContact(t, active, got)

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
		DisconnectReason: "EMERGENCY",
		PreviousState:    store.StateOnHold,
	}
	put, err = s.PutContact(c, full)
	require.NoError(t, err)
	full.Revision = put.Revision
	got, err = s.GetContact(c, "acme", "c-2")
	require.NoError(t, err)
	requireSameContact(t, full, got)

	// An unconditional put replaces the record and moves the revision on.
	again := active
	again.State = store.StateConnected
	again.QueueID = ""
	again.EnqueuedAt = time.Time{}
	put2, err := s.PutContact(c, again)
	require.NoError(t, err)
	require.Greater(t, put2.Revision, active.Revision)
	got, err = s.GetContact(c, "acme", "c-1")
	require.NoError(t, err)
	again.Revision = put2.Revision
	requireSameContact(t, again, got)

	for _, ch := range []store.Channel{store.ChannelVoice, store.ChannelChat, store.ChannelEmail,
		store.ChannelSMS, store.ChannelVoicemail, store.ChannelWorkItem} {
		for _, st := range []store.State{store.StateInitiated, store.StateQueued, store.StateConnected,
			store.StateOnHold, store.StateEnded} {
			ct := contact("acme", string(ch)+"-"+string(st))
			ct.Channel, ct.State = ch, st
			_, err := s.PutContact(c, ct)
			require.NoError(t, err)
			got, err := s.GetContact(c, "acme", ct.ContactID)
			require.NoError(t, err)
			require.Equal(t, ch, got.Channel)
			require.Equal(t, st, got.State)
		}
	}
}

func testContactDefaults(t *testing.T, s Store) {
	c := ctx(t)
	before := time.Now()
	ct := contact("acme", "c-1")
	ct.UpdatedAt = time.Time{}
	ct.EnqueuedAt = time.Time{}
	put, err := s.PutContact(c, ct)
	require.NoError(t, err)
	require.False(t, put.UpdatedAt.Before(before.Add(-time.Second)), "UpdatedAt is set to now when zero")
	require.True(t, put.EnqueuedAt.IsZero(), "EnqueuedAt stays zero")
	got, err := s.GetContact(c, "acme", "c-1")
	require.NoError(t, err)
	requireSameContact(t, put, got)
}

func testContactNotFound(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.GetContact(c, "acme", "nope")
	require.ErrorIs(t, err, store.ErrContactNotFound)

	_, err = s.PutContact(c, contact("acme", "c-1"))
	require.NoError(t, err)
	_, err = s.GetContact(c, "acme-2", "c-1")
	require.ErrorIs(t, err, store.ErrContactNotFound, "same contactId, other instance")
	_, err = s.GetContact(c, "acme", "C-1")
	require.ErrorIs(t, err, store.ErrContactNotFound, "contactIds are case-sensitive")

	called := false
	require.NoError(t, s.ListContacts(c, "empty", func(store.Contact) error { called = true; return nil }))
	require.False(t, called, "an instance without contacts lists nothing")
}

// awkwardContactIDs are contactIds that break naive key encodings. Every
// store must keep them apart and give them back exactly.
func awkwardContactIDs() []string {
	return []string{
		".", "..", "...", "*", ">", "a.b.c", "a/b", "/", "//a//", "with space", " ", "=", "==", "=2E", "=3D",
		"a=2Eb", "日本語", "😀", "👩‍👩‍👧", "é", "e\u0301", "tab\there", "new\nline", "nul\x00byte", "\u00a0",
		".leading", "trailing.", ".both.", "a..b", "$KV.x", "_INBOX.x", "-", "_", "A", "a", "0",
		"aA-_/09", "%2E", "+", "~", "'quote'\"", "back\\slash", "{json}", "550e8400-e29b-41d4-a716-446655440000",
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
	for i, id := range ids {
		got, err := s.GetContact(c, "acme", id)
		require.NoError(t, err, "GetContact(%q)", id)
		require.Equal(t, id, got.ContactID)
		require.Equal(t, fmt.Sprint("q-", i), got.QueueID, "GetContact(%q) read another contact's record", id)
	}
	listed := listAll(t, s, "acme")
	require.Len(t, listed, len(ids))
	for i, id := range ids {
		got, ok := listed[id]
		require.True(t, ok, "ListContacts misses %q", id)
		require.Equal(t, fmt.Sprint("q-", i), got.QueueID)
		require.Equal(t, "acme", got.InstanceID)
	}

	res, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "a.b.c", RequestID: "r-1"})
	require.NoError(t, err)
	require.Equal(t, "a.b.c", res.Contact.ContactID)
	got, err := s.GetContact(c, "acme", "a=2Eb")
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, got.State, "ending a.b.c touched no other contact")
}

func testListContactsOneInstance(t *testing.T, s Store) {
	c := ctx(t)
	instances := map[string]int{"acme": 25, "acme-evil": 7, "acm": 3, "acme_2": 2, "xacme": 1}
	for inst, n := range instances {
		for i := range n {
			_, err := s.PutContact(c, contact(inst, fmt.Sprintf("c-%d", i)))
			require.NoError(t, err)
		}
		// Ids that would leak across instances under a naive encoding.
		_, err := s.PutContact(c, contact(inst, inst+".x"))
		require.NoError(t, err)
		_, err = s.PutContact(c, contact(inst, ">"))
		require.NoError(t, err)
	}
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
	ended, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "c-3", RequestID: "r"})
	require.NoError(t, err)
	listed := listAll(t, s, "acme")
	require.Equal(t, store.StateEnded, listed["c-3"].State)
	require.Equal(t, ended.Contact.Revision, listed["c-3"].Revision)
}

func testListContactsEarlyStop(t *testing.T, s Store) {
	c := ctx(t)
	for i := range 600 { // more than one batch of any sensible size
		_, err := s.PutContact(c, contact("acme", fmt.Sprintf("c-%03d", i)))
		require.NoError(t, err)
	}
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
	// The store still works, and lists everything, after early stops.
	require.Len(t, listAll(t, s, "acme"), 600)

	cancelled, cancel := context.WithCancel(c)
	n := 0
	err := s.ListContacts(cancelled, "acme", func(store.Contact) error {
		if n++; n == 5 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, n, 600, "the walk stopped when its context ended")
}

func testEndContact(t *testing.T, s Store) {
	c := ctx(t)
	for i, st := range []store.State{store.StateInitiated, store.StateQueued, store.StateConnected, store.StateOnHold} {
		id := fmt.Sprint("c-", i)
		ct := contact("acme", id)
		ct.State = st
		put, err := s.PutContact(c, ct)
		require.NoError(t, err)

		endAt := at.Add(time.Hour)
		res, err := s.EndContact(c, store.EndContactParams{
			InstanceID: "acme", ContactID: id, RequestID: "r-1", DisconnectReason: "EMERGENCY", At: endAt,
		})
		require.NoError(t, err)
		require.False(t, res.Replayed)
		want := put
		want.State = store.StateEnded
		want.PreviousState = st
		want.EndedAt = endAt
		want.UpdatedAt = endAt
		want.EndedBy = "r-1"
		want.DisconnectReason = "EMERGENCY"
		want.Revision = res.Contact.Revision
		require.Greater(t, res.Contact.Revision, put.Revision)
		requireSameContact(t, want, res.Contact)

		got, err := s.GetContact(c, "acme", id)
		require.NoError(t, err)
		requireSameContact(t, want, got, "the stored record is the one returned")

		// The same request again: the same result, nothing written.
		again, err := s.EndContact(c, store.EndContactParams{
			InstanceID: "acme", ContactID: id, RequestID: "r-1", DisconnectReason: "OTHER", At: endAt.Add(time.Hour),
		})
		require.NoError(t, err)
		require.True(t, again.Replayed)
		requireSameContact(t, want, again.Contact, "a replay returns the first result")
		got, err = s.GetContact(c, "acme", id)
		require.NoError(t, err)
		require.Equal(t, res.Contact.Revision, got.Revision, "a replay writes nothing")

		// Another request: not active.
		_, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: id, RequestID: "r-2"})
		require.ErrorIs(t, err, store.ErrContactNotActive)
		require.NotErrorIs(t, err, store.ErrContactNotFound)
		got, err = s.GetContact(c, "acme", id)
		require.NoError(t, err)
		require.Equal(t, res.Contact.Revision, got.Revision, "a refused end writes nothing")
	}

	// A zero At means now; an empty reason is recorded as empty.
	before := time.Now().Add(-time.Second)
	_, err := s.PutContact(c, contact("acme", "now"))
	require.NoError(t, err)
	res, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "now", RequestID: "bulk-7/now"})
	require.NoError(t, err)
	require.True(t, res.Contact.EndedAt.After(before))
	require.True(t, res.Contact.EndedAt.Equal(res.Contact.UpdatedAt))
	require.Empty(t, res.Contact.DisconnectReason)
	require.Equal(t, "bulk-7/now", res.Contact.EndedBy)

	// A contact stored as ENDED by someone else is not active.
	ended := contact("acme", "pre-ended")
	ended.State = store.StateEnded
	_, err = s.PutContact(c, ended)
	require.NoError(t, err)
	_, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "pre-ended", RequestID: "r-1"})
	require.ErrorIs(t, err, store.ErrContactNotActive)
}

func testEndContactErrors(t *testing.T, s Store) {
	c := ctx(t)
	_, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "absent", RequestID: "r-1"})
	require.ErrorIs(t, err, store.ErrContactNotFound)
	require.NotErrorIs(t, err, store.ErrContactNotActive)
	_, err = s.GetContact(c, "acme", "absent")
	require.ErrorIs(t, err, store.ErrContactNotFound, "ending an absent contact creates nothing")

	_, err = s.PutContact(c, contact("acme", "c-1"))
	require.NoError(t, err)
	for name, p := range map[string]store.EndContactParams{
		"no requestId":    {InstanceID: "acme", ContactID: "c-1"},
		"no contactId":    {InstanceID: "acme", RequestID: "r-1"},
		"no instanceId":   {ContactID: "c-1", RequestID: "r-1"},
		"bad instanceId":  {InstanceID: "acme.>", ContactID: "c-1", RequestID: "r-1"},
		"long contactId":  {InstanceID: "acme", ContactID: strings.Repeat("x", 257), RequestID: "r-1"},
		"invalid UTF-8":   {InstanceID: "acme", ContactID: "\xff", RequestID: "r-1"},
		"long instanceId": {InstanceID: strings.Repeat("a", 101), ContactID: "c-1", RequestID: "r-1"},
	} {
		_, err := s.EndContact(c, p)
		require.ErrorIs(t, err, store.ErrInvalidContact, name)
	}
	got, err := s.GetContact(c, "acme", "c-1")
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, got.State, "invalid requests touch nothing")
}

func testEndContactConcurrent(t *testing.T, s Store) {
	c := ctx(t)
	const n = 50
	_, err := s.PutContact(c, contact("acme", "hot"))
	require.NoError(t, err)

	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		results  = make([]store.EndContactResult, n)
		errs     = make([]error, n)
		requests = make([]string, n)
	)
	for i := range n {
		requests[i] = fmt.Sprint("r-", i)
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.EndContact(c, store.EndContactParams{
				InstanceID: "acme", ContactID: "hot", RequestID: requests[i], DisconnectReason: requests[i],
			})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i := range n {
		if errs[i] == nil {
			require.Equal(t, -1, winner, "requests %d and %d both ended the contact", winner, i)
			require.False(t, results[i].Replayed)
			winner = i
			continue
		}
		require.ErrorIs(t, errs[i], store.ErrContactNotActive, "request %d", i)
	}
	require.NotEqual(t, -1, winner, "no request ended the contact")

	got, err := s.GetContact(c, "acme", "hot")
	require.NoError(t, err)
	require.Equal(t, store.StateEnded, got.State)
	require.Equal(t, requests[winner], got.EndedBy)
	require.Equal(t, requests[winner], got.DisconnectReason)
	require.Equal(t, store.StateQueued, got.PreviousState)
	require.Equal(t, results[winner].Contact.Revision, got.Revision)

	// Every request delivered again: the winner replays, the others still fail.
	for i := range n {
		res, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "hot", RequestID: requests[i]})
		if i == winner {
			require.NoError(t, err)
			require.True(t, res.Replayed)
			continue
		}
		require.ErrorIs(t, err, store.ErrContactNotActive)
	}
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
	}
	require.Empty(t, listAll(t, s, "acme"), "nothing invalid was written")

	ok := contact("acme", strings.Repeat("é", 256))
	_, err := s.PutContact(c, ok)
	require.NoError(t, err, "256 characters is the limit")
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

	got, err := s.GetContact(c, "acme", fmt.Sprint("c-", n-1))
	require.NoError(t, err)
	require.NotZero(t, got.Revision)
	want := contact("acme", fmt.Sprint("c-", n-1))
	want.Revision = got.Revision
	requireSameContact(t, want, got)

	// Seeded contacts are ordinary contacts.
	res, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "c-17", RequestID: "r"})
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, res.Contact.PreviousState)

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

// testEndContactKnown ends contacts with a record the caller already has:
// current (written as is) and stale (the contact changed since: read again,
// and the newer state is what is recorded as previous).
func testEndContactKnown(t *testing.T, s Store) {
	c := ctx(t)
	current, err := s.PutContact(c, contact("acme", "current"))
	require.NoError(t, err)
	res, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "current", RequestID: "b/current", Known: &current})
	require.NoError(t, err)
	require.False(t, res.Replayed)
	require.Equal(t, store.StateQueued, res.Contact.PreviousState)
	require.Equal(t, current.QueueID, res.Contact.QueueID)

	stale, err := s.PutContact(c, contact("acme", "stale"))
	require.NoError(t, err)
	moved := stale
	moved.State = store.StateConnected
	_, err = s.PutContact(c, moved)
	require.NoError(t, err)
	res, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "stale", RequestID: "b/stale", Known: &stale})
	require.NoError(t, err)
	require.Equal(t, store.StateConnected, res.Contact.PreviousState, "a stale known record is read again")

	// Known, but already ended by another request meanwhile.
	taken, err := s.PutContact(c, contact("acme", "taken"))
	require.NoError(t, err)
	_, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "taken", RequestID: "single"})
	require.NoError(t, err)
	_, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "taken", RequestID: "b/taken", Known: &taken})
	require.ErrorIs(t, err, store.ErrContactNotActive)
	got, err := s.GetContact(c, "acme", "taken")
	require.NoError(t, err)
	require.Equal(t, "single", got.EndedBy)
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

	got.Done, got.Stopped, got.ReasonCodes = 5, 4, map[string]int{"CONTACT_NOT_FOUND": 1}
	updated, err := s.PutBulk(c, got)
	require.NoError(t, err)
	_, err = s.PutBulk(c, got)
	require.ErrorIs(t, err, store.ErrBulkConflict, "an update at an old revision fails")

	again, err := s.GetBulk(c, "acme", "b 1/é")
	require.NoError(t, err)
	require.Equal(t, updated.Revision, again.Revision)
	require.Equal(t, 4, again.Stopped)
	require.Equal(t, map[string]int{"CONTACT_NOT_FOUND": 1}, again.ReasonCodes)

	_, err = s.GetBulk(c, "other", "b 1/é")
	require.ErrorIs(t, err, store.ErrBulkNotFound, "bulk records are per instance")
}

// testBulkPending fills, empties and deletes the pending slots of two runs
// of a bulk request, and sees that they are neither bulk records nor the
// slots of another bulk request.
func testBulkPending(t *testing.T, s Store) {
	c := ctx(t)
	const bulk = "b 1/é"
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

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		ids, slots, err = s.BulkPending(c, "acme", bulk)
		require.NoError(ct, err)
		require.ElementsMatch(ct, []string{"a", "b", "e"}, ids)
		require.Len(ct, slots, 3, "three slots, one of them empty")
	}, 10*time.Second, 20*time.Millisecond)
	_, err = s.GetBulk(c, "acme", bulk)
	require.ErrorIs(t, err, store.ErrBulkNotFound, "slots are not bulk records")

	require.NoError(t, s.DeleteBulkPending(c, slots))
	ids, slots, err = s.BulkPending(c, "acme", bulk)
	require.NoError(t, err)
	require.Empty(t, ids)
	require.Empty(t, slots)
	ids, _, err = s.BulkPending(c, "acme", "other")
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, ids, "another bulk's slots are kept")

	// Every contact written before ContactsSequence has a revision at most
	// it; one written after, above it.
	before, err := s.PutContact(c, contact("acme", "seq"))
	require.NoError(t, err)
	seq, err := s.ContactsSequence(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, seq, before.Revision)
	after, err := s.PutContact(c, contact("acme", "seq"))
	require.NoError(t, err)
	require.Greater(t, after.Revision, seq)
}

// testEndContacts ends a batch holding every case EndContact knows, and
// checks each outcome is what EndContact would have returned, and the
// records what EndContact would have written.
func testEndContacts(t *testing.T, s Store) {
	c := ctx(t)
	ids := []string{"active", "known", "stale", "other", "mine", "a.b c/é*>", "twice"}
	recs := map[string]store.Contact{}
	for _, id := range ids {
		rec, err := s.PutContact(c, contact("acme", id))
		require.NoError(t, err)
		recs[id] = rec
	}
	_, err := s.PutContact(c, contact("beta", "active"))
	require.NoError(t, err)
	moved := recs["stale"]
	moved.State = store.StateOnHold
	_, err = s.PutContact(c, moved)
	require.NoError(t, err)
	_, err = s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "other", RequestID: "someone"})
	require.NoError(t, err)
	first, err := s.EndContact(c, store.EndContactParams{InstanceID: "acme", ContactID: "mine", RequestID: "r-mine", DisconnectReason: "FIRST", At: at})
	require.NoError(t, err)

	known, stale := recs["known"], recs["stale"]
	later := at.Add(time.Hour)
	ps := []store.EndContactParams{
		{InstanceID: "acme", ContactID: "active", RequestID: "r-active", DisconnectReason: "EMERGENCY", At: later},
		{InstanceID: "acme", ContactID: "known", RequestID: "r-known", Known: &known},
		{InstanceID: "acme", ContactID: "stale", RequestID: "r-stale", Known: &stale},
		{InstanceID: "acme", ContactID: "other", RequestID: "r-other"},
		{InstanceID: "acme", ContactID: "mine", RequestID: "r-mine", DisconnectReason: "SECOND"},
		{InstanceID: "acme", ContactID: "missing", RequestID: "r-missing"},
		{InstanceID: "acme", ContactID: "a.b c/é*>", RequestID: "r-awkward"},
		{InstanceID: "acme", ContactID: "twice", RequestID: "r-twice-1"},
		{InstanceID: "acme", ContactID: "twice", RequestID: "r-twice-2"},
		{InstanceID: "acme", ContactID: "twice", RequestID: "r-twice-1"},
		{InstanceID: "acme", ContactID: "no-request"},
		{InstanceID: "bad instance", ContactID: "x", RequestID: "r-bad"},
		{InstanceID: "beta", ContactID: "active", RequestID: "r-beta"},
	}
	outs := s.EndContacts(c, ps)
	require.Len(t, outs, len(ps))
	requireEnded := func(i int, previous store.State) {
		t.Helper()
		o := outs[i]
		require.NoError(t, o.Err, ps[i].ContactID)
		require.False(t, o.Result.Replayed, ps[i].ContactID)
		require.Equal(t, store.StateEnded, o.Result.Contact.State)
		require.Equal(t, previous, o.Result.Contact.PreviousState, ps[i].ContactID)
		require.Equal(t, ps[i].RequestID, o.Result.Contact.EndedBy)
		stored, err := s.GetContact(c, ps[i].InstanceID, ps[i].ContactID)
		require.NoError(t, err)
		requireSameContact(t, stored, o.Result.Contact, "what was stored is what was returned")
		require.Equal(t, stored.Revision, o.Result.Contact.Revision)
	}
	requireEnded(0, store.StateQueued)
	require.True(t, outs[0].Result.Contact.EndedAt.Equal(later))
	require.Equal(t, "EMERGENCY", outs[0].Result.Contact.DisconnectReason)
	require.Equal(t, "billing", outs[0].Result.Contact.QueueID, "the record's other fields are kept")
	requireEnded(1, store.StateQueued)
	requireEnded(2, store.StateOnHold) // the stale Known record was read again
	require.ErrorIs(t, outs[3].Err, store.ErrContactNotActive)
	require.NoError(t, outs[4].Err)
	require.True(t, outs[4].Result.Replayed)
	requireSameContact(t, first.Contact, outs[4].Result.Contact, "a replay reports the first outcome")
	require.Equal(t, "FIRST", outs[4].Result.Contact.DisconnectReason)
	require.ErrorIs(t, outs[5].Err, store.ErrContactNotFound)
	requireEnded(6, store.StateQueued)
	requireEnded(7, store.StateQueued)
	require.ErrorIs(t, outs[8].Err, store.ErrContactNotActive, "a second request for a contact in the batch")
	require.NoError(t, outs[9].Err)
	require.True(t, outs[9].Result.Replayed, "the same request twice in one batch")
	require.ErrorIs(t, outs[10].Err, store.ErrInvalidContact)
	require.ErrorIs(t, outs[11].Err, store.ErrInvalidContact)
	requireEnded(12, store.StateQueued)

	other, err := s.GetContact(c, "acme", "other")
	require.NoError(t, err)
	require.Equal(t, "someone", other.EndedBy, "a contact ended by another request is not touched")
	require.Empty(t, s.EndContacts(c, nil))
}

// testEndContactsMany ends more contacts in one call than one batched read
// asks for.
func testEndContactsMany(t *testing.T, s Store) {
	c := ctx(t)
	const n = 700
	_, err := s.SeedContacts(c, func(yield func(store.Contact) bool) {
		for i := range n {
			if !yield(contact("acme", fmt.Sprintf("c-%d", i))) {
				return
			}
		}
	})
	require.NoError(t, err)
	ps := make([]store.EndContactParams, n)
	for i := range ps {
		ps[i] = store.EndContactParams{InstanceID: "acme", ContactID: fmt.Sprintf("c-%d", i), RequestID: fmt.Sprintf("r-%d", i)}
	}
	for i, o := range s.EndContacts(c, ps) {
		require.NoError(t, o.Err, i)
		require.Equal(t, ps[i].ContactID, o.Result.Contact.ContactID)
	}
	for id, got := range listAll(t, s, "acme") {
		require.Equal(t, store.StateEnded, got.State, id)
		require.Equal(t, "r-"+strings.TrimPrefix(id, "c-"), got.EndedBy)
	}
}

// testEndContactsConcurrent races batches of different requests for the
// same contacts, with single EndContact calls among them: each contact is
// ended exactly once, and exactly one request reports it.
func testEndContactsConcurrent(t *testing.T, s Store) {
	c := ctx(t)
	const n, racers = 200, 4
	for i := range n {
		_, err := s.PutContact(c, contact("acme", fmt.Sprintf("c-%d", i)))
		require.NoError(t, err)
	}
	var mu sync.Mutex
	winners := map[string][]string{}
	record := func(id, requestID string) {
		mu.Lock()
		defer mu.Unlock()
		winners[id] = append(winners[id], requestID)
	}
	var wg sync.WaitGroup
	for r := range racers {
		wg.Go(func() {
			ps := make([]store.EndContactParams, n)
			for i := range ps {
				ps[i] = store.EndContactParams{InstanceID: "acme", ContactID: fmt.Sprintf("c-%d", i), RequestID: fmt.Sprintf("batch-%d", r)}
			}
			for i, o := range s.EndContacts(c, ps) {
				if o.Err == nil {
					record(ps[i].ContactID, ps[i].RequestID)
					continue
				}
				if !errors.Is(o.Err, store.ErrContactNotActive) {
					t.Errorf("%s: %v", ps[i].ContactID, o.Err)
				}
			}
		})
		wg.Go(func() {
			for i := n - 1; i >= 0; i -= 3 {
				p := store.EndContactParams{InstanceID: "acme", ContactID: fmt.Sprintf("c-%d", i), RequestID: fmt.Sprintf("single-%d", r)}
				if _, err := s.EndContact(c, p); err == nil {
					record(p.ContactID, p.RequestID)
				} else if !errors.Is(err, store.ErrContactNotActive) {
					t.Errorf("%s: %v", p.ContactID, err)
				}
			}
		})
	}
	wg.Wait()
	for id, got := range listAll(t, s, "acme") {
		require.Len(t, winners[id], 1, "%s reported ended by %v", id, winners[id])
		require.Equal(t, winners[id][0], got.EndedBy, id)
	}
}

// testWalkContactsSkip walks with a skip function: it is asked about every
// contact, and the ones it skips are not passed on.
func testWalkContactsSkip(t *testing.T, s Store) {
	c := ctx(t)
	for _, id := range []string{"keep-1", "skip-1", "keep-2", "skip-2", "a.b c"} {
		_, err := s.PutContact(c, contact("acme", id))
		require.NoError(t, err)
	}
	var asked, got []string
	require.NoError(t, s.WalkContacts(c, "acme", func(id string) bool {
		asked = append(asked, id)
		return strings.HasPrefix(id, "skip-")
	}, func(ct store.Contact) error {
		got = append(got, ct.ContactID)
		return nil
	}))
	require.ElementsMatch(t, []string{"keep-1", "skip-1", "keep-2", "skip-2", "a.b c"}, asked, "asked by contactId, decoded")
	require.ElementsMatch(t, []string{"keep-1", "keep-2", "a.b c"}, got)
}
