package twilio

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/store"
)

// twilioSignature computes X-Twilio-Signature as Twilio documents it
// (https://www.twilio.com/docs/usage/webhooks/webhooks-security): the full
// URL, then each POST parameter's name and value sorted by name, signed
// with HMAC-SHA1 keyed by the auth token, in base64. It is written here
// independently of the code under test.
func twilioSignature(authToken, fullURL string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := fullURL
	for _, k := range keys {
		vs := append([]string(nil), form[k]...)
		sort.Strings(vs)
		for i, v := range vs {
			if i > 0 && vs[i-1] == v {
				continue
			}
			s += k + v
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

const (
	eventWorkspace = "WS5d3a8b2c1e0f4a6b9c7d8e9f0a1b2c3d"
	eventTask      = "WT8c6a5b4d3e2f1a0b9c8d7e6f5a4b3c2d"
	eventQueue     = "WQ1f2e3d4c5b6a79881726354453627180"
	eventToken     = "f3b1c5e7a9d2468ace13579bdf02468a"
)

// taskEventForm is a TaskRouter event callback as TaskRouter POSTs it to
// the workspace's EventCallbackUrl: the parameters of every event and the
// Task data of the Events reference
// (https://www.twilio.com/docs/taskrouter/api/event/reference), with
// TimestampMs (sent since 2018, https://www.twilio.com/docs/taskrouter/changelog).
// Constructed from those field lists, not captured from Twilio.
func taskEventForm(eventType, status string, at time.Time, edit ...func(url.Values)) url.Values {
	f := url.Values{
		"EventType":             {eventType},
		"AccountSid":            {"AC0123456789abcdef0123456789abcdef"},
		"WorkspaceSid":          {eventWorkspace},
		"WorkspaceName":         {"Flex Task Assignment"},
		"EventDescription":      {"Task " + eventTask + " " + strings.TrimPrefix(eventType, "task.")},
		"ResourceType":          {"task"},
		"ResourceSid":           {eventTask},
		"Sid":                   {"EV" + strings.Repeat("0a", 16)},
		"Timestamp":             {strconv.FormatInt(at.Unix(), 10)},
		"TimestampMs":           {strconv.FormatInt(at.UnixMilli(), 10)},
		"TaskSid":               {eventTask},
		"TaskAttributes":        {`{"type":"inbound","call_sid":"CA0123456789abcdef0123456789abcdef","direction":"inbound"}`},
		"TaskAge":               {"42"},
		"TaskPriority":          {"0"},
		"TaskAssignmentStatus":  {status},
		"TaskChannelSid":        {"TC0123456789abcdef0123456789abcdef"},
		"TaskChannelUniqueName": {"voice"},
		"TaskDateCreated":       {strconv.FormatInt(at.Add(-42*time.Second).Unix(), 10)},
		"WorkflowSid":           {"WW0123456789abcdef0123456789abcdef"},
		"WorkflowName":          {"Assign to Anyone"},
	}
	for _, e := range edit {
		e(f)
	}
	return f
}

// inQueue adds the task queue's fields.
func inQueue(entered time.Time) func(url.Values) {
	return func(f url.Values) {
		f.Set("TaskQueueSid", eventQueue)
		f.Set("TaskQueueName", "Everyone")
		f.Set("TaskQueueTargetExpression", "1==1")
		f.Set("TaskQueueEnteredDate", strconv.FormatInt(entered.Unix(), 10))
	}
}

// reservation adds a reservation's fields.
func reservation(f url.Values) {
	f.Set("ResourceType", "reservation")
	f.Set("ResourceSid", "WR0123456789abcdef0123456789abcdef")
	f.Set("ReservationSid", "WR0123456789abcdef0123456789abcdef")
	f.Set("WorkerSid", "WK0123456789abcdef0123456789abcdef")
	f.Set("WorkerName", "alice")
	f.Set("WorkerActivityName", "Available")
}

func TestDecodeTaskEvent(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.UTC)
	entered := time.Date(2026, 3, 1, 11, 59, 30, 0, time.UTC)
	queued := func(e store.ContactEvent) store.ContactEvent {
		e.QueueID, e.EnqueuedAt = eventQueue, entered
		return e
	}
	ev := func(state store.State) store.ContactEvent {
		e := store.ContactEvent{ContactID: eventTask, State: state, Channel: store.ChannelVoice, At: at}
		if state == store.StateEnded {
			e.DisconnectedAt = at
		}
		return e
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want store.ContactEvent
	}{
		{"task.created", taskEventForm("task.created", "pending", at), ev(store.StateInitiated)},
		{"task-queue.entered", taskEventForm("task-queue.entered", "pending", at, inQueue(entered)), queued(ev(store.StateQueued))},
		{"task-queue.entered without date", taskEventForm("task-queue.entered", "pending", at, inQueue(entered), func(f url.Values) { f.Del("TaskQueueEnteredDate") }),
			func() store.ContactEvent { e := queued(ev(store.StateQueued)); e.EnqueuedAt = at; return e }()},
		{"reservation.created", taskEventForm("reservation.created", "reserved", at, inQueue(entered), reservation), queued(ev(store.StateQueued))},
		{"reservation.accepted", taskEventForm("reservation.accepted", "assigned", at, inQueue(entered), reservation), queued(ev(store.StateConnected))},
		{"reservation.accepted, status not yet", taskEventForm("reservation.accepted", "reserved", at, inQueue(entered), reservation), queued(ev(store.StateConnected))},
		{"reservation.rejected", taskEventForm("reservation.rejected", "pending", at, inQueue(entered), reservation), queued(ev(store.StateQueued))},
		{"task.updated", taskEventForm("task.updated", "assigned", at, inQueue(entered)), queued(ev(store.StateConnected))},
		{"task.wrapup", taskEventForm("task.wrapup", "wrapping", at, inQueue(entered)), queued(ev(store.StateEnded))},
		{"task.completed", taskEventForm("task.completed", "completed", at, inQueue(entered), func(f url.Values) {
			f.Set("TaskCompletedReason", "Task completed by agent")
		}), queued(ev(store.StateEnded))},
		{"task.canceled", taskEventForm("task.canceled", "canceled", at, inQueue(entered), func(f url.Values) { f.Set("TaskCanceledReason", "hangup") }),
			queued(ev(store.StateEnded))},
		{"task.deleted", taskEventForm("task.deleted", "pending", at), ev(store.StateEnded)},
		{"task.system-deleted", taskEventForm("task.system-deleted", "completed", at), ev(store.StateEnded)},
		{"workflow.timeout", taskEventForm("workflow.timeout", "canceled", at), ev(store.StateEnded)},
		{"chat channel", taskEventForm("task.created", "pending", at, func(f url.Values) { f.Set("TaskChannelUniqueName", "chat") }),
			func() store.ContactEvent { e := ev(store.StateInitiated); e.Channel = store.ChannelChat; return e }()},
		{"no channel", taskEventForm("task.created", "pending", at, func(f url.Values) { f.Del("TaskChannelUniqueName") }),
			func() store.ContactEvent { e := ev(store.StateInitiated); e.Channel = store.ChannelWorkItem; return e }()},
		{"Timestamp in seconds", taskEventForm("task.created", "pending", at, func(f url.Values) { f.Del("TimestampMs") }),
			func() store.ContactEvent { e := ev(store.StateInitiated); e.At = at.Truncate(time.Second); return e }()},
		{"EventDate", taskEventForm("task.created", "pending", at, func(f url.Values) {
			f.Del("TimestampMs")
			f.Del("Timestamp")
			f.Set("EventDate", at.Format(time.RFC3339Nano))
		}), ev(store.StateInitiated)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok, err := DecodeTaskEvent(tc.form)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, tc.want, e)
			assert.Empty(t, e.InstanceID, "the caller's: the instance bound to WorkspaceSid")
			_, err = store.ParseState(string(e.State))
			require.NoError(t, err)
			_, err = store.ParseChannel(string(e.Channel))
			require.NoError(t, err)
		})
	}
}

