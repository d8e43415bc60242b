// Package genesystest is an in-process fake of the parts of Genesys Cloud
// that contactstop uses, for tests: an httptest server that answers the
// login service's OAuth client credentials grant (POST /oauth/token) and
// three Platform API operations on their wire format —
// postConversationDisconnect (POST
// /api/v2/conversations/{conversationId}/disconnect), getConversation (GET
// /api/v2/conversations/{conversationId}) and
// postAnalyticsConversationsDetailsQuery (POST
// /api/v2/analytics/conversations/details/query) — checks that every API
// request carries a bearer token it issued and that has not expired, and
// keeps the conversations of one Genesys Cloud organization.
//
//	srv := genesystest.New(t)
//	srv.AddConversation(genesystest.Conversation{ID: "c-1", QueueID: "q-1"})
//	cli, _ := genesys.New(ctx, genesys.Config{Endpoint: srv.URL(),
//		ClientID: srv.ClientID, ClientSecret: srv.ClientSecret})
//
// Login and API share the server's address: a client's Endpoint overrides
// both https://login.{region} and https://api.{region}.
//
// Tests script it per operation: answer latency ([Server.SetLatency]),
// refusals of the next calls ([Server.FailNext] with [TooManyRequests],
// [InternalServerError], [ServiceUnavailable], [CredentialsExpired],
// [MissingPermissions], [BadRequest], [InvalidValue], [NotFound],
// [DropConnection]), answers lost after the disconnect took effect
// ([Server.LoseNext], [Server.HangNext]), tokens that expire
// ([WithTokenTTL], [Server.ExpireTokens]), a quota per operation
// ([WithQuota]) and the OAuth client's own limit of requests per minute
// ([WithClientLimit]; 300 a minute by default, as Genesys documents it).
// Every request is logged ([Server.Calls]) and every disconnect that ended a
// conversation is counted ([Server.StopEffects]), so checkers can verify
// that no conversation was ever ended twice.
//
// Wire details follow Genesys's published API models (the Platform API
// Go SDK's platformclientv2 Conversation, Participant, Conversationquery,
// Analyticsconversation… and Errorbody types;
// https://github.com/MyPureCloud/platform-client-sdk-go), the generated
// Genesys Cloud CLI (which shows that the disconnect answers 202 Accepted;
// https://github.com/MyPureCloud/platform-client-sdk-cli), and
// Genesys's announcement of normalized 429 answers
// (https://developer.genesys.cloud/forum/t/normalized-platform-api-429-responses/12028).
// Where Genesys documents no answer, the fake makes a choice and says so:
// what a disconnect of an ended conversation answers ([WithEndedDisconnect];
// 404 not.found by default), what the login service answers an unknown
// client (401 invalid_client, RFC 6749 §5.2), and that an address with no
// Genesys API behind it answers a bare 404.
//
// A Server is safe for concurrent use.
package genesystest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Op names an operation the fake implements, as Genesys's API reference
// names it (its operationId), or "token" for the login service.
type Op string

// The operations of the fake.
const (
	// OpToken is POST /oauth/token on the login service
	// (login.{region}): the client credentials grant.
	OpToken Op = "token"
	// OpDisconnect is POST /api/v2/conversations/{conversationId}/disconnect.
	OpDisconnect Op = "postConversationDisconnect"
	// OpGetConversation is GET /api/v2/conversations/{conversationId}.
	OpGetConversation Op = "getConversation"
	// OpDetailsQuery is POST /api/v2/analytics/conversations/details/query.
	OpDetailsQuery Op = "postAnalyticsConversationsDetailsQuery"
)

// Media types, as Genesys's analytics names them (AnalyticsSession
// mediaType). The conversation API lists the same media per participant as
// calls, callbacks, chats, messages and emails.
const (
	MediaVoice    = "voice"
	MediaCallback = "callback"
	MediaChat     = "chat"
	MediaMessage  = "message"
	MediaEmail    = "email"
)

// mediaArrays maps a media type to its participant array in the
// conversation API's Participant model.
var mediaArrays = map[string]string{
	MediaVoice: "calls", MediaCallback: "callbacks", MediaChat: "chats", MediaMessage: "messages", MediaEmail: "emails",
}

// Defaults.
const (
	// DefaultTokenTTL is a token's lifetime unless [WithTokenTTL] says
	// otherwise: a day (86400 seconds), taken to be an OAuth client's
	// default token duration (not checked against Genesys's documentation).
	DefaultTokenTTL = 24 * time.Hour
	// ClientLimit requests per minute are allowed per OAuth client
	// (Genesys's client.credentials.token.rate.per.minute, 300 by default:
	// https://developer.genesys.cloud/organization/organization/limits#platform-api).
	ClientLimit = 300
	// DefaultPageSize and MaxPageSize bound a details query's page: 25 is
	// Conversationquery's documented default; Genesys's example of clearing
	// a queue pages by 100 (the developer blog's "Disconnecting Queued
	// Interactions", MyPureCloud/developer-center-blog,
	// source/2018-02-07-disconnecting-queued-interactions/index.md), and
	// the fake refuses larger pages (the maximum is not documented).
	DefaultPageSize = 25
	MaxPageSize     = 100
)

