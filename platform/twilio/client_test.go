package twilio

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	api "github.com/twilio/twilio-go/rest/api/v2010"
	taskrouter "github.com/twilio/twilio-go/rest/taskrouter/v1"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
	"github.com/contactstop/contactstop/store"
)

// testWorkspace is the workspace the clients under test are bound to.
var testWorkspace = "WS" + strings.Repeat("ab", 16)

// newServer starts a fake with testWorkspace whose every request is
// checked against Twilio's OpenAPI descriptions when the test ends.
func newServer(t *testing.T, opts ...twiliotest.Option) *twiliotest.Server {
	t.Helper()
	srv := twiliotest.New(t, append([]twiliotest.Option{twiliotest.WithWorkspace(testWorkspace)}, opts...)...)
	t.Cleanup(func() { checkShapes(t, srv) })
	return srv
}

// newClient makes a Client bound to testWorkspace on srv with the fake's
// auth token; mod edits its Config first.
func newClient(t *testing.T, srv *twiliotest.Server, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		WorkspaceSID: testWorkspace,
		Endpoint:     srv.URL(),
		AccountSID:   srv.AccountSID,
		AuthToken:    srv.AuthToken,
		CallTimeout:  5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	return c
}

func TestContract(t *testing.T) {
	platformtest.Run(t, func(t *testing.T) platformtest.Harness {
		// The suite compares times to the millisecond; TaskRouter's have
		// whole seconds, so the fake keeps milliseconds here.
		srv := newServer(t, twiliotest.WithTimePrecision(time.Millisecond))
		f := twiliotest.NewContractFake(t, srv, testWorkspace, DefaultReason)
		c := newClient(t, srv)
		unknown := newClient(t, srv, func(c *Config) { c.WorkspaceSID = twiliotest.NewSID("WS") })
		return platformtest.Harness{Platform: f.Wrap(c), UnknownInstance: f.Wrap(unknown), Fake: f}
	})
}

// requireError checks that err is a *platform.Error of kind k.
func requireError(t *testing.T, err error, k platform.Kind) *platform.Error {
	t.Helper()
	var pe *platform.Error
	require.True(t, errors.As(err, &pe), "not a *platform.Error: %T %v", err, err)
	require.Equal(t, k, pe.Kind, "%v", err)
	return pe
}

// ops lists the operations of the requests srv received.
func ops(srv *twiliotest.Server) []twiliotest.Op {
	var out []twiliotest.Op
	for _, r := range srv.Calls() {
		out = append(out, r.Op)
	}
	return out
}

func TestStopTask(t *testing.T) {
	for _, tc := range []struct {
		status, want string
	}{
		{twiliotest.TaskPending, twiliotest.TaskCanceled},
		{twiliotest.TaskReserved, twiliotest.TaskCanceled},
		{twiliotest.TaskAssigned, twiliotest.TaskCompleted},
	} {
		t.Run(tc.status, func(t *testing.T) {
			srv := newServer(t)
			c := newClient(t, srv)
			task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: tc.status, TaskQueueSID: twiliotest.NewSID("WQ")})
			require.NoError(t, c.StopContact(t.Context(), task.SID, "CUSTOMER_ABANDONED"))
			got, _ := srv.Task(testWorkspace, task.SID)
			assert.Equal(t, tc.want, got.AssignmentStatus)
			assert.Equal(t, "CUSTOMER_ABANDONED", got.Reason)
			assert.Equal(t, 1, srv.StopEffects(task.SID))

			reqs := srv.Calls()
			require.Len(t, reqs, 2)
			assert.Equal(t, twiliotest.OpFetchTask, reqs[0].Op)
			assert.Equal(t, twiliotest.OpUpdateTask, reqs[1].Op)
			assert.Equal(t, task.ETag(), reqs[1].Header.Get("If-Match"), "conditional on the fetched ETag")
			assert.Equal(t, url.Values{"AssignmentStatus": {tc.want}, "Reason": {"CUSTOMER_ABANDONED"}}, reqs[1].Form)
			assert.True(t, reqs[1].Effect)
		})
	}
}

func TestStopTaskDefaultReason(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	require.NoError(t, c.StopContact(t.Context(), task.SID, ""))
	got, _ := srv.Task(testWorkspace, task.SID)
	assert.Equal(t, DefaultReason, got.Reason)
}

func TestStopTaskNotActive(t *testing.T) {
	for _, status := range []string{twiliotest.TaskWrapping, twiliotest.TaskCompleted, twiliotest.TaskCanceled} {
		t.Run(status, func(t *testing.T) {
			srv := newServer(t)
			c := newClient(t, srv)
			task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: status})
			pe := requireError(t, c.StopContact(t.Context(), task.SID, ""), platform.NotFound)
			assert.Contains(t, pe.Message, status)
			assert.Equal(t, []twiliotest.Op{twiliotest.OpFetchTask}, ops(srv), "no update")
		})
	}
}

func TestStopTaskUnknownStatus(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: "escalated"})
	pe := requireError(t, c.StopContact(t.Context(), task.SID, ""), platform.InvalidRequest)
	assert.Contains(t, pe.Message, "escalated")
	assert.Equal(t, []twiliotest.Op{twiliotest.OpFetchTask}, ops(srv), "no update")
}

