// Package store owns contact and instance state for contactstop.
//
// Contacts and instances live in two JetStream key-value buckets (see
// [Config] for their names). The key layout and the JSON record format are a
// public contract, documented in docs/store.md, so that other services can
// write and watch contacts with any NATS client:
//
//   - instances: key "<instanceId>", value an [Instance] as JSON;
//   - contacts: key "<instanceId>.<escaped contactId>" (see [ContactKey]),
//     value a [Contact] as JSON.
//
// [KV] is the key-value implementation. A contact moves to ENDED only by a
// revision-checked compare-and-set ([KV.EndContact]), which is what makes
// stopping a contact idempotent and safe under concurrency. Callers branch on
// the sentinel errors ([ErrContactNotFound], [ErrContactNotActive],
// [ErrInstanceNotFound], [ErrInvalidContact], [ErrInvalidInstance]) with
// errors.Is; every other error is transient as far as the store knows, and is
// returned wrapped with context for the caller to retry.
//
// Package storetest holds the behavioural test suite every implementation of
// the store must pass.
package store
