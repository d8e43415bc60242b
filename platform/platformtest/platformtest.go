// Package platformtest is the contract suite of contactstop's platform
// adapters. Every adapter (platform/amazonconnect, and those of other
// platforms) runs it from its own tests, against a fake of its platform:
//
//	func TestContract(t *testing.T) {
//		platformtest.Run(t, func(t *testing.T) platformtest.Harness {
//			return newHarness(t) // the adapter, bound to a fresh fake
//		})
//	}
//
// The suite states what the worker relies on: a stop ends an active
// contact exactly once and says so; a contact that is not active (unknown,
// already stopped, hung up) is NotFound; a description says whether the
// contact is active, in which state, queue and channel, and since when it
// is disconnected; every failure is a *platform.Error of the right Kind
// (Throttled with the platform's RetryAfter, Transient for 5xx and lost
// answers, Denied, InvalidParameter, InvalidRequest, ResourceNotFound);
// an answer lost after the stop took effect is Transient, and the
// platform then describes the contact as disconnected.
package platformtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// The operations of platform.Platform, as a Fake scripts them and as
// platform.Error.Op names them.
const (
	OpStopContact     = "StopContact"
	OpDescribeContact = "DescribeContact"
)

// Harness is one adapter under test, bound to a fresh fake of its
// platform.
type Harness struct {
	// Platform is the adapter, bound to the fake's platform instance.
	Platform platform.Platform
	// UnknownInstance is the same adapter bound to a platform instance the
	// fake does not have.
	UnknownInstance platform.Platform
	// Fake controls the fake behind both.
	Fake Fake
}

// Contact is a contact to add to the fake, in the store's terms.
type Contact struct {
	ID      string
	Channel store.Channel // default VOICE
	// QueueID and EnqueuedAt: the contact waits in a queue since then.
	QueueID    string
	EnqueuedAt time.Time
	// AgentConnected: an agent has taken it.
	AgentConnected bool
}

// Failure is a refusal the fake answers instead of carrying out a call.
type Failure struct {
	// Kind is what the adapter must classify the answer as: Throttled (a
	// rate-limit answer), Transient (a 5xx), Denied (credentials lacking
	// the permission), InvalidParameter or InvalidRequest.
	Kind platform.Kind
	// RetryAfter, for Throttled, is how long the platform asks to wait
	// (0: it does not say).
	RetryAfter time.Duration
}

// Fake is the vendor-neutral control of a platform's fake.
type Fake interface {
	// AddContact adds an active contact to the bound instance.
	AddContact(c Contact)
	// HangUp disconnects an active contact as if the customer hung up.
	HangUp(contactID string)
	// FailNext makes the next call of op (OpStopContact,
	// OpDescribeContact) answer f, without effect.
	FailNext(op string, f Failure)
	// LoseNextAnswer makes the next call of op take effect and then lose
	// its answer (the connection breaks, or the caller times out).
	LoseNextAnswer(op string)
	// StopEffects is how many stops ended the contact.
	StopEffects(contactID string) int
	// DisconnectReason is the disconnect reason the platform received
	// with the stop that ended the contact ("" if none).
	DisconnectReason(contactID string) string
}

// Run runs the contract suite; newHarness makes a fresh harness for each
// subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"StopActive", testStopActive},
		{"StopTwice", testStopTwice},
		{"StopUnknown", testStopUnknown},
		{"StopHungUp", testStopHungUp},
		{"StopConcurrently", testStopConcurrently},
		{"DisconnectReason", testDisconnectReason},
		{"DescribeQueued", testDescribeQueued},
		{"DescribeConnected", testDescribeConnected},
		{"DescribeInitiated", testDescribeInitiated},
		{"DescribeChannels", testDescribeChannels},
		{"DescribeAfterStop", testDescribeAfterStop},
		{"DescribeHungUp", testDescribeHungUp},
		{"DescribeUnknown", testDescribeUnknown},
		{"Throttled", testThrottled},
		{"ThrottledRetryAfter", testThrottledRetryAfter},
		{"ServerError", testServerError},
		{"Denied", testDenied},
		{"InvalidParameter", testInvalidParameter},
		{"InvalidRequest", testInvalidRequest},
		{"LostAnswer", testLostAnswer},
		{"UnknownInstance", testUnknownInstance},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// requireKind checks that err is a *platform.Error of kind k about op.
func requireKind(t *testing.T, err error, op string, k platform.Kind) *platform.Error {
	t.Helper()
	require.Error(t, err)
	var pe *platform.Error
	require.True(t, errors.As(err, &pe), "not a *platform.Error: %T %v", err, err)
	require.Equal(t, k, pe.Kind, "kind of %v", err)
	require.Equal(t, op, pe.Op, "op of %v", err)
	return pe
}

// sameMillisecond checks two times within a millisecond (platforms report
// times at millisecond precision).
func sameMillisecond(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	assert.WithinDuration(t, want, got, time.Millisecond, what)
}

func testStopActive(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", ""))
	require.Equal(t, 1, h.Fake.StopEffects("c-1"))
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.False(t, st.Active)
}

