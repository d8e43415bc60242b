package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/sigv4"
)

const (
	keyID  = "AKIDTESTKEY0000001"
	secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t"
)

// signed returns a request signed as the SDK signs it, with body.
func signed(t *testing.T, id, key, region string, at time.Time, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://api.example:8080/contact/stop", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Amz-Sdk-Invocation-Id", "inv-1")
	sum := sha256.Sum256(body)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: key}, r,
		hex.EncodeToString(sum[:]), "connect", region, at)
	require.NoError(t, err)
	return r
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	body := []byte(`{"ContactId":"c-1","InstanceId":"acme"}`)
	v := &sigv4.Verifier{
		Service: "connect",
		Secret: func(id string) (string, bool) {
			return secret, id == keyID
		},
		Now: func() time.Time { return now },
	}
	for _, tc := range []struct {
		name    string
		req     func() *http.Request
		body    []byte
		region  string
		wantErr string
	}{
		{"valid", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now, body) }, body, "", ""},
		{"any region by default", func() *http.Request { return signed(t, keyID, secret, "ap-south-2", now, body) }, body, "", ""},
		{"configured region", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now, body) }, body, "eu-west-1", ""},
		{"other region", func() *http.Request { return signed(t, keyID, secret, "us-east-1", now, body) }, body, "eu-west-1", sigv4.CodeInvalidSignature},
		{"wrong secret", func() *http.Request { return signed(t, keyID, "not-the-secret", "eu-west-1", now, body) }, body, "", sigv4.CodeInvalidSignature},
		{"unknown key", func() *http.Request { return signed(t, "AKIDUNKNOWN", secret, "eu-west-1", now, body) }, body, "", sigv4.CodeUnknownKey},
		{"tampered body", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now, body) }, []byte(`{"ContactId":"c-2","InstanceId":"acme"}`), "", sigv4.CodeInvalidSignature},
		{"tampered signed header", func() *http.Request {
			r := signed(t, keyID, secret, "eu-west-1", now, body)
			r.Header.Set("Amz-Sdk-Invocation-Id", "inv-2")
			return r
		}, body, "", sigv4.CodeInvalidSignature},
		{"too old", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now.Add(-16*time.Minute), body) }, body, "", sigv4.CodeInvalidSignature},
		{"too new", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now.Add(16*time.Minute), body) }, body, "", sigv4.CodeInvalidSignature},
		{"within skew", func() *http.Request { return signed(t, keyID, secret, "eu-west-1", now.Add(-14*time.Minute), body) }, body, "", ""},
		{"no authorization", func() *http.Request {
			r := signed(t, keyID, secret, "eu-west-1", now, body)
			r.Header.Del("Authorization")
			return r
		}, body, "", sigv4.CodeMissingToken},
		{"other scheme", func() *http.Request {
			r := signed(t, keyID, secret, "eu-west-1", now, body)
			r.Header.Set("Authorization", "Bearer x")
			return r
		}, body, "", sigv4.CodeIncomplete},
		{"other service", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "http://api.example/contact/stop", bytes.NewReader(body))
			sum := sha256.Sum256(body)
			require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}, r,
				hex.EncodeToString(sum[:]), "s3", "eu-west-1", now))
			return r
		}, body, "", sigv4.CodeInvalidSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vv := *v
			vv.Region = tc.region
			id, err := vv.Verify(tc.req(), tc.body)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, keyID, id)
				return
			}
			var se *sigv4.Error
			require.True(t, errors.As(err, &se), "got %v", err)
			require.Equal(t, tc.wantErr, se.Code)
			require.NotContains(t, se.Message, secret)
			require.Empty(t, id)
		})
	}
}
