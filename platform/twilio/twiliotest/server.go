// Package twiliotest is an in-process fake of the Twilio REST API for
// tests: an httptest server that answers, on one host, the endpoints the
// twilio adapter calls — voice calls of API 2010-04-01
// (GET/POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json) and
// TaskRouter v1 tasks (GET/POST /v1/Workspaces/{WorkspaceSid}/Tasks/{Sid},
// GET /v1/Workspaces/{WorkspaceSid}/Tasks, GET /v1/Workspaces/{Sid}) — with
// the wire format twilio-go reads: form-encoded request bodies, JSON
// resources, Twilio's error body ({"code", "message", "more_info",
// "status"}), the Task's ETag and If-Match (412, error 20412), and list
// pages with Twilio's meta (next_page_url carrying a PageToken). Every
// request must carry HTTP Basic credentials: the account SID and its auth
// token, or an API key SID and its secret.
//
//	srv := twiliotest.New(t, twiliotest.WithWorkspace(ws))
//	task := srv.AddTask(ws, twiliotest.Task{TaskQueueSID: "WQ…"})
//	call := srv.AddCall(twiliotest.VoiceCall{Status: twiliotest.CallInProgress})
//	cli, _ := twilio.New(ctx, twilio.Config{WorkspaceSID: ws, Endpoint: srv.URL(),
//		AccountSID: srv.AccountSID, AuthToken: srv.AuthToken})
//
// Tests script it per operation (the Twilio operation ids FetchTask,
// UpdateTask, ListTask, FetchWorkspace, FetchCall, UpdateCall): answer
// latency ([Server.SetLatency]), refusals of the next calls
// ([Server.FailNext] with [TooManyRequests], [InternalError],
// [Unauthorized], [Forbidden], [InvalidParameter], [MethodNotAllowed],
// [DropConnection]), answers lost after the call took effect
// ([Server.LoseNext], [Server.HangNext]), changes made by "someone else"
// right after a call was answered ([Server.ChangeTaskAfterNext],
// [Server.ChangeCallAfterNext]) and a quota per operation ([WithQuota]).
// Every request is logged with its method, path, query, headers and form
// ([Server.Calls]), so that tests can check its shape against Twilio's
// OpenAPI descriptions, and every update that ended a task or a call is
// counted ([Server.StopEffects]).
//
// What the fake does where Twilio's documentation is silent is marked
// "inferred" in the comments below.
//
// A Server is safe for concurrent use.
package twiliotest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
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

// Op names a Twilio operation the fake implements: its operationId in
// Twilio's OpenAPI descriptions.
type Op string

// The operations of the fake.
const (
	// OpFetchTask is GET /v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}.
	OpFetchTask Op = "FetchTask"
	// OpUpdateTask is POST /v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}.
	OpUpdateTask Op = "UpdateTask"
	// OpListTask is GET /v1/Workspaces/{WorkspaceSid}/Tasks.
	OpListTask Op = "ListTask"
	// OpFetchWorkspace is GET /v1/Workspaces/{Sid}.
	OpFetchWorkspace Op = "FetchWorkspace"
	// OpFetchCall is GET /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json.
	OpFetchCall Op = "FetchCall"
	// OpUpdateCall is POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json.
	OpUpdateCall Op = "UpdateCall"
)

// A TaskRouter task's assignment statuses (task_enum_status).
const (
	TaskPending   = "pending"
	TaskReserved  = "reserved"
	TaskAssigned  = "assigned"
	TaskWrapping  = "wrapping"
	TaskCompleted = "completed"
	TaskCanceled  = "canceled"
)

// A voice call's statuses (call_enum_status).
const (
	CallQueued     = "queued"
	CallRinging    = "ringing"
	CallInProgress = "in-progress"
	CallCompleted  = "completed"
	CallBusy       = "busy"
	CallFailed     = "failed"
	CallNoAnswer   = "no-answer"
	CallCanceled   = "canceled"
)

// Twilio's list pages: 50 resources by default, at most 1000
// (PageSize's maximum in the OpenAPI description).
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Task is a TaskRouter task.
type Task struct {
	// SID is the task's sid (WT and 32 hex digits). Default: a new one.
	SID string
	// AssignmentStatus is pending (the default), reserved, assigned,
	// wrapping, completed or canceled.
	AssignmentStatus string
	// TaskQueueSID, when set, is the task queue the task is (or was) in,
	// since TaskQueueEnteredAt (default CreatedAt).
	TaskQueueSID       string
	TaskQueueEnteredAt time.Time
	// Channel is the task channel's unique name: default, voice, chat,
	// sms, email or another. Default "default".
	Channel string
	// Attributes is the task's JSON attributes. Default "{}".
	Attributes string
	// CreatedAt and UpdatedAt are date_created and date_updated. Default:
	// when it was added.
	CreatedAt, UpdatedAt time.Time
	// Reason is the reason of the update that canceled or completed it.
	Reason string
	// Stopped: an UpdateTask ended it (not Disconnect).
	Stopped bool
	// Revision is the task's version, its ETag: every change adds one.
	Revision int
}

// Active reports whether the task still waits or is being worked on
// (pending, reserved or assigned).
func (t Task) Active() bool {
	switch t.AssignmentStatus {
	case TaskPending, TaskReserved, TaskAssigned:
		return true
	}
	return false
}

// ETag is the task's ETag header as the fake sends it: its revision,
// quoted (inferred: Twilio documents the header, not its form).
func (t Task) ETag() string { return `"` + strconv.Itoa(t.Revision) + `"` }

