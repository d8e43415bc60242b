package events

import (
	"slices"
	"time"
)

// Matcher is a BulkFilter prepared for matching many contacts. The zero
// value matches nothing; build one with BulkFilter.Matcher.
type Matcher struct {
	states   []string
	channels []string
	queues   map[string]struct{} // nil: every queue
	before   *time.Time
}

// Matcher returns f prepared for Match. f should be valid (Validate).
func (f BulkFilter) Matcher() *Matcher {
	m := &Matcher{states: f.EffectiveStates(), channels: f.Channels, before: f.EnqueuedBefore}
	if f.QueueIDs != nil {
		m.queues = make(map[string]struct{}, len(f.QueueIDs))
		for _, q := range f.QueueIDs {
			m.queues[q] = struct{}{}
		}
	}
	return m
}

// Match reports whether a contact with these fields matches the filter:
// its state is one of the filter's states (QUEUED by default), and when
// the filter names queues, channels or enqueuedBefore, its queue and
// channel are among them and it was enqueued strictly before that time (a
// contact never enqueued does not match). This is the rule of the
// contract, applied when a clear finds a contact and again when it writes
// it: a contact that stopped matching in between is skipped.
func (m *Matcher) Match(state, queueID, channel string, enqueuedAt time.Time) bool {
	if m == nil || !slices.Contains(m.states, state) {
		return false
	}
	if m.queues != nil {
		if _, ok := m.queues[queueID]; !ok {
			return false
		}
	}
	if m.channels != nil && !slices.Contains(m.channels, channel) {
		return false
	}
	if m.before != nil && (enqueuedAt.IsZero() || !enqueuedAt.Before(*m.before)) {
		return false
	}
	return true
}
