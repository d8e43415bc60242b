package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

// runToken executes `contactstop token ARGS…` and returns its stdout.
func runToken(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newTokenCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestTokenKeygenAndIssue(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	out, err := runToken(t, "keygen", "--out", dir)
	require.NoError(t, err)
	priv, pub := filepath.Join(dir, "ed25519.pem"), filepath.Join(dir, "ed25519.pub.pem")
	require.Contains(t, out, priv)
	require.Contains(t, out, pub)
	st, err := os.Stat(priv)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the private key is readable by its owner only")

	_, err = runToken(t, "keygen", "--out", dir)
	require.ErrorContains(t, err, "exists; not overwriting")

	out, err = runToken(t, "issue", "--key", priv, "--sub", "dev",
		"--allow", "contact:Stop:instance/acme/contact/*",
		"--allow", "contact:BulkStop:instance/acme",
		"--allow", "contact:Stop:instance/globex/contact/sip:+1-555:x", // colons in the resource
		"--ttl", "10m")
	require.NoError(t, err)
	token := strings.TrimSuffix(out, "\n")
	require.NotContains(t, token, "\n")

	pk, err := auth.LoadPublicKeyFile(pub)
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{pk}})
	require.NoError(t, err)
	c, err := v.Authorize(token, auth.ActionStop, auth.ContactResource("acme", "c1"))
	require.NoError(t, err)
	require.Equal(t, "dev", c.Subject)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), c.ExpiresAt, 5*time.Second)
	require.Equal(t, []auth.Grant{
		{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/*", "instance/globex/contact/sip:+1-555:x"}},
		{Actions: []auth.Action{auth.ActionBulkStop}, Resources: []string{"instance/acme"}},
	}, c.Grants)
	_, err = v.Authorize(token, auth.ActionStop, auth.ContactResource("globex", "sip:+1-555:x"))
	require.NoError(t, err)
	_, err = v.Authorize(token, auth.ActionBulkStop, auth.InstanceResource("acme"))
	require.NoError(t, err)
	_, err = v.Authorize(token, auth.ActionStop, auth.ContactResource("globex", "c1"))
	var ae *auth.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "UNAUTHORIZED", string(ae.Code))
}

func TestTokenIssueHS256JSON(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "hs.secret")
	require.NoError(t, os.WriteFile(secret, []byte("a-development-secret-of-32-bytes-or-more\n"), 0o600))
	out, err := runToken(t, "issue", "--hs256-secret", secret, "--sub", "ops", "--allow", "contact:*:*", "--kid", "hs", "--json")
	require.NoError(t, err)
	var got struct {
		Token, Sub, Alg, Kid string
		ExpiresAt            time.Time
		Grants               []auth.Grant
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, "ops", got.Sub)
	require.Equal(t, "HS256", got.Alg)
	require.Equal(t, "hs", got.Kid)
	require.WithinDuration(t, time.Now().Add(time.Hour), got.ExpiresAt, 5*time.Second, "the default ttl is 1h")

	hk, err := auth.LoadHS256SecretFile(secret)
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{hk}})
	require.NoError(t, err)
	c, err := v.Authorize(got.Token, auth.ActionBulkStop, auth.InstanceResource("anything"))
	require.NoError(t, err)
	require.Equal(t, got.Grants, c.Grants)
}

func TestTokenIssueRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := runToken(t, "keygen", "--out", dir, "--name", "k")
	require.NoError(t, err)
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	short := filepath.Join(dir, "short.secret")
	require.NoError(t, os.WriteFile(short, []byte("too short\n"), 0o600))
	allow := "contact:Stop:instance/acme/contact/*"

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{}, []string{"give one signing key", "--sub is required", "--allow is required"}},
		{[]string{"--key", priv, "--hs256-secret", short, "--sub", "x", "--allow", allow}, []string{"give one signing key"}},
		{[]string{"--key", priv, "--sub", "x", "--allow", allow, "--ttl", "0s"}, []string{"--ttl must be positive"}},
		{[]string{"--key", priv, "--sub", "x", "--allow", "contact:Stop"}, []string{`--allow "contact:Stop": want ACTION:RESOURCE`}},
		{[]string{"--key", priv, "--sub", "x", "--allow", "contact:Stop:"}, []string{"want ACTION:RESOURCE"}},
		{[]string{"--key", priv, "--sub", "x", "--allow", "contact:stop:instance/acme"}, []string{`unknown action "contact:stop"`}},
		{[]string{"--key", priv, "--sub", "x", "--allow", "contact:Stop:tenant/acme"}, []string{"invalid resource pattern"}},
		{[]string{"--key", pub, "--sub", "x", "--allow", allow}, []string{"public key cannot sign"}},
		{[]string{"--key", short, "--sub", "x", "--allow", allow}, []string{"not PEM"}},
		{[]string{"--hs256-secret", short, "--sub", "x", "--allow", allow}, []string{"at least 32"}},
		{[]string{"--hs256-secret", pub, "--sub", "x", "--allow", allow}, []string{"PEM block"}},
		{[]string{"--key", filepath.Join(dir, "missing"), "--sub", "x", "--allow", allow}, []string{"no such file"}},
	} {
		_, err := runToken(t, append([]string{"issue"}, tc.args...)...)
		for _, w := range tc.want {
			require.ErrorContains(t, err, w, "args %q", tc.args)
		}
	}
	_, err = runToken(t, "keygen", "--out", dir, "--name", "../evil")
	require.ErrorContains(t, err, "plain file name")
	_, err = runToken(t, "keygen")
	require.ErrorContains(t, err, "--out is required")
}

func TestParseAllow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in               string
		action, resource string
	}{
		{"contact:Stop:instance/a/contact/*", "contact:Stop", "instance/a/contact/*"},
		{"contact:Stop:instance/a/contact/x:y:z", "contact:Stop", "instance/a/contact/x:y:z"},
		{"contact:*:*", "contact:*", "*"},
	} {
		a, r, err := parseAllow(tc.in)
		require.NoError(t, err)
		require.Equal(t, tc.action, string(a))
		require.Equal(t, tc.resource, r)
	}
	for _, bad := range []string{"", "contact", "contact:Stop", "contact:Stop:"} {
		_, _, err := parseAllow(bad)
		require.Error(t, err, bad)
	}
}