// VoiceCall is a call of the account.
type VoiceCall struct {
	// SID is the call's sid (CA and 32 hex digits). Default: a new one.
	SID string
	// Status is queued, ringing, in-progress (the default), completed,
	// busy, failed, no-answer or canceled.
	Status string
	// From and To are the parties. Default: two example numbers.
	From, To string
	// Direction is inbound (the default), outbound-api or outbound-dial.
	Direction string
	// CreatedAt is date_created; StartedAt is start_time (default
	// CreatedAt, for a call that is or was in progress); EndedAt is
	// end_time (set once it ended).
	CreatedAt, StartedAt, EndedAt time.Time
	// Stopped: an UpdateCall ended it (not Disconnect); StoppedWith is
	// the Status it was sent.
	Stopped     bool
	StoppedWith string
}

// Active reports whether the call has not ended.
func (c VoiceCall) Active() bool {
	switch c.Status {
	case CallQueued, CallRinging, CallInProgress:
		return true
	}
	return false
}

// Request is one request the fake received.
type Request struct {
	// Op is the operation it addressed ("" when it matched none).
	Op Op
	// Method, Path (as sent, escaped), Query and Header are the request's;
	// Header lacks Authorization. AuthUser is the user name of its Basic
	// credentials ("" without); their password is never kept.
	Method   string
	Path     string
	Query    url.Values
	Header   http.Header
	AuthUser string
	// ContentType and Form are its body's media type and form
	// parameters (POST).
	ContentType string
	Form        url.Values
	// SID is the task's or call's sid it named.
	SID string
	At  time.Time
	// Status is the HTTP status answered; 0 when no answer was sent (a
	// dropped connection, a lost answer). Code is Twilio's error code
	// answered (0 on success).
	Status int
	Code   int
	// Effect: this request ended the task or the call (whether or not its
	// answer reached the caller).
	Effect bool
}

// Fault is a scripted refusal of a request: it is answered instead of the
// request being carried out, so it never takes effect.
type Fault struct {
	// Status and Code are the HTTP status and Twilio's error code
	// answered, Message the error's message. Code 0 answers only the
	// status and a body that is not Twilio's (as a proxy or load balancer
	// might).
	Status  int
	Code    int
	Message string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Drop closes the connection without any answer.
	Drop bool
}

// TooManyRequests is Twilio's error 20429 (HTTP 429), with a Retry-After
// header when retryAfter is not "" (Twilio does not document one:
// inferred). https://www.twilio.com/docs/api/errors/20429
func TooManyRequests(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests", RetryAfter: retryAfter}
}

// InternalError is error 20500 (HTTP 500).
func InternalError() Fault {
	return Fault{Status: http.StatusInternalServerError, Code: 20500, Message: "An internal server error has occurred"}
}

// ServiceUnavailable is error 20503 (HTTP 503).
func ServiceUnavailable() Fault {
	return Fault{Status: http.StatusServiceUnavailable, Code: 20503, Message: "Service is unavailable. Please try again"}
}

// Unauthorized is error 20003 (HTTP 401), what Twilio answers to
// credentials it does not accept. https://www.twilio.com/docs/api/errors/20003
func Unauthorized() Fault {
	return Fault{Status: http.StatusUnauthorized, Code: 20003, Message: "Authenticate"}
}

// Forbidden is error 20403 (HTTP 403): the credentials lack the
// permission (a restricted API key).
func Forbidden() Fault {
	return Fault{Status: http.StatusForbidden, Code: 20403, Message: "Forbidden"}
}

// InvalidParameter is a 400 answer to a parameter Twilio refuses (code
// 20001: inferred, Twilio's 400 answers carry a code specific to the
// parameter). https://www.twilio.com/docs/api/errors/400
func InvalidParameter() Fault {
	return Fault{Status: http.StatusBadRequest, Code: 20001, Message: "Invalid parameter"}
}

// MethodNotAllowed is error 20004 (HTTP 405).
func MethodNotAllowed() Fault {
	return Fault{Status: http.StatusMethodNotAllowed, Code: 20004, Message: "Method not allowed"}
}

// DropConnection closes the connection before the request is carried
// out. Go's HTTP client replays an idempotent request (a GET) once by
// itself when a reused connection is closed this way, so a dropped fetch
// may reach the fake twice.
func DropConnection() Fault { return Fault{Drop: true} }

// Option configures a Server.
type Option func(*Server)

// WithCredentials sets the account SID and auth token the server accepts
// (default: random ones per server).
func WithCredentials(accountSID, authToken string) Option {
	return func(s *Server) { s.AccountSID, s.AuthToken = accountSID, authToken }
}

// WithAPIKey sets the API key SID (SK…) and secret the server accepts
// besides the auth token (default: random ones per server).
func WithAPIKey(sid, secret string) Option {
	return func(s *Server) { s.APIKeySID, s.APIKeySecret = sid, secret }
}

// WithWorkspace adds an empty TaskRouter workspace.
func WithWorkspace(workspaceSID string) Option {
	return func(s *Server) { s.addWorkspace(workspaceSID) }
}

// WithQuota sets op's quota: rate calls per second, burst at once; beyond
// it calls are answered 429 (error 20429) without effect. rate <= 0
// removes it. By default there is none: Twilio limits concurrent requests
// per account and publishes no rates for these endpoints (TaskRouter's are
// on the workspace's Limits page in the Console).
func WithQuota(op Op, rate float64, burst int) Option {
	return func(s *Server) { s.setQuota(op, rate, burst) }
}

