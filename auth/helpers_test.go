package auth_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

// now is the fixed clock of the verifiers in these tests.
var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// hsSecret is a 40-byte HS256 secret.
var hsSecret = []byte("0123456789abcdef0123456789abcdef-secret")

// edPair is an Ed25519 key in every form the tests need.
type edPair struct {
	signing   auth.SigningKey
	verifying auth.Key
	private   ed25519.PrivateKey
	public    ed25519.PublicKey
	publicPEM []byte
}

func newEdPair(t testing.TB) edPair {
	t.Helper()
	privPEM, pubPEM, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	sk, err := auth.ParsePrivateKey(privPEM)
	require.NoError(t, err)
	vk, err := auth.ParsePublicKey(pubPEM)
	require.NoError(t, err)
	block, _ := pem.Decode(privPEM)
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	edPriv := priv.(ed25519.PrivateKey)
	return edPair{
		signing:   sk,
		verifying: vk,
		private:   edPriv,
		public:    edPriv.Public().(ed25519.PublicKey),
		publicPEM: pubPEM,
	}
}

func hsKeys(t testing.TB) (auth.SigningKey, auth.Key) {
	t.Helper()
	sk, err := auth.ParseHS256SigningSecret(hsSecret)
	require.NoError(t, err)
	vk, err := auth.ParseHS256Secret(hsSecret)
	require.NoError(t, err)
	return sk, vk
}

func newVerifier(t testing.TB, leeway time.Duration, keys ...auth.Key) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Keys: keys, Leeway: leeway, Now: func() time.Time { return now }})
	require.NoError(t, err)
	return v
}

func pemPrivate(t testing.TB, k ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pemPublic(t testing.TB, k ed25519.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims grants contact:Stop on acme's contacts and contact:BulkStop on
// acme, valid for an hour from now.
func claims() auth.Claims {
	return auth.Claims{
		Subject:   "crm-sync",
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
		Grants: []auth.Grant{
			{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/*"}},
			{Actions: []auth.Action{auth.ActionBulkStop}, Resources: []string{"instance/acme"}},
		},
	}
}

func issue(t testing.TB, key auth.SigningKey, c auth.Claims) string {
	t.Helper()
	tok, err := auth.Issue(key, c)
	require.NoError(t, err)
	return tok
}

// rawToken signs arbitrary claims with jwt directly, to make tokens Issue
// refuses to make.
func rawToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// mapClaims is claims() as jwt.MapClaims.
func mapClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "crm-sync",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"grants": []any{
			map[string]any{"actions": []string{"contact:Stop"}, "resources": []string{"instance/acme/contact/*"}},
		},
	}
}

// requireAuthError asserts that err is an *auth.Error with the code, whose
// reason contains want and not the token.
func requireAuthError(t *testing.T, err error, code, want, token string) {
	t.Helper()
	var ae *auth.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, code, string(ae.Code), "reason: %s", ae.Reason)
	require.Contains(t, ae.Reason, want)
	if len(token) > 16 {
		require.NotContains(t, err.Error(), token, "the token must never be in the error")
		for _, part := range strings.Split(token, ".") {
			if len(part) > 16 {
				require.NotContains(t, err.Error(), part)
			}
		}
	}
}
