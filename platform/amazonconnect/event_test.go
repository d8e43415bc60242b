package amazonconnect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/store"
)

// The ids of the guide's samples (testdata/README.md).
const (
	sampleConnectInstance = "12345678-1234-1234-1234-123456789012"
	sampleContact         = "11111111-1111-1111-1111-111111111111"
	sampleQueue           = "12345678-1234-1234-1234-123456789012"
)

// readSample reads testdata/name.
func readSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

// editSample returns testdata/name with edit applied to its decoded JSON
// (the envelope; "detail" is a map[string]any inside it).
func editSample(t *testing.T, name string, edit func(ev, detail map[string]any)) []byte {
	t.Helper()
	var ev map[string]any
	require.NoError(t, json.Unmarshal(readSample(t, name), &ev))
	edit(ev, ev["detail"].(map[string]any))
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	return data
}

func change(t *testing.T, data []byte) EventChange {
	t.Helper()
	ev, err := DecodeEvent(data)
	require.NoError(t, err)
	ch, err := ev.Change()
	require.NoError(t, err)
	return ch
}

func utcTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return at.UTC()
}

// TestEventSamples maps every sample the guide publishes.
func TestEventSamples(t *testing.T) {
	t.Parallel()
	envelope := utcTime(t, "2021-08-04T17:43:48Z")
	for _, tc := range []struct {
		file string
		want EventChange
	}{{
		file: "queued.json",
		want: EventChange{Applies: true, ConnectInstanceID: sampleConnectInstance, Contact: store.ContactEvent{
			ContactID: sampleContact, State: store.StateQueued, Channel: store.ChannelVoice,
			QueueID: sampleQueue, EnqueuedAt: utcTime(t, "2021-08-04T17:29:04Z"), At: envelope}},
	}, {
		file: "connected-to-agent.json",
		want: EventChange{Applies: true, ConnectInstanceID: sampleConnectInstance, Contact: store.ContactEvent{
			ContactID: sampleContact, State: store.StateConnected, Channel: store.ChannelVoice,
			QueueID: sampleQueue, EnqueuedAt: utcTime(t, "2021-08-04T17:29:04Z"), At: envelope}},
	}, {
		// "channel": "Voice", no queueInfo (an outbound call).
		file: "disconnected.json",
		want: EventChange{Applies: true, ConnectInstanceID: sampleConnectInstance, Contact: store.ContactEvent{
			ContactID: sampleContact, State: store.StateEnded, Channel: store.ChannelVoice,
			DisconnectedAt: utcTime(t, "2021-08-04T17:18:37Z"), At: envelope}},
	}, {
		// PascalCase member names.
		file: "connected-to-agent-routing-criteria.json",
		want: EventChange{Applies: true, ConnectInstanceID: sampleConnectInstance, Contact: store.ContactEvent{
			ContactID: "12345678-1234-1234-1234-123456789012", State: store.StateConnected, Channel: store.ChannelVoice,
			QueueID: sampleQueue, EnqueuedAt: utcTime(t, "2021-08-04T17:29:04Z"), At: envelope}},
	}, {
		file: "contact-data-updated.json",
		want: EventChange{},
	}} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, change(t, readSample(t, tc.file)))
		})
	}
}

// TestEventDecodesEnvelope checks the envelope and detail fields as the
// guide's sample spells them.
func TestEventDecodesEnvelope(t *testing.T) {
	t.Parallel()
	ev, err := DecodeEvent(readSample(t, "disconnected.json"))
	require.NoError(t, err)
	require.Equal(t, "0", ev.Version)
	require.Equal(t, "d15c0e1e-0000-4000-8000-000000000001", ev.ID)
	require.Equal(t, "111122223333", ev.Account)
	require.Equal(t, "us-west-2", ev.Region)
	require.Equal(t, []string{"arn:aws:...", "contactArn", "instanceArn"}, ev.Resources)
	require.Equal(t, EventDisconnected, ev.Detail.EventType)
	require.Equal(t, "OUTBOUND", ev.Detail.InitiationMethod)
	require.Equal(t, "11111111-2222-3333-4444-555555555555", ev.Detail.InitialContactID)
	require.Equal(t, "2021-08-04T17:17:55.000Z", ev.Detail.ConnectedToSystemTimestamp)
	require.Equal(t, "arn", ev.Detail.AgentInfo.AgentArn)
	require.Nil(t, ev.Detail.QueueInfo)

	ev, err = DecodeEvent(readSample(t, "contact-data-updated.json"))
	require.NoError(t, err)
	require.Equal(t, []string{"ContactLens.ConversationalAnalytics.Configuration"}, ev.Detail.UpdatedProperties)
	require.Equal(t, "STANDARD", ev.Detail.QueueInfo.QueueType)
}

