// Package store owns contact and instance state for contactstop.
//
// Contacts, instances and bulk requests live in JetStream key-value buckets
// (see [Config] for their names), with the outcome records of failed
// requests beside the contacts. The key layout and the JSON record format are a
// public contract, documented in docs/store.md, so that other services can
// write and watch contacts with any NATS client:
//
//   - instances: key "<instanceId>", value an [Instance] as JSON;
//   - contacts: key "<instanceId>.<escaped contactId>" (see [ContactKey]),
//     value a [Contact] as JSON.
//
// [KV] is the key-value implementation. It offers the primitives of the
// worker's decision pipeline, each carrying a decision out by a write
// conditioned on what was read: [KV.Views] reads a batch of requests'
// contacts and outcome records at one point of the store; [KV.EndContacts]
// moves contacts to ENDED by compare-and-set at the revision read (so a
// contact is ended at most once, and only from the record decided on);
// [KV.RecordFailures] records failures so that no request ever has both a
// failure and a stop. Callers branch on the sentinel errors
// ([ErrRevisionConflict]: read again and decide again; [ErrBadRecord],
// [ErrContactNotFound], [ErrInstanceNotFound], [ErrInvalidContact],
// [ErrInvalidInstance], [ErrContactEnded]) with errors.Is; every other error
// is transient as far as the store knows, and is returned wrapped with
// context for the caller to retry.
//
// Package storetest holds the behavioural test suite every implementation of
// the store must pass.
package store
