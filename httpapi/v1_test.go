package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/httpapi"
	"github.com/contactstop/contactstop/httpapi/console"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// v1Secret signs the tests' tokens when authorization is on.
var v1Secret = []byte("v1 tests: an HS256 secret of 32+ bytes")

// v1Env is a NATS server with the topology, the store, a worker and the
// JSON API over HTTP, whose every answer is checked against the OpenAPI
// document.
type v1Env struct {
	t      *testing.T
	js     jetstream.JetStream
	st     *store.KV
	srv    *httptest.Server
	api    *httpapi.V1
	router routers.Router
	signer auth.SigningKey
	// token, when set, is sent as Authorization: Bearer.
	token string
}

type v1Options struct {
	auth     bool // authorization on, in the API and the worker
	noWorker bool
	// console also serves the web console.
	console bool
	// bulkWorkers, when set, is the worker's BulkWorkers (a slow clear).
	bulkWorkers int
}

func v1Setup(t *testing.T, o v1Options) *v1Env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := t.Context()
	require.NoError(t, worker.Provision(ctx, js, worker.TopologyConfig{AckWait: 2 * time.Second}))
	st, err := store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	e := &v1Env{t: t, js: js, st: st, router: v1Router(t)}
	var verifier *auth.Verifier
	if o.auth {
		key, err := auth.ParseHS256Secret(v1Secret)
		require.NoError(t, err)
		verifier, err = auth.NewVerifier(auth.Config{Keys: []auth.Key{key}})
		require.NoError(t, err)
		e.signer, err = auth.ParseHS256SigningSecret(v1Secret)
		require.NoError(t, err)
	}
	api, err := httpapi.NewV1(httpapi.V1Config{
		JetStream: js, Store: st, Publisher: client.New(js, st), Verifier: verifier,
		Heartbeat: 200 * time.Millisecond, ProgressInterval: 50 * time.Millisecond, Logger: zaptest.NewLogger(t),
	})
	require.NoError(t, err)
	e.api = api
	mux := http.NewServeMux()
	api.Register(mux)
	if o.console {
		console.New().Register(mux)
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	if !o.noWorker {
		cfg := worker.Config{
			Workers: 4, AckWait: 2 * time.Second, MaxAttempts: 2,
			RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, RetryMaxElapsed: 100 * time.Millisecond,
			RedeliveryDelay: 50 * time.Millisecond, RedeliveryDelayMax: 200 * time.Millisecond,
			Logger: zaptest.NewLogger(t),
		}
		if verifier != nil {
			cfg.Authorizer = verifier
		}
		if o.bulkWorkers > 0 {
			cfg.BulkWorkers, cfg.BatchSize = o.bulkWorkers, 1
		}
		w, err := worker.New(js, st, cfg)
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
	return e
}

// v1Router loads and validates the OpenAPI document.
func v1Router(t *testing.T) routers.Router {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIDocument())
	require.NoError(t, err)
	require.NoError(t, doc.Validate(t.Context()), "openapi.json is a valid OpenAPI 3 document")
	doc.Servers = nil // match any host: httptest's
	r, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	return r
}

// issue mints a token with the grants, valid for an hour.
func (e *v1Env) issue(grants ...auth.Grant) string {
	e.t.Helper()
	now := time.Now()
	tok, err := auth.Issue(e.signer, auth.Claims{Subject: "tester", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Grants: grants})
	require.NoError(e.t, err)
	return tok
}

func grant(action auth.Action, resources ...string) auth.Grant {
	return auth.Grant{Actions: []auth.Action{action}, Resources: resources}
}

// v1Answer is one answer, its body decoded.
type v1Answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// errorCode returns the error's code, failing the test unless the body
// has the error shape.
func (a v1Answer) errorCode(t *testing.T) string {
	t.Helper()
	e, ok := a.body["error"].(map[string]any)
	require.True(t, ok, "error shape: %s", a.raw)
	require.NotEmpty(t, e["message"], "error message: %s", a.raw)
	return e["code"].(string)
}