// WithTimePrecision sets the precision of the times the server keeps and
// answers. Default time.Second: TaskRouter's ISO 8601 dates and the Call
// resource's RFC 2822 dates have whole seconds. A finer precision writes
// TaskRouter dates with fractional seconds (RFC 3339 allows them; Twilio
// does not send them), for tests that compare times to the millisecond.
func WithTimePrecision(d time.Duration) Option {
	return func(s *Server) { s.precision = max(d, time.Nanosecond) }
}

// WithMaxPageSize caps the page size of task lists below Twilio's 1000, to
// make short lists span pages.
func WithMaxPageSize(n int) Option {
	return func(s *Server) { s.maxPageSize = min(max(n, 1), MaxPageSize) }
}

// Server is the fake Twilio REST API.
type Server struct {
	// AccountSID and AuthToken, and APIKeySID and APIKeySecret, are the
	// credentials it accepts. Set them with options, not after New.
	AccountSID   string
	AuthToken    string
	APIKeySID    string
	APIKeySecret string

	srv         *httptest.Server
	done        chan struct{} // closed when the server shuts down: held answers give up
	precision   time.Duration
	maxPageSize int

	mu          sync.Mutex
	workspaces  map[string]map[string]*Task
	voiceCalls  map[string]*VoiceCall
	log         []Request
	effects     map[string]int // task or call sid → updates that ended it
	faults      map[Op][]Fault
	lose        map[Op][]bool // queued lost answers; true: hold until the client gives up
	latency     map[Op]time.Duration
	quotas      map[Op]*bucket
	taskChanges map[Op][]func(*Task)
	callChanges map[Op][]func(*VoiceCall)
}

// New starts a fake Twilio server, closed when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := Start(opts...)
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake Twilio server outside a test; the caller closes it.
func Start(opts ...Option) *Server {
	s := &Server{
		AccountSID:   NewSID("AC"),
		AuthToken:    randomHex(16),
		APIKeySID:    NewSID("SK"),
		APIKeySecret: randomHex(16),
		done:         make(chan struct{}),
		precision:    time.Second,
		maxPageSize:  MaxPageSize,
		workspaces:   map[string]map[string]*Task{},
		voiceCalls:   map[string]*VoiceCall{},
		effects:      map[string]int{},
		faults:       map[Op][]Fault{},
		lose:         map[Op][]bool{},
		latency:      map[Op]time.Duration{},
		quotas:       map[Op]*bucket{},
		taskChanges:  map[Op][]func(*Task){},
		callChanges:  map[Op][]func(*VoiceCall){},
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// NewSID returns a new random sid with the given two-letter prefix (WT,
// CA, WS, WQ, AC, SK…) and 32 lowercase hex digits.
func NewSID(prefix string) string { return prefix + randomHex(16) }

// URL is the server's base URL: the adapter's Endpoint. Both Twilio hosts
// (api.twilio.com and taskrouter.twilio.com) are served there; their paths
// tell them apart.
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

// AddWorkspace adds an empty TaskRouter workspace (nothing if it exists).
func (s *Server) AddWorkspace(workspaceSID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addWorkspace(workspaceSID)
}

func (s *Server) addWorkspace(workspaceSID string) {
	if s.workspaces[workspaceSID] == nil {
		s.workspaces[workspaceSID] = map[string]*Task{}
	}
}

// AddTask adds (or replaces) a task of a workspace, adding the workspace
// if needed, and returns it as the server holds it.
func (s *Server) AddTask(workspaceSID string, t Task) Task {
	now := s.trunc(time.Now())
	if t.SID == "" {
		t.SID = NewSID("WT")
	}
	if t.AssignmentStatus == "" {
		t.AssignmentStatus = TaskPending
	}
	if t.Channel == "" {
		t.Channel = "default"
	}
	if t.Attributes == "" {
		t.Attributes = "{}"
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
		if !t.TaskQueueEnteredAt.IsZero() && t.TaskQueueEnteredAt.Before(now) {
			t.CreatedAt = t.TaskQueueEnteredAt
		}
	}
	if t.TaskQueueSID != "" && t.TaskQueueEnteredAt.IsZero() {
		t.TaskQueueEnteredAt = t.CreatedAt
	}
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = now
	}
	t.CreatedAt, t.UpdatedAt, t.TaskQueueEnteredAt = s.trunc(t.CreatedAt), s.trunc(t.UpdatedAt), s.trunc(t.TaskQueueEnteredAt)
	if t.Revision == 0 {
		t.Revision = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addWorkspace(workspaceSID)
	s.workspaces[workspaceSID][t.SID] = &t
	return t
}

// Task is a task as the server holds it now.
func (s *Server) Task(workspaceSID, sid string) (Task, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.workspaces[workspaceSID][sid]
	if t == nil {
		return Task{}, false
	}
	return *t, true
}

// ChangeTask changes a task as TaskRouter or an agent would (a
// reservation, an acceptance, new attributes): fn edits it, and its
// revision and date_updated move on. It reports whether the task exists.
func (s *Server) ChangeTask(workspaceSID, sid string, fn func(*Task)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.workspaces[workspaceSID][sid]
	if t == nil {
		return false
	}
	s.changeTask(t, fn)
	return true
}

func (s *Server) changeTask(t *Task, fn func(*Task)) {
	fn(t)
	t.Revision++
	t.UpdatedAt = s.trunc(time.Now())
}

// AddCall adds (or replaces) a voice call of the account and returns it
// as the server holds it.
func (s *Server) AddCall(c VoiceCall) VoiceCall {
	now := s.trunc(time.Now())
	if c.SID == "" {
		c.SID = NewSID("CA")
	}
	if c.Status == "" {
		c.Status = CallInProgress
	}
	if c.From == "" {
		c.From = "+14155550100"
	}
	if c.To == "" {
		c.To = "+14155550199"
	}
	if c.Direction == "" {
		c.Direction = "inbound"
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.StartedAt.IsZero() && c.Status != CallQueued && c.Status != CallRinging {
		c.StartedAt = c.CreatedAt
	}
	if c.EndedAt.IsZero() && !c.Active() {
		c.EndedAt = now
	}
	c.CreatedAt, c.StartedAt, c.EndedAt = s.trunc(c.CreatedAt), s.trunc(c.StartedAt), s.trunc(c.EndedAt)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.voiceCalls[c.SID] = &c
	return c
}

// VoiceCall is a call as the server holds it now.
func (s *Server) VoiceCall(sid string) (VoiceCall, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.voiceCalls[sid]
	if c == nil {
		return VoiceCall{}, false
	}
	return *c, true
}

// ChangeCall changes a call as the network would (answered, hung up): fn
// edits it. It reports whether the call exists.
func (s *Server) ChangeCall(sid string, fn func(*VoiceCall)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.voiceCalls[sid]
	if c == nil {
		return false
	}
	fn(c)
	return true
}

// Disconnect ends an active task or call as if the customer hung up and
// reports whether it was active. A waiting task (pending, reserved) is
// canceled with the reason "hangup"; an assigned one moves to wrapping
// (the conversation is over, the agent wraps up); a call is completed.
func (s *Server) Disconnect(sid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.voiceCalls[sid]; c != nil {
		if !c.Active() {
			return false
		}
		c.Status = CallCompleted
		if c.StartedAt.IsZero() {
			c.Status = CallNoAnswer
		}
		c.EndedAt = s.trunc(time.Now())
		return true
	}
	for _, ws := range s.workspaces {
		t := ws[sid]
		if t == nil {
			continue
		}
		if !t.Active() {
			return false
		}
		s.changeTask(t, func(t *Task) {
			if t.AssignmentStatus == TaskAssigned {
				t.AssignmentStatus = TaskWrapping
			} else {
				t.AssignmentStatus, t.Reason = TaskCanceled, "hangup"
			}
		})
		return true
	}
	return false
}

// Calls is the log of every request received, in order.
func (s *Server) Calls() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.log))
	for i, r := range s.log {
		r.Query, r.Form, r.Header = cloneValues(r.Query), cloneValues(r.Form), r.Header.Clone()
		out[i] = r
	}
	return out
}

