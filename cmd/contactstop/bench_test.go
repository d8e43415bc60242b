package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary stand in for contactstop when bench starts
// its worker as a child process (os.Executable is the test binary then).
func TestMain(m *testing.M) {
	if os.Getenv("CS_TEST_AS_CONTACTSTOP") == "1" {
		os.Args = append([]string{"contactstop"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLatencyWindows(t *testing.T) {
	got := make([]time.Duration, 2500) // 25 s at 100/s
	for i := range got {
		got[i] = time.Millisecond
	}
	got[1500] = 70 * time.Millisecond // at 15 s
	ws := latencyWindows(got, 10*time.Millisecond, 10*time.Second)
	require.Equal(t, []latencyWindow{{0, 1, 1, 1}, {10, 1, 1, 70}, {20, 1, 1, 1}}, ws)
	require.Equal(t, []latencyWindow{{0, 1, 1, 70}}, latencyWindows(got, 10*time.Millisecond, time.Minute))
}

// TestBench runs a small bench end to end on the embedded server: every
// phase reports, and verification passes.
func TestBench(t *testing.T) {
	t.Setenv("CS_TEST_AS_CONTACTSTOP", "1")
	prof := t.TempDir()
	out, err := run(t, "bench", "--count", "500", "--workers", "16", "--batch-size", "8", "--baseline",
		"--rate", "200", "--latency-for", "3s", "--latency-ceiling", "--bulk", "--json", "--cpu-profile", prof)
	require.NoError(t, err)
	var rep benchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.Verified, rep.Problems)
	require.Equal(t, 500, rep.Requests)
	require.Positive(t, rep.DrainStopsPerS)
	require.Positive(t, rep.BaselineMsgsPS)
	require.InDelta(t, rep.DrainStopsPerS/rep.BaselineMsgsPS, rep.DrainToBaseline, 1e-9)
	require.Equal(t, 600, rep.LatencyCount)
	require.Positive(t, rep.LatencyMS["p50"])
	require.GreaterOrEqual(t, rep.LatencyMS["max"], rep.LatencyMS["p99"])
	require.Positive(t, rep.LatencyRSSMiB["max"])
	require.Len(t, rep.LatencyWindows, 1, "3 s is one window")
	require.Equal(t, rep.LatencyMS["max"], rep.LatencyWindows[0].MaxMS)
	require.Positive(t, rep.CeilingLatencyMS["p50"])
	require.GreaterOrEqual(t, rep.CeilingLatencyMS["max"], rep.CeilingLatencyMS["p99"])
	require.Len(t, rep.CeilingLatencyWindows, 1)
	require.Positive(t, rep.CeilingProcessCPUMicros)
	require.Positive(t, rep.BulkStopsPerS)
	require.Positive(t, rep.WorkerCPUSeconds)
	require.LessOrEqual(t, rep.DrainWorkerCPUMicros*float64(rep.Requests-1)/1e6, rep.WorkerCPUSeconds,
		"the drain's CPU is part of the worker process's")
	require.Positive(t, rep.WorkerPeakRSSMiB)
	for _, f := range []string{"worker.pprof", "server.pprof"} {
		st, err := os.Stat(filepath.Join(prof, f))
		require.NoError(t, err, f)
		require.Positive(t, st.Size(), f)
	}
}

// TestBenchPlatform runs the platform phase small: two worker processes
// clear two bound instances through the fake Amazon Connect within one
// budget, and verification passes.
func TestBenchPlatform(t *testing.T) {
	t.Setenv("CS_TEST_AS_CONTACTSTOP", "1")
	for _, p := range []string{"amazon-connect", "cxone", "genesys"} {
		t.Run(p, func(t *testing.T) {
			out, err := run(t, "bench", "--platform-clear", "60", "--platform", p, "--platform-rate", "40", "--platform-burst", "10", "--json")
			require.NoError(t, err, out)
			var rep platformReport
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			require.True(t, rep.Verified, rep.Problems)
			require.Equal(t, p, rep.Platform)
			require.Equal(t, 60, rep.Contacts)
			require.Len(t, rep.SingleMS, benchSingles)
			require.Positive(t, rep.SustainedPerSecond)
			require.LessOrEqual(t, rep.MaxCallsInASecond, 50, "within the budget")
		})
	}
}

func TestBenchCeilingNeedsRate(t *testing.T) {
	_, err := run(t, "bench", "--latency-ceiling")
	require.ErrorContains(t, err, "--latency-ceiling needs --rate")
}
