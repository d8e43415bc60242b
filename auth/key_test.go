package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

func TestTypedKeyFiles(t *testing.T) {
	t.Parallel()
	privPEM, pubPEM, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecPubDER, err := x509.MarshalPKIXPublicKey(&ecPriv.PublicKey)
	require.NoError(t, err)
	ecPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPubDER})
	ecPrivDER, err := x509.MarshalPKCS8PrivateKey(ecPriv)
	require.NoError(t, err)
	ecPrivPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecPrivDER})
	pubBlock, _ := pem.Decode(pubPEM)
	pubBase64 := base64.StdEncoding.EncodeToString(pubBlock.Bytes)
	raw := pubBlock.Bytes[len(pubBlock.Bytes)-32:] // the raw Ed25519 public key
	jwk := `{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(raw) + `"}`
	secret40 := strings.Repeat("s", 40)

	tests := []struct {
		name string
		data string
		// What each typed parser makes of it: an algorithm, or the text of
		// its refusal.
		public, secret, private string
	}{
		{name: "Ed25519 public key", data: string(pubPEM), public: auth.AlgEdDSA, secret: "PEM block", private: "public key cannot sign"},
		{name: "Ed25519 public key with blank lines around", data: "\n\n" + string(pubPEM) + "\n\n", public: auth.AlgEdDSA, secret: "PEM block", private: "public key cannot sign"},
		{name: "Ed25519 private key", data: string(privPEM), public: "a private key", secret: "PEM block", private: auth.AlgEdDSA},
		{name: "ECDSA public key", data: string(ecPubPEM), public: "ECDSA public key; only Ed25519", secret: "PEM block", private: "public key cannot sign"},
		{name: "ECDSA private key", data: string(ecPrivPEM), public: "a private key", secret: "PEM block", private: "ECDSA private key; only Ed25519"},
		{name: "two PEM blocks", data: string(pubPEM) + string(pubPEM), public: "more than one PEM block", secret: "PEM block", private: "more than one PEM block"},
		{name: "PEM after text", data: "secret-secret-secret-secret-secret\n" + string(pubPEM), public: "not PEM: it holds a PEM block", secret: "PEM block", private: "not PEM"},
		{name: "truncated PEM", data: string(pubPEM[:40]), public: "malformed PEM", secret: "PEM block", private: "malformed PEM"},
		{name: "encrypted PEM", data: "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END PRIVATE KEY-----\n", public: "headers", secret: "PEM block", private: "headers"},
		// Each of these could be an Ed25519 key: refused as a secret.
		{name: "JWK", data: jwk, public: "JSON (a JWK?)", secret: "JSON (a JWK?)", private: "JSON"},
		{name: "raw 32 bytes", data: string(raw), public: "exactly 32 bytes", secret: "exactly 32 bytes", private: "exactly 32 bytes"},
		{name: "hex of 32 bytes", data: hex.EncodeToString(raw) + "\n", public: "hex of 32 bytes", secret: "hex of 32 bytes", private: "hex of 32 bytes"},
		{name: "base64 of 32 bytes", data: base64.StdEncoding.EncodeToString(raw), public: "base64 of 32 bytes", secret: "base64 of 32 bytes", private: "base64"},
		{name: "base64url of 32 bytes, unpadded", data: base64.RawURLEncoding.EncodeToString(raw) + "\n", public: "base64 of 32 bytes", secret: "base64 of 32 bytes", private: "base64"},
		{name: "base64 of a 64-byte private key", data: base64.StdEncoding.EncodeToString(make([]byte, 64)), public: "base64 of 64 bytes", secret: "base64 of 64 bytes", private: "base64"},
		{name: "Ed25519 public key in base64 (PKIX)", data: pubBase64 + "\n", public: "Ed25519 public key in base64", secret: "Ed25519 public key in base64", private: "public key in base64"},
		{name: "OpenSSH public key", data: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0b3AgY29udGFjdHMgb25seSB3aGVuIGFsbG93ZWQ= me@host\n", public: "OpenSSH", secret: "OpenSSH", private: "OpenSSH"},
		// Secrets.
		{name: "secret, 40 bytes", data: secret40, public: "not PEM", secret: auth.AlgHS256, private: "not PEM"},
		{name: "secret, 40 bytes and a newline", data: secret40 + "\n", public: "not PEM", secret: auth.AlgHS256, private: "not PEM"},
		{name: "secret, 40 bytes and CRLF", data: secret40 + "\r\n", public: "not PEM", secret: auth.AlgHS256, private: "not PEM"},
		{name: "secret, base64 of 48 bytes", data: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("contactstop!", 4))) + "\n", public: "not PEM", secret: auth.AlgHS256, private: "not PEM"},
		{name: "secret, 31 bytes and a newline", data: secret40[:31] + "\n", public: "not PEM", secret: "31 bytes; at least 32", private: "not PEM"},
		{name: "empty file", data: "", public: "not PEM", secret: "0 bytes", private: "not PEM"},
		{name: "binary secret", data: "\x00\xff" + secret40, public: "not PEM", secret: auth.AlgHS256, private: "not PEM"},
	}
	check := func(t *testing.T, what, want string, alg string, err error) {
		t.Helper()
		if want == auth.AlgEdDSA || want == auth.AlgHS256 {
			require.NoError(t, err, what)
			require.Equal(t, want, alg, what)
			return
		}
		require.ErrorIs(t, err, auth.ErrInvalidKey, what)
		require.ErrorContains(t, err, want, what)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := auth.ParsePublicKey([]byte(tc.data))
			check(t, "public key", tc.public, k.Algorithm(), err)
			k, err = auth.ParseHS256Secret([]byte(tc.data))
			check(t, "secret", tc.secret, k.Algorithm(), err)
			sk, err := auth.ParseHS256SigningSecret([]byte(tc.data))
			check(t, "signing secret", tc.secret, sk.Algorithm(), err)
			sk, err = auth.ParsePrivateKey([]byte(tc.data))
			check(t, "private key", tc.private, sk.Algorithm(), err)
		})
	}
}

