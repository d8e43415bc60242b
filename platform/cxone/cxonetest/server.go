// Package cxonetest is an in-process fake of NICE CXone for tests: an
// httptest server that answers CXone's API discovery, its token endpoint
// and the API operations contactstop uses, on CXone's wire format (paths,
// JSON bodies, status codes, OAuth-style error bodies), checks every API
// call's bearer token against the tokens it issued (which expire), and
// keeps the contacts of one tenant.
//
//	srv := cxonetest.New(t)
//	srv.AddContact(cxonetest.Contact{ID: "1001", SkillID: "42"})
//	cli, _ := cxone.New(ctx, cxone.Config{TenantID: srv.TenantID,
//		DiscoveryURL: srv.URL(), AccessKeyID: srv.AccessKeyID,
//		AccessKeySecret: srv.AccessKeySecret, ClientID: srv.ClientID,
//		ClientSecret: srv.ClientSecret})
//
// The operations (Op):
//
//	GET  /.well-known/cxone-configuration?tenantId=T   API discovery
//	GET  /.well-known/openid-configuration             OpenID discovery
//	POST /auth/token                                   password grant
//	POST /inContactAPI/services/{v}/contacts/{id}/end  end a contact (Admin)
//	GET  /inContactAPI/services/{v}/contacts/{id}      contact details (Reporting)
//	GET  /inContactAPI/services/{v}/contacts/{id}/state-history
//	GET  /inContactAPI/services/{v}/contacts/active     active contacts (Real-Time), top/skip
//
// Tests script it per operation: answer latency ([Server.SetLatency]),
// refusals of the next calls ([Server.FailNext] with [Throttling],
// [InternalError], [Unauthorized], [Forbidden], [InvalidContactID],
// [InvalidParameter], [InvalidRequest], [DropConnection]), answers lost
// after the call took effect ([Server.LoseNext], [Server.HangNext]), a
// quota per operation ([WithQuota]) and token lifetimes ([WithTokenTTL],
// [Server.ExpireTokens]). Every call is logged ([Server.Calls]) and every
// end that ended a contact is counted ([Server.StopEffects]).
//
// What CXone documents, and what the fake infers where it does not, is
// listed in platform/cxone's README section; the inferred answers are
// marked "inferred" below. A Server is safe for concurrent use.
package cxonetest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Op names an operation of the fake.
type Op string

// The operations of the fake. The API operations are named as
// platform/cxone names them.
const (
	OpDiscovery           Op = "Discovery"
	OpOpenIDConfiguration Op = "OpenIDConfiguration"
	OpToken               Op = "Token"
	OpStopContact         Op = "StopContact"
	OpDescribeContact     Op = "DescribeContact"
	OpStateHistory        Op = "ContactStateHistory"
	OpListActive          Op = "ListActive"
	// OpUnknown is a request for no operation of the fake.
	OpUnknown Op = "Unknown"
)

// DisconnectReasonHeader is the header platform/cxone sends a stop's
// disconnect reason in (not part of CXone's API).
const DisconnectReasonHeader = "X-Contactstop-Disconnect-Reason"

// DefaultTokenTTL is how long the tokens the fake issues last unless
// [WithTokenTTL] says otherwise: an hour, as CXone's.
const DefaultTokenTTL = time.Hour

// MediaType is CXone's media type of a contact (mediaTypeId).
type MediaType int

// CXone's media types.
const (
	MediaEmail     MediaType = 1
	MediaChat      MediaType = 3
	MediaPhoneCall MediaType = 4
	MediaVoicemail MediaType = 5
	MediaWorkItem  MediaType = 6
	MediaSMS       MediaType = 7
)

// Name is the media type's name (mediaTypeName).
func (m MediaType) Name() string {
	switch m {
	case MediaEmail:
		return "Email"
	case MediaChat:
		return "Chat"
	case MediaPhoneCall:
		return "Phone Call"
	case MediaVoicemail:
		return "Voice Mail"
	case MediaWorkItem:
		return "Work Item"
	case MediaSMS:
		return "SMS"
	}
	return "Media " + strconv.Itoa(int(m))
}

// The contact states the fake reports: CXone's state names and categories
// (the ids are the fake's).
type contactState struct {
	id             int
	name, category string
}

