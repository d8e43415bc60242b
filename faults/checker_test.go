package faults

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// These tests run always (they need no processes): they show that the
// checker sees each kind of violation, by writing the streams and contact
// records that a faulty worker would leave.

// fixtureWindow is the duplicate window of the fixtures' streams: short,
// so that a case can store a second copy of a result (afterWindow).
const fixtureWindow = 500 * time.Millisecond

type fixture struct {
	t       *testing.T
	js      jetstream.JetStream
	st      *store.KV
	kv      jetstream.KeyValue
	history map[ContactRef][]Version
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	require.NoError(t, worker.Provision(t.Context(), js, worker.TopologyConfig{DuplicateWindow: fixtureWindow}))
	st, err := store.Open(t.Context(), js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(t.Context(), store.Instance{InstanceID: inst})
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), contactsBucket)
	require.NoError(t, err)
	return &fixture{t: t, js: js, st: st, kv: kv, history: map[ContactRef][]Version{}}
}

func (f *fixture) logVersion(c store.Contact, expected uint64, sent time.Time) {
	ref := ContactRef{c.InstanceID, c.ContactID}
	f.history[ref] = append(f.history[ref], Version{Revision: c.Revision, ExpectedRevision: expected, State: c.State,
		QueueID: c.QueueID, Channel: c.Channel, EnqueuedAt: c.EnqueuedAt, SentAt: sent, At: time.Now()})
}

// contact writes a QUEUED voice contact in queue, and logs it.
func (f *fixture) contact(id, queue string) store.Contact {
	f.t.Helper()
	sent := time.Now()
	c, err := f.st.PutContact(f.t.Context(), store.Contact{ContactID: id, InstanceID: inst, State: store.StateQueued,
		QueueID: queue, Channel: store.ChannelVoice, EnqueuedAt: time.Now().Add(-time.Minute)})
	require.NoError(f.t, err)
	f.logVersion(c, 0, sent)
	return c
}

// move changes a contact's state and queue by a revision-checked update,
// as another service would, and logs it.
func (f *fixture) move(c store.Contact, state store.State, queue string) store.Contact {
	f.t.Helper()
	prev := c.Revision
	c.State, c.QueueID, c.UpdatedAt = state, queue, time.Now().UTC()
	data, err := json.Marshal(c)
	require.NoError(f.t, err)
	sent := time.Now()
	c.Revision, err = f.kv.Update(f.t.Context(), store.ContactKey(inst, c.ContactID), data, prev)
	require.NoError(f.t, err)
	f.logVersion(c, prev, sent)
	return c
}

// end ends the contact as read (at its revision), as the worker does.
func (f *fixture) end(c store.Contact, by string, seq uint64) store.Contact {
	f.t.Helper()
	o := f.st.EndContacts(f.t.Context(), []store.EndContactParams{{Contact: c, RequestID: by, RequestSeq: seq}})[0]
	require.NoError(f.t, o.Err)
	return o.Contact
}

// staleEnd ends the contact from an old read (old's fields) by a
// compare-and-set at the current revision: a worker's bug.
func (f *fixture) staleEnd(old store.Contact, current uint64, by string, seq uint64) {
	f.t.Helper()
	old.Revision = current
	f.end(old, by, seq)
}

// intent records requestID's stop intent on the contact, as the
// platform path does before it calls the platform.
func (f *fixture) intent(c store.Contact, requestID string, seq uint64) store.Contact {
	f.t.Helper()
	c.Intent = &store.Intent{RequestID: requestID, RequestSeq: seq, At: time.Now().UTC()}
	w, err := f.st.WriteContact(f.t.Context(), c, c.Revision)
	require.NoError(f.t, err)
	return w
}

// endedByPlatform records that the platform reported the contact
// disconnected (the intent, if any, withdrawn), as the platform path does.
func (f *fixture) endedByPlatform(c store.Contact) { f.platformEnd(c, store.EndedByPlatform, 0) }

