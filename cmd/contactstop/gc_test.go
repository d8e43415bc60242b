package main

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuneGC: a worker-only serve (--nats-url) collects at GOGC 400 under a
// 150 MiB soft limit; with the embedded server Go's defaults stay; flags
// set them; GOGC and GOMEMLIMIT in the environment win.
func TestTuneGC(t *testing.T) {
	gc0, limit0 := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc0); debug.SetMemoryLimit(limit0) })
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if old, ok := os.LookupEnv(v); ok {
			require.NoError(t, os.Unsetenv(v))
			t.Cleanup(func() { _ = os.Setenv(v, old) })
		}
	}
	const none = int64(^uint64(0) >> 1) // math.MaxInt64: no limit
	for _, tc := range []struct {
		name      string
		o         serveOptions
		env       string
		gc        int
		limitMiB  int64
		unlimited bool
	}{
		{name: "embedded: Go's defaults", o: serveOptions{}, gc: 100, unlimited: true},
		{name: "worker only", o: serveOptions{natsURL: "nats://x:4222"}, gc: 400, limitMiB: 150},
		{name: "flags", o: serveOptions{natsURL: "nats://x:4222", gcPercent: 250, memoryLimitMiB: 512}, gc: 250, limitMiB: 512},
		{name: "flags, embedded", o: serveOptions{gcPercent: 300}, gc: 300, unlimited: true},
		{name: "GOGC wins", o: serveOptions{natsURL: "nats://x:4222"}, env: "GOGC", gc: 100, limitMiB: 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(none)
			if tc.env != "" {
				t.Setenv(tc.env, "100")
			}
			tuneGC(tc.o)
			require.Equal(t, tc.gc, debug.SetGCPercent(100))
			if tc.unlimited {
				require.Equal(t, none, debug.SetMemoryLimit(-1))
			} else {
				require.Equal(t, tc.limitMiB<<20, debug.SetMemoryLimit(-1))
			}
		})
	}
}
