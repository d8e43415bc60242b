package store

import "errors"

// Sentinel errors. They are returned wrapped with detail; match them with
// errors.Is. An error that matches none of them is, as far as the store
// knows, transient (a timeout, no responders, a lost connection): the caller
// may retry it.
var (
	// ErrContactNotFound means there is no record under the contact's key
	// (never written, or deleted).
	ErrContactNotFound = errors.New("store: contact not found")

	// ErrInstanceNotFound means the instance is not registered in the
	// instances bucket.
	ErrInstanceNotFound = errors.New("store: instance not found")

	// ErrInvalidContact means a contact, or the identifiers or parameters
	// naming one, fails validation. Nothing was read or written. It is
	// permanent: retrying the same input fails the same way.
	ErrInvalidContact = errors.New("store: invalid contact")

	// ErrInvalidInstance means an instance, or an instanceId given to
	// an instance operation, fails validation. Nothing was read or written.
	// It is permanent.
	ErrInvalidInstance = errors.New("store: invalid instance")
)

// Sentinels of the decision protocol.
var (
	// ErrRevisionConflict means a conditioned write found its key at
	// another revision than the one read: another writer got there first.
	// Nothing was written; read again and decide again.
	ErrRevisionConflict = errors.New("store: changed since it was read")

	// ErrBadRecord means a key holds a record that is not a valid contact
	// (it does not decode, names another contact, has an unknown state or
	// channel) or a key not in the documented encoding. It is permanent:
	// the record must be repaired.
	ErrBadRecord = errors.New("store: bad record")

	// ErrContactEnded means a write would bring an ENDED contact back to
	// an active state; ReplaceContact does so only when forced.
	ErrContactEnded = errors.New("store: contact is ENDED")
)