// platformEnd writes the ENDED record that replaces an intent, as the
// platform path does once the platform answered.
func (f *fixture) platformEnd(c store.Contact, by string, seq uint64) {
	f.t.Helper()
	ended := c
	ended.PreviousState, ended.State, ended.EndedBy, ended.EndedBySeq = c.State, store.StateEnded, by, seq
	ended.EndedAt, ended.UpdatedAt, ended.Intent = time.Now().UTC(), time.Now().UTC(), nil
	_, err := f.st.WriteContact(f.t.Context(), ended, c.Revision)
	require.NoError(f.t, err)
}

func (f *fixture) publish(subject string, body any, msgID string) uint64 {
	f.t.Helper()
	data, err := json.Marshal(body)
	require.NoError(f.t, err)
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(events.HeaderMsgID, msgID)
	}
	ack, err := f.js.PublishMsg(f.t.Context(), m)
	require.NoError(f.t, err)
	require.False(f.t, ack.Duplicate, "dropped as a duplicate: %s %s", subject, data)
	return ack.Sequence
}

// outage waits for d and returns it as an outage (as if the server had
// been down meanwhile).
func (f *fixture) outage(d time.Duration) Outage {
	from := time.Now()
	time.Sleep(d)
	return Outage{From: from, To: time.Now(), What: "test outage"}
}

// afterWindow waits for the streams' duplicate window to pass.
func (f *fixture) afterWindow() { time.Sleep(fixtureWindow + 200*time.Millisecond) }

// request publishes a stop request without Nats-Msg-Id and returns its
// stream sequence.
func (f *fixture) request(id, contact string) uint64 {
	return f.publish(events.StopRequestedSubject(inst), events.StopRequest{RequestID: id, ContactID: contact, InstanceID: inst}, "")
}

func (f *fixture) stoppedWithID(id, contact, msgID string) {
	f.publish(events.StoppedSubject(inst), events.Stopped{RequestID: id, ContactID: contact, InstanceID: inst,
		PreviousState: "QUEUED", StoppedAt: time.Unix(1700000000, 0).UTC()}, msgID)
}

// stopped publishes contact.stopped with the Nats-Msg-Id of its identity.
func (f *fixture) stopped(id, contact string) {
	f.stoppedWithID(id, contact, events.ResultMsgID(inst, contact, id))
}

// failed publishes a final failure (retryable false).
func (f *fixture) failed(id, contact string, code events.ReasonCode) {
	f.publish(events.StopFailedSubject(inst), events.StopFailed{RequestID: id, ContactID: contact, InstanceID: inst,
		ReasonCode: code, Message: "test", FailedAt: time.Now()}, events.ResultMsgID(inst, contact, id))
}

// retryable publishes a retryable INTERNAL_ERROR answering the message
// with stream sequence seq.
func (f *fixture) retryable(id, contact string, seq uint64) {
	f.publish(events.StopFailedSubject(inst), events.StopFailed{RequestID: id, ContactID: contact, InstanceID: inst,
		ReasonCode: events.ReasonInternalError, Message: "test", Retryable: true, FailedAt: time.Now()},
		events.RetryableResultMsgID(inst, contact, id, seq))
}

// bulkFailed publishes the INTERNAL_ERROR of a bulk's contact, as the
// worker does (retryable, with the identity's Nats-Msg-Id).
func (f *fixture) bulkFailed(bulkID, contact string) {
	id := events.BulkItemRequestID(bulkID, contact)
	f.publish(events.StopFailedSubject(inst), events.StopFailed{RequestID: id, ContactID: contact, InstanceID: inst,
		ReasonCode: events.ReasonInternalError, Message: "test", Retryable: true, FailedAt: time.Now()},
		events.ResultMsgID(inst, contact, id))
}

func (f *fixture) bulk(bulkID string, filter events.BulkFilter) {
	f.publish(events.SubjectBulkRequested, events.BulkRequest{BulkID: bulkID, InstanceID: inst, Filter: filter}, "")
}

func queueFilter(queue string) events.BulkFilter { return events.BulkFilter{QueueIDs: []string{queue}} }

func (f *fixture) completion(c events.BulkCompleted) {
	c.InstanceID = inst
	if c.ReasonCodes == nil {
		c.ReasonCodes = map[events.ReasonCode]int{}
	}
	f.publish(events.BulkCompletedSubject(inst), c, "")
}

