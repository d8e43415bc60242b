package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

var farFuture = time.Now().Add(24 * time.Hour)

func TestIssue(t *testing.T) {
	t.Parallel()
	ed := newEdPair(t)
	signing := ed.signing
	signing.ID = "dev-1"
	tok := issue(t, signing, claims())

	// The token is a plain JWT that any library can read.
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return ed.public, nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return now }))
	require.NoError(t, err)
	require.Equal(t, "dev-1", parsed.Header["kid"])
	mc := parsed.Claims.(jwt.MapClaims)
	require.Equal(t, "crm-sync", mc["sub"])
	require.EqualValues(t, now.Add(time.Hour).Unix(), mc["exp"])
	require.EqualValues(t, now.Unix(), mc["iat"])
	require.NotContains(t, mc, "nbf")
	require.Equal(t, []any{
		map[string]any{"actions": []any{"contact:Stop"}, "resources": []any{"instance/acme/contact/*"}},
		map[string]any{"actions": []any{"contact:BulkStop"}, "resources": []any{"instance/acme"}},
	}, mc["grants"])
}

func TestIssueRefuses(t *testing.T) {
	t.Parallel()
	ed := newEdPair(t)
	valid := claims()
	for _, tc := range []struct {
		name   string
		key    auth.SigningKey
		mutate func(*auth.Claims)
		want   string
	}{
		{name: "zero key", mutate: func(*auth.Claims) {}, want: "no signing key"},
		{name: "no sub", key: ed.signing, mutate: func(c *auth.Claims) { c.Subject = "" }, want: "sub is required"},
		{name: "long sub", key: ed.signing, mutate: func(c *auth.Claims) { c.Subject = strings.Repeat("x", 257) }, want: "sub is 257 bytes"},
		{name: "no exp", key: ed.signing, mutate: func(c *auth.Claims) { c.ExpiresAt = time.Time{} }, want: "exp is required"},
		{name: "exp before nbf", key: ed.signing, mutate: func(c *auth.Claims) { c.NotBefore = c.ExpiresAt }, want: "exp must be after nbf"},
		{name: "exp before iat", key: ed.signing, mutate: func(c *auth.Claims) { c.IssuedAt = c.ExpiresAt.Add(time.Second) }, want: "exp must be after iat"},
		{name: "no grants", key: ed.signing, mutate: func(c *auth.Claims) { c.Grants = nil }, want: "at least one grant"},
		{name: "bad grant", key: ed.signing, mutate: func(c *auth.Claims) { c.Grants[1].Actions = []auth.Action{"contact:stop"} }, want: "grant 2: unknown action"},
		{name: "too large", key: ed.signing, mutate: func(c *auth.Claims) {
			c.Grants = []auth.Grant{{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/" + strings.Repeat("x", 7000)}}}
		}, want: "more than the 8192"},
	} {
		c := valid
		c.Grants = append([]auth.Grant(nil), valid.Grants...)
		tc.mutate(&c)
		_, err := auth.Issue(tc.key, c)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}