func testStopTwice(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", ""))
	requireKind(t, h.Platform.StopContact(testCtx(t), "c-1", ""), OpStopContact, platform.NotFound)
	require.Equal(t, 1, h.Fake.StopEffects("c-1"))
}

func testStopUnknown(t *testing.T, h Harness) {
	err := h.Platform.StopContact(testCtx(t), "no-such-contact", "")
	requireKind(t, err, OpStopContact, platform.NotFound)
	require.False(t, platform.Retryable(err))
	require.Zero(t, h.Fake.StopEffects("no-such-contact"))
}

func testStopHungUp(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.HangUp("c-1")
	requireKind(t, h.Platform.StopContact(testCtx(t), "c-1", ""), OpStopContact, platform.NotFound)
	require.Zero(t, h.Fake.StopEffects("c-1"))
}

func testStopConcurrently(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	const n = 6
	errs := make([]error, n)
	c := testCtx(t)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = h.Platform.StopContact(c, "c-1", "") })
	}
	wg.Wait()
	stopped := 0
	for _, err := range errs {
		if err == nil {
			stopped++
			continue
		}
		requireKind(t, err, OpStopContact, platform.NotFound)
	}
	require.Equal(t, 1, stopped, "exactly one stop ends the contact: %v", errs)
	require.Equal(t, 1, h.Fake.StopEffects("c-1"))
}

func testDisconnectReason(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.AddContact(Contact{ID: "c-2"})
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", "OUTBOUND_DESTINATION_ENDPOINT_ERROR"))
	require.Equal(t, "OUTBOUND_DESTINATION_ENDPOINT_ERROR", h.Fake.DisconnectReason("c-1"))
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-2", ""))
	require.Empty(t, h.Fake.DisconnectReason("c-2"))
}

func testDescribeQueued(t *testing.T, h Harness) {
	at := time.Now().Add(-time.Minute)
	h.Fake.AddContact(Contact{ID: "c-1", Channel: store.ChannelChat, QueueID: "q-1", EnqueuedAt: at})
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.True(t, st.Active)
	require.Equal(t, store.StateQueued, st.State)
	require.Equal(t, store.ChannelChat, st.Channel)
	require.Equal(t, "q-1", st.QueueID)
	sameMillisecond(t, at, st.EnqueuedAt, "EnqueuedAt")
	require.True(t, st.DisconnectedAt.IsZero())
}

func testDescribeConnected(t *testing.T, h Harness) {
	at := time.Now().Add(-time.Minute)
	h.Fake.AddContact(Contact{ID: "c-1", QueueID: "q-1", EnqueuedAt: at, AgentConnected: true})
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.True(t, st.Active)
	require.Equal(t, store.StateConnected, st.State)
	require.Equal(t, "q-1", st.QueueID, "the queue it waited in")
	sameMillisecond(t, at, st.EnqueuedAt, "EnqueuedAt")
}

func testDescribeInitiated(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.True(t, st.Active)
	require.Equal(t, store.StateInitiated, st.State)
	require.Equal(t, store.ChannelVoice, st.Channel)
	require.Empty(t, st.QueueID)
	require.True(t, st.EnqueuedAt.IsZero())
}

func testDescribeChannels(t *testing.T, h Harness) {
	for _, ch := range []store.Channel{store.ChannelVoice, store.ChannelChat, store.ChannelWorkItem, store.ChannelEmail} {
		id := "c-" + string(ch)
		h.Fake.AddContact(Contact{ID: id, Channel: ch})
		st, err := h.Platform.DescribeContact(testCtx(t), id)
		require.NoError(t, err)
		require.Equal(t, ch, st.Channel)
	}
}

func testDescribeAfterStop(t *testing.T, h Harness) {
	at := time.Now().Add(-time.Minute)
	h.Fake.AddContact(Contact{ID: "c-1", QueueID: "q-1", EnqueuedAt: at})
	before := time.Now()
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", ""))
	after := time.Now()
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.False(t, st.Active)
	require.Equal(t, store.StateEnded, st.State)
	require.False(t, st.DisconnectedAt.IsZero())
	require.False(t, st.DisconnectedAt.Before(before.Truncate(time.Millisecond)), "DisconnectedAt %v before the stop %v", st.DisconnectedAt, before)
	require.False(t, st.DisconnectedAt.After(after), "DisconnectedAt %v after the stop %v", st.DisconnectedAt, after)
	require.Equal(t, "q-1", st.QueueID, "the queue it waited in")
	sameMillisecond(t, at, st.EnqueuedAt, "EnqueuedAt")
}

func testDescribeHungUp(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.HangUp("c-1")
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.False(t, st.Active)
	require.Equal(t, store.StateEnded, st.State)
	require.False(t, st.DisconnectedAt.IsZero())
	require.Zero(t, h.Fake.StopEffects("c-1"))
}

func testDescribeUnknown(t *testing.T, h Harness) {
	_, err := h.Platform.DescribeContact(testCtx(t), "no-such-contact")
	requireKind(t, err, OpDescribeContact, platform.NotFound)
}