// Conversation is a conversation of the organization.
type Conversation struct {
	// ID is the conversation's id.
	ID string
	// MediaType is one of the Media constants (default MediaVoice).
	MediaType string
	// StartedAt is when it began. Default: when it was added, or the
	// earliest of the other times given.
	StartedAt time.Time
	// QueueID, when set, is the queue it waits in (or waited in) since
	// EnqueuedAt (default StartedAt).
	QueueID    string
	EnqueuedAt time.Time
	// AgentConnected: an agent (AgentUserID, default "agent-1") took it at
	// ConnectedAt (default EnqueuedAt, or StartedAt).
	AgentConnected bool
	AgentUserID    string
	ConnectedAt    time.Time
	// EndedAt is when it ended; zero while it is active. AddConversation
	// with it set adds a conversation that has ended.
	EndedAt time.Time
	// Disconnected: a disconnect request ended it (not the customer, see
	// [Server.Disconnect]).
	Disconnected bool
}

// Active reports whether the conversation has not ended.
func (c Conversation) Active() bool { return c.EndedAt.IsZero() }

// Call is one request the fake received.
type Call struct {
	// Op is the operation; "" for a path the fake does not serve.
	Op Op
	// ConversationID is the path's conversation id.
	ConversationID string
	// Query is a details query's body, as decoded.
	Query *ConversationQuery
	At    time.Time
	// Status is the HTTP status answered; 0 when no answer was sent (a
	// dropped connection, a lost answer).
	Status int
	// Code is the error code answered ("" on success): the error body's
	// code, or the OAuth error of the login service.
	Code string
	// RetryAfter is the Retry-After header answered, if any.
	RetryAfter string
	// Effect: this call ended the conversation (a disconnect that ended
	// it, whether or not its answer reached the caller).
	Effect bool
}

// Fault is a scripted refusal of a call: it is answered instead of the call
// being carried out, so it never takes effect.
type Fault struct {
	// Status, Code and Message are the HTTP status and the error body's
	// code and message (for OpToken, the OAuth error and its
	// description). With no Code only the status is answered, with an
	// empty body, as a proxy might.
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Drop closes the connection without any answer.
	Drop bool
}

// TooManyRequests is Genesys's normalized 429 answer, with a Retry-After
// header when retryAfter is not "" (Genesys sends one with every 429 since
// November 2021).
func TooManyRequests(retryAfter string) Fault {
	msg := "Rate limit exceeded the maximum"
	if _, err := strconv.Atoi(retryAfter); err == nil {
		msg = "Rate limit exceeded the maximum. Retry the request in [" + retryAfter + "] seconds"
	}
	return Fault{Status: http.StatusTooManyRequests, Code: "too.many.requests.retry.after", Message: msg, RetryAfter: retryAfter}
}

// InternalServerError is 500 internal.server.error.
func InternalServerError() Fault {
	return Fault{Status: http.StatusInternalServerError, Code: "internal.server.error",
		Message: "The server encountered an unexpected condition which prevented it from fulfilling the request."}
}

// ServiceUnavailable is 503 service.unavailable.
func ServiceUnavailable() Fault {
	return Fault{Status: http.StatusServiceUnavailable, Code: "service.unavailable",
		Message: "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance)."}
}

// CredentialsExpired is 401 credentials.expired: the bearer token is no
// longer accepted.
func CredentialsExpired() Fault {
	return Fault{Status: http.StatusUnauthorized, Code: "credentials.expired", Message: "The supplied credentials are expired and cannot be used."}
}

// MissingPermissions is 403 missing.permissions: the OAuth client's roles
// lack permission.
func MissingPermissions(permission string) Fault {
	return Fault{Status: http.StatusForbidden, Code: "missing.permissions",
		Message: "Unable to perform the requested action. You are missing the following permission(s): [" + permission + "]"}
}

// BadRequest is 400 bad.request.
func BadRequest() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "bad.request", Message: "The request could not be understood by the server due to malformed syntax."}
}

// InvalidValue is 400 invalid.value: a value of the request is not valid.
func InvalidValue() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "invalid.value", Message: "Value [x] is not valid for field type [conversationId]."}
}

// NotFound is 404 not.found.
func NotFound() Fault {
	return Fault{Status: http.StatusNotFound, Code: "not.found", Message: "The requested resource was not found."}
}

// InvalidClient is the login service's refusal of the client's
// credentials (401 invalid_client).
func InvalidClient() Fault {
	return Fault{Status: http.StatusUnauthorized, Code: "invalid_client", Message: "client not found"}
}

// DropConnection closes the connection before the call is carried out.
// Go's HTTP client replays an idempotent request (getConversation's GET)
// once by itself when a reused connection is closed this way, so a dropped
// getConversation may reach the fake twice.
func DropConnection() Fault { return Fault{Drop: true} }