var (
	statePreQueue = contactState{3, "PreQueue", "Pre-Queue"}
	stateInQueue  = contactState{10, "Inqueue", "In Queue"}
	stateActive   = contactState{4, "Active", "With Agent"}
	stateEnd      = contactState{13, "EndContact", "Finished"}
)

// Contact is a contact of the tenant.
type Contact struct {
	// ID is the contact's id (CXone's contactId: a number; the fake takes
	// any string, sent as a JSON number when it is one).
	ID string
	// MediaType is the contact's media type; default MediaPhoneCall.
	MediaType MediaType
	// InitiatedAt is when the contact began. Default: when it was added,
	// or the earliest of the other times given.
	InitiatedAt time.Time
	// SkillID, when set, is the skill (queue) the contact waits in, or
	// waited in, since EnqueuedAt (default InitiatedAt). SkillName
	// defaults to "Skill "+SkillID.
	SkillID    string
	SkillName  string
	EnqueuedAt time.Time
	// AgentConnected: an agent took the contact, at ConnectedAt (default
	// EnqueuedAt, or InitiatedAt).
	AgentConnected bool
	ConnectedAt    time.Time
	// DisconnectedAt is when the contact ended; zero while it is active.
	DisconnectedAt time.Time
	// Stopped: an end call ended it (not the customer, see
	// [Server.Disconnect]); DisconnectReason is the reason header of that
	// call.
	Stopped          bool
	DisconnectReason string
}

// Active reports whether the contact has not ended.
func (c Contact) Active() bool { return c.DisconnectedAt.IsZero() }

// Call is one request the fake received.
type Call struct {
	Op Op
	// ContactID is the contact of an API call.
	ContactID string
	// DisconnectReason is a StopContact's DisconnectReasonHeader.
	DisconnectReason string
	// TenantID is a Discovery's tenantId.
	TenantID string
	// ClientAuth is how a Token request authenticated its client: "basic",
	// "post" or "".
	ClientAuth string
	// Top and Skip are a ListActive's paging.
	Top, Skip int
	At        time.Time
	// Status is the HTTP status answered; 0 when none was sent (a dropped
	// connection, a lost answer).
	Status int
	// Code is the error answered ("error" of the body), "" on success.
	Code string
	// Effect: this call ended the contact (a StopContact that ended it,
	// whether or not its answer reached the caller).
	Effect bool
}

// Fault is a scripted refusal of a call: it is answered instead of the
// call being carried out, so it never takes effect.
type Fault struct {
	// Status, Code and Message are the HTTP status and the body's error
	// and error_description. Body, when set, is sent as is instead (as
	// text/plain: a gateway's answer).
	Status  int
	Code    string
	Message string
	Body    string
	// RetryAfter, when set, is sent as the Retry-After header (seconds or
	// an HTTP date).
	RetryAfter string
	// Drop closes the connection without any answer.
	Drop bool
}

// Throttling is 429 Too Many Requests, with a Retry-After header when
// retryAfter is not "".
func Throttling(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequests", Message: "Too many requests", RetryAfter: retryAfter}
}

// InternalError is 500.
func InternalError() Fault {
	return Fault{Status: http.StatusInternalServerError, Code: "InternalServerError", Message: "An unexpected error occurred"}
}

// ServiceUnavailable is 503.
func ServiceUnavailable() Fault {
	return Fault{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "The service is unavailable"}
}

// Unauthorized is 401: the bearer token is refused (Studio's "Invalid
// Security User" branch).
func Unauthorized() Fault {
	return Fault{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "The access token is invalid or has expired"}
}

// Forbidden is 403: the access key's user lacks the permission (Studio's
// "Unauthorized" branch).
func Forbidden() Fault {
	return Fault{Status: http.StatusForbidden, Code: "Forbidden", Message: "The user does not have the permission to perform this action"}
}

// InvalidContactID is 400 about the contact id (Studio's "Invalid Contact
// ID" branch).
func InvalidContactID() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "InvalidContactId", Message: "Invalid Contact ID"}
}

// InvalidParameter is 400 about a parameter other than the contact.
func InvalidParameter() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "One or more parameters are not valid"}
}

// InvalidRequest is 409: the request cannot be carried out as it is.
func InvalidRequest() Fault {
	return Fault{Status: http.StatusConflict, Code: "Conflict", Message: "The request cannot be carried out"}
}

