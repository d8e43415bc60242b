// Package nats_test proves the rules of accounts.conf, the NATS server
// configuration in this folder, by loading that very file into an
// in-process nats-server.
package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// The development passwords of accounts.conf (see README.md).
var passwords = map[string]string{
	"worker":           "worker-dev-password",
	"admin":            "admin-dev-password",
	"acme-publisher":   "acme-dev-password",
	"globex-publisher": "globex-dev-password",
	"alerting":         "alerting-dev-password",
	"sys":              "sys-dev-password",
}

// startServer starts accounts.conf in-process on a random loopback port,
// with JetStream in a temporary directory.
func startServer(t *testing.T) string {
	t.Helper()
	opts, err := server.ProcessConfigFile("accounts.conf")
	require.NoError(t, err)
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	// The server pings a client 2 s after it connects; under the race
	// detector, with tests in parallel, a bcrypt check can take that long,
	// and nats.go's handshake then fails ("expected PONG, got PING").
	opts.DisableShortFirstPing = true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	return srv.ClientURL()
}

// conn is one user's connection; errs receives the server's asynchronous
// errors, such as permission violations.
type conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connect(t *testing.T, url, user string) *conn {
	t.Helper()
	errs := make(chan error, 16)
	nc, err := nats.Connect(url,
		nats.UserInfo(user, passwords[user]),
		nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}),
	)
	require.NoError(t, err, "connect as %s", user)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &conn{nc: nc, js: js, errs: errs}
}

// requireViolation waits for the server to report a permissions violation
// naming the subject.
func (c *conn) requireViolation(t *testing.T, subject string) {
	t.Helper()
	select {
	case err := <-c.errs:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
		require.ErrorContains(t, err, subject)
	case <-time.After(5 * time.Second):
		t.Fatalf("no permissions violation reported for %s", subject)
	}
}

// count is the number of messages stored in a stream on a subject.
func count(t *testing.T, ctx context.Context, js jetstream.JetStream, stream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	return info.State.Subjects[subject]
}