// Option configures a Server.
type Option func(*Server)

// WithCredentials sets the OAuth client the login service accepts
// (default: a random one per server).
func WithCredentials(clientID, clientSecret string) Option {
	return func(s *Server) { s.ClientID, s.ClientSecret = clientID, clientSecret }
}

// WithTokenTTL sets the lifetime of the tokens the server issues (whole
// seconds, at least one; the answer's expires_in).
func WithTokenTTL(d time.Duration) Option {
	return func(s *Server) { s.tokenTTL = max(d.Truncate(time.Second), time.Second) }
}

// WithQuota sets op's quota: rate calls per second, burst at once; beyond
// it calls are answered 429 with a Retry-After header. rate <= 0 removes
// it. Default: none.
func WithQuota(op Op, rate float64, burst int) Option {
	return func(s *Server) { s.setQuota(op, rate, burst) }
}

// WithClientLimit sets the OAuth client's limit: n API requests (token
// requests excluded) per window, answered 429 with a Retry-After header
// (the seconds left in the window) beyond it. n <= 0 removes it. Default:
// [ClientLimit] a minute.
func WithClientLimit(n int, window time.Duration) Option {
	return func(s *Server) { s.setClientLimit(n, window) }
}

// WithEndedDisconnect sets what a disconnect of a conversation that has
// already ended answers. Genesys does not document it; the default is
// [NotFound]. A Fault with a 2xx Status (e.g. 202) accepts the request
// without any effect.
func WithEndedDisconnect(f Fault) Option { return func(s *Server) { s.endedDisconnect = f } }

// Server is the fake Genesys Cloud.
type Server struct {
	// ClientID and ClientSecret are the OAuth client the login service
	// accepts. Set them with options, not after New.
	ClientID     string
	ClientSecret string

	srv  *httptest.Server
	done chan struct{} // closed when the server shuts down: held answers give up

	mu              sync.Mutex
	tokenTTL        time.Duration
	tokens          map[string]time.Time // access token → expiry
	issued          int
	conversations   map[string]*Conversation
	calls           []Call
	effects         map[string]int // conversation id → disconnects that ended it
	faults          map[Op][]Fault
	lose            map[Op][]bool // queued lost answers; true: hold until the client gives up
	latency         map[Op]time.Duration
	quotas          map[Op]*bucket
	client          *window
	endedDisconnect Fault
}

// New starts a fake Genesys Cloud, closed when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := Start(opts...)
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake Genesys Cloud outside a test (contactstop bench
// measures against it); the caller closes it.
func Start(opts ...Option) *Server {
	s := &Server{
		ClientID:        newUUID(),
		ClientSecret:    randomHex(24),
		done:            make(chan struct{}),
		tokenTTL:        DefaultTokenTTL,
		tokens:          map[string]time.Time{},
		conversations:   map[string]*Conversation{},
		effects:         map[string]int{},
		faults:          map[Op][]Fault{},
		lose:            map[Op][]bool{},
		latency:         map[Op]time.Duration{},
		quotas:          map[Op]*bucket{},
		endedDisconnect: NotFound(),
	}
	s.setClientLimit(ClientLimit, time.Minute)
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's base URL: a client's Endpoint, for the login service
// and the API alike.
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

// AddConversation adds (or replaces) a conversation. Times are kept at
// millisecond precision, as Genesys reports them.
func (s *Server) AddConversation(c Conversation) {
	now := time.Now()
	if c.MediaType == "" {
		c.MediaType = MediaVoice
	}
	if c.StartedAt.IsZero() {
		c.StartedAt = now
		for _, t := range []time.Time{c.EnqueuedAt, c.ConnectedAt, c.EndedAt} {
			if !t.IsZero() && t.Before(c.StartedAt) {
				c.StartedAt = t
			}
		}
	}
	if c.QueueID != "" && c.EnqueuedAt.IsZero() {
		c.EnqueuedAt = c.StartedAt
	}
	if c.AgentConnected {
		if c.AgentUserID == "" {
			c.AgentUserID = "agent-1"
		}
		if c.ConnectedAt.IsZero() {
			c.ConnectedAt = c.StartedAt
			if !c.EnqueuedAt.IsZero() {
				c.ConnectedAt = c.EnqueuedAt
			}
		}
	}
	for _, t := range []*time.Time{&c.StartedAt, &c.EnqueuedAt, &c.ConnectedAt, &c.EndedAt} {
		*t = millis(*t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conversations[c.ID] = &c
}

// Conversation is a conversation as the fake holds it now.
func (s *Server) Conversation(id string) (Conversation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conversations[id]
	if c == nil {
		return Conversation{}, false
	}
	return *c, true
}

// Disconnect ends an active conversation as if the customer hung up; it
// reports whether the conversation was active.
func (s *Server) Disconnect(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conversations[id]
	if c == nil || !c.Active() {
		return false
	}
	c.EndedAt = millis(time.Now())
	return true
}

// Calls is the log of every request received, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// StopEffects is how many disconnect requests ended the conversation. A
// correct caller never makes it more than 1; the fake itself never does
// either (an ended conversation is no longer active).
func (s *Server) StopEffects(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects[id]
}

// TokensIssued is how many tokens the login service has issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// ExpireTokens makes every token issued so far expire now: the next API
// request with one is answered 401 credentials.expired.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for tok := range s.tokens {
		s.tokens[tok] = now
	}
}

// FailNext makes the next n calls of op (API calls that pass
// authentication) answer f instead of being carried out.
func (s *Server) FailNext(op Op, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], f)
	}
}

