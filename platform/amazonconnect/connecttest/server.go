// Package connecttest is an in-process fake of the Amazon Connect API for
// tests: an httptest server that answers StopContact and DescribeContact on
// the REST-JSON wire protocol the AWS SDK for Go v2 speaks (the same paths,
// bodies, timestamps and error encoding), checks every request's AWS
// Signature Version 4 against the credentials it was given, and keeps the
// contacts of its Connect instances.
//
//	srv := connecttest.New(t)
//	srv.AddContact("inst-1", connecttest.Contact{ID: "c-1", QueueID: "q-1"})
//	cli, _ := amazonconnect.New(ctx, amazonconnect.Config{
//		ConnectInstanceID: "inst-1", Region: srv.Region, Endpoint: srv.URL(),
//		Credentials: srv.Credentials()})
//
// Tests script it per operation: answer latency ([Server.SetLatency]),
// refusals of the next calls ([Server.FailNext] with [Throttling],
// [InternalError], [AccessDenied], [InvalidParameter], [InvalidRequest],
// [DropConnection]), answers lost after the stop took effect
// ([Server.LoseNext], [Server.HangNext]) and a quota per operation like
// Amazon Connect's own ([WithQuota]; StopContact defaults to 10 calls per
// second, burst 15). Every call is logged ([Server.Calls]) and every stop
// that ended a contact is counted ([Server.StopEffects]), so checkers can
// verify that no contact was ever ended twice.
//
// Wire details follow the SDK's generated code in
// github.com/aws/aws-sdk-go-v2/service/connect (serializers.go,
// deserializers.go) and the Amazon Connect API reference
// (https://docs.aws.amazon.com/connect/latest/APIReference/API_StopContact.html,
// API_DescribeContact.html).
//
// A Server is safe for concurrent use.
package connecttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/connect/types"
)

// Op names an Amazon Connect operation the fake implements.
type Op string

// The operations of the fake.
const (
	// OpStopContact is POST /contact/stop.
	OpStopContact Op = "StopContact"
	// OpDescribeContact is GET /contacts/{InstanceId}/{ContactId}.
	OpDescribeContact Op = "DescribeContact"
)

// DefaultRegion is the region a Server accepts signatures for unless
// [WithRegion] says otherwise.
const DefaultRegion = "us-east-1"

// Amazon Connect's default quota for StopContact: 10 calls per second,
// burst 15, per account and Region.
const (
	StopContactRate  = 10
	StopContactBurst = 15
)

// Contact is a contact of a Connect instance.
type Contact struct {
	// ID is the contact's id (Connect's ContactId).
	ID string
	// Channel is Connect's channel: VOICE (the default), CHAT, TASK or
	// EMAIL.
	Channel types.Channel
	// InitiatedAt is when the contact began. Default: when it was added,
	// or the earliest of the other times given.
	InitiatedAt time.Time
	// QueueID, when set, is the queue the contact waits in (or waited
	// in), since EnqueuedAt (default InitiatedAt).
	QueueID    string
	EnqueuedAt time.Time
	// AgentConnected: an agent took the contact, at ConnectedAt (default
	// InitiatedAt, or EnqueuedAt when queued).
	AgentConnected bool
	ConnectedAt    time.Time
	// DisconnectedAt is when the contact was disconnected; zero while it
	// is active. AddContact with it set adds a contact that has ended.
	DisconnectedAt time.Time
	// DisconnectReason is the DisconnectReason.Code of the StopContact
	// that ended it ("" if none was given, or if it was not stopped).
	DisconnectReason string
	// Stopped: a StopContact ended it (not the customer, see
	// [Server.Disconnect]).
	Stopped bool
}

// Active reports whether the contact is not disconnected.
func (c Contact) Active() bool { return c.DisconnectedAt.IsZero() }

