package genesystest

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
)

// token gets a token from srv with its credentials.
func token(t *testing.T, srv *Server) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(srv.ClientID, srv.ClientSecret)
	var tok tokenResponse
	status, _ := do(t, req, &tok)
	require.Equal(t, http.StatusOK, status)
	require.NotEmpty(t, tok.AccessToken)
	return tok.AccessToken
}

func do(t *testing.T, req *http.Request, out any) (int, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil && len(body) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(body, out), "%s", body)
	}
	return resp.StatusCode, resp.Header
}

func get(t *testing.T, srv *Server, path, bearer string, out any) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL()+path, nil)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return do(t, req, out)
}

func TestToken(t *testing.T) {
	srv := New(t, WithTokenTTL(90*time.Second))
	form := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name       string
		id, secret string
		basic      bool
		form       url.Values
		status     int
		code       string
	}{
		{"Basic", srv.ClientID, srv.ClientSecret, true, form, http.StatusOK, ""},
		{"Form", srv.ClientID, srv.ClientSecret, false, form, http.StatusOK, ""},
		{"WrongSecret", srv.ClientID, "nope", true, form, http.StatusUnauthorized, "invalid_client"},
		{"UnknownClient", "who", srv.ClientSecret, true, form, http.StatusUnauthorized, "invalid_client"},
		{"WrongGrant", srv.ClientID, srv.ClientSecret, true, url.Values{"grant_type": {"password"}}, http.StatusBadRequest, "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range tc.form {
				f[k] = v
			}
			if !tc.basic {
				f.Set("client_id", tc.id)
				f.Set("client_secret", tc.secret)
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL()+"/oauth/token", strings.NewReader(f.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.basic {
				req.SetBasicAuth(tc.id, tc.secret)
			}
			var out map[string]any
			status, _ := do(t, req, &out)
			require.Equal(t, tc.status, status)
			if tc.code != "" {
				assert.Equal(t, tc.code, out["error"])
				return
			}
			assert.Equal(t, "bearer", out["token_type"])
			assert.EqualValues(t, 90, out["expires_in"])
		})
	}
	assert.Equal(t, 2, srv.TokensIssued())
}

func TestBearerChecked(t *testing.T) {
	srv := New(t)
	srv.AddConversation(Conversation{ID: "c-1"})
	tok := token(t, srv)
	for _, tc := range []struct {
		name, bearer string
		status       int
		code         string
	}{
		{"Missing", "", http.StatusUnauthorized, "authentication.required"},
		{"Unknown", "not-a-token", http.StatusUnauthorized, "bad.credentials"},
		{"Issued", tok, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body errorBody
			status, h := get(t, srv, "/api/v2/conversations/c-1", tc.bearer, &body)
			require.Equal(t, tc.status, status)
			if tc.code != "" {
				assert.Equal(t, tc.code, body.Code)
				assert.Equal(t, tc.status, body.Status)
				assert.Equal(t, h.Get("Inin-Correlation-Id"), body.ContextID)
			}
		})
	}
	srv.ExpireTokens()
	var body errorBody
	status, _ := get(t, srv, "/api/v2/conversations/c-1", tok, &body)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "credentials.expired", body.Code)
}

func TestConversationWire(t *testing.T) {
	srv := New(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.UTC)
	srv.AddConversation(Conversation{ID: "c-1", MediaType: MediaChat, QueueID: "q-1", EnqueuedAt: at})
	tok := token(t, srv)
	var raw map[string]any
	status, _ := get(t, srv, "/api/v2/conversations/c-1", tok, &raw)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "c-1", raw["id"])
	assert.Equal(t, "2026-03-01T12:00:00.123Z", raw["startTime"])
	assert.NotContains(t, raw, "endTime", "null while the conversation is active")
	parts := raw["participants"].([]any)
	require.Len(t, parts, 2)
	acd := parts[1].(map[string]any)
	assert.Equal(t, "acd", acd["purpose"])
	assert.Equal(t, "q-1", acd["queueId"])
	assert.Len(t, acd["chats"], 1)
	assert.Empty(t, acd["calls"])
}

func TestDetailsQueryValidated(t *testing.T) {
	srv := New(t)
	tok := token(t, srv)
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"NoInterval", `{}`, http.StatusBadRequest},
		{"PageTooLarge", `{"interval":"2026-03-01T00:00:00Z/2026-03-02T00:00:00Z","paging":{"pageSize":101,"pageNumber":1}}`, http.StatusBadRequest},
		{"UnknownDimension", `{"interval":"2026-03-01T00:00:00Z/2026-03-02T00:00:00Z","segmentFilters":[{"type":"and","predicates":[{"dimension":"nope","value":"x"}]}]}`, http.StatusBadRequest},
		{"NotJSON", `{`, http.StatusBadRequest},
		{"OK", `{"interval":"2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"}`, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL()+"/api/v2/analytics/conversations/details/query", strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+tok)
			status, _ := do(t, req, nil)
			assert.Equal(t, tc.status, status)
		})
	}
}

func TestUnknownPath(t *testing.T) {
	srv := New(t)
	status, h := get(t, srv, "/no-such-org/oauth/token", "", nil)
	assert.Equal(t, http.StatusNotFound, status)
	assert.True(t, strings.HasPrefix(h.Get("Content-Type"), "text/plain"), "no Genesys error body")
}

func TestClientLimitAnswer(t *testing.T) {
	srv := New(t, WithClientLimit(1, time.Minute))
	srv.AddConversation(Conversation{ID: "c-1"})
	tok := token(t, srv)
	status, _ := get(t, srv, "/api/v2/conversations/c-1", tok, nil)
	require.Equal(t, http.StatusOK, status)
	var body errorBody
	status, h := get(t, srv, "/api/v2/conversations/c-1", tok, &body)
	require.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, "60", h.Get("Retry-After"))
	assert.Equal(t, "too.many.requests.retry.after", body.Code)
	assert.Equal(t, "Rate limit exceeded the maximum. Retry the request in [60] seconds", body.Message)
}