// TestEventStates maps every event type that changes a contact's state,
// and nothing else.
func TestEventStates(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]store.State{
		EventInitiated: store.StateInitiated, EventConnectedToSystem: store.StateInitiated,
		EventQueued: store.StateQueued, EventConnectedToAgent: store.StateConnected, EventDisconnected: store.StateEnded,
	} {
		ch := change(t, editSample(t, "queued.json", func(_, d map[string]any) { d["eventType"] = typ }))
		require.True(t, ch.Applies, typ)
		require.Equal(t, want, ch.Contact.State, typ)
	}
	// Types that carry no state change are accepted whatever else they
	// hold: the guide adds types, and fields, over time.
	for _, typ := range []string{EventContactDataUpdated, EventCompleted, EventPaused, EventResumed, "AMD_DISABLED", "WEBRTC_API", "SOMETHING_NEW"} {
		ch := change(t, editSample(t, "queued.json", func(_, d map[string]any) {
			d["eventType"] = typ
			d["channel"] = "HOLOGRAM"
			delete(d, "instanceArn")
		}))
		require.Equal(t, EventChange{}, ch, typ)
	}
}

func TestEventChannels(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]store.Channel{
		"VOICE": store.ChannelVoice, "Voice": store.ChannelVoice, "CHAT": store.ChannelChat,
		"TASK": store.ChannelWorkItem, "task": store.ChannelWorkItem, "EMAIL": store.ChannelEmail,
	} {
		ch := change(t, editSample(t, "queued.json", func(_, d map[string]any) { d["channel"] = in }))
		require.Equal(t, want, ch.Contact.Channel, in)
	}
}

// TestEventTime: the envelope's whole second orders events; the detail's
// own timestamp of the transition refines it within that second only.
func TestEventTime(t *testing.T) {
	t.Parallel()
	at := func(envelope, transition string) time.Time { return eventTime(utcTime(t, envelope), transition) }
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48.250Z"), at("2021-08-04T17:43:48Z", "2021-08-04T17:43:48.250Z"))
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), at("2021-08-04T17:43:48Z", "2021-08-04T17:43:47.999Z"), "an earlier second")
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), at("2021-08-04T17:43:48Z", "2021-08-04T17:43:49.000Z"), "a later second")
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), at("2021-08-04T17:43:48Z", "1970-01-01T00:00:00.001Z"), "the guide's placeholder")
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), at("2021-08-04T17:43:48Z", ""))
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), at("2021-08-04T17:43:48Z", "yesterday"))
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48.5Z"), at("2021-08-04T17:43:48.5Z", "2021-08-04T17:43:48.250Z"), "a precise envelope time is kept")
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48.250Z"), at("2021-08-04T19:43:48+02:00", "2021-08-04T17:43:48.250Z"), "zones")

	// Each event type refines with its own transition's timestamp.
	for typ, edit := range map[string]func(d map[string]any){
		EventInitiated:         func(d map[string]any) { d["initiationTimestamp"] = "2021-08-04T17:43:48.100Z" },
		EventConnectedToSystem: func(d map[string]any) { d["connectedToSystemTimestamp"] = "2021-08-04T17:43:48.100Z" },
		EventQueued: func(d map[string]any) {
			d["queueInfo"].(map[string]any)["enqueueTimestamp"] = "2021-08-04T17:43:48.100Z"
		},
		EventConnectedToAgent: func(d map[string]any) {
			d["agentInfo"] = map[string]any{"agentArn": "arn", "connectedToAgentTimestamp": "2021-08-04T17:43:48.100Z"}
		},
		EventDisconnected: func(d map[string]any) { d["disconnectTimestamp"] = "2021-08-04T17:43:48.100Z" },
	} {
		ch := change(t, editSample(t, "queued.json", func(_, d map[string]any) {
			d["eventType"] = typ
			edit(d)
		}))
		require.Equal(t, utcTime(t, "2021-08-04T17:43:48.100Z"), ch.Contact.At, typ)
	}
}

// TestEventQueueOfOtherTypes: the queue of an event other than QUEUED is
// recorded when it can be read, and otherwise ignored.
func TestEventQueueOfOtherTypes(t *testing.T) {
	t.Parallel()
	ch := change(t, editSample(t, "connected-to-agent.json", func(_, d map[string]any) {
		d["queueInfo"] = map[string]any{"queueArn": "arn", "queueType": "type"} // as an older version of the guide had it
	}))
	require.Equal(t, store.StateConnected, ch.Contact.State)
	require.Empty(t, ch.Contact.QueueID)
	ch = change(t, editSample(t, "connected-to-agent.json", func(_, d map[string]any) {
		d["queueInfo"].(map[string]any)["enqueueTimestamp"] = "soon"
	}))
	require.Equal(t, sampleQueue, ch.Contact.QueueID)
	require.True(t, ch.Contact.EnqueuedAt.IsZero())
}