// DropConnection closes the connection before the call is carried out.
// Go's HTTP client replays an idempotent request (a GET) once by itself
// when a reused connection is closed this way, so a dropped GET may reach
// the fake twice.
func DropConnection() Fault { return Fault{Drop: true} }

// Option configures a Server.
type Option func(*Server)

// WithTenant sets the tenant the API discovery knows (default: a random
// one).
func WithTenant(tenantID string) Option { return func(s *Server) { s.TenantID = tenantID } }

// WithCredentials sets the access key the token endpoint accepts (default:
// a random one).
func WithCredentials(accessKeyID, accessKeySecret string) Option {
	return func(s *Server) { s.AccessKeyID, s.AccessKeySecret = accessKeyID, accessKeySecret }
}

// WithClient sets the registered application's client id and secret the
// token endpoint requires (default: random ones).
func WithClient(clientID, clientSecret string) Option {
	return func(s *Server) { s.ClientID, s.ClientSecret = clientID, clientSecret }
}

// WithTokenTTL sets how long the tokens issued last (expires_in is sent
// in whole seconds, at least 1). Default DefaultTokenTTL.
func WithTokenTTL(d time.Duration) Option { return func(s *Server) { s.tokenTTL = d } }

// WithQuota sets op's quota: rate calls per second, burst at once; beyond
// it calls are answered 429 without a Retry-After header. rate <= 0
// removes it. Default: none (CXone publishes no per-operation numbers).
func WithQuota(op Op, rate float64, burst int) Option {
	return func(s *Server) { s.setQuota(op, rate, burst) }
}

// WithMaxPageSize caps the active contacts' pages: a larger top is
// answered with n (CXone documents no cap; a server may have one).
func WithMaxPageSize(n int) Option { return func(s *Server) { s.maxTop = n } }

// Server is the fake CXone.
type Server struct {
	// TenantID is the tenant the discovery knows; AccessKeyID,
	// AccessKeySecret, ClientID and ClientSecret the credentials the token
	// endpoint accepts; BusinessUnitID the tenant's business unit. Set them
	// with options, not after New.
	TenantID        string
	AccessKeyID     string
	AccessKeySecret string
	ClientID        string
	ClientSecret    string
	BusinessUnitID  int

	srv      *httptest.Server
	done     chan struct{}
	tokenTTL time.Duration
	maxTop   int

	mu       sync.Mutex
	contacts map[string]*Contact
	order    []string
	calls    []Call
	effects  map[string]int
	faults   map[Op][]Fault
	lose     map[Op][]bool
	latency  map[Op]time.Duration
	quotas   map[Op]*bucket
	tokens   map[string]time.Time // access token → expiry
}