// StopEffects is how many updates ended the task or call sid. A correct
// caller never makes it more than 1; the fake itself never does either (an
// ended task or call is no longer active), so anything else is a bug of
// the fake.
func (s *Server) StopEffects(sid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects[sid]
}

// FailNext makes the next n requests of op (that pass authentication)
// answer f instead of being carried out.
func (s *Server) FailNext(op Op, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], f)
	}
}

// LoseNext makes the next n requests of op be carried out (an update ends
// its task or call) and then lose their answer: the connection is closed
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

// ChangeTaskAfterNext makes someone else change the task right after each
// of the next n requests of op (FetchTask, UpdateTask) that succeed: fn
// edits it and its revision moves on, so that an update conditional on the
// ETag just answered fails with 412.
func (s *Server) ChangeTaskAfterNext(op Op, n int, fn func(*Task)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.taskChanges[op] = append(s.taskChanges[op], fn)
	}
}

// ChangeCallAfterNext makes the network change the call right after each
// of the next n requests of op (FetchCall, UpdateCall) that succeed.
func (s *Server) ChangeCallAfterNext(op Op, n int, fn func(*VoiceCall)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.callChanges[op] = append(s.callChanges[op], fn)
	}
}

// SetLatency delays every answer of op by d (0: none). The request takes
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

// answer is what the fake answers one request.
type answer struct {
	status     int
	code       int
	message    string
	retryAfter string
	header     http.Header
	body       any
	drop       bool // close the connection without an answer
	hold       bool // ... after the client gives up
}

// apiError is Twilio's error answer.
func apiError(status, code int, message string) answer {
	return answer{status: status, code: code, message: message}
}

func notFound(path string) answer {
	return apiError(http.StatusNotFound, 20404, "The requested resource "+path+" was not found")
}

// route is what a request addresses.
type route struct {
	op        Op
	account   string // the path's AccountSid (calls)
	workspace string // the path's WorkspaceSid (tasks, workspace)
	sid       string // the task's or call's sid
}

