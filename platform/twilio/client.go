package twilio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"
	taskrouter "github.com/twilio/twilio-go/rest/taskrouter/v1"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// The operations, as platform.Error.Op names them.
const (
	OpStopContact     = "StopContact"
	OpDescribeContact = "DescribeContact"
	OpListActive      = "ListActive"
)

// The Twilio API operations the client calls, as Config.OnAttempt names
// them: their operationId in Twilio's OpenAPI descriptions.
const (
	APIFetchTask      = "FetchTask"      // GET  taskrouter /v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}
	APIUpdateTask     = "UpdateTask"     // POST taskrouter /v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}
	APIListTask       = "ListTask"       // GET  taskrouter /v1/Workspaces/{WorkspaceSid}/Tasks
	APIFetchWorkspace = "FetchWorkspace" // GET  taskrouter /v1/Workspaces/{Sid}
	APIFetchCall      = "FetchCall"      // GET  api /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json
	APIUpdateCall     = "UpdateCall"     // POST api /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json
)

const (
	// DefaultCallTimeout bounds one call when Config.CallTimeout is zero.
	DefaultCallTimeout = 10 * time.Second
	// DefaultReason is the Reason of a task's cancellation or completion
	// when the stop has none: TaskRouter requires one.
	DefaultReason = "Stopped by contactstop"
	// MaxConditionalAttempts bounds the conditional updates of one stop
	// of a task: each one that fails with 412 (the task changed since it
	// was fetched) is followed by a new fetch and a new attempt.
	MaxConditionalAttempts = 4
	// ListPageSize is the page size of ListActive (Twilio: 50 by
	// default, at most 1000).
	ListPageSize = 200
)

// The environment variables the client reads its credentials from when
// Config has none. twilio-go itself reads TWILIO_ACCOUNT_SID and
// TWILIO_AUTH_TOKEN (twilio.NewRestClient), and TWILIO_EDGE and
// TWILIO_REGION (client.NewRequestHandler); the API key pair is read here
// under the names the Twilio CLI uses.
const (
	EnvAccountSID = "TWILIO_ACCOUNT_SID"
	EnvAuthToken  = "TWILIO_AUTH_TOKEN"
	EnvAPIKey     = "TWILIO_API_KEY"
	EnvAPISecret  = "TWILIO_API_SECRET"
	EnvEdge       = "TWILIO_EDGE"
	EnvRegion     = "TWILIO_REGION"
)

// Config binds a Client to one Twilio account and, for tasks, one
// TaskRouter workspace.
type Config struct {
	// WorkspaceSID is the TaskRouter workspace (WS…) whose tasks are the
	// contacts. Without it only voice calls can be stopped and described,
	// and ListActive fails.
	WorkspaceSID string
	// Endpoint, when set, replaces the scheme and host (and prefixes the
	// path) of both Twilio hosts the client calls, api.twilio.com and
	// taskrouter.twilio.com, whose paths do not overlap (/2010-04-01/…,
	// /v1/…): a proxy, tests. Default: Twilio's hosts, with the edge and
	// region of TWILIO_EDGE and TWILIO_REGION.
	Endpoint string
	// AccountSID (AC…) is the account: the user name with AuthToken, and
	// the account of the calls. AuthToken, or APIKey (SK…) and APISecret,
	// authenticate (HTTP Basic). When AuthToken, APIKey and APISecret are
	// all empty they come from the environment: TWILIO_AUTH_TOKEN, or
	// TWILIO_API_KEY and TWILIO_API_SECRET (the API key wins when both
	// are set); AccountSID defaults to TWILIO_ACCOUNT_SID. Missing or
	// malformed credentials fail every call as platform.Denied, without a
	// request.
	AccountSID, AuthToken, APIKey, APISecret string
	// HTTPClient, when set, supplies the Transport requests go through
	// (its other settings are not used: CallTimeout bounds each call, and
	// redirects are never followed). Default: http.DefaultTransport.
	HTTPClient *http.Client
	// CallTimeout bounds each call, its answers included (each page of
	// ListActive). Default DefaultCallTimeout.
	CallTimeout time.Duration
	// OnAttempt, when set, is called for every HTTP attempt, with the
	// Twilio operation's name (APIFetchTask…), to count them in metrics.
	// One StopContact makes several (a fetch, then an update). It must not
	// block.
	OnAttempt func(op string)
}

