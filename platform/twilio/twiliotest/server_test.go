package twiliotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
)

// do sends a raw request to the fake.
func do(t *testing.T, srv *twiliotest.Server, method, path string, form url.Values, edit ...func(*http.Request)) (int, http.Header, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(srv.AccountSID, srv.AuthToken)
	for _, e := range edit {
		e(req)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, resp.Header, out
}

func TestAuthentication(t *testing.T) {
	ws := twiliotest.NewSID("WS")
	srv := twiliotest.New(t, twiliotest.WithWorkspace(ws))
	path := "/v1/Workspaces/" + ws
	status, h, body := do(t, srv, http.MethodGet, path, nil, func(r *http.Request) { r.Header.Del("Authorization") })
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, float64(20003), body["code"])
	assert.Equal(t, "https://www.twilio.com/docs/errors/20003", body["more_info"])
	assert.Contains(t, h.Get("Www-Authenticate"), "Basic")
	status, _, _ = do(t, srv, http.MethodGet, path, nil, func(r *http.Request) { r.SetBasicAuth(srv.AccountSID, "wrong") })
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = do(t, srv, http.MethodGet, path, nil, func(r *http.Request) { r.SetBasicAuth(srv.APIKeySID, srv.AuthToken) })
	assert.Equal(t, http.StatusUnauthorized, status, "a key with the account's token")
	status, _, _ = do(t, srv, http.MethodGet, path, nil, func(r *http.Request) { r.SetBasicAuth(srv.APIKeySID, srv.APIKeySecret) })
	assert.Equal(t, http.StatusOK, status)
	status, _, _ = do(t, srv, http.MethodGet, path, nil)
	assert.Equal(t, http.StatusOK, status)

	reqs := srv.Calls()
	require.Len(t, reqs, 5)
	assert.Empty(t, reqs[0].AuthUser)
	assert.Equal(t, srv.APIKeySID, reqs[3].AuthUser)
	for _, r := range reqs {
		assert.Empty(t, r.Header.Get("Authorization"), "never kept")
	}
}

func TestNotFound(t *testing.T) {
	ws := twiliotest.NewSID("WS")
	srv := twiliotest.New(t, twiliotest.WithWorkspace(ws))
	for _, p := range []string{"/v1/Workspaces/" + twiliotest.NewSID("WS"), "/v1/Workspaces/" + ws + "/Tasks/" + twiliotest.NewSID("WT"),
		"/2010-04-01/Accounts/" + srv.AccountSID + "/Calls/" + twiliotest.NewSID("CA") + ".json",
		"/2010-04-01/Accounts/" + twiliotest.NewSID("AC") + "/Calls/" + twiliotest.NewSID("CA") + ".json", "/v2/Nothing"} {
		status, _, body := do(t, srv, http.MethodGet, p, nil)
		assert.Equal(t, http.StatusNotFound, status, p)
		assert.Equal(t, float64(20404), body["code"], p)
	}
}

func TestUpdateTask(t *testing.T) {
	ws := twiliotest.NewSID("WS")
	srv := twiliotest.New(t)
	task := srv.AddTask(ws, twiliotest.Task{AssignmentStatus: twiliotest.TaskReserved})
	path := "/v1/Workspaces/" + ws + "/Tasks/" + task.SID
	ifMatch := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("If-Match", v) } }

	status, h, body := do(t, srv, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, `"1"`, h.Get("ETag"))
	assert.Equal(t, "reserved", body["assignment_status"])

	status, _, body = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"canceled"}, "Reason": {"x"}}, ifMatch(`"7"`))
	assert.Equal(t, http.StatusPreconditionFailed, status)
	assert.Equal(t, float64(20412), body["code"])
	status, _, _ = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"completed"}, "Reason": {"x"}}, ifMatch(`"1"`))
	assert.Equal(t, http.StatusBadRequest, status, "a reserved task cannot be completed")
	status, _, _ = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"canceled"}}, ifMatch(`"1"`))
	assert.Equal(t, http.StatusBadRequest, status, "a cancellation needs a Reason")
	status, _, _ = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"stopped"}, "Reason": {"x"}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Zero(t, srv.StopEffects(task.SID))

	status, h, body = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"canceled"}, "Reason": {"x"}}, ifMatch(`"1"`))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "canceled", body["assignment_status"])
	assert.Equal(t, "x", body["reason"])
	assert.Equal(t, `"2"`, h.Get("ETag"))
	assert.Equal(t, 1, srv.StopEffects(task.SID))
	status, _, _ = do(t, srv, http.MethodPost, path, url.Values{"AssignmentStatus": {"canceled"}, "Reason": {"x"}})
	assert.Equal(t, http.StatusBadRequest, status, "already canceled")
	assert.Equal(t, 1, srv.StopEffects(task.SID))
}

