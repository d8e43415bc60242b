package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// bigQueue is the queue TestClearWalkthrough clears slowly, interrupts and
// cancels: one contact at a time (three round trips each), it lasts
// seconds even on a quiet machine; 5,000 once took well under the second
// in which a run first reports progress.
const bigQueue = 30000

// TestClearWalkthrough is the README's walkthrough: a dry run, then the
// clear with --wait (its count is the dry run's), then a long clear
// interrupted (it goes on, and the commands to follow and cancel it are
// printed), then cancelled.
func TestClearWalkthrough(t *testing.T) {
	// Bulk work one contact at a time, so that a clear of thousands lasts
	// long enough to be interrupted and cancelled.
	url, _ := startServe(t, "--bulk-workers", "1", "--batch-size", "1")
	seed := func(args ...string) {
		t.Helper()
		_, err := run(t, append([]string{"contacts", "seed", "--nats-url", url, "--instance", "acme"}, args...)...)
		require.NoError(t, err)
	}
	seed("--count", "300", "--queue", "billing", "--prefix", "b")
	seed("--count", "120", "--queue", "sales", "--prefix", "s", "--channel", "CHAT")
	seed("--count", "40", "--queue", "billing", "--prefix", "on", "--state", "CONNECTED")
	seed("--count", strconv.Itoa(bigQueue), "--queue", "support", "--prefix", "big")

	// The dry run counts, per queue and state, and publishes nothing.
	out, err := run(t, "clear", "--nats-url", url, "--instance", "acme", "--queue", "billing", "--queue", "sales",
		"--state", "QUEUED", "--state", "CONNECTED", "--dry-run", "--json")
	require.NoError(t, err)
	var dry dryRun
	require.NoError(t, json.Unmarshal([]byte(out), &dry))
	require.True(t, dry.DryRun)
	require.Equal(t, store.MatchCount{Matched: 460, ByQueue: map[string]int{"billing": 340, "sales": 120},
		ByState: map[string]int{"QUEUED": 420, "CONNECTED": 40}}, dry.MatchCount)
	out, err = run(t, "clear", "--nats-url", url, "--instance", "acme", "--queue", "billing", "--queue", "sales",
		"--state", "QUEUED", "--state", "CONNECTED", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "dry run: 460 contacts of acme match")
	require.Regexp(t, `billing\s+340`, out)
	out, err = run(t, "bulk", "list", "--nats-url", url, "--json")
	require.NoError(t, err)
	require.JSONEq(t, "[]", out, "the dry run published nothing")

	// The clear matches what the dry run counted. Progress goes to stderr
	// as plain lines (no terminal here), the summary alone to stdout.
	c, err := (&clientOptions{natsURL: url, timeout: 30 * time.Second}).connect("test")
	require.NoError(t, err)
	defer c.Close()
	var stdout, progress bytes.Buffer
	req := events.BulkRequest{BulkID: "walk-1", InstanceID: "acme", Filter: events.BulkFilter{
		QueueIDs: []string{"billing", "sales"}, States: []string{"QUEUED", "CONNECTED"}}}
	err = runClear(t.Context(), clearIO{out: &stdout, progress: &progress, every: 20 * time.Millisecond},
		c, clientOptions{natsURL: url}, req, true)
	require.NoError(t, err)
	require.Contains(t, stdout.String(), "matched 460, stopped 460, failed 0, skipped 0")
	require.Equal(t, 1, strings.Count(stdout.String(), "bulk request walk-1"), stdout.String())
	require.Regexp(t, `(?m)^progress: \d+/\d+`, progress.String(), "plain progress lines on stderr")
	requireStates(t, url, map[string]int{"b:ENDED": 300, "s:ENDED": 120, "on:ENDED": 40, "big:QUEUED": bigQueue})

	// A long clear, interrupted: it goes on in the background; the exact
	// commands to follow and cancel it are printed; exit code 130.
	interrupt := make(chan os.Signal, 1)
	var wg sync.WaitGroup
	var longErr error
	var longOut, longProgress lockedBuffer
	wg.Go(func() {
		longErr = runClear(t.Context(), clearIO{out: &longOut, progress: &longProgress, every: 20 * time.Millisecond, interrupt: interrupt},
			c, clientOptions{natsURL: url}, events.BulkRequest{BulkID: "long", InstanceID: "acme"}, true)
	})
	// Interrupted once the progress shows a rate and an ETA (the total
	// is the client's estimate while the run finds contacts).
	ratePattern := regexp.MustCompile(`(?m)^progress: \d+/~?` + strconv.Itoa(bigQueue) + ` \(\d+%\), \d+/s, ETA \d`)
	require.Eventually(t, func() bool { return ratePattern.MatchString(longProgress.String()) }, 30*time.Second, 20*time.Millisecond,
		"progress lines with a rate and an ETA")
	interrupt <- os.Interrupt
	wg.Wait()
	require.Equal(t, exitInterrupted, exitCode(longErr), "%v", longErr)
	require.Contains(t, longErr.Error(), "goes on in the background")
	require.Contains(t, longErr.Error(), "contactstop bulk status long --instance acme --nats-url "+url)
	require.Contains(t, longErr.Error(), "contactstop bulk cancel long --instance acme --nats-url "+url)
	require.Empty(t, longOut.String(), "no summary: it did not complete")

	// Its status while it runs: progress, rate, ETA.
	out, err = run(t, "bulk", "status", "long", "--nats-url", url, "--instance", "acme")
	require.NoError(t, err)
	require.Contains(t, out, "RUNNING")
	require.Regexp(t, `progress: \d+/\d+.*/s`, out)

	// Cancel it: it completes cancelled, having stopped only some.
	out, err = run(t, "bulk", "cancel", "long", "--nats-url", url, "--instance", "acme", "--wait", "--json", "--timeout", "30s")
	require.NoError(t, err)
	var done events.BulkCompleted
	require.NoError(t, json.Unmarshal([]byte(out), &done))
	require.True(t, done.Cancelled)
	require.Less(t, done.Stopped, bigQueue)
	require.Equal(t, done.Matched, done.Stopped)
	requireStates(t, url, map[string]int{"b:ENDED": 300, "s:ENDED": 120, "on:ENDED": 40,
		"big:ENDED": done.Stopped, "big:QUEUED": bigQueue - done.Stopped})
	out, err = run(t, "bulk", "list", "--nats-url", url, "--instance", "acme")
	require.NoError(t, err)
	require.Regexp(t, `long\s+acme\s+COMPLETED \(cancelled\)`, out)
	require.Regexp(t, `walk-1\s+acme\s+COMPLETED\s+460/460`, out)
	out, err = run(t, "bulk", "cancel", "long", "--nats-url", url, "--instance", "acme")
	require.NoError(t, err)
	require.Contains(t, out, "was cancelled already")
	out, err = run(t, "bulk", "cancel", "walk-1", "--nats-url", url, "--instance", "acme")
	require.NoError(t, err)
	require.Contains(t, out, "too late to cancel")
}

