package auth_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

func TestResources(t *testing.T) {
	t.Parallel()
	require.Equal(t, "instance/acme/contact/c1", auth.ContactResource("acme", "c1"))
	require.Equal(t, "instance/acme/contact/a/b*c", auth.ContactResource("acme", "a/b*c"))
	require.Equal(t, "instance/acme", auth.InstanceResource("acme"))
	require.Equal(t, `a\*b\\c`, auth.EscapePattern(`a*b\c`))
	require.Equal(t, "plain/id", auth.EscapePattern("plain/id"))
}

// TestPatternMatching is the grant matching rule, case by case.
func TestPatternMatching(t *testing.T) {
	t.Parallel()
	contact := auth.ContactResource
	instance := auth.InstanceResource
	tests := []struct {
		pattern  string
		resource string
		want     bool
	}{
		// Exact names.
		{"instance/acme/contact/c1", contact("acme", "c1"), true},
		{"instance/acme/contact/c1", contact("acme", "c2"), false},
		{"instance/acme/contact/c1", contact("acme", "c10"), false},
		{"instance/acme/contact/c1", contact("Acme", "c1"), false}, // case-sensitive
		{"instance/acme", instance("acme"), true},
		{"instance/acme", instance("acme-evil"), false},

		// A "*" never crosses from one field to the next.
		{"instance/acme*", instance("acme"), true},
		{"instance/acme*", instance("acme-evil"), true}, // the pattern says "every instance starting acme"
		{"instance/acme*", contact("acme-evil", "c1"), false},
		{"instance/acme*", contact("acme", "c1"), false}, // an instance grant is not a contact grant
		{"instance/acme/contact/*", contact("acme", "c1"), true},
		{"instance/acme/contact/*", contact("acme-evil", "c1"), false},
		{"instance/acme/contact/*", instance("acme"), false},           // nor a contact grant a bulk grant
		{"instance/acme*/contact/*", contact("acme-evil", "c1"), true}, // the grant says so
		{"instance/acme-*/contact/*", contact("acme", "c1"), false},
		{"instance/acme-*/contact/*", contact("acme-prod", "c1"), true},
		{"instance/*/contact/*", contact("anyone", "x"), true},
		{"instance/*", instance("anyone"), true},
		{"instance/*", contact("anyone", "x"), false},
		{"*", instance("anyone"), true},
		{"*", contact("anyone", "x/y*z"), true},
		{"instance/*cme", instance("acme"), true},
		{"instance/a*m*e", instance("acme"), true},
		{"instance/a*m*e", instance("amex"), false},
		{"instance/**", instance("x"), true},

		// Contact IDs with "/": the contact ID is one opaque field.
		{"instance/acme/contact/a/b", contact("acme", "a/b"), true},
		{"instance/acme/contact/a", contact("acme", "a/b"), false},
		{"instance/acme/contact/a/*", contact("acme", "a/b/c"), true},
		{"instance/acme/contact/*/c", contact("acme", "a/b/c"), true},
		{"instance/acme/contact/*", contact("acme", "x/contact/y"), true},
		{"instance/acme/contact/x", contact("acme", "x/contact/y"), false},
		{"instance/acme/contact/x/contact/y", contact("acme", "x/contact/y"), true},
		{"instance/acme/contact/*", "instance/acme/contact/", false}, // empty contact ID is no resource
		{"instance/acme/contact//", contact("acme", "/"), true},

		// "*" in a requested contact ID is an ordinary character.
		{"instance/acme/contact/vip", contact("acme", "*"), false},
		{"instance/acme/contact/vip-*", contact("acme", "vip-*"), true},
		{"instance/acme/contact/vip-*", contact("acme", "vip-42"), true},
		{"instance/acme/contact/vip-*", contact("acme", "vi*"), false},
		{`instance/acme/contact/\*`, contact("acme", "*"), true},
		{`instance/acme/contact/\*`, contact("acme", "x"), false},
		{`instance/acme/contact/a\*b`, contact("acme", "a*b"), true},
		{`instance/acme/contact/a\*b`, contact("acme", "axb"), false},
		{`instance/acme/contact/a\\b`, contact("acme", `a\b`), true},
		{`instance/acme/contact/a\\*`, contact("acme", `a\bcd`), true},
		{`instance/acme/contact/a\\*`, contact("acme", `abcd`), false},
		{"instance/acme/contact/" + auth.EscapePattern(`*\*`), contact("acme", `*\*`), true},
		{"instance/acme/contact/" + auth.EscapePattern(`*\*`), contact("acme", `a\*`), false},

		// Non-ASCII is compared exactly.
		{"instance/acme/contact/appel é", contact("acme", "appel é"), true},
		{"instance/acme/contact/appel *", contact("acme", "appel é"), true},
		{"instance/acme/contact/appel é", contact("acme", "appel e\u0301"), false}, // no normalisation

		// Patterns that do not parse match nothing.
		{"instance/acme/contact/", contact("acme", "c1"), false},
		{"instance/acme/contacts/*", contact("acme", "c1"), false},
		{"instance/acme/", instance("acme"), false},
		{"instance/", instance("acme"), false},
		{"instance/ac.me", instance("ac.me"), false},
		{"instance/acme/contact/a\\b", contact("acme", `a\b`), false}, // bad escape
		{"instance/acme/contact/a\\", contact("acme", `a\`), false},   // dangling escape
		{"acme/contact/*", contact("acme", "c1"), false},
		{"**", instance("acme"), false},
		{"", instance("acme"), false},

		// Resources that do not parse are never allowed.
		{"*", "instance/ac*me", false},
		{"*", "instance/", false},
		{"*", "acme", false},
		{"*", "instance/acme/other/c1", false},
	}
	for _, tc := range tests {
		c := auth.Claims{Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionAll}, Resources: []string{tc.pattern}}}}
		require.Equal(t, tc.want, c.Allows(auth.ActionStop, tc.resource), "pattern %q, resource %q", tc.pattern, tc.resource)
	}
}

func TestGrantMatchesAnyOfItsActionsAndResources(t *testing.T) {
	t.Parallel()
	c := auth.Claims{Grants: []auth.Grant{
		{Actions: []auth.Action{"contact:Unknown", auth.ActionStop}, Resources: []string{"bad pattern", "instance/b/contact/*"}},
		{Actions: []auth.Action{auth.ActionBulkStop}, Resources: []string{"instance/a", "instance/b"}},
	}}
	require.True(t, c.Allows(auth.ActionStop, auth.ContactResource("b", "x")))
	require.False(t, c.Allows(auth.ActionStop, auth.ContactResource("a", "x")))
	require.True(t, c.Allows(auth.ActionBulkStop, auth.InstanceResource("a")))
	require.True(t, c.Allows(auth.ActionBulkStop, auth.InstanceResource("b")))
	require.False(t, c.Allows(auth.ActionBulkStop, auth.InstanceResource("c")))
	require.False(t, c.Allows("contact:Unknown", auth.ContactResource("a", "x")))
	require.False(t, (&auth.Claims{}).Allows(auth.ActionStop, auth.ContactResource("a", "x")))
}

func TestGrantValidate(t *testing.T) {
	t.Parallel()
	ok := auth.Grant{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/*"}}
	require.NoError(t, ok.Validate())
	for _, tc := range []struct {
		grant auth.Grant
		want  string
	}{
		{auth.Grant{Resources: []string{"*"}}, "no actions"},
		{auth.Grant{Actions: []auth.Action{"contact:stop"}, Resources: []string{"*"}}, `unknown action "contact:stop"`},
		{auth.Grant{Actions: []auth.Action{"*"}, Resources: []string{"*"}}, "unknown action"},
		{auth.Grant{Actions: []auth.Action{auth.ActionStop}}, "no resources"},
		{auth.Grant{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/"}}, "contact pattern"},
		{auth.Grant{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"tenant/acme"}}, `must be "*" or start with "instance/"`},
		{auth.Grant{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/a.b"}}, "may hold only"},
		{auth.Grant{Actions: []auth.Action{auth.ActionStop}, Resources: []string{`instance/a/contact/\x`}}, `"\" must be followed by`},
	} {
		require.ErrorContains(t, tc.grant.Validate(), tc.want)
	}
}