// call sends a request and checks the answer against the document; with
// validRequest the request is checked too (bad-input tests send requests
// the document does not allow, on purpose).
func (e *v1Env) call(method, path string, body any, validRequest bool) v1Answer {
	e.t.Helper()
	var rd io.Reader
	var data []byte
	if body != nil {
		switch b := body.(type) {
		case string:
			data = []byte(b)
		default:
			var err error
			data, err = json.Marshal(b)
			require.NoError(e.t, err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	a := v1Answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		require.NoError(e.t, json.Unmarshal(raw, &a.body), "JSON answer: %s", raw)
	}
	e.validate(req, data, resp, raw, validRequest)
	return a
}

// validate checks a request (optionally) and its answer against the
// OpenAPI document.
func (e *v1Env) validate(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte, validRequest bool) {
	e.t.Helper()
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := e.router.FindRoute(vreq)
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		if err != nil {
			return // a route the document does not have: answered 404/405 with the error shape
		}
	}
	require.NoError(e.t, err, "%s %s is described by openapi.json", req.Method, req.URL.Path)
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if validRequest {
		require.NoError(e.t, openapi3filter.ValidateRequest(context.Background(), in), "request matches openapi.json")
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(respBody)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	require.NoError(e.t, openapi3filter.ValidateResponse(context.Background(), out),
		"%s %s answered %d as openapi.json says: %s", req.Method, req.URL.Path, resp.StatusCode, respBody)
}

func (e *v1Env) register(instanceID string) {
	e.t.Helper()
	_, err := e.st.PutInstance(e.t.Context(), store.Instance{InstanceID: instanceID})
	require.NoError(e.t, err)
}

// seed registers the instance and writes n contacts <prefix>0… in queue q
// and state s.
func (e *v1Env) seed(instanceID, prefix string, n int, q string, s store.State) {
	e.t.Helper()
	e.register(instanceID)
	tmpl := store.Contact{InstanceID: instanceID, State: s, QueueID: q, Channel: store.ChannelVoice, UpdatedAt: time.Now()}
	if s == store.StateQueued {
		tmpl.EnqueuedAt = time.Now()
	}
	_, err := e.st.SeedContacts(e.t.Context(), func(yield func(store.Contact) bool) {
		for i := range n {
			c := tmpl
			c.ContactID = fmt.Sprintf("%s%d", prefix, i)
			if !yield(c) {
				return
			}
		}
	})
	require.NoError(e.t, err)
}

func TestV1OpenAPIDocumentIsValidAndServed(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{auth: true, noWorker: true})
	a := e.call("GET", "/v1/openapi.json", nil, true)
	require.Equal(t, http.StatusOK, a.status, "served without a token")
	require.Equal(t, "3.0.3", a.body["openapi"])
	paths := a.body["paths"].(map[string]any)
	for _, p := range []string{"/v1/instances", "/v1/instances/{instanceId}/summary", "/v1/instances/{instanceId}/contacts",
		"/v1/instances/{instanceId}/failures", "/v1/instances/{instanceId}/stops", "/v1/instances/{instanceId}/clears",
		"/v1/bulks", "/v1/instances/{instanceId}/bulks/{bulkId}", "/v1/instances/{instanceId}/bulks/{bulkId}/cancel",
		"/v1/deadletters", "/v1/events"} {
		require.Contains(t, paths, p)
	}
}

func TestV1InstancesSummaryAndContacts(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{noWorker: true})
	e.seed("acme", "b", 3, "billing", store.StateQueued)
	e.seed("acme", "s", 2, "sales", store.StateConnected)
	e.seed("acme", "e", 1, "sales", store.StateEnded)
	e.register("zeta")

	a := e.call("GET", "/v1/instances", nil, true)
	require.Equal(t, http.StatusOK, a.status)
	require.Len(t, a.body["instances"], 2)
	require.Equal(t, "acme", a.body["instances"].([]any)[0].(map[string]any)["instanceId"])

	a = e.call("GET", "/v1/instances/acme/summary", nil, true)
	require.Equal(t, http.StatusOK, a.status)
	require.EqualValues(t, 5, a.body["active"], "ENDED contacts are not active")
	require.EqualValues(t, 3, a.body["byState"].(map[string]any)["QUEUED"])
	queues := a.body["queues"].([]any)
	require.Len(t, queues, 2)
	require.Equal(t, "billing", queues[0].(map[string]any)["queueId"], "most active first")

	a = e.call("GET", "/v1/instances/acme/contacts?queue=sales&state=connected", nil, true)
	require.Equal(t, http.StatusOK, a.status)
	require.Len(t, a.body["contacts"], 2)
	require.Equal(t, false, a.body["truncated"])
	a = e.call("GET", "/v1/instances/acme/contacts?limit=2", nil, true)
	require.Len(t, a.body["contacts"], 2)
	require.Equal(t, true, a.body["truncated"])

	for _, tc := range []struct {
		path, code string
		status     int
	}{
		{"/v1/instances/ghost/summary", "RESOURCE_NOT_FOUND", http.StatusNotFound},
		{"/v1/instances/ghost/contacts", "RESOURCE_NOT_FOUND", http.StatusNotFound},
		{"/v1/instances/bad.inst/summary", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/instances/acme/contacts?state=GONE", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/instances/acme/contacts?channel=FAX", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/instances/acme/contacts?limit=0", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/instances/acme/contacts?limit=x", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/instances/acme/failures?since=forever", "INVALID_PARAMETER", http.StatusBadRequest},
		{"/v1/nothing", "NOT_FOUND", http.StatusNotFound},
	} {
		a := e.call("GET", tc.path, nil, false)
		require.Equal(t, tc.status, a.status, tc.path)
		require.Equal(t, tc.code, a.errorCode(t), tc.path)
	}
	a = e.call("DELETE", "/v1/instances", nil, false)
	require.Equal(t, http.StatusMethodNotAllowed, a.status)
	require.Equal(t, "METHOD_NOT_ALLOWED", a.errorCode(t))
	require.Equal(t, "GET", a.header.Get("Allow"))
}

func TestV1StopWaitsForTheResult(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{})
	e.seed("acme", "c", 2, "billing", store.StateQueued)

	a := e.call("POST", "/v1/instances/acme/stops?wait=10s", map[string]any{"contactId": "c0", "disconnectReason": "TEST", "requestId": "r-1"}, true)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	require.Equal(t, "STOPPED", a.body["status"])
	require.Equal(t, "r-1", a.body["requestId"])
	require.Equal(t, "QUEUED", a.body["stopped"].(map[string]any)["previousState"])

	// Sent again: the first request's result.
	a = e.call("POST", "/v1/instances/acme/stops?wait=true", map[string]any{"contactId": "c0", "disconnectReason": "TEST", "requestId": "r-1"}, true)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "STOPPED", a.body["status"])

	// Another request for the ended contact fails: the failure is the result.
	a = e.call("POST", "/v1/instances/acme/stops?wait=10s", map[string]any{"contactId": "c0"}, true)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "FAILED", a.body["status"])
	require.Equal(t, "CONTACT_NOT_FOUND", a.body["failed"].(map[string]any)["reasonCode"])

	// Without wait: accepted.
	a = e.call("POST", "/v1/instances/acme/stops", map[string]any{"contactId": "c1"}, true)
	require.Equal(t, http.StatusAccepted, a.status)
	require.Equal(t, "ACCEPTED", a.body["status"])
	require.NotEmpty(t, a.body["requestId"])
}

