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

	// ErrContactNotActive means the contact exists but was already ENDED by
	// another request.
	ErrContactNotActive = errors.New("store: contact not active")

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
