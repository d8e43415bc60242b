package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
)

// serveErr runs serve with args, for at most 20 s, and returns its error.
func serveErr(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	root := newRootCmd()
	root.SetArgs(append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "error"}, args...))
	return root.ExecuteContext(ctx)
}

// Finding 3: key files are typed. Anything that could be read as a key of
// the other kind is refused at start, naming the file and why.
func TestServeRefusesAmbiguousKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, pubPEM, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		return p
	}
	files := map[string]string{
		"jwk":         `{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`,
		"raw":         string(pub),
		"hex":         hex.EncodeToString(pub) + "\n",
		"base64":      base64.StdEncoding.EncodeToString(pub) + "\n",
		"base64url":   base64.RawURLEncoding.EncodeToString(pub),
		"pem-as-hmac": string(pubPEM),
	}
	for name, data := range files {
		path := write(name, data)
		if name != "pem-as-hmac" {
			err := serveErr(t, "--listen", "127.0.0.1:-1", "--auth-key", path)
			require.ErrorContains(t, err, "--auth-key", name)
			require.ErrorContains(t, err, path, "%s: the error names the file", name)
		}
		err := serveErr(t, "--listen", "127.0.0.1:-1", "--auth-hs256-secret", path)
		require.ErrorContains(t, err, "--auth-hs256-secret", name)
		require.ErrorContains(t, err, "could be a key", name)
	}
}

// Finding 4: safe defaults. The embedded server does not listen on the
// network without client authentication unless told to, and the image's
// --require-auth refuses to run without verification keys.
func TestServeRefusesOpenNetworkListener(t *testing.T) {
	t.Parallel()
	err := serveErr(t, "--listen", "0.0.0.0:"+strings.Split(freeAddr(t), ":")[1])
	require.ErrorContains(t, err, "refusing to listen on the network without client authentication")
	require.ErrorContains(t, err, "--allow-open")
	err = serveErr(t, "--listen", "127.0.0.1:-1", "--require-auth")
	require.ErrorContains(t, err, "--require-auth")

	// With authentication, or opted out, it starts (and stops at the
	// context's end without an error).
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:" + strings.Split(freeAddr(t), ":")[1], "--nats-user", "worker", "--nats-password", "a-password"},
		{"--listen", "0.0.0.0:" + strings.Split(freeAddr(t), ":")[1], "--allow-open"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		root := newRootCmd()
		root.SetArgs(append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "error"}, args...))
		require.NoError(t, root.ExecuteContext(ctx), "%q", args)
		cancel()
	}
}

// Finding 4: a stream, consumer or bucket that disappears is created
// again, and requests flow again.
func TestServeRecreatesWhatDisappears(t *testing.T) {
	t.Parallel()
	url, opsAddr := startServe(t)

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	// Deleting streams is slow on a loaded machine (-race, the other
	// tests in parallel): more than nats.go's default 5 s at times.
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	require.NoError(t, err)
	// serve opens the budgets bucket after the streams: wait for it.
	require.Eventually(t, func() bool {
		_, err := js.KeyValue(t.Context(), "contactstop-budgets")
		return err == nil
	}, 30*time.Second, 50*time.Millisecond)
	start := time.Now()
	require.NoError(t, js.DeleteStream(t.Context(), events.StreamRequests))
	require.NoError(t, js.DeleteKeyValue(t.Context(), "contactstop-contacts"))
	require.NoError(t, js.DeleteKeyValue(t.Context(), "contactstop-budgets"))
	_, err = js.Stream(t.Context(), events.StreamRequests)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	t.Logf("deleted the requests stream and two buckets in %s", time.Since(start).Round(time.Millisecond))

	// Within a few seconds all are back, and a request is stopped.
	require.Eventually(t, func() bool {
		_, err1 := js.Stream(t.Context(), events.StreamRequests)
		_, err2 := js.Stream(t.Context(), "KV_contactstop-contacts")
		_, err3 := js.Stream(t.Context(), "KV_contactstop-budgets")
		return err1 == nil && err2 == nil && err3 == nil
	}, 30*time.Second, 100*time.Millisecond)
	_, err = run(t, "contacts", "put", "--nats-url", url, "--instance", "acme", "--contact", "c1")
	require.NoError(t, err)
	out, err := run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "c1", "--wait", "--timeout", "20s")
	require.NoError(t, err, out)
	require.Contains(t, out, "stopped contact")
	body, code := httpGet(t, "http://"+opsAddr+"/readyz")
	require.Equal(t, 200, code, body)
}
