package jspub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/jspub"
	"github.com/contactstop/contactstop/internal/natstest"
)

func setup(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Start(t).JetStream(t)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Duplicates: time.Minute})
	require.NoError(t, err)
	return nc, js
}

func TestPublish(t *testing.T) {
	t.Parallel()
	nc, js := setup(t)
	p := jspub.New(nc)

	msgs := make([]*nats.Msg, 300)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: fmt.Sprintf("s.%d", i), Data: []byte("x"), Header: nats.Header{}}
		msgs[i].Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("id-%d", i))
	}
	seqs := map[uint64]bool{}
	for i, ack := range p.Publish(t.Context(), msgs, 5*time.Second) {
		require.NoError(t, ack.Err, i)
		require.False(t, ack.Duplicate)
		seqs[ack.Sequence] = true
	}
	require.Len(t, seqs, 300, "one sequence per message")

	// Again: every one is a duplicate, with the first one's sequence.
	again := p.Publish(t.Context(), msgs[:3], 5*time.Second)
	for _, ack := range again {
		require.NoError(t, ack.Err)
		require.True(t, ack.Duplicate)
	}
	info, err := js.Stream(t.Context(), "S")
	require.NoError(t, err)
	require.EqualValues(t, 300, info.CachedInfo().State.Msgs)
	require.Empty(t, p.Publish(t.Context(), nil, time.Second))
}

// TestRefusals sees each kind of failure reported for its own message,
// the others of the batch unaffected.
func TestRefusals(t *testing.T) {
	t.Parallel()
	nc, _ := setup(t)
	p := jspub.New(nc)

	wrongSeq := &nats.Msg{Subject: "s.cas", Data: []byte("x"), Header: nats.Header{}}
	wrongSeq.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "42")
	acks := p.Publish(t.Context(), []*nats.Msg{
		{Subject: "s.ok", Data: []byte("x")},
		wrongSeq,
		{Subject: "nostream.x", Data: []byte("x")},
	}, 5*time.Second)
	require.NoError(t, acks[0].Err)
	var apiErr *jetstream.APIError
	require.ErrorAs(t, acks[1].Err, &apiErr)
	require.Equal(t, jetstream.JSErrCodeStreamWrongLastSequence, apiErr.ErrorCode)
	require.ErrorIs(t, acks[2].Err, nats.ErrNoResponders)
}

func TestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	nc, _ := setup(t)
	p := jspub.New(nc)
	// A core subscriber that never answers: no acknowledgement comes.
	sub, err := nc.Subscribe("silent", func(*nats.Msg) {})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	acks := p.Publish(t.Context(), []*nats.Msg{{Subject: "s.ok"}, {Subject: "silent"}}, 200*time.Millisecond)
	require.NoError(t, acks[0].Err)
	require.ErrorIs(t, acks[1].Err, jspub.ErrTimeout)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	acks = p.Publish(ctx, []*nats.Msg{{Subject: "silent"}}, time.Minute)
	require.ErrorIs(t, acks[0].Err, context.Canceled)

	nc.Close()
	acks = p.Publish(t.Context(), []*nats.Msg{{Subject: "s.ok"}}, time.Second)
	require.True(t, errors.Is(acks[0].Err, nats.ErrConnectionClosed), acks[0].Err)
}

// TestConcurrentBatches keeps many batches in flight on one Publisher:
// every acknowledgement reaches its own batch.
func TestConcurrentBatches(t *testing.T) {
	t.Parallel()
	nc, _ := setup(t)
	p := jspub.New(nc)
	var wg sync.WaitGroup
	for b := range 8 {
		wg.Go(func() {
			for round := range 10 {
				msgs := make([]*nats.Msg, 50)
				for i := range msgs {
					msgs[i] = &nats.Msg{Subject: fmt.Sprintf("s.%d.%d.%d", b, round, i), Data: []byte("x"), Header: nats.Header{}}
					// Every message on its own subject, expected to be the
					// first there: an acknowledgement routed to the wrong
					// message would not show, but one routed to the wrong
					// batch would leave this batch waiting.
					msgs[i].Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
				}
				for i, ack := range p.Publish(t.Context(), msgs, 10*time.Second) {
					if ack.Err != nil || ack.Sequence == 0 {
						t.Errorf("batch %d round %d message %d: %+v", b, round, i, ack)
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestParseAck reads acknowledgements as the server writes them, and
// variations it might.
func TestParseAck(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]jspub.Ack{
		`{"stream":"S","seq":7}`:                               {Sequence: 7},
		`{"stream":"S","domain":"hub","seq":8}`:                {Sequence: 8},
		`{"stream":"S","seq":9,"duplicate": true}`:             {Sequence: 9, Duplicate: true},
		`{"stream":"S", "seq" : 10, "duplicate":false}`:        {Sequence: 10},
		`{"stream":"S","seq":11,"duplicate":true,"batch":"b"}`: {Sequence: 11, Duplicate: true},
	} {
		require.Equal(t, want, jspub.ParseAck(&nats.Msg{Data: []byte(body)}), body)
	}
	for _, body := range []string{`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"},"stream":"S","seq":0}`, `not json`, `{"stream":"S"}`} {
		require.Error(t, jspub.ParseAck(&nats.Msg{Data: []byte(body)}).Err, body)
	}
}

// TestReplies routes the replies of concurrent requests, each to its own
// channel, through one subscription.
func TestReplies(t *testing.T) {
	t.Parallel()
	nc, _ := setup(t)
	echo, err := nc.Subscribe("echo", func(m *nats.Msg) {
		for range 3 { // three replies to every request
			_ = m.Respond(m.Data)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = echo.Unsubscribe() })
	r := jspub.NewReplies(nc)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			subject, replies, release, err := r.Open(2)
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			body := fmt.Sprint(i)
			if err := nc.PublishRequest("echo", subject, []byte(body)); err != nil {
				t.Error(err)
				return
			}
			for range 2 {
				select {
				case m := <-replies:
					if string(m.Data) != body {
						t.Errorf("request %d got %q", i, m.Data)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("request %d: no reply", i)
					return
				}
			}
		})
	}
	wg.Wait()
}