func TestStopTaskPreconditionRetried(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	// Someone else updates the task right after each of the first two
	// fetches: the first two conditional updates fail with 412.
	srv.ChangeTaskAfterNext(twiliotest.OpFetchTask, 2, func(t *twiliotest.Task) { t.Attributes = `{"touched":true}` })
	require.NoError(t, c.StopContact(t.Context(), task.SID, ""))
	assert.Equal(t, 1, srv.StopEffects(task.SID))
	var statuses []int
	var etags []string
	for _, r := range srv.Calls() {
		statuses = append(statuses, r.Status)
		if r.Op == twiliotest.OpUpdateTask {
			etags = append(etags, r.Header.Get("If-Match"))
		}
	}
	assert.Equal(t, []twiliotest.Op{twiliotest.OpFetchTask, twiliotest.OpUpdateTask, twiliotest.OpFetchTask, twiliotest.OpUpdateTask,
		twiliotest.OpFetchTask, twiliotest.OpUpdateTask}, ops(srv))
	assert.Equal(t, []int{200, 412, 200, 412, 200, 200}, statuses)
	assert.Equal(t, []string{`"1"`, `"2"`, `"3"`}, etags, "each update is conditional on the latest fetch")
}

func TestStopTaskPreconditionExhausted(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	srv.ChangeTaskAfterNext(twiliotest.OpFetchTask, MaxConditionalAttempts, func(t *twiliotest.Task) { t.Attributes = "{}" })
	err := c.StopContact(t.Context(), task.SID, "")
	pe := requireError(t, err, platform.Transient)
	assert.True(t, platform.Retryable(err))
	assert.Equal(t, "20412", pe.Code)
	assert.Equal(t, http.StatusPreconditionFailed, pe.Status)
	assert.Contains(t, pe.Message, "changed during each of 4 conditional updates")
	assert.Zero(t, srv.StopEffects(task.SID))
	updates := 0
	for _, op := range ops(srv) {
		if op == twiliotest.OpUpdateTask {
			updates++
		}
	}
	assert.Equal(t, MaxConditionalAttempts, updates)
}

func TestStopTaskChangedMeanwhile(t *testing.T) {
	t.Run("Assigned", func(t *testing.T) {
		// A worker accepted the task between the fetch and the update: it
		// can no longer be canceled, only completed.
		srv := newServer(t)
		c := newClient(t, srv)
		task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: twiliotest.TaskReserved})
		srv.ChangeTaskAfterNext(twiliotest.OpFetchTask, 1, func(t *twiliotest.Task) { t.AssignmentStatus = twiliotest.TaskAssigned })
		require.NoError(t, c.StopContact(t.Context(), task.SID, "x"))
		got, _ := srv.Task(testWorkspace, task.SID)
		assert.Equal(t, twiliotest.TaskCompleted, got.AssignmentStatus)
		reqs := srv.Calls()
		require.Len(t, reqs, 4)
		assert.Equal(t, "canceled", reqs[1].Form.Get("AssignmentStatus"))
		assert.Equal(t, http.StatusPreconditionFailed, reqs[1].Status)
		assert.Equal(t, "completed", reqs[3].Form.Get("AssignmentStatus"))
	})
	t.Run("Canceled", func(t *testing.T) {
		// The customer hung up between the fetch and the update.
		srv := newServer(t)
		c := newClient(t, srv)
		task := srv.AddTask(testWorkspace, twiliotest.Task{})
		srv.ChangeTaskAfterNext(twiliotest.OpFetchTask, 1, func(t *twiliotest.Task) { t.AssignmentStatus, t.Reason = twiliotest.TaskCanceled, "hangup" })
		requireError(t, c.StopContact(t.Context(), task.SID, "x"), platform.NotFound)
		assert.Zero(t, srv.StopEffects(task.SID))
		got, _ := srv.Task(testWorkspace, task.SID)
		assert.Equal(t, "hangup", got.Reason)
	})
	t.Run("Deleted", func(t *testing.T) {
		srv := newServer(t)
		c := newClient(t, srv)
		task := srv.AddTask(testWorkspace, twiliotest.Task{})
		srv.FailNext(twiliotest.OpUpdateTask, 1, twiliotest.Fault{Status: http.StatusNotFound, Code: 20404, Message: "The requested resource was not found"})
		requireError(t, c.StopContact(t.Context(), task.SID, "x"), platform.NotFound)
	})
}

