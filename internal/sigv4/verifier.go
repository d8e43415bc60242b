// Package sigv4 verifies AWS Signature Version 4 (the AWS4-HMAC-SHA256
// Authorization header) on requests that an AWS SDK signed, by signing the
// request again, as received, with the SDK's own signer and the secret of
// the request's access key.
//
// It is what serve's POST /contact/stop (the StopContact-compatible API)
// and the Amazon Connect fake (connecttest) check signatures with.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// DefaultMaxSkew is how far a request's X-Amz-Date may be from the
// server's clock, as AWS allows.
const DefaultMaxSkew = 15 * time.Minute

const algorithm = "AWS4-HMAC-SHA256"

// The codes of Error: the exception types AWS front ends answer a refused
// signature with (all HTTP 403).
const (
	// CodeMissingToken: no Authorization header.
	CodeMissingToken = "MissingAuthenticationTokenException"
	// CodeIncomplete: an Authorization header or X-Amz-Date that does not
	// parse.
	CodeIncomplete = "IncompleteSignatureException"
	// CodeUnknownKey: the access key is not known.
	CodeUnknownKey = "UnrecognizedClientException"
	// CodeInvalidSignature: the wrong service or region, a time too far
	// from the server's, or a signature that does not match.
	CodeInvalidSignature = "InvalidSignatureException"
)

// Error is why a request's signature was refused. Code is one of the Code…
// constants; Message is AWS's sentence for it, which never contains a
// secret (for a signature that does not match it holds the canonical
// request and string to sign, as AWS's does, so that a client can find its
// mistake).
type Error struct {
	Code    string
	Message string
}

// Error returns "<code>: <message>".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

func refuse(code, message string) *Error { return &Error{Code: code, Message: message} }

// Verifier checks signatures. The zero value is not usable: set Service and
// Secret.
type Verifier struct {
	// Service is the signing name the credential scope must name
	// ("connect").
	Service string
	// Region, when set, is the only region the credential scope may name;
	// empty accepts any region (the signature covers the region it names).
	Region string
	// MaxSkew is the largest difference allowed between X-Amz-Date and the
	// server's clock; 0 means DefaultMaxSkew.
	MaxSkew time.Duration
	// Secret returns the secret access key of an access key ID, and false
	// for an unknown one.
	Secret func(accessKeyID string) (secret string, ok bool)
	// Now is the server's clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks r's signature over the method, path, query, signed
// headers and body (the body as read, given separately since r.Body has
// been consumed) and returns the access key ID that signed it, or an
// *Error.
func (v *Verifier) Verify(r *http.Request, body []byte) (accessKeyID string, err error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", refuse(CodeMissingToken, "Missing Authentication Token")
	}
	rest, ok := strings.CutPrefix(authz, algorithm+" ")
	if !ok {
		return "", refuse(CodeIncomplete, "Unsupported authorization type")
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = val
	}
	credential, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || signedHeaders == "" || signature == "" || scope[4] != "aws4_request" {
		return "", refuse(CodeIncomplete, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
	}
	keyID, region, service := scope[0], scope[2], scope[3]
	secret, ok := v.Secret(keyID)
	if !ok {
		return "", refuse(CodeUnknownKey, "The security token included in the request is invalid.")
	}
	if region == "" || (v.Region != "" && region != v.Region) {
		return "", refuse(CodeInvalidSignature, "Credential should be scoped to a valid region, not '"+region+"'.")
	}
	if service != v.Service {
		return "", refuse(CodeInvalidSignature, "Credential should be scoped to correct service: '"+v.Service+"'.")
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != signedAt.Format("20060102") {
		return "", refuse(CodeIncomplete, "X-Amz-Date is missing, malformed or not the date of the credential scope.")
	}
	now, maxSkew := time.Now(), v.MaxSkew
	if v.Now != nil {
		now = v.Now()
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	if skew := now.Sub(signedAt); skew > maxSkew || skew < -maxSkew {
		return "", refuse(CodeInvalidSignature, "Signature expired: "+r.Header.Get("X-Amz-Date")+
			" is now earlier or later than "+strconv.Itoa(int(maxSkew/time.Minute))+" minutes from the server's time.")
	}

	// The request again, with only what the client signed.
	again := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Host:   r.Host,
		Header: http.Header{},
	}
	for name := range strings.SplitSeq(signedHeaders, ";") {
		switch name {
		case "host":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[http.CanonicalHeaderKey(name)] = r.Header.Values(name)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	var canonical, toSign string
	err = v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), v.Service, region, signedAt,
		func(o *v4.SignerOptions) {
			o.LogSigning = true
			o.Logger = logging.LoggerFunc(func(_ logging.Classification, _ string, args ...any) {
				if len(args) >= 2 {
					canonical, _ = args[0].(string)
					toSign, _ = args[1].(string)
				}
			})
		})
	if err != nil {
		return "", refuse(CodeIncomplete, "The request could not be signed again.")
	}
	if _, got, ok := strings.Cut(again.Header.Get("Authorization"), "Signature="); !ok || !hmac.Equal([]byte(got), []byte(signature)) ||
		!strings.Contains(again.Header.Get("Authorization"), "SignedHeaders="+signedHeaders+",") {
		return "", refuse(CodeInvalidSignature,
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"+
				"The Canonical String for this request should have been\n'"+canonical+"'\n\n"+
				"The String-to-Sign should have been\n'"+toSign+"'\n")
	}
	return keyID, nil
}
