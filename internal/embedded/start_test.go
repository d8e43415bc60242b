package embedded

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestStartPortTaken: a port another process listens on fails Start at
// once, naming the address, instead of after 30 s.
func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	start := time.Now()
	_, err = Start(Config{DataDir: t.TempDir(), Listen: l.Addr().String()})
	require.Error(t, err)
	require.Less(t, time.Since(start), 2*time.Second)
	require.ErrorContains(t, err, "cannot listen on "+l.Addr().String())
	require.ErrorContains(t, err, "another process listens there")
}

// TestStartDataDirUnusable: a data directory that cannot be created or
// written fails Start at once, naming it.
func TestStartDataDirUnusable(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	for _, dir := range []string{file, filepath.Join(file, "data")} {
		start := time.Now()
		_, err := Start(Config{DataDir: dir, Listen: freeAddr(t)})
		require.Error(t, err, dir)
		require.Less(t, time.Since(start), 2*time.Second)
		require.ErrorContains(t, err, "data directory "+dir)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(t.TempDir(), "ro")
		require.NoError(t, os.Mkdir(ro, 0o500))
		_, err := Start(Config{DataDir: ro, Listen: freeAddr(t)})
		require.ErrorContains(t, err, "is not writable")
	}
}

// TestStartQuietBanner: the server's start-up banner is logged at debug
// level, not info.
func TestStartQuietBanner(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	srv, err := Start(Config{DataDir: t.TempDir(), Listen: freeAddr(t), Logger: zap.New(core)})
	require.NoError(t, err)
	srv.Stop()
	banner := 0
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "Starting nats-server") || strings.Contains(e.Message, "Version:") {
			banner++
			require.Equal(t, zap.DebugLevel, e.Level, e.Message)
		}
	}
	require.Positive(t, banner, "the banner is still there at debug level")
	require.Empty(t, logs.FilterLevelExact(zap.InfoLevel).All(), "nothing at info level from the server's start")
}