func TestStopCall(t *testing.T) {
	for _, tc := range []struct {
		status, sent, final string
	}{
		{twiliotest.CallQueued, "canceled", twiliotest.CallCanceled},
		{twiliotest.CallRinging, "canceled", twiliotest.CallCanceled},
		{twiliotest.CallInProgress, "completed", twiliotest.CallCompleted},
	} {
		t.Run(tc.status, func(t *testing.T) {
			srv := newServer(t)
			c := newClient(t, srv)
			call := srv.AddCall(twiliotest.VoiceCall{Status: tc.status})
			require.NoError(t, c.StopContact(t.Context(), call.SID, "ignored: calls take no reason"))
			got, _ := srv.VoiceCall(call.SID)
			assert.Equal(t, tc.final, got.Status)
			assert.Equal(t, 1, srv.StopEffects(call.SID))
			reqs := srv.Calls()
			require.Len(t, reqs, 2)
			assert.Equal(t, twiliotest.OpFetchCall, reqs[0].Op)
			assert.Equal(t, "/2010-04-01/Accounts/"+srv.AccountSID+"/Calls/"+call.SID+".json", reqs[0].Path)
			assert.Equal(t, url.Values{"Status": {tc.sent}}, reqs[1].Form)
		})
	}
	for _, status := range []string{twiliotest.CallCompleted, twiliotest.CallBusy, twiliotest.CallFailed, twiliotest.CallNoAnswer, twiliotest.CallCanceled} {
		t.Run(status, func(t *testing.T) {
			srv := newServer(t)
			c := newClient(t, srv)
			call := srv.AddCall(twiliotest.VoiceCall{Status: status})
			requireError(t, c.StopContact(t.Context(), call.SID, ""), platform.NotFound)
			assert.Equal(t, []twiliotest.Op{twiliotest.OpFetchCall}, ops(srv))
		})
	}
	t.Run("Unknown", func(t *testing.T) {
		srv := newServer(t)
		c := newClient(t, srv)
		pe := requireError(t, c.StopContact(t.Context(), twiliotest.NewSID("CA"), ""), platform.NotFound)
		assert.Equal(t, "20404", pe.Code)
		assert.Equal(t, http.StatusNotFound, pe.Status)
	})
}

func TestStopCallChangedMeanwhile(t *testing.T) {
	t.Run("Answered", func(t *testing.T) {
		// Answered between the fetch and the cancellation, which does not
		// affect calls in progress: then completed.
		srv := newServer(t)
		c := newClient(t, srv)
		call := srv.AddCall(twiliotest.VoiceCall{Status: twiliotest.CallRinging})
		srv.ChangeCallAfterNext(twiliotest.OpFetchCall, 1, func(c *twiliotest.VoiceCall) {
			c.Status, c.StartedAt = twiliotest.CallInProgress, time.Now()
		})
		require.NoError(t, c.StopContact(t.Context(), call.SID, ""))
		got, _ := srv.VoiceCall(call.SID)
		assert.Equal(t, twiliotest.CallCompleted, got.Status)
		assert.Equal(t, 1, srv.StopEffects(call.SID))
		reqs := srv.Calls()
		require.Len(t, reqs, 3)
		assert.Equal(t, "canceled", reqs[1].Form.Get("Status"))
		assert.False(t, reqs[1].Effect)
		assert.Equal(t, "completed", reqs[2].Form.Get("Status"))
	})
	t.Run("HungUp", func(t *testing.T) {
		srv := newServer(t)
		c := newClient(t, srv)
		call := srv.AddCall(twiliotest.VoiceCall{})
		srv.ChangeCallAfterNext(twiliotest.OpFetchCall, 1, func(c *twiliotest.VoiceCall) { c.Status, c.EndedAt = twiliotest.CallCompleted, time.Now() })
		pe := requireError(t, c.StopContact(t.Context(), call.SID, ""), platform.NotFound)
		assert.Equal(t, "21220", pe.Code)
		assert.Zero(t, srv.StopEffects(call.SID))
	})
}

func TestDescribeTask(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	queue := twiliotest.NewSID("WQ")
	created := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	entered := created.Add(time.Minute)
	for _, tc := range []struct {
		task twiliotest.Task
		want platform.Status
	}{
		{twiliotest.Task{AssignmentStatus: "pending", Channel: "chat"},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelChat}},
		{twiliotest.Task{AssignmentStatus: "pending", Channel: "voice", TaskQueueSID: queue, TaskQueueEnteredAt: entered},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelVoice, QueueID: queue, EnqueuedAt: entered}},
		{twiliotest.Task{AssignmentStatus: "reserved", Channel: "sms", TaskQueueSID: queue, TaskQueueEnteredAt: entered},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelSMS, QueueID: queue, EnqueuedAt: entered}},
		{twiliotest.Task{AssignmentStatus: "assigned", Channel: "email", TaskQueueSID: queue, TaskQueueEnteredAt: entered},
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelEmail, QueueID: queue, EnqueuedAt: entered}},
		{twiliotest.Task{AssignmentStatus: "wrapping", Channel: "default", TaskQueueSID: queue, TaskQueueEnteredAt: entered, UpdatedAt: entered.Add(time.Minute)},
			platform.Status{State: store.StateEnded, Channel: store.ChannelWorkItem, QueueID: queue, EnqueuedAt: entered, DisconnectedAt: entered.Add(time.Minute)}},
		{twiliotest.Task{AssignmentStatus: "canceled", Channel: "video", UpdatedAt: entered},
			platform.Status{State: store.StateEnded, Channel: store.ChannelWorkItem, DisconnectedAt: entered}},
		{twiliotest.Task{AssignmentStatus: "completed", Channel: "voice", UpdatedAt: entered},
			platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, DisconnectedAt: entered}},
	} {
		tc.task.CreatedAt = created
		task := srv.AddTask(testWorkspace, tc.task)
		st, err := c.DescribeContact(t.Context(), task.SID)
		require.NoError(t, err)
		assert.Equal(t, tc.want, normalize(st), "%s %s", tc.task.AssignmentStatus, tc.task.Channel)
	}
	_, err := c.DescribeContact(t.Context(), twiliotest.NewSID("WT"))
	requireError(t, err, platform.NotFound)
}

