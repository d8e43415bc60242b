package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Grant permits its actions on the resources its patterns match: a request
// is authorized when one grant of its token has a matching action and a
// matching resource pattern. There is no deny. Its JSON form is
//
//	{"actions": ["contact:Stop"], "resources": ["instance/acme/contact/*"]}
//
// and decoding refuses any other field, so that a policy written with, say,
// "effect": "Deny" is rejected instead of being read as an allow.
type Grant struct {
	// Actions: ActionStop, ActionBulkStop, ActionRead or ActionAll.
	Actions []Action `json:"actions"`
	// Resources: patterns as described in the package documentation.
	Resources []string `json:"resources"`
}

// UnmarshalJSON decodes a grant, refusing unknown fields and trailing data.
func (g *Grant) UnmarshalJSON(data []byte) error {
	type plain Grant // without this method
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	*g = Grant(p)
	return nil
}

// Validate reports every problem that would make the grant match less than
// it says: no actions, an unknown action, no resources, or a resource
// pattern that does not parse. Issue refuses a token with such a grant; a
// verifier just finds that the broken parts match nothing.
func (g Grant) Validate() error {
	var errs []error
	if len(g.Actions) == 0 {
		errs = append(errs, errors.New("grant has no actions"))
	}
	for _, a := range g.Actions {
		if !a.valid() {
			errs = append(errs, fmt.Errorf("unknown action %q: use %s, %s, %s or %s", a, ActionStop, ActionBulkStop, ActionRead, ActionAll))
		}
	}
	if len(g.Resources) == 0 {
		errs = append(errs, errors.New("grant has no resources"))
	}
	for _, r := range g.Resources {
		if _, err := parsePattern(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// allows reports whether the grant permits action on r.
func (g *Grant) allows(action Action, r resource) bool {
	actionOK := false
	for _, a := range g.Actions {
		if a.matches(action) {
			actionOK = true
			break
		}
	}
	if !actionOK {
		return false
	}
	for _, s := range g.Resources {
		p, err := parsePattern(s)
		if err == nil && p.matches(r) {
			return true
		}
	}
	return false
}