func TestV1StopBadInput(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{noWorker: true})
	for _, tc := range []struct {
		name, path string
		body       any
		code       string
		field      string
	}{
		{"not JSON", "/v1/instances/acme/stops", "{nope", "INVALID_REQUEST", ""},
		{"empty", "/v1/instances/acme/stops", "", "INVALID_REQUEST", ""},
		{"array", "/v1/instances/acme/stops", "[]", "INVALID_REQUEST", ""},
		{"wrong type", "/v1/instances/acme/stops", map[string]any{"contactId": 7}, "INVALID_REQUEST", "contactId"},
		{"unknown field", "/v1/instances/acme/stops", map[string]any{"contactId": "c", "reason": "x"}, "INVALID_REQUEST", "reason"},
		{"trailing data", "/v1/instances/acme/stops", `{"contactId":"c"} {}`, "INVALID_REQUEST", ""},
		{"no contact", "/v1/instances/acme/stops", map[string]any{"requestId": "r"}, "INVALID_PARAMETER", "contactId"},
		{"long contact", "/v1/instances/acme/stops", map[string]any{"contactId": strings.Repeat("x", 257)}, "INVALID_PARAMETER", "contactId"},
		{"bad instance", "/v1/instances/a.b/stops", map[string]any{"contactId": "c"}, "INVALID_PARAMETER", "instanceId"},
		{"bad wait", "/v1/instances/acme/stops?wait=5m", map[string]any{"contactId": "c"}, "INVALID_PARAMETER", "wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.call("POST", tc.path, tc.body, false)
			require.Equal(t, http.StatusBadRequest, a.status, "%s", a.raw)
			require.Equal(t, tc.code, a.errorCode(t), "%s", a.raw)
			if tc.field != "" {
				require.Equal(t, tc.field, a.body["error"].(map[string]any)["field"], "%s", a.raw)
			}
		})
	}
}

