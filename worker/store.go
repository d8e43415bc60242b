package worker

import (
	"context"
	"time"

	"github.com/contactstop/contactstop/store"
)

// Store is the part of the state store the worker uses: the decision
// pipeline's reads and writes, the instance check, the count of failed
// attempts, and the bulk runs' records.
type Store interface {
	decisionStore
	Ender
	InstanceExists(ctx context.Context, instanceID string) (bool, error)
	RecordAttempt(ctx context.Context, p store.RecordAttemptParams) (store.Outcome, error)
	bulkStore
}

// bulkStore is what bulk runs keep in the store besides their contacts.
type bulkStore interface {
	WalkContacts(ctx context.Context, p store.WalkParams, fn func(store.WalkEntry) error) error
	GetBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	PutBulk(ctx context.Context, r store.BulkRecord) (store.BulkRecord, error)
	BulkFailures(ctx context.Context, instanceID, bulkID string) (map[string]store.Outcome, error)
	GetInstanceLock(ctx context.Context, instanceID string) (store.InstanceLock, error)
	PutInstanceLock(ctx context.Context, l store.InstanceLock) (store.InstanceLock, error)
	// A bulk run's pending slots: the contacts it may have decided without
	// a stored result (see bulk_run.go).
	PutBulkPending(ctx context.Context, instanceID, bulkID string, run, slot int, contactIDs []string) error
	ClearBulkPending(instanceID, bulkID string, run, slot int) error
	BulkPending(ctx context.Context, instanceID, bulkID string) (contactIDs, slots []string, err error)
	DeleteBulkPending(ctx context.Context, slots []string) error
	BulkPendingWritten(ctx context.Context, slots []string) (time.Time, error)
	ContactsSequence(ctx context.Context) (uint64, error)
}
