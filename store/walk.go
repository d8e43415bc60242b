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
// error wrapping ErrBadRecord (WalkContacts passes over such records); a
// lost connection, a server restart or a timeout stops it with a wrapped
// transient error, and the caller may walk again.
func (s *KV) ListContacts(ctx context.Context, instanceID string, fn func(Contact) error) error {
	return s.WalkContacts(ctx, WalkParams{InstanceID: instanceID}, func(e WalkEntry) error {
		if e.Bad != nil {
			return e.Bad
		}
		return fn(e.Contact)
	})
}

// WalkParams selects the records WalkContacts visits.
type WalkParams struct {
	InstanceID string
	// Skip, when not nil, is asked about each contact by the second token
	// of its key (the escaped contactId) before its record is decoded:
	// true passes the record over. A bulk run skips its own writes, which
	// the walk delivers again, this way.
	Skip func(escapedContactID string) bool
}

// WalkEntry is one record of a walk: a contact, or a record that cannot be
// one.
type WalkEntry struct {
	// Contact is the record, with its Revision, when Bad is nil.
	Contact Contact
	// Bad, when set, wraps ErrBadRecord and names the key and revision of a
	// record that is not a valid contact: a key not in the documented
	// encoding, a body that does not decode, an unknown state or channel.
	Bad error
}

// WalkContacts is ListContacts for callers that carry on past bad records:
// fn gets each as a WalkEntry with Bad set, and the walk goes on unless fn
// returns an error.
func (s *KV) WalkContacts(ctx context.Context, p WalkParams, fn func(WalkEntry) error) error {
	if err := validateInstanceID(p.InstanceID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	var fnErr error
	call := func(e WalkEntry) error {
		if err := fn(e); err != nil {
			fnErr = err
			return err
		}
		return nil
	}
	err := s.walk(ctx, s.contactsBucket, p.InstanceID+".>", func(key string, data []byte, rev uint64) error {
		esc := key[len(p.InstanceID)+1:]
		if p.Skip != nil && p.Skip(esc) {
			return nil
		}
		inst, id, err := ParseContactKey(key)
		if err != nil {
			return call(WalkEntry{Bad: fmt.Errorf("%w: key %q at revision %d: %w", ErrBadRecord, key, rev, err)})
		}
		c, err := decodeContact(inst, id, data, rev)
		if err != nil {
			return call(WalkEntry{Bad: err})
		}
		return call(WalkEntry{Contact: c})
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: list contacts of %s: %w", p.InstanceID, err)
	}
	return nil
}

// walk calls fn with the key, value and revision of the latest value of
// every live key matching keyFilter in bucket b, skipping deleted and
// purged keys. It reads
// through an ephemeral, unacknowledged pull consumer that delivers the last
// message per subject, pulling walkBatch messages at a time without waiting,
// and deletes the consumer on return.
func (s *KV) walk(ctx context.Context, b bucket, keyFilter string, fn func(key string, data []byte, rev uint64) error) error {
	stream, prefix := b.stream, b.prefix
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
			if isMarker(msg.Headers()) {
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