// resolve finds the operation a request addresses.
func resolve(method, path string) (route, bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return route{}, false
		}
		parts[i] = u
	}
	switch {
	case len(parts) == 5 && parts[0] == "2010-04-01" && parts[1] == "Accounts" && parts[3] == "Calls" && strings.HasSuffix(parts[4], ".json"):
		r := route{account: parts[2], sid: strings.TrimSuffix(parts[4], ".json")}
		switch method {
		case http.MethodGet:
			r.op = OpFetchCall
		case http.MethodPost:
			r.op = OpUpdateCall
		default:
			return route{}, false
		}
		return r, true
	case len(parts) == 5 && parts[0] == "v1" && parts[1] == "Workspaces" && parts[3] == "Tasks":
		r := route{workspace: parts[2], sid: parts[4]}
		switch method {
		case http.MethodGet:
			r.op = OpFetchTask
		case http.MethodPost:
			r.op = OpUpdateTask
		default:
			return route{}, false
		}
		return r, true
	case len(parts) == 4 && parts[0] == "v1" && parts[1] == "Workspaces" && parts[3] == "Tasks" && method == http.MethodGet:
		return route{op: OpListTask, workspace: parts[2]}, true
	case len(parts) == 3 && parts[0] == "v1" && parts[1] == "Workspaces" && method == http.MethodGet:
		return route{op: OpFetchWorkspace, workspace: parts[2]}, true
	}
	return route{}, false
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	req := Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone(), At: time.Now()}
	req.Header.Del("Authorization")
	req.ContentType, _, _ = mime.ParseMediaType(r.Header.Get("Content-Type"))
	if len(body) > 0 {
		if req.ContentType == "application/x-www-form-urlencoded" {
			req.Form, _ = url.ParseQuery(string(body))
		} else {
			req.Form = url.Values{}
		}
	}
	user, pass, hasAuth := r.BasicAuth()
	if hasAuth {
		req.AuthUser = user
	}
	rt, ok := resolve(r.Method, r.URL.Path)
	req.Op, req.SID = rt.op, rt.sid
	if !hasAuth || !s.accepts(user, pass) {
		// Twilio authenticates before it routes.
		a := apiError(http.StatusUnauthorized, 20003, "Authenticate")
		a.header = http.Header{"Www-Authenticate": {`Basic realm="Twilio API"`}}
		s.finish(w, r, &req, a)
		return
	}
	if !ok {
		s.finish(w, r, &req, notFound(r.URL.Path))
		return
	}
	if req.Form == nil && r.Method == http.MethodPost {
		req.Form = url.Values{}
	}
	s.finish(w, r, &req, s.carryOut(&req, rt, r.URL.Path))
}

// accepts checks Basic credentials.
func (s *Server) accepts(user, pass string) bool {
	switch {
	case user == "" || pass == "":
		return false
	case user == s.AccountSID:
		return pass == s.AuthToken
	case s.APIKeySID != "" && user == s.APIKeySID:
		return pass == s.APIKeySecret
	}
	return false
}

// carryOut decides the answer of an authenticated request and applies its
// effect, under the lock.
func (s *Server) carryOut(req *Request, rt route, path string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.faults[rt.op]; len(q) > 0 {
		f := q[0]
		s.faults[rt.op] = q[1:]
		if f.Drop {
			return answer{drop: true}
		}
		return answer{status: f.Status, code: f.Code, message: f.Message, retryAfter: f.RetryAfter}
	}
	if b := s.quotas[rt.op]; b != nil && !b.take(time.Now()) {
		return apiError(http.StatusTooManyRequests, 20429, "Too Many Requests")
	}
	var a answer
	switch rt.op {
	case OpFetchTask, OpUpdateTask:
		a = s.taskOp(req, rt, path)
	case OpListTask:
		a = s.listTasks(req, rt, path)
	case OpFetchWorkspace:
		if s.workspaces[rt.workspace] == nil {
			return notFound(path)
		}
		a = answer{status: http.StatusOK, body: s.wireWorkspace(rt.workspace)}
	case OpFetchCall, OpUpdateCall:
		a = s.callOp(req, rt, path)
	}
	if a.status < 300 {
		if q := s.lose[rt.op]; len(q) > 0 {
			a = answer{drop: true, hold: q[0]}
			s.lose[rt.op] = q[1:]
		}
	}
	return a
}

// taskOp answers FetchTask and UpdateTask.
func (s *Server) taskOp(req *Request, rt route, path string) answer {
	ws := s.workspaces[rt.workspace]
	if ws == nil {
		return notFound(path)
	}
	t := ws[rt.sid]
	if t == nil {
		return notFound(path)
	}
	if rt.op == OpUpdateTask {
		if a, ok := s.updateTask(req, t); !ok {
			return a
		}
	}
	a := answer{status: http.StatusOK, body: s.wireTask(rt.workspace, t), header: http.Header{"Etag": {t.ETag()}}}
	if q := s.taskChanges[rt.op]; len(q) > 0 {
		s.taskChanges[rt.op] = q[1:]
		s.changeTask(t, q[0])
	}
	return a
}

