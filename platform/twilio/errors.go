package twilio

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/contactstop/contactstop/platform"
)

// Twilio's answers and what they are (the README's table, "Ending contacts
// on Twilio"). twilio-go returns Twilio's error body as
// *client.TwilioRestError {Status, Code, Message, MoreInfo}; the HTTP
// status and headers come from the answer itself. Rows marked inferred
// are not stated by Twilio's documentation.
//
//	Twilio's answer                                   Kind               contactstop
//	2xx to the update                                 (success)          contact.stopped
//	429, error 20429 "Too Many Requests" [1]          Throttled          retried within the budget, RetryAfter
//	                                                                     from Retry-After when present (Twilio
//	                                                                     documents none: inferred)
//	404, error 20404, task of an existing workspace,  NotFound           CONTACT_NOT_FOUND
//	  or call [2]
//	404 and FetchWorkspace 404 (Twilio answers 20404  ResourceNotFound   RESOURCE_NOT_FOUND
//	  for both: told apart by asking) [inferred]
//	fetched task wrapping, completed or canceled;     NotFound           CONTACT_NOT_FOUND
//	  fetched call ended [3][4]
//	412, error 20412 to the conditional update [5]    (fetch again and   —
//	                                                  retry, at most
//	                                                  MaxConditionalAttempts
//	                                                  updates) then Transient
//	400, error 21220 to UpdateCall (the call ended    NotFound           CONTACT_NOT_FOUND
//	  meanwhile) [inferred]
//	401, error 20003 [6]; 403 (20403, a restricted    Denied             INTERNAL_ERROR (retryable), logged
//	  API key without the permission) [7]; no or
//	  malformed credentials (client side)
//	400, any other code (a parameter refused) [8]     InvalidParameter   INVALID_PARAMETER
//	other 4xx (405 20004, 409, 415…) [inferred]       InvalidRequest     INVALID_REQUEST
//	408, 5xx (20500, 20503, 502, 504), 3xx, an        Transient          retried within the budget;
//	  answer that is not Twilio's JSON, timeouts,                        INTERNAL_ERROR (retryable) at last
//	  connection errors [inferred from HTTP]
//
//	[1] https://www.twilio.com/docs/api/errors/20429 ("Requests that receive
//	    429 responses aren't processed and are safe to retry");
//	    https://help.twilio.com/hc/en-us/articles/360044308153-Twilio-API-response-Error-429-Too-Many-Requests-
//	[2] 404 with code 20404 "The requested resource … was not found", as
//	    Twilio's support quotes it: https://support.twilio.com/hc/en-us/articles/50009103572635
//	    (the code's own page, https://www.twilio.com/docs/api/errors/20404,
//	    was not read)
//	[3] https://www.twilio.com/docs/taskrouter/lifecycle-task-state
//	[4] https://www.twilio.com/docs/voice/api/call-resource#call-status-values
//	[5] https://www.twilio.com/docs/usage/mutation-and-conflict-resolution;
//	    https://support.twilio.com/hc/en-us/articles/36390409312923 (error 20412)
//	[6] https://www.twilio.com/docs/api/errors/20003
//	[7] https://www.twilio.com/docs/iam/api-keys/restricted-api-keys
//	[8] https://www.twilio.com/docs/api/errors/400
const (
	codeAuthenticate        = 20003
	codeNotFound            = 20404
	codePreconditionFailed  = 20412
	codeTooManyRequests     = 20429
	codeInvalidCallState    = 21220
	codeIllegalUsernameChar = 21222 // twilio-go's own, before any request
	codeIllegalPasswordChar = 21224
)

// kindOfAnswer classifies an HTTP answer by its status and Twilio's code.
func kindOfAnswer(status, code int) platform.Kind {
	switch {
	case status == http.StatusTooManyRequests || code == codeTooManyRequests:
		return platform.Throttled
	case status == http.StatusUnauthorized || status == http.StatusForbidden || code == codeAuthenticate:
		return platform.Denied
	case status == http.StatusNotFound || code == codeNotFound:
		return platform.NotFound
	case status == http.StatusRequestTimeout || status >= 500:
		return platform.Transient
	case status == http.StatusBadRequest:
		return platform.InvalidParameter
	case status >= 400:
		return platform.InvalidRequest
	}
	return platform.Transient // 1xx, 3xx, a 2xx whose body did not decode
}

// classify turns a failed request of the session's call into a
// *platform.Error. Nothing in it holds a credential.
func (s *session) classify(apiOp string, err error) *platform.Error {
	pe := &platform.Error{Kind: platform.Transient, Op: s.op}
	a := s.rec.answer()
	code := 0
	var tre *client.TwilioRestError
	var v1 *client.RestErrorV1
	switch {
	case errors.As(err, &tre):
		code, pe.Message = tre.Code, tre.Message
	case errors.As(err, &v1):
		code, pe.Message = v1.Code, v1.Message
	}
	if code != 0 {
		pe.Code = strconv.Itoa(code)
	}
	switch {
	case a == nil && (code == codeIllegalUsernameChar || code == codeIllegalPasswordChar):
		pe.Kind = platform.Denied
		pe.Message = "twilio-go refused the credentials' characters"
	case a != nil:
		pe.Status = a.status
		pe.Kind = kindOfAnswer(a.status, code)
		if pe.Message == "" {
			switch {
			case errors.Is(err, errNoAnswer):
				pe.Message = fmt.Sprintf("%s answered HTTP %d", apiOp, a.status)
			case a.status >= 200 && a.status < 300:
				pe.Message = "the answer did not decode"
			default:
				pe.Message = fmt.Sprintf("HTTP %d without Twilio's error body", a.status)
			}
		}
	}
	if pe.Kind == platform.Transient {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			pe.Message = fmt.Sprintf("no answer within %v", s.c.timeout)
		case errors.Is(err, context.Canceled):
			pe.Message = "canceled"
		}
	}
	if pe.Kind == platform.Throttled && a != nil {
		pe.RetryAfter, _ = platform.ParseRetryAfter(a.header.Get("Retry-After"), time.Now())
	}
	pe.Message = s.c.scrub(pe.Message)
	pe.Err = fmt.Errorf("%s: %w", apiOp, err)
	if text := pe.Err.Error(); s.c.scrub(text) != text {
		// The chain would show a credential: keep only its scrubbed text.
		pe.Err = errors.New(s.c.scrub(text))
	}
	return pe
}

// scrub replaces in s every secret the client holds: the auth token or API
// secret, and the Basic credentials they are sent in.
func (c *Client) scrub(s string) string {
	if s == "" {
		return s
	}
	for _, secret := range c.secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	if c.username != "" && c.password != "" {
		s = strings.ReplaceAll(s, base64.StdEncoding.EncodeToString([]byte(c.username+":"+c.password)), "[REDACTED]")
	}
	return s
}
