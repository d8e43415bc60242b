package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WriteContact writes c's whole record by compare-and-set: only if the
// contact's key is still at revision rev (0: never written; a delete
// marker's revision counts). The platform path uses it to record a stop's
// intent and, after the platform answered, its outcome. It returns the
// record as stored, with its new Revision; an error wrapping
// ErrRevisionConflict when the key moved on (nothing was written: read
// again and decide again), ErrInvalidContact for an invalid record, and
// otherwise a transient error (the write may or may not have landed).
func (s *KV) WriteContact(ctx context.Context, c Contact, rev uint64) (Contact, error) {
	key, data, err := s.prepareContact(&c)
	if err != nil {
		return Contact{}, err
	}
	msg := &nats.Msg{Subject: s.contactsBucket.prefix + key, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ack := s.pub.Publish(ctx, []*nats.Msg{msg}, opTimeout)[0]
	switch {
	case ack.Err == nil:
		c.Revision = ack.Sequence
		return c, nil
	case revisionMismatch(ack.Err):
		return Contact{}, fmt.Errorf("%w: contact %s/%q is past revision %d", ErrRevisionConflict, c.InstanceID, c.ContactID, rev)
	default:
		return Contact{}, fmt.Errorf("store: write contact %s/%q at revision %d: %w", c.InstanceID, c.ContactID, rev, ack.Err)
	}
}