// Client ends and describes the contacts of one Twilio account and
// workspace through twilio-go. It implements platform.Platform and
// platform.Lister and is safe for concurrent use.
type Client struct {
	workspace  string
	accountSID string
	// username and password are the Basic credentials; credErr says why
	// there are none usable ("" when there are).
	username, password string
	credErr            string
	endpoint           *url.URL
	edge, region       string
	transport          http.RoundTripper
	timeout            time.Duration
	onAttempt          func(string)
	// workspaceSeen is when the workspace was last seen to exist (unix
	// nanoseconds; 0: never): a task's 404 is then NotFound without asking.
	workspaceSeen atomic.Int64
	// secrets are scrubbed from every error text.
	secrets []string
}

var (
	_ platform.Platform = (*Client)(nil)
	_ platform.Lister   = (*Client)(nil)
)

// How long a seen workspace is trusted to exist.
const workspaceTrust = 10 * time.Minute

var (
	taskSID      = regexp.MustCompile(`^WT[0-9a-fA-F]{32}$`)
	callSID      = regexp.MustCompile(`^CA[0-9a-fA-F]{32}$`)
	workspaceSID = regexp.MustCompile(`^WS[0-9a-fA-F]{32}$`)
	accountSID   = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	apiKeySID    = regexp.MustCompile(`^SK[0-9a-fA-F]{32}$`)
	alnum        = regexp.MustCompile(`^[A-Za-z0-9]+$`)
)

// New makes a Client. It reads the credentials (from Config or the
// environment) but calls no API: they are first checked by the first
// call.
func New(_ context.Context, cfg Config) (*Client, error) {
	if cfg.WorkspaceSID != "" && !workspaceSID.MatchString(cfg.WorkspaceSID) {
		return nil, fmt.Errorf("twilio: WorkspaceSID %q: a TaskRouter workspace sid is WS and 32 hex digits", cfg.WorkspaceSID)
	}
	if cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("twilio: CallTimeout %v is negative", cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	c := &Client{
		workspace: cfg.WorkspaceSID,
		timeout:   cfg.CallTimeout,
		onAttempt: cfg.OnAttempt,
		edge:      os.Getenv(EnvEdge),
		region:    os.Getenv(EnvRegion),
		transport: http.DefaultTransport,
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("twilio: Endpoint %q: an http(s) URL without a query is required", cfg.Endpoint)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		c.endpoint = u
	}
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		c.transport = cfg.HTTPClient.Transport
	}
	c.credentials(cfg)
	return c, nil
}

// credentials settles the Basic credentials of cfg or the environment.
func (c *Client) credentials(cfg Config) {
	c.accountSID = cfg.AccountSID
	if c.accountSID == "" {
		c.accountSID = os.Getenv(EnvAccountSID)
	}
	token, key, secret := cfg.AuthToken, cfg.APIKey, cfg.APISecret
	if token == "" && key == "" && secret == "" {
		token, key, secret = os.Getenv(EnvAuthToken), os.Getenv(EnvAPIKey), os.Getenv(EnvAPISecret)
	}
	c.secrets = []string{token, secret}
	switch {
	case c.accountSID == "":
		c.credErr = "no Twilio account SID (set " + EnvAccountSID + ")"
	case !accountSID.MatchString(c.accountSID):
		c.credErr = "the Twilio account SID is not AC and 32 hex digits"
	case key != "" || secret != "":
		switch {
		case key == "" || secret == "":
			c.credErr = "an API key needs both " + EnvAPIKey + " and " + EnvAPISecret
		case !apiKeySID.MatchString(key):
			c.credErr = "the Twilio API key is not SK and 32 hex digits"
		case !alnum.MatchString(secret):
			c.credErr = "the Twilio API secret has characters twilio-go refuses"
		}
		c.username, c.password = key, secret
	case token == "":
		c.credErr = "no Twilio credentials (set " + EnvAuthToken + ", or " + EnvAPIKey + " and " + EnvAPISecret + ")"
	case !alnum.MatchString(token):
		c.credErr = "the Twilio auth token has characters twilio-go refuses"
	default:
		c.username, c.password = c.accountSID, token
	}
	if c.credErr != "" {
		c.username, c.password = "", ""
	}
}

