package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// walkBatch is how many records one pull request asks for: the most a walk
// holds in memory at once.
const walkBatch = 256

// walkInactive is how long the server keeps a walk's consumer after the last
// pull, should the walk's process die before deleting it.
const walkInactive = 2 * time.Minute

// ListContacts calls fn for every contact of one instance, one at a time,
// in no particular order, and returns nil when all were seen. It streams:
// records are pulled in small batches, never all loaded at once. The server
// reads only the instance's keys ("<instanceId>.>" in the bucket), not the
// whole bucket. A contact written or ended while the walk runs may be seen in
// either version, or (if created during the walk) not at all.
//
// If fn returns an error the walk stops and ListContacts returns that error
// unwrapped. An invalid instanceId gives an error wrapping ErrInvalidContact;
// a record whose key or body is not a valid contact stops the walk with an
// unclassified error; a lost connection, a server restart or a timeout stops
// it with a wrapped transient error, and the caller may walk again.
func (s *KV) ListContacts(ctx context.Context, instanceID string, fn func(Contact) error) error {
	return s.WalkContacts(ctx, instanceID, nil, fn)
}

// WalkContacts is ListContacts with skip, which, when not nil, is asked
// about each contact by id before its record is decoded: true passes the
// contact over. A bulk run skips its own writes, which the walk delivers
// again, this way.
func (s *KV) WalkContacts(ctx context.Context, instanceID string, skip func(contactID string) bool, fn func(Contact) error) error {
	if err := validateInstanceID(instanceID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	var fnErr error
	err := s.walk(ctx, s.contactsStream, s.contactsPrefix, instanceID+".>", func(key string, data []byte, rev uint64) error {
		inst, id, err := ParseContactKey(key)
		if err != nil {
			return err
		}
		if skip != nil && skip(id) {
			return nil
		}
		c, err := decodeContact(inst, id, data, rev)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: list contacts of %s: %w", instanceID, err)
	}
	return nil
}

// walk calls fn with the key, value and revision of the latest value of
// every live key matching keyFilter in the bucket behind stream (whose
// subjects are prefix+key), skipping deleted and purged keys. It reads
// through an ephemeral, unacknowledged pull consumer that delivers the last
// message per subject, pulling walkBatch messages at a time without waiting,
// and deletes the consumer on return.
func (s *KV) walk(ctx context.Context, stream, prefix, keyFilter string, fn func(key string, data []byte, rev uint64) error) error {
	cons, err := s.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Description:       "contactstop store walk",
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     prefix + keyFilter,
		InactiveThreshold: walkInactive,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("create consumer on %s: %w", stream, err)
	}
	info := cons.CachedInfo()
	defer func() {
		// Delete even when ctx is done; the inactivity threshold reaps the
		// consumer should this fail.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, stream, info.Name)
	}()

	pending := info.NumPending // messages the consumer has yet to deliver
	var delivered uint64       // consumer sequence of the last message seen
	empty := 0                 // consecutive pulls that found nothing
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.FetchNoWait(walkBatch)
		if err != nil {
			return fmt.Errorf("fetch from %s: %w", stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read from %s: %w", stream, err)
			}
			// Unacknowledged delivery is not retried: a message lost on the
			// way would leave a hole, which the consumer sequence shows.
			if meta.Sequence.Consumer != delivered+1 {
				return fmt.Errorf("read from %s: delivery %d after %d: a message was lost, walk again", stream, meta.Sequence.Consumer, delivered)
			}
			delivered = meta.Sequence.Consumer
			pending = meta.NumPending
			if isDeleteMarker(msg) {
				continue
			}
			subj := msg.Subject()
			key, ok := strings.CutPrefix(subj, prefix)
			if !ok || key == "" {
				return fmt.Errorf("read from %s: unexpected subject %q", stream, subj)
			}
			if err := fn(key, msg.Data(), meta.Sequence.Stream); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("fetch from %s: %w", stream, err)
		}
		if got > 0 {
			empty = 0
			continue
		}
		// Nothing was available although the consumer counted some pending
		// (they may have been removed meanwhile): ask it.
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info on %s: %w", stream, err)
		}
		if ci.Delivered.Consumer != delivered {
			return fmt.Errorf("read from %s: %d deliveries, %d received: a message was lost, walk again", stream, ci.Delivered.Consumer, delivered)
		}
		pending = ci.NumPending
		if empty++; pending > 0 && empty >= 3 {
			return fmt.Errorf("read from %s: %d messages pending but none delivered", stream, pending)
		}
	}
	return nil
}

// isDeleteMarker reports whether msg marks a deleted or purged key, whether
// by KV Delete/Purge or by a server marker (TTL, MaxAge).
func isDeleteMarker(msg jetstream.Msg) bool {
	h := msg.Headers()
	if len(h) == 0 {
		return false
	}
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}
