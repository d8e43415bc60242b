package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/connect"
	"github.com/aws/aws-sdk-go-v2/service/connect/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
)

const apiKeysYAML = `keys:
  - accessKeyId: AKIDACME000000001
    secretAccessKey: acme-secret-0123456789abcdef
    grants:
      - actions: ["contact:Stop"]
        resources: ["instance/acme/contact/*"]
  - accessKeyId: AKIDOTHER00000001
    secretAccessKey: other-secret-0123456789abcdef
    grants:
      - actions: ["contact:Stop"]
        resources: ["instance/other/contact/*"]
`

// apiFiles writes an API keys file and an Ed25519 key pair, returning
// their paths.
func apiFiles(t *testing.T) (keys, priv, pub string) {
	t.Helper()
	dir := t.TempDir()
	privPEM, pubPEM, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	return write("api-keys.yaml", []byte(apiKeysYAML)), write("api.pem", privPEM), write("workers.pub.pem", pubPEM)
}

func connectClient(endpoint, id, secret string) *connect.Client {
	return connect.NewFromConfig(aws.Config{
		Region: "eu-central-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, nil
		}),
	}, func(o *connect.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// serve with --http, --api-keys and authorization on: the AWS SDK's
// StopContact, pointed at serve, stops a contact; the API mints the token
// the workers require.
func TestServeStopContactAPI(t *testing.T) {
	t.Parallel()
	keys, priv, pub := apiFiles(t)
	url, opsAddr := startServe(t, "--auth-key", pub, "--api-keys", keys, "--api-token-key", priv)
	_, err := run(t, "contacts", "seed", "--nats-url", url, "--instance", "acme", "--count", "2", "--queue", "billing")
	require.NoError(t, err)
	endpoint := "http://" + opsAddr

	cl := connectClient(endpoint, "AKIDACME000000001", "acme-secret-0123456789abcdef")
	_, err = cl.StopContact(t.Context(), &connect.StopContactInput{InstanceId: aws.String("acme"), ContactId: aws.String("c0"),
		DisconnectReason: &types.DisconnectReason{Code: aws.String("EMERGENCY")}})
	require.NoError(t, err)
	out, err := run(t, "contacts", "get", "--nats-url", url, "--instance", "acme", "--contact", "c0", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"state": "ENDED"`)
	require.Contains(t, out, `"disconnectReason": "EMERGENCY"`)

	// Again (a new call): the contact is no longer active.
	_, err = cl.StopContact(t.Context(), &connect.StopContactInput{InstanceId: aws.String("acme"), ContactId: aws.String("c0")})
	var nf *types.ContactNotFoundException
	require.True(t, errors.As(err, &nf), "got %v", err)

	// A key without a grant on acme is refused, and nothing changes.
	_, err = connectClient(endpoint, "AKIDOTHER00000001", "other-secret-0123456789abcdef").StopContact(t.Context(),
		&connect.StopContactInput{InstanceId: aws.String("acme"), ContactId: aws.String("c1")})
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "got %v", err)
	require.Equal(t, "AccessDeniedException", ae.ErrorCode())
	var re *smithyhttp.ResponseError
	require.True(t, errors.As(err, &re))
	require.Equal(t, http.StatusForbidden, re.HTTPStatusCode())
	out, err = run(t, "contacts", "get", "--nats-url", url, "--instance", "acme", "--contact", "c1", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"state": "QUEUED"`)
}

// serve refuses an API that could not work: no --http, authorization on
// without a token key, a token key the workers do not accept, a bad keys
// file (named, without its secrets).
func TestServeRefusesBrokenStopContactAPI(t *testing.T) {
	t.Parallel()
	keys, priv, pub := apiFiles(t)
	_, _, otherPub := apiFiles(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("keys:\n  - accessKeyId: k1\n    secretAccessKey: a-secret-that-is-long-enough\n"), 0o600))

	err := serveErr(t, "--listen", "127.0.0.1:-1", "--api-keys", keys)
	require.ErrorContains(t, err, "--api-keys needs --http")
	err = serveErr(t, "--listen", "127.0.0.1:-1", "--http", "127.0.0.1:0", "--auth-key", pub, "--api-keys", keys)
	require.ErrorContains(t, err, "needs --api-token-key")
	err = serveErr(t, "--listen", "127.0.0.1:-1", "--http", "127.0.0.1:0", "--auth-key", otherPub, "--api-keys", keys, "--api-token-key", priv)
	require.ErrorContains(t, err, "do not accept its tokens")
	err = serveErr(t, "--listen", "127.0.0.1:-1", "--http", "127.0.0.1:0", "--api-keys", bad)
	require.ErrorContains(t, err, bad)
	require.ErrorContains(t, err, "no grants")
	require.NotContains(t, err.Error(), "a-secret-that-is-long-enough")
	err = serveErr(t, "--listen", "127.0.0.1:-1", "--api-token-key", priv)
	require.ErrorContains(t, err, "need --api-keys")
}
