package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
)

const (
	invalid      = string(events.ReasonInvalidSecurityUser)
	unauthorized = string(events.ReasonUnauthorized)
)

func TestAuthorize(t *testing.T) {
	t.Parallel()
	ed := newEdPair(t)
	other := newEdPair(t) // a key the verifier does not know
	hsSign, hsVerify := hsKeys(t)
	edOnly := newVerifier(t, 0, ed.verifying)
	hsOnly := newVerifier(t, 0, hsVerify)
	both := newVerifier(t, 0, ed.verifying, hsVerify)
	noLeeway := newVerifier(t, -1, ed.verifying)

	contact := auth.ContactResource("acme", "c1")
	b64 := base64.RawURLEncoding.EncodeToString
	withClaims := func(f func(*auth.Claims)) auth.Claims {
		c := claims()
		f(&c)
		return c
	}
	noneToken := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"x","exp":9999999999,"grants":[{"actions":["contact:Stop"],"resources":["*"]}]}`)) + "."

	tests := []struct {
		name     string
		v        *auth.Verifier
		token    string
		action   auth.Action
		resource string
		code     string // "" for success
		reason   string
	}{
		{name: "valid EdDSA", v: edOnly, token: issue(t, ed.signing, claims())},
		{name: "valid HS256", v: hsOnly, token: issue(t, hsSign, claims())},
		{name: "valid EdDSA, both kinds configured", v: both, token: issue(t, ed.signing, claims())},
		{name: "valid HS256, both kinds configured", v: both, token: issue(t, hsSign, claims())},
		{name: "bulk stop on the instance", v: edOnly, token: issue(t, ed.signing, claims()), action: auth.ActionBulkStop, resource: auth.InstanceResource("acme")},

		{name: "missing token", v: edOnly, token: "", code: invalid, reason: "no security token"},
		{name: "garbage", v: edOnly, token: "not a token at all", code: invalid, reason: "malformed"},
		{name: "three garbage parts", v: edOnly, token: "a.b.c", code: invalid, reason: "malformed"},
		{name: "four parts", v: edOnly, token: issue(t, ed.signing, claims()) + ".x", code: invalid, reason: "malformed"},
		{name: "header not JSON", v: edOnly, token: b64([]byte("{")) + "." + b64([]byte("{}")) + ".", code: invalid, reason: "malformed"},
		{name: "oversized", v: edOnly, token: strings.Repeat("a", auth.MaxTokenSize+1), code: invalid, reason: "more than 8192"},
		{name: "forged signature (other key)", v: edOnly, token: issue(t, other.signing, claims()), code: invalid, reason: "EdDSA signature does not verify"},
		{name: "tampered claims", v: edOnly, token: tamper(t, issue(t, ed.signing, claims())), code: invalid, reason: "signature does not verify"},
		{name: "HS256 with a wrong secret", v: hsOnly, token: rawToken(t, jwt.SigningMethodHS256, []byte(strings.Repeat("w", 32)), mapClaims(), nil), code: invalid, reason: "HS256 signature does not verify"},
		{name: "expired", v: edOnly, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Minute) })), code: invalid, reason: "expired at 2026-11-21T11:59:00Z"},
		{name: "expired within the leeway", v: edOnly, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Hour), now.Add(-20*time.Second) }))},
		{name: "expired, no leeway", v: noLeeway, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Second) })), code: invalid, reason: "expired"},
		{name: "not yet valid", v: edOnly, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.NotBefore = now.Add(time.Minute) })), code: invalid, reason: "not valid before 2026-11-21T12:01:00Z"},
		{name: "not yet valid, within the leeway", v: edOnly, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.NotBefore = now.Add(20 * time.Second) }))},
		{name: "not yet valid, no leeway", v: noLeeway, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.NotBefore = now.Add(time.Second) })), code: invalid, reason: "not valid before"},
		{name: "issued in the future", v: edOnly, token: issue(t, ed.signing, withClaims(func(c *auth.Claims) { c.IssuedAt = now.Add(10 * time.Minute) })), code: invalid, reason: "issued in the future"},
		{name: "no exp", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, without(mapClaims(), "exp"), nil), code: invalid, reason: "no exp claim"},
		{name: "no sub", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, without(mapClaims(), "sub"), nil), code: invalid, reason: "no sub claim"},
		{name: "exp of the wrong type", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, with(mapClaims(), "exp", "tomorrow"), nil), code: invalid, reason: "malformed"},
		{name: "grants of the wrong type", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, with(mapClaims(), "grants", "everything"), nil), code: invalid, reason: "malformed"},
		{name: "grant with an unknown field (effect: Deny)", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, with(mapClaims(), "grants", []any{map[string]any{"effect": "Deny", "actions": []string{"contact:Stop"}, "resources": []string{"*"}}}), nil), code: invalid, reason: "malformed"},
		{name: "alg none, no signature", v: edOnly, token: noneToken, code: invalid, reason: "algorithm none is not accepted"},
		{name: "alg none, with a signature", v: both, token: noneToken + "c2ln", code: invalid, reason: "algorithm none is not accepted"},
		{name: "alg missing", v: edOnly, token: b64([]byte(`{"typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"x"}`)) + ".", code: invalid, reason: "missing or unknown"},
		{name: "alg unknown", v: edOnly, token: b64([]byte(`{"alg":"XYZ"}`)) + "." + b64([]byte(`{"sub":"x"}`)) + ".", code: invalid, reason: "missing or unknown"},
		{name: "HS256 token, only Ed25519 configured", v: edOnly, token: issue(t, hsSign, claims()), code: invalid, reason: "algorithm HS256 is not accepted; the configured keys accept [EdDSA]"},
		{name: "HS256 signed with the Ed25519 public key bytes", v: edOnly, token: rawToken(t, jwt.SigningMethodHS256, []byte(ed.public), mapClaims(), nil), code: invalid, reason: "HS256 is not accepted"},
		{name: "HS256 signed with the Ed25519 public key PEM", v: edOnly, token: rawToken(t, jwt.SigningMethodHS256, ed.publicPEM, mapClaims(), nil), code: invalid, reason: "HS256 is not accepted"},
		{name: "HS256 signed with the Ed25519 public key bytes, HS256 also configured", v: both, token: rawToken(t, jwt.SigningMethodHS256, []byte(ed.public), mapClaims(), nil), code: invalid, reason: "HS256 signature does not verify"},
		{name: "HS256 signed with the Ed25519 public key PEM, HS256 also configured", v: both, token: rawToken(t, jwt.SigningMethodHS256, ed.publicPEM, mapClaims(), nil), code: invalid, reason: "HS256 signature does not verify"},
		{name: "EdDSA token, only HS256 configured", v: hsOnly, token: issue(t, ed.signing, claims()), code: invalid, reason: "EdDSA is not accepted"},
		{name: "HS384 token", v: hsOnly, token: rawToken(t, jwt.SigningMethodHS384, hsSecret, mapClaims(), nil), code: invalid, reason: "HS384 is not accepted"},
		{name: "crit header", v: edOnly, token: rawToken(t, jwt.SigningMethodEdDSA, ed.private, mapClaims(), map[string]any{"crit": []string{"exp"}}), code: invalid, reason: "crit"},
		{name: "nil verifier", v: nil, token: issue(t, ed.signing, claims()), code: invalid, reason: "not configured"},

		{name: "grant for another instance", v: edOnly, token: issue(t, ed.signing, claims()), resource: auth.ContactResource("globex", "c1"), code: unauthorized, reason: `"crm-sync" is not granted contact:Stop on "instance/globex/contact/c1"`},
		{name: "prefix of another instance", v: edOnly, token: issue(t, ed.signing, claims()), resource: auth.ContactResource("acme-evil", "c1"), code: unauthorized, reason: "not granted"},
		{name: "wrong action: bulk with a contact grant", v: edOnly, token: issue(t, ed.signing, grantOnly(auth.ActionStop, "instance/acme/contact/*")), action: auth.ActionBulkStop, resource: auth.InstanceResource("acme"), code: unauthorized, reason: "contact:BulkStop"},
		{name: "wrong action: stop with a bulk grant", v: edOnly, token: issue(t, ed.signing, grantOnly(auth.ActionBulkStop, "instance/acme/contact/*")), code: unauthorized, reason: "contact:Stop"},
		{name: "bulk grant on the instance does not cover its contacts", v: edOnly, token: issue(t, ed.signing, grantOnly(auth.ActionAll, "instance/acme")), code: unauthorized, reason: "not granted"},
		{name: "contact:* covers both", v: edOnly, token: issue(t, ed.signing, grantOnly(auth.ActionAll, "instance/acme/contact/*"))},
		{name: "malformed resource", v: edOnly, token: issue(t, ed.signing, grantOnly(auth.ActionStop, "*")), resource: "instance/ac*me/contact/c1", code: unauthorized, reason: "not granted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			action, resource := tc.action, tc.resource
			if action == "" {
				action = auth.ActionStop
			}
			if resource == "" {
				resource = contact
			}
			c, err := tc.v.Authorize(tc.token, action, resource)
			if tc.code == "" {
				require.NoError(t, err)
				require.Equal(t, "crm-sync", c.Subject)
				return
			}
			requireAuthError(t, err, tc.code, tc.reason, tc.token)
			if tc.code == unauthorized {
				require.Equal(t, "crm-sync", c.Subject, "an UNAUTHORIZED refusal returns the verified claims")
			} else {
				require.Empty(t, c.Subject)
			}
		})
	}
}

