package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

// FuzzDecodeStopRequest checks the decoder's promises on any input: its
// canonical fast path answers as encoding/json does; it never
// panics; a failure is a *ValidationError with one of the two validation
// codes and every echoed field valid UTF-8; and an accepted request is valid,
// and survives encoding with json.Marshal and decoding again unchanged.
//
// Interesting inputs are kept in testdata/fuzz/FuzzDecodeStopRequest.
func FuzzDecodeStopRequest(f *testing.F) {
	for _, seed := range []string{
		`{"requestId":"r-42","contactId":"c-1","instanceId":"acme-prod","disconnectReason":"EMERGENCY","securityUser":"tok"}`,
		`{"contactId":"c-1","instanceId":"acme-prod"}`,
		`{"contactId":"日本語 😀 a/b.c *>","instanceId":"a"}`,
		`{"contactId":"c","instanceId":"a","requestId":null,"extra":[1,{"x":true}]}`,
		`{"contactId":"c\u002d1\n\"","instanceId":"a","requestId":"\ud83d\ude00"}`,
		`{"contactId":"c\ud800","instanceId":"a"}`,
		`{"contactId":5,"instanceId":"a","requestId":"r"}`,
		`{"contactId":{},"instanceId":[],"requestId":true,"disconnectReason":1,"securityUser":false}`,
		`{"contactId":"c","instanceId":"a","requestId":""}`,
		`{"contactId":"c","instanceId":"a.b"}`,
		`{}`,
		`{"contactId":"c","instanceId":"a"}x`,
		` { "contactId" : "c" , "instanceId":"a" ,"requestId":"" } `,
		`{"contactId":"c","instanceId":"a","contactId":"d"}`,
		`{"ContactId":"c","instanceId":"a"}`,
		`{"contactId":"c","instanceId":"a",}`,
		`{"contactId":"c" "instanceId":"a"}`,
		`{"contactId":"c","instanceId":"a","disconnectReason":"","securityUser":""}`,
		"{\"contactId\":\"c\u00e9\",\"instanceId\":\"a\"}",
		"{\"contactId\":\"c\t\",\"instanceId\":\"a\"}",
		`{} {}`,
		`[]`,
		`"str"`,
		`5`,
		`null`,
		``,
		` `,
		`not json`,
		`{`,
		"\xff\xfe\x00\x01",
		"{\"contactId\":\"c\xff\",\"instanceId\":\"a\"}",
		"\xef\xbb\xbf{\"contactId\":\"c\",\"instanceId\":\"a\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Add(bytes.Repeat([]byte("x"), 70<<10))

	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := events.DecodeStopRequest(data)
		// The canonical fast path and encoding/json give the same answer.
		slowReq, slowErr := events.DecodeStopRequestJSON(data)
		require.Equal(t, slowReq, req, "the fast path and encoding/json decode %q differently", data)
		require.Equal(t, slowErr, err, "the fast path and encoding/json judge %q differently", data)
		for _, s := range []string{req.RequestID, req.ContactID, req.InstanceID, req.DisconnectReason, req.SecurityUser} {
			require.True(t, utf8.ValidString(s), "field %q is not valid UTF-8", s)
		}
		if err != nil {
			var ve *events.ValidationError
			require.True(t, errors.As(err, &ve), "want *events.ValidationError, got %T: %v", err, err)
			require.Contains(t, []events.ReasonCode{events.ReasonInvalidRequest, events.ReasonInvalidParameter}, ve.Code)
			require.NotEmpty(t, ve.Reason)
			if len(data) > events.MaxMessageSize {
				require.Equal(t, events.ReasonInvalidRequest, ve.Code)
				require.Equal(t, events.StopRequest{}, req)
			}
			return
		}

		require.LessOrEqual(t, len(data), events.MaxMessageSize)
		require.NoError(t, req.Validate())
		require.NoError(t, req.CheckSubject(events.StopRequestedSubject(req.InstanceID)))

		enc, err := json.Marshal(req)
		require.NoError(t, err)
		again, err := events.DecodeStopRequest(enc)
		require.NoError(t, err, "re-encoded: %s", enc)
		require.Equal(t, req, again)
	})
}
