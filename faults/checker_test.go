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

type fixture struct {
	t  *testing.T
	js jetstream.JetStream
	st *store.KV
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	require.NoError(t, worker.Provision(t.Context(), js, worker.TopologyConfig{}))
	st, err := store.Open(t.Context(), js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(t.Context(), store.Instance{InstanceID: inst})
	require.NoError(t, err)
	return &fixture{t: t, js: js, st: st}
}

// contact writes a QUEUED contact in queue, or an ENDED one when endedBy is
// set.
func (f *fixture) contact(id, queue, endedBy string) {
	f.t.Helper()
	c := store.Contact{ContactID: id, InstanceID: inst, State: store.StateQueued, QueueID: queue, Channel: store.ChannelVoice,
		EnqueuedAt: time.Now()}
	if endedBy != "" {
		c.State, c.PreviousState, c.EndedBy, c.EndedAt = store.StateEnded, store.StateQueued, endedBy, time.Now()
	}
	_, err := f.st.PutContact(f.t.Context(), c)
	require.NoError(f.t, err)
}

func (f *fixture) publish(subject string, body any, msgID string) {
	f.t.Helper()
	data, err := json.Marshal(body)
	require.NoError(f.t, err)
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(events.HeaderMsgID, msgID)
	}
	_, err = f.js.PublishMsg(f.t.Context(), m)
	require.NoError(f.t, err)
}

func (f *fixture) request(id, contact string) {
	f.publish(events.StopRequestedSubject(inst), events.StopRequest{RequestID: id, ContactID: contact, InstanceID: inst}, "")
}

func (f *fixture) stopped(id, contact string) {
	f.publish(events.StoppedSubject(inst), events.Stopped{RequestID: id, ContactID: contact, InstanceID: inst,
		PreviousState: "QUEUED", StoppedAt: time.Unix(1700000000, 0).UTC()}, "")
}

func (f *fixture) failed(id, contact string, code events.ReasonCode) {
	f.publish(events.StopFailedSubject(inst), events.StopFailed{RequestID: id, ContactID: contact, InstanceID: inst,
		ReasonCode: code, Message: "test", FailedAt: time.Now()}, "")
}

func (f *fixture) bulk(bulkID, queue string) {
	f.publish(events.SubjectBulkRequested, events.BulkRequest{BulkID: bulkID, InstanceID: inst,
		Filter: events.BulkFilter{QueueIDs: []string{queue}}}, "")
}

func (f *fixture) completion(bulkID string, matched, stopped int) {
	f.publish(events.BulkCompletedSubject(inst), events.BulkCompleted{BulkID: bulkID, InstanceID: inst,
		Matched: matched, Stopped: stopped, ReasonCodes: map[events.ReasonCode]int{}}, "")
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
	return rep
}