// LoseNext makes the next n calls of op be carried out (a disconnect ends
// its conversation) and then lose their answer: the connection is closed
// without one. The caller sees a connection error.
func (s *Server) LoseNext(op Op, n int) { s.queueLoss(op, n, false) }

// HangNext is like LoseNext, but the answer is held until the caller gives
// up (its timeout) or the server closes; then the connection closes
// without an answer.
func (s *Server) HangNext(op Op, n int) { s.queueLoss(op, n, true) }

func (s *Server) queueLoss(op Op, n int, hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.lose[op] = append(s.lose[op], hold)
	}
}

// SetLatency delays every answer of op by d (0: none). The call takes
// effect when it arrives; only its answer waits, so a caller that gives up
// meanwhile loses an answer whose effect happened.
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

// SetClientLimit is [WithClientLimit] on a running server; the window
// starts anew.
func (s *Server) SetClientLimit(n int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setClientLimit(n, window)
}

func (s *Server) setQuota(op Op, rate float64, burst int) {
	if rate <= 0 {
		delete(s.quotas, op)
		return
	}
	s.quotas[op] = newBucket(rate, burst, time.Now())
}

func (s *Server) setClientLimit(n int, length time.Duration) {
	if n <= 0 || length <= 0 {
		s.client = nil
		return
	}
	s.client = &window{limit: n, length: length}
}

// answer is what the fake answers one call.
type answer struct {
	status     int
	code       string
	message    string
	retryAfter string
	body       any
	oauth      bool // an OAuth error body (login service)
	bare       bool // no error body: a bare status, as a proxy might answer
	drop       bool // close the connection without an answer
	hold       bool // ... after the client gives up
}

func apiError(status int, code, message string) answer {
	return answer{status: status, code: code, message: message}
}

func faultAnswer(f Fault, oauth bool) answer {
	if f.Drop {
		return answer{drop: true}
	}
	return answer{status: f.Status, code: f.Code, message: f.Message, retryAfter: f.RetryAfter, oauth: oauth, bare: f.Code == ""}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	call := Call{At: time.Now()}
	path := r.URL.EscapedPath()
	switch {
	case r.Method == http.MethodPost && path == "/oauth/token":
		call.Op = OpToken
		s.finish(w, r, &call, s.token(r, body))
		return
	case r.Method == http.MethodPost && path == "/api/v2/analytics/conversations/details/query":
		call.Op = OpDetailsQuery
	case strings.HasPrefix(path, "/api/v2/conversations/"):
		rest := strings.TrimPrefix(path, "/api/v2/conversations/")
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(rest, "/disconnect") && !strings.Contains(strings.TrimSuffix(rest, "/disconnect"), "/"):
			call.Op = OpDisconnect
			rest = strings.TrimSuffix(rest, "/disconnect")
		case r.Method == http.MethodGet && !strings.Contains(rest, "/"):
			call.Op = OpGetConversation
		}
		if call.Op != "" {
			call.ConversationID, _ = url.PathUnescape(rest)
		}
	}
	if call.Op == "" {
		// No such operation here: what a host without the Genesys API (a
		// wrong region or endpoint) answers.
		s.finish(w, r, &call, answer{status: http.StatusNotFound, bare: true})
		return
	}
	if a, ok := s.authenticate(r); !ok {
		s.finish(w, r, &call, a)
		return
	}
	var query *ConversationQuery
	if call.Op == OpDetailsQuery {
		query = new(ConversationQuery)
		if err := json.Unmarshal(body, query); err != nil {
			s.finish(w, r, &call, apiError(http.StatusBadRequest, "bad.request", "The request could not be understood by the server due to malformed syntax."))
			return
		}
		call.Query = query
	}
	s.finish(w, r, &call, s.carryOut(&call, query))
}