// withHistory is Expect with the fixture's history of writes.
func (f *fixture) withHistory(exp Expect) Expect {
	exp.History = f.history
	return exp
}

func (f *fixture) check(exp Expect) *Report {
	f.t.Helper()
	exp.Instances = []string{inst}
	rep, err := Check(f.t.Context(), f.js, exp)
	require.NoError(f.t, err)
	f.t.Logf("%s", rep)
	for _, p := range rep.Problems {
		f.t.Logf("problem: %s", p)
	}
	for _, n := range rep.Notes {
		f.t.Logf("note: %s", n)
	}
	return rep
}

// counts picks the report's violation counts.
func counts(r *Report) map[string]int {
	return map[string]int{
		"lost": r.Lost, "duplicated": r.Duplicated, "double": r.DoubleTerminated, "phantom": r.Phantom,
		"wrongly": r.WronglyEnded, "unannounced": r.EndedUnannounced, "failedEnded": r.FailedAndEnded,
		"unmatched": r.EndedUnmatched, "stale": r.StaleEnd, "bulk": r.BulkCompletionProblems, "badResult": r.BadResults,
		"outcome": r.WrongOutcome, "badRecord": r.BadRecordWritten, "copied": r.CopiedAfterOutage,
		"intentLeft": r.IntentLeft, "platformEnded": r.EndedByPlatform, "intentKept": r.IntentsKept,
	}
}