// Call is one request the fake received.
type Call struct {
	Op         Op
	InstanceID string
	ContactID  string
	// DisconnectReason is the StopContact request's DisconnectReason.Code.
	DisconnectReason string
	// InvocationID is the SDK's amz-sdk-invocation-id header: the same for
	// every attempt of one SDK call.
	InvocationID string
	At           time.Time
	// Status is the HTTP status answered; 0 when no answer was sent (a
	// dropped connection, a lost answer).
	Status int
	// Code is the error code answered (X-Amzn-ErrorType), "" on success.
	Code string
	// Effect: this call ended the contact (a StopContact that disconnected
	// it, whether or not its answer reached the caller).
	Effect bool
}

// Fault is a scripted refusal of a call: it is answered instead of the
// call being carried out, so it never takes effect.
type Fault struct {
	// Status and Code (the exception's name) are the HTTP status and the
	// X-Amzn-ErrorType answered; Message is the error's message. With no
	// Code, only the status is answered (as a proxy or load balancer
	// might).
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, is sent as the Retry-After header (seconds or
	// an HTTP date).
	RetryAfter string
	// Drop closes the connection without any answer.
	Drop bool
}

// Throttling is Amazon's ThrottlingException (429), with a Retry-After
// header when retryAfter is not "".
func Throttling(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: "ThrottlingException", Message: "Rate exceeded", RetryAfter: retryAfter}
}

// InternalError is InternalServiceException (500).
func InternalError() Fault {
	return Fault{Status: http.StatusInternalServerError, Code: "InternalServiceException", Message: "Request processing failed because of an error or failure with the service."}
}

// AccessDenied is AccessDeniedException (403): the caller lacks the
// permission.
func AccessDenied() Fault {
	return Fault{Status: http.StatusForbidden, Code: "AccessDeniedException", Message: "You do not have sufficient access to perform this action."}
}

// InvalidParameter is InvalidParameterException (400).
func InvalidParameter() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: "One or more of the specified parameters are not valid."}
}

// InvalidRequest is InvalidRequestException (400).
func InvalidRequest() Fault {
	return Fault{Status: http.StatusBadRequest, Code: "InvalidRequestException", Message: "The request is not valid."}
}

// DropConnection closes the connection before the call is carried out.
// Go's HTTP client replays an idempotent request (DescribeContact's GET)
// once by itself when a reused connection is closed this way, so a dropped
// DescribeContact may reach the fake twice.
func DropConnection() Fault { return Fault{Drop: true} }

// Option configures a Server.
type Option func(*Server)

// WithRegion sets the region whose signatures the server accepts.
func WithRegion(region string) Option { return func(s *Server) { s.Region = region } }

// WithCredentials sets the access key the server accepts (default: a
// random one per server).
func WithCredentials(accessKeyID, secretAccessKey string) Option {
	return func(s *Server) { s.AccessKeyID, s.SecretAccessKey = accessKeyID, secretAccessKey }
}

// WithQuota sets op's quota: rate calls per second, burst at once; beyond
// it calls are answered ThrottlingException (429) without a Retry-After
// header, as Amazon answers them. rate <= 0 removes the quota. Default:
// StopContact 10/s burst 15, DescribeContact none.
func WithQuota(op Op, rate float64, burst int) Option {
	return func(s *Server) { s.setQuota(op, rate, burst) }
}

// WithInstance adds an empty Connect instance.
func WithInstance(instanceID string) Option {
	return func(s *Server) { s.instances[instanceID] = map[string]*Contact{} }
}

// Server is the fake Amazon Connect API.
type Server struct {
	// AccessKeyID and SecretAccessKey are the credentials whose signatures
	// it accepts; Region is the region they must be scoped to. Set them
	// with options, not after New.
	AccessKeyID     string
	SecretAccessKey string
	Region          string

	srv  *httptest.Server
	done chan struct{} // closed when the server shuts down: held answers give up

	mu        sync.Mutex
	instances map[string]map[string]*Contact
	calls     []Call
	effects   map[string]int // contact id → stops that ended it
	faults    map[Op][]Fault
	lose      map[Op][]bool // queued lost answers; true: hold until the client gives up
	latency   map[Op]time.Duration
	quotas    map[Op]*bucket
}