func TestAccountsConf(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url := startServer(t)

	// The worker provisions everything with its own user, and uses the store.
	w := connect(t, url, "worker")
	require.NoError(t, worker.Provision(ctx, w.js, worker.TopologyConfig{}))
	st, err := store.Open(ctx, w.js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	for _, id := range []string{"c1", "c2"} {
		_, err = st.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: id, State: store.StateQueued, Channel: store.ChannelVoice})
		require.NoError(t, err)
	}
	before, err := st.GetContact(ctx, "acme", "c1")
	require.NoError(t, err)

	// A tenant's publisher and a watcher of its results.
	acme := connect(t, url, "acme-publisher")
	results, err := acme.nc.SubscribeSync(events.StoppedSubject("acme"))
	require.NoError(t, err)
	require.NoError(t, acme.nc.Flush())

	t.Run("publisher publishes requests for its instance and gets the JetStream ack", func(t *testing.T) {
		body, err := json.Marshal(events.StopRequest{RequestID: "r-1", ContactID: "c2", InstanceID: "acme"})
		require.NoError(t, err)
		ack, err := acme.js.Publish(ctx, events.StopRequestedSubject("acme"), body)
		require.NoError(t, err)
		require.Equal(t, events.StreamRequests, ack.Stream)
		bulk, err := acme.js.Publish(ctx, events.BulkRequestedSubject("acme"), []byte(`{"bulkId":"b-1","instanceId":"acme"}`))
		require.NoError(t, err)
		require.Equal(t, events.StreamBulk, bulk.Stream)
	})

	t.Run("worker pulls, stops, acknowledges and publishes the result", func(t *testing.T) {
		cons, err := w.js.Consumer(ctx, events.StreamRequests, events.ConsumerRequests)
		require.NoError(t, err)
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		req, err := events.DecodeStopRequest(msg.Data())
		require.NoError(t, err)
		// The worker's reads and writes: a batched read of the contact and
		// the request's outcome, a read from the stream's leader, the
		// compare-and-set, and an outcome record.
		key := store.RequestKey{InstanceID: req.InstanceID, ContactID: req.ContactID, RequestID: req.RequestID}
		views, err := st.Views(ctx, store.ViewParams{Keys: []store.RequestKey{key}})
		require.NoError(t, err)
		require.NotNil(t, views[0].Contact)
		_, err = st.Views(ctx, store.ViewParams{Keys: []store.RequestKey{key}, Consistent: true})
		require.NoError(t, err)
		ends := st.EndContacts(ctx, []store.EndContactParams{{Contact: *views[0].Contact, RequestID: req.RequestID}})
		require.NoError(t, ends[0].Err)
		other := store.RequestKey{InstanceID: "acme", ContactID: "absent", RequestID: "r-other"}
		rec := st.RecordFailures(ctx, []store.RecordFailureParams{{Key: other, DependsOnContact: true,
			Failure: store.Outcome{ReasonCode: string(events.ReasonContactNotFound), Message: "contact does not exist"}}})
		require.NoError(t, rec[0].Err)
		stopped, err := json.Marshal(events.Stopped{RequestID: req.RequestID, ContactID: req.ContactID, InstanceID: req.InstanceID, PreviousState: string(ends[0].Contact.PreviousState), StoppedAt: time.Now().UTC()})
		require.NoError(t, err)
		ack, err := w.js.Publish(ctx, events.StoppedSubject("acme"), stopped)
		require.NoError(t, err)
		require.Equal(t, events.StreamResults, ack.Stream)
		require.NoError(t, msg.DoubleAck(ctx))
		_, err = w.js.Publish(ctx, events.StopFailedSubject("acme"), []byte(`{}`))
		require.NoError(t, err)
		_, err = w.js.Publish(ctx, events.SubjectStopFailed, []byte(`{}`))
		require.NoError(t, err)

		// The tenant sees its own result, live.
		got, err := results.NextMsg(5 * time.Second)
		require.NoError(t, err)
		require.JSONEq(t, string(stopped), string(got.Data))
	})

	t.Run("publisher cannot forge a result", func(t *testing.T) {
		fake := []byte(`{"requestId":"fake","contactId":"c1","instanceId":"acme"}`)
		require.NoError(t, acme.nc.Publish(events.StoppedSubject("acme"), fake))
		acme.requireViolation(t, events.StoppedSubject("acme"))
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := acme.js.Publish(short, events.StoppedSubject("acme"), fake)
		require.Error(t, err, "no acknowledgement for a forged result")
		acme.requireViolation(t, events.StoppedSubject("acme"))
		require.EqualValues(t, 1, count(t, ctx, w.js, events.StreamResults, events.StoppedSubject("acme")), "only the worker's result is stored")
	})

	t.Run("publisher cannot write the contacts bucket", func(t *testing.T) {
		subject := "$KV.contactstop-contacts." + store.ContactKey("acme", "c1")
		ended := []byte(`{"contactId":"c1","instanceId":"acme","state":"ENDED","channel":"VOICE"}`)
		require.NoError(t, acme.nc.Publish(subject, ended))
		acme.requireViolation(t, subject)
		require.NoError(t, acme.nc.Publish("$JS.API.STREAM.INFO.KV_contactstop-contacts", nil))
		acme.requireViolation(t, "$JS.API.STREAM.INFO")
		after, err := st.GetContact(ctx, "acme", "c1")
		require.NoError(t, err)
		require.Equal(t, before, after, "the contact is untouched")
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = acme.js.Stream(short, events.StreamRequests)
		require.Error(t, err, "no JetStream API for tenants")
		acme.requireViolation(t, "$JS.API.STREAM.INFO."+events.StreamRequests)
	})

	t.Run("publisher cannot publish for another instance", func(t *testing.T) {
		for _, subject := range []string{events.StopRequestedSubject("globex"), events.SubjectStopRequested, "emergency.broadcast.acme"} {
			require.NoError(t, acme.nc.Publish(subject, []byte(`{"contactId":"c1","instanceId":"globex"}`)))
			acme.requireViolation(t, subject)
		}
		globex := connect(t, url, "globex-publisher")
		require.NoError(t, globex.nc.Publish(events.StopRequestedSubject("acme"), []byte(`{"contactId":"c1","instanceId":"acme"}`)))
		globex.requireViolation(t, events.StopRequestedSubject("acme"))
		require.NoError(t, globex.nc.Flush())
		require.Zero(t, count(t, ctx, w.js, events.StreamRequests, events.StopRequestedSubject("globex")))
		require.Zero(t, count(t, ctx, w.js, events.StreamRequests, events.SubjectStopRequested))
		require.EqualValues(t, 1, count(t, ctx, w.js, events.StreamRequests, events.StopRequestedSubject("acme")), "only acme's own request")

		// Nor read another tenant's results.
		_, err := acme.nc.SubscribeSync(events.StoppedSubject("globex"))
		require.NoError(t, err)
		acme.requireViolation(t, events.StoppedSubject("globex"))
	})

	t.Run("alerting may only announce emergencies", func(t *testing.T) {
		a := connect(t, url, "alerting")
		sub, err := w.nc.SubscribeSync("emergency.broadcast.>")
		require.NoError(t, err)
		require.NoError(t, w.nc.Flush())
		require.NoError(t, a.nc.Publish("emergency.broadcast.acme", []byte(`{"message":"fire"}`)))
		got, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, "emergency.broadcast.acme", got.Subject)
		require.NoError(t, a.nc.Publish(events.StopRequestedSubject("acme"), []byte(`{}`)))
		a.requireViolation(t, events.StopRequestedSubject("acme"))
	})

	t.Run("every user of the file can log in; strangers cannot", func(t *testing.T) {
		for user := range passwords {
			connect(t, url, user)
		}
		_, err := nats.Connect(url, nats.UserInfo("worker", "wrong"))
		require.True(t, errors.Is(err, nats.ErrAuthorization), "got %v", err)
		_, err = nats.Connect(url)
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})
}

