package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
)

// The guide's samples (platform/amazonconnect/testdata) and their ids.
const (
	ingestSampleDir       = "../../platform/amazonconnect/testdata"
	ingestConnectInstance = "12345678-1234-1234-1234-123456789012"
	ingestContact         = "11111111-1111-1111-1111-111111111111"
	testIngestKey         = "0123456789abcdef-ingest-key"
)

// ingestSample returns a sample event, with its envelope time set to at unless
// at is empty.
func ingestSample(t *testing.T, name, at string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ingestSampleDir, name))
	require.NoError(t, err)
	if at == "" {
		return data
	}
	var ev map[string]any
	require.NoError(t, json.Unmarshal(data, &ev))
	ev["time"] = at
	data, err = json.Marshal(ev)
	require.NoError(t, err)
	return data
}

// ingestKeyFile writes key to a file and returns its path.
func ingestKeyFile(t *testing.T, key string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ingest.key")
	require.NoError(t, os.WriteFile(path, []byte(key), 0o600))
	return path
}

// ingestFixture is the ingest handler served over HTTP, on a real store on
// an in-process NATS server, with instance acme bound to the samples'
// Amazon Connect instance.
type ingestFixture struct {
	url  string
	srv  *natstest.Server
	kv   *store.KV
	reg  *prometheus.Registry
	in   *ingestServer
	http *httptest.Server
}

func newIngestFixture(t *testing.T) *ingestFixture {
	t.Helper()
	f := &ingestFixture{srv: natstest.Start(t), reg: prometheus.NewRegistry()}
	_, js := f.srv.JetStream(t)
	var err error
	f.kv, err = store.Open(t.Context(), js, store.Config{})
	require.NoError(t, err)
	_, err = f.kv.PutInstance(t.Context(), store.Instance{InstanceID: "acme", Binding: &store.Binding{
		Platform: store.PlatformAmazonConnect, ConnectInstanceID: ingestConnectInstance, Region: "us-west-2"}})
	require.NoError(t, err)
	f.in, err = newIngest(ingestKeyFile(t, testIngestKey+"\n"), "127.0.0.1:0", zap.NewNop())
	require.NoError(t, err)
	mux := http.NewServeMux()
	f.in.routes(f.reg)(mux)
	f.in.use(f.kv)
	f.http = httptest.NewServer(mux)
	t.Cleanup(f.http.Close)
	f.url = f.http.URL + ingestPathAmazonConnect
	return f
}

// ingestAnswer is one answer of the handler.
type ingestAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

// post sends body with the key as a bearer token and the headers an
// EventBridge API destination sends.
func (f *ingestFixture) post(t *testing.T, body []byte) ingestAnswer {
	t.Helper()
	return f.send(t, http.MethodPost, body, map[string]string{"Authorization": "Bearer " + testIngestKey})
}

func (f *ingestFixture) send(t *testing.T, method string, body []byte, header map[string]string) ingestAnswer {
	t.Helper()
	return sendIngest(t, method, f.url, body, header)
}

func sendIngest(t *testing.T, method, url string, body []byte, header map[string]string) ingestAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Amazon/EventBridge/ApiDestinations")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := ingestAnswer{status: resp.StatusCode, header: resp.Header}
	require.NoError(t, json.Unmarshal(data, &a.body), "a JSON answer: %s", data)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return a
}

// requireApplied checks a 200 answer.
func requireApplied(t *testing.T, a ingestAnswer, applied bool) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%v", a.body)
	require.Equal(t, map[string]any{"applied": applied}, a.body)
}

// requireError checks an error answer.
func requireError(t *testing.T, a ingestAnswer, status int, contains string) {
	t.Helper()
	require.Equal(t, status, a.status, "%v", a.body)
	require.Contains(t, a.body["error"], contains)
	require.Len(t, a.body, 1)
}

func (f *ingestFixture) contact(t *testing.T) store.Contact {
	t.Helper()
	c, err := f.kv.GetContact(t.Context(), "acme", ingestContact)
	require.NoError(t, err)
	return c
}

