package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

func TestParseKey(t *testing.T) {
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
	secret32 := strings.Repeat("s", 32)

	tests := []struct {
		name    string
		data    string
		alg     string // verification key's algorithm, "" if refused
		signAlg string // signing key's algorithm, "" if refused
		want    string // expected error text of the refusals
		signErr string // of ParseSigningKey's refusal, when it differs
	}{
		{name: "Ed25519 public key", data: string(pubPEM), alg: auth.AlgEdDSA, want: "public key cannot sign"},
		{name: "Ed25519 public key with blank lines around", data: "\n\n" + string(pubPEM) + "\n\n", alg: auth.AlgEdDSA, want: "public key cannot sign"},
		{name: "Ed25519 private key", data: string(privPEM), signAlg: auth.AlgEdDSA, want: "a private key"},
		{name: "ECDSA public key", data: string(ecPubPEM), want: "ECDSA public key; only Ed25519", signErr: "public key cannot sign"},
		{name: "ECDSA private key", data: string(ecPrivPEM), want: "a private key", signErr: "ECDSA private key; only Ed25519"},
		{name: "two PEM blocks", data: string(pubPEM) + string(pubPEM), want: "more than one PEM block"},
		{name: "PEM after text", data: "secret-secret-secret-secret-secret\n" + string(pubPEM), want: "PEM block after other text"},
		{name: "truncated PEM", data: string(pubPEM[:40]), want: "malformed PEM"},
		{name: "certificate", data: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", want: `"CERTIFICATE"`},
		{name: "encrypted PEM", data: "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END PRIVATE KEY-----\n", want: "headers"},
		{name: "Ed25519 public key in base64", data: pubBase64 + "\n", want: "Ed25519 public key in base64"},
		{name: "OpenSSH public key", data: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0b3AgY29udGFjdHMgb25seSB3aGVuIGFsbG93ZWQ= me@host\n", want: "OpenSSH"},
		{name: "secret, 32 bytes", data: secret32, alg: auth.AlgHS256, signAlg: auth.AlgHS256},
		{name: "secret, 32 bytes and a newline", data: secret32 + "\n", alg: auth.AlgHS256, signAlg: auth.AlgHS256},
		{name: "secret, 32 bytes and CRLF", data: secret32 + "\r\n", alg: auth.AlgHS256, signAlg: auth.AlgHS256},
		{name: "secret, 31 bytes and a newline", data: secret32[1:] + "\n", want: "31 bytes; at least 32"},
		{name: "secret, 31 bytes and two newlines", data: secret32[1:] + "\n\n", alg: auth.AlgHS256, signAlg: auth.AlgHS256}, // only one newline is trimmed
		{name: "empty file", data: "", want: "0 bytes"},
		{name: "binary secret", data: "\x00\xff" + secret32, alg: auth.AlgHS256, signAlg: auth.AlgHS256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := auth.ParseKey([]byte(tc.data))
			if tc.alg != "" {
				require.NoError(t, err)
				require.Equal(t, tc.alg, k.Algorithm())
			} else {
				require.ErrorIs(t, err, auth.ErrInvalidKey)
				require.ErrorContains(t, err, tc.want)
			}
			sk, err := auth.ParseSigningKey([]byte(tc.data))
			if tc.signAlg != "" {
				require.NoError(t, err)
				require.Equal(t, tc.signAlg, sk.Algorithm())
			} else {
				require.ErrorIs(t, err, auth.ErrInvalidKey)
				want := tc.want
				if tc.signErr != "" {
					want = tc.signErr
				}
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// TestSecretNewlineIsPartOfNothing proves that a secret file written with a
// trailing newline verifies tokens signed with the same secret without it.
func TestSecretNewlineIsPartOfNothing(t *testing.T) {
	t.Parallel()
	sk, err := auth.ParseSigningKey(hsSecret)
	require.NoError(t, err)
	vk, err := auth.ParseKey(append(append([]byte{}, hsSecret...), '\n'))
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

	k, err := auth.LoadKeyFile(pub)
	require.NoError(t, err)
	require.Equal(t, "acme-2026", k.ID)
	require.Equal(t, auth.AlgEdDSA, k.Algorithm())

	v, err := auth.LoadKeyFiles([]string{pub, secret})
	require.NoError(t, err)
	require.Equal(t, []string{auth.AlgEdDSA, auth.AlgHS256}, v.Algorithms())

	sk, err := auth.LoadSigningKeyFile(priv)
	require.NoError(t, err)
	require.Empty(t, sk.ID)
	tok, err := auth.Issue(sk, auth.Claims{
		Subject: "dev", ExpiresAt: farFuture,
		Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"*"}}},
	})
	require.NoError(t, err)
	_, err = v.Authorize(tok, auth.ActionStop, auth.ContactResource("acme", "c1"))
	require.NoError(t, err)

	_, err = auth.LoadKeyFiles(nil)
	require.ErrorContains(t, err, "at least one key")
	_, err = auth.LoadKeyFiles([]string{pub, filepath.Join(dir, "missing.pem")})
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = auth.LoadKeyFile(priv)
	require.ErrorIs(t, err, auth.ErrInvalidKey)
	require.ErrorContains(t, err, priv, "the error names the file")
	_, err = auth.LoadSigningKeyFile(pub)
	require.ErrorIs(t, err, auth.ErrInvalidKey)
	big := write("big", make([]byte, 70<<10))
	_, err = auth.LoadKeyFile(big)
	require.ErrorContains(t, err, "larger than")
}
