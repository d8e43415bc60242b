package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseState(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]State{
		"INITIATED": StateInitiated, "queued": StateQueued, "Connected": StateConnected,
		"on_hold": StateOnHold, "ENDED": StateEnded,
	} {
		got, err := ParseState(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "ON-HOLD", "onhold", " QUEUED", "DONE"} {
		_, err := ParseState(in)
		require.ErrorContains(t, err, "INITIATED, QUEUED, CONNECTED, ON_HOLD, ENDED", in)
	}
	for _, s := range []State{StateInitiated, StateQueued, StateConnected, StateOnHold} {
		require.True(t, s.Active(), s)
	}
	for _, s := range []State{StateEnded, "", "queued", "BOGUS"} {
		require.False(t, s.Active(), s)
	}
}

func TestParseChannel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Channel{
		"VOICE": ChannelVoice, "chat": ChannelChat, "Email": ChannelEmail, "sms": ChannelSMS,
		"voicemail": ChannelVoicemail, "work_item": ChannelWorkItem,
	} {
		got, err := ParseChannel(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "WORK-ITEM", "FAX"} {
		_, err := ParseChannel(in)
		require.ErrorContains(t, err, "VOICE, CHAT, EMAIL, SMS, VOICEMAIL, WORK_ITEM", in)
	}
}

// TestContactJSON pins the record format documented in docs/store.md.
func TestContactJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	active := Contact{ContactID: "c-1", InstanceID: "acme", State: StateQueued, Channel: ChannelVoice, UpdatedAt: at, Revision: 9}
	b, err := json.Marshal(active)
	require.NoError(t, err)
	require.JSONEq(t, `{"contactId":"c-1","instanceId":"acme","state":"QUEUED","channel":"VOICE","updatedAt":"2026-11-20T10:00:00Z"}`, string(b))

	ended := Contact{
		ContactID: "c-1", InstanceID: "acme", State: StateEnded, QueueID: "billing", Channel: ChannelChat,
		EnqueuedAt: at.Add(-time.Minute), UpdatedAt: at, EndedAt: at, EndedBy: "r-42", EndedBySeq: 17,
		DisconnectReason: "EMERGENCY", PreviousState: StateQueued,
	}
	b, err = json.Marshal(ended)
	require.NoError(t, err)
	require.JSONEq(t, `{"contactId":"c-1","instanceId":"acme","state":"ENDED","queueId":"billing","channel":"CHAT",
		"enqueuedAt":"2026-11-20T09:59:00Z","updatedAt":"2026-11-20T10:00:00Z","endedAt":"2026-11-20T10:00:00Z",
		"endedBy":"r-42","endedBySeq":17,"disconnectReason":"EMERGENCY","previousState":"QUEUED"}`, string(b))
	require.Equal(t, string(b), string(ended.appendRecord(nil)), "the hot path writes the same record")
}

func TestDecodeContact(t *testing.T) {
	t.Parallel()
	c, err := decodeContact("acme", "c 1", []byte(`{"state":"QUEUED","channel":"SMS","extra":1}`), 7)
	require.NoError(t, err, "ids come from the key; unknown fields are ignored")
	require.Equal(t, Contact{ContactID: "c 1", InstanceID: "acme", State: StateQueued, Channel: ChannelSMS, Revision: 7}, c)

	for name, body := range map[string]string{
		"not JSON":       `QUEUED`,
		"other contact":  `{"contactId":"c-2","state":"QUEUED","channel":"SMS"}`,
		"other instance": `{"instanceId":"beta","state":"QUEUED","channel":"SMS"}`,
		"bad state":      `{"state":"queued","channel":"SMS"}`,
		"bad channel":    `{"state":"QUEUED","channel":"FAX"}`,
	} {
		_, err := decodeContact("acme", "c 1", []byte(body), 7)
		require.ErrorIs(t, err, ErrBadRecord, name)
		require.NotErrorIs(t, err, ErrInvalidContact, "%s: a corrupt record is not bad input", name)
		require.ErrorContains(t, err, `acme/"c 1"`, "%s: the error names the record", name)
		require.ErrorContains(t, err, "revision 7", name)
	}
}

func benchContact() Contact {
	at := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC)
	return Contact{
		ContactID: "550e8400-e29b-41d4-a716-446655440000", InstanceID: "acme-prod", State: StateEnded,
		QueueID: "billing", Channel: ChannelVoice, EnqueuedAt: at, UpdatedAt: at, EndedAt: at,
		EndedBy: "r-42", DisconnectReason: "EMERGENCY", PreviousState: StateQueued,
	}
}

// BenchmarkContactEncode is the hot path's encoding of the record
// (appendRecord, into a reused buffer); /json is encoding/json's, which it
// replaced and matches byte for byte (TestAppendRecord).
func BenchmarkContactEncode(b *testing.B) {
	c := benchContact()
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = c.appendRecord(buf[:0])
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkContactDecode(b *testing.B) {
	c := benchContact()
	data, err := json.Marshal(c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := decodeContact(c.InstanceID, c.ContactID, data, 1); err != nil {
			b.Fatal(err)
		}
	}
}
