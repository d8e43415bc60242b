package store

import (
	"context"
	"fmt"
)

// View is what the store holds about one request: the contact it targets
// and the request's outcome record, each with the revision of its key, as
// read at one point of the store.
type View struct {
	Key RequestKey
	// Contact is the contact's record, or nil when there is none (never
	// written, deleted or purged) or it cannot be used (Bad).
	Contact *Contact
	// ContactRev is the last revision of the contact's key, that of a
	// delete marker included; 0 when the key was never written. A write
	// conditioned on the contact as read is conditioned on it.
	ContactRev uint64
	// Bad, when set, wraps ErrBadRecord: the key holds a record that is not
	// a valid contact (it does not decode, names another contact, has an
	// unknown state or channel). It names the record.
	Bad error
	// Outcome is the request's outcome record, or nil.
	Outcome *Outcome
	// OutcomeRev is the last revision of the outcome's key (0: never
	// written): a write of the outcome is conditioned on it.
	OutcomeRev uint64

	raw []byte // the contact's record as stored
}

// EndedByThis reports whether the contact is ENDED by this very request.
func (v *View) EndedByThis() bool {
	return v.Contact != nil && v.Contact.State == StateEnded && v.Contact.EndedBy == v.Key.RequestID
}

// ViewParams are the requests to read.
type ViewParams struct {
	Keys []RequestKey
	// Consistent makes the read reflect every write acknowledged before it
	// began. On a replicated bucket a plain read may be answered by a
	// follower that has not applied the latest writes yet; a decision
	// that cannot be checked by the write that carries it (a negative
	// answer) needs a consistent read.
	Consistent bool
	// ContactsOnly skips the outcome records (Outcome stays nil and
	// OutcomeRev 0).
	ContactsOnly bool
}

// Views reads the contacts and outcome records of p.Keys, in one request
// per bucket for up to 128 keys (two subjects each) unless p.Consistent on
// a replicated bucket. It returns one View per key, in order; an error
// only when the store could not be read (transient).
func (s *KV) Views(ctx context.Context, p ViewParams) ([]View, error) {
	views := make([]View, len(p.Keys))
	var contactKeys, contactOutcomeKeys, bulkOutcomeKeys []string
	cks := make([]string, len(p.Keys))
	oks := make([]string, len(p.Keys))
	obs := make([]bucket, len(p.Keys))
	for i, k := range p.Keys {
		views[i].Key = k
		if ck, ok := k.contactKey(); ok {
			cks[i] = ck
			contactKeys = append(contactKeys, ck)
		}
		if p.ContactsOnly {
			continue
		}
		b, ok, err := s.outcomeLocation(k)
		if err != nil {
			continue // an invalid bulk key: no record can exist
		}
		oks[i], obs[i] = ok, b
		if b == s.bulksBucket {
			bulkOutcomeKeys = append(bulkOutcomeKeys, ok)
		} else {
			contactOutcomeKeys = append(contactOutcomeKeys, ok)
		}
	}
	found, err := s.latest(ctx, s.contactsBucket, append(contactKeys, contactOutcomeKeys...), p.Consistent)
	if err != nil {
		return nil, fmt.Errorf("store: read contacts: %w", err)
	}
	bulkFound, err := s.latest(ctx, s.bulksBucket, bulkOutcomeKeys, p.Consistent)
	if err != nil {
		return nil, fmt.Errorf("store: read bulk outcomes: %w", err)
	}
	// The batch's contacts, in one allocation.
	contacts := make([]Contact, len(views))
	for i := range views {
		v := &views[i]
		if cks[i] != "" {
			if e, ok := found[cks[i]]; ok {
				v.ContactRev = e.rev
				if !e.deleted {
					c, err := decodeContact(v.Key.InstanceID, v.Key.ContactID, e.data, e.rev)
					if err != nil {
						v.Bad = err
					} else {
						contacts[i] = c
						v.Contact, v.raw = &contacts[i], e.data
					}
				}
			}
		}
		if oks[i] == "" {
			continue
		}
		src := found
		if obs[i] == s.bulksBucket {
			src = bulkFound
		}
		if e, ok := src[oks[i]]; ok {
			v.OutcomeRev = e.rev
			if !e.deleted {
				// An outcome record that does not decode holds no outcome;
				// the next write replaces it.
				v.Outcome, _ = decodeOutcome(oks[i], e.data, e.rev)
			}
		}
	}
	return views, nil
}
