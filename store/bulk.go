package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BulkStatus is where a bulk request is.
type BulkStatus string

const (
	// BulkRunning: a runner holds the lease and is stopping contacts.
	BulkRunning BulkStatus = "RUNNING"
	// BulkCompleting: every matched contact has its result; Completion
	// holds the completion event, which is being published.
	BulkCompleting BulkStatus = "COMPLETING"
	// BulkCompleted: every matched contact has its result and the
	// completion event is stored.
	BulkCompleted BulkStatus = "COMPLETED"
	// BulkWaiting: the request waits for its turn (another bulk request of
	// the instance runs); nothing has been stopped for it yet.
	BulkWaiting BulkStatus = "WAITING"
)

// BulkRecord is the progress of one bulk request, keyed by instance and
// bulkId in the bulks bucket. It doubles as the lease that lets only one
// runner work on a bulk request at a time: a runner may write contacts for
// it only while Owner is itself and LeaseUntil is in the future.
type BulkRecord struct {
	BulkID     string     `json:"bulkId"`
	InstanceID string     `json:"instanceId"`
	Status     BulkStatus `json:"status"`
	// Owner identifies the runner holding the lease; LeaseUntil is when
	// the lease lapses unless renewed.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
	// Run counts the runs: 1 for the first, more after a takeover.
	Run int `json:"run"`
	// Progress of the current run (final once COMPLETED). Done counts
	// matched contacts that have their result; Walking is true until every
	// contact of the instance has been looked at, so Matched may still
	// grow.
	Matched     int            `json:"matched"`
	Done        int            `json:"done"`
	Stopped     int            `json:"stopped"`
	Failed      int            `json:"failed"`
	Skipped     int            `json:"skipped,omitempty"`
	Unreadable  int            `json:"unreadable,omitempty"`
	ReasonCodes map[string]int `json:"reasonCodes,omitempty"`
	Walking     bool           `json:"walking"`
	// Attempts counts the runs that ended on transient errors: the run
	// after the last allowed one answers a contact that keeps failing
	// INTERNAL_ERROR instead of giving up.
	Attempts int `json:"attempts,omitempty"`
	// Completion is the completion event, recorded (COMPLETING) before it
	// is published, with the time it was recorded.
	Completion   json.RawMessage `json:"completion,omitempty"`
	CompletingAt time.Time       `json:"completingAt,omitzero"`
	StartedAt    time.Time       `json:"startedAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`
	CompletedAt  time.Time       `json:"completedAt,omitzero"`
	// PendingSlots is true once a run of a version that records pending
	// contacts (PutBulkPending) has taken the bulk request: a run taking
	// over a record without it republishes every earlier result, as
	// before.
	PendingSlots bool `json:"pendingSlots,omitempty"`
	// CancelRequested is set by CancelBulk: the run stops starting new
	// contacts, finishes those in hand and completes with Cancelled set.
	// CancelRequestedAt is when it was asked.
	CancelRequested   bool      `json:"cancelRequested,omitempty"`
	CancelRequestedAt time.Time `json:"cancelRequestedAt,omitzero"`
	// Cancelled is set on the completed record of a cancelled bulk request
	// (its completion event says cancelled: true).
	Cancelled bool `json:"cancelled,omitempty"`
	// Revision is the KV revision the record was read at (not stored).
	Revision uint64 `json:"-"`
}

// ErrBulkNotFound means no record exists for the bulk request.
var ErrBulkNotFound = errors.New("store: bulk request not found")

// ErrBulkConflict means the record changed since it was read (or exists,
// for a create): another runner got there first.
var ErrBulkConflict = errors.New("store: bulk record changed concurrently")

func bulkKey(instanceID, bulkID string) (string, error) {
	if err := validateInstanceID(instanceID); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidInstance, err)
	}
	if bulkID == "" {
		return "", errors.New("store: empty bulkId")
	}
	return ContactKey(instanceID, bulkID), nil
}