// TestAccountsConfWorker runs the real worker under the worker user of
// accounts.conf, with tenants and the alerting system in their own
// accounts: a single stop, a bulk clear and an emergency broadcast all
// complete, so the worker's permissions cover everything it does.
func TestAccountsConfWorker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	url := startServer(t)

	wc := connect(t, url, "worker")
	require.NoError(t, worker.Provision(ctx, wc.js, worker.TopologyConfig{Emergency: true}))
	st, err := store.Open(ctx, wc.js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: "acme"})
	require.NoError(t, err)
	queues := map[string]string{"c1": "q1", "c2": "q2", "c3": "q2", "c4": "q3", "c5": "q3"}
	for id, q := range queues {
		_, err = st.PutContact(ctx, store.Contact{InstanceID: "acme", ContactID: id, State: store.StateQueued, QueueID: q, Channel: store.ChannelVoice, EnqueuedAt: time.Now().Add(-time.Minute)})
		require.NoError(t, err)
	}
	w, err := worker.New(wc.js, st, worker.Config{Workers: 4, Bulks: 1, BulkWorkers: 4, Emergency: true})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(stopCtx))
	})

	acme := connect(t, url, "acme-publisher")
	stopped, err := acme.nc.SubscribeSync(events.StoppedSubject("acme"))
	require.NoError(t, err)
	completed, err := acme.nc.SubscribeSync(events.SubjectBulkCompleted + ".acme")
	require.NoError(t, err)
	require.NoError(t, acme.nc.Flush())

	// One contact.
	body, err := json.Marshal(events.StopRequest{RequestID: "r-1", ContactID: "c1", InstanceID: "acme"})
	require.NoError(t, err)
	_, err = acme.js.Publish(ctx, events.StopRequestedSubject("acme"), body)
	require.NoError(t, err)
	msg, err := stopped.NextMsg(30 * time.Second)
	require.NoError(t, err)
	var s events.Stopped
	require.NoError(t, json.Unmarshal(msg.Data, &s))
	require.Equal(t, "c1", s.ContactID)

	// A bulk clear of queue q2.
	_, err = acme.js.Publish(ctx, events.BulkRequestedSubject("acme"), []byte(`{"bulkId":"b-1","instanceId":"acme","filter":{"queueIds":["q2"]}}`))
	require.NoError(t, err)
	msg, err = completed.NextMsg(30 * time.Second)
	require.NoError(t, err)
	var done events.BulkCompleted
	require.NoError(t, json.Unmarshal(msg.Data, &done))
	require.Equal(t, "b-1", done.BulkID)
	require.Equal(t, 2, done.Stopped)

	// An emergency in queue q3, announced by the alerting system.
	alerting := connect(t, url, "alerting")
	_, err = alerting.js.Publish(ctx, events.SubjectEmergencyBroadcast+".acme", []byte(`{"queueIds":["q3"],"message":"fire"}`))
	require.NoError(t, err)
	msg, err = completed.NextMsg(30 * time.Second)
	require.NoError(t, err)
	done = events.BulkCompleted{}
	require.NoError(t, json.Unmarshal(msg.Data, &done))
	require.Equal(t, 2, done.Stopped)

	for id := range queues {
		c, err := st.GetContact(ctx, "acme", id)
		require.NoError(t, err)
		require.Equal(t, store.StateEnded, c.State, id)
	}
	select {
	case err := <-wc.errs:
		t.Fatalf("the worker hit %v", err)
	default:
	}
}