// updateTask applies UpdateTask's form to t. Twilio documents the
// transitions: canceled from pending or reserved, wrapping from assigned,
// completed from assigned or wrapping
// (https://www.twilio.com/docs/taskrouter/lifecycle-task-state); what it
// answers to another one is inferred (400, code 20001).
func (s *Server) updateTask(req *Request, t *Task) (answer, bool) {
	if m := req.Header.Get("If-Match"); m != "" && m != t.ETag() {
		// https://www.twilio.com/docs/usage/mutation-and-conflict-resolution
		return apiError(http.StatusPreconditionFailed, 20412, "Precondition Failed: the If-Match header does not match the task's ETag"), false
	}
	f := req.Form
	status := f.Get("AssignmentStatus")
	if status != "" {
		if !slices.Contains([]string{TaskPending, TaskReserved, TaskAssigned, TaskCanceled, TaskCompleted, TaskWrapping}, status) {
			return apiError(http.StatusBadRequest, 20001, "AssignmentStatus "+status+" is not valid"), false
		}
		ok := false
		switch status {
		case TaskCanceled:
			ok = t.AssignmentStatus == TaskPending || t.AssignmentStatus == TaskReserved
		case TaskWrapping:
			ok = t.AssignmentStatus == TaskAssigned
		case TaskCompleted:
			ok = t.AssignmentStatus == TaskAssigned || t.AssignmentStatus == TaskWrapping
		}
		if !ok {
			return apiError(http.StatusBadRequest, 20001, fmt.Sprintf("Task %s cannot move from %s to %s", t.SID, t.AssignmentStatus, status)), false
		}
		if (status == TaskCanceled || status == TaskCompleted) && f.Get("Reason") == "" {
			return apiError(http.StatusBadRequest, 20001, "Reason is required to cancel or complete a task"), false
		}
	}
	if p := f.Get("Priority"); p != "" {
		if _, err := strconv.Atoi(p); err != nil {
			return apiError(http.StatusBadRequest, 20001, "Priority must be an integer"), false
		}
	}
	wasActive := t.Active()
	s.changeTask(t, func(t *Task) {
		if a := f.Get("Attributes"); a != "" {
			t.Attributes = a
		}
		if status != "" {
			t.AssignmentStatus = status
			if status == TaskCanceled || status == TaskCompleted {
				t.Reason = f.Get("Reason")
			}
		}
	})
	if wasActive && (t.AssignmentStatus == TaskCanceled || t.AssignmentStatus == TaskCompleted) {
		t.Stopped = true
		req.Effect = true
		s.effects[t.SID]++
	}
	return answer{}, true
}

// listTasks answers ListTask: the workspace's tasks with one of the given
// assignment statuses (repeated parameters, as twilio-go sends them, or
// comma-separated values, as Twilio echoes them in its page URLs), ordered
// by date_created then sid, a page at a time behind a PageToken cursor.
func (s *Server) listTasks(req *Request, rt route, path string) answer {
	ws := s.workspaces[rt.workspace]
	if ws == nil {
		return notFound(path)
	}
	q := req.Query
	var statuses []string
	for _, v := range q["AssignmentStatus"] {
		for st := range strings.SplitSeq(v, ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains([]string{TaskPending, TaskReserved, TaskAssigned, TaskCanceled, TaskCompleted, TaskWrapping}, st) {
				return apiError(http.StatusBadRequest, 20001, "AssignmentStatus "+st+" is not valid")
			}
			statuses = append(statuses, st)
		}
	}
	size := DefaultPageSize
	if v := q.Get("PageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return apiError(http.StatusBadRequest, 20001, "PageSize must be 1 to 1000")
		}
		size = n
	}
	size = min(size, s.maxPageSize)
	page := 0
	if v := q.Get("Page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return apiError(http.StatusBadRequest, 20001, "Page must be a non-negative integer")
		}
		page = n
	}
	var after *cursor
	if v := q.Get("PageToken"); v != "" {
		c, ok := decodeCursor(v)
		if !ok {
			return apiError(http.StatusBadRequest, 20001, "PageToken is not valid")
		}
		after = &c
	} else if page > 0 {
		return apiError(http.StatusBadRequest, 20001, "Page > 0 needs a PageToken")
	}
	var all []*Task
	for _, t := range ws {
		if len(statuses) == 0 || slices.Contains(statuses, t.AssignmentStatus) {
			all = append(all, t)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.Before(all[j].CreatedAt)
		}
		return all[i].SID < all[j].SID
	})
	if after != nil {
		i := sort.Search(len(all), func(i int) bool { return after.before(all[i]) })
		all = all[i:]
	}
	more := len(all) > size
	all = all[:min(len(all), size)]
	tasks := make([]wireTask, len(all))
	for i, t := range all {
		tasks[i] = s.wireTask(rt.workspace, t)
	}
	base := s.srv.URL + path
	filter := url.Values{}
	if len(statuses) > 0 {
		filter.Set("AssignmentStatus", strings.Join(statuses, ","))
	}
	for _, k := range []string{"Priority", "WorkflowSid", "WorkflowName", "TaskQueueSid", "TaskQueueName", "EvaluateTaskAttributes", "RoutingTarget", "Ordering", "HasAddons"} {
		if v := q.Get(k); v != "" {
			filter.Set(k, v)
		}
	}
	pageURL := func(p int, token string) string {
		v := cloneValues(filter)
		v.Set("PageSize", strconv.Itoa(size))
		v.Set("Page", strconv.Itoa(p))
		if token != "" {
			v.Set("PageToken", token)
		}
		return base + "?" + v.Encode()
	}
	meta := listMeta{Key: "tasks", Page: page, PageSize: size, FirstPageURL: pageURL(0, ""), URL: pageURL(page, q.Get("PageToken"))}
	if more {
		next := pageURL(page+1, encodeCursor(cursorOf(all[len(all)-1])))
		meta.NextPageURL = &next
	}
	if page > 0 {
		prev := pageURL(page-1, "PB"+strings.TrimPrefix(q.Get("PageToken"), "PA"))
		meta.PreviousPageURL = &prev
	}
	return answer{status: http.StatusOK, body: listTaskResponse{Tasks: tasks, Meta: meta}}
}

// callOp answers FetchCall and UpdateCall.
func (s *Server) callOp(req *Request, rt route, path string) answer {
	if rt.account != s.AccountSID {
		// Inferred: another account's calls are not found.
		return notFound(path)
	}
	c := s.voiceCalls[rt.sid]
	if c == nil {
		return notFound(path)
	}
	if rt.op == OpUpdateCall {
		if a, ok := s.updateCall(req, c); !ok {
			return a
		}
	}
	a := answer{status: http.StatusOK, body: s.wireCall(c)}
	if q := s.callChanges[rt.op]; len(q) > 0 {
		s.callChanges[rt.op] = q[1:]
		q[0](c)
	}
	return a
}

