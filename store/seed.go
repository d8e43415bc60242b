package store

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// seedWindow bounds how many seed publishes await their acknowledgement at
// once. It stays below nats.go's default limit of asynchronous publishes per
// JetStream context (4000), which other users of the context share.
const seedWindow = 1024

// SeedContacts writes many contacts fast: asynchronous JetStream publishes
// to the bucket's subjects ($KV.<bucket>.<key>), at most 1024 awaiting
// acknowledgement at a time. It returns when every write is acknowledged,
// with the number acknowledged. Each contact is validated and normalized as
// by PutContact; like PutContact it overwrites existing contacts and does
// not register the instance.
//
// On the first invalid contact (an error wrapping ErrInvalidContact) or
// failed publish it stops sending, waits for the writes already sent, and
// returns the count acknowledged with the error: contacts before the failure
// may have been written, those after it were not. When ctx ends it stops at
// once and returns the acknowledgements seen so far with ctx's error; writes
// in flight may still land.
func (s *KV) SeedContacts(ctx context.Context, contacts iter.Seq[Contact]) (int, error) {
	var (
		window  = make([]jetstream.PubAckFuture, 0, seedWindow)
		written int
		failed  error
	)
	// await waits for the oldest n futures in the window.
	await := func(n int) {
		for _, f := range window[:n] {
			select {
			case <-f.Ok():
				written++
			case err := <-f.Err():
				if failed == nil {
					failed = fmt.Errorf("store: seed contacts: publish %s: %w", f.Msg().Subject, err)
				}
			case <-ctx.Done():
				if failed == nil {
					failed = fmt.Errorf("store: seed contacts: %w", ctx.Err())
				}
			}
		}
		window = append(window[:0], window[n:]...)
	}
	for c := range contacts {
		if failed != nil {
			break
		}
		if err := ctx.Err(); err != nil {
			failed = fmt.Errorf("store: seed contacts: %w", err)
			break
		}
		key, data, err := s.prepareContact(&c)
		if err != nil {
			failed = err
			break
		}
		if len(window) == seedWindow {
			await(seedWindow / 2)
			if failed != nil {
				break
			}
		}
		// No headers (such as an expected stream): like records written
		// with any KV client's Put, they are cheaper for the server to read.
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: s.contactsBucket.prefix + key, Data: data},
			jetstream.WithStallWait(5*time.Second))
		if err != nil {
			failed = fmt.Errorf("store: seed contacts: publish %s/%q: %w", c.InstanceID, c.ContactID, err)
			break
		}
		window = append(window, f)
	}
	await(len(window))
	return written, failed
}
