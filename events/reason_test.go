package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

func TestReasonCodes(t *testing.T) {
	t.Parallel()

	require.Equal(t, []events.ReasonCode{
		"INVALID_REQUEST",
		"INVALID_PARAMETER",
		"RESOURCE_NOT_FOUND",
		"CONTACT_NOT_FOUND",
		"INVALID_SECURITY_USER",
		"UNAUTHORIZED",
		"INTERNAL_ERROR",
	}, events.ReasonCodes())

	codes := events.ReasonCodes()
	codes[0] = "CHANGED"
	require.Equal(t, events.ReasonInvalidRequest, events.ReasonCodes()[0], "ReasonCodes must return a new slice")
}

func TestReasonCodeRetryableAndValid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		code          events.ReasonCode
		wantValid     bool
		wantRetryable bool
	}{
		{events.ReasonInvalidRequest, true, false},
		{events.ReasonInvalidParameter, true, false},
		{events.ReasonResourceNotFound, true, false},
		{events.ReasonContactNotFound, true, false},
		{events.ReasonInvalidSecurityUser, true, false},
		{events.ReasonUnauthorized, true, false},
		{events.ReasonInternalError, true, true},
		{"", false, false},
		{"internal_error", false, false},
		{"TIMEOUT", false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.wantValid, tt.code.Valid())
			require.Equal(t, tt.wantRetryable, tt.code.Retryable())
		})
	}
}