func TestDecodeTaskEventIgnored(t *testing.T) {
	at := time.Now()
	for _, f := range []url.Values{
		{"EventType": {"worker.activity.update"}, "WorkspaceSid": {eventWorkspace}, "ResourceType": {"worker"}, "WorkerSid": {"WK0123456789abcdef0123456789abcdef"},
			"Timestamp": {strconv.FormatInt(at.Unix(), 10)}},
		{"EventType": {"activity.created"}, "WorkspaceSid": {eventWorkspace}},
		{"EventType": {"workspace.updated"}, "WorkspaceSid": {eventWorkspace}},
		{"EventType": {"task-queue.created"}, "WorkspaceSid": {eventWorkspace}, "TaskQueueSid": {eventQueue}},
		{"EventType": {"workflow.created"}, "WorkspaceSid": {eventWorkspace}},
		{"EventType": {"task-channel.created"}, "WorkspaceSid": {eventWorkspace}},
	} {
		e, ok, err := DecodeTaskEvent(f)
		require.NoError(t, err, f.Get("EventType"))
		assert.False(t, ok, f.Get("EventType"))
		assert.Zero(t, e)
	}
}

func TestDecodeTaskEventInvalid(t *testing.T) {
	at := time.Now()
	for name, f := range map[string]url.Values{
		"no EventType":        {"TaskSid": {eventTask}},
		"task without sid":    taskEventForm("task.created", "pending", at, func(f url.Values) { f.Del("TaskSid") }),
		"reservation w/o sid": taskEventForm("reservation.accepted", "assigned", at, reservation, func(f url.Values) { f.Del("TaskSid") }),
		"sid not a task's":    taskEventForm("task.created", "pending", at, func(f url.Values) { f.Set("TaskSid", "CA0123456789abcdef0123456789abcdef") }),
		"no workspace":        taskEventForm("task.created", "pending", at, func(f url.Values) { f.Del("WorkspaceSid") }),
		"no time": taskEventForm("task.created", "pending", at, func(f url.Values) {
			f.Del("Timestamp")
			f.Del("TimestampMs")
		}),
		"bad time":       taskEventForm("task.created", "pending", at, func(f url.Values) { f.Set("TimestampMs", "soon") }),
		"negative time":  taskEventForm("task.created", "pending", at, func(f url.Values) { f.Set("TimestampMs", "-5") }),
		"huge time":      taskEventForm("task.created", "pending", at, func(f url.Values) { f.Set("TimestampMs", "99999999999999999") }),
		"bad queue date": taskEventForm("task-queue.entered", "pending", at, inQueue(at), func(f url.Values) { f.Set("TaskQueueEnteredDate", "x") }),
		"no status":      taskEventForm("task.updated", "", at),
		"unknown status": taskEventForm("task.updated", "paused", at),
	} {
		_, ok, err := DecodeTaskEvent(f)
		require.ErrorIs(t, err, ErrInvalidEvent, name)
		assert.False(t, ok, name)
	}
}

