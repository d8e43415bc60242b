// Package inventory keeps the store's inventory of an instance bound to a
// platform that can list its active contacts (platform.Lister: CXone,
// Twilio's TaskRouter, Genesys Cloud) current: `contacts sync --instance I`
// runs one sync, and serve runs one per bound instance every
// --sync-interval, once across its replicas.
//
// A sync takes the platform's list as of its start: every listed contact is
// applied to the store as an event of that moment (store.ApplyContactEvent:
// a newer event or stop already recorded wins), and every contact the store
// holds as active that the platform did not list, and that nothing changed
// since the sync began, is recorded ENDED by the platform — once the
// platform confirms it (Confirmer): a listing is taken page by page from a
// set that changes meanwhile, and a contact that ends between two pages
// shifts the later ones, so an active one can be left out (found by the
// platform_clear fault scenario: a sync during a clear recorded dozens of
// waiting conversations ENDED, and the clear passed them over). A stop in
// progress (its intent) is kept either way: its request asks the platform
// what became of the contact.
package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// Store is what a sync reads and writes (store.KV).
type Store interface {
	ListContacts(ctx context.Context, instanceID string, fn func(store.Contact) error) error
	ApplyContactEvent(ctx context.Context, e store.ContactEvent) (applied bool, err error)
}

// Coverage is implemented by a Lister that lists only some kinds of
// contacts (Twilio lists TaskRouter tasks, not calls): a contact it does
// not cover is never recorded ENDED for being absent from its list.
type Coverage interface {
	Lists(contactID string) bool
}

// Confirmer is implemented by a Lister that can say, within the platform's
// budget, what became of one contact: Sync asks it about every active
// record its listing left out before recording the contact ENDED. A
// NotFound failure means ended; any other failure leaves the record as it
// is until the next sync.
type Confirmer interface {
	Confirm(ctx context.Context, contactID string) (platform.Status, error)
}

// MaxConfirm bounds the confirmations of one sync: the records left out
// beyond it wait for the next sync.
const MaxConfirm = 1000

// Stats is what a sync did.
type Stats struct {
	// Listed contacts the platform reported active; Applied of them
	// changed the store (new, or in another state or queue).
	Listed, Applied int
	// Ended active records the platform no longer listed (and, with a
	// Confirmer, said had ended). Missed: left out of the listing, but
	// active when asked; Unconfirmed: left out, and not asked (over
	// MaxConfirm) or the question failed: both are kept as they are.
	Ended, Missed, Unconfirmed int
	// Started and Took time the sync.
	Started time.Time
	Took    time.Duration
}

// Sync makes the store's inventory of instanceID match what l lists now.
func Sync(ctx context.Context, st Store, instanceID string, l platform.Lister, now func() time.Time) (Stats, error) {
	stats := Stats{Started: now().UTC()}
	at := stats.Started
	listed := map[string]bool{}
	err := l.ListActive(ctx, func(c platform.Listed) error {
		stats.Listed++
		listed[c.ContactID] = true
		state := c.State
		if !state.Active() {
			state = store.StateInitiated
		}
		ch := c.Channel
		if ch == "" {
			ch = store.ChannelVoice
		}
		applied, err := st.ApplyContactEvent(ctx, store.ContactEvent{InstanceID: instanceID, ContactID: c.ContactID,
			State: state, Channel: ch, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt, At: at})
		if err != nil {
			return fmt.Errorf("contact %q: %w", c.ContactID, err)
		}
		if applied {
			stats.Applied++
		}
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("inventory: list %s's active contacts: %w", instanceID, err)
	}
	cov, _ := l.(Coverage)
	var gone []store.Contact
	err = st.ListContacts(ctx, instanceID, func(c store.Contact) error {
		switch {
		case !c.State.Active() || listed[c.ContactID]:
		case cov != nil && !cov.Lists(c.ContactID):
		case c.EventAt.After(at) || c.UpdatedAt.After(at):
			// Changed since the list was taken: newer than it.
		default:
			gone = append(gone, c)
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrBadRecord) {
		return stats, fmt.Errorf("inventory: walk %s's contacts: %w", instanceID, err)
	}
	conf, _ := l.(Confirmer)
	for i, c := range gone {
		if conf != nil {
			if i >= MaxConfirm {
				stats.Unconfirmed += len(gone) - i
				break
			}
			status, err := conf.Confirm(ctx, c.ContactID)
			var pe *platform.Error
			switch {
			case err == nil && status.Active:
				stats.Missed++
				continue
			case err == nil, errors.As(err, &pe) && pe.Kind == platform.NotFound:
			case ctx.Err() != nil:
				return stats, ctx.Err()
			default:
				stats.Unconfirmed++
				continue
			}
		}
		applied, err := st.ApplyContactEvent(ctx, store.ContactEvent{InstanceID: instanceID, ContactID: c.ContactID,
			State: store.StateEnded, Channel: c.Channel, At: at})
		if err != nil {
			return stats, fmt.Errorf("inventory: record %s/%q ended: %w", instanceID, c.ContactID, err)
		}
		if applied {
			stats.Ended++
		}
	}
	stats.Took = now().UTC().Sub(stats.Started)
	return stats, nil
}

// Turns shares syncs out among serve replicas: one sync of an instance per
// interval, whichever replica claims it first. Its claims live in a KV
// bucket (the budgets', key sync-<instance>), taken by compare-and-set.
type Turns struct {
	KV       jetstream.KeyValue
	Interval time.Duration
	Now      func() time.Time
}

type turn struct {
	At time.Time `json:"at"`
}

// Claim reports whether this replica should sync instanceID now: the last
// claim is older than the interval and this replica's claim won.
func (t *Turns) Claim(ctx context.Context, instanceID string) (bool, error) {
	key := "sync-" + instanceID
	now := t.Now().UTC()
	data, _ := json.Marshal(turn{At: now})
	e, err := t.KV.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = t.KV.Create(ctx, key, data)
	case err != nil:
		return false, err
	default:
		var last turn
		if json.Unmarshal(e.Value(), &last) == nil && now.Sub(last.At) < t.Interval {
			return false, nil
		}
		_, err = t.KV.Update(ctx, key, data, e.Revision())
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) || isWrongSequence(err) {
			return false, nil // another replica claimed it
		}
		return false, err
	}
	return true, nil
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