// counts picks the report's counts that the cases compare.
func counts(r *Report) map[string]int {
	return map[string]int{
		"lost": r.Lost, "duplicated": r.Duplicated, "double": r.DoubleTerminated, "phantom": r.Phantom,
		"wrongly": r.WronglyEnded, "bulk": r.BulkCompletionProblems, "replayed": r.ReplayedAfterWindow,
		"internal": r.EndedByInternalError,
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
			f.contact("c1", "q", "r-1")
			f.contact("c2", "q", "")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			f.request("r-2", "c1") // a second request for the same contact
			f.failed("r-2", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
	}, {
		name: "a request without a result is lost",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "")
			f.request("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"lost": 1},
	}, {
		name: "two results for one request are duplicated",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "a replay published after the window is counted apart",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{RepublishedAfterWindow: map[RequestKey]bool{{inst, "r-1"}: true}}
		},
		want: map[string]int{"replayed": 1},
	}, {
		name: "a replay is duplicated unless it was republished after the window",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"duplicated": 1},
	}, {
		name: "two requests stopping one contact",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.request("r-2", "c1")
			f.stopped("r-1", "c1")
			f.stopped("r-2", "c1")
			return Expect{}
		},
		want: map[string]int{"double": 1},
	}, {
		name: "ended by one request, stopped by another",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-2")
			f.request("r-1", "c1")
			f.request("r-2", "c1")
			f.stopped("r-1", "c1")
			f.failed("r-2", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"double": 1},
	}, {
		name: "stopped but not ended",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "")
			f.request("r-1", "c1")
			f.stopped("r-1", "c1")
			return Expect{}
		},
		want: map[string]int{"phantom": 1},
	}, {
		name: "a result of a request never stored",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "")
			f.failed("r-9", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"phantom": 1},
	}, {
		name: "ended by a request whose result says it failed",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.failed("r-1", "c1", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"phantom": 1},
	}, {
		name: "ended by a request answered INTERNAL_ERROR is the documented limit",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "r-1")
			f.request("r-1", "c1")
			f.failed("r-1", "c1", events.ReasonInternalError)
			return Expect{}
		},
		want: map[string]int{"internal": 1},
	}, {
		name: "ended though nothing asked",
		setup: func(f *fixture) Expect {
			f.contact("c1", "q", "ghost")
			f.contact("c2", "q", "r-1") // by a request for another contact
			f.contact("c3", "q", "")
			f.request("r-1", "c3")
			f.failed("r-1", "c3", events.ReasonContactNotFound)
			return Expect{}
		},
		want: map[string]int{"wrongly": 2},
	}, {
		name: "a bulk clear done right",
		setup: func(f *fixture) Expect {
			f.contact("b0", "bq", "b-1/b0")
			f.contact("b1", "bq", "b-1/b1")
			f.contact("k0", "other", "")
			f.bulk("b-1", "bq")
			f.stopped("b-1/b0", "b0")
			f.stopped("b-1/b1", "b1")
			f.completion("b-1", 2, 2)
			return Expect{Bulks: []BulkExpect{{inst, "b-1", 2}}}
		},
	}, {
		name: "a bulk clear that missed contacts and completed twice",
		setup: func(f *fixture) Expect {
			f.contact("b0", "bq", "b-1/b0")
			f.contact("b1", "bq", "b-1/b1") // ended, no result
			f.contact("b2", "bq", "")       // never stopped
			f.contact("k0", "other", "b-1/k0")
			f.bulk("b-1", "bq")
			f.stopped("b-1/b0", "b0")
			f.stopped("b-1/k0", "k0")
			f.completion("b-1", 3, 3)
			f.completion("b-1", 3, 3)
			return Expect{Bulks: []BulkExpect{{inst, "b-1", 3}}}
		},
		// b1 and b2 lost; k0 wrongly ended and its result a phantom; two
		// completions, and only one contact stopped of the three.
		want: map[string]int{"lost": 2, "wrongly": 1, "phantom": 1, "bulk": 2},
	}, {
		name: "a bulk clear answered as a whole besides its completion",
		setup: func(f *fixture) Expect {
			f.contact("b0", "bq", "b-1/b0")
			f.bulk("b-1", "bq")
			f.stopped("b-1/b0", "b0")
			f.completion("b-1", 1, 1)
			f.failed("b-1", "", events.ReasonInternalError)
			return Expect{Bulks: []BulkExpect{{inst, "b-1", 1}}}
		},
		want: map[string]int{"bulk": 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			rep := f.check(tc.setup(f))
			want := counts(&Report{})
			for k, v := range tc.want {
				want[k] = v
			}
			require.Equal(t, want, counts(rep), strings.Join(rep.Problems, "\n"))
			violations := 0
			for k, v := range tc.want {
				if k != "replayed" && k != "internal" {
					violations += v
				}
			}
			require.Equal(t, violations, rep.Violations())
		})
	}
}

func TestWaitQuiescent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.contact("c1", "q", "")
	f.request("r-1", "c1")
	ctx := t.Context()
	// A request nobody handles: never quiescent.
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	b, err := WaitQuiescent(short, f.js, 500*time.Millisecond)
	require.Error(t, err)
	require.Equal(t, uint64(1), b.Pending)
	// Consumed and acknowledged: quiescent.
	cons, err := f.js.Consumer(ctx, worker.StreamRequests, worker.ConsumerName)
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