// Lists reports whether ListActive covers contactID (inventory.Coverage):
// it lists the workspace's tasks, not calls.
func (c *Client) Lists(contactID string) bool {
	return c.workspace != "" && taskSID.MatchString(contactID)
}

// contactKind is what a contact id names.
type contactKind int

const (
	kindTask contactKind = iota + 1
	kindCall
)

// kindOf classifies a contact id, refusing one that names neither a task
// nor a call before any request (twilio-go puts ids in paths unescaped).
func (c *Client) kindOf(op, contactID string) (contactKind, *platform.Error) {
	switch {
	case contactID == "":
		return 0, &platform.Error{Kind: platform.InvalidParameter, Op: op, Message: "the contact id is empty"}
	case taskSID.MatchString(contactID):
		if c.workspace == "" {
			return 0, &platform.Error{Kind: platform.InvalidRequest, Op: op,
				Message: "the binding has no TaskRouter workspace: task " + contactID + " cannot be addressed"}
		}
		return kindTask, nil
	case callSID.MatchString(contactID):
		return kindCall, nil
	}
	return 0, &platform.Error{Kind: platform.InvalidParameter, Op: op,
		Message: fmt.Sprintf("contact id %q is neither a TaskRouter task sid (WT…) nor a call sid (CA…)", contactID)}
}