func (f *ingestFixture) requireNoContact(t *testing.T) {
	t.Helper()
	_, err := f.kv.GetContact(t.Context(), "acme", ingestContact)
	require.ErrorIs(t, err, store.ErrContactNotFound)
}

// counts returns contactstop_ingest_events_total by outcome.
func (f *ingestFixture) counts(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "contactstop_ingest_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			require.Equal(t, "amazon-connect", labels["platform"])
			got[labels["outcome"]] = m.GetCounter().GetValue()
		}
	}
	return got
}

func ingestUTC(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return at.UTC()
}

// TestIngestSequence posts the guide's events of one call, in order: the
// contact is QUEUED, CONNECTED, then ENDED by the platform.
func TestIngestSequence(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)

	requireApplied(t, f.post(t, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z")), true)
	c := f.contact(t)
	require.Equal(t, store.StateQueued, c.State)
	require.Equal(t, store.ChannelVoice, c.Channel)
	require.Equal(t, "12345678-1234-1234-1234-123456789012", c.QueueID)
	require.Equal(t, ingestUTC(t, "2021-08-04T17:29:04Z"), c.EnqueuedAt)
	require.Equal(t, ingestUTC(t, "2021-08-04T17:29:04Z"), c.EventAt, "refined by enqueueTimestamp, of the same second")

	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z")), true)
	c = f.contact(t)
	require.Equal(t, store.StateConnected, c.State)
	require.Equal(t, "12345678-1234-1234-1234-123456789012", c.QueueID)

	requireApplied(t, f.post(t, ingestSample(t, "disconnected.json", "2021-08-04T17:43:48Z")), true)
	c = f.contact(t)
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, store.StateConnected, c.PreviousState)
	require.Equal(t, store.EndedByPlatform, c.EndedBy)
	require.Equal(t, ingestUTC(t, "2021-08-04T17:18:37Z"), c.EndedAt, "the sample's disconnectTimestamp")
	require.Equal(t, ingestUTC(t, "2021-08-04T17:43:48Z"), c.EventAt)

	// A type that changes no state is accepted and changes nothing.
	requireApplied(t, f.post(t, ingestSample(t, "contact-data-updated.json", "")), false)
	require.Equal(t, map[string]float64{"applied": 3, "unchanged": 1, "rejected": 0, "failed": 0}, f.counts(t))
}

// TestIngestSamplesAsPublished posts the guide's samples as they are: they
// share one envelope time, so they apply in lifecycle order whatever order
// they come in.
func TestIngestSamplesAsPublished(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "")), true)
	requireApplied(t, f.post(t, ingestSample(t, "queued.json", "")), false)
	requireApplied(t, f.post(t, ingestSample(t, "disconnected.json", "")), true)
	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "")), false)
	c := f.contact(t)
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, store.StateConnected, c.PreviousState)
}

