package embedded

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestStart(t *testing.T) {
	for _, sync := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "data")
		srv, err := Start(Config{DataDir: dir, Listen: freeAddr(t), SyncAlways: sync, Logger: zaptest.NewLogger(t)})
		require.NoError(t, err)
		js := srv.JetStreamConfig()
		require.NotNil(t, js, "JetStream is on")
		require.Equal(t, sync, js.SyncAlways)
		require.Contains(t, js.StoreDir, dir, "files go under the data dir")
		srv.Stop()
	}
}

func TestStartRejectsBadAddress(t *testing.T) {
	_, err := Start(Config{DataDir: t.TempDir(), Listen: "localhost"})
	require.ErrorContains(t, err, "listen address")
	_, err = Start(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:http"})
	require.ErrorContains(t, err, "bad port")
}
