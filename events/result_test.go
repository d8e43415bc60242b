package events_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

func TestResultJSON(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{
			name: "Stopped",
			v: events.Stopped{
				RequestID: "r-42", ContactID: "c-1", InstanceID: "acme-prod",
				PreviousState: "QUEUED", DisconnectReason: "EMERGENCY", StoppedAt: at,
			},
			want: `{"requestId":"r-42","contactId":"c-1","instanceId":"acme-prod","previousState":"QUEUED","disconnectReason":"EMERGENCY","stoppedAt":"2026-11-20T10:00:00.123456789Z"}`,
		},
		{
			name: "Stopped without disconnectReason",
			v:    events.Stopped{RequestID: "r", ContactID: "c", InstanceID: "a", PreviousState: "CONNECTED", StoppedAt: at},
			want: `{"requestId":"r","contactId":"c","instanceId":"a","previousState":"CONNECTED","stoppedAt":"2026-11-20T10:00:00.123456789Z"}`,
		},
		{
			name: "StopFailed",
			v: events.StopFailed{
				RequestID: "r-42", ContactID: "c-1", InstanceID: "acme-prod",
				ReasonCode: events.ReasonContactNotFound, Message: "contact c-1 is not active", Retryable: false, FailedAt: at,
			},
			want: `{"requestId":"r-42","contactId":"c-1","instanceId":"acme-prod","reasonCode":"CONTACT_NOT_FOUND","message":"contact c-1 is not active","retryable":false,"failedAt":"2026-11-20T10:00:00.123456789Z"}`,
		},
		{
			name: "StopFailed of an unreadable request",
			v:    events.StopFailed{ReasonCode: events.ReasonInvalidRequest, Message: "message is not a JSON object", FailedAt: at},
			want: `{"requestId":"","contactId":"","instanceId":"","reasonCode":"INVALID_REQUEST","message":"message is not a JSON object","retryable":false,"failedAt":"2026-11-20T10:00:00.123456789Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.v)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(got))
		})
	}
}

func TestDecodeResult(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 11, 20, 10, 0, 0, 5, time.UTC)
	stopped := events.Stopped{RequestID: "r-1", ContactID: "c-1", InstanceID: "acme", PreviousState: "QUEUED", StoppedAt: at}
	failed := events.StopFailed{
		RequestID: "r-2", ContactID: "c-2", InstanceID: "acme",
		ReasonCode: events.ReasonInternalError, Message: "store unavailable", Retryable: true, FailedAt: at,
	}
	failedBare := events.StopFailed{RequestID: "r-3", ContactID: "c-3", InstanceID: "a.b", ReasonCode: events.ReasonInvalidParameter, Message: "bad", FailedAt: at}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return b
	}

	tests := []struct {
		name    string
		subject string
		body    []byte
		want    events.Result
		wantErr bool
	}{
		{name: "stopped", subject: events.StoppedSubject("acme"), body: mustJSON(stopped), want: events.Result{Stopped: &stopped}},
		{name: "failed", subject: events.StopFailedSubject("acme"), body: mustJSON(failed), want: events.Result{Failed: &failed}},
		{name: "failed on the bare subject", subject: events.StopFailedSubject("a.b"), body: mustJSON(failedBare), want: events.Result{Failed: &failedBare}},
		{
			name: "unknown fields ignored", subject: "contact.stopped.acme",
			body: []byte(`{"requestId":"r","contactId":"c","instanceId":"acme","previousState":"QUEUED","stoppedAt":"2026-11-20T10:00:00Z","new":1}`),
			want: events.Result{Stopped: &events.Stopped{RequestID: "r", ContactID: "c", InstanceID: "acme", PreviousState: "QUEUED", StoppedAt: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}},
		},
		{name: "request subject", subject: events.StopRequestedSubject("acme"), body: mustJSON(stopped), wantErr: true},
		{name: "bare stopped subject", subject: "contact.stopped", body: mustJSON(stopped), wantErr: true},
		{name: "failed prefix without dot", subject: "contact.stop.failedx", body: mustJSON(failed), wantErr: true},
		{name: "bulk completed", subject: "contact.stop.bulk.completed.acme", body: []byte(`{}`), wantErr: true},
		{name: "empty subject", subject: "", body: mustJSON(stopped), wantErr: true},
		{name: "stopped body null", subject: "contact.stopped.acme", body: []byte(`null`), wantErr: true},
		{name: "failed body array", subject: "contact.stop.failed", body: []byte(`[]`), wantErr: true},
		{name: "stopped body not JSON", subject: "contact.stopped.acme", body: []byte(`stopped`), wantErr: true},
		{name: "stopped bad time", subject: "contact.stopped.acme", body: []byte(`{"stoppedAt":"yesterday"}`), wantErr: true},
		{name: "failed wrong type", subject: "contact.stop.failed.acme", body: []byte(`{"retryable":"yes"}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.DecodeResult(tt.subject, tt.body)
			if tt.wantErr {
				require.Error(t, err)
				require.Equal(t, events.Result{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.True(t, (got.Stopped == nil) != (got.Failed == nil), "exactly one kind must be set")
		})
	}
}

func TestResultRequestID(t *testing.T) {
	t.Parallel()

	require.Equal(t, "r-1", events.Result{Stopped: &events.Stopped{RequestID: "r-1"}}.RequestID())
	require.Equal(t, "r-2", events.Result{Failed: &events.StopFailed{RequestID: "r-2"}}.RequestID())
	require.Empty(t, events.Result{}.RequestID())
}

var resultMsgIDPattern = regexp.MustCompile(`^csr-[A-Za-z0-9_-]{24}$`)

func TestResultMsgID(t *testing.T) {
	t.Parallel()

	long := strings.Repeat("x", 300) // beyond any stack buffer
	triples := [][3]string{
		{"acme", "c-1", "r-1"},
		{"acme", "c-1", "r-2"},
		{"acme", "c-2", "r-1"},
		{"acme2", "c-1", "r-1"},
		// Concatenation ambiguities.
		{"a", "bc", "r"},
		{"ab", "c", "r"},
		{"a", "b", "cr"},
		{"a", "bcr", ""},
		{"", "abc", "r"},
		{"abcr", "", ""},
		{"a:b", "c", "r"},
		{"a", "b:c", "r"},
		{"a\x00", "b", "c"},
		{"a", "\x00b", "c"},
		{"a", "b\x00", "c"},
		{"\x01a", "b", "c"},
		{"", "", ""},
		{long, "c", "r"},
		{"a", long, "r"},
		{"a", "c", long},
		{"日本", "語", "😀"},
		{"日", "本語", "😀"},
	}
	seen := make(map[string][3]string, len(triples))
	for _, tr := range triples {
		id := events.ResultMsgID(tr[0], tr[1], tr[2])
		require.Regexp(t, resultMsgIDPattern, id)
		require.Equal(t, id, events.ResultMsgID(tr[0], tr[1], tr[2]), "must be deterministic for %q", tr)
		prev, dup := seen[id]
		require.False(t, dup, "%q and %q have the same ID %s", prev, tr, id)
		seen[id] = tr
	}
}

func TestResultMsgIDStable(t *testing.T) {
	t.Parallel()

	// The derivation is part of the wire contract: results published by an
	// older worker must deduplicate against a newer one's. Changing it
	// breaks deduplication across a rolling upgrade.
	require.Equal(t, "csr-0IHMZWRLzykO20F8WQtP8h6x", events.ResultMsgID("acme-prod", "c-1", "r-42"))
}

func TestRequestMsgID(t *testing.T) {
	t.Parallel()

	require.Equal(t, "acme-prod:r-42", events.RequestMsgID("acme-prod", "r-42"))
	require.NotEqual(t, events.RequestMsgID("acme", "r-1"), events.RequestMsgID("globex", "r-1"))
}

func BenchmarkResultMsgID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = events.ResultMsgID("acme-prod", "3f1c0c7e-8a2b-4c1d-9e5f-6a7b8c9d0e1f", "r-7f3c9a2e-42")
	}
}

func BenchmarkMarshalStopped(b *testing.B) {
	s := events.Stopped{
		RequestID:        "r-7f3c9a2e-42",
		ContactID:        "3f1c0c7e-8a2b-4c1d-9e5f-6a7b8c9d0e1f",
		InstanceID:       "acme-prod",
		PreviousState:    "QUEUED",
		DisconnectReason: "CUSTOMER_HUNG_UP",
		StoppedAt:        time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(s); err != nil {
			b.Fatal(err)
		}
	}
}