// token answers the client credentials grant: client authentication with
// HTTP Basic (as Genesys's SDKs send it) or client_id and client_secret in
// the form, grant_type=client_credentials.
func (s *Server) token(r *http.Request, body []byte) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[OpToken]; len(q) > 0 {
		s.faults[OpToken] = q[1:]
		return faultAnswer(q[0], true)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return answer{status: http.StatusBadRequest, code: "invalid_request", message: "the request is not form-encoded", oauth: true}
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id != s.ClientID || secret != s.ClientSecret || id == "" {
		return faultAnswer(InvalidClient(), true)
	}
	if form.Get("grant_type") != "client_credentials" {
		return answer{status: http.StatusBadRequest, code: "unsupported_grant_type", message: "grant type not supported", oauth: true}
	}
	tok := randomToken()
	s.tokens[tok] = time.Now().Add(s.tokenTTL)
	s.issued++
	a := answer{status: http.StatusOK, body: tokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int64(s.tokenTTL / time.Second)}}
	if q := s.lose[OpToken]; len(q) > 0 {
		a = answer{drop: true, hold: q[0]}
		s.lose[OpToken] = q[1:]
	}
	return a
}

// authenticate checks an API request's bearer token.
func (s *Server) authenticate(r *http.Request) (answer, bool) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") || tok == "" {
		return apiError(http.StatusUnauthorized, "authentication.required", "No authentication bearer token specified in authorization header."), false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expiry, ok := s.tokens[tok]
	switch {
	case !ok:
		return apiError(http.StatusUnauthorized, "bad.credentials", "Invalid login credentials."), false
	case !time.Now().Before(expiry):
		return apiError(http.StatusUnauthorized, "credentials.expired", "The supplied credentials are expired and cannot be used."), false
	}
	return answer{}, true
}

// carryOut decides the answer of an authenticated API call and applies its
// effect, under the lock.
func (s *Server) carryOut(call *Call, query *ConversationQuery) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[call.Op]; len(q) > 0 {
		s.faults[call.Op] = q[1:]
		return faultAnswer(q[0], false)
	}
	now := time.Now()
	if b := s.quotas[call.Op]; b != nil {
		if wait, ok := b.take(now); !ok {
			return throttled(wait)
		}
	}
	if s.client != nil {
		if wait, ok := s.client.take(now); !ok {
			return throttled(wait)
		}
	}
	var a answer
	switch call.Op {
	case OpDisconnect:
		c := s.conversations[call.ConversationID]
		switch {
		case c == nil:
			return faultAnswer(NotFound(), false)
		case !c.Active():
			a = faultAnswer(s.endedDisconnect, false)
			if a.drop || a.status >= 300 {
				return a
			}
			// Accepted again, with no effect.
			a = answer{status: a.status, body: c.ID}
		default:
			c.EndedAt = millis(now)
			c.Disconnected = true
			call.Effect = true
			s.effects[c.ID]++
			// 202 Accepted, with a string body (the CLI's generated
			// response schema).
			a = answer{status: http.StatusAccepted, body: c.ID}
		}
	case OpGetConversation:
		c := s.conversations[call.ConversationID]
		if c == nil {
			return faultAnswer(NotFound(), false)
		}
		a = answer{status: http.StatusOK, body: wireConversationOf(c)}
	case OpDetailsQuery:
		res, err := s.query(query)
		if err != nil {
			return *err
		}
		a = answer{status: http.StatusOK, body: res}
	}
	if q := s.lose[call.Op]; len(q) > 0 {
		a = answer{drop: true, hold: q[0]}
		s.lose[call.Op] = q[1:]
	}
	return a
}

// throttled is the normalized 429 answer.
func throttled(wait time.Duration) answer {
	secs := strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
	return answer{status: http.StatusTooManyRequests, code: "too.many.requests.retry.after",
		message: "Rate limit exceeded the maximum. Retry the request in [" + secs + "] seconds", retryAfter: secs}
}

// finish logs the call and sends its answer.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, call *Call, a answer) {
	if !a.drop {
		call.Status, call.Code, call.RetryAfter = a.status, a.code, a.retryAfter
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
	contextID := newUUID()
	h.Set("Inin-Correlation-Id", contextID)
	switch {
	case a.status < 300:
		h.Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(a.body)
	case a.bare:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, http.StatusText(a.status)+"\n")
	case a.oauth:
		// The login service's errors: RFC 6749's error and
		// error_description, and Genesys's description.
		h.Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": a.code, "description": a.message, "error_description": a.message})
	default:
		// The Platform API's error body (Errorbody).
		h.Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(errorBody{Message: a.message, Code: a.code, Status: a.status, ContextID: contextID,
			Details: []any{}, Errors: []any{}})
	}
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("genesystest: the response writer cannot hijack its connection")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// errorBody is the Platform API's error body.
type errorBody struct {
	Message   string `json:"message"`
	Code      string `json:"code"`
	Status    int    `json:"status"`
	ContextID string `json:"contextId"`
	Details   []any  `json:"details"`
	Errors    []any  `json:"errors"`
}

// tokenResponse is the login service's answer to a token request.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// The conversation API's model (Conversation, Participant and their media).

type wireConversation struct {
	ID           string            `json:"id"`
	StartTime    string            `json:"startTime"`
	EndTime      string            `json:"endTime,omitempty"`
	Participants []wireParticipant `json:"participants"`
	SelfURI      string            `json:"selfUri"`
}

