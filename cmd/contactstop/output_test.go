package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/store"
)

// runCode executes one command line as main does and returns its exit
// code, stdout and stderr.
func runCode(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code = execute(t.Context(), root, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("connect: refused"), 1},
		{&exitError{code: 2, err: fmt.Errorf("failed")}, 2},
		{fmt.Errorf("get: %w", store.ErrContactNotFound), 3},
		{fmt.Errorf("get: %w", store.ErrInstanceNotFound), 3},
		{fmt.Errorf("get: %w", store.ErrBulkNotFound), 3},
		{&exitError{code: 130, err: fmt.Errorf("interrupted")}, 130},
	} {
		require.Equal(t, tt.want, exitCode(tt.err), "%v", tt.err)
	}
}

// TestNATSURLScheme: a --nats-url that is no NATS URL is refused at once,
// saying why, by client commands and serve alike.
func TestNATSURLScheme(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"instances", "list", "--nats-url", "http://127.0.0.1:8080"},
		{"stop", "--instance", "acme", "--contact", "c", "--nats-url", "nats://127.0.0.1:4222,https://127.0.0.1:8080"},
		{"serve", "--nats-url", "http://127.0.0.1:8080"},
	} {
		start := time.Now()
		code, _, stderr := runCode(t, args...)
		require.Equal(t, 1, code, args)
		require.Contains(t, stderr, "is not a NATS URL", args)
		require.Contains(t, stderr, "not NATS", args)
		require.Less(t, time.Since(start), 2*time.Second)
	}
	for _, ok := range []string{"nats://a:4222", "tls://a:4222,nats://b:4222", "ws://a:8080", "wss://a", "a:4222", "NATS://a"} {
		require.NoError(t, checkNATSURL(ok), ok)
	}
	require.Error(t, checkNATSURL("nats://a:4222,"))
}

// TestJSONErrors: with --json an error is one JSON object on stderr, with
// the exit code; without, a line of text.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCode(t, "instances", "list", "--nats-url", "ftp://x", "--json")
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	var e errorJSON
	require.NoError(t, json.Unmarshal([]byte(stderr), &e), stderr)
	require.Equal(t, 1, e.Code)
	require.Contains(t, e.Error, "ftp://")
	requireCamelCase(t, []byte(stderr))

	code, _, stderr = runCode(t, "instances", "list", "--nats-url", "ftp://x")
	require.Equal(t, 1, code)
	require.True(t, strings.HasPrefix(stderr, "contactstop: "), stderr)
}

// TestServePortTaken: serve fails at once, naming the address, when its
// NATS port is taken.
func TestServePortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	start := time.Now()
	code, _, stderr := runCode(t, "serve", "--listen", l.Addr().String(), "--data-dir", t.TempDir(), "--log-level", "error")
	require.Equal(t, 1, code)
	require.Less(t, time.Since(start), 3*time.Second, "at once, not after a 30 s wait")
	require.Contains(t, stderr, "cannot listen on "+l.Addr().String())
}

// TestServeDataDirUnusable: serve fails at once, naming the directory, when
// its data directory cannot be used.
func TestServeDataDirUnusable(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	dir := filepath.Join(file, "data")
	start := time.Now()
	code, _, stderr := runCode(t, "serve", "--listen", freeAddr(t), "--data-dir", dir, "--log-level", "error")
	require.Equal(t, 1, code)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Contains(t, stderr, "data directory")
	require.Contains(t, stderr, dir)
}

// TestDevLogs: --dev logs are readable: no stack trace under a warning
// (errors keep theirs).
func TestDevLogs(t *testing.T) {
	t.Parallel()
	cfg, err := loggerConfig(true, "info")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "log")
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{path}, []string{path}
	log, err := cfg.Build(loggerOptions...)
	require.NoError(t, err)
	log.Warn("a warning")
	log.Error("an error")
	_ = log.Sync()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Contains(t, lines[0], "a warning")
	require.Contains(t, lines[1], "an error", "the warning is one line: no stack trace")
	require.Greater(t, len(lines), 2, "the error has its stack trace")
}
