package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
)

func TestDecodeBulkRequest(t *testing.T) {
	t.Parallel()
	r, err := events.DecodeBulkRequest([]byte(`{"bulkId":"b-7","instanceId":"acme-prod",
		"filter":{"states":["QUEUED","ON_HOLD"],"queueIds":["billing"],"channels":["VOICE"],"enqueuedBefore":"2026-11-20T10:00:00Z"},
		"disconnectReason":"EMERGENCY","unknown":1}`))
	require.NoError(t, err)
	require.Equal(t, "b-7", r.BulkID)
	require.Equal(t, []string{"QUEUED", "ON_HOLD"}, r.Filter.EffectiveStates())
	require.Equal(t, []string{"billing"}, r.Filter.QueueIDs)
	require.Equal(t, time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), r.Filter.EnqueuedBefore.UTC())
	require.Equal(t, "EMERGENCY", r.DisconnectReason)

	r, err = events.DecodeBulkRequest([]byte(`{"instanceId":"acme","filter":null}`))
	require.NoError(t, err)
	require.Equal(t, events.DefaultBulkStates, r.Filter.EffectiveStates(), "states default to QUEUED")
	require.Empty(t, r.BulkID)
}

func TestDecodeBulkRequestInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 129)
	cases := []struct {
		name, body string
		code       events.ReasonCode
		field      string
	}{
		{"empty", ``, events.ReasonInvalidRequest, ""},
		{"array", `[]`, events.ReasonInvalidRequest, ""},
		{"not json", `{"instanceId":`, events.ReasonInvalidRequest, ""},
		{"trailing", `{"instanceId":"acme"} {}`, events.ReasonInvalidRequest, ""},
		{"binary", "{\"instanceId\":\"a\xff\"}", events.ReasonInvalidRequest, ""},
		{"too large", `{"instanceId":"acme","x":"` + strings.Repeat("x", 70<<10) + `"}`, events.ReasonInvalidRequest, ""},
		{"states not a list", `{"instanceId":"acme","filter":{"states":"QUEUED"}}`, events.ReasonInvalidRequest, "filter.states"},
		{"filter not an object", `{"instanceId":"acme","filter":[]}`, events.ReasonInvalidRequest, "filter"},
		{"bulkId a number", `{"instanceId":"acme","bulkId":7}`, events.ReasonInvalidRequest, "bulkId"},
		{"no instance", `{"bulkId":"b"}`, events.ReasonInvalidParameter, "instanceId"},
		{"bad instance", `{"instanceId":"ac.me"}`, events.ReasonInvalidParameter, "instanceId"},
		{"bulkId too long", `{"instanceId":"acme","bulkId":"` + long + `"}`, events.ReasonInvalidParameter, "bulkId"},
		{"emergency bulkId", `{"instanceId":"acme","bulkId":"emergency-alarm-1"}`, events.ReasonInvalidParameter, "bulkId"},
		{"unknown state", `{"instanceId":"acme","filter":{"states":["WAITING"]}}`, events.ReasonInvalidParameter, "filter.states"},
		{"ended state", `{"instanceId":"acme","filter":{"states":["ENDED"]}}`, events.ReasonInvalidParameter, "filter.states"},
		{"empty states", `{"instanceId":"acme","filter":{"states":[]}}`, events.ReasonInvalidParameter, "filter.states"},
		{"lower-case channel", `{"instanceId":"acme","filter":{"channels":["voice"]}}`, events.ReasonInvalidParameter, "filter.channels"},
		{"empty queue id", `{"instanceId":"acme","filter":{"queueIds":[""]}}`, events.ReasonInvalidParameter, "filter.queueIds"},
		{"bad time", `{"instanceId":"acme","filter":{"enqueuedBefore":"yesterday"}}`, events.ReasonInvalidParameter, "filter.enqueuedBefore"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.DecodeBulkRequest([]byte(c.body))
			var ve *events.ValidationError
			require.True(t, errors.As(err, &ve), "got %v", err)
			require.Equal(t, c.code, ve.Code, ve.Error())
			require.Equal(t, c.field, ve.Field, ve.Error())
		})
	}
}