type wireParticipant struct {
	ID             string                 `json:"id"`
	StartTime      string                 `json:"startTime"`
	EndTime        string                 `json:"endTime,omitempty"`
	ConnectedTime  string                 `json:"connectedTime,omitempty"`
	Name           string                 `json:"name,omitempty"`
	UserID         string                 `json:"userId,omitempty"`
	QueueID        string                 `json:"queueId,omitempty"`
	Purpose        string                 `json:"purpose"`
	WrapupRequired bool                   `json:"wrapupRequired"`
	Media          map[string][]wireMedia `json:"-"`
}

// MarshalJSON writes every media array, empty ones included, as Genesys
// does.
func (p wireParticipant) MarshalJSON() ([]byte, error) {
	type plain wireParticipant
	b, err := json.Marshal(plain(p))
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, name := range []string{"calls", "callbacks", "chats", "cobrowsesessions", "emails", "messages", "screenshares", "socialExpressions", "videos"} {
		media := p.Media[name]
		if media == nil {
			media = []wireMedia{}
		}
		m[name] = media
	}
	return json.Marshal(m)
}

type wireMedia struct {
	State            string `json:"state"`
	ID               string `json:"id"`
	Direction        string `json:"direction"`
	ConnectedTime    string `json:"connectedTime,omitempty"`
	DisconnectedTime string `json:"disconnectedTime,omitempty"`
	DisconnectType   string `json:"disconnectType,omitempty"`
}

func wireConversationOf(c *Conversation) wireConversation {
	w := wireConversation{ID: c.ID, StartTime: isoTime(c.StartedAt), EndTime: isoTime(c.EndedAt),
		SelfURI: "/api/v2/conversations/" + url.PathEscape(c.ID)}
	customerDisconnect := "endpoint"
	if c.Disconnected {
		customerDisconnect = "system"
	}
	w.Participants = append(w.Participants, participantOf(c, "customer", "", "", c.StartedAt, c.StartedAt, c.EndedAt, customerDisconnect))
	if c.QueueID != "" {
		left := c.EndedAt
		if c.AgentConnected {
			left = c.ConnectedAt
		}
		w.Participants = append(w.Participants, participantOf(c, "acd", c.QueueID, "", c.EnqueuedAt, c.EnqueuedAt, left, "transfer"))
	}
	if c.AgentConnected {
		w.Participants = append(w.Participants, participantOf(c, "agent", c.QueueID, c.AgentUserID, c.ConnectedAt, c.ConnectedAt, c.EndedAt, "peer"))
	}
	return w
}

func participantOf(c *Conversation, purpose, queueID, userID string, start, connected, end time.Time, disconnectType string) wireParticipant {
	p := wireParticipant{ID: derivedID(c.ID, purpose), StartTime: isoTime(start), ConnectedTime: isoTime(connected),
		EndTime: isoTime(end), QueueID: queueID, UserID: userID, Purpose: purpose, WrapupRequired: purpose == "agent"}
	m := wireMedia{State: "connected", ID: derivedID(c.ID, purpose+"-media"), Direction: "inbound", ConnectedTime: isoTime(connected)}
	if !end.IsZero() {
		m.State, m.DisconnectedTime, m.DisconnectType = "disconnected", isoTime(end), disconnectType
	}
	p.Media = map[string][]wireMedia{mediaArrays[c.MediaType]: {m}}
	return p
}

// The analytics API's model (the details query's request and answer).

// ConversationQuery is a details query's body (Conversationquery), the
// parts the fake evaluates.
type ConversationQuery struct {
	Interval            string        `json:"interval"`
	Order               string        `json:"order,omitempty"`
	OrderBy             string        `json:"orderBy,omitempty"`
	Paging              *PagingSpec   `json:"paging,omitempty"`
	ConversationFilters []QueryFilter `json:"conversationFilters,omitempty"`
	SegmentFilters      []QueryFilter `json:"segmentFilters,omitempty"`
}

// PagingSpec is a details query's paging.
type PagingSpec struct {
	PageSize   int `json:"pageSize"`
	PageNumber int `json:"pageNumber"`
}

// QueryFilter is a conversation or segment filter: its predicates and
// clauses (nested filters), all true ("and") or any ("or").
type QueryFilter struct {
	Type       string           `json:"type"`
	Clauses    []QueryFilter    `json:"clauses,omitempty"`
	Predicates []QueryPredicate `json:"predicates,omitempty"`
}

// QueryPredicate is a dimension predicate.
type QueryPredicate struct {
	Type      string  `json:"type,omitempty"`
	Dimension string  `json:"dimension"`
	Operator  string  `json:"operator,omitempty"`
	Value     *string `json:"value,omitempty"`
}

type detailsResponse struct {
	Conversations []wireAnalyticsConversation `json:"conversations,omitempty"`
	TotalHits     int                         `json:"totalHits"`
}