// New starts a fake Amazon Connect server, closed when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := Start(opts...)
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake Amazon Connect server outside a test (contactstop
// bench measures against it); the caller closes it.
func Start(opts ...Option) *Server {
	s := &Server{
		AccessKeyID:     "AKIA" + strings.ToUpper(randomHex(8)),
		SecretAccessKey: randomHex(20),
		Region:          DefaultRegion,
		done:            make(chan struct{}),
		instances:       map[string]map[string]*Contact{},
		effects:         map[string]int{},
		faults:          map[Op][]Fault{},
		lose:            map[Op][]bool{},
		latency:         map[Op]time.Duration{},
		quotas:          map[Op]*bucket{},
	}
	s.setQuota(OpStopContact, StopContactRate, StopContactBurst)
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's base URL, the SDK's endpoint (BaseEndpoint).
func (s *Server) URL() string { return s.srv.URL }

// Credentials is a provider of the credentials the server accepts.
func (s *Server) Credentials() aws.CredentialsProvider {
	creds := aws.Credentials{AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey, Source: "connecttest"}
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
}

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

// AddInstance adds an empty Connect instance (nothing if it exists).
func (s *Server) AddInstance(instanceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[instanceID] == nil {
		s.instances[instanceID] = map[string]*Contact{}
	}
}

// AddContact adds (or replaces) a contact of a Connect instance, adding
// the instance if needed. Times are kept at millisecond precision, as
// Connect reports them.
func (s *Server) AddContact(instanceID string, c Contact) {
	now := time.Now()
	if c.Channel == "" {
		c.Channel = types.ChannelVoice
	}
	if c.InitiatedAt.IsZero() {
		c.InitiatedAt = now
		for _, t := range []time.Time{c.EnqueuedAt, c.ConnectedAt, c.DisconnectedAt} {
			if !t.IsZero() && t.Before(c.InitiatedAt) {
				c.InitiatedAt = t
			}
		}
	}
	if c.QueueID != "" && c.EnqueuedAt.IsZero() {
		c.EnqueuedAt = c.InitiatedAt
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
	inst := s.instances[instanceID]
	if inst == nil {
		inst = map[string]*Contact{}
		s.instances[instanceID] = inst
	}
	inst[c.ID] = &c
}

// Contact is a contact as the fake holds it now.
func (s *Server) Contact(instanceID, contactID string) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.instances[instanceID][contactID]
	if c == nil {
		return Contact{}, false
	}
	return *c, true
}

// Disconnect ends an active contact as if the customer hung up; it reports
// whether the contact was active.
func (s *Server) Disconnect(instanceID, contactID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.instances[instanceID][contactID]
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

// StopEffects is how many StopContact calls ended contactID (in any
// instance). A correct caller never makes it more than 1; the fake itself
// never does either (a stopped contact is no longer active), so anything
// else is a bug of the fake.
func (s *Server) StopEffects(contactID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects[contactID]
}

// FailNext makes the next n calls of op (that pass authentication) answer
// f instead of being carried out.
func (s *Server) FailNext(op Op, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], f)
	}
}

// LoseNext makes the next n calls of op be carried out (a StopContact
// ends its contact) and then lose their answer: the connection is closed
// without one. The caller sees a connection error.
func (s *Server) LoseNext(op Op, n int) { s.queueLoss(op, n, false) }

// HangNext is like LoseNext, but the answer is held until the caller
// gives up (its timeout) or the server closes; then the connection closes
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

func (s *Server) setQuota(op Op, rate float64, burst int) {
	if rate <= 0 {
		delete(s.quotas, op)
		return
	}
	s.quotas[op] = newBucket(rate, burst, time.Now())
}

// answer is what the fake answers one call.
type answer struct {
	status     int
	code       string
	message    string
	retryAfter string
	body       any
	drop       bool // close the connection without an answer
	hold       bool // ... after the client gives up
}

