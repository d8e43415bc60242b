package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAppendRecord: the hand-written record equals encoding/json's, with
// every optional field set and unset and awkward text.
func TestAppendRecord(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 10, 0, 0, 123400000, time.UTC)
	for _, text := range []string{"", "billing", `q"\`, "a.b c/é", "<&>", "\x00\n\u2028", "\xff", "📞"} {
		for _, tm := range []time.Time{{}, at} {
			c := Contact{ContactID: text + "id", InstanceID: "acme", State: StateEnded, QueueID: text, Channel: ChannelChat,
				EnqueuedAt: tm, UpdatedAt: at, EndedAt: tm, EndedBy: text, DisconnectReason: text, Revision: 7}
			if text != "" {
				c.PreviousState = StateQueued
				c.EndedBySeq = uint64(len(text)) << 40
			}
			want, err := json.Marshal(c)
			require.NoError(t, err)
			require.Equal(t, string(want), string(c.appendRecord(nil)))
		}
	}
}