// normalize makes a status's times comparable with ==.
func normalize(st platform.Status) platform.Status {
	for _, p := range []*time.Time{&st.EnqueuedAt, &st.DisconnectedAt} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	return st
}

func TestDescribeCall(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	ended := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	for _, tc := range []struct {
		call twiliotest.VoiceCall
		want platform.Status
	}{
		{twiliotest.VoiceCall{Status: "queued"}, platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{twiliotest.VoiceCall{Status: "ringing"}, platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{twiliotest.VoiceCall{Status: "in-progress"}, platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelVoice}},
		{twiliotest.VoiceCall{Status: "completed", EndedAt: ended}, platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, DisconnectedAt: ended}},
		{twiliotest.VoiceCall{Status: "no-answer", EndedAt: ended}, platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, DisconnectedAt: ended}},
	} {
		call := srv.AddCall(tc.call)
		st, err := c.DescribeContact(t.Context(), call.SID)
		require.NoError(t, err)
		assert.Equal(t, tc.want, normalize(st), tc.call.Status)
	}
	_, err := c.DescribeContact(t.Context(), twiliotest.NewSID("CA"))
	requireError(t, err, platform.NotFound)
}

func TestStatusOf(t *testing.T) {
	s := func(v string) *string { return &v }
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	// A status TaskRouter may add later is taken as active.
	assert.Equal(t, platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelWorkItem},
		statusOfTask(taskrouter.TaskrouterV1Task{AssignmentStatus: s("escalated")}))
	// The queue's entry time defaults to the task's creation.
	assert.Equal(t, platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelVoice, QueueID: "WQ1", EnqueuedAt: t0},
		statusOfTask(taskrouter.TaskrouterV1Task{AssignmentStatus: s("pending"), TaskChannelUniqueName: s("Voice"), TaskQueueSid: s("WQ1"), DateCreated: at(0)}))
	// A call's end defaults to date_updated.
	assert.Equal(t, platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, DisconnectedAt: t0},
		statusOfCall(api.ApiV2010Call{Status: s("canceled"), DateUpdated: s("Sun, 01 Mar 2026 12:00:00 +0000")}))
	assert.Equal(t, platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}, statusOfCall(api.ApiV2010Call{}))
	assert.True(t, parseRFC2822("yesterday").IsZero())
}

func TestListActive(t *testing.T) {
	srv := newServer(t, twiliotest.WithMaxPageSize(2))
	c := newClient(t, srv)
	queue := twiliotest.NewSID("WQ")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	want := map[string]store.State{}
	for i, status := range []string{"pending", "reserved", "assigned", "wrapping", "completed", "canceled", "pending", "assigned", "pending"} {
		task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: status, TaskQueueSID: queue, CreatedAt: base.Add(time.Duration(i) * time.Second)})
		switch status {
		case "pending", "reserved":
			want[task.SID] = store.StateQueued
		case "assigned":
			want[task.SID] = store.StateConnected
		}
	}
	srv.AddTask(twiliotest.NewSID("WS"), twiliotest.Task{}) // another workspace's
	got := map[string]store.State{}
	require.NoError(t, c.ListActive(t.Context(), func(l platform.Listed) error {
		assert.NotContains(t, got, l.ContactID, "listed once")
		got[l.ContactID] = l.State
		assert.Equal(t, queue, l.QueueID)
		assert.True(t, l.Active)
		return nil
	}))
	assert.Equal(t, want, got)

	reqs := srv.Calls()
	require.Len(t, reqs, 3, "6 active tasks, 2 a page")
	for i, r := range reqs {
		assert.Equal(t, twiliotest.OpListTask, r.Op)
		assert.Equal(t, []string{"pending", "reserved", "assigned"}, r.Query["AssignmentStatus"])
		assert.Equal(t, "200", r.Query.Get("PageSize"))
		if i > 0 {
			assert.NotEmpty(t, r.Query.Get("PageToken"), "the next page is asked for as Twilio's next_page_url says")
			assert.Equal(t, fmt.Sprint(i), r.Query.Get("Page"))
		}
	}

	// fn's error ends the list, returned as is.
	stop := errors.New("enough")
	n := 0
	err := c.ListActive(t.Context(), func(platform.Listed) error { n++; return stop })
	assert.Same(t, stop, err)
	assert.Equal(t, 1, n)

	// A failing page fails the list.
	srv.FailNext(twiliotest.OpListTask, 1, twiliotest.InternalError())
	err = c.ListActive(t.Context(), func(platform.Listed) error { return nil })
	pe := requireError(t, err, platform.Transient)
	assert.Equal(t, OpListActive, pe.Op)
}

