package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// run executes one contactstop command line and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func httpGet(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b), resp.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// startServe runs serve with its embedded server on a free port, with
// /readyz etc. on another, and the extra args; it returns the NATS URL and
// the ops address once serve has provisioned its streams, and stops serve
// when the test ends, requiring a clean exit.
func startServe(t *testing.T, args ...string) (url, opsAddr string) {
	t.Helper()
	addr := freeAddr(t)
	url, opsAddr = "nats://"+addr, freeAddr(t)
	// The directory first, so that its removal is cleaned up after serve's
	// stop (cleanups run last in, first out).
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(append([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--workers", "4", "--log-level", "warn", "--http", opsAddr}, args...))
		served <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			require.NoError(t, err, "serve exits cleanly on shutdown")
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	// serve is ready once /readyz says so: its streams, store and worker
	// are up (and the HTTP APIs answer).
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	return url, opsAddr
}

// TestServeAndClients runs serve with its embedded server and drives it
// with the client commands, as a user would from a second terminal.
func TestServeAndClients(t *testing.T) {
	url, opsAddr := startServe(t, "--ack-wait", "1s", "--retry-max-elapsed", "500ms", "--retry-max", "200ms", "--duplicate-window", "2s")

	out, err := run(t, "contacts", "seed", "--nats-url", url, "--instance", "acme", "--count", "50", "--queue", "billing", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"seeded": 50`)

	out, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--request-id", "r-7", "--reason", "EMERGENCY", "--wait", "--json")
	require.NoError(t, err)
	var stopped events.Stopped
	require.NoError(t, json.Unmarshal([]byte(out), &stopped))
	require.Equal(t, events.Stopped{RequestID: "r-7", ContactID: "c7", InstanceID: "acme", PreviousState: "QUEUED", DisconnectReason: "EMERGENCY", StoppedAt: stopped.StoppedAt}, stopped)

	// The same request again is stored again (the requests stream keeps no
	// duplicate window) and answered from the record: the original result
	// is shown.
	again, err := run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--request-id", "r-7", "--wait", "--json")
	require.NoError(t, err)
	require.JSONEq(t, out, again)

	// Again after the duplicate window: a new message, answered from the
	// record at once, and no second result is stored.
	time.Sleep(2500 * time.Millisecond) // the window is a span of time that must pass
	again, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--request-id", "r-7", "--wait", "--json", "--timeout", "5s")
	require.NoError(t, err)
	require.JSONEq(t, out, again)

	// A failure is as durable: the contact created after the request was
	// answered CONTACT_NOT_FOUND does not change its outcome.
	missing, err := run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "late", "--request-id", "r-late", "--wait", "--json")
	var ee *exitError
	require.True(t, errors.As(err, &ee), "got %v", err)
	_, err = run(t, "contacts", "put", "--nats-url", url, "--instance", "acme", "--contact", "late", "--queue", "billing")
	require.NoError(t, err)
	time.Sleep(2500 * time.Millisecond)
	again, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "late", "--request-id", "r-late", "--wait", "--json", "--timeout", "5s")
	require.True(t, errors.As(err, &ee), "got %v", err)
	require.JSONEq(t, missing, again)
	out2, err := run(t, "contacts", "get", "--nats-url", url, "--instance", "acme", "--contact", "late", "--json")
	require.NoError(t, err)
	require.Contains(t, out2, `"state": "QUEUED"`)

	// An ENDED contact is not brought back to life by accident.
	_, err = run(t, "contacts", "put", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--queue", "billing")
	require.ErrorContains(t, err, "--force")

	// Another request for the ended contact fails, with exit code 2.
	out, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--wait")
	require.True(t, errors.As(err, &ee), "got %v", err)
	require.Equal(t, 2, ee.code)
	require.Contains(t, out, "CONTACT_NOT_FOUND")

	out, err = run(t, "contacts", "get", "--nats-url", url, "--instance", "acme", "--contact", "c7", "--json")
	require.NoError(t, err)
	var c store.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, "r-7", c.EndedBy)
	require.Equal(t, "billing", c.QueueID)

	out, err = run(t, "results", "--nats-url", url, "--instance", "acme", "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, "r-7's result once (resends store none), r-late's failure once, then the failure: %s", out)
	require.Contains(t, lines[0], `"subject":"contact.stopped.acme"`)
	require.Contains(t, lines[0], `"requestId":"r-7"`)
	require.Contains(t, lines[0], `"contactId":"c7"`)
	require.Contains(t, lines[1], `"requestId":"r-late"`)
	require.Contains(t, lines[2], `"reasonCode":"CONTACT_NOT_FOUND"`)
	out, err = run(t, "results", "--nats-url", url, "--instance", "acme", "--last", "1")
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(out, "\n"))
	require.Contains(t, out, "CONTACT_NOT_FOUND")
	out, err = run(t, "results", "--nats-url", url, "--last", "1")
	require.NoError(t, err)
	require.Contains(t, out, "CONTACT_NOT_FOUND")

	// Clear what is left of the billing queue: 50 of the 51 (c7 ended).
	out, err = run(t, "clear", "--nats-url", url, "--instance", "acme", "--queue", "billing", "--bulk-id", "b-1",
		"--reason", "QUEUE_CLOSED", "--wait", "--json")
	require.NoError(t, err)
	var done events.BulkCompleted
	require.NoError(t, json.Unmarshal([]byte(out), &done))
	require.Equal(t, 50, done.Matched)
	require.Equal(t, 50, done.Stopped)
	require.Zero(t, done.Failed)
	// The record is marked COMPLETED just after the completion event.
	require.Eventually(t, func() bool {
		out, err = run(t, "bulk", "status", "b-1", "--nats-url", url, "--instance", "acme")
		return err == nil && strings.Contains(out, "COMPLETED")
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, out, "stopped 50")
	// Again: nothing is stopped twice; the same summary stands.
	out, err = run(t, "clear", "--nats-url", url, "--instance", "acme", "--queue", "billing", "--bulk-id", "b-1", "--wait")
	require.NoError(t, err)
	require.Contains(t, out, "matched 50, stopped 50, failed 0")
	_, err = run(t, "clear", "--nats-url", url, "--instance", "acme", "--state", "ended")
	require.ErrorContains(t, err, "ENDED contacts cannot be stopped")

	out, err = run(t, "instances", "list", "--nats-url", url)
	require.NoError(t, err)
	require.Contains(t, out, "acme")

	// Metrics and health.
	body, code := httpGet(t, "http://"+opsAddr+"/healthz")
	require.Equal(t, 200, code, body)
	body, code = httpGet(t, "http://"+opsAddr+"/readyz")
	require.Equal(t, 200, code, body)
	body, code = httpGet(t, "http://"+opsAddr+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, `contactstop_requests_total{outcome="stopped",reason_code=""} 1`)
	require.Contains(t, body, `contactstop_requests_total{outcome="failed",reason_code="CONTACT_NOT_FOUND"} 2`)
	require.Contains(t, body, `contactstop_requests_total{outcome="resend",reason_code=""} 3`)
	require.Contains(t, body, `contactstop_bulk_contacts_total{outcome="stopped",reason_code=""} 50`)
	require.Contains(t, body, `contactstop_consumer_pending{consumer="contactstop-worker"} 0`)
	require.Contains(t, body, "go_goroutines")

	// Bad input is refused before anything is sent.
	_, err = run(t, "stop", "--nats-url", url, "--instance", "ac.me", "--contact", "c1")
	require.ErrorContains(t, err, "instanceId")
	_, err = run(t, "contacts", "seed", "--nats-url", url, "--instance", "acme", "--count", "3", "--state", "GONE")
	require.ErrorContains(t, err, "--state")
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("CONTACTSTOP_NATS_URL", "nats://127.0.0.1:1")
	_, err := run(t, "instances", "list", "--timeout", "2s")
	require.ErrorContains(t, err, "127.0.0.1:1", "the URL came from the environment")

	t.Setenv("CONTACTSTOP_WORKERS", "many")
	_, err = run(t, "serve")
	require.ErrorContains(t, err, "CONTACTSTOP_WORKERS")
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version", "--json")
	require.NoError(t, err)
	require.JSONEq(t, `{"version":"`+version+`"}`, out)
}

// TestServeStopsCleanlyDuringStartUp: a signal at any point of serve's
// start-up (the embedded server, the streams, the store) is a shutdown like
// any other: serve exits cleanly.
func TestServeStopsCleanlyDuringStartUp(t *testing.T) {
	t.Parallel()
	for _, after := range []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond} {
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() {
			root := newRootCmd()
			root.SetArgs([]string{"serve", "--listen", freeAddr(t), "--data-dir", filepath.Join(t.TempDir(), "data"),
				"--log-level", "warn", "--http", freeAddr(t)})
			served <- root.ExecuteContext(ctx)
		}()
		time.Sleep(after)
		cancel()
		select {
		case err := <-served:
			require.NoError(t, err, "stopped %s into its start-up", after)
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not stop (%s into its start-up)", after)
		}
	}
}

// TestServeWaitsForJetStream: a server whose JetStream is not available
// yet (still starting, its cluster electing a leader) is waited for during
// start-up; serve does not exit.
func TestServeWaitsForJetStream(t *testing.T) {
	t.Parallel()
	srv := startPlainServer(t, func(*server.Options) {})
	ops := freeAddr(t)
	startReplica(t, srv.ClientURL(), "--http", ops) // its clean exit is checked when the test ends
	time.Sleep(1500 * time.Millisecond)
	_, code := httpGet(t, "http://"+ops+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "up, waiting, not ready")

	require.NoError(t, srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir(), MaxMemory: 256 << 20, MaxStore: 8 << 30}))
	require.Eventually(t, func() bool {
		_, code := httpGet(t, "http://"+ops+"/readyz")
		return code == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "ready once JetStream is")
}
