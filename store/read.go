package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of the batched operations.
const (
	// batchReadSubjects is how many subjects one batched read asks for
	// (the server answers at most 1024 messages per request).
	batchReadSubjects = 256
	// opTimeout bounds one batched read or write, and the wait for each
	// write's acknowledgement, when the context has no earlier deadline.
	opTimeout = 5 * time.Second
)

// OpTimeout is how long one store operation of the worker's hot path waits
// for the server at most; callers size their own deadlines with it.
const OpTimeout = opTimeout

// bucket names the stream behind a KV bucket.
type bucket struct {
	stream string // "KV_<bucket>"
	prefix string // "$KV.<bucket>."
	// replicated: the stream has followers, which may answer a direct get
	// before they have applied the latest writes.
	replicated bool
}

// entry is the latest message of one key.
type entry struct {
	data []byte
	rev  uint64 // its stream sequence
	// deleted: a delete or purge marker, or a server's marker (TTL,
	// MaxAge): the key has no value.
	deleted bool
}

// latest reads the latest message of each key in b. Keys that never had a
// message are absent from the result. A consistent read reflects every
// write acknowledged before it was sent: on a replicated bucket each key is
// then read from the stream's leader (one request per key, all sent at
// once); otherwise, and for every read of a single-replica bucket, by
// direct gets of the last message of up to 256 subjects each, all sent at
// once, which any replica may answer.
func (s *KV) latest(ctx context.Context, b bucket, keys []string, consistent bool) (map[string]entry, error) {
	found := make(map[string]entry, len(keys))
	if len(keys) == 0 {
		return found, nil
	}
	if consistent && b.replicated {
		return found, s.leaderGets(ctx, b, keys, found)
	}
	// Every chunk's request is sent before any answer is awaited: one round
	// trip however many keys.
	var reads []*multiLastRead
	defer func() {
		for _, r := range reads {
			r.release()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for chunk := range slices.Chunk(keys, batchReadSubjects) {
		r, err := s.sendMultiLast(b, chunk)
		if err != nil {
			return nil, err
		}
		reads = append(reads, r)
	}
	for _, r := range reads {
		if err := r.collect(ctx, b, found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// multiLastRead is one direct-get request for the last message of many
// subjects, sent, its answers to collect.
type multiLastRead struct {
	answers <-chan *nats.Msg
	release func()
}

// sendMultiLast asks the stream for the last message of each key's subject
// in one direct-get request. The server reads them at one point of the
// stream (no write interleaves) and sends one message per subject that has
// one, then an end-of-batch status (204), or only a 404 when none has.
func (s *KV) sendMultiLast(b bucket, keys []string) (*multiLastRead, error) {
	// {"multi_last":["<prefix><key>",…]}: keys are KV keys, which need no
	// escaping in JSON.
	n := len(`{"multi_last":[]}`)
	for _, k := range keys {
		n += len(b.prefix) + len(k) + 3
	}
	body := make([]byte, 0, n)
	body = append(body, `{"multi_last":[`...)
	for i, k := range keys {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(append(append(append(body, '"'), b.prefix...), k...), '"')
	}
	body = append(body, "]}"...)
	// At most one answer per key and the end-of-batch status.
	inbox, answers, release, err := s.replies.Open(len(keys) + 1)
	if err != nil {
		return nil, fmt.Errorf("batched read: %w", err)
	}
	if err := s.js.Conn().PublishRequest("$JS.API.DIRECT.GET."+b.stream, inbox, body); err != nil {
		release()
		return nil, fmt.Errorf("batched read: %w", err)
	}
	return &multiLastRead{answers: answers, release: release}, nil
}

// collect adds the request's answers to found.
func (r *multiLastRead) collect(ctx context.Context, b bucket, found map[string]entry) error {
	for {
		var msg *nats.Msg
		select {
		case msg = <-r.answers:
		case <-ctx.Done():
			return fmt.Errorf("batched read: %w", ctx.Err())
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			subject := msg.Header.Get(jetstream.SubjectHeader)
			key, ok := strings.CutPrefix(subject, b.prefix)
			rev, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("batched read: unexpected answer for subject %q, sequence %q",
					subject, msg.Header.Get(jetstream.SequenceHeader))
			}
			found[key] = entry{data: msg.Data, rev: rev, deleted: isMarker(msg.Header)}
		case "204", "404": // end of batch; nothing found
			return nil
		default:
			return fmt.Errorf("batched read: server answered %s %s", status, msg.Header.Get("Description"))
		}
	}
}

// leaderGets reads the last message of each key with the stream's
// message-get API, which only the stream's leader answers.
func (s *KV) leaderGets(ctx context.Context, b bucket, keys []string, found map[string]entry) error {
	msgs := make([]*nats.Msg, len(keys))
	for i, k := range keys {
		body, err := json.Marshal(struct {
			LastBySubject string `json:"last_by_subj"`
		}{b.prefix + k})
		if err != nil {
			return err
		}
		msgs[i] = &nats.Msg{Subject: "$JS.API.STREAM.MSG.GET." + b.stream, Data: body}
	}
	replies, errs := s.pub.Request(ctx, msgs, opTimeout)
	for i, k := range keys {
		if errs[i] != nil {
			return fmt.Errorf("read %s from the leader: %w", k, errs[i])
		}
		var resp struct {
			Error   *jetstream.APIError `json:"error"`
			Message *struct {
				Sequence uint64 `json:"seq"`
				Header   []byte `json:"hdrs"`
				Data     []byte `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(replies[i].Data, &resp); err != nil {
			return fmt.Errorf("read %s from the leader: %w", k, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
			continue
		case resp.Error != nil:
			return fmt.Errorf("read %s from the leader: %w", k, resp.Error)
		case resp.Message == nil:
			return fmt.Errorf("read %s from the leader: empty answer", k)
		}
		var h nats.Header
		if len(resp.Message.Header) > 0 {
			var err error
			if h, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
				return fmt.Errorf("read %s from the leader: headers: %w", k, err)
			}
		}
		found[k] = entry{data: resp.Message.Data, rev: resp.Message.Sequence, deleted: isMarker(h)}
	}
	return nil
}

// isMarker reports whether a message with these headers marks a deleted or
// purged key, whether by KV Delete/Purge or by a server marker (TTL,
// MaxAge).
func isMarker(h nats.Header) bool {
	if len(h) == 0 {
		return false
	}
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}
