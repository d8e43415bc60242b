package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
)

// v1Caller is who makes a call: the verified token when authorization is on.
type v1Caller struct {
	// open: authorization is off; everything is allowed.
	open   bool
	token  string
	claims auth.Claims
}

// canRead reports whether the caller may read the instance: contact:Read
// or contact:BulkStop (contact:* covers both) on instance/<id>.
func (c *v1Caller) canRead(instanceID string) bool {
	if c.open {
		return true
	}
	res := auth.InstanceResource(instanceID)
	return c.claims.Allows(auth.ActionRead, res) || c.claims.Allows(auth.ActionBulkStop, res)
}

// canReadAll reports whether the caller may read what belongs to no valid
// instance (dead letters of requests whose instance could not be read):
// only with authorization off.
func (c *v1Caller) canReadAll() bool { return c.open }

// v1Bearer returns the token of an "Authorization: Bearer" header, or "".
func v1Bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate verifies the caller's token when authorization is on. With
// queryToken the token may also come as ?access_token= (RFC 6750 §2.3),
// which only /v1/events accepts: a browser's EventSource cannot send
// headers. It answers 401 and returns false when the token is missing or
// does not verify.
func (a *V1) authenticate(w http.ResponseWriter, r *http.Request, queryToken bool) (*v1Caller, bool) {
	if a.cfg.Verifier == nil {
		return &v1Caller{open: true}, true
	}
	token := v1Bearer(r)
	if token == "" && queryToken {
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		v1WriteError(w, http.StatusUnauthorized, string(events.ReasonInvalidSecurityUser),
			"authorization is on: send a security-user token as Authorization: Bearer <token>", "")
		return nil, false
	}
	claims, err := a.cfg.Verifier.Verify(token)
	if err != nil {
		a.writeAuthError(w, r, err)
		return nil, false
	}
	return &v1Caller{token: token, claims: claims}, true
}

// readable authenticates the caller and checks that it may read the
// instance, answering 401 or 403 otherwise.
func (a *V1) readable(w http.ResponseWriter, r *http.Request, instanceID string) (*v1Caller, bool) {
	c, ok := a.authenticate(w, r, false)
	if !ok {
		return nil, false
	}
	if !c.canRead(instanceID) {
		v1WriteError(w, http.StatusForbidden, string(events.ReasonUnauthorized),
			"the token is not granted contact:Read or contact:BulkStop on "+auth.InstanceResource(instanceID), "")
		return nil, false
	}
	return c, true
}

// authorize checks, for a write, that the caller's token grants action on
// resource now (the worker checks it again when it takes the request on),
// answering 401 or 403 otherwise.
func (a *V1) authorize(w http.ResponseWriter, r *http.Request, action auth.Action, resource string) (*v1Caller, bool) {
	if a.cfg.Verifier == nil {
		return &v1Caller{open: true}, true
	}
	token := v1Bearer(r)
	if token == "" {
		v1WriteError(w, http.StatusUnauthorized, string(events.ReasonInvalidSecurityUser),
			"authorization is on: send a security-user token as Authorization: Bearer <token>", "")
		return nil, false
	}
	claims, err := a.cfg.Verifier.Authorize(token, action, resource)
	if err != nil {
		a.writeAuthError(w, r, err)
		return nil, false
	}
	return &v1Caller{token: token, claims: claims}, true
}

// writeAuthError answers 401 for INVALID_SECURITY_USER and 403 for
// UNAUTHORIZED with the refusal's reason, which never holds the token.
func (a *V1) writeAuthError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		a.writeInternal(w, r, "checking the token", err)
		return
	}
	status := http.StatusUnauthorized
	if ae.Code == events.ReasonUnauthorized {
		status = http.StatusForbidden
	}
	v1WriteError(w, status, string(ae.Code), ae.Reason, "")
}

func v1ZapPath(r *http.Request) zap.Field { return zap.String("path", r.URL.Path) }
func v1ZapErr(err error) zap.Field        { return zap.Error(err) }
