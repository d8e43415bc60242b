package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/contactstop/contactstop/events"
)

const (
	instancePrefix = "instance/"
	contactInfix   = "/contact/"

	// maxResourceLen bounds the resources Authorize accepts (the longest
	// valid one is about 1.1 KB) and so the cost of matching.
	maxResourceLen = 4096
)

// ContactResource returns "instance/<instanceID>/contact/<contactID>", the
// resource [ActionStop] is checked on. The contact ID is kept exactly as
// given, whatever characters it holds.
func ContactResource(instanceID, contactID string) string {
	return instancePrefix + instanceID + contactInfix + contactID
}

// InstanceResource returns "instance/<instanceID>", the resource
// [ActionBulkStop] is checked on for a bulk request or an emergency
// broadcast.
func InstanceResource(instanceID string) string {
	return instancePrefix + instanceID
}

// EscapePattern escapes "\" and "*" in a contact ID so that, in the contact
// part of a grant pattern, it matches exactly that contact ID:
// "instance/acme/contact/" + EscapePattern("a*b") grants contact "a*b" and
// no other.
func EscapePattern(contactID string) string {
	if !strings.ContainsAny(contactID, `\*`) {
		return contactID
	}
	var b strings.Builder
	b.Grow(len(contactID) + 4)
	for i := 0; i < len(contactID); i++ {
		if c := contactID[i]; c == '\\' || c == '*' {
			b.WriteByte('\\')
		}
		b.WriteByte(contactID[i])
	}
	return b.String()
}

// resource is a parsed resource: an instance, or a contact of an instance.
type resource struct {
	instance   string
	contact    string
	hasContact bool
}

// parseResource reads a resource as ContactResource or InstanceResource
// write it. It reports false for anything else, including an invalid
// instance ID or an empty contact ID.
func parseResource(s string) (resource, bool) {
	if len(s) > maxResourceLen {
		return resource{}, false
	}
	rest, ok := strings.CutPrefix(s, instancePrefix)
	if !ok {
		return resource{}, false
	}
	inst, tail, hasTail := strings.Cut(rest, "/")
	if !events.ValidInstanceID(inst) {
		return resource{}, false
	}
	if !hasTail {
		return resource{instance: inst}, true
	}
	contact, ok := strings.CutPrefix("/"+tail, contactInfix)
	if !ok || contact == "" {
		return resource{}, false
	}
	return resource{instance: inst, contact: contact, hasContact: true}, true
}

// errPattern is wrapped by every error about a grant's resource pattern.
var errPattern = errors.New("invalid resource pattern")

// pattern is a parsed resource pattern of a grant.
type pattern struct {
	any        bool // "*": every resource
	instance   glob
	contact    glob
	hasContact bool
}

// parsePattern parses a grant's resource pattern (see the package
// documentation). Its errors wrap errPattern.
func parsePattern(s string) (pattern, error) {
	if s == "*" {
		return pattern{any: true}, nil
	}
	rest, ok := strings.CutPrefix(s, instancePrefix)
	if !ok {
		return pattern{}, fmt.Errorf("%w %q: must be \"*\" or start with %q", errPattern, s, instancePrefix)
	}
	inst, tail, hasTail := strings.Cut(rest, "/")
	if inst == "" {
		return pattern{}, fmt.Errorf("%w %q: the instance part is empty", errPattern, s)
	}
	for i := 0; i < len(inst); i++ {
		if c := inst[i]; c != '*' && !instanceIDByte(c) {
			return pattern{}, fmt.Errorf("%w %q: the instance part may hold only A-Z a-z 0-9 _ - and *", errPattern, s)
		}
	}
	p := pattern{instance: glob{parts: strings.Split(inst, "*")}}
	if !hasTail {
		return p, nil
	}
	contact, ok := strings.CutPrefix("/"+tail, contactInfix)
	if !ok || contact == "" {
		return pattern{}, fmt.Errorf("%w %q: after the instance must come %q and a contact pattern", errPattern, s, contactInfix)
	}
	parts, err := splitContactPattern(contact)
	if err != nil {
		return pattern{}, fmt.Errorf("%w %q: %w", errPattern, s, err)
	}
	p.contact = glob{parts: parts}
	p.hasContact = true
	return p, nil
}

// instanceIDByte reports whether c may appear in an instance ID.
func instanceIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// splitContactPattern splits a contact pattern at its unescaped "*" and
// removes the escapes: `a\*b*c` gives ["a*b", "c"].
func splitContactPattern(s string) ([]string, error) {
	if !strings.ContainsAny(s, `\*`) {
		return []string{s}, nil
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*':
			parts = append(parts, cur.String())
			cur.Reset()
		case '\\':
			if i+1 == len(s) || (s[i+1] != '*' && s[i+1] != '\\') {
				return nil, errors.New(`"\" must be followed by "*" or "\"`)
			}
			i++
			cur.WriteByte(s[i])
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String()), nil
}

// matches reports whether the pattern covers the resource.
func (p *pattern) matches(r resource) bool {
	if p.any {
		return true
	}
	if p.hasContact != r.hasContact || !p.instance.matches(r.instance) {
		return false
	}
	return !p.hasContact || p.contact.matches(r.contact)
}

// glob is a pattern whose only special character is "*", which matches any
// run of bytes including none. It is stored as the literal parts between
// the stars: a pattern without a star has one part.
type glob struct {
	parts []string
}

// matches reports whether s matches the glob. Matching the middle parts at
// their leftmost occurrence is exact for star-only patterns, so the cost is
// that of a few substring searches, with no backtracking.
func (g glob) matches(s string) bool {
	if len(g.parts) == 1 {
		return s == g.parts[0]
	}
	first, last := g.parts[0], g.parts[len(g.parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, part := range g.parts[1 : len(g.parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return true
}
