package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/natstest"
)

const requestStream = "REQUESTS"

// setupPublisher starts a server with a stream capturing every request
// subject and returns a Publisher and the stream.
func setupPublisher(t *testing.T) (*events.Publisher, jetstream.Stream) {
	t.Helper()
	_, js := natstest.Start(t).JetStream(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:       requestStream,
		Subjects:   []string{events.SubjectStopRequested, events.SubjectStopRequested + ".>"},
		Duplicates: time.Minute,
	})
	require.NoError(t, err)
	return events.NewPublisher(js), stream
}

func streamMsgs(t *testing.T, stream jetstream.Stream) uint64 {
	t.Helper()
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

func TestPublisherStop(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	req := events.StopRequest{
		RequestID:        "r-42",
		ContactID:        "c/1 日本",
		InstanceID:       "acme-prod",
		DisconnectReason: "EMERGENCY",
		SecurityUser:     "token",
	}
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	receipt, err := pub.Stop(t.Context(), req,
		events.WithTraceparent(traceparent), events.WithCorrelationID("corr-7"))
	require.NoError(t, err)
	require.Equal(t, events.Receipt{RequestID: "r-42", Stream: requestStream, Sequence: 1}, receipt)

	msg, err := stream.GetMsg(t.Context(), receipt.Sequence)
	require.NoError(t, err)
	require.Equal(t, "contact.stop.requested.acme-prod", msg.Subject)
	require.Equal(t, "acme-prod:r-42", msg.Header.Get(events.HeaderMsgID))
	require.Equal(t, traceparent, msg.Header.Get(events.HeaderTraceparent))
	require.Equal(t, "corr-7", msg.Header.Get(events.HeaderCorrelationID))
	require.JSONEq(t,
		`{"requestId":"r-42","contactId":"c/1 日本","instanceId":"acme-prod","disconnectReason":"EMERGENCY","securityUser":"token"}`,
		string(msg.Data))

	// What the worker will see.
	got, err := events.DecodeStopRequest(msg.Data)
	require.NoError(t, err)
	require.Equal(t, req, got)
	require.NoError(t, got.CheckSubject(msg.Subject))
}

func TestPublisherStopWithoutOptionalHeaders(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	receipt, err := pub.Stop(t.Context(), events.StopRequest{RequestID: "r", ContactID: "c", InstanceID: "a"},
		events.WithTraceparent(""), events.WithCorrelationID(""))
	require.NoError(t, err)

	msg, err := stream.GetMsg(t.Context(), receipt.Sequence)
	require.NoError(t, err)
	require.Equal(t, "a:r", msg.Header.Get(events.HeaderMsgID))
	require.Empty(t, msg.Header.Values(events.HeaderTraceparent))
	require.Empty(t, msg.Header.Values(events.HeaderCorrelationID))
	require.JSONEq(t, `{"requestId":"r","contactId":"c","instanceId":"a"}`, string(msg.Data))
}

func TestPublisherStopTwiceIsDuplicate(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	req := events.StopRequest{RequestID: "r-1", ContactID: "c-1", InstanceID: "acme"}
	first, err := pub.Stop(t.Context(), req)
	require.NoError(t, err)
	require.False(t, first.Duplicate)

	second, err := pub.Stop(t.Context(), req)
	require.NoError(t, err)
	require.True(t, second.Duplicate)
	require.Equal(t, first.Sequence, second.Sequence)
	require.Equal(t, "r-1", second.RequestID)
	require.Equal(t, uint64(1), streamMsgs(t, stream))
}

func TestPublisherSameRequestIDInTwoInstances(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	a, err := pub.Stop(t.Context(), events.StopRequest{RequestID: "r-1", ContactID: "c-1", InstanceID: "acme"})
	require.NoError(t, err)
	b, err := pub.Stop(t.Context(), events.StopRequest{RequestID: "r-1", ContactID: "c-1", InstanceID: "globex"})
	require.NoError(t, err)
	require.False(t, a.Duplicate)
	require.False(t, b.Duplicate)
	require.Equal(t, uint64(2), streamMsgs(t, stream))
}

func TestPublisherStopGeneratesRequestID(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	req := events.StopRequest{ContactID: "c-1", InstanceID: "acme"}
	first, err := pub.Stop(t.Context(), req)
	require.NoError(t, err)
	second, err := pub.Stop(t.Context(), req)
	require.NoError(t, err)

	require.Len(t, first.RequestID, 22)
	require.NotEqual(t, first.RequestID, second.RequestID)
	require.False(t, second.Duplicate, "requests without an ID are distinct requests")
	require.Equal(t, uint64(2), streamMsgs(t, stream))

	msg, err := stream.GetMsg(t.Context(), first.Sequence)
	require.NoError(t, err)
	require.Equal(t, events.RequestMsgID("acme", first.RequestID), msg.Header.Get(events.HeaderMsgID))
	var body struct {
		RequestID string `json:"requestId"`
	}
	require.NoError(t, json.Unmarshal(msg.Data, &body))
	require.Equal(t, first.RequestID, body.RequestID)
}

func TestPublisherStopInvalid(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	tests := []struct {
		name      string
		req       events.StopRequest
		wantCode  events.ReasonCode
		wantField string
	}{
		{name: "zero request", req: events.StopRequest{}, wantCode: events.ReasonInvalidParameter, wantField: "instanceId"},
		{name: "instance with a dot", req: events.StopRequest{ContactID: "c", InstanceID: "acme.prod"}, wantCode: events.ReasonInvalidParameter, wantField: "instanceId"},
		{name: "instance wildcard", req: events.StopRequest{ContactID: "c", InstanceID: ">"}, wantCode: events.ReasonInvalidParameter, wantField: "instanceId"},
		{name: "no contact", req: events.StopRequest{InstanceID: "acme"}, wantCode: events.ReasonInvalidParameter, wantField: "contactId"},
		{name: "contact not UTF-8", req: events.StopRequest{ContactID: "\xff", InstanceID: "acme"}, wantCode: events.ReasonInvalidRequest, wantField: "contactId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			receipt, err := pub.Stop(t.Context(), tt.req)
			requireValidationError(t, err, tt.wantCode, tt.wantField)
			require.Equal(t, events.Receipt{}, receipt)
		})
	}
	require.Equal(t, uint64(0), streamMsgs(t, stream))
}

func TestPublisherStopWithoutStream(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := events.NewPublisher(js).Stop(ctx, events.StopRequest{ContactID: "c", InstanceID: "acme"})
	require.Error(t, err)
	require.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
	var ve *events.ValidationError
	require.False(t, errors.As(err, &ve))
}

func TestPublisherConcurrentUse(t *testing.T) {
	t.Parallel()
	pub, stream := setupPublisher(t)

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := pub.Stop(t.Context(), events.StopRequest{
				RequestID:  fmt.Sprintf("r-%d", i%25), // every ID twice
				ContactID:  fmt.Sprintf("c-%d", i%25),
				InstanceID: "acme",
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(25), streamMsgs(t, stream))
}