// New starts a fake CXone, closed when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := Start(opts...)
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake CXone outside a test; the caller closes it.
func Start(opts ...Option) *Server {
	s := &Server{
		TenantID:        randomUUID(),
		AccessKeyID:     strings.ToUpper(randomHex(16)),
		AccessKeySecret: randomBase64(32),
		ClientID:        randomUUID(),
		ClientSecret:    randomBase64(24),
		BusinessUnitID:  4600001,
		done:            make(chan struct{}),
		tokenTTL:        DefaultTokenTTL,
		contacts:        map[string]*Contact{},
		effects:         map[string]int{},
		faults:          map[Op][]Fault{},
		lose:            map[Op][]bool{},
		latency:         map[Op]time.Duration{},
		quotas:          map[Op]*bucket{},
		tokens:          map[string]time.Time{},
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's base URL: the issuer (platform/cxone's
// DiscoveryURL) and the API endpoint the discovery answers.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down; answers being held give up. New arranges
// for it at the end of the test; calling it again does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// AddContact adds (or replaces) a contact. Times are kept at millisecond
// precision, as CXone reports them.
func (s *Server) AddContact(c Contact) {
	now := time.Now()
	if c.MediaType == 0 {
		c.MediaType = MediaPhoneCall
	}
	if c.InitiatedAt.IsZero() {
		c.InitiatedAt = now
		for _, t := range []time.Time{c.EnqueuedAt, c.ConnectedAt, c.DisconnectedAt} {
			if !t.IsZero() && t.Before(c.InitiatedAt) {
				c.InitiatedAt = t
			}
		}
	}
	if c.SkillID != "" && c.EnqueuedAt.IsZero() {
		c.EnqueuedAt = c.InitiatedAt
	}
	if c.SkillID != "" && c.SkillName == "" {
		c.SkillName = "Skill " + c.SkillID
	}
	if c.AgentConnected && c.ConnectedAt.IsZero() {
		c.ConnectedAt = c.InitiatedAt
		if !c.EnqueuedAt.IsZero() {
			c.ConnectedAt = c.EnqueuedAt
		}
	}
	for _, t := range []*time.Time{&c.InitiatedAt, &c.EnqueuedAt, &c.ConnectedAt, &c.DisconnectedAt} {
		*t = millis(*t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.contacts[c.ID] == nil {
		s.order = append(s.order, c.ID)
	}
	s.contacts[c.ID] = &c
}

// Contact is a contact as the fake holds it now.
func (s *Server) Contact(contactID string) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contacts[contactID]
	if c == nil {
		return Contact{}, false
	}
	return *c, true
}

// Disconnect ends an active contact as if the customer hung up; it
// reports whether the contact was active.
func (s *Server) Disconnect(contactID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contacts[contactID]
	if c == nil || !c.Active() {
		return false
	}
	c.DisconnectedAt = millis(time.Now())
	return true
}

// Calls is the log of every request received, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallsOf is the log of op's requests.
func (s *Server) CallsOf(op Op) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// StopEffects is how many end calls ended contactID. A correct caller
// never makes it more than 1; the fake itself never does either (an ended
// contact is no longer active).
func (s *Server) StopEffects(contactID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects[contactID]
}

// FailNext makes the next n calls of op answer f instead of being carried
// out. An API call meets it once its bearer token is accepted; a Token or
// Discovery call before its parameters are checked.
func (s *Server) FailNext(op Op, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], f)
	}
}

// LoseNext makes the next n calls of op be carried out (a StopContact
// ends its contact, a Token issues its token) and then lose their answer:
// the connection is closed without one.
func (s *Server) LoseNext(op Op, n int) { s.queueLoss(op, n, false) }

// HangNext is like LoseNext, but the answer is held until the caller gives
// up (its timeout) or the server closes.
func (s *Server) HangNext(op Op, n int) { s.queueLoss(op, n, true) }

func (s *Server) queueLoss(op Op, n int, hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.lose[op] = append(s.lose[op], hold)
	}
}

// SetLatency delays every answer of op by d (0: none). The call takes
// effect when it arrives; only its answer waits.
func (s *Server) SetLatency(op Op, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[op] = d
}

// SetQuota is [WithQuota] on a running server; the bucket starts full.
func (s *Server) SetQuota(op Op, rate float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setQuota(op, rate, burst)
}

func (s *Server) setQuota(op Op, rate float64, burst int) {
	if rate <= 0 {
		delete(s.quotas, op)
		return
	}
	s.quotas[op] = newBucket(rate, burst, time.Now())
}

// ExpireTokens makes every token issued so far expire now: the next API
// call with one is answered 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for tok := range s.tokens {
		s.tokens[tok] = now
	}
}

// TokensIssued is how many tokens the token endpoint has issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

// answer is what the fake answers one call.
type answer struct {
	status     int
	code, msg  string
	text       string // a text/plain body instead of JSON
	retryAfter string
	authHeader string // WWW-Authenticate
	body       any    // a success's JSON body; nil: none
	drop, hold bool
}

func apiError(status int, code, msg string) answer {
	return answer{status: status, code: code, msg: msg}
}

// apiPath matches the inContactAPI services (case-insensitively, as CXone
// serves them: examples use both inContactAPI and incontactapi).
var apiPath = regexp.MustCompile(`(?i)^/incontactapi/services/(v[0-9]+(?:\.[0-9]+)?)/(.*)$`)

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	call := Call{Op: OpUnknown, At: time.Now()}
	path := r.URL.EscapedPath()
	var a answer
	switch {
	case r.Method == http.MethodGet && path == "/.well-known/cxone-configuration":
		call.Op, call.TenantID = OpDiscovery, r.URL.Query().Get("tenantId")
		a = s.carryOut(&call, func() answer { return s.discovery(call.TenantID) })
	case r.Method == http.MethodGet && path == "/.well-known/openid-configuration":
		call.Op = OpOpenIDConfiguration
		a = s.carryOut(&call, s.openIDConfiguration)
	case r.Method == http.MethodPost && path == "/auth/token":
		call.Op = OpToken
		a = s.carryOut(&call, func() answer { return s.token(r, body, &call) })
	case apiPath.MatchString(path):
		a = s.api(r, apiPath.FindStringSubmatch(path)[2], &call)
	default:
		a = answer{status: http.StatusNotFound, text: "404 page not found"}
	}
	s.finish(w, r, &call, a)
}

