package store

import (
	"context"
	"fmt"

	"github.com/contactstop/contactstop/events"
)

// MatchCount is what a bulk clear with a filter would match now: the dry
// run of a clear.
type MatchCount struct {
	// Matched is the number of contacts the filter matches; ByQueue and
	// ByState split it by queueId ("" for none) and state.
	Matched int            `json:"matched"`
	ByQueue map[string]int `json:"byQueue"`
	ByState map[string]int `json:"byState"`
	// Unreadable counts the instance's records that cannot be read as
	// contacts: a clear passes over them too.
	Unreadable int `json:"unreadable"`
}

// CountMatching counts the contacts of the instance that a bulk clear with
// filter f would match now, with the filter rule a clear applies
// (events.Matcher), and changes nothing. Contacts written while it counts
// may or may not be counted, as for a clear's walk. It fails with a
// *events.ValidationError for an invalid filter, an error wrapping
// ErrInvalidInstance for an invalid instanceId and ErrInstanceNotFound for
// an unknown instance (a clear of it would be refused RESOURCE_NOT_FOUND).
func (s *KV) CountMatching(ctx context.Context, instanceID string, f events.BulkFilter) (MatchCount, error) {
	if err := validateInstanceID(instanceID); err != nil {
		return MatchCount{}, fmt.Errorf("%w: %w", ErrInvalidInstance, err)
	}
	if err := f.Validate(); err != nil {
		return MatchCount{}, err
	}
	exists, err := s.InstanceExists(ctx, instanceID)
	if err != nil {
		return MatchCount{}, err
	}
	if !exists {
		return MatchCount{}, fmt.Errorf("%w: %s", ErrInstanceNotFound, instanceID)
	}
	m := f.Matcher()
	n := MatchCount{ByQueue: map[string]int{}, ByState: map[string]int{}}
	err = s.WalkContacts(ctx, WalkParams{InstanceID: instanceID}, func(e WalkEntry) error {
		if e.Bad != nil {
			n.Unreadable++
			return nil
		}
		c := e.Contact
		if m.Match(string(c.State), c.QueueID, string(c.Channel), c.EnqueuedAt) {
			n.Matched++
			n.ByQueue[c.QueueID]++
			n.ByState[string(c.State)]++
		}
		return nil
	})
	if err != nil {
		return MatchCount{}, fmt.Errorf("store: count matching contacts of %s: %w", instanceID, err)
	}
	return n, nil
}