// waitBulk polls the bulk's progress until it has completed.
func (e *v1Env) waitBulk(instanceID, bulkID string) v1Answer {
	e.t.Helper()
	var a v1Answer
	require.Eventually(e.t, func() bool {
		a = e.call("GET", "/v1/instances/"+instanceID+"/bulks/"+bulkID, nil, true)
		return a.status == http.StatusOK && a.body["status"] == "COMPLETED"
	}, 30*time.Second, 50*time.Millisecond)
	return a
}

func TestV1ClearDryRunThenClear(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{})
	e.seed("acme", "b", 20, "billing", store.StateQueued)
	e.seed("acme", "s", 5, "sales", store.StateQueued)

	filter := map[string]any{"queueIds": []string{"billing"}}
	a := e.call("POST", "/v1/instances/acme/clears", map[string]any{"filter": filter, "dryRun": true}, true)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	require.EqualValues(t, 20, a.body["matched"])
	require.EqualValues(t, 20, a.body["byQueue"].(map[string]any)["billing"])

	a = e.call("POST", "/v1/instances/acme/clears", map[string]any{"filter": filter, "bulkId": "b-1", "disconnectReason": "TEST"}, true)
	require.Equal(t, http.StatusAccepted, a.status, "%s", a.raw)
	require.Equal(t, "b-1", a.body["bulkId"])
	require.Equal(t, "/v1/instances/acme/bulks/b-1", a.header.Get("Location"))

	a = e.waitBulk("acme", "b-1")
	require.EqualValues(t, 20, a.body["matched"])
	require.EqualValues(t, 20, a.body["stopped"])
	require.EqualValues(t, 0, a.body["etaSeconds"])

	a = e.call("GET", "/v1/bulks?instance=acme", nil, true)
	require.Equal(t, http.StatusOK, a.status)
	require.Len(t, a.body["bulks"], 1)
	a = e.call("GET", "/v1/bulks", nil, true)
	require.Len(t, a.body["bulks"], 1)

	a = e.call("POST", "/v1/instances/acme/bulks/b-1/cancel", nil, true)
	require.Equal(t, http.StatusConflict, a.status, "%s", a.raw)
	require.Equal(t, "BULK_FINISHED", a.errorCode(t))

	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/v1/instances/acme/clears", map[string]any{"filter": map[string]any{"states": []string{"ENDED"}}}, 400, "INVALID_PARAMETER"},
		{"POST", "/v1/instances/acme/clears", map[string]any{"filter": map[string]any{"queueIds": []string{}}}, 400, "INVALID_PARAMETER"},
		{"POST", "/v1/instances/acme/clears", map[string]any{"bulkId": "emergency-1"}, 400, "INVALID_PARAMETER"},
		{"POST", "/v1/instances/acme/clears", map[string]any{"filter": map[string]any{"enqueuedBefore": "yesterday"}}, 400, "INVALID_REQUEST"},
		{"POST", "/v1/instances/acme/clears", map[string]any{"filters": map[string]any{}}, 400, "INVALID_REQUEST"},
		{"POST", "/v1/instances/ghost/clears", map[string]any{"dryRun": true}, 404, "RESOURCE_NOT_FOUND"},
		{"GET", "/v1/instances/acme/bulks/nope", nil, 404, "BULK_NOT_FOUND"},
		{"POST", "/v1/instances/acme/bulks/nope/cancel", nil, 404, "BULK_NOT_FOUND"},
		{"GET", "/v1/bulks?instance=a.b", nil, 400, "INVALID_PARAMETER"},
		{"GET", "/v1/bulks?limit=0", nil, 400, "INVALID_PARAMETER"},
	} {
		a := e.call(tc.method, tc.path, tc.body, false)
		require.Equal(t, tc.status, a.status, "%s %s: %s", tc.method, tc.path, a.raw)
		require.Equal(t, tc.code, a.errorCode(t), "%s %s", tc.method, tc.path)
	}
}