type wireAnalyticsConversation struct {
	ConversationID       string                     `json:"conversationId"`
	ConversationStart    string                     `json:"conversationStart"`
	ConversationEnd      string                     `json:"conversationEnd,omitempty"`
	OriginatingDirection string                     `json:"originatingDirection"`
	Participants         []wireAnalyticsParticipant `json:"participants"`
}

type wireAnalyticsParticipant struct {
	ParticipantID string        `json:"participantId"`
	Purpose       string        `json:"purpose"`
	UserID        string        `json:"userId,omitempty"`
	Sessions      []wireSession `json:"sessions"`
}

type wireSession struct {
	MediaType string        `json:"mediaType"`
	SessionID string        `json:"sessionId"`
	Direction string        `json:"direction"`
	Segments  []wireSegment `json:"segments"`
}

type wireSegment struct {
	SegmentStart   string `json:"segmentStart"`
	SegmentEnd     string `json:"segmentEnd,omitempty"`
	SegmentType    string `json:"segmentType"`
	QueueID        string `json:"queueId,omitempty"`
	DisconnectType string `json:"disconnectType,omitempty"`
}

func analyticsOf(c *Conversation) wireAnalyticsConversation {
	w := wireAnalyticsConversation{ConversationID: c.ID, ConversationStart: isoTime(c.StartedAt), ConversationEnd: isoTime(c.EndedAt),
		OriginatingDirection: "inbound"}
	session := func(purpose string, segs ...wireSegment) wireSession {
		return wireSession{MediaType: c.MediaType, SessionID: derivedID(c.ID, purpose+"-session"), Direction: "inbound", Segments: segs}
	}
	w.Participants = append(w.Participants, wireAnalyticsParticipant{ParticipantID: derivedID(c.ID, "customer"), Purpose: "customer",
		Sessions: []wireSession{session("customer", wireSegment{SegmentStart: isoTime(c.StartedAt), SegmentEnd: isoTime(c.EndedAt), SegmentType: "interact"})}})
	if c.QueueID != "" {
		end := c.EndedAt
		if c.AgentConnected {
			end = c.ConnectedAt
		}
		w.Participants = append(w.Participants, wireAnalyticsParticipant{ParticipantID: derivedID(c.ID, "acd"), Purpose: "acd",
			Sessions: []wireSession{session("acd", wireSegment{SegmentStart: isoTime(c.EnqueuedAt), SegmentEnd: isoTime(end), SegmentType: "interact", QueueID: c.QueueID})}})
	}
	if c.AgentConnected {
		w.Participants = append(w.Participants, wireAnalyticsParticipant{ParticipantID: derivedID(c.ID, "agent"), Purpose: "agent", UserID: c.AgentUserID,
			Sessions: []wireSession{session("agent",
				wireSegment{SegmentStart: isoTime(c.ConnectedAt), SegmentEnd: isoTime(c.ConnectedAt), SegmentType: "alert", QueueID: c.QueueID},
				wireSegment{SegmentStart: isoTime(c.ConnectedAt), SegmentEnd: isoTime(c.EndedAt), SegmentType: "interact", QueueID: c.QueueID})}})
	}
	return w
}

// query evaluates a details query over the conversations, under the lock.
func (s *Server) query(q *ConversationQuery) (*detailsResponse, *answer) {
	invalid := func(msg string) *answer {
		a := apiError(http.StatusBadRequest, "invalid.value", msg)
		return &a
	}
	from, to, err := parseInterval(q.Interval)
	if err != nil {
		return nil, invalid("interval: " + err.Error())
	}
	paging := PagingSpec{PageSize: DefaultPageSize, PageNumber: 1}
	if q.Paging != nil {
		paging = *q.Paging
	}
	if paging.PageSize < 1 || paging.PageSize > MaxPageSize || paging.PageNumber < 1 {
		return nil, invalid(fmt.Sprintf("paging: pageSize must be 1 to %d and pageNumber at least 1", MaxPageSize))
	}
	switch q.Order {
	case "", "asc", "desc":
	default:
		return nil, invalid("order: " + q.Order)
	}
	if q.OrderBy != "" && q.OrderBy != "conversationStart" {
		return nil, invalid("orderBy: the fake orders by conversationStart only")
	}
	// Filters are checked whether or not anything matches.
	for _, f := range q.ConversationFilters {
		if _, err := f.match(conversationDims(wireAnalyticsConversation{})); err != nil {
			return nil, invalid(err.Error())
		}
	}
	for _, f := range q.SegmentFilters {
		if _, err := f.match(segmentDims(wireAnalyticsParticipant{}, wireSession{}, wireSegment{})); err != nil {
			return nil, invalid(err.Error())
		}
	}
	// Results only include conversations that started on a day touched by
	// the interval (Conversationquery.interval).
	firstDay, lastDay := from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour).Add(24*time.Hour)
	var matched []wireAnalyticsConversation
	for _, c := range s.conversations {
		if c.StartedAt.Before(firstDay) || !c.StartedAt.Before(lastDay) {
			continue
		}
		w := analyticsOf(c)
		ok, err := matchConversation(w, q)
		if err != nil {
			return nil, invalid(err.Error())
		}
		if ok {
			matched = append(matched, w)
		}
	}
	sort.Slice(matched, func(i, j int) bool {
		a, b := matched[i], matched[j]
		if a.ConversationStart != b.ConversationStart {
			return (a.ConversationStart < b.ConversationStart) != (q.Order == "desc")
		}
		return a.ConversationID < b.ConversationID
	})
	res := &detailsResponse{TotalHits: len(matched)}
	start := (paging.PageNumber - 1) * paging.PageSize
	if start < len(matched) {
		res.Conversations = matched[start:min(start+paging.PageSize, len(matched))]
	}
	return res, nil
}