// GetBulk reads a bulk record; ErrBulkNotFound when there is none.
func (s *KV) GetBulk(ctx context.Context, instanceID, bulkID string) (BulkRecord, error) {
	key, err := bulkKey(instanceID, bulkID)
	if err != nil {
		return BulkRecord{}, err
	}
	e, err := s.bulks.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return BulkRecord{}, fmt.Errorf("%w: %s/%q", ErrBulkNotFound, instanceID, bulkID)
	}
	if err != nil {
		return BulkRecord{}, fmt.Errorf("store: get bulk %s/%q: %w", instanceID, bulkID, err)
	}
	var r BulkRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return BulkRecord{}, fmt.Errorf("store: bulk %s/%q: invalid record: %w", instanceID, bulkID, err)
	}
	r.Revision = e.Revision()
	return r, nil
}

// PutBulk writes a bulk record by compare-and-set: with Revision 0 it
// creates the record and fails with ErrBulkConflict if one exists; else it
// replaces the record read at Revision and fails with ErrBulkConflict if it
// changed since. It returns the record with its new Revision.
func (s *KV) PutBulk(ctx context.Context, r BulkRecord) (BulkRecord, error) {
	key, err := bulkKey(r.InstanceID, r.BulkID)
	if err != nil {
		return BulkRecord{}, err
	}
	r.UpdatedAt = s.now()
	data, err := json.Marshal(r)
	if err != nil {
		return BulkRecord{}, fmt.Errorf("store: encode bulk %s/%q: %w", r.InstanceID, r.BulkID, err)
	}
	var rev uint64
	if r.Revision == 0 {
		rev, err = s.bulks.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return BulkRecord{}, fmt.Errorf("%w: %s/%q exists", ErrBulkConflict, r.InstanceID, r.BulkID)
		}
	} else {
		rev, err = s.bulks.Update(ctx, key, data, r.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return BulkRecord{}, fmt.Errorf("%w: %s/%q is past revision %d", ErrBulkConflict, r.InstanceID, r.BulkID, r.Revision)
		}
	}
	if err != nil {
		return BulkRecord{}, fmt.Errorf("store: put bulk %s/%q: %w", r.InstanceID, r.BulkID, err)
	}
	r.Revision = rev
	return r, nil
}

// A bulk run records, before it writes a batch of contacts, which contacts
// it is about to end and answer for, in a slot of its own next to the bulk
// record (key "<bulk key>.p.<run>.<slot>"), and empties the slot once their
// results are stored. A run that takes over reads every slot: those
// contacts are the only ones an earlier run may have ended without a stored
// result, so they are the only results it publishes again.

// bulkPending is the value of a slot.
type bulkPending struct {
	ContactIDs []string `json:"contactIds"`
}

// pendingSlot returns the key and value of a slot holding contactIDs.
func pendingSlot(instanceID, bulkID string, run, slot int, contactIDs []string) (key string, data []byte, err error) {
	if key, err = bulkKey(instanceID, bulkID); err != nil {
		return "", nil, err
	}
	data, err = json.Marshal(bulkPending{ContactIDs: contactIDs})
	return key + ".p." + strconv.Itoa(run) + "." + strconv.Itoa(slot), data, err
}

// PutBulkPending replaces what slot slot of run run of the bulk request
// holds with contactIDs (none empties it). It returns once the slot is
// stored.
func (s *KV) PutBulkPending(ctx context.Context, instanceID, bulkID string, run, slot int, contactIDs []string) error {
	key, data, err := pendingSlot(instanceID, bulkID, run, slot, contactIDs)
	if err != nil {
		return err
	}
	if _, err := s.bulks.Put(ctx, key, data); err != nil {
		return fmt.Errorf("store: put pending contacts of bulk %s/%q: %w", instanceID, bulkID, err)
	}
	return nil
}

// ClearBulkPending empties slot slot of run run without waiting for the
// server. The write is ordered after every earlier and before every later
// write of this store's connection, so a later PutBulkPending of the same
// slot is never overwritten by it; if it is lost, a run taking over only
// publishes those results again.
func (s *KV) ClearBulkPending(instanceID, bulkID string, run, slot int) error {
	key, data, err := pendingSlot(instanceID, bulkID, run, slot, nil)
	if err != nil {
		return err
	}
	if err := s.js.Conn().Publish(s.bulksBucket.prefix+key, data); err != nil {
		return fmt.Errorf("store: clear pending contacts of bulk %s/%q: %w", instanceID, bulkID, err)
	}
	return nil
}