func TestVerifyReturnsClaims(t *testing.T) {
	t.Parallel()
	ed := newEdPair(t)
	v := newVerifier(t, 0, ed.verifying)
	want := claims()
	want.NotBefore = now.Add(-time.Minute)
	got, err := v.Verify(issue(t, ed.signing, want))
	require.NoError(t, err)
	require.Equal(t, want.Subject, got.Subject)
	require.True(t, want.ExpiresAt.Equal(got.ExpiresAt))
	require.True(t, want.NotBefore.Equal(got.NotBefore))
	require.True(t, want.IssuedAt.Equal(got.IssuedAt))
	require.Equal(t, want.Grants, got.Grants)
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	a, b := newEdPair(t), newEdPair(t)
	a.verifying.ID, b.verifying.ID = "a", "b"
	v := newVerifier(t, 0, a.verifying, b.verifying)
	signB := b.signing

	for _, tc := range []struct {
		kid string
		ok  bool
	}{
		{kid: "", ok: true},        // every key is tried
		{kid: "b", ok: true},       // the named key
		{kid: "a", ok: false},      // the named key, which did not sign it
		{kid: "unknown", ok: true}, // an unknown kid is a hint ignored
	} {
		signB.ID = tc.kid
		_, err := v.Verify(issue(t, signB, claims()))
		if tc.ok {
			require.NoError(t, err, "kid %q", tc.kid)
		} else {
			requireAuthError(t, err, invalid, "signature does not verify", "")
		}
	}

	// A kid naming a key of another algorithm selects nothing of the
	// token's own algorithm: it is ignored.
	hsSign, hsVerify := hsKeys(t)
	hsVerify.ID = "shared"
	a.verifying.ID = "shared"
	v = newVerifier(t, 0, a.verifying, hsVerify)
	hsSign.ID = "shared"
	_, err := v.Verify(issue(t, hsSign, claims()))
	require.NoError(t, err)
	signA := a.signing
	signA.ID = "shared"
	_, err = v.Verify(issue(t, signA, claims()))
	require.NoError(t, err)
}