func TestUpdateCall(t *testing.T) {
	srv := twiliotest.New(t)
	inProgress := srv.AddCall(twiliotest.VoiceCall{})
	path := "/2010-04-01/Accounts/" + srv.AccountSID + "/Calls/" + inProgress.SID + ".json"
	status, _, body := do(t, srv, http.MethodPost, path, url.Values{"Status": {"canceled"}})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "in-progress", body["status"], "canceled does not affect a call in progress")
	status, _, _ = do(t, srv, http.MethodPost, path, url.Values{"Status": {"hangup"}})
	assert.Equal(t, http.StatusBadRequest, status)
	status, _, body = do(t, srv, http.MethodPost, path, url.Values{"Status": {"completed"}})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "completed", body["status"])
	assert.NotNil(t, body["end_time"])
	_, err := time.Parse(time.RFC1123Z, body["end_time"].(string))
	require.NoError(t, err, "RFC 2822")
	status, _, body = do(t, srv, http.MethodPost, path, url.Values{"Status": {"completed"}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, float64(21220), body["code"])
	assert.Equal(t, 1, srv.StopEffects(inProgress.SID))
}

func TestListTasks(t *testing.T) {
	ws := twiliotest.NewSID("WS")
	srv := twiliotest.New(t, twiliotest.WithMaxPageSize(2))
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, st := range []string{"pending", "assigned", "completed", "reserved", "pending"} {
		srv.AddTask(ws, twiliotest.Task{AssignmentStatus: st, CreatedAt: base.Add(time.Duration(i) * time.Second)})
	}
	list := func(q url.Values) (int, []string, map[string]any) {
		status, _, body := do(t, srv, http.MethodGet, "/v1/Workspaces/"+ws+"/Tasks?"+q.Encode(), nil)
		var statuses []string
		if tasks, ok := body["tasks"].([]any); ok {
			for _, task := range tasks {
				statuses = append(statuses, task.(map[string]any)["assignment_status"].(string))
			}
		}
		meta, _ := body["meta"].(map[string]any)
		return status, statuses, meta
	}
	// Repeated, as twilio-go sends them; comma-separated, as Twilio echoes
	// them.
	for _, q := range []url.Values{
		{"AssignmentStatus": {"pending", "reserved", "assigned"}},
		{"AssignmentStatus": {"pending,reserved,assigned"}},
	} {
		status, page1, meta := list(q)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, []string{"pending", "assigned"}, page1)
		assert.Equal(t, "tasks", meta["key"])
		next, err := url.Parse(meta["next_page_url"].(string))
		require.NoError(t, err)
		assert.Equal(t, "pending,reserved,assigned", next.Query().Get("AssignmentStatus"))
		assert.NotEmpty(t, next.Query().Get("PageToken"))
		status, page2, meta := list(next.Query())
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, []string{"reserved", "pending"}, page2)
		assert.Nil(t, meta["next_page_url"], "the last page")
		assert.Equal(t, float64(1), meta["page"])
	}
	status, all, _ := list(url.Values{"PageSize": {"1000"}})
	require.Equal(t, http.StatusOK, status)
	assert.Len(t, all, 2, "capped by WithMaxPageSize")
	for _, q := range []url.Values{{"AssignmentStatus": {"paused"}}, {"PageSize": {"1001"}}, {"PageSize": {"0"}}, {"PageToken": {"bogus"}}, {"Page": {"2"}}} {
		status, _, _ := list(q)
		assert.Equal(t, http.StatusBadRequest, status, q.Encode())
	}
}

func TestScripting(t *testing.T) {
	ws := twiliotest.NewSID("WS")
	srv := twiliotest.New(t)
	task := srv.AddTask(ws, twiliotest.Task{})
	path := "/v1/Workspaces/" + ws + "/Tasks/" + task.SID

	srv.FailNext(twiliotest.OpFetchTask, 1, twiliotest.TooManyRequests("3"))
	status, h, body := do(t, srv, http.MethodGet, path, nil)
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, "3", h.Get("Retry-After"))
	assert.Equal(t, float64(20429), body["code"])

	srv.ChangeTaskAfterNext(twiliotest.OpFetchTask, 1, func(t *twiliotest.Task) { t.AssignmentStatus = twiliotest.TaskAssigned })
	status, h, body = do(t, srv, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "pending", body["assignment_status"], "answered before the change")
	assert.Equal(t, `"1"`, h.Get("ETag"))
	got, _ := srv.Task(ws, task.SID)
	assert.Equal(t, twiliotest.TaskAssigned, got.AssignmentStatus)
	assert.Equal(t, 2, got.Revision)

	assert.True(t, srv.Disconnect(task.SID))
	got, _ = srv.Task(ws, task.SID)
	assert.Equal(t, twiliotest.TaskWrapping, got.AssignmentStatus, "an assigned task wraps up")
	assert.False(t, srv.Disconnect(task.SID))
	pending := srv.AddTask(ws, twiliotest.Task{})
	assert.True(t, srv.Disconnect(pending.SID))
	got, _ = srv.Task(ws, pending.SID)
	assert.Equal(t, twiliotest.TaskCanceled, got.AssignmentStatus)
	assert.Equal(t, "hangup", got.Reason)
	assert.False(t, got.Stopped)

	reqs := srv.Calls()
	reqs[0].Query.Set("x", "y")
	assert.Empty(t, srv.Calls()[0].Query.Get("x"), "Calls returns copies")
	assert.Equal(t, 429, reqs[0].Status)
	assert.Equal(t, 20429, reqs[0].Code)
}