func apiError(status int, code, message string) answer {
	return answer{status: status, code: code, message: message}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	call := Call{At: time.Now(), InvocationID: r.Header.Get("Amz-Sdk-Invocation-Id")}
	var stop stopContactInput
	var parseErr error
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/contact/stop":
		call.Op = OpStopContact
		if parseErr = json.Unmarshal(body, &stop); parseErr == nil {
			call.InstanceID, call.ContactID = stop.InstanceID, stop.ContactID
			if stop.DisconnectReason != nil {
				call.DisconnectReason = stop.DisconnectReason.Code
			}
		}
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.EscapedPath(), "/contacts/"):
		call.Op = OpDescribeContact
		parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/contacts/"), "/")
		if len(parts) != 2 {
			s.finish(w, r, &call, apiError(http.StatusNotFound, "UnknownOperationException", "Unknown operation"))
			return
		}
		call.InstanceID, _ = url.PathUnescape(parts[0])
		call.ContactID, _ = url.PathUnescape(parts[1])
	default:
		s.finish(w, r, &call, apiError(http.StatusNotFound, "UnknownOperationException", "Unknown operation "+r.Method+" "+r.URL.Path))
		return
	}
	if a, ok := s.authenticate(r, body); !ok {
		s.finish(w, r, &call, a)
		return
	}
	if parseErr != nil {
		s.finish(w, r, &call, apiError(http.StatusBadRequest, "SerializationException", "The request body is not valid JSON"))
		return
	}
	s.finish(w, r, &call, s.carryOut(&call, stop))
}

// carryOut decides the answer of an authenticated call and applies its
// effect, under the lock.
func (s *Server) carryOut(call *Call, stop stopContactInput) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[call.Op]; len(q) > 0 {
		f := q[0]
		s.faults[call.Op] = q[1:]
		if f.Drop {
			return answer{drop: true}
		}
		return answer{status: f.Status, code: f.Code, message: f.Message, retryAfter: f.RetryAfter}
	}
	if b := s.quotas[call.Op]; b != nil && !b.take(time.Now()) {
		return apiError(http.StatusTooManyRequests, "ThrottlingException", "Rate exceeded")
	}
	if a, ok := validate(call); !ok {
		return a
	}
	inst := s.instances[call.InstanceID]
	if inst == nil {
		return apiError(http.StatusNotFound, "ResourceNotFoundException", "Instance not found: "+call.InstanceID)
	}
	c := inst[call.ContactID]
	var a answer
	switch call.Op {
	case OpStopContact:
		// API_StopContact: ContactNotFoundException (410) "The contact with
		// the specified ID is not active or does not exist."
		if c == nil || !c.Active() {
			return apiError(http.StatusGone, "ContactNotFoundException", "The contact with the specified ID is not active or does not exist.")
		}
		c.DisconnectedAt = millis(time.Now())
		c.DisconnectReason = call.DisconnectReason
		c.Stopped = true
		call.Effect = true
		s.effects[call.ContactID]++
		a = answer{status: http.StatusOK, body: struct{}{}}
	case OpDescribeContact:
		// API_DescribeContact has no ContactNotFoundException: an unknown
		// contact is ResourceNotFoundException (404).
		if c == nil {
			return apiError(http.StatusNotFound, "ResourceNotFoundException", "Contact not found: "+call.ContactID)
		}
		a = answer{status: http.StatusOK, body: describeContactOutput{Contact: s.wireContact(call.InstanceID, c)}}
	}
	if q := s.lose[call.Op]; len(q) > 0 {
		a = answer{drop: true, hold: q[0]}
		s.lose[call.Op] = q[1:]
	}
	return a
}