func parseInterval(v string) (from, to time.Time, err error) {
	a, b, ok := strings.Cut(v, "/")
	if !ok {
		return from, to, fmt.Errorf("%q is not start/end", v)
	}
	if from, err = time.Parse(time.RFC3339, a); err != nil {
		return from, to, err
	}
	if to, err = time.Parse(time.RFC3339, b); err != nil {
		return from, to, err
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("%q ends before it starts", v)
	}
	return from, to, nil
}

// matchConversation applies the query's filters: every conversation filter
// must hold for the conversation, and every segment filter for one of its
// segments.
func matchConversation(w wireAnalyticsConversation, q *ConversationQuery) (bool, error) {
	conv := conversationDims(w)
	for _, f := range q.ConversationFilters {
		ok, err := f.match(conv)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, f := range q.SegmentFilters {
		found := false
		for _, p := range w.Participants {
			for _, s := range p.Sessions {
				for _, seg := range s.Segments {
					ok, err := f.match(segmentDims(p, s, seg))
					if err != nil {
						return false, err
					}
					found = found || ok
				}
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

// conversationDims are the conversation-level dimensions the fake knows.
func conversationDims(w wireAnalyticsConversation) map[string]string {
	return map[string]string{"conversationId": w.ConversationID, "conversationEnd": w.ConversationEnd,
		"originatingDirection": w.OriginatingDirection}
}

// segmentDims are the segment-level dimensions the fake knows: the
// segment's, its session's and its participant's.
func segmentDims(p wireAnalyticsParticipant, s wireSession, seg wireSegment) map[string]string {
	return map[string]string{"purpose": p.Purpose, "userId": p.UserID, "mediaType": s.MediaType,
		"direction": s.Direction, "segmentType": seg.SegmentType, "segmentEnd": seg.SegmentEnd,
		"queueId": seg.QueueID, "disconnectType": seg.DisconnectType}
}

// match evaluates the filter over dims, whose keys are the dimensions the
// fake knows ("" values are absent).
func (f QueryFilter) match(dims map[string]string) (bool, error) {
	var results []bool
	for _, p := range f.Predicates {
		if p.Type != "" && p.Type != "dimension" {
			return false, fmt.Errorf("predicate type %q: the fake knows dimension predicates only", p.Type)
		}
		v, known := dims[p.Dimension]
		if !known {
			return false, fmt.Errorf("dimension %q is not known to the fake", p.Dimension)
		}
		switch p.Operator {
		case "", "matches":
			results = append(results, p.Value != nil && v == *p.Value)
		case "exists":
			results = append(results, v != "")
		case "notExists":
			results = append(results, v == "")
		default:
			return false, fmt.Errorf("operator %q", p.Operator)
		}
	}
	for _, c := range f.Clauses {
		ok, err := c.match(dims)
		if err != nil {
			return false, err
		}
		results = append(results, ok)
	}
	switch f.Type {
	case "and":
		return !slices.Contains(results, false), nil
	case "or":
		return slices.Contains(results, true), nil
	}
	return false, fmt.Errorf("filter type %q (and, or)", f.Type)
}

// isoTime formats t as Genesys does (ISO-8601, UTC, milliseconds); "" for
// the zero time.
func isoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// millis truncates t to milliseconds, Genesys's precision.
func millis(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond)
}

// derivedID is a stable id for a part of a conversation.
func derivedID(conversationID, part string) string {
	return conversationID + "-" + part
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomToken() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
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

// take takes a token if one is left; otherwise it says how long until one
// is.
func (b *bucket) take(now time.Time) (time.Duration, bool) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

// window allows limit requests per fixed window of length, the first
// starting with the first request.
type window struct {
	limit  int
	length time.Duration
	start  time.Time
	n      int
}

// take counts a request if the window has room; otherwise it says how long
// until the next window.
func (w *window) take(now time.Time) (time.Duration, bool) {
	if w.start.IsZero() || now.Sub(w.start) >= w.length {
		w.start, w.n = now, 0
	}
	if w.n >= w.limit {
		return w.start.Add(w.length).Sub(now), false
	}
	w.n++
	return 0, true
}