func TestListActiveWorkspace(t *testing.T) {
	srv := newServer(t)
	noWorkspace := newClient(t, srv, func(c *Config) { c.WorkspaceSID = "" })
	requireError(t, noWorkspace.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.InvalidRequest)
	assert.False(t, noWorkspace.Lists(twiliotest.NewSID("WT")))

	unknown := newClient(t, srv, func(c *Config) { c.WorkspaceSID = twiliotest.NewSID("WS") })
	pe := requireError(t, unknown.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.ResourceNotFound)
	assert.Contains(t, pe.Message, "workspace")
	assert.Equal(t, []twiliotest.Op{twiliotest.OpListTask, twiliotest.OpFetchWorkspace}, ops(srv))

	c := newClient(t, srv)
	assert.True(t, c.Lists(twiliotest.NewSID("WT")))
	assert.False(t, c.Lists(twiliotest.NewSID("CA")), "calls are not listed")
	assert.False(t, c.Lists("c-1"))
}

func TestUnknownWorkspaceChecked(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	// Before the workspace was seen, a task's 404 asks whether it exists.
	_, err := c.DescribeContact(t.Context(), twiliotest.NewSID("WT"))
	requireError(t, err, platform.NotFound)
	assert.Equal(t, []twiliotest.Op{twiliotest.OpFetchTask, twiliotest.OpFetchWorkspace}, ops(srv))
	// Seen: no more questions.
	requireError(t, c.StopContact(t.Context(), twiliotest.NewSID("WT"), ""), platform.NotFound)
	assert.Len(t, srv.Calls(), 3)

	// The workspace check's own failure is the answer.
	other := newClient(t, srv, func(c *Config) { c.WorkspaceSID = twiliotest.NewSID("WS") })
	srv.FailNext(twiliotest.OpFetchWorkspace, 1, twiliotest.Forbidden())
	requireError(t, other.StopContact(t.Context(), twiliotest.NewSID("WT"), ""), platform.Denied)
}