// updateCall applies UpdateCall's Status. Twilio documents: "Specifying
// canceled will attempt to hang up calls that are queued or ringing;
// however, it will not affect calls already in progress. Specifying
// completed will attempt to hang up a call even if it's already in
// progress." (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource).
// Inferred: canceled on an in-progress call answers 200 with the call
// unchanged; any Status on a call that has ended answers 400, error 21220
// (invalid call state).
func (s *Server) updateCall(req *Request, c *VoiceCall) (answer, bool) {
	status := req.Form.Get("Status")
	switch status {
	case "":
		return answer{}, true // a redirect (Url, Twiml): not modelled, no effect
	case CallCanceled, CallCompleted:
	default:
		return apiError(http.StatusBadRequest, 20001, "Status "+status+" is not valid: canceled or completed"), false
	}
	if !c.Active() {
		return apiError(http.StatusBadRequest, 21220, "Call is not in progress. Cannot modify it."), false
	}
	if status == CallCanceled && c.Status == CallInProgress {
		return answer{}, true
	}
	c.Status = status
	if status == CallCompleted && c.StartedAt.IsZero() {
		c.Status = CallCanceled // it never connected
	}
	c.EndedAt = s.trunc(time.Now())
	c.Stopped, c.StoppedWith = true, status
	req.Effect = true
	s.effects[c.SID]++
	return answer{}, true
}

// finish logs the request and sends its answer.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, req *Request, a answer) {
	if !a.drop {
		req.Status, req.Code = a.status, a.code
	}
	s.mu.Lock()
	s.log = append(s.log, *req)
	delay := s.latency[req.Op]
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
	for k, vs := range a.header {
		h[k] = vs
	}
	h.Set("Twilio-Request-Id", "RQ"+randomHex(16))
	if a.status < 300 {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(a.body)
		return
	}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	if a.code == 0 {
		// Not Twilio's answer: a proxy's.
		h.Set("Content-Type", "text/html")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, "<html><body>"+http.StatusText(a.status)+"</body></html>")
		return
	}
	// Twilio's error body, which twilio-go decodes into
	// client.TwilioRestError.
	h.Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(restError{Code: a.code, Message: a.message,
		MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(a.code), Status: a.status})
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("twiliotest: the response writer cannot hijack its connection")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// restError is Twilio's error body.
type restError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

// wireTask is a task as TaskRouter answers it
// (components.schemas["taskrouter.v1.workspace.task"]).
type wireTask struct {
	AccountSid            string            `json:"account_sid"`
	Age                   int               `json:"age"`
	AssignmentStatus      string            `json:"assignment_status"`
	Attributes            string            `json:"attributes"`
	Addons                string            `json:"addons"`
	DateCreated           *string           `json:"date_created"`
	DateUpdated           *string           `json:"date_updated"`
	TaskQueueEnteredDate  *string           `json:"task_queue_entered_date"`
	VirtualStartTime      *string           `json:"virtual_start_time"`
	Priority              int               `json:"priority"`
	Reason                *string           `json:"reason"`
	Sid                   string            `json:"sid"`
	TaskQueueSid          *string           `json:"task_queue_sid"`
	TaskQueueFriendlyName *string           `json:"task_queue_friendly_name"`
	TaskChannelSid        string            `json:"task_channel_sid"`
	TaskChannelUniqueName string            `json:"task_channel_unique_name"`
	Timeout               int               `json:"timeout"`
	WorkflowSid           string            `json:"workflow_sid"`
	WorkflowFriendlyName  string            `json:"workflow_friendly_name"`
	WorkspaceSid          string            `json:"workspace_sid"`
	URL                   string            `json:"url"`
	Links                 map[string]string `json:"links"`
	IgnoreCapacity        bool              `json:"ignore_capacity"`
	RoutingTarget         *string           `json:"routing_target"`
}

func (s *Server) wireTask(workspaceSID string, t *Task) wireTask {
	u := s.srv.URL + "/v1/Workspaces/" + workspaceSID + "/Tasks/" + t.SID
	w := wireTask{
		AccountSid:            s.AccountSID,
		Age:                   int(time.Since(t.CreatedAt).Seconds()),
		AssignmentStatus:      t.AssignmentStatus,
		Attributes:            t.Attributes,
		Addons:                "{}",
		DateCreated:           s.isoTime(t.CreatedAt),
		DateUpdated:           s.isoTime(t.UpdatedAt),
		VirtualStartTime:      s.isoTime(t.CreatedAt),
		Sid:                   t.SID,
		TaskChannelSid:        "TC" + strings.Repeat("0", 32),
		TaskChannelUniqueName: t.Channel,
		Timeout:               86400,
		WorkflowSid:           "WW" + strings.Repeat("0", 32),
		WorkflowFriendlyName:  "Default Fifo Workflow",
		WorkspaceSid:          workspaceSID,
		URL:                   u,
		Links: map[string]string{
			"workspace":    s.srv.URL + "/v1/Workspaces/" + workspaceSID,
			"reservations": u + "/Reservations",
		},
	}
	if t.Reason != "" {
		w.Reason = &t.Reason
	}
	if t.TaskQueueSID != "" {
		q, name := t.TaskQueueSID, "Queue "+t.TaskQueueSID
		w.TaskQueueSid, w.TaskQueueFriendlyName = &q, &name
		w.TaskQueueEnteredDate = s.isoTime(t.TaskQueueEnteredAt)
		w.Links["task_queue"] = s.srv.URL + "/v1/Workspaces/" + workspaceSID + "/TaskQueues/" + q
	}
	return w
}

