package store

import (
	"fmt"
	"strings"
)

// State is the lifecycle state of a contact. INITIATED, QUEUED, CONNECTED
// and ON_HOLD are active; ENDED is terminal: a contact that is ENDED never
// changes again through this package.
type State string

// The states of a contact, as stored in the record's "state" field.
const (
	StateInitiated State = "INITIATED"
	StateQueued    State = "QUEUED"
	StateConnected State = "CONNECTED"
	StateOnHold    State = "ON_HOLD"
	StateEnded     State = "ENDED"
)

// states lists every valid state in lifecycle order.
var states = []State{StateInitiated, StateQueued, StateConnected, StateOnHold, StateEnded}

// Active reports whether a contact in state s can still be ended. It is
// false for ENDED and for any value that is not a valid state.
func (s State) Active() bool {
	switch s {
	case StateInitiated, StateQueued, StateConnected, StateOnHold:
		return true
	}
	return false
}

// valid reports whether s is one of the canonical states.
func (s State) valid() bool { return s.Active() || s == StateEnded }

// ParseState returns the state named by s, compared case-insensitively
// ("queued", "Queued" and "QUEUED" all give StateQueued). For any other input
// it returns an error that lists the valid values.
func ParseState(s string) (State, error) {
	for _, st := range states {
		if strings.EqualFold(s, string(st)) {
			return st, nil
		}
	}
	return "", fmt.Errorf("store: invalid state %q (valid: %s)", s, joinNames(states))
}

// joinNames joins string-like values with ", " for error messages.
func joinNames[T ~string](vs []T) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(v))
	}
	return b.String()
}