func TestClassification(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	for _, tc := range []struct {
		fault twiliotest.Fault
		kind  platform.Kind
	}{
		{twiliotest.TooManyRequests(""), platform.Throttled},
		{twiliotest.Fault{Status: http.StatusTooManyRequests}, platform.Throttled},
		{twiliotest.InternalError(), platform.Transient},
		{twiliotest.ServiceUnavailable(), platform.Transient},
		{twiliotest.Fault{Status: http.StatusBadGateway}, platform.Transient},
		{twiliotest.Fault{Status: http.StatusGatewayTimeout, Code: 20504, Message: "Gateway timeout"}, platform.Transient},
		{twiliotest.Fault{Status: http.StatusRequestTimeout, Code: 20408, Message: "Request timeout"}, platform.Transient},
		{twiliotest.DropConnection(), platform.Transient},
		{twiliotest.Unauthorized(), platform.Denied},
		{twiliotest.Forbidden(), platform.Denied},
		{twiliotest.Fault{Status: http.StatusForbidden}, platform.Denied},
		{twiliotest.InvalidParameter(), platform.InvalidParameter},
		{twiliotest.Fault{Status: http.StatusBadRequest, Code: 21205, Message: "Url is not a valid URL"}, platform.InvalidParameter},
		{twiliotest.MethodNotAllowed(), platform.InvalidRequest},
		{twiliotest.Fault{Status: http.StatusConflict, Code: 20409, Message: "Conflict"}, platform.InvalidRequest},
		{twiliotest.Fault{Status: http.StatusUnsupportedMediaType}, platform.InvalidRequest},
	} {
		name := fmt.Sprintf("%d-%d", tc.fault.Status, tc.fault.Code)
		if tc.fault.Drop {
			name = "drop"
		}
		t.Run(name, func(t *testing.T) {
			ops := []twiliotest.Op{twiliotest.OpFetchTask, twiliotest.OpUpdateTask}
			if tc.fault.Drop {
				// Go's Transport sends a GET again by itself when a reused
				// connection closes without an answer: only the update's
				// loss reaches the adapter for sure.
				ops = ops[1:]
			}
			task := srv.AddTask(testWorkspace, twiliotest.Task{})
			for _, op := range ops {
				srv.FailNext(op, 1, tc.fault)
				pe := requireError(t, c.StopContact(t.Context(), task.SID, ""), tc.kind)
				assert.Equal(t, OpStopContact, pe.Op)
				assert.Equal(t, tc.fault.Status, pe.Status)
				if tc.fault.Code != 0 {
					assert.Equal(t, fmt.Sprint(tc.fault.Code), pe.Code)
					assert.Equal(t, tc.fault.Message, pe.Message)
				}
				assert.Zero(t, srv.StopEffects(task.SID))
			}
			if tc.fault.Drop {
				return
			}
			srv.FailNext(twiliotest.OpFetchTask, 1, tc.fault)
			_, err := c.DescribeContact(t.Context(), task.SID)
			pe := requireError(t, err, tc.kind)
			assert.Equal(t, OpDescribeContact, pe.Op)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v  string
		d  time.Duration
		ok bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	} {
		d, ok := platform.ParseRetryAfter(tc.v, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		assert.Equal(t, tc.d, d, "%q", tc.v)
	}

	srv := newServer(t)
	c := newClient(t, srv)
	call := srv.AddCall(twiliotest.VoiceCall{})
	srv.FailNext(twiliotest.OpUpdateCall, 1, twiliotest.TooManyRequests("4"))
	pe := requireError(t, c.StopContact(t.Context(), call.SID, ""), platform.Throttled)
	assert.Equal(t, 4*time.Second, pe.RetryAfter)
	assert.Equal(t, "20429", pe.Code)
	assert.Zero(t, srv.StopEffects(call.SID), "a 429 is not processed")
}

// TestOneAttemptPerRequest: twilio-go sends each request once, whatever
// the answer; OnAttempt counts every one, under its Twilio operation.
func TestOneAttemptPerRequest(t *testing.T) {
	srv := newServer(t)
	var mu sync.Mutex
	attempts := map[string]int{}
	c := newClient(t, srv, func(c *Config) {
		c.OnAttempt = func(op string) {
			mu.Lock()
			defer mu.Unlock()
			attempts[op]++
		}
	})
	faults := []twiliotest.Fault{twiliotest.TooManyRequests("1"), twiliotest.InternalError(), twiliotest.ServiceUnavailable(),
		twiliotest.Forbidden(), twiliotest.DropConnection(), {Status: http.StatusBadGateway}}
	for _, f := range faults {
		task := srv.AddTask(testWorkspace, twiliotest.Task{})
		srv.FailNext(twiliotest.OpUpdateTask, 1, f)
		require.Error(t, c.StopContact(t.Context(), task.SID, ""), "%+v", f)
		call := srv.AddCall(twiliotest.VoiceCall{})
		srv.FailNext(twiliotest.OpUpdateCall, 1, f)
		require.Error(t, c.StopContact(t.Context(), call.SID, ""), "%+v", f)
	}
	lost := srv.AddTask(testWorkspace, twiliotest.Task{})
	srv.LoseNext(twiliotest.OpUpdateTask, 1)
	requireError(t, c.StopContact(t.Context(), lost.SID, ""), platform.Transient)
	assert.Equal(t, 1, srv.StopEffects(lost.SID))

	counted := map[string]int{}
	for _, r := range srv.Calls() {
		counted[string(r.Op)]++
	}
	n := len(faults)
	assert.Equal(t, map[string]int{APIFetchTask: n + 1, APIUpdateTask: n + 1, APIFetchCall: n, APIUpdateCall: n}, counted)
	assert.Equal(t, counted, attempts, "one attempt per request the fake saw")
}

func TestCredentials(t *testing.T) {
	srv := newServer(t)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	describe := func(c *Client) error { _, err := c.DescribeContact(t.Context(), task.SID); return err }
	last := func() twiliotest.Request { reqs := srv.Calls(); return reqs[len(reqs)-1] }

	t.Run("AuthToken", func(t *testing.T) {
		require.NoError(t, describe(newClient(t, srv)))
		assert.Equal(t, srv.AccountSID, last().AuthUser)
	})
	t.Run("APIKey", func(t *testing.T) {
		require.NoError(t, describe(newClient(t, srv, func(c *Config) { c.AuthToken, c.APIKey, c.APISecret = "", srv.APIKeySID, srv.APIKeySecret })))
		assert.Equal(t, srv.APIKeySID, last().AuthUser)
	})
	t.Run("EnvironmentAuthToken", func(t *testing.T) {
		t.Setenv(EnvAccountSID, srv.AccountSID)
		t.Setenv(EnvAuthToken, srv.AuthToken)
		require.NoError(t, describe(newClient(t, srv, func(c *Config) { c.AccountSID, c.AuthToken = "", "" })))
		assert.Equal(t, srv.AccountSID, last().AuthUser)
	})
	t.Run("EnvironmentAPIKeyWins", func(t *testing.T) {
		t.Setenv(EnvAccountSID, srv.AccountSID)
		t.Setenv(EnvAuthToken, "wrongtoken0123456789")
		t.Setenv(EnvAPIKey, srv.APIKeySID)
		t.Setenv(EnvAPISecret, srv.APIKeySecret)
		require.NoError(t, describe(newClient(t, srv, func(c *Config) { c.AccountSID, c.AuthToken = "", "" })))
		assert.Equal(t, srv.APIKeySID, last().AuthUser)
	})
	t.Run("ConfigWinsOverEnvironment", func(t *testing.T) {
		t.Setenv(EnvAPIKey, srv.APIKeySID)
		t.Setenv(EnvAPISecret, "wrongsecret")
		require.NoError(t, describe(newClient(t, srv)))
		assert.Equal(t, srv.AccountSID, last().AuthUser)
	})
	t.Run("WrongToken", func(t *testing.T) {
		err := describe(newClient(t, srv, func(c *Config) { c.AuthToken = "0123456789abcdef0123456789abcdef" }))
		pe := requireError(t, err, platform.Denied)
		assert.Equal(t, "20003", pe.Code)
		assert.Equal(t, http.StatusUnauthorized, pe.Status)
		assert.Equal(t, "Authenticate", pe.Message)
	})
	for name, mod := range map[string]func(*Config){
		"NoAccount":          func(c *Config) { c.AccountSID = "" },
		"NoToken":            func(c *Config) { c.AuthToken = "" },
		"MalformedAccount":   func(c *Config) { c.AccountSID = "AC-not-a-sid" },
		"KeyWithoutSecret":   func(c *Config) { c.AuthToken, c.APIKey = "", srv.APIKeySID },
		"MalformedKey":       func(c *Config) { c.AuthToken, c.APIKey, c.APISecret = "", "key", "secret" },
		"TokenTwilioRefuses": func(c *Config) { c.AuthToken = "tok:en" },
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(EnvAccountSID, "")
			t.Setenv(EnvAuthToken, "")
			before := len(srv.Calls())
			var attempts int
			c := newClient(t, srv, mod, func(c *Config) { c.OnAttempt = func(string) { attempts++ } })
			pe := requireError(t, describe(c), platform.Denied)
			assert.NotEmpty(t, pe.Message)
			requireError(t, c.StopContact(t.Context(), task.SID, ""), platform.Denied)
			requireError(t, c.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.Denied)
			assert.Len(t, srv.Calls(), before, "nothing was sent")
			assert.Zero(t, attempts)
		})
	}
}

func TestNoCredentialInErrors(t *testing.T) {
	srv := newServer(t)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
	basic := base64.StdEncoding.EncodeToString([]byte(srv.AccountSID + ":" + srv.AuthToken))
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		texts := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			texts = append(texts, e.Error())
		}
		for _, text := range texts {
			assert.NotContains(t, text, srv.AuthToken)
			assert.NotContains(t, text, basic)
		}
	}
	// A proxy that echoes the credentials in its error.
	srv.FailNext(twiliotest.OpUpdateTask, 1, twiliotest.Fault{Status: http.StatusBadGateway, Code: 20502,
		Message: "upstream refused Authorization: Basic " + basic + " (token " + srv.AuthToken + ")"})
	err := c.StopContact(t.Context(), task.SID, "")
	check(t, err)
	assert.Contains(t, err.Error(), "[REDACTED]")
	srv.FailNext(twiliotest.OpFetchTask, 1, twiliotest.TooManyRequests("1"))
	_, err = c.DescribeContact(t.Context(), task.SID)
	check(t, err)
	srv.HangNext(twiliotest.OpFetchTask, 1)
	_, err = c.DescribeContact(t.Context(), task.SID)
	check(t, err)
	check(t, newClient(t, srv, func(c *Config) { c.AuthToken = "wrong" + srv.AuthToken }).StopContact(t.Context(), task.SID, ""))
}

