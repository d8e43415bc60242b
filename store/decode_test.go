package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sameContact compares two decoded contacts field by field, times by their
// instant and zone offset (each decoding of an offset makes its own
// *time.Location).
func sameContact(a, b Contact) bool {
	for _, p := range [][2]*time.Time{{&a.EnqueuedAt, &b.EnqueuedAt}, {&a.UpdatedAt, &b.UpdatedAt}, {&a.EndedAt, &b.EndedAt}} {
		_, ao := p[0].Zone()
		_, bo := p[1].Zone()
		if !p[0].Equal(*p[1]) || ao != bo {
			return false
		}
		*p[0], *p[1] = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(a, b)
}

// decodeBoth decodes data with unmarshalContact and with json.Unmarshal.
func decodeBoth(data []byte) (fast, slow Contact, fastErr, slowErr error) {
	fastErr = unmarshalContact(data, &fast)
	slowErr = json.Unmarshal(data, &slow)
	return
}

func TestUnmarshalContactMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC)
	full := Contact{ContactID: "c/1 é.x", InstanceID: "acme", State: StateEnded, QueueID: "q\"1", Channel: ChannelChat,
		EnqueuedAt: at, UpdatedAt: at.Add(time.Second), EndedAt: at.Add(time.Second), EndedBy: "r-1", EndedBySeq: 18446744073709551615,
		DisconnectReason: "<EMERGENCY>", PreviousState: StateQueued}
	canonical := full.appendRecord(nil)
	var c Contact
	require.True(t, fastContact(canonical[:0:0], &c) == false)
	plain := full
	plain.QueueID, plain.DisconnectReason = "q1", "EMERGENCY" // no escapes: the fast path
	require.True(t, fastContact(plain.appendRecord(nil), &c), "%s", plain.appendRecord(nil))
	for _, data := range []string{
		string(canonical),
		string(plain.appendRecord(nil)),
		`{"contactId":"c-1","instanceId":"acme","state":"QUEUED","channel":"VOICE","updatedAt":"2026-11-20T10:00:00Z"}`,
		`{}`,
		`{"ContactId":"c-1"}`,
		`{"contactId":"c-1","contactId":"c-2"}`,
		`{"contactId":"c-1", "state":"QUEUED"}`,
		`{"endedBySeq":0}`, `{"endedBySeq":01}`, `{"endedBySeq":1e3}`, `{"endedBySeq":-1}`, `{"endedBySeq":18446744073709551616}`,
		`{"endedAt":"2026-11-20T10:00:00.Z"}`, `{"endedAt":"2026-11-20T10:00:00+01:00","updatedAt":"2026-11-20T10:00:00.5-07:30"}`, `{"endedAt":"2026-11-20 10:00:00Z"}`, `{"endedAt":null}`,
		`{"contactId":"a\u00e9"}`, "{\"contactId\":\"\xff\"}", `{"contactId":"a"}}`, `{"contactId":"a",}`, `{"unknown":"x"}`,
		`{"contactId":"a","extra":{"nested":[1,2]}}`, `not json`, `{"contactId":"` + strings.Repeat("x", 300) + `"}`,
	} {
		fast, slow, fe, se := decodeBoth([]byte(data))
		require.Equal(t, se == nil, fe == nil, "%s: errors %v / %v", data, fe, se)
		if se == nil {
			require.True(t, sameContact(fast, slow), "%s:\n%+v\n%+v", data, fast, slow)
		}
	}
}

func FuzzUnmarshalContact(f *testing.F) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	f.Add(string((&Contact{ContactID: "c-1", InstanceID: "acme", State: StateQueued, Channel: ChannelVoice, UpdatedAt: at}).appendRecord(nil)))
	f.Add(string((&Contact{ContactID: "c-1", InstanceID: "acme", State: StateEnded, Channel: ChannelVoice, UpdatedAt: at,
		EndedAt: at, EndedBy: "r", EndedBySeq: 7, PreviousState: StateQueued}).appendRecord(nil)))
	f.Add(`{"endedBySeq":12,"contactId":"x"}`)
	f.Fuzz(func(t *testing.T, data string) {
		fast, slow, fe, se := decodeBoth([]byte(data))
		if (fe == nil) != (se == nil) {
			t.Fatalf("%q: errors %v / %v", data, fe, se)
		}
		if se == nil && !sameContact(fast, slow) {
			t.Fatalf("%q:\n%+v\n%+v", data, fast, slow)
		}
	})
}