// BulkPending returns the contact ids in every slot of the bulk request
// (each once), and the slots' keys for DeleteBulkPending.
func (s *KV) BulkPending(ctx context.Context, instanceID, bulkID string) (contactIDs, slots []string, err error) {
	key, err := bulkKey(instanceID, bulkID)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	err = s.walk(ctx, s.bulksBucket, key+".p.>", func(slot string, data []byte, _ uint64) error {
		var p bulkPending
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("slot %s: %w", slot, err)
		}
		slots = append(slots, slot)
		for _, id := range p.ContactIDs {
			if !seen[id] {
				seen[id] = true
				contactIDs = append(contactIDs, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: pending contacts of bulk %s/%q: %w", instanceID, bulkID, err)
	}
	return contactIDs, slots, nil
}

// BulkPendingWritten returns when the earliest of slots (as BulkPending
// returns them) was last written: the results of the contacts they hold were
// published after it. It is the zero time for no slots, or slots deleted
// meanwhile.
func (s *KV) BulkPendingWritten(ctx context.Context, slots []string) (time.Time, error) {
	var first time.Time
	for _, slot := range slots {
		e, err := s.bulks.Get(ctx, slot)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("store: read pending slot %s: %w", slot, err)
		}
		if first.IsZero() || e.Created().Before(first) {
			first = e.Created()
		}
	}
	return first, nil
}

// DeleteBulkPending removes slots returned by BulkPending.
func (s *KV) DeleteBulkPending(ctx context.Context, slots []string) error {
	for _, slot := range slots {
		if err := s.bulks.Purge(ctx, slot); err != nil {
			return fmt.Errorf("store: delete pending slot %s: %w", slot, err)
		}
	}
	return nil
}

// ContactsSequence returns the contacts bucket's last sequence: every
// contact record written before the call has a Revision at most this.
func (s *KV) ContactsSequence(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.contactsBucket.stream)
	if err != nil {
		return 0, fmt.Errorf("store: contacts stream: %w", err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// BulkFailures returns the failures recorded for the contacts of a bulk
// request (RecordFailures with RequestKey.BulkID set), by contactId.
func (s *KV) BulkFailures(ctx context.Context, instanceID, bulkID string) (map[string]Outcome, error) {
	key, err := bulkKey(instanceID, bulkID)
	if err != nil {
		return nil, err
	}
	failures := map[string]Outcome{}
	err = s.walk(ctx, s.bulksBucket, key+".f.*", func(k string, data []byte, rev uint64) error {
		o, err := decodeOutcome(k, data, rev)
		if err != nil {
			return err
		}
		if o.Final() {
			failures[o.ContactID] = *o
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: failures of bulk %s/%q: %w", instanceID, bulkID, err)
	}
	return failures, nil
}

// InstanceLock says which bulk request of an instance runs: at most one at
// a time per instance (emergencies aside), so that one tenant's flood of
// clears cannot hold the bulk runners while another's waits. Key
// "=lock.<instanceId>" in the bulks bucket; written by compare-and-set.
type InstanceLock struct {
	InstanceID string `json:"instanceId"`
	// BulkID is the bulk request that holds the lock until LeaseUntil
	// (renewed by its runner with its own lease).
	BulkID     string    `json:"bulkId"`
	LeaseUntil time.Time `json:"leaseUntil"`
	// Revision is the KV revision read (not stored); 0 when there is no
	// lock.
	Revision uint64 `json:"-"`
}

func instanceLockKey(instanceID string) (string, error) {
	if err := validateInstanceID(instanceID); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidInstance, err)
	}
	return "=lock." + instanceID, nil
}

// GetInstanceLock reads the instance's lock; one with Revision 0 (and no
// BulkID) when there is none.
func (s *KV) GetInstanceLock(ctx context.Context, instanceID string) (InstanceLock, error) {
	key, err := instanceLockKey(instanceID)
	if err != nil {
		return InstanceLock{}, err
	}
	e, err := s.bulks.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return InstanceLock{InstanceID: instanceID}, nil
	case err != nil:
		return InstanceLock{}, fmt.Errorf("store: get the bulk lock of %s: %w", instanceID, err)
	}
	var l InstanceLock
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		// A lock that does not decode holds nothing; the next write
		// replaces it.
		l = InstanceLock{}
	}
	l.InstanceID, l.Revision = instanceID, e.Revision()
	return l, nil
}

// PutInstanceLock writes the lock by compare-and-set at its Revision (0:
// create); ErrBulkConflict when it changed since it was read.
func (s *KV) PutInstanceLock(ctx context.Context, l InstanceLock) (InstanceLock, error) {
	key, err := instanceLockKey(l.InstanceID)
	if err != nil {
		return InstanceLock{}, err
	}
	l.LeaseUntil = utc(l.LeaseUntil)
	data, err := json.Marshal(l)
	if err != nil {
		return InstanceLock{}, err
	}
	var rev uint64
	if l.Revision == 0 {
		rev, err = s.bulks.Create(ctx, key, data)
	} else {
		rev, err = s.bulks.Update(ctx, key, data, l.Revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return InstanceLock{}, fmt.Errorf("%w: the bulk lock of %s changed", ErrBulkConflict, l.InstanceID)
	}
	if err != nil {
		return InstanceLock{}, fmt.Errorf("store: put the bulk lock of %s: %w", l.InstanceID, err)
	}
	l.Revision = rev
	return l, nil
}

// ListBulks returns the bulk records of one instance, or of every instance
// when instanceID is "", newest first (by StartedAt; a WAITING record,
// which has none yet, by when it was written). Pending slots, recorded
// failures and instance locks, which share the bucket, are not bulk
// records and are left out, as is a record that does not decode.
func (s *KV) ListBulks(ctx context.Context, instanceID string) ([]BulkRecord, error) {
	filter := "*.*" // "<instanceId>.<escaped bulkId>": bulk records only
	if instanceID != "" {
		if err := validateInstanceID(instanceID); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidInstance, err)
		}
		filter = instanceID + ".*"
	}
	var recs []BulkRecord
	err := s.walk(ctx, s.bulksBucket, filter, func(key string, data []byte, rev uint64) error {
		if strings.HasPrefix(key, "=") {
			return nil // an instance lock ("=lock.<instanceId>")
		}
		var r BulkRecord
		if json.Unmarshal(data, &r) != nil || r.BulkID == "" {
			return nil
		}
		r.Revision = rev
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list bulks of %q: %w", instanceID, err)
	}
	slices.SortFunc(recs, func(a, b BulkRecord) int {
		if c := b.sortTime().Compare(a.sortTime()); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.InstanceID, b.InstanceID), cmp.Compare(a.BulkID, b.BulkID))
	})
	return recs, nil
}