func TestV1CancelARunningClear(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{noWorker: true})
	e.seed("acme", "c", 10, "billing", store.StateQueued)
	// No worker takes the request on: its record is made here as a run
	// would, so that the cancel has something to cancel.
	_, err := e.st.PutBulk(t.Context(), store.BulkRecord{BulkID: "b-2", InstanceID: "acme", Status: store.BulkRunning,
		Run: 1, Matched: 10, Done: 4, Stopped: 4, StartedAt: time.Now().Add(-2 * time.Second)})
	require.NoError(t, err)
	a := e.call("GET", "/v1/instances/acme/bulks/b-2", nil, true)
	require.Equal(t, http.StatusOK, a.status)
	require.InDelta(t, 2, a.body["rate"], 0.5)
	require.InDelta(t, 3, a.body["etaSeconds"], 1)

	a = e.call("POST", "/v1/instances/acme/bulks/b-2/cancel", nil, true)
	require.Equal(t, http.StatusAccepted, a.status, "%s", a.raw)
	require.Equal(t, true, a.body["cancelRequested"])
	a = e.call("POST", "/v1/instances/acme/bulks/b-2/cancel", nil, true)
	require.Equal(t, http.StatusAccepted, a.status, "idempotent")
}

// A body that is not declared JSON is refused: a browser cannot send a
// JSON content type to another site without a CORS preflight, so a page
// elsewhere cannot make an operator's browser start a clear.
func TestV1RefusesBodiesNotDeclaredJSON(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{noWorker: true})
	e.register("acme")
	for _, path := range []string{"/v1/instances/acme/stops", "/v1/instances/acme/clears"} {
		for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"} {
			req, err := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+path, strings.NewReader(`{"contactId":"c","dryRun":true}`))
			require.NoError(t, err)
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, "%s %s", path, ct)
			require.Contains(t, string(raw), `"code":"INVALID_REQUEST"`)
			req.Body = io.NopCloser(strings.NewReader(`{"contactId":"c","dryRun":true}`))
			e.validate(req, []byte(`{"contactId":"c","dryRun":true}`), resp, raw, false)
		}
	}
}

// A bulkId may hold any text, "/" included: it is percent-encoded in the
// path.
func TestV1BulkIDWithASlash(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{})
	e.seed("acme", "c", 3, "billing", store.StateQueued)
	a := e.call("POST", "/v1/instances/acme/clears", map[string]any{"bulkId": "nightly/billing 1"}, true)
	require.Equal(t, http.StatusAccepted, a.status, "%s", a.raw)
	require.Equal(t, "/v1/instances/acme/bulks/nightly%2Fbilling%201", a.body["progress"])
	a = e.waitBulk("acme", "nightly%2Fbilling%201")
	require.Equal(t, "nightly/billing 1", a.body["bulkId"])
	require.EqualValues(t, 3, a.body["stopped"])
}
