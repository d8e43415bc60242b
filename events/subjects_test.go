package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

func TestSubjectBuilders(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		got  string
		want string
	}{
		{"StopRequestedSubject", events.StopRequestedSubject("acme-prod"), "contact.stop.requested.acme-prod"},
		{"StoppedSubject", events.StoppedSubject("acme-prod"), "contact.stopped.acme-prod"},
		{"StopFailedSubject", events.StopFailedSubject("acme-prod"), "contact.stop.failed.acme-prod"},
		{"StopFailedSubject empty", events.StopFailedSubject(""), "contact.stop.failed"},
		{"StopFailedSubject with dots", events.StopFailedSubject("a.b"), "contact.stop.failed"},
		{"StopFailedSubject wildcard", events.StopFailedSubject(">"), "contact.stop.failed"},
		{"StopFailedSubject too long", events.StopFailedSubject(string(make([]byte, 101))), "contact.stop.failed"},
		{"DeadLetterSubject", events.DeadLetterSubject("acme-prod"), "contact.stop.deadletter.acme-prod"},
		{"DeadLetterSubject empty", events.DeadLetterSubject(""), "contact.stop.deadletter"},
		{"DeadLetterSubject wildcard", events.DeadLetterSubject("*"), "contact.stop.deadletter"},
		{"constant SubjectStopRequested", events.SubjectStopRequested, "contact.stop.requested"},
		{"constant SubjectStopped", events.SubjectStopped, "contact.stopped"},
		{"constant SubjectStopFailed", events.SubjectStopFailed, "contact.stop.failed"},
		{"constant SubjectBulkRequested", events.SubjectBulkRequested, "contact.stop.bulk.requested"},
		{"constant SubjectBulkCompleted", events.SubjectBulkCompleted, "contact.stop.bulk.completed"},
		{"constant SubjectEmergencyBroadcast", events.SubjectEmergencyBroadcast, "emergency.broadcast"},
		{"constant SubjectDeadLetter", events.SubjectDeadLetter, "contact.stop.deadletter"},
		{"constant HeaderMsgID", events.HeaderMsgID, "Nats-Msg-Id"},
		{"constant HeaderTraceparent", events.HeaderTraceparent, "traceparent"},
		{"constant HeaderCorrelationID", events.HeaderCorrelationID, "Correlation-Id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.got)
		})
	}
}

func TestSubjectInstance(t *testing.T) {
	t.Parallel()

	tests := []struct {
		subject  string
		wantID   string
		wantFrom bool
	}{
		{"contact.stop.requested.acme", "acme", true},
		{"contact.stop.requested.acme-prod_01", "acme-prod_01", true},
		{"contact.stop.requested.a.b", "a.b", true},
		{"contact.stop.requested.", "", true},
		{"contact.stop.requested", "", false},
		{"contact.stop.requestedacme", "", false},
		{"contact.stop.bulk.requested", "", false},
		{"contact.stopped.acme", "", false},
		{"xcontact.stop.requested.acme", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			t.Parallel()
			id, ok := events.SubjectInstance(tt.subject)
			require.Equal(t, tt.wantID, id)
			require.Equal(t, tt.wantFrom, ok)
		})
	}
}

func TestSubjectInstanceOfBuiltSubject(t *testing.T) {
	t.Parallel()

	id, ok := events.SubjectInstance(events.StopRequestedSubject("acme-prod"))
	require.True(t, ok)
	require.Equal(t, "acme-prod", id)
}