func (r BulkRecord) sortTime() time.Time {
	if r.StartedAt.IsZero() {
		return r.UpdatedAt
	}
	return r.StartedAt
}

// CancelBulk asks the bulk request's run to stop: it sets CancelRequested
// on the record by compare-and-set, retrying when the record changed
// meanwhile (its run renews it every second), and returns the record as
// written. The run stops starting new contacts, finishes those in hand and
// completes with cancelled: true; a run that takes the request over later,
// or a delivery of the request that finds the record, does the same. It is
// idempotent: a record already cancelled, or COMPLETING or COMPLETED (too
// late to cancel), is returned unchanged. ErrBulkNotFound when there is no
// record: the request was never taken on, or is unknown.
func (s *KV) CancelBulk(ctx context.Context, instanceID, bulkID string) (BulkRecord, error) {
	for {
		r, err := s.GetBulk(ctx, instanceID, bulkID)
		if err != nil {
			return BulkRecord{}, err
		}
		if r.CancelRequested || r.Status == BulkCompleting || r.Status == BulkCompleted {
			return r, nil
		}
		r.CancelRequested, r.CancelRequestedAt = true, s.now()
		saved, err := s.PutBulk(ctx, r)
		if errors.Is(err, ErrBulkConflict) {
			if err := ctx.Err(); err != nil {
				return BulkRecord{}, fmt.Errorf("store: cancel bulk %s/%q: %w", instanceID, bulkID, err)
			}
			continue
		}
		if err != nil {
			return BulkRecord{}, fmt.Errorf("store: cancel bulk %s/%q: %w", instanceID, bulkID, err)
		}
		return saved, nil
	}
}