// StopContact ends an active contact: a task of the workspace is canceled
// (pending, reserved) or completed (assigned) with Reason disconnectReason
// (DefaultReason when empty), conditional on the ETag it was fetched with;
// a call is canceled (queued, ringing) or completed (in progress). A
// contact that is not active (a task wrapping, completed or canceled, a
// call that ended, or none) is NotFound. Every failure is a
// *platform.Error.
func (c *Client) StopContact(ctx context.Context, contactID, disconnectReason string) error {
	kind, pe := c.kindOf(OpStopContact, contactID)
	if pe != nil {
		return pe
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, pe := c.session(ctx, OpStopContact)
	if pe != nil {
		return pe
	}
	defer s.close()
	if kind == kindCall {
		return s.stopCall(contactID)
	}
	if disconnectReason == "" {
		disconnectReason = DefaultReason
	}
	return s.stopTask(contactID, disconnectReason)
}

// stopTask cancels or completes a task, conditional on its ETag, fetching
// it again after each 412 (at most MaxConditionalAttempts updates).
func (s *session) stopTask(sid, reason string) error {
	for attempt := 1; ; attempt++ {
		task, etag, err := s.fetchTask(sid)
		if err != nil {
			return s.taskFailure(APIFetchTask, err)
		}
		status := deref(task.AssignmentStatus)
		var target string
		switch status {
		case taskPending, taskReserved:
			target = taskCanceled
		case taskAssigned:
			target = taskCompleted
		case taskWrapping, taskCompleted, taskCanceled:
			return &platform.Error{Kind: platform.NotFound, Op: s.op, Message: "task " + sid + " is " + status + ", not active"}
		default:
			return &platform.Error{Kind: platform.InvalidRequest, Op: s.op, Status: http.StatusOK,
				Message: fmt.Sprintf("task %s has assignment status %q, which this client cannot end", sid, status)}
		}
		params := &taskrouter.UpdateTaskParams{}
		params.SetAssignmentStatus(target).SetReason(reason)
		if etag != "" {
			params.SetIfMatch(etag)
		}
		updated, err := s.updateTask(sid, params)
		if err == nil {
			if st := deref(updated.AssignmentStatus); st != "" && st != target {
				return &platform.Error{Kind: platform.Transient, Op: s.op, Status: http.StatusOK,
					Message: fmt.Sprintf("task %s is %s after AssignmentStatus=%s", sid, st, target)}
			}
			return nil
		}
		pe := s.classify(APIUpdateTask, err)
		if pe.Status != http.StatusPreconditionFailed && pe.Code != strconv.Itoa(codePreconditionFailed) {
			if pe.Kind == platform.NotFound {
				return s.taskFailure(APIUpdateTask, err) // deleted since it was fetched
			}
			return pe
		}
		if attempt >= MaxConditionalAttempts || etag == "" {
			pe.Kind = platform.Transient
			pe.Message = fmt.Sprintf("task %s changed during each of %d conditional updates: %s", sid, attempt, pe.Message)
			return pe
		}
	}
}

// stopCall cancels or completes a call. A call answered between the fetch
// and a cancellation (which does not affect calls in progress) is then
// completed.
func (s *session) stopCall(sid string) error {
	call, err := s.fetchCall(sid)
	if err != nil {
		return s.classify(APIFetchCall, err)
	}
	status := deref(call.Status)
	var target string
	switch status {
	case callQueued, callRinging:
		target = callCanceled
	case callInProgress:
		target = callCompleted
	case "":
		return &platform.Error{Kind: platform.InvalidRequest, Op: s.op, Status: http.StatusOK,
			Message: "call " + sid + " has no status: this client cannot end it"}
	default:
		return &platform.Error{Kind: platform.NotFound, Op: s.op, Message: "call " + sid + " is " + status + ", not active"}
	}
	for {
		updated, err := s.updateCall(sid, target)
		if err != nil {
			pe := s.classify(APIUpdateCall, err)
			if pe.Code == strconv.Itoa(codeInvalidCallState) {
				pe.Kind = platform.NotFound // it ended meanwhile
			}
			return pe
		}
		st := deref(updated.Status)
		switch {
		case st == "" || !callActive(st):
			return nil
		case target == callCanceled && st == callInProgress:
			target = callCompleted
			continue
		}
		return &platform.Error{Kind: platform.Transient, Op: s.op, Status: http.StatusOK,
			Message: fmt.Sprintf("call %s is %s after Status=%s", sid, st, target)}
	}
}

// DescribeContact says what Twilio knows of a task or a call now. Every
// failure is a *platform.Error; a task or call Twilio does not have
// (anymore: TaskRouter deletes ended tasks minutes after they end) is
// NotFound, a task of a workspace that does not exist ResourceNotFound.
func (c *Client) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	kind, pe := c.kindOf(OpDescribeContact, contactID)
	if pe != nil {
		return platform.Status{}, pe
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, pe := c.session(ctx, OpDescribeContact)
	if pe != nil {
		return platform.Status{}, pe
	}
	defer s.close()
	if kind == kindCall {
		call, err := s.fetchCall(contactID)
		if err != nil {
			return platform.Status{}, s.classify(APIFetchCall, err)
		}
		return statusOfCall(call), nil
	}
	task, _, err := s.fetchTask(contactID)
	if err != nil {
		return platform.Status{}, s.taskFailure(APIFetchTask, err)
	}
	return statusOfTask(task), nil
}

// ListActive calls fn for every active task of the workspace (pending,
// reserved, assigned), page by page as Twilio pages them (each page
// bounded by CallTimeout), until fn returns an error (returned as is) or
// the list ends. Failures are *platform.Error.
func (c *Client) ListActive(ctx context.Context, fn func(platform.Listed) error) error {
	if c.workspace == "" {
		return &platform.Error{Kind: platform.InvalidRequest, Op: OpListActive, Message: "the binding has no TaskRouter workspace to list"}
	}
	params := &taskrouter.ListTaskParams{}
	params.SetAssignmentStatus([]string{taskPending, taskReserved, taskAssigned}).SetPageSize(ListPageSize)
	token, page := "", ""
	seen := map[string]bool{}
	for {
		tasks, next, err := c.listPage(ctx, params, token, page)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			st := statusOfTask(t)
			if !st.Active || deref(t.Sid) == "" {
				continue
			}
			if err := fn(platform.Listed{ContactID: deref(t.Sid), Status: st}); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		u, perr := url.Parse(next)
		if perr == nil {
			token, page = u.Query().Get("PageToken"), u.Query().Get("Page")
		}
		if perr != nil || (token == "" && page == "") || seen[token+"&"+page] {
			return &platform.Error{Kind: platform.Transient, Op: OpListActive, Status: http.StatusOK,
				Message: "the task list's next_page_url names no new page"}
		}
		seen[token+"&"+page] = true
	}
}

// listPage fetches one page of the active tasks and the next page's URL
// ("" on the last).
func (c *Client) listPage(ctx context.Context, params *taskrouter.ListTaskParams, token, page string) ([]taskrouter.TaskrouterV1Task, string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, pe := c.session(ctx, OpListActive)
	if pe != nil {
		return nil, "", pe
	}
	defer s.close()
	s.rec.setOp(APIListTask)
	resp, err := s.tr.PageTask(c.workspace, params, token, page)
	if err = s.rec.check(err); err != nil {
		return nil, "", s.taskFailure(APIListTask, err)
	}
	c.sawWorkspace()
	return resp.Tasks, deref(resp.Meta.NextPageUrl), nil
}

// session is one call's use of twilio-go: its requests go through a
// recorder bound to the call's context.
type session struct {
	c   *Client
	op  string
	ctx context.Context
	rec *recorder
	tr  *taskrouter.ApiService
	api *api.ApiService
}

// session starts a call's session, or refuses it when there are no usable
// credentials.
func (c *Client) session(ctx context.Context, op string) (*session, *platform.Error) {
	if c.credErr != "" {
		return nil, &platform.Error{Kind: platform.Denied, Op: op, Message: c.credErr}
	}
	rec := &recorder{base: c.transport, ctx: ctx, endpoint: c.endpoint, onAttempt: c.onAttempt}
	tc := &client.Client{
		Credentials: client.NewCredentials(c.username, c.password),
		HTTPClient: &http.Client{Transport: rec, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	tc.SetAccountSid(c.accountSID)
	h := &client.RequestHandler{Client: tc, Edge: c.edge, Region: c.region}
	return &session{c: c, op: op, ctx: ctx, rec: rec, tr: taskrouter.NewApiService(h), api: api.NewApiService(h)}, nil
}

func (s *session) close() { s.rec.close() }

func (s *session) fetchTask(sid string) (taskrouter.TaskrouterV1Task, string, error) {
	s.rec.setOp(APIFetchTask)
	m, err := s.tr.FetchTaskWithMetadata(s.c.workspace, sid)
	if err = s.rec.check(err); err != nil {
		return taskrouter.TaskrouterV1Task{}, "", err
	}
	s.c.sawWorkspace()
	return m.GetResource(), m.GetHeaders().Get("ETag"), nil
}

func (s *session) updateTask(sid string, params *taskrouter.UpdateTaskParams) (taskrouter.TaskrouterV1Task, error) {
	s.rec.setOp(APIUpdateTask)
	t, err := s.tr.UpdateTask(s.c.workspace, sid, params)
	if err = s.rec.check(err); err != nil {
		return taskrouter.TaskrouterV1Task{}, err
	}
	return *t, nil
}

func (s *session) fetchCall(sid string) (api.ApiV2010Call, error) {
	s.rec.setOp(APIFetchCall)
	call, err := s.api.FetchCall(sid, nil)
	if err = s.rec.check(err); err != nil {
		return api.ApiV2010Call{}, err
	}
	return *call, nil
}

func (s *session) updateCall(sid, status string) (api.ApiV2010Call, error) {
	s.rec.setOp(APIUpdateCall)
	params := &api.UpdateCallParams{}
	params.SetStatus(status)
	call, err := s.api.UpdateCall(sid, params)
	if err = s.rec.check(err); err != nil {
		return api.ApiV2010Call{}, err
	}
	return *call, nil
}

// taskFailure classifies a failed task request; a 404 is NotFound when the
// workspace exists and ResourceNotFound when it does not (Twilio answers
// both with 20404), asked with FetchWorkspace unless it was seen lately.
func (s *session) taskFailure(apiOp string, err error) *platform.Error {
	pe := s.classify(apiOp, err)
	if pe.Kind != platform.NotFound || s.c.workspaceKnown() {
		return pe
	}
	s.rec.setOp(APIFetchWorkspace)
	_, werr := s.tr.FetchWorkspace(s.c.workspace)
	if werr = s.rec.check(werr); werr != nil {
		wpe := s.classify(APIFetchWorkspace, werr)
		if wpe.Kind == platform.NotFound {
			wpe.Kind = platform.ResourceNotFound
			wpe.Message = "TaskRouter workspace " + s.c.workspace + " not found: " + wpe.Message
		}
		return wpe
	}
	s.c.sawWorkspace()
	return pe
}

func (c *Client) sawWorkspace() { c.workspaceSeen.Store(time.Now().UnixNano()) }

func (c *Client) workspaceKnown() bool {
	seen := c.workspaceSeen.Load()
	return seen != 0 && time.Since(time.Unix(0, seen)) < workspaceTrust
}

// TaskRouter's assignment statuses and the Call resource's statuses.
const (
	taskPending   = "pending"
	taskReserved  = "reserved"
	taskAssigned  = "assigned"
	taskWrapping  = "wrapping"
	taskCompleted = "completed"
	taskCanceled  = "canceled"

	callQueued     = "queued"
	callRinging    = "ringing"
	callInProgress = "in-progress"
	callCompleted  = "completed"
	callCanceled   = "canceled"
)

func callActive(status string) bool {
	return status == callQueued || status == callRinging || status == callInProgress
}

// statusOfTask maps a task to a platform status: pending and reserved (a
// worker is offered it, it still waits in its queue) are QUEUED, or
// INITIATED before a workflow put it in a queue; assigned is CONNECTED;
// wrapping, completed and canceled are ENDED since date_updated. An
// unknown status is taken as active (INITIATED): only Twilio's word ends a
// contact.
func statusOfTask(t taskrouter.TaskrouterV1Task) platform.Status {
	st := platform.Status{Active: true, State: store.StateInitiated, Channel: channelOf(deref(t.TaskChannelUniqueName))}
	if q := deref(t.TaskQueueSid); q != "" {
		st.QueueID = q
		switch {
		case t.TaskQueueEnteredDate != nil:
			st.EnqueuedAt = *t.TaskQueueEnteredDate
		case t.DateCreated != nil:
			st.EnqueuedAt = *t.DateCreated
		}
	}
	switch deref(t.AssignmentStatus) {
	case taskPending, taskReserved:
		if st.QueueID != "" {
			st.State = store.StateQueued
		}
	case taskAssigned:
		st.State = store.StateConnected
	case taskWrapping, taskCompleted, taskCanceled:
		st.Active = false
		st.State = store.StateEnded
		if t.DateUpdated != nil {
			st.DisconnectedAt = *t.DateUpdated
		}
	}
	return st
}

// statusOfCall maps a call to a platform status: queued and ringing are
// INITIATED (a call's "queued" is Twilio's dialing queue, not a
// contact-center queue), in-progress is CONNECTED, every other status is
// ENDED since end_time (date_updated when it has none).
func statusOfCall(c api.ApiV2010Call) platform.Status {
	st := platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}
	switch deref(c.Status) {
	case callQueued, callRinging:
	case callInProgress:
		st.State = store.StateConnected
	case "":
		// Unknown: active, as for tasks.
	default:
		st.Active = false
		st.State = store.StateEnded
		st.DisconnectedAt = parseRFC2822(deref(c.EndTime))
		if st.DisconnectedAt.IsZero() {
			st.DisconnectedAt = parseRFC2822(deref(c.DateUpdated))
		}
	}
	return st
}

// parseRFC2822 reads API 2010-04-01's dates ("Fri, 18 Oct 2019 17:00:00
// +0000"); zero when empty or unreadable.
func parseRFC2822(v string) time.Time {
	for _, layout := range []string{time.RFC1123Z, time.RFC1123} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// channelOf maps a TaskRouter task channel's unique name to the store's
// channel: voice, chat, sms and email are VOICE, CHAT, SMS and EMAIL;
// default, video and custom channels are WORK_ITEM.
func channelOf(uniqueName string) store.Channel {
	switch strings.ToLower(uniqueName) {
	case "voice":
		return store.ChannelVoice
	case "chat":
		return store.ChannelChat
	case "sms":
		return store.ChannelSMS
	case "email":
		return store.ChannelEmail
	}
	return store.ChannelWorkItem
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// errNoAnswer marks a twilio-go success whose HTTP answer was not 2xx (a
// redirect twilio-go took for success).
var errNoAnswer = errors.New("the answer is not a success")