func TestNewVerifierValidates(t *testing.T) {
	t.Parallel()
	_, err := auth.NewVerifier(auth.Config{})
	require.ErrorContains(t, err, "at least one key")
	_, err = auth.NewVerifier(auth.Config{Keys: []auth.Key{{}}})
	require.ErrorContains(t, err, "zero Key")
	_, hs := hsKeys(t)
	_, err = auth.NewVerifier(auth.Config{Keys: []auth.Key{hs}, Leeway: time.Hour})
	require.ErrorContains(t, err, "leeway")
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{hs, newEdPair(t).verifying}})
	require.NoError(t, err)
	require.Equal(t, []string{auth.AlgEdDSA, auth.AlgHS256}, v.Algorithms())
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	err := error(&auth.Error{Code: events.ReasonUnauthorized, Reason: "no"})
	require.Equal(t, "UNAUTHORIZED: no", err.Error())
}

// tamper changes the sub claim of a signed token, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	forged := strings.Replace(string(payload), `"instance/acme/contact/*"`, `"*"`, 1)
	require.NotEqual(t, string(payload), forged)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}

func without(c jwt.MapClaims, key string) jwt.MapClaims {
	delete(c, key)
	return c
}

func with(c jwt.MapClaims, key string, v any) jwt.MapClaims {
	c[key] = v
	return c
}

// grantOnly is claims() with a single grant.
func grantOnly(a auth.Action, resources ...string) auth.Claims {
	c := claims()
	c.Grants = []auth.Grant{{Actions: []auth.Action{a}, Resources: resources}}
	return c
}

// TestAuthorizeAt judges a token at the time its request was stored, not
// at the time it is handled.
func TestAuthorizeAt(t *testing.T) {
	t.Parallel()
	ed := newEdPair(t)
	v := newVerifier(t, 0, ed.verifying) // its clock says now
	res := auth.ContactResource("acme", "c1")
	expired := claims()
	expired.IssuedAt, expired.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	token := issue(t, ed.signing, expired)

	_, err := v.Authorize(token, auth.ActionStop, res)
	requireAuthError(t, err, invalid, "expired", token)
	c, err := v.AuthorizeAt(token, auth.ActionStop, res, now.Add(-90*time.Minute))
	require.NoError(t, err, "valid when the request was stored")
	require.Equal(t, "crm-sync", c.Subject)
	_, err = v.VerifyAt(token, now.Add(-90*time.Minute))
	require.NoError(t, err)
	_, err = v.AuthorizeAt(token, auth.ActionStop, res, now.Add(-time.Hour+time.Minute))
	requireAuthError(t, err, invalid, "expired", token)
	_, err = v.AuthorizeAt(token, auth.ActionStop, res, now.Add(-3*time.Hour))
	requireAuthError(t, err, invalid, "issued in the future", token)
	_, err = v.AuthorizeAt(token, auth.ActionStop, auth.ContactResource("globex", "c1"), now.Add(-90*time.Minute))
	requireAuthError(t, err, unauthorized, "not granted", token)
}
