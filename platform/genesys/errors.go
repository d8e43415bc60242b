package genesys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"golang.org/x/oauth2"

	"github.com/contactstop/contactstop/platform"
)

// Genesys's answers and their kinds. Sources:
//
//	[errors]  the Platform API's error body (message, code, status,
//	          contextId…: Errorbody in platformclientv2/errorbody.go of
//	          https://github.com/MyPureCloud/platform-client-sdk-go) and
//	          its common codes and statuses, as tabulated from Genesys's API
//	          definition in https://github.com/gildas/go-gcloudcx (error.go)
//	[429]     https://developer.genesys.cloud/forum/t/normalized-platform-api-429-responses/12028
//	          (every 429 carries Retry-After and code
//	          too.many.requests.retry.after)
//	[oauth]   RFC 6749 §5.2, the token endpoint's errors, as
//	          golang.org/x/oauth2 reports them (*oauth2.RetrieveError)
//	inferred  no Genesys source; the reason is given
//
//	answer                                          kind              source
//	429 too.many.requests[.retry.after]             Throttled         [429]; RetryAfter from Retry-After
//	401 credentials.expired, bad.credentials,       (renew the token  [errors]
//	    authentication.required                      and resend once)
//	401 again after the renewal                     Denied            [errors]
//	403 missing.permissions, missing.any.           Denied            [errors]
//	    permissions, not.authorized (any 403)
//	404 not.found (a Genesys error body)            NotFound          [errors]
//	404 without a Genesys error body                ResourceNotFound  inferred: no Genesys API at this address
//	409, 410 to a disconnect                        NotFound          inferred: the conversation is no longer
//	                                                                  active (undocumented for an ended one)
//	409 to another operation                        InvalidRequest    inferred
//	400 invalid.value, invalid.date                 InvalidParameter  [errors]
//	400 bad.request, any other 400                  InvalidRequest    [errors]
//	other 4xx (413, 415…)                           InvalidRequest    inferred
//	408, 5xx (500 internal.server.error,            Transient         [errors]
//	    503 service.unavailable, 504 request.
//	    timeout, authentication.request.timeout)
//	timeout, connection error, answer cut off       Transient         inferred: it may have taken effect
//	region host unknown to DNS                      ResourceNotFound  inferred
//	token request 400/401/403 (invalid_client…)     Denied            [oauth]
//	token request 404                               ResourceNotFound  inferred: no login service at this address
//	token request 429                               Throttled         inferred from [429]
//	token request 408, 5xx                          Transient         inferred
//	no OAuth client configured                      Denied            (nothing is sent)

// invalidParameterCodes are the 400 codes that name a bad value.
var invalidParameterCodes = map[string]bool{
	"invalid.value": true,
	"invalid.date":  true,
}

// apiErrorBody is the Platform API's error body (Errorbody), the parts
// read here.
type apiErrorBody struct {
	Message   string `json:"message"`
	Code      string `json:"code"`
	Status    int    `json:"status"`
	ContextID string `json:"contextId"`
}

// kindOfAnswer classifies an API answer that is not a success. genesys
// tells whether the answer had a Genesys error body (a code).
func kindOfAnswer(op string, status int, code string, genesys bool) platform.Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return platform.Throttled
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return platform.Denied
	case status == http.StatusNotFound && !genesys:
		return platform.ResourceNotFound
	case status == http.StatusNotFound:
		return platform.NotFound
	case (status == http.StatusConflict || status == http.StatusGone) && op == OpStopContact:
		return platform.NotFound
	case status == http.StatusRequestTimeout || status >= 500:
		return platform.Transient
	case status == http.StatusBadRequest && invalidParameterCodes[code]:
		return platform.InvalidParameter
	case status >= 400:
		return platform.InvalidRequest
	}
	return platform.Transient // 1xx, 3xx: not an answer the API gives
}

// classifyAnswer turns an API answer that is not a success into a
// *platform.Error.
func (c *Client) classifyAnswer(op string, status int, header http.Header, body []byte) error {
	var eb apiErrorBody
	genesys := json.Unmarshal(body, &eb) == nil && eb.Code != ""
	pe := &platform.Error{Kind: kindOfAnswer(op, status, eb.Code, genesys), Op: op, Status: status, Code: eb.Code}
	switch {
	case genesys:
		pe.Message = eb.Message
		if eb.ContextID != "" {
			pe.Message += " [contextId " + eb.ContextID + "]"
		}
	default:
		pe.Message = "HTTP " + strconv.Itoa(status) + " without a Genesys error body"
	}
	if pe.Kind == platform.Throttled {
		pe.RetryAfter, _ = platform.ParseRetryAfter(header.Get("Retry-After"), c.now())
	}
	pe.Message = c.tokens.scrub(pe.Message)
	return pe
}

// classifyToken turns a failure to get a token into a *platform.Error of
// the operation that needed it.
func (c *Client) classifyToken(op string, err error) error {
	if errors.Is(err, errNoCredentials) {
		return &platform.Error{Kind: platform.Denied, Op: op, Message: err.Error()}
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return c.classifyTransport(op, err)
	}
	pe := &platform.Error{Kind: platform.Denied, Op: op, Code: re.ErrorCode}
	if re.Response != nil {
		pe.Status = re.Response.StatusCode
	}
	switch {
	case pe.Status == http.StatusTooManyRequests:
		pe.Kind = platform.Throttled
		pe.RetryAfter, _ = platform.ParseRetryAfter(re.Response.Header.Get("Retry-After"), c.now())
	case pe.Status == http.StatusNotFound:
		pe.Kind = platform.ResourceNotFound
	case pe.Status == http.StatusRequestTimeout || pe.Status >= 500:
		pe.Kind = platform.Transient
	}
	pe.Message = "the login service refused the token request"
	if re.ErrorDescription != "" {
		pe.Message += ": " + re.ErrorDescription
	} else if pe.Status != 0 {
		pe.Message += " (HTTP " + strconv.Itoa(pe.Status) + ")"
	}
	pe.Message = c.tokens.scrub(pe.Message)
	pe.Err = c.scrubbed(err)
	return pe
}

// classifyTransport turns a request that got no answer into a
// *platform.Error: Transient (the call may have taken effect), unless the
// region's host does not exist.
func (c *Client) classifyTransport(op string, err error) error {
	pe := &platform.Error{Kind: platform.Transient, Op: op, Err: c.scrubbed(err)}
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		pe.Message = fmt.Sprintf("no answer within %v", c.timeout)
	case errors.Is(err, context.Canceled):
		pe.Message = "canceled"
	case errors.As(err, &dns) && dns.IsNotFound:
		pe.Kind = platform.ResourceNotFound
		pe.Message = "the host " + dns.Name + " does not exist (is the region right?)"
	}
	return pe
}

// scrubbed is err, or, if its text shows a secret, its scrubbed text.
func (c *Client) scrubbed(err error) error {
	if err == nil {
		return nil
	}
	if text := err.Error(); c.tokens.scrub(text) != text {
		return errors.New(c.tokens.scrub(text))
	}
	return err
}