func TestValidSignature(t *testing.T) {
	// twilio-go's own test vector (client/request_validator_test.go).
	vector := url.Values{"Digits": {"1234"}, "CallSid": {"CA1234567890ABCDE"}, "To": {"+18005551212"}, "Caller": {"+14158675309"},
		"From": {"+14158675309"}, "ReasonConferenceEnded": {"test"}, "Reason": {"Participant"}}
	assert.True(t, ValidSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", vector, "vOEb5UThFn24KEfnOFLQY2AE5FY="))
	assert.Equal(t, "vOEb5UThFn24KEfnOFLQY2AE5FY=", twilioSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", vector),
		"the test's own computation agrees with Twilio's")

	const endpoint = "https://contactstop.example.com/ingest/twilio"
	form := taskEventForm("task.canceled", "canceled", time.Now(), func(f url.Values) { f.Set("TaskCanceledReason", "hangup & gone") })
	sig := twilioSignature(eventToken, endpoint, form)
	assert.True(t, ValidSignature(eventToken, endpoint, form, sig))
	assert.True(t, ValidSignature(eventToken, "https://contactstop.example.com:443/ingest/twilio", form, sig), "with the default port")
	assert.True(t, ValidSignature(eventToken, endpoint, form, twilioSignature(eventToken, "https://contactstop.example.com:443/ingest/twilio", form)),
		"signed with the default port")

	tampered := url.Values{}
	for k, vs := range form {
		tampered[k] = vs
	}
	tampered.Set("TaskAssignmentStatus", "assigned")
	assert.False(t, ValidSignature(eventToken, endpoint, tampered, sig), "a changed value")
	tampered = url.Values{"Extra": {"1"}}
	for k, vs := range form {
		tampered[k] = vs
	}
	assert.False(t, ValidSignature(eventToken, endpoint, tampered, sig), "an added parameter")
	assert.False(t, ValidSignature(eventToken, endpoint+"?x=1", form, sig), "another URL")
	assert.False(t, ValidSignature("0"+eventToken[1:], endpoint, form, sig), "another token")
	assert.False(t, ValidSignature("", endpoint, form, twilioSignature("", endpoint, form)), "no token")
	assert.False(t, ValidSignature(eventToken, endpoint, form, ""), "no signature")

	// A repeated parameter: every value counts.
	multi := url.Values{"EventType": {"task.updated"}, "Tag": {"b", "a", "b"}}
	msig := twilioSignature(eventToken, endpoint, multi)
	assert.True(t, ValidSignature(eventToken, endpoint, multi, msig))
	assert.True(t, ValidSignature(eventToken, "https://contactstop.example.com:443/ingest/twilio", multi, msig))
	assert.False(t, ValidSignature(eventToken, endpoint, url.Values{"EventType": {"task.updated"}, "Tag": {"b"}}, msig))
	assert.False(t, ValidSignature(eventToken, endpoint, multi, twilioSignature(eventToken, endpoint, url.Values{"EventType": {"task.updated"}, "Tag": {"b"}})))
}

// TestCallbackEndToEnd: a callback POSTed as TaskRouter does, read as an
// HTTP handler would.
func TestCallbackEndToEnd(t *testing.T) {
	var got store.ContactEvent
	var valid bool
	var decodeErr error
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		full := "http://" + r.Host + r.URL.RequestURI()
		valid = ValidSignature(eventToken, full, r.PostForm, r.Header.Get("X-Twilio-Signature"))
		var ok bool
		got, ok, decodeErr = DecodeTaskEvent(r.PostForm)
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	at := time.Now().Truncate(time.Millisecond).UTC()
	form := taskEventForm("reservation.accepted", "assigned", at, inQueue(at.Add(-time.Minute)), reservation)
	target := srv.URL + "/ingest/twilio?instance=acme"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilioSignature(eventToken, target, form))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.True(t, valid)
	require.NoError(t, decodeErr)
	assert.Equal(t, store.StateConnected, got.State)
	assert.Equal(t, eventTask, got.ContactID)
	assert.Equal(t, at, got.At)
	assert.False(t, errors.Is(decodeErr, ErrInvalidEvent))
}