func TestCheckerFindsViolations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(f *fixture) Expect
		want  map[string]int // the non-zero counts
	}{{
		name: "all well",
		setup: func(f *fixture) Expect {
			c1 := f.contact("c1", "q")
			f.contact("c2", "q")
			f.end(c1, "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			f.request("r-2", "c1") // a second request for the same contact
			f.failed("r-2", "c1", events.ReasonContactNotFound)
			f.request("r-1", "c1") // a resend, stored again: no new result
			// A retryable INTERNAL_ERROR, then a later message of the same
			// request attempted afresh.
			c3 := f.contact("c3", "q")
			f.retryable("r-3", "c3", f.request("r-3", "c3"))
			f.end(c3, "r-3", f.request("r-3", "c3"))
			f.stopped("r-3", "c3")
			// Only retryable INTERNAL_ERRORs, one per message.
			f.retryable("r-4", "c4", f.request("r-4", "c4"))
			f.retryable("r-4", "c4", f.request("r-4", "c4"))
			// Bad data: a permanent INTERNAL_ERROR.
			f.request("r-5", "bad")
			f.failed("r-5", "bad", events.ReasonInternalError)
			// The same requestId for another contact is another request.
			c6 := f.contact("c6", "q")
			f.end(c6, "r-1", f.request("r-1", "c6"))
			f.stopped("r-1", "c6")
			return f.withHistory(Expect{Allowed: map[RequestKey][]string{
				{inst, "c1", "r-1"}: {OutcomeStopped}, {inst, "c1", "r-2"}: {string(events.ReasonContactNotFound)},
				{inst, "bad", "r-5"}: {string(events.ReasonInternalError)},
			}})
		},
	}, {
		name: "a request without a result is lost",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q")
			f.request("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"lost": 1},
	}, {
		name: "two results for one request are duplicated",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			f.afterWindow()
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "a resend after the window that gets a second result is duplicated",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			f.afterWindow()
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "an identical copy after an outage longer than the window is the allowed copy",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			o := f.outage(fixtureWindow + 100*time.Millisecond)
			f.stopped("r-1", "c1")
			return Expect{DuplicateWindow: fixtureWindow, Outages: []Outage{o}}
		},
		want: map[string]int{"copied": 1},
	}, {
		name: "an identical copy without an outage is duplicated",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			f.afterWindow()
			f.stopped("r-1", "c1")
			return Expect{DuplicateWindow: fixtureWindow}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "an identical copy across an outage shorter than the window is duplicated",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			o := f.outage(fixtureWindow / 2)
			f.afterWindow()
			f.stopped("r-1", "c1")
			return Expect{DuplicateWindow: fixtureWindow, Outages: []Outage{o}}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "a different result after an outage is duplicated",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			o := f.outage(fixtureWindow + 100*time.Millisecond)
			f.publish(events.StoppedSubject(inst), events.Stopped{RequestID: "r-1", ContactID: "c1", InstanceID: inst,
				PreviousState: "QUEUED", StoppedAt: time.Now().UTC()}, events.ResultMsgID(inst, "c1", "r-1"))
			return Expect{DuplicateWindow: fixtureWindow, Outages: []Outage{o}}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "a stop and a failure of one request",
		setup: func(f *fixture) Expect {
			c1 := f.contact("c1", "q")
			s := f.request("r-1", "c1")
			f.failed("r-1", "c1", events.ReasonContactNotFound)
			f.end(c1, "r-1", s)
			f.afterWindow() // the same Nats-Msg-Id
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"duplicated": 1, "failedEnded": 1},
	}, {
		name: "a retryable INTERNAL_ERROR that answers no stored message",
		setup: func(f *fixture) Expect {
			s := f.request("r-1", "c1")
			f.retryable("r-1", "c1", s+100)
			f.failed("r-1", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "two retryable INTERNAL_ERRORs for one message",
		setup: func(f *fixture) Expect {
			s := f.request("r-1", "c1")
			f.retryable("r-1", "c1", s)
			f.afterWindow()
			f.retryable("r-1", "c1", s)
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "a retryable INTERNAL_ERROR for a message after the final result",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			f.retryable("r-1", "c1", f.request("r-1", "c1"))
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "two requests stopping one contact",
		setup: func(f *fixture) Expect {
			c1 := f.contact("c1", "q")
			s := f.request("r-1", "c1")
			f.request("r-2", "c1")
			f.end(c1, "r-1", s)
			f.stopped("r-1", "c1")
			f.stopped("r-2", "c1")
			return Expect{}
		},
		want: map[string]int{"double": 1},
	}, {
		name: "ended by one request, stopped by another",
		setup: func(f *fixture) Expect {
			c1 := f.contact("c1", "q")
			f.request("r-1", "c1")
			f.end(c1, "r-2", f.request("r-2", "c1"))
			f.stopped("r-1", "c1")
			f.failed("r-2", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"double": 1},
	}, {
		name: "stopped but not ended",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"phantom": 1},
	}, {
		name: "a result of a request never stored",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q")
			f.failed("r-9", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"phantom": 1},
	}, {
		name: "a result naming another contact than its request",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q")
			f.contact("c2", "q")
			f.request("r-1", "c1")
			f.failed("r-1", "c2", events.ReasonContactNotFound)
			return Expect{}
		},
		// The result is a phantom, and the request has none.
		want: map[string]int{"phantom": 1, "lost": 1},
	}, {
		name: "ended by a request answered only INTERNAL_ERROR",
		setup: func(f *fixture) Expect {
			s := f.request("r-1", "c1")
			f.end(f.contact("c1", "q"), "r-1", s)
			f.retryable("r-1", "c1", s)
			return Expect{}
		},
		want: map[string]int{"unannounced": 1},
	}, {
		name: "ended by a request without any result",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			return Expect{}
		},
		want: map[string]int{"lost": 1, "unannounced": 1},
	}, {
		name: "ended by a request whose result says it failed",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.failed("r-1", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"failedEnded": 1},
	}, {
		name: "ended though nothing asked",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "ghost", 0)
			c2 := f.contact("c2", "q")
			f.contact("c3", "q")
			f.end(c2, "r-1", f.request("r-1", "c3")) // by a request for another contact
			f.failed("r-1", "c3", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"wrongly": 2},
	}, {
		name: "ended by a request but not by one of its messages",
		setup: func(f *fixture) Expect {
			s := f.request("r-1", "c1")
			f.end(f.contact("c1", "q"), "r-1", s+50)
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"wrongly": 1},
	}, {
		name: "a stale end of a single request",
		setup: func(f *fixture) Expect {
			c1 := f.contact("c1", "q1")
			moved := f.move(c1, store.StateOnHold, "q1")
			f.staleEnd(c1, moved.Revision, "r-1", f.request("r-1", "c1"))
			f.stopped("r-1", "c1")
			return f.withHistory(Expect{})
		},
		want: map[string]int{"stale": 1},
	}, {
		name: "a bulk clear done right",
		setup: func(f *fixture) Expect {
			b0, b1 := f.contact("b0", "bq"), f.contact("b1", "bq")
			f.contact("k0", "other")
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.end(b1, "b-1/b1", 0)
			f.stopped("b-1/b0", "b0")
			f.stopped("b-1/b1", "b1")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 2, Stopped: 2})
			return Expect{Bulks: []BulkExpect{{InstanceID: inst, BulkID: "b-1", Matched: 2}}}
		},
	}, {
		name: "a bulk clear with contacts moving, done right",
		setup: func(f *fixture) Expect {
			b0 := f.contact("b0", "bq")
			b1 := f.move(f.contact("b1", "q1"), store.StateQueued, "bq") // moved into the queue
			f.move(f.contact("m0", "bq"), store.StateConnected, "bq")    // answered before the clear
			m1 := f.contact("m1", "bq")
			f.contact("k0", "other")
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.end(b1, "b-1/b1", 0)
			f.stopped("b-1/b0", "b0")
			f.stopped("b-1/b1", "b1")
			f.move(m1, store.StateConnected, "bq") // answered while the clear ran: skipped
			f.bulkFailed("b-1", "b2")              // a contact that failed for good
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 4, Stopped: 2, Failed: 1, Skipped: 1, Unreadable: 1,
				ReasonCodes: map[events.ReasonCode]int{events.ReasonInternalError: 1}})
			_, err := f.kv.Put(f.t.Context(), inst+".bad", []byte("{"))
			require.NoError(f.t, err)
			return f.withHistory(Expect{Bulks: []BulkExpect{{InstanceID: inst, BulkID: "b-1", Unreadable: 1}}})
		},
	}, {
		name: "a bulk clear that ended a contact no longer matching",
		setup: func(f *fixture) Expect {
			moved := f.move(f.contact("b0", "bq"), store.StateConnected, "bq")
			f.bulk("b-1", queueFilter("bq"))
			f.end(moved, "b-1/b0", 0)
			f.stopped("b-1/b0", "b0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Stopped: 1})
			return f.withHistory(Expect{})
		},
		want: map[string]int{"unmatched": 1},
	}, {
		name: "a bulk clear that ended a contact from a stale read",
		setup: func(f *fixture) Expect {
			b0 := f.contact("b0", "bq")
			moved := f.move(b0, store.StateQueued, "q2") // moved to another queue
			f.bulk("b-1", queueFilter("bq"))
			f.staleEnd(b0, moved.Revision, "b-1/b0", 0) // ends it as it was, in bq
			f.stopped("b-1/b0", "b0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Stopped: 1})
			return f.withHistory(Expect{})
		},
		// Only the history shows it: the ENDED record claims queue bq.
		want: map[string]int{"unmatched": 1, "stale": 1},
	}, {
		name: "a bulk clear that missed a contact",
		setup: func(f *fixture) Expect {
			b0 := f.contact("b0", "bq")
			f.contact("b1", "bq") // matches throughout, never decided
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.stopped("b-1/b0", "b0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Stopped: 1})
			return f.withHistory(Expect{})
		},
		want: map[string]int{"lost": 1},
	}, {
		name: "a bulk clear that missed contacts and completed twice",
		setup: func(f *fixture) Expect {
			b0, b1 := f.contact("b0", "bq"), f.contact("b1", "bq")
			f.contact("b2", "bq") // never stopped
			k0 := f.contact("k0", "other")
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.end(b1, "b-1/b1", 0) // ended, no result
			f.end(k0, "b-1/k0", 0)
			f.stopped("b-1/b0", "b0")
			f.stopped("b-1/k0", "k0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 3, Stopped: 3})
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 3, Stopped: 3})
			return Expect{Bulks: []BulkExpect{{InstanceID: inst, BulkID: "b-1", Matched: 3}}}
		},
		// b2 lost; b1 ended without a result; k0 ended though it did not
		// match; two completions, whose stopped count is not the stored
		// one.
		want: map[string]int{"lost": 1, "unannounced": 1, "unmatched": 1, "bulk": 2},
	}, {
		name: "a completion whose counts differ from the stored results",
		setup: func(f *fixture) Expect {
			b0 := f.contact("b0", "bq")
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.stopped("b-1/b0", "b0")
			f.bulkFailed("b-1", "b1")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 2, Stopped: 1, Skipped: 1})
			f.bulk("b-2", queueFilter("none"))
			f.completion(events.BulkCompleted{BulkID: "b-2", Matched: 3})
			f.bulk("b-3", queueFilter("none"))
			f.completion(events.BulkCompleted{BulkID: "b-3", Unreadable: 1})
			return f.withHistory(Expect{Bulks: []BulkExpect{{InstanceID: inst, BulkID: "b-3", Unreadable: 2}}})
		},
		// b-1 misses its failure; b-2's matched is not the sum; b-3's
		// unreadable is not the planted count.
		want: map[string]int{"bulk": 3},
	}, {
		name: "a bulk contact that failed CONTACT_NOT_FOUND",
		setup: func(f *fixture) Expect {
			f.bulk("b-1", queueFilter("bq"))
			f.failed("b-1/b0", "b0", events.ReasonContactNotFound)
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Failed: 1,
				ReasonCodes: map[events.ReasonCode]int{events.ReasonContactNotFound: 1}})
			return f.withHistory(Expect{})
		},
		want: map[string]int{"badResult": 1},
	}, {
		name: "a bulk clear answered as a whole besides its completion",
		setup: func(f *fixture) Expect {
			b0 := f.contact("b0", "bq")
			f.bulk("b-1", queueFilter("bq"))
			f.end(b0, "b-1/b0", 0)
			f.stopped("b-1/b0", "b0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Stopped: 1})
			f.failed("b-1", "", events.ReasonInternalError)
			return Expect{Bulks: []BulkExpect{{InstanceID: inst, BulkID: "b-1", Matched: 1}}}
		},
		want: map[string]int{"bulk": 1},
	}, {
		name: "a result without its identity's Nats-Msg-Id",
		setup: func(f *fixture) Expect {
			f.end(f.contact("c1", "q"), "r-1", f.request("r-1", "c1"))
			f.stoppedWithID("r-1", "c1", "made-up")
			return Expect{}
		},
		want: map[string]int{"badResult": 1},
	}, {
		name: "an outcome that is not allowed",
		setup: func(f *fixture) Expect {
			f.request("r-1", "bad")
			f.failed("r-1", "bad", events.ReasonContactNotFound)
			return Expect{Allowed: map[RequestKey][]string{{inst, "bad", "r-1"}: {string(events.ReasonInternalError)}}}
		},
		want: map[string]int{"outcome": 1},
	}, {
		name: "a bound instance's intents and platform ends, done right",
		setup: func(f *fixture) Expect {
			// Hung up before any request: the clear found it gone.
			f.endedByPlatform(f.contact("c1", "q"))
			// A request for a contact that had hung up: its intent, then the
			// platform's answer.
			s := f.request("r-2", "c2")
			f.endedByPlatform(f.intent(f.contact("c2", "q"), "r-2", s))
			f.failed("r-2", "c2", events.ReasonContactNotFound)
			// Stopped on the platform: the intent replaced by the outcome.
			s = f.request("r-3", "c3")
			f.platformEnd(f.intent(f.contact("c3", "q"), "r-3", s), "r-3", s)
			f.stopped("r-3", "c3")
			// Answered only retryable INTERNAL_ERROR: its intent stays.
			s = f.request("r-4", "c4")
			f.intent(f.contact("c4", "q"), "r-4", s)
			f.retryable("r-4", "c4", s)
			return Expect{Bound: []string{inst}}
		},
		want: map[string]int{"platformEnded": 2, "intentKept": 1},
	}, {
		name: "ended by the platform on an instance not bound",
		setup: func(f *fixture) Expect {
			f.endedByPlatform(f.contact("c1", "q"))
			return Expect{}
		},
		want: map[string]int{"wrongly": 1},
	}, {
		name: "ended by the platform but stopped by a request",
		setup: func(f *fixture) Expect {
			s := f.request("r-1", "c1")
			f.endedByPlatform(f.intent(f.contact("c1", "q"), "r-1", s))
			f.stopped("r-1", "c1")
			return Expect{Bound: []string{inst}}
		},
		want: map[string]int{"double": 1},
	}, {
		name: "intents left behind",
		setup: func(f *fixture) Expect {
			// Its request answered for good: the intent should be gone.
			s := f.request("r-1", "c1")
			f.intent(f.contact("c1", "q"), "r-1", s)
			f.failed("r-1", "c1", events.ReasonContactNotFound)
			// No result at all (lost too).
			f.intent(f.contact("c2", "q"), "r-2", f.request("r-2", "c2"))
			// A bulk's contact stopped, its intent left on the record.
			f.bulk("b-1", queueFilter("bq"))
			f.intent(f.contact("b0", "bq"), "b-1/b0", 0)
			f.stopped("b-1/b0", "b0")
			f.completion(events.BulkCompleted{BulkID: "b-1", Matched: 1, Stopped: 1})
			return Expect{Bound: []string{inst}}
		},
		// b0: contact.stopped but not ENDED (phantom) and its intent left.
		want: map[string]int{"intentLeft": 3, "lost": 1, "phantom": 1},
	}, {
		name: "a planted bad record written",
		setup: func(f *fixture) Expect {
			ctx := f.t.Context()
			rev, err := f.kv.Put(ctx, inst+".bad", []byte("{"))
			require.NoError(f.t, err)
			kept, err := f.kv.Put(ctx, inst+".a=2eb", []byte(`{"state":"QUEUED","channel":"VOICE"}`))
			require.NoError(f.t, err)
			_, err = f.kv.Put(ctx, inst+".bad", []byte(`{"state":"PARKED","channel":"VOICE"}`))
			require.NoError(f.t, err)
			return Expect{BadRecords: map[string]uint64{inst + ".bad": rev, inst + ".a=2eb": kept}}
		},
		want: map[string]int{"badRecord": 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			rep := f.check(tc.setup(f))
			want := counts(&Report{})
			violations := 0
			for k, v := range tc.want {
				require.Contains(t, want, k)
				want[k] = v
				if k != "copied" && k != "platformEnded" && k != "intentKept" {
					violations += v
				}
			}
			require.Equal(t, want, counts(rep), strings.Join(rep.Problems, "\n"))
			require.Equal(t, violations, rep.Violations())
		})
	}
}

