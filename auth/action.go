package auth

import "strings"

// Action is what a grant permits. Actions are compared case-sensitively.
type Action string

// The actions contactstop checks.
const (
	// ActionStop stops one contact; it is checked on a [ContactResource].
	ActionStop Action = "contact:Stop"
	// ActionBulkStop stops every matching contact of an instance, for a
	// bulk request or an emergency broadcast; it is checked on an
	// [InstanceResource].
	ActionBulkStop Action = "contact:BulkStop"
	// ActionRead reads an instance through the JSON API and the web
	// console (contacts, clears, failures, dead letters, live results);
	// it is checked on an [InstanceResource]. [ActionBulkStop] on the
	// instance permits reading it too (the HTTP API's rule, not this
	// package's).
	ActionRead Action = "contact:Read"
	// ActionAll, in a grant, matches every "contact:" action.
	ActionAll Action = "contact:*"
)

// valid reports whether a is an action a grant may name.
func (a Action) valid() bool {
	return a == ActionStop || a == ActionBulkStop || a == ActionRead || a == ActionAll
}

// matches reports whether a, an action in a grant, permits the requested
// action. An unknown action in a grant permits only itself.
func (a Action) matches(requested Action) bool {
	if a == ActionAll {
		return strings.HasPrefix(string(requested), "contact:")
	}
	return a == requested
}