// TestEventPlaceholderTimes: the guide's "not yet" timestamp
// (1970-01-01T00:00:00.001Z) is no time at all.
func TestEventPlaceholderTimes(t *testing.T) {
	t.Parallel()
	ch := change(t, editSample(t, "queued.json", func(_, d map[string]any) {
		d["queueInfo"].(map[string]any)["enqueueTimestamp"] = "1970-01-01T00:00:00.001Z"
	}))
	require.Equal(t, sampleQueue, ch.Contact.QueueID)
	require.True(t, ch.Contact.EnqueuedAt.IsZero())
	ch = change(t, editSample(t, "disconnected.json", func(_, d map[string]any) {
		d["disconnectTimestamp"] = "1970-01-01T00:00:00.001Z"
	}))
	require.True(t, ch.Contact.DisconnectedAt.IsZero(), "the store ends it at the event's time")
	require.Equal(t, utcTime(t, "2021-08-04T17:43:48Z"), ch.Contact.At)
}

// TestEventInvalid: what can never be applied is refused with the field
// named.
func TestEventInvalid(t *testing.T) {
	t.Parallel()
	edit := func(name string, f func(ev, d map[string]any)) []byte { return editSample(t, name, f) }
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"not JSON", "not an EventBridge event in JSON", []byte(`{"version":`)},
		{"not an object", "not an EventBridge event in JSON", []byte(`[1,2]`)},
		{"two events", "not an EventBridge event in JSON", append(readSample(t, "queued.json"), readSample(t, "queued.json")...)},
		{"another source", `source "aws.ec2"`, edit("queued.json", func(ev, _ map[string]any) { ev["source"] = "aws.ec2" })},
		{"another detail-type", `detail-type "Amazon Connect Agent Event"`, edit("queued.json", func(ev, _ map[string]any) {
			ev["detail-type"] = "Amazon Connect Agent Event"
		})},
		{"no eventType", "detail.eventType is missing", edit("queued.json", func(_, d map[string]any) { delete(d, "eventType") })},
		{"no contactId", "detail.contactId is missing", edit("queued.json", func(_, d map[string]any) { delete(d, "contactId") })},
		{"no instanceArn", "detail.instanceArn", edit("queued.json", func(_, d map[string]any) { delete(d, "instanceArn") })},
		{"a queue ARN for the instance", "detail.instanceArn", edit("queued.json", func(_, d map[string]any) {
			d["instanceArn"] = "arn:aws:connect:us-west-2:123456789012:instance/abc/queue/def"
		})},
		{"an unknown channel", `detail.channel "SMS"`, edit("queued.json", func(_, d map[string]any) { d["channel"] = "SMS" })},
		{"no time", `time ""`, edit("queued.json", func(ev, _ map[string]any) { delete(ev, "time") })},
		{"a bad time", `time "2021-08-04 17:43:48"`, edit("queued.json", func(ev, _ map[string]any) { ev["time"] = "2021-08-04 17:43:48" })},
		{"a queued contact without a queue", "detail.queueInfo.queueArn is missing", edit("queued.json", func(_, d map[string]any) {
			delete(d, "queueInfo")
		})},
		{"a queued contact in a bad queue", `detail.queueInfo.queueArn "arn"`, edit("queued.json", func(_, d map[string]any) {
			d["queueInfo"].(map[string]any)["queueArn"] = "arn"
		})},
		{"a queued contact enqueued at no time", "detail.queueInfo.enqueueTimestamp", edit("queued.json", func(_, d map[string]any) {
			d["queueInfo"].(map[string]any)["enqueueTimestamp"] = "17:29"
		})},
		{"a bad disconnectTimestamp", "detail.disconnectTimestamp", edit("disconnected.json", func(_, d map[string]any) {
			d["disconnectTimestamp"] = "later"
		})},
		{"a field of the wrong type", "not an EventBridge event in JSON", edit("queued.json", func(_, d map[string]any) { d["queueInfo"] = "Basic" })},
	} {
		ev, err := DecodeEvent(tc.data)
		if err == nil {
			_, err = ev.Change()
		}
		require.ErrorIs(t, err, ErrEventInvalid, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}

func TestEventResourceID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		arn, kind, want string
	}{
		{"arn:aws:connect:us-west-2:123456789012:instance/abc-123", "instance", "abc-123"},
		{"arn:aws::connect:us-west-2:123456789012:instance/abc-123", "instance", "abc-123"},
		{"arn:aws-us-gov:connect:us-gov-west-1:123456789012:instance/abc-123", "instance", "abc-123"},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/q-1", "queue", "q-1"},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/q-1", "instance", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/agent/a-1", "queue", "agent/a-1"},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/agent", "queue", "agent"},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/other/a-1", "queue", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/queue/", "queue", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance//queue/q-1", "queue", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc/agent/a-1", "queue", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/abc", "queue", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/", "instance", ""},
		{"arn:aws:connect:us-west-2:123456789012:instance/a.b", "instance", ""},
		{"arn:aws:connect:us-west-2:123456789012:queue/abc", "queue", ""},
		{"instance/abc", "instance", ""},
		{"arn", "queue", ""},
		{"", "instance", ""},
	} {
		got, ok := eventResourceID(tc.arn, tc.kind)
		require.Equal(t, tc.want, got, tc.arn)
		require.Equal(t, tc.want != "", ok, tc.arn)
	}
}
