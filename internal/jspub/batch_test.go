package jspub_test

import (
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

// batchStream starts a server with stream B (subjects b.>) allowing fast
// batches, and a tap counting the acknowledgements the server sends.
func batchStream(t *testing.T, allow bool, maxMsgSize int32) (*nats.Conn, jetstream.Stream) {
	t.Helper()
	nc, js := natstest.Start(t).JetStream(t)
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"},
		Duplicates: time.Minute, AllowBatchPublish: allow, MaxMsgSize: maxMsgSize})
	require.NoError(t, err)
	return nc, st
}

func batchMsgs(n int, prefix string) []*nats.Msg {
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: fmt.Sprintf("b.%s.%d", prefix, i), Data: []byte("x"), Header: nats.Header{}}
		msgs[i].Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", prefix, i))
	}
	return msgs
}

func storedMsgs(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

// TestPublishBatch stores a batch with one answer from the server for the
// batch, not one per message, and keeps the stream's duplicate window.
func TestPublishBatch(t *testing.T) {
	t.Parallel()
	nc, st := batchStream(t, true, 0)
	p := jspub.New(nc)
	// Every answer the server sends this connection's batches.
	var answers sync.Map
	tap, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) { answers.Store(m.Subject, true) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tap.Unsubscribe() })

	msgs := batchMsgs(100, "a")
	for i, ack := range p.PublishBatch(t.Context(), msgs, 5*time.Second) {
		require.NoError(t, ack.Err, i)
	}
	require.EqualValues(t, 100, storedMsgs(t, st))
	require.NoError(t, nc.Flush())
	n := 0
	answers.Range(func(any, any) bool { n++; return true })
	require.LessOrEqual(t, n, 3, "a batch is answered once (and its flow control at most twice), not per message")
	require.Zero(t, p.BatchesCut())

	// Half of them again, with new ones: the duplicates are skipped.
	again := append(batchMsgs(100, "a")[50:], batchMsgs(20, "b")...)
	for i, ack := range p.PublishBatch(t.Context(), again, 5*time.Second) {
		require.NoError(t, ack.Err, i)
	}
	require.EqualValues(t, 120, storedMsgs(t, st))
	require.Zero(t, p.BatchesCut())

	// Fewer than eight go out alone, each answered with its sequence.
	for i, ack := range p.PublishBatch(t.Context(), batchMsgs(7, "s"), 5*time.Second) {
		require.NoError(t, ack.Err, i)
		require.NotZero(t, ack.Sequence, i)
	}
}

// TestPublishBatchCut: a message the stream refuses is answered alone,
// and its batch is published again alone: each message gets its own
// answer, and the duplicate window keeps those the batch stored from
// being stored twice.
func TestPublishBatchCut(t *testing.T) {
	t.Parallel()
	nc, st := batchStream(t, true, 64)
	p := jspub.New(nc)
	msgs := batchMsgs(10, "c")
	msgs[4].Data = make([]byte, 100) // over the stream's 64-byte limit
	acks := p.PublishBatch(t.Context(), msgs, 5*time.Second)
	for i, ack := range acks {
		if i == 4 {
			var apiErr *jetstream.APIError
			require.ErrorAs(t, ack.Err, &apiErr)
			require.Equal(t, jetstream.ErrorCode(10054), apiErr.ErrorCode, "message too large")
			continue
		}
		require.NoError(t, ack.Err, i)
	}
	require.EqualValues(t, 9, storedMsgs(t, st), "each stored once")
	require.EqualValues(t, 1, p.BatchesCut())

	// A message refused does not turn batches off.
	for i, ack := range p.PublishBatch(t.Context(), batchMsgs(10, "d"), 5*time.Second) {
		require.NoError(t, ack.Err, i)
		require.Zero(t, ack.Sequence, "stored by its batch")
	}
	require.EqualValues(t, 19, storedMsgs(t, st))
	require.EqualValues(t, 1, p.BatchesCut())
}

// TestPublishBatchRefused: a stream that does not allow batches refuses
// the first message; every message is then published alone, and so are
// the next batches, for a while.
func TestPublishBatchRefused(t *testing.T) {
	t.Parallel()
	nc, st := batchStream(t, false, 0)
	p := jspub.New(nc)
	for round := range 2 {
		for i, ack := range p.PublishBatch(t.Context(), batchMsgs(30, fmt.Sprint("r", round)), 5*time.Second) {
			require.NoError(t, ack.Err, i)
			require.NotZero(t, ack.Sequence, "published alone")
		}
	}
	require.EqualValues(t, 60, storedMsgs(t, st))
	require.EqualValues(t, 1, p.BatchesCut(), "the second batch was not tried")
}

// TestPublishBatchConcurrent: batches of two publishers (two processes'
// workers) in flight on one stream at once keep apart.
func TestPublishBatchConcurrent(t *testing.T) {
	t.Parallel()
	nc, st := batchStream(t, true, 0)
	pubs := []*jspub.Publisher{jspub.New(nc), jspub.New(nc)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			p := pubs[g%2]
			for round := range 10 {
				for i, ack := range p.PublishBatch(t.Context(), batchMsgs(50, fmt.Sprintf("%d_%d", g, round)), 10*time.Second) {
					if ack.Err != nil {
						t.Errorf("publisher %d round %d message %d: %v", g, round, i, ack.Err)
					}
				}
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 8*10*50, storedMsgs(t, st))
	require.Zero(t, pubs[0].BatchesCut()+pubs[1].BatchesCut())
}

// TestPublishBatchInnerRefusal: a message the batch itself refuses (here a
// failed expected-sequence check) ends the batch; its answer confirms the
// messages before it, and the rest are published alone.
func TestPublishBatchInnerRefusal(t *testing.T) {
	t.Parallel()
	nc, st := batchStream(t, true, 0)
	p := jspub.New(nc)
	msgs := batchMsgs(10, "e")
	msgs[4].Header.Set(jetstream.ExpectedLastSubjSeqHeader, "42")
	acks := p.PublishBatch(t.Context(), msgs, 5*time.Second)
	for i, ack := range acks {
		switch {
		case i < 4:
			require.NoError(t, ack.Err, i)
			require.Zero(t, ack.Sequence, "stored by the batch")
		case i == 4:
			var apiErr *jetstream.APIError
			require.ErrorAs(t, ack.Err, &apiErr)
			require.Equal(t, jetstream.JSErrCodeStreamWrongLastSequence, apiErr.ErrorCode)
		default:
			require.NoError(t, ack.Err, i)
			require.NotZero(t, ack.Sequence, "published alone")
		}
	}
	require.EqualValues(t, 9, storedMsgs(t, st))
	require.EqualValues(t, 1, p.BatchesCut())
}