func TestTimeoutAfterEffect(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 150 * time.Millisecond })
	t1 := srv.AddTask(testWorkspace, twiliotest.Task{})
	t2 := srv.AddTask(testWorkspace, twiliotest.Task{})

	srv.HangNext(twiliotest.OpUpdateTask, 1)
	start := time.Now()
	pe := requireError(t, c.StopContact(t.Context(), t1.SID, ""), platform.Transient)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	assert.Contains(t, pe.Error(), "no answer within 150ms")
	assert.Equal(t, 1, srv.StopEffects(t1.SID))

	srv.SetLatency(twiliotest.OpUpdateTask, time.Second)
	requireError(t, c.StopContact(t.Context(), t2.SID, ""), platform.Transient)
	assert.Equal(t, 1, srv.StopEffects(t2.SID), "a slow answer's update took effect")
	srv.SetLatency(twiliotest.OpUpdateTask, 0)

	st, err := c.DescribeContact(t.Context(), t2.SID)
	require.NoError(t, err)
	assert.False(t, st.Active)
	// Trying again, as the worker's backoff does.
	requireError(t, c.StopContact(t.Context(), t2.SID, ""), platform.NotFound)
	assert.Equal(t, 1, srv.StopEffects(t2.SID))
}

func TestCanceledContext(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	srv.HangNext(twiliotest.OpFetchTask, 1)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	pe := requireError(t, c.StopContact(ctx, task.SID, ""), platform.Transient)
	assert.Equal(t, "canceled", pe.Message)
	assert.Zero(t, srv.StopEffects(task.SID))
}

func TestInvalidContactIDs(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	for _, id := range []string{"", "c-1", "WT123", "CA" + strings.Repeat("g", 32), "WT" + strings.Repeat("a", 31) + "/",
		"WT" + strings.Repeat("a", 32) + "/../../x", twiliotest.NewSID("WS"), twiliotest.NewSID("CA") + "?x=1"} {
		requireError(t, c.StopContact(t.Context(), id, ""), platform.InvalidParameter)
		_, err := c.DescribeContact(t.Context(), id)
		requireError(t, err, platform.InvalidParameter)
	}
	noWorkspace := newClient(t, srv, func(c *Config) { c.WorkspaceSID = "" })
	requireError(t, noWorkspace.StopContact(t.Context(), twiliotest.NewSID("WT"), ""), platform.InvalidRequest)
	assert.Empty(t, srv.Calls(), "nothing was sent")
}