// TestIngestOutOfOrder: events that arrive after a newer one change
// nothing, and an ENDED contact is never active again.
func TestIngestOutOfOrder(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z")), true)
	requireApplied(t, f.post(t, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z")), false)
	require.Equal(t, store.StateConnected, f.contact(t).State)

	requireApplied(t, f.post(t, ingestSample(t, "disconnected.json", "2021-08-04T17:43:48Z")), true)
	ended := f.contact(t)
	// EventBridge's retries of older events arrive late.
	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z")), false)
	requireApplied(t, f.post(t, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z")), false)
	require.Equal(t, ended, f.contact(t))
	// Even a newer one that is not a disconnection.
	requireApplied(t, f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T18:00:00Z")), false)
	require.Equal(t, ended, f.contact(t))
	require.Equal(t, map[string]float64{"applied": 2, "unchanged": 4, "rejected": 0, "failed": 0}, f.counts(t))
}

// TestIngestRepeat: the same event delivered again changes nothing.
func TestIngestRepeat(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	ev := ingestSample(t, "queued.json", "2021-08-04T17:29:04Z")
	requireApplied(t, f.post(t, ev), true)
	first := f.contact(t)
	requireApplied(t, f.post(t, ev), false)
	requireApplied(t, f.post(t, ev), false)
	require.Equal(t, first, f.contact(t), "not written again")
}

// TestIngestAuth: the key is required, as a bearer token or an API key.
func TestIngestAuth(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	ev := ingestSample(t, "queued.json", "")
	for name, header := range map[string]map[string]string{
		"no key":            nil,
		"a wrong key":       {"Authorization": "Bearer " + testIngestKey + "x"},
		"a prefix":          {"Authorization": "Bearer " + testIngestKey[:16]},
		"an empty key":      {"Authorization": "Bearer ", "X-Api-Key": ""},
		"another scheme":    {"Authorization": "Basic " + testIngestKey},
		"no scheme":         {"Authorization": testIngestKey},
		"a wrong API key":   {"X-Api-Key": "0123456789abcdef"},
		"the key elsewhere": {"X-Ingest-Key": testIngestKey},
	} {
		a := f.send(t, http.MethodPost, ev, header)
		requireError(t, a, http.StatusUnauthorized, "a valid key is required")
		require.Contains(t, a.header.Get("WWW-Authenticate"), "Bearer", name)
	}
	// Even for a method that is not allowed: nothing is said without the key.
	requireError(t, f.send(t, http.MethodGet, nil, nil), http.StatusUnauthorized, "a valid key is required")
	f.requireNoContact(t)

	requireApplied(t, f.send(t, http.MethodPost, ev, map[string]string{"X-Api-Key": testIngestKey}), true)
	requireApplied(t, f.send(t, http.MethodPost, ev, map[string]string{"Authorization": "bearer " + testIngestKey}), false)
	requireApplied(t, f.send(t, http.MethodPost, ev, map[string]string{"Authorization": "Bearer wrong-key-wrong-key", "X-Api-Key": testIngestKey}), false)
	require.Equal(t, map[string]float64{"applied": 1, "unchanged": 2, "rejected": 9, "failed": 0}, f.counts(t))
}

// TestIngestUnknownInstance: an event of an Amazon Connect instance that
// no instance is bound to is refused for good.
func TestIngestUnknownInstance(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(ingestSample(t, "queued.json", ""), &ev))
	ev["detail"].(map[string]any)["instanceArn"] = "arn:aws:connect:us-west-2:123456789012:instance/99999999-9999-9999-9999-999999999999"
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	requireError(t, f.post(t, body), http.StatusNotFound, `no instance is bound to Amazon Connect instance "99999999-9999-9999-9999-999999999999"`)
	_, err = f.kv.GetContact(t.Context(), "acme", ingestContact)
	require.ErrorIs(t, err, store.ErrContactNotFound)

	// Bound since: found at once (a miss reads the bindings again).
	time.Sleep(time.Second)
	_, err = f.kv.PutInstance(t.Context(), store.Instance{InstanceID: "other", Binding: &store.Binding{
		Platform: store.PlatformAmazonConnect, ConnectInstanceID: "99999999-9999-9999-9999-999999999999", Region: "us-west-2"}})
	require.NoError(t, err)
	requireApplied(t, f.post(t, body), true)
	c, err := f.kv.GetContact(t.Context(), "other", ingestContact)
	require.NoError(t, err)
	require.Equal(t, store.StateQueued, c.State)
}

// TestIngestMalformed: what can never be applied is refused with a 4xx
// that says why.
func TestIngestMalformed(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	auth := map[string]string{"Authorization": "Bearer " + testIngestKey}
	edit := func(f func(ev, d map[string]any)) []byte {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(ingestSample(t, "queued.json", ""), &ev))
		f(ev, ev["detail"].(map[string]any))
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		return b
	}
	requireError(t, f.post(t, []byte(`{"version":"0",`)), http.StatusBadRequest, "not an EventBridge event in JSON")
	requireError(t, f.post(t, nil), http.StatusBadRequest, "not an EventBridge event in JSON")
	requireError(t, f.post(t, edit(func(ev, _ map[string]any) { ev["source"] = "aws.ec2" })), http.StatusBadRequest, `source "aws.ec2"`)
	requireError(t, f.post(t, edit(func(ev, _ map[string]any) { ev["detail-type"] = "Amazon Connect Agent Event" })),
		http.StatusBadRequest, "detail-type")
	requireError(t, f.post(t, edit(func(_, d map[string]any) { d["channel"] = "FAX" })), http.StatusBadRequest, `detail.channel "FAX"`)
	requireError(t, f.post(t, edit(func(_, d map[string]any) { delete(d, "queueInfo") })), http.StatusBadRequest, "detail.queueInfo.queueArn")
	requireError(t, f.post(t, edit(func(_, d map[string]any) { d["contactId"] = strings.Repeat("c", 300) })), http.StatusBadRequest, "invalid contact")

	big := edit(func(_, d map[string]any) { d["padding"] = strings.Repeat("x", maxIngestBody) })
	requireError(t, f.post(t, big), http.StatusRequestEntityTooLarge, "at most 262144")
	// Without a Content-Length, the body is cut off as it is read.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(big)
		_ = pw.Close()
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.url, pr)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testIngestKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	a := f.send(t, http.MethodGet, nil, auth)
	requireError(t, a, http.StatusMethodNotAllowed, "method GET is not allowed")
	require.Equal(t, http.MethodPost, a.header.Get("Allow"))
	requireError(t, f.send(t, http.MethodPut, ingestSample(t, "queued.json", ""), auth), http.StatusMethodNotAllowed, "PUT")
	requireError(t, f.send(t, http.MethodPost, ingestSample(t, "queued.json", ""), map[string]string{"Authorization": auth["Authorization"],
		"Content-Type": "text/plain"}), http.StatusUnsupportedMediaType, `content type "text/plain"`)

	f.requireNoContact(t)
	require.Equal(t, map[string]float64{"applied": 0, "unchanged": 0, "rejected": 12, "failed": 0}, f.counts(t))
}

// TestIngestBadRecord: a contact whose stored record is not valid is left
// alone, and the event refused.
func TestIngestBadRecord(t *testing.T) {
	t.Parallel()
	f := newIngestFixture(t)
	_, js := f.srv.JetStream(t)
	bucket, err := js.KeyValue(t.Context(), "contactstop-contacts")
	require.NoError(t, err)
	_, err = bucket.Put(t.Context(), store.ContactKey("acme", ingestContact), []byte("garbage"))
	require.NoError(t, err)
	requireError(t, f.post(t, ingestSample(t, "queued.json", "")), http.StatusConflict, "bad record")
	e, err := bucket.Get(t.Context(), store.ContactKey("acme", ingestContact))
	require.NoError(t, err)
	require.Equal(t, "garbage", string(e.Value()))
}

// TestIngestTransientFailures: while the store cannot be reached (or is
// not open yet) events are answered 503, which EventBridge retries.
func TestIngestTransientFailures(t *testing.T) {
	t.Parallel()
	in, err := newIngest(ingestKeyFile(t, testIngestKey), "127.0.0.1:0", zap.NewNop())
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	in.routes(reg)(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	auth := map[string]string{"Authorization": "Bearer " + testIngestKey}
	a := sendIngest(t, http.MethodPost, srv.URL+ingestPathAmazonConnect, ingestSample(t, "queued.json", ""), auth)
	requireError(t, a, http.StatusServiceUnavailable, "the store is not open yet")
	require.Equal(t, "5", a.header.Get("Retry-After"))

	f := newIngestFixture(t)
	requireApplied(t, f.post(t, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z")), true)
	f.srv.Shutdown()
	start := time.Now()
	a = f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z"))
	requireError(t, a, http.StatusServiceUnavailable, "send it again")
	require.Less(t, time.Since(start), 5*time.Second, "within an API destination's 5 s")
	require.Equal(t, float64(1), f.counts(t)["failed"])

	// Back, the retry applies.
	f.srv.Restart()
	require.Eventually(t, func() bool {
		return f.post(t, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z")).status == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond)
	require.Equal(t, store.StateConnected, f.contact(t).State)
}

func TestLoadIngestKey(t *testing.T) {
	t.Parallel()
	for content, want := range map[string]string{
		testIngestKey:          testIngestKey,
		testIngestKey + "\n":   testIngestKey,
		testIngestKey + "\r\n": testIngestKey,
	} {
		key, err := loadIngestKey(ingestKeyFile(t, content))
		require.NoError(t, err)
		require.Equal(t, want, string(key))
	}
	for content, want := range map[string]string{
		"":                            "the key is 0 bytes; at least 16 are required",
		"short\n":                     "the key is 5 bytes",
		testIngestKey + "\n\n":        "visible ASCII",
		"0123456789 abcdef":           "visible ASCII",
		"\t0123456789abcdef":          "visible ASCII",
		"0123456789abcdef\nsecond\n":  "more than one line",
		"0123456789abcdef-clé-ingest": "visible ASCII",
	} {
		_, err := loadIngestKey(ingestKeyFile(t, content))
		require.ErrorContains(t, err, want, "%q", content)
	}
	_, err := loadIngestKey(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestServeIngest runs serve with --ingest-key and feeds it events over
// HTTP, as an EventBridge API destination would.
func TestServeIngest(t *testing.T) {
	keyFile := ingestKeyFile(t, testIngestKey+"\n")
	url, opsAddr := startServe(t, "--ingest-key", keyFile)
	_, err := run(t, "instances", "add", "acme", "--nats-url", url, "--platform", "amazon-connect",
		"--connect-instance-id", ingestConnectInstance, "--region", "us-west-2")
	require.NoError(t, err)
	ingestURL := "http://" + opsAddr + ingestPathAmazonConnect

	requireError(t, sendIngest(t, http.MethodPost, ingestURL, ingestSample(t, "queued.json", ""), nil), http.StatusUnauthorized, "a valid key")
	auth := map[string]string{"X-Api-Key": testIngestKey}
	requireApplied(t, sendIngest(t, http.MethodPost, ingestURL, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z"), auth), true)
	requireApplied(t, sendIngest(t, http.MethodPost, ingestURL, ingestSample(t, "connected-to-agent.json", "2021-08-04T17:29:09Z"), auth), true)
	requireApplied(t, sendIngest(t, http.MethodPost, ingestURL, ingestSample(t, "queued.json", "2021-08-04T17:29:04Z"), auth), false)

	out, err := run(t, "contacts", "get", "--instance", "acme", "--contact", ingestContact, "--nats-url", url, "--json")
	require.NoError(t, err)
	var c store.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	require.Equal(t, store.StateConnected, c.State)

	metrics, status := httpGet(t, "http://"+opsAddr+"/metrics")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, metrics, `contactstop_ingest_events_total{outcome="applied",platform="amazon-connect"} 2`)
	require.Contains(t, metrics, `contactstop_ingest_events_total{outcome="unchanged",platform="amazon-connect"} 1`)
	require.Contains(t, metrics, `contactstop_ingest_events_total{outcome="rejected",platform="amazon-connect"} 1`)
}

// TestServeIngestOff: without --ingest-key the route is not served; a key
// that is refused stops serve before it starts.
func TestServeIngestOff(t *testing.T) {
	_, opsAddr := startServe(t)
	resp, err := http.Post("http://"+opsAddr+ingestPathAmazonConnect, "application/json", bytes.NewReader(ingestSample(t, "queued.json", "")))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	dataDir := t.TempDir()
	_, err = run(t, "serve", "--data-dir", dataDir, "--listen", freeAddr(t), "--http", freeAddr(t), "--ingest-key", ingestKeyFile(t, "too-short\n"))
	require.ErrorContains(t, err, "--ingest-key")
	require.ErrorContains(t, err, "at least 16 are required")
	_, err = run(t, "serve", "--data-dir", dataDir, "--listen", freeAddr(t), "--ingest-key", ingestKeyFile(t, testIngestKey))
	require.ErrorContains(t, err, "--ingest-key needs --http")
	t.Setenv("CONTACTSTOP_INGEST_KEY", filepath.Join(t.TempDir(), "missing"))
	_, err = run(t, "serve", "--data-dir", dataDir, "--listen", freeAddr(t), "--http", freeAddr(t))
	require.ErrorContains(t, err, "--ingest-key")
	require.ErrorIs(t, err, os.ErrNotExist)
}