func TestBulkRequestCheckSubject(t *testing.T) {
	t.Parallel()
	r := events.BulkRequest{InstanceID: "acme"}
	require.NoError(t, r.CheckSubject(events.SubjectBulkRequested), "the bare subject names no instance")
	require.NoError(t, r.CheckSubject(events.BulkRequestedSubject("acme")))
	for _, subject := range []string{
		events.BulkRequestedSubject("globex"), // another instance's
		"contact.stop.bulk.requested.acme.x",  // not an instance ID
		"contact.stop.bulk.requested.",
	} {
		err := r.CheckSubject(subject)
		var ve *events.ValidationError
		require.True(t, errors.As(err, &ve), "%s: got %v", subject, err)
		require.Equal(t, events.ReasonInvalidParameter, ve.Code)
		require.Equal(t, "instanceId", ve.Field)
	}
	inst, ok := events.BulkSubjectInstance("contact.stop.bulk.requested.acme")
	require.True(t, ok)
	require.Equal(t, "acme", inst)
	for _, subject := range []string{events.SubjectBulkRequested, "contact.stop.bulk.requestedX", "contact.stop.requested.acme"} {
		_, ok := events.BulkSubjectInstance(subject)
		require.False(t, ok, subject)
	}
}

func TestDecodeEmergencyBroadcast(t *testing.T) {
	t.Parallel()
	b, err := events.DecodeEmergencyBroadcast(nil)
	require.NoError(t, err, "an empty broadcast clears every queue")
	require.Nil(t, b.QueueIDs)
	b, err = events.DecodeEmergencyBroadcast([]byte(`{"queueIds":["q1","q2"],"message":"fire alarm"}`))
	require.NoError(t, err)
	require.Equal(t, []string{"q1", "q2"}, b.QueueIDs)
	_, err = events.DecodeEmergencyBroadcast([]byte(`{"queueIds":"q1"}`))
	require.Error(t, err)
	_, err = events.DecodeEmergencyBroadcast([]byte(`{"queueIds":[]}`))
	require.Error(t, err)

	inst, ok := events.EmergencyInstance("emergency.broadcast.acme-prod")
	require.True(t, ok)
	require.Equal(t, "acme-prod", inst)
	_, ok = events.EmergencyInstance("emergency.broadcast.a.b")
	require.False(t, ok)
}

func TestBulkIDs(t *testing.T) {
	t.Parallel()
	require.Equal(t, "b-7/c 1", events.BulkItemRequestID("b-7", "c 1"))
	require.Equal(t, "contact.stop.bulk.completed.acme", events.BulkCompletedSubject("acme"))
	require.Equal(t, events.BulkCompletedMsgID("acme", "b"), events.BulkCompletedMsgID("acme", "b"))
	require.NotEqual(t, events.BulkCompletedMsgID("acme", "b"), events.BulkCompletedMsgID("acme-b", ""))
	require.NotEqual(t, events.BulkCompletedMsgID("acme", "b"), events.BulkCompletedMsgID("other", "b"))
}

func TestPublisherBulk(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "BULK", Subjects: []string{events.SubjectBulkRequested, events.SubjectBulkRequested + ".>"}, Duplicates: time.Minute,
	})
	require.NoError(t, err)
	p := events.NewPublisher(js)

	req := events.BulkRequest{BulkID: "b-1", InstanceID: "acme", Filter: events.BulkFilter{QueueIDs: []string{"q1"}}}
	rc, err := p.Bulk(t.Context(), req, events.WithCorrelationID("x"))
	require.NoError(t, err)
	require.False(t, rc.Duplicate)
	rc, err = p.Bulk(t.Context(), req)
	require.NoError(t, err)
	require.True(t, rc.Duplicate, "the same bulk request is stored once")

	msg, err := stream.GetMsg(t.Context(), rc.Sequence)
	require.NoError(t, err)
	require.Equal(t, "contact.stop.bulk.requested.acme", msg.Subject, "published on the instance's subject")
	require.Equal(t, events.BulkMsgID("acme", "b-1"), msg.Header.Get(events.HeaderMsgID))
	require.Equal(t, "x", msg.Header.Get(events.HeaderCorrelationID))
	got, err := events.DecodeBulkRequest(msg.Data)
	require.NoError(t, err)
	require.Equal(t, req.Filter.QueueIDs, got.Filter.QueueIDs)

	rc, err = p.Bulk(t.Context(), events.BulkRequest{InstanceID: "acme"})
	require.NoError(t, err)
	require.NotEmpty(t, rc.RequestID, "a bulkId is generated")

	_, err = p.Bulk(t.Context(), events.BulkRequest{InstanceID: "acme", Filter: events.BulkFilter{States: []string{"ENDED"}}})
	var ve *events.ValidationError
	require.True(t, errors.As(err, &ve))
}