// TestSecretNewlineIsPartOfNothing proves that a secret file written with a
// trailing newline verifies tokens signed with the same secret without it.
func TestSecretNewlineIsPartOfNothing(t *testing.T) {
	t.Parallel()
	sk, err := auth.ParseHS256SigningSecret(hsSecret)
	require.NoError(t, err)
	vk, err := auth.ParseHS256Secret(append(append([]byte{}, hsSecret...), '\n'))
	require.NoError(t, err)
	_, err = newVerifier(t, 0, vk).Authorize(issue(t, sk, claims()), auth.ActionStop, auth.ContactResource("acme", "c1"))
	require.NoError(t, err)
}

func TestLoadKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	privPEM, pubPEM, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	pub := write("acme-2026.pub.pem", pubPEM)
	priv := write("acme-2026.pem", privPEM)
	secret := write("hs.secret", append(append([]byte{}, hsSecret...), '\n'))

	k, err := auth.LoadPublicKeyFile(pub)
	require.NoError(t, err)
	require.Equal(t, "acme-2026", k.ID)
	require.Equal(t, auth.AlgEdDSA, k.Algorithm())
	hk, err := auth.LoadHS256SecretFile(secret)
	require.NoError(t, err)
	require.Equal(t, "hs", hk.ID)

	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{k, hk}})
	require.NoError(t, err)
	require.Equal(t, []string{auth.AlgEdDSA, auth.AlgHS256}, v.Algorithms())

	sk, err := auth.LoadPrivateKeyFile(priv)
	require.NoError(t, err)
	require.Empty(t, sk.ID)
	tok, err := auth.Issue(sk, auth.Claims{
		Subject: "dev", ExpiresAt: farFuture,
		Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"*"}}},
	})
	require.NoError(t, err)
	_, err = v.Authorize(tok, auth.ActionStop, auth.ContactResource("acme", "c1"))
	require.NoError(t, err)
	hsk, err := auth.LoadHS256SigningSecretFile(secret)
	require.NoError(t, err)
	require.Equal(t, auth.AlgHS256, hsk.Algorithm())

	_, err = auth.LoadPublicKeyFile(filepath.Join(dir, "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = auth.LoadPublicKeyFile(priv)
	require.ErrorIs(t, err, auth.ErrInvalidKey)
	require.ErrorContains(t, err, priv, "the error names the file")
	_, err = auth.LoadPublicKeyFile(secret)
	require.ErrorContains(t, err, "--auth-hs256-secret", "a secret given as a public key says where secrets go")
	_, err = auth.LoadHS256SecretFile(pub)
	require.ErrorContains(t, err, "PEM block")
	_, err = auth.LoadPrivateKeyFile(pub)
	require.ErrorIs(t, err, auth.ErrInvalidKey)
	big := write("big", make([]byte, 70<<10))
	_, err = auth.LoadPublicKeyFile(big)
	require.ErrorContains(t, err, "larger than")
}