// validate checks the parameters' constraints of the API reference.
func validate(call *Call) (answer, bool) {
	switch {
	case call.InstanceID == "" || len(call.InstanceID) > 100:
		return apiError(http.StatusBadRequest, "InvalidParameterException", "InstanceId must be 1 to 100 characters long"), false
	case call.ContactID == "" || len(call.ContactID) > 256:
		return apiError(http.StatusBadRequest, "InvalidParameterException", "ContactId must be 1 to 256 characters long"), false
	}
	return answer{}, true
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
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Requestid", randomHex(16))
	if a.status < 300 {
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(a.body)
		return
	}
	// REST-JSON errors: the SDK takes the code from X-Amzn-ErrorType (or
	// the body's code/__type) and the message from message/Message
	// (aws/protocol/restjson.GetErrorInfo, and
	// awsRestjson1_deserializeOpError* in the connect module).
	if a.code != "" {
		h.Set("X-Amzn-Errortype", a.code)
	}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": a.message})
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("connecttest: the response writer cannot hijack its connection")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// stopContactInput is StopContact's request body
// (awsRestjson1_serializeOpDocumentStopContactInput).
type stopContactInput struct {
	ContactID        string `json:"ContactId"`
	InstanceID       string `json:"InstanceId"`
	DisconnectReason *struct {
		Code string `json:"Code"`
	} `json:"DisconnectReason"`
}

// describeContactOutput is DescribeContact's answer
// (awsRestjson1_deserializeOpDocumentDescribeContactOutput).
type describeContactOutput struct {
	Contact wireContact `json:"Contact"`
}

type wireContact struct {
	Arn                 string         `json:"Arn"`
	ID                  string         `json:"Id"`
	Channel             types.Channel  `json:"Channel"`
	InitiationMethod    string         `json:"InitiationMethod"`
	InitiationTimestamp epochSeconds   `json:"InitiationTimestamp"`
	LastUpdateTimestamp epochSeconds   `json:"LastUpdateTimestamp"`
	QueueInfo           *wireQueueInfo `json:"QueueInfo,omitempty"`
	AgentInfo           *wireAgentInfo `json:"AgentInfo,omitempty"`
	DisconnectTimestamp *epochSeconds  `json:"DisconnectTimestamp,omitempty"`
	DisconnectReason    string         `json:"DisconnectReason,omitempty"`
}

type wireQueueInfo struct {
	ID               string       `json:"Id"`
	EnqueueTimestamp epochSeconds `json:"EnqueueTimestamp"`
}

type wireAgentInfo struct {
	ID                        string       `json:"Id"`
	ConnectedToAgentTimestamp epochSeconds `json:"ConnectedToAgentTimestamp"`
}

func (s *Server) wireContact(instanceID string, c *Contact) wireContact {
	w := wireContact{
		Arn:                 "arn:aws:connect:" + s.Region + ":123456789012:instance/" + instanceID + "/contact/" + c.ID,
		ID:                  c.ID,
		Channel:             c.Channel,
		InitiationMethod:    string(types.ContactInitiationMethodInbound),
		InitiationTimestamp: epochSeconds(c.InitiatedAt),
		LastUpdateTimestamp: epochSeconds(c.InitiatedAt),
	}
	last := c.InitiatedAt
	if c.QueueID != "" {
		w.QueueInfo = &wireQueueInfo{ID: c.QueueID, EnqueueTimestamp: epochSeconds(c.EnqueuedAt)}
		last = later(last, c.EnqueuedAt)
	}
	if c.AgentConnected {
		w.AgentInfo = &wireAgentInfo{ID: "agent-1", ConnectedToAgentTimestamp: epochSeconds(c.ConnectedAt)}
		last = later(last, c.ConnectedAt)
	}
	if !c.Active() {
		t := epochSeconds(c.DisconnectedAt)
		w.DisconnectTimestamp = &t
		switch {
		case c.Stopped && c.DisconnectReason != "":
			w.DisconnectReason = c.DisconnectReason
		case c.Stopped:
			w.DisconnectReason = "API"
		default:
			w.DisconnectReason = "CUSTOMER_DISCONNECT"
		}
		last = later(last, c.DisconnectedAt)
	}
	w.LastUpdateTimestamp = epochSeconds(last)
	return w
}

// epochSeconds is a timestamp as REST-JSON sends it: a JSON number of
// seconds since the epoch, with milliseconds (the SDK parses it with
// smithy-go's time.ParseEpochSeconds).
type epochSeconds time.Time

// MarshalJSON writes the number, e.g. 1772366400.123.
func (e epochSeconds) MarshalJSON() ([]byte, error) {
	ms := time.Time(e).UnixMilli()
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	return []byte(strconv.FormatInt(sec, 10) + "." + leftPad3(frac)), nil
}

func leftPad3(n int64) string {
	s := strconv.FormatInt(n, 10)
	return strings.Repeat("0", 3-len(s)) + s
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// millis truncates t to milliseconds, Connect's precision.
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
