package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform/amazonconnect/connecttest"
)

// startReplica runs another serve on the NATS server at url, as a second
// replica would, and stops it when the test ends.
func startReplica(t *testing.T, url string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(append([]string{"serve", "--nats-url", url, "--workers", "4", "--log-level", "warn",
			"--data-dir", filepath.Join(t.TempDir(), "unused")}, args...))
		served <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			require.NoError(t, err, "the replica exits cleanly on shutdown")
		case <-time.After(30 * time.Second):
			t.Error("the replica did not stop")
		}
	})
}

// queuedEvent is AWS's QUEUED sample for another contact of connectID.
func queuedEvent(t *testing.T, connectID, contactID string, at time.Time) []byte {
	t.Helper()
	var ev map[string]any
	require.NoError(t, json.Unmarshal(ingestSample(t, "queued.json", ""), &ev))
	ev["time"] = at.UTC().Format(time.RFC3339)
	d := ev["detail"].(map[string]any)
	d["contactId"] = contactID
	arn := "arn:aws:connect:us-east-1:111122223333:instance/" + connectID
	d["instanceArn"] = arn
	q := d["queueInfo"].(map[string]any)
	q["queueArn"] = arn + "/queue/billing"
	q["enqueueTimestamp"] = at.UTC().Format("2006-01-02T15:04:05.000Z")
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	return data
}

// TestServePlatformTwoReplicas binds an instance to Amazon Connect (the
// fake, through the AWS SDK with credentials from the environment), feeds
// its inventory through the ingest endpoint, and clears its queue from two
// serve replicas while a single stop comes in: every contact is stopped on
// the platform exactly once, the single request too, the calls of both
// replicas together stay within the budget, and nothing is throttled.
func TestServePlatformTwoReplicas(t *testing.T) {
	const connectID = "12345678-aaaa-bbbb-cccc-123456789012"
	fake := connecttest.New(t, connecttest.WithInstance(connectID))
	// The AWS SDK's default chain, and nothing from this machine's files.
	t.Setenv("AWS_ACCESS_KEY_ID", fake.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", fake.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	url, ops := startServe(t, "--ingest-key", ingestKeyFile(t, testIngestKey))
	startReplica(t, url)

	out, err := run(t, "instances", "add", "acme", "--nats-url", url, "--platform", "amazon-connect",
		"--connect-instance-id", connectID, "--region", "us-east-1", "--endpoint", fake.URL())
	require.NoError(t, err)
	require.Contains(t, out, "bound to amazon-connect "+connectID)
	out, err = run(t, "instances", "list", "--nats-url", url)
	require.NoError(t, err)
	require.Contains(t, out, "10/s burst 15")

	const n = 40
	now := time.Now().Add(-time.Minute)
	for i := range n {
		id := fmt.Sprint("call-", i)
		fake.AddContact(connectID, connecttest.Contact{ID: id, QueueID: "billing", EnqueuedAt: now})
		a := sendIngest(t, "POST", "http://"+ops+"/ingest/amazon-connect", queuedEvent(t, connectID, id, now),
			map[string]string{"Authorization": "Bearer " + testIngestKey, "Content-Type": "application/json"})
		requireApplied(t, a, true)
	}
	out, err = run(t, "contacts", "list", "--nats-url", url, "--instance", "acme", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"queueId":"billing"`)

	var wg sync.WaitGroup
	var clearOut string
	var clearErr error
	wg.Go(func() {
		clearOut, clearErr = run(t, "clear", "--nats-url", url, "--instance", "acme", "--state", "QUEUED",
			"--bulk-id", "flood", "--wait", "--json", "--timeout", "60s")
	})
	// A single request during the clear: the contact is unknown to the
	// store's inventory, the platform has it.
	time.Sleep(time.Second)
	fake.AddContact(connectID, connecttest.Contact{ID: "vip", AgentConnected: true})
	out, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "vip", "--request-id", "r-vip", "--wait", "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"previousState": "CONNECTED"`)
	wg.Wait()
	require.NoError(t, clearErr, clearOut)
	var done struct{ Matched, Stopped, Failed int }
	require.NoError(t, json.Unmarshal([]byte(clearOut), &done), clearOut)
	require.Equal(t, n, done.Matched, clearOut)
	require.Equal(t, n, done.Stopped, clearOut)

	for i := range n {
		require.Equal(t, 1, fake.StopEffects(fmt.Sprint("call-", i)))
	}
	require.Equal(t, 1, fake.StopEffects("vip"))
	// A call the fake refused for its quota (a grant and the fake's own
	// bucket a few milliseconds apart, more so on a loaded machine) took no
	// effect and was made again.
	var stops []time.Time
	refused := 0
	for _, c := range fake.Calls() {
		if c.Op == connecttest.OpStopContact {
			stops = append(stops, c.At)
			if c.Code == "ThrottlingException" {
				refused++
			}
		}
	}
	require.Len(t, stops, n+1+refused, "one StopContact per contact, and those refused made again")
	// Both replicas together: at most burst + rate × (1 s + 100 ms of
	// grant-to-arrival jitter) in any second.
	for i := range stops {
		in := 0
		for _, at := range stops[i:] {
			if at.Sub(stops[i]) < time.Second {
				in++
			}
		}
		require.LessOrEqual(t, in, 15+11, "calls in the second from %s", stops[i])
	}
}