// api routes an inContactAPI call, authenticated by its bearer token.
func (s *Server) api(r *http.Request, rest string, call *Call) answer {
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		parts[i], _ = url.PathUnescape(p)
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "contacts" && parts[1] == "active":
		call.Op = OpListActive
		q := r.URL.Query()
		call.Top, _ = strconv.Atoi(q.Get("top"))
		call.Skip, _ = strconv.Atoi(q.Get("skip"))
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "contacts" && parts[2] == "end":
		call.Op, call.ContactID = OpStopContact, parts[1]
		call.DisconnectReason = r.Header.Get(DisconnectReasonHeader)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "contacts" && parts[2] == "state-history":
		call.Op, call.ContactID = OpStateHistory, parts[1]
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "contacts" && parts[1] != "":
		call.Op, call.ContactID = OpDescribeContact, parts[1]
	default:
		return answer{status: http.StatusNotFound, text: "404 page not found"}
	}
	if a, ok := s.authenticate(r); !ok {
		return a
	}
	return s.carryOut(call, func() answer {
		switch call.Op {
		case OpListActive:
			return s.listActive(call.Top, call.Skip)
		case OpStopContact:
			return s.end(call)
		case OpStateHistory:
			return s.stateHistory(call.ContactID)
		}
		return s.describe(call.ContactID)
	})
}

// authenticate checks an API call's bearer token: one the token endpoint
// issued and that has not expired (RFC 6750 §3: 401 with
// WWW-Authenticate).
func (s *Server) authenticate(r *http.Request) (answer, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	refuse := func(msg string) (answer, bool) {
		return answer{status: http.StatusUnauthorized, code: "invalid_token", msg: msg,
			authHeader: `Bearer error="invalid_token"`}, false
	}
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return refuse("An access token is required")
	}
	s.mu.Lock()
	exp, ok := s.tokens[tok]
	s.mu.Unlock()
	switch {
	case !ok:
		return refuse("The access token is invalid")
	case !time.Now().Before(exp):
		return refuse("The access token has expired")
	}
	return answer{}, true
}

// carryOut decides the answer of a call: a scripted fault, the quota, or
// do (under the lock, where it applies its effect); then a scripted loss.
func (s *Server) carryOut(call *Call, do func() answer) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[call.Op]; len(q) > 0 {
		f := q[0]
		s.faults[call.Op] = q[1:]
		if f.Drop {
			return answer{drop: true}
		}
		a := answer{status: f.Status, code: f.Code, msg: f.Message, text: f.Body, retryAfter: f.RetryAfter}
		if f.Status == http.StatusUnauthorized {
			a.authHeader = `Bearer error="invalid_token"`
		}
		return a
	}
	if b := s.quotas[call.Op]; b != nil && !b.take(time.Now()) {
		return apiError(http.StatusTooManyRequests, "TooManyRequests", "Too many requests")
	}
	a := do()
	if q := s.lose[call.Op]; len(q) > 0 {
		a = answer{drop: true, hold: q[0]}
		s.lose[call.Op] = q[1:]
	}
	return a
}

// discovery answers .well-known/cxone-configuration: the tenant's API
// endpoint, area and domain. An unknown tenant is 404 (inferred).
func (s *Server) discovery(tenantID string) answer {
	if tenantID == "" || tenantID != s.TenantID {
		return apiError(http.StatusNotFound, "NotFound", "Tenant not found")
	}
	u, _ := url.Parse(s.srv.URL)
	return answer{status: http.StatusOK, body: map[string]any{
		"private":       false,
		"area":          "na1",
		"cluster":       "B32",
		"domain":        u.Host,
		"acdDomain":     u.Host,
		"uhDomain":      u.Host,
		"api_endpoint":  s.srv.URL,
		"ui_endpoint":   s.srv.URL,
		"auth_endpoint": s.srv.URL,
	}}
}