func testThrottled(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	for _, op := range []string{OpStopContact, OpDescribeContact} {
		h.Fake.FailNext(op, Failure{Kind: platform.Throttled})
	}
	err := h.Platform.StopContact(testCtx(t), "c-1", "")
	pe := requireKind(t, err, OpStopContact, platform.Throttled)
	require.Zero(t, pe.RetryAfter)
	require.True(t, platform.Retryable(err))
	require.Zero(t, h.Fake.StopEffects("c-1"), "a throttled stop has no effect")
	_, err = h.Platform.DescribeContact(testCtx(t), "c-1")
	requireKind(t, err, OpDescribeContact, platform.Throttled)

	// The next calls go through.
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", ""))
	require.Equal(t, 1, h.Fake.StopEffects("c-1"))
}

func testThrottledRetryAfter(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.FailNext(OpStopContact, Failure{Kind: platform.Throttled, RetryAfter: 3 * time.Second})
	pe := requireKind(t, h.Platform.StopContact(testCtx(t), "c-1", ""), OpStopContact, platform.Throttled)
	require.Equal(t, 3*time.Second, pe.RetryAfter)
}

func testServerError(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	for _, op := range []string{OpStopContact, OpDescribeContact} {
		h.Fake.FailNext(op, Failure{Kind: platform.Transient})
	}
	err := h.Platform.StopContact(testCtx(t), "c-1", "")
	requireKind(t, err, OpStopContact, platform.Transient)
	require.True(t, platform.Retryable(err))
	_, err = h.Platform.DescribeContact(testCtx(t), "c-1")
	requireKind(t, err, OpDescribeContact, platform.Transient)
	require.NoError(t, h.Platform.StopContact(testCtx(t), "c-1", ""))
}

func testDenied(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	for _, op := range []string{OpStopContact, OpDescribeContact} {
		h.Fake.FailNext(op, Failure{Kind: platform.Denied})
	}
	requireKind(t, h.Platform.StopContact(testCtx(t), "c-1", ""), OpStopContact, platform.Denied)
	_, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	requireKind(t, err, OpDescribeContact, platform.Denied)
	require.Zero(t, h.Fake.StopEffects("c-1"))
}

func testInvalidParameter(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.FailNext(OpStopContact, Failure{Kind: platform.InvalidParameter})
	err := h.Platform.StopContact(testCtx(t), "c-1", "")
	requireKind(t, err, OpStopContact, platform.InvalidParameter)
	require.False(t, platform.Retryable(err))
	require.Zero(t, h.Fake.StopEffects("c-1"))
}

func testInvalidRequest(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.FailNext(OpStopContact, Failure{Kind: platform.InvalidRequest})
	err := h.Platform.StopContact(testCtx(t), "c-1", "")
	requireKind(t, err, OpStopContact, platform.InvalidRequest)
	require.False(t, platform.Retryable(err))
}

func testLostAnswer(t *testing.T, h Harness) {
	h.Fake.AddContact(Contact{ID: "c-1"})
	h.Fake.LoseNextAnswer(OpStopContact)
	err := h.Platform.StopContact(testCtx(t), "c-1", "")
	requireKind(t, err, OpStopContact, platform.Transient)
	require.True(t, platform.Retryable(err))
	require.Equal(t, 1, h.Fake.StopEffects("c-1"), "the stop took effect before its answer was lost")
	st, err := h.Platform.DescribeContact(testCtx(t), "c-1")
	require.NoError(t, err)
	require.False(t, st.Active)
	require.Equal(t, store.StateEnded, st.State)
	// Trying again, as the worker's backoff does: not found, and no
	// second effect.
	requireKind(t, h.Platform.StopContact(testCtx(t), "c-1", ""), OpStopContact, platform.NotFound)
	require.Equal(t, 1, h.Fake.StopEffects("c-1"))
}

func testUnknownInstance(t *testing.T, h Harness) {
	require.NotNil(t, h.UnknownInstance, "the harness has no adapter bound to an unknown instance")
	h.Fake.AddContact(Contact{ID: "c-1"})
	err := h.UnknownInstance.StopContact(testCtx(t), "c-1", "")
	requireKind(t, err, OpStopContact, platform.ResourceNotFound)
	require.False(t, platform.Retryable(err))
	require.Zero(t, h.Fake.StopEffects("c-1"))
	// A platform that cannot tell an unknown instance from an unknown
	// contact when describing (Amazon Connect answers both with
	// ResourceNotFoundException) may say NotFound.
	_, err = h.UnknownInstance.DescribeContact(testCtx(t), "c-1")
	require.Error(t, err)
	k := platform.KindOf(err)
	require.True(t, k == platform.ResourceNotFound || k == platform.NotFound, "kind %v: %v", k, err)
}

// String makes a Failure readable in test output.
func (f Failure) String() string {
	if f.RetryAfter > 0 {
		return fmt.Sprintf("%v (retry after %v)", f.Kind, f.RetryAfter)
	}
	return f.Kind.String()
}
