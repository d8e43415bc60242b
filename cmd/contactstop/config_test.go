package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfigFilePrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "contactstop.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
workers: 7
bulk-workers: 9
log-level: debug
ack-wait: 45s
emergency: true
`), 0o600))
	t.Setenv("CONTACTSTOP_BULK_WORKERS", "11")
	cmd := newServeCmd()
	require.NoError(t, cmd.ParseFlags([]string{"--config", path, "--log-level", "warn"}))
	require.NoError(t, applyEnv(cmd.Flags()))
	require.NoError(t, applyConfigFile(cmd.Flags()))
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	require.Equal(t, "7", get("workers"), "from the file")
	require.Equal(t, "11", get("bulk-workers"), "the environment wins over the file")
	require.Equal(t, "warn", get("log-level"), "the command line wins over both")
	require.Equal(t, "45s", get("ack-wait"))
	require.Equal(t, "true", get("emergency"))
	require.Equal(t, "2", get("bulks"), "untouched settings keep their defaults")
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	for body, want := range map[string]string{
		"wokers: 3\n":     `unknown setting "wokers"`,
		"workers: many\n": "workers",
		"workers: [1\n":   "yaml",
	} {
		cmd := newServeCmd()
		require.NoError(t, cmd.ParseFlags([]string{"--config", write(body)}))
		require.ErrorContains(t, applyConfigFile(cmd.Flags()), want, body)
	}
	cmd := newServeCmd()
	require.NoError(t, cmd.ParseFlags([]string{"--config", filepath.Join(dir, "missing.yaml")}))
	require.ErrorContains(t, applyConfigFile(cmd.Flags()), "no such file")
}
