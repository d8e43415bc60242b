package connecttest

import (
	"errors"
	"net/http"

	"github.com/contactstop/contactstop/internal/sigv4"
)

// service is Amazon Connect's signing name.
const service = "connect"

// authenticate checks r's AWS Signature Version 4 (the Authorization
// header) with the production verifier (internal/sigv4): the SDK's own
// signer over the same method, path, query, signed headers, payload hash
// and time, with the one access key the server knows, scoped to its
// region. It answers the way AWS front ends do when the check fails, all
// 403s the SDK decodes by X-Amzn-ErrorType:
// MissingAuthenticationTokenException (no Authorization),
// IncompleteSignatureException (malformed), UnrecognizedClientException
// (unknown access key), InvalidSignatureException (wrong scope, expired,
// or a signature that does not match; the message then holds the canonical
// string, as AWS's does).
func (s *Server) authenticate(r *http.Request, body []byte) (answer, bool) {
	v := sigv4.Verifier{
		Service: service,
		Region:  s.Region,
		Secret: func(id string) (string, bool) {
			return s.SecretAccessKey, id == s.AccessKeyID
		},
	}
	if _, err := v.Verify(r, body); err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			return apiError(http.StatusForbidden, se.Code, se.Message), false
		}
		return apiError(http.StatusForbidden, sigv4.CodeIncomplete, err.Error()), false
	}
	return answer{}, true
}
