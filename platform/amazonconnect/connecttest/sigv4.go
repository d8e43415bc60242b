package connecttest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// service is Amazon Connect's signing name.
const service = "connect"

// maxSkew is how far a request's X-Amz-Date may be from the server's
// clock, as AWS allows.
const maxSkew = 15 * time.Minute

// authenticate checks r's AWS Signature Version 4 (the Authorization
// header) by signing the request again, as received, with the secret the
// server knows: the SDK's own signer over the same method, path, query,
// signed headers, payload hash and time. It answers the way AWS front ends
// do when the check fails, all 403s the SDK decodes by X-Amzn-ErrorType:
// MissingAuthenticationTokenException (no Authorization),
// IncompleteSignatureException (malformed), UnrecognizedClientException
// (unknown access key), InvalidSignatureException (wrong scope, expired,
// or a signature that does not match; the message then holds the canonical
// string, as AWS's does).
func (s *Server) authenticate(r *http.Request, body []byte) (answer, bool) {
	const algorithm = "AWS4-HMAC-SHA256"
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return apiError(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token"), false
	}
	rest, ok := strings.CutPrefix(authz, algorithm+" ")
	if !ok {
		return apiError(http.StatusForbidden, "IncompleteSignatureException", "Unsupported authorization type"), false
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	credential, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || signedHeaders == "" || signature == "" || scope[4] != "aws4_request" {
		return apiError(http.StatusForbidden, "IncompleteSignatureException",
			"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters."), false
	}
	if scope[0] != s.AccessKeyID {
		return apiError(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid."), false
	}
	if scope[2] != s.Region {
		return apiError(http.StatusForbidden, "InvalidSignatureException",
			"Credential should be scoped to a valid region, not '"+scope[2]+"'."), false
	}
	if scope[3] != service {
		return apiError(http.StatusForbidden, "InvalidSignatureException",
			"Credential should be scoped to correct service: '"+service+"'."), false
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != signedAt.Format("20060102") {
		return apiError(http.StatusForbidden, "IncompleteSignatureException", "X-Amz-Date is missing, malformed or not the date of the credential scope."), false
	}
	if skew := time.Since(signedAt); skew > maxSkew || skew < -maxSkew {
		return apiError(http.StatusForbidden, "InvalidSignatureException", "Signature expired: "+r.Header.Get("X-Amz-Date")+" is now earlier or later than 15 minutes from the server's time."), false
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
	creds := aws.Credentials{AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	var canonical, toSign string
	err = v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), service, s.Region, signedAt,
		func(o *v4.SignerOptions) {
			o.LogSigning = true
			o.Logger = logging.LoggerFunc(func(_ logging.Classification, _ string, v ...any) {
				if len(v) >= 2 {
					canonical, _ = v[0].(string)
					toSign, _ = v[1].(string)
				}
			})
		})
	if err != nil {
		return apiError(http.StatusForbidden, "IncompleteSignatureException", "The request could not be signed again: "+err.Error()), false
	}
	if _, got, ok := strings.Cut(again.Header.Get("Authorization"), "Signature="); !ok || !hmac.Equal([]byte(got), []byte(signature)) ||
		!strings.Contains(again.Header.Get("Authorization"), "SignedHeaders="+signedHeaders+",") {
		return apiError(http.StatusForbidden, "InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"+
				"The Canonical String for this request should have been\n'"+canonical+"'\n\n"+
				"The String-to-Sign should have been\n'"+toSign+"'\n"), false
	}
	return answer{}, true
}