func TestNewConfig(t *testing.T) {
	_, err := New(t.Context(), Config{WorkspaceSID: "ws-1"})
	require.ErrorContains(t, err, "WorkspaceSID")
	_, err = New(t.Context(), Config{CallTimeout: -time.Second})
	require.Error(t, err)
	for _, e := range []string{"ftp://x", "http://", "http://h/?q=1", "::"} {
		_, err = New(t.Context(), Config{Endpoint: e})
		require.ErrorContains(t, err, "Endpoint", e)
	}
	c, err := New(t.Context(), Config{AccountSID: twiliotest.NewSID("AC"), AuthToken: "token0123"})
	require.NoError(t, err)
	assert.Equal(t, DefaultCallTimeout, c.timeout)
	assert.Empty(t, c.credErr)
	assert.Nil(t, c.endpoint, "Twilio's own hosts")
}

// TestEndpointWithPath: Endpoint's path prefixes the requests' (a proxy
// mounted under a path).
func TestEndpointWithPath(t *testing.T) {
	srv := newServer(t)
	target, err := url.Parse(srv.URL())
	require.NoError(t, err)
	proxy := httptest.NewServer(http.StripPrefix("/twilio", httputil.NewSingleHostReverseProxy(target)))
	t.Cleanup(proxy.Close)
	c := newClient(t, srv, func(c *Config) { c.Endpoint = proxy.URL + "/twilio/" })
	task := srv.AddTask(testWorkspace, twiliotest.Task{})
	require.NoError(t, c.StopContact(t.Context(), task.SID, ""))
	call := srv.AddCall(twiliotest.VoiceCall{})
	require.NoError(t, c.StopContact(t.Context(), call.SID, ""))
}

// TestRedirectNotFollowed: a 3xx is an ambiguous failure, never followed.
func TestRedirectNotFollowed(t *testing.T) {
	var hits int
	var mu sync.Mutex
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
		w.WriteHeader(http.StatusFound)
		_, _ = w.Write([]byte(`{"sid":"x"}`))
	}))
	t.Cleanup(redirect.Close)
	srv := newServer(t)
	c := newClient(t, srv, func(c *Config) { c.Endpoint = redirect.URL })
	pe := requireError(t, c.StopContact(t.Context(), twiliotest.NewSID("CA"), ""), platform.Transient)
	assert.Equal(t, http.StatusFound, pe.Status)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, hits)
}

func TestQuota(t *testing.T) {
	srv := newServer(t, twiliotest.WithQuota(twiliotest.OpUpdateTask, 1, 5))
	c := newClient(t, srv)
	const n = 12
	sids := make([]string, n)
	for i := range n {
		sids[i] = srv.AddTask(testWorkspace, twiliotest.Task{}).SID
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.StopContact(t.Context(), sids[i], "") })
	}
	wg.Wait()
	stopped := 0
	for i, err := range errs {
		if err == nil {
			stopped++
			continue
		}
		pe := requireError(t, err, platform.Throttled)
		assert.Equal(t, "20429", pe.Code)
		assert.Zero(t, srv.StopEffects(sids[i]))
	}
	assert.GreaterOrEqual(t, stopped, 5)
	assert.Less(t, stopped, n)
}

// TestOpenAPIShapes makes every request the adapter can send and checks
// that the fake saw each operation (newServer's cleanup checks their
// shapes).
func TestOpenAPIShapes(t *testing.T) {
	srv := newServer(t, twiliotest.WithMaxPageSize(1))
	c := newClient(t, srv)
	for _, st := range []string{"pending", "reserved", "assigned"} {
		task := srv.AddTask(testWorkspace, twiliotest.Task{AssignmentStatus: st, TaskQueueSID: twiliotest.NewSID("WQ")})
		_, err := c.DescribeContact(t.Context(), task.SID)
		require.NoError(t, err)
	}
	require.NoError(t, c.ListActive(t.Context(), func(l platform.Listed) error {
		return c.StopContact(t.Context(), l.ContactID, "reason with spaces & symbols")
	}))
	for _, st := range []string{"queued", "ringing", "in-progress"} {
		call := srv.AddCall(twiliotest.VoiceCall{Status: st})
		_, err := c.DescribeContact(t.Context(), call.SID)
		require.NoError(t, err)
		require.NoError(t, c.StopContact(t.Context(), call.SID, ""))
	}
	unknown := newClient(t, srv, func(c *Config) { c.WorkspaceSID = twiliotest.NewSID("WS") })
	_, err := unknown.DescribeContact(t.Context(), twiliotest.NewSID("WT"))
	requireError(t, err, platform.ResourceNotFound)

	checked, seen := checkShapes(t, srv)
	assert.Greater(t, checked, 15)
	for _, op := range []string{APIFetchTask, APIUpdateTask, APIListTask, APIFetchWorkspace, APIFetchCall, APIUpdateCall} {
		assert.Positive(t, seen[op], op)
	}
}
