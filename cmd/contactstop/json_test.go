package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

var camelCase = regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)

// dynamicKeys are the objects whose keys are data (queue ids, states,
// reason codes, percentiles), not field names.
var dynamicKeys = map[string]bool{"byQueue": true, "byState": true, "reasonCodes": true,
	"latencyMillis": true, "latencyRssMiB": true}

// requireCamelCase fails unless data is one or more JSON values (a JSON
// document, or JSON lines) whose every field name is camelCase.
func requireCamelCase(t *testing.T, data []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	n := 0
	for dec.More() {
		var v any
		require.NoError(t, dec.Decode(&v), "not JSON: %s", data)
		checkKeys(t, v, "")
		n++
	}
	require.Positive(t, n, "no JSON at all: %q", data)
}

func checkKeys(t *testing.T, v any, path string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if !dynamicKeys[lastKey(path)] {
				require.Regexp(t, camelCase, k, "field %s.%s is not camelCase", path, k)
			}
			checkKeys(t, child, path+"."+k)
		}
	case []any:
		for _, child := range v {
			checkKeys(t, child, path)
		}
	}
}

func lastKey(path string) string {
	return path[strings.LastIndex(path, ".")+1:]
}

// jsonLines is true for the commands whose --json output is a stream of
// JSON lines rather than one JSON document.
var jsonLines = map[string]bool{"contactstop results": true}

// TestJSONEverywhere runs every command that takes --json, with --json,
// against a running serve, and checks that stdout is JSON only (one
// document, or JSON lines for a stream) with camelCase field names. A
// command with --json missing from the table fails the test.
func TestJSONEverywhere(t *testing.T) {
	url, _ := startServe(t)
	keys := t.TempDir()
	cases := []struct {
		path string
		args []string
		// code, when not 0, is the exit code expected, with the error as
		// JSON on stderr and nothing on stdout.
		code int
	}{
		{"contactstop version", nil, 0},
		{"contactstop token keygen", []string{"--out", keys, "--name", "k"}, 0},
		{"contactstop token issue", []string{"--key", keys + "/k.pem", "--sub", "ops", "--allow", "contact:Stop:instance/acme/contact/*"}, 0},
		{"contactstop instances add", []string{"acme", "--nats-url", url}, 0},
		{"contactstop instances list", []string{"--nats-url", url}, 0},
		{"contactstop contacts seed", []string{"--nats-url", url, "--instance", "acme", "--count", "20", "--queue", "billing"}, 0},
		{"contactstop contacts put", []string{"--nats-url", url, "--instance", "acme", "--contact", "x-1", "--queue", "sales"}, 0},
		{"contactstop contacts get", []string{"--nats-url", url, "--instance", "acme", "--contact", "x-1"}, 0},
		{"contactstop contacts get", []string{"--nats-url", url, "--instance", "acme", "--contact", "nobody"}, exitNotFound},
		{"contactstop contacts list", []string{"--nats-url", url, "--instance", "acme"}, 0},
		{"contactstop contacts sync", []string{"--nats-url", url, "--instance", "acme"}, exitFailure}, // not bound
		{"contactstop stop", []string{"--nats-url", url, "--instance", "acme", "--contact", "c1"}, 0},
		{"contactstop stop", []string{"--nats-url", url, "--instance", "acme", "--contact", "c2", "--wait"}, 0},
		{"contactstop stop", []string{"--nats-url", url, "--instance", "acme", "--contact", "c2", "--wait"}, exitRequestFailed},
		{"contactstop clear", []string{"--nats-url", url, "--instance", "acme", "--queue", "billing", "--dry-run"}, 0},
		{"contactstop clear", []string{"--nats-url", url, "--instance", "acme", "--queue", "billing", "--bulk-id", "j-1", "--wait"}, 0},
		{"contactstop clear", []string{"--nats-url", url, "--instance", "acme", "--queue", "sales", "--bulk-id", "j-2"}, 0},
		{"contactstop bulk list", []string{"--nats-url", url}, 0},
		{"contactstop bulk status", []string{"j-1", "--nats-url", url, "--instance", "acme"}, 0},
		{"contactstop bulk status", []string{"nope", "--nats-url", url, "--instance", "acme"}, exitNotFound},
		{"contactstop bulk cancel", []string{"j-2", "--nats-url", url, "--instance", "acme", "--wait"}, 0},
		{"contactstop bulk cancel", []string{"nope", "--nats-url", url, "--instance", "acme"}, exitNotFound},
		{"contactstop results", []string{"--nats-url", url}, 0},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.path] = true
		args := append(strings.Fields(strings.TrimPrefix(c.path, "contactstop")), c.args...)
		args = append(args, "--json")
		code, out, stderr := runCode(t, args...)
		require.Equal(t, c.code, code, "%v: %s", args, stderr)
		if c.code != 0 && c.path != "contactstop stop" {
			require.Empty(t, out, "%v", args)
		}
		if c.code != 0 {
			var e errorJSON
			require.NoError(t, json.Unmarshal([]byte(stderr), &e), "%v: the error is JSON: %s", args, stderr)
			require.Equal(t, c.code, e.Code)
			require.NotEmpty(t, e.Error)
			if out == "" {
				continue
			}
		}
		if !jsonLines[c.path] {
			require.True(t, json.Valid([]byte(out)), "%v: not one JSON document: %s", args, out)
		}
		requireCamelCase(t, []byte(out))
		if c.path == "contactstop results" {
			require.Contains(t, out, `"subject":"contact.stop.bulk.completed.acme"`, "bulk completions are JSON lines too")
		}
	}
	// The commands left no consumers behind (results, stop --wait and
	// clear --wait read the results stream through ordered consumers).
	c, err := (&clientOptions{natsURL: url, timeout: 10 * time.Second}).connect("test")
	require.NoError(t, err)
	defer c.Close()
	for _, stream := range []string{events.StreamResults, events.StreamRequests} {
		s, err := c.js.Stream(t.Context(), stream)
		require.NoError(t, err)
		for info := range s.ListConsumers(t.Context()).Info() {
			require.NotEmpty(t, info.Config.Durable, "consumer %s on %s was left behind by a client command: %+v", info.Name, stream, info.Config)
		}
	}

	// Every command with --json is in the table (bench, which measures a
	// server of its own, is tested in bench_test.go).
	for _, c := range allCommands(newRootCmd()) {
		if c.Flags().Lookup("json") == nil || c.CommandPath() == "contactstop bench" {
			continue
		}
		if !covered[c.CommandPath()] {
			t.Errorf("%s takes --json but TestJSONEverywhere does not run it", c.CommandPath())
		}
	}
}