// requireStates checks the instance's contacts by id prefix and state.
func requireStates(t *testing.T, url string, want map[string]int) {
	t.Helper()
	out, err := run(t, "contacts", "list", "--nats-url", url, "--instance", "acme", "--json")
	require.NoError(t, err)
	var cs []store.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &cs))
	got := map[string]int{}
	for _, c := range cs {
		got[strings.TrimRight(c.ContactID, "0123456789")+":"+string(c.State)]++
	}
	for k, n := range want {
		if n == 0 {
			delete(want, k)
		}
	}
	require.Equal(t, want, got)
}

func TestBulkProgress(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	m := &rateMeter{window: 10 * time.Second}
	rec := store.BulkRecord{Status: store.BulkRunning, Matched: 3000, Walking: true}
	require.Equal(t, "0/3000+ (still finding contacts)", m.observe(at, rec, 0).String())
	rec.Done = 1000
	require.Equal(t, "1000/3000+ (still finding contacts), 500/s", m.observe(at.Add(2*time.Second), rec, 0).String())
	require.Equal(t, "1000/~6000 (16%), 500/s, ETA 10s", m.observe(at.Add(2*time.Second), rec, 6000).String(),
		"the client's estimate stands in for the total while the run finds contacts")
	rec.Done, rec.Matched, rec.Walking = 1200, 5000, false
	p := m.observe(at.Add(4*time.Second), rec, 6000)
	require.Equal(t, "1200/5000 (24%), 300/s, ETA 13s", p.String(), "the run's total once it is known")
	require.Equal(t, "waiting for another bulk request of the instance to finish",
		m.observe(at, store.BulkRecord{Status: store.BulkWaiting}, 0).String())

	// bulk status: the average since the start.
	rec = store.BulkRecord{Status: store.BulkRunning, Matched: 5000, Done: 1000, StartedAt: at}
	p = recordProgress(rec, at.Add(10*time.Second))
	require.Equal(t, "1000/5000 (20%), 100/s, ETA 40s", p.String())
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