func TestWaitQuiescent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.contact("c1", "q")
	f.request("r-1", "c1")
	ctx := t.Context()
	// A request nobody handles: never quiescent.
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	b, err := WaitQuiescent(short, f.js, 500*time.Millisecond)
	require.Error(t, err)
	require.Equal(t, uint64(1), b.Pending)
	// Consumed and acknowledged: quiescent.
	cons, err := f.js.Consumer(ctx, events.StreamRequests, events.ConsumerRequests)
	require.NoError(t, err)
	batch, err := cons.Fetch(1)
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
	}
	b, err = WaitQuiescent(ctx, f.js, 500*time.Millisecond)
	require.NoError(t, err)
	require.Zero(t, b.Pending+b.AckPending)
}

// TestRecovery: the recovery figures come from the stored timeline, so a
// stall the progress samples could not see is counted whole.
func TestRecovery(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	times := []time.Time{at(0), at(1), at(5), at(6)}
	drain, stall, resume := recovery(times, []fault{{heal: at(2)}, {heal: at(5.5)}, {}, {heal: at(9)}})
	require.InDelta(t, 6, drain, 1e-9)
	require.InDelta(t, 4, stall, 1e-9, "from 1 s to 5 s")
	require.InDelta(t, 3, resume, 1e-9, "healed at 2 s, next result at 5 s; a heal after the last result counts nothing")
	drain, stall, resume = recovery(nil, nil)
	require.Zero(t, drain+stall+resume)
}