// isoTime writes a TaskRouter date: ISO 8601 in UTC, with fractional
// seconds only when the server keeps a finer precision than seconds.
func (s *Server) isoTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	layout := "2006-01-02T15:04:05Z"
	if s.precision < time.Second {
		layout = "2006-01-02T15:04:05.000000000Z"
	}
	v := t.UTC().Format(layout)
	return &v
}

type listMeta struct {
	FirstPageURL    string  `json:"first_page_url"`
	Key             string  `json:"key"`
	NextPageURL     *string `json:"next_page_url"`
	Page            int     `json:"page"`
	PageSize        int     `json:"page_size"`
	PreviousPageURL *string `json:"previous_page_url"`
	URL             string  `json:"url"`
}

type listTaskResponse struct {
	Tasks []wireTask `json:"tasks"`
	Meta  listMeta   `json:"meta"`
}

// wireWorkspace is a workspace as TaskRouter answers it (the fields the
// adapter could read).
type wireWorkspace struct {
	AccountSid   string `json:"account_sid"`
	Sid          string `json:"sid"`
	FriendlyName string `json:"friendly_name"`
	URL          string `json:"url"`
}

func (s *Server) wireWorkspace(sid string) wireWorkspace {
	return wireWorkspace{AccountSid: s.AccountSID, Sid: sid, FriendlyName: "Workspace " + sid, URL: s.srv.URL + "/v1/Workspaces/" + sid}
}

// wireCall is a call as API 2010-04-01 answers it
// (components.schemas["api.v2010.account.call"]).
type wireCall struct {
	Sid             string            `json:"sid"`
	DateCreated     *string           `json:"date_created"`
	DateUpdated     *string           `json:"date_updated"`
	ParentCallSid   *string           `json:"parent_call_sid"`
	AccountSid      string            `json:"account_sid"`
	To              string            `json:"to"`
	ToFormatted     string            `json:"to_formatted"`
	From            string            `json:"from"`
	FromFormatted   string            `json:"from_formatted"`
	PhoneNumberSid  *string           `json:"phone_number_sid"`
	Status          string            `json:"status"`
	StartTime       *string           `json:"start_time"`
	EndTime         *string           `json:"end_time"`
	Duration        *string           `json:"duration"`
	Price           *string           `json:"price"`
	PriceUnit       string            `json:"price_unit"`
	Direction       string            `json:"direction"`
	AnsweredBy      *string           `json:"answered_by"`
	APIVersion      string            `json:"api_version"`
	ForwardedFrom   *string           `json:"forwarded_from"`
	GroupSid        *string           `json:"group_sid"`
	CallerName      *string           `json:"caller_name"`
	QueueTime       string            `json:"queue_time"`
	TrunkSid        *string           `json:"trunk_sid"`
	URI             string            `json:"uri"`
	SubresourceURIs map[string]string `json:"subresource_uris"`
}

func (s *Server) wireCall(c *VoiceCall) wireCall {
	uri := "/2010-04-01/Accounts/" + s.AccountSID + "/Calls/" + c.SID
	updated := c.CreatedAt
	for _, t := range []time.Time{c.StartedAt, c.EndedAt} {
		if t.After(updated) {
			updated = t
		}
	}
	w := wireCall{
		Sid: c.SID, DateCreated: rfc2822(c.CreatedAt), DateUpdated: rfc2822(updated), AccountSid: s.AccountSID,
		To: c.To, ToFormatted: c.To, From: c.From, FromFormatted: c.From, Status: c.Status,
		StartTime: rfc2822(c.StartedAt), EndTime: rfc2822(c.EndedAt), PriceUnit: "USD", Direction: c.Direction,
		APIVersion: "2010-04-01", QueueTime: "0", URI: uri + ".json",
		SubresourceURIs: map[string]string{"recordings": uri + "/Recordings.json", "events": uri + "/Events.json"},
	}
	if !c.EndedAt.IsZero() && !c.StartedAt.IsZero() {
		d := strconv.Itoa(int(c.EndedAt.Sub(c.StartedAt).Seconds()))
		w.Duration = &d
	}
	return w
}

// rfc2822 writes an API 2010-04-01 date, e.g. "Fri, 18 Oct 2019 17:00:00
// +0000".
func rfc2822(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := t.UTC().Format(time.RFC1123Z)
	return &v
}

// cursor is where a list page ends: the last task's date_created and sid.
type cursor struct {
	at  time.Time
	sid string
}

func cursorOf(t *Task) cursor { return cursor{at: t.CreatedAt, sid: t.SID} }

// before reports whether the cursor is before t in the list's order.
func (c cursor) before(t *Task) bool {
	if !c.at.Equal(t.CreatedAt) {
		return c.at.Before(t.CreatedAt)
	}
	return c.sid < t.SID
}

// encodeCursor writes a PageToken, "PA" and an opaque string as Twilio's.
func encodeCursor(c cursor) string {
	raw := strconv.FormatInt(c.at.UnixNano(), 10) + "|" + c.sid
	return "PA" + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(token string) (cursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "PA"))
	if err != nil || !strings.HasPrefix(token, "PA") {
		return cursor{}, false
	}
	ns, sid, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return cursor{}, false
	}
	return cursor{at: time.Unix(0, n), sid: sid}, true
}

// trunc truncates t to the server's precision.
func (s *Server) trunc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(s.precision)
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
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