// openIDConfiguration answers .well-known/openid-configuration.
func (s *Server) openIDConfiguration() answer {
	return answer{status: http.StatusOK, body: map[string]any{
		"issuer":                                s.srv.URL,
		"token_endpoint":                        s.srv.URL + "/auth/token",
		"grant_types_supported":                 []string{"password", "authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	}}
}

// token is the token endpoint: an OAuth 2.0 password grant (RFC 6749
// §4.3) whose username and password are the access key's id and secret,
// the client authenticated with HTTP Basic or client_id/client_secret in
// the form (§2.3.1). Errors are RFC 6749 §5.2's.
func (s *Server) token(r *http.Request, body []byte, call *Call) answer {
	if mt := r.Header.Get("Content-Type"); !strings.HasPrefix(mt, "application/x-www-form-urlencoded") {
		return apiError(http.StatusBadRequest, "invalid_request", "The request must be form-encoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return apiError(http.StatusBadRequest, "invalid_request", "The form is malformed")
	}
	id, secret, basic := basicAuth(r)
	switch _, post := form["client_id"]; {
	case basic && post:
		return apiError(http.StatusBadRequest, "invalid_request", "More than one client authentication method")
	case basic:
		call.ClientAuth = "basic"
	case post:
		call.ClientAuth = "post"
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if call.ClientAuth == "" || id != s.ClientID || secret != s.ClientSecret {
		a := apiError(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		if basic {
			a.authHeader = `Basic realm="cxone"`
		}
		return a
	}
	if form.Get("grant_type") != "password" {
		return apiError(http.StatusBadRequest, "unsupported_grant_type", "The grant type is not supported")
	}
	if form.Get("username") != s.AccessKeyID || form.Get("password") != s.AccessKeySecret {
		return apiError(http.StatusBadRequest, "invalid_grant", "Invalid access key")
	}
	tok := randomHex(32)
	s.tokens[tok] = time.Now().Add(s.tokenTTL)
	expiresIn := max(int((s.tokenTTL+time.Second-1)/time.Second), 1)
	return answer{status: http.StatusOK, body: map[string]any{
		"access_token":      tok,
		"token_type":        "Bearer",
		"expires_in":        expiresIn,
		"refresh_token":     randomHex(32),
		"id_token":          randomHex(48),
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
	}}
}

// basicAuth reads HTTP Basic client credentials, form-decoded (RFC 6749
// §2.3.1).
func basicAuth(r *http.Request) (id, secret string, ok bool) {
	scheme, enc, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	i, sec, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	i, err1 := url.QueryUnescape(i)
	sec, err2 := url.QueryUnescape(sec)
	return i, sec, err1 == nil && err2 == nil
}

// end is the Admin API's end-contact operation: an active contact is
// ended, answered 202 Accepted without a body; an unknown or ended one is
// 404 (inferred: Studio's "Invalid Contact ID").
func (s *Server) end(call *Call) answer {
	c := s.contacts[call.ContactID]
	if c == nil || !c.Active() {
		return apiError(http.StatusNotFound, "NotFound", "Invalid Contact ID: the contact is not active or does not exist")
	}
	c.DisconnectedAt = millis(time.Now())
	c.Stopped = true
	c.DisconnectReason = call.DisconnectReason
	call.Effect = true
	s.effects[call.ContactID]++
	return answer{status: http.StatusAccepted}
}

// describe is the Reporting API's contact details: {"businessUnitId",
// "lastPollTime", "contactId": {…}}, an active or a completed contact; an
// unknown one is 404 (inferred).
func (s *Server) describe(contactID string) answer {
	c := s.contacts[contactID]
	if c == nil {
		return apiError(http.StatusNotFound, "NotFound", "Contact not found")
	}
	var detail any
	if c.Active() {
		detail = s.wireActive(c)
	} else {
		detail = s.wireCompleted(c)
	}
	return answer{status: http.StatusOK, body: map[string]any{
		"businessUnitId": s.BusinessUnitID,
		"lastPollTime":   isoTime(time.Now()),
		"contactId":      detail,
	}}
}

// stateHistory is the Reporting API's state history of one contact.
func (s *Server) stateHistory(contactID string) answer {
	c := s.contacts[contactID]
	if c == nil {
		return apiError(http.StatusNotFound, "NotFound", "Contact not found")
	}
	type entry struct {
		StateIndex       int    `json:"stateIndex"`
		ContactID        any    `json:"contactId"`
		ContactStateID   int    `json:"contactStateId"`
		ContactStateName string `json:"contactStateName"`
		StartDate        string `json:"startDate"`
		IsWarehoused     bool   `json:"isWarehoused"`
		AgentID          int    `json:"agentId,omitempty"`
		SkillID          any    `json:"skillId,omitempty"`
		SkillName        string `json:"skillName,omitempty"`
	}
	var h []entry
	add := func(st contactState, at time.Time, agent int) {
		e := entry{StateIndex: len(h) + 1, ContactID: jsonID(c.ID), ContactStateID: st.id, ContactStateName: st.name,
			StartDate: isoTime(at), AgentID: agent}
		if c.SkillID != "" {
			e.SkillID, e.SkillName = jsonID(c.SkillID), c.SkillName
		}
		h = append(h, e)
	}
	if c.SkillID == "" || c.EnqueuedAt.After(c.InitiatedAt) {
		add(statePreQueue, c.InitiatedAt, 0)
	}
	if c.SkillID != "" {
		add(stateInQueue, c.EnqueuedAt, 0)
	}
	if c.AgentConnected {
		add(stateActive, c.ConnectedAt, agentID)
	}
	if !c.Active() {
		add(stateEnd, c.DisconnectedAt, 0)
	}
	return answer{status: http.StatusOK, body: map[string]any{"contactStateHistory": h}}
}

// listActive is the Real-Time Data API's active contacts, paged with top
// (default 100, inferred) and skip; none at all is 204 No Content
// (inferred).
func (s *Server) listActive(top, skip int) answer {
	var active []*Contact
	for _, id := range s.order {
		if c := s.contacts[id]; c.Active() {
			active = append(active, c)
		}
	}
	if len(active) == 0 {
		return answer{status: http.StatusNoContent}
	}
	if top <= 0 {
		top = 100
	}
	if s.maxTop > 0 {
		top = min(top, s.maxTop)
	}
	skip = max(skip, 0)
	page := []any{}
	for i := skip; i < len(active) && i < skip+top; i++ {
		page = append(page, s.wireActive(active[i]))
	}
	self := s.srv.URL + "/inContactAPI/services/v34.0/contacts/active?top=" + strconv.Itoa(top) + "&skip=" + strconv.Itoa(skip)
	links := map[string]any{"self": self}
	if skip+top < len(active) {
		links["next"] = s.srv.URL + "/inContactAPI/services/v34.0/contacts/active?top=" + strconv.Itoa(top) + "&skip=" + strconv.Itoa(skip+top)
	}
	if skip > 0 {
		links["previous"] = s.srv.URL + "/inContactAPI/services/v34.0/contacts/active?top=" + strconv.Itoa(top) + "&skip=" + strconv.Itoa(max(skip-top, 0))
	}
	return answer{status: http.StatusOK, body: map[string]any{
		"totalRecords":   len(active),
		"_links":         links,
		"businessUnitId": s.BusinessUnitID,
		"lastPollTime":   isoTime(time.Now()),
		"activeContacts": page,
	}}
}

// agentID is the agent the fake's connected contacts are with.
const agentID = 2001

// wireActive is an active contact as the Real-Time Data API and the
// Reporting API's contact details describe it.
func (s *Server) wireActive(c *Contact) map[string]any {
	st, last := statePreQueue, c.InitiatedAt
	if c.SkillID != "" {
		st, last = stateInQueue, c.EnqueuedAt
	}
	m := map[string]any{
		"contactId":             jsonID(c.ID),
		"masterContactId":       jsonID(c.ID),
		"contactStartDate":      isoTime(c.InitiatedAt),
		"mediaTypeId":           int(c.MediaType),
		"mediaTypeName":         c.MediaType.Name(),
		"isOutbound":            false,
		"isLogged":              false,
		"isTakeover":            false,
		"businessUnitId":        s.BusinessUnitID,
		"fromAddress":           "+15555550100",
		"toAddress":             "+15555550199",
		"pointOfContactId":      300001,
		"pointOfContactName":    "Main number",
		"transferIndicatorId":   0,
		"transferIndicatorName": "None",
	}
	if c.AgentConnected {
		st, last = stateActive, c.ConnectedAt
		m["agentId"] = agentID
		m["agentStartDate"] = isoTime(c.ConnectedAt)
		m["firstName"], m["lastName"] = "Ada", "Agent"
	}
	m["stateId"], m["stateName"], m["contactStateCategory"] = st.id, st.name, st.category
	m["lastUpdateTime"] = isoTime(last)
	if c.SkillID != "" {
		m["skillId"], m["skillName"] = jsonID(c.SkillID), c.SkillName
	}
	return m
}

// wireCompleted is a completed contact as the Reporting API describes it.
func (s *Server) wireCompleted(c *Contact) map[string]any {
	total := c.DisconnectedAt.Sub(c.InitiatedAt)
	var pre, inQueue, withAgent time.Duration
	switch {
	case c.SkillID == "":
		pre = total
	case c.AgentConnected:
		pre, inQueue, withAgent = c.EnqueuedAt.Sub(c.InitiatedAt), c.ConnectedAt.Sub(c.EnqueuedAt), c.DisconnectedAt.Sub(c.ConnectedAt)
	default:
		pre, inQueue = c.EnqueuedAt.Sub(c.InitiatedAt), c.DisconnectedAt.Sub(c.EnqueuedAt)
	}
	reason := "Contact Hung Up"
	if c.Stopped {
		reason = "Contact Ended by API"
	}
	m := map[string]any{
		"contactId":            jsonID(c.ID),
		"masterContactId":      jsonID(c.ID),
		"contactStartDate":     isoTime(c.InitiatedAt),
		"lastUpdateTime":       isoTime(c.DisconnectedAt),
		"isActive":             false,
		"isWarehoused":         false,
		"stateId":              stateEnd.id,
		"stateName":            stateEnd.name,
		"mediaTypeId":          int(c.MediaType),
		"mediaTypeName":        c.MediaType.Name(),
		"isOutbound":           false,
		"abandoned":            c.SkillID != "" && !c.AgentConnected && !c.Stopped,
		"totalDurationSeconds": secs(total),
		"preQueueSeconds":      secs(pre),
		"inQueueSeconds":       secs(inQueue),
		"agentSeconds":         secs(withAgent),
		"endReason":            reason,
	}
	if c.AgentConnected {
		m["agentId"] = agentID
	}
	if c.SkillID != "" {
		m["skillId"], m["skillName"] = jsonID(c.SkillID), c.SkillName
	}
	return m
}

// finish logs the call and sends its answer.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, call *Call, a answer) {
	if !a.drop {
		call.Status, call.Code = a.status, a.code
	}
	s.mu.Lock()
	s.calls = append(s.calls, *call)
	delay := s.latency[call.Op]
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	if a.drop {
		if a.hold {
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
		}
		hangUp(w)
		return
	}
	h := w.Header()
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	if a.authHeader != "" {
		h.Set("WWW-Authenticate", a.authHeader)
	}
	switch {
	case a.text != "":
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.text)
	case a.status >= 300:
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": a.code, "error_description": a.msg})
	case a.body != nil:
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(a.body)
	default:
		w.WriteHeader(a.status)
	}
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("cxonetest: the response writer cannot hijack its connection")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// jsonID is an id as CXone sends it: a JSON number when it is one (the
// fake sends other ids as strings).
func jsonID(id string) any {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil && strconv.FormatInt(n, 10) == id {
		return n
	}
	return id
}

// secs is a duration as CXone's seconds, with milliseconds.
type secs time.Duration

func (d secs) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(d).Seconds(), 'f', 3, 64)), nil
}

// isoTime is CXone's ISO 8601 time, UTC with milliseconds.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// millis truncates t to milliseconds, CXone's precision.
func millis(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomBase64 is a secret with characters ('+', '/', '=') that need
// escaping in a form or URL.
func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// bucket is a token bucket: rate tokens a second, at most burst.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	if burst < 1 {
		burst = 1
	}
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take takes a token if one is left.
func (b *bucket) take(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
