package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

var awkward = []string{"", "r-1", `q"\`, "a.b c/é", "<&>", "\x00\n\u2028", "\xff", "📞"}

// TestAppendJSON: the hand-written encodings equal encoding/json's for
// every combination of awkward fields, set and unset.
func TestAppendJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 10, 0, 0, 123400000, time.UTC)
	for _, a := range awkward {
		for _, b := range awkward {
			s := events.Stopped{RequestID: a, ContactID: b, InstanceID: "acme", PreviousState: a, DisconnectReason: b, StoppedAt: at}
			want, err := json.Marshal(s)
			require.NoError(t, err)
			require.Equal(t, string(want), string(s.AppendJSON(nil)))

			f := events.StopFailed{RequestID: b, ContactID: a, InstanceID: b, ReasonCode: events.ReasonCode(a),
				Message: b, Retryable: len(a) > len(b), FailedAt: at.Add(time.Duration(len(a)))}
			want, err = json.Marshal(f)
			require.NoError(t, err)
			require.Equal(t, string(want), string(f.AppendJSON(nil)))
		}
	}
}

func BenchmarkStoppedAppendJSON(b *testing.B) {
	s := events.Stopped{RequestID: "r-42", ContactID: "c-1", InstanceID: "acme-prod", PreviousState: "QUEUED",
		DisconnectReason: "EMERGENCY", StoppedAt: time.Now().UTC()}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendJSON(buf[:0])
	}
}
