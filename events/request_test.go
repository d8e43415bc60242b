package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
)

// obj encodes fields as one JSON object, in order, with json.Marshal for
// each value (so a value may be any JSON value, including a json.RawMessage).
func obj(t testing.TB, kv ...any) []byte {
	t.Helper()
	require.Zero(t, len(kv)%2, "obj needs key/value pairs")
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(kv[i])
		require.NoError(t, err)
		v, err := json.Marshal(kv[i+1])
		require.NoError(t, err)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// padTo pads a valid request with an unknown field so that it is exactly n
// bytes long.
func padTo(t testing.TB, n int) []byte {
	t.Helper()
	base := obj(t, "contactId", "c-1", "instanceId", "acme", "pad", "")
	require.Less(t, len(base), n)
	b := append(slices.Clone(base[:len(base)-2]), strings.Repeat("x", n-len(base))...)
	b = append(b, `"}`...)
	require.Len(t, b, n)
	return b
}

func requireValidationError(t *testing.T, err error, code events.ReasonCode, field string) *events.ValidationError {
	t.Helper()
	require.Error(t, err)
	var ve *events.ValidationError
	require.True(t, errors.As(err, &ve), "want *events.ValidationError, got %T: %v", err, err)
	require.Equal(t, code, ve.Code, "code (error: %v)", err)
	require.Equal(t, field, ve.Field, "field (error: %v)", err)
	require.NotEmpty(t, ve.Reason)
	return ve
}

func TestDecodeStopRequestAccepts(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		body []byte
		want events.StopRequest
	}{
		{
			name: "minimal",
			body: []byte(`{"contactId":"c-1","instanceId":"acme-prod"}`),
			want: events.StopRequest{ContactID: "c-1", InstanceID: "acme-prod"},
		},
		{
			name: "every field",
			body: []byte(`{"requestId":"r-42","contactId":"c-1","instanceId":"acme-prod","disconnectReason":"EMERGENCY","securityUser":"tok"}`),
			want: events.StopRequest{RequestID: "r-42", ContactID: "c-1", InstanceID: "acme-prod", DisconnectReason: "EMERGENCY", SecurityUser: "tok"},
		},
		{
			name: "whitespace around and inside",
			body: []byte(" \t\r\n{ \"contactId\" : \"c\" ,\n \"instanceId\":\"a\" }\n "),
			want: events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{
			name: "unknown fields are ignored",
			body: []byte(`{"contactId":"c","instanceId":"a","extra":{"x":[1,2,{"y":null}]},"n":5,"b":true,"s":"\ud800"}`),
			want: events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{
			name: "null optional fields are absent",
			body: []byte(`{"contactId":"c","instanceId":"a","requestId":null,"disconnectReason":null,"securityUser":null}`),
			want: events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{
			name: "empty securityUser is not checked here",
			body: []byte(`{"contactId":"c","instanceId":"a","securityUser":""}`),
			want: events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{
			name: "escapes are decoded",
			body: []byte(`{"contactId":"c\u002d1\t\"q\"\\\/","instanceId":"a","requestId":"\ud83d\ude00"}`),
			want: events.StopRequest{ContactID: "c-1\t\"q\"\\/", InstanceID: "a", RequestID: "😀"},
		},
		{
			name: "surrogate pairs in upper case, twice",
			body: []byte(`{"contactId":"a\uD83D\uDE00\ud83d\ude00b","instanceId":"a"}`),
			want: events.StopRequest{ContactID: "a😀😀b", InstanceID: "a"},
		},
		{
			name: "escaped backslash before a u",
			body: []byte(`{"contactId":"\\ud800","instanceId":"a"}`),
			want: events.StopRequest{ContactID: `\ud800`, InstanceID: "a"},
		},
		{
			name: "last of duplicate fields counts",
			body: []byte(`{"contactId":5,"contactId":"c-2","instanceId":"a"}`),
			want: events.StopRequest{ContactID: "c-2", InstanceID: "a"},
		},
		{
			// encoding/json's matching; documented on DecodeStopRequest.
			name: "field names in another case",
			body: []byte(`{"ContactID":"c","INSTANCEID":"a"}`),
			want: events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{
			name: "instanceId of every allowed character",
			body: obj(t, "contactId", "c", "instanceId", "AZaz09_-"),
			want: events.StopRequest{ContactID: "c", InstanceID: "AZaz09_-"},
		},
		{
			name: "instanceId of 100 characters",
			body: obj(t, "contactId", "c", "instanceId", strings.Repeat("i", 100)),
			want: events.StopRequest{ContactID: "c", InstanceID: strings.Repeat("i", 100)},
		},
		{
			name: "contactId of 256 ASCII characters",
			body: obj(t, "contactId", strings.Repeat("c", 256), "instanceId", "a"),
			want: events.StopRequest{ContactID: strings.Repeat("c", 256), InstanceID: "a"},
		},
		{
			name: "contactId of 256 three-byte characters",
			body: obj(t, "contactId", strings.Repeat("日", 256), "instanceId", "a"),
			want: events.StopRequest{ContactID: strings.Repeat("日", 256), InstanceID: "a"},
		},
		{
			name: "contactId of 256 four-byte characters",
			body: obj(t, "contactId", strings.Repeat("😀", 256), "instanceId", "a"),
			want: events.StopRequest{ContactID: strings.Repeat("😀", 256), InstanceID: "a"},
		},
		{
			name: "requestId of 128 two-byte characters",
			body: obj(t, "contactId", "c", "instanceId", "a", "requestId", strings.Repeat("é", 128)),
			want: events.StopRequest{ContactID: "c", InstanceID: "a", RequestID: strings.Repeat("é", 128)},
		},
		{
			name: "requestId of one character",
			body: obj(t, "contactId", "c", "instanceId", "a", "requestId", "r"),
			want: events.StopRequest{ContactID: "c", InstanceID: "a", RequestID: "r"},
		},
		{
			name: "disconnectReason of 128 four-byte characters",
			body: obj(t, "contactId", "c", "instanceId", "a", "disconnectReason", strings.Repeat("😀", 128)),
			want: events.StopRequest{ContactID: "c", InstanceID: "a", DisconnectReason: strings.Repeat("😀", 128)},
		},
		{
			name: "securityUser of 8 KiB",
			body: obj(t, "contactId", "c", "instanceId", "a", "securityUser", strings.Repeat("t", 8<<10)),
			want: events.StopRequest{ContactID: "c", InstanceID: "a", SecurityUser: strings.Repeat("t", 8<<10)},
		},
		{
			name: "body of exactly MaxMessageSize bytes",
			body: padTo(t, events.MaxMessageSize),
			want: events.StopRequest{ContactID: "c-1", InstanceID: "acme"},
		},
	}
	for _, contactID := range []string{
		".", "*", ">", "a/b", "with space", "日本語", "😀", "👩‍👩‍👧", "a.b.c", "c.>", "{}", `"`, "\\", "<&>",
		"0", "550e8400-e29b-41d4-a716-446655440000", " leading and trailing ", "\x00\t\n", "\u2028", "\uFFFD",
	} {
		tests = append(tests, struct {
			name string
			body []byte
			want events.StopRequest
		}{
			name: "contactId " + contactID,
			body: obj(t, "contactId", contactID, "instanceId", "acme"),
			want: events.StopRequest{ContactID: contactID, InstanceID: "acme"},
		})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.DecodeStopRequest(tt.body)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.NoError(t, got.Validate())
		})
	}
}

func TestDecodeStopRequestRejects(t *testing.T) {
	t.Parallel()

	const (
		invalidRequest   = events.ReasonInvalidRequest
		invalidParameter = events.ReasonInvalidParameter
	)
	tests := []struct {
		name      string
		body      []byte
		wantCode  events.ReasonCode
		wantField string
		// wantEcho, when set, is what must still have been read.
		wantEcho *events.StopRequest
	}{
		// The message as a whole.
		{name: "nil body", body: nil, wantCode: invalidRequest},
		{name: "empty body", body: []byte{}, wantCode: invalidRequest},
		{name: "only whitespace", body: []byte(" \n\t "), wantCode: invalidRequest},
		{name: "not JSON", body: []byte("stop contact c-1 please"), wantCode: invalidRequest},
		{name: "array", body: []byte(`[]`), wantCode: invalidRequest},
		{name: "array of a request", body: []byte(`[{"contactId":"c","instanceId":"a"}]`), wantCode: invalidRequest},
		{name: "string", body: []byte(`"str"`), wantCode: invalidRequest},
		{name: "number", body: []byte(`5`), wantCode: invalidRequest},
		{name: "true", body: []byte(`true`), wantCode: invalidRequest},
		{name: "null", body: []byte(`null`), wantCode: invalidRequest},
		{name: "null with whitespace", body: []byte(" null "), wantCode: invalidRequest},
		{name: "binary", body: []byte{0xff, 0xfe, 0x00, 0x01, 0x80}, wantCode: invalidRequest},
		{name: "byte order mark", body: []byte("\xef\xbb\xbf{\"contactId\":\"c\",\"instanceId\":\"a\"}"), wantCode: invalidRequest},
		{name: "unterminated object", body: []byte(`{"contactId":"c"`), wantCode: invalidRequest},
		{name: "lone brace", body: []byte(`{`), wantCode: invalidRequest},
		{name: "missing value", body: []byte(`{"contactId":}`), wantCode: invalidRequest},
		{name: "trailing comma", body: []byte(`{"contactId":"c","instanceId":"a",}`), wantCode: invalidRequest},
		{name: "single quotes", body: []byte(`{'contactId':'c'}`), wantCode: invalidRequest},
		{name: "raw control character in string", body: []byte("{\"contactId\":\"a\nb\",\"instanceId\":\"a\"}"), wantCode: invalidRequest},
		{name: "bad escape", body: []byte(`{"contactId":"\x41","instanceId":"a"}`), wantCode: invalidRequest},
		{name: "trailing garbage", body: []byte(`{"contactId":"c","instanceId":"a"}x`), wantCode: invalidRequest},
		{name: "two objects", body: []byte(`{} {}`), wantCode: invalidRequest},
		{name: "two requests", body: []byte(`{"contactId":"c","instanceId":"a"}{"contactId":"d","instanceId":"a"}`), wantCode: invalidRequest},
		{name: "closing bracket after object", body: []byte(`{"contactId":"c","instanceId":"a"}]`), wantCode: invalidRequest},
		{name: "70 KiB body", body: bytes.Repeat([]byte("x"), 70<<10), wantCode: invalidRequest, wantEcho: &events.StopRequest{}},
		{name: "70 KiB valid request", body: padTo(t, 70<<10), wantCode: invalidRequest, wantEcho: &events.StopRequest{}},
		{name: "body of MaxMessageSize+1 bytes", body: padTo(t, events.MaxMessageSize+1), wantCode: invalidRequest, wantEcho: &events.StopRequest{}},
		{
			name: "invalid UTF-8 in contactId", body: []byte("{\"contactId\":\"c\xff\",\"instanceId\":\"a\",\"requestId\":\"r\"}"),
			wantCode: invalidRequest, wantEcho: &events.StopRequest{ContactID: "c\uFFFD", InstanceID: "a", RequestID: "r"},
		},
		{
			name: "invalid UTF-8 in an unknown field", body: []byte("{\"contactId\":\"c\",\"instanceId\":\"a\",\"x\":\"\xc3\"}"),
			wantCode: invalidRequest, wantEcho: &events.StopRequest{ContactID: "c", InstanceID: "a"},
		},
		{name: "overlong UTF-8 encoding", body: []byte("{\"contactId\":\"\xc0\xaf\",\"instanceId\":\"a\"}"), wantCode: invalidRequest},
		{name: "UTF-8 encoded surrogate", body: []byte("{\"contactId\":\"\xed\xa0\x80\",\"instanceId\":\"a\"}"), wantCode: invalidRequest},

		// Values that cannot be read as strings.
		{
			name: "contactId number", body: []byte(`{"requestId":"r","contactId":5,"instanceId":"a"}`),
			wantCode: invalidRequest, wantField: "contactId", wantEcho: &events.StopRequest{RequestID: "r", InstanceID: "a"},
		},
		{name: "contactId object", body: []byte(`{"contactId":{"id":"c"},"instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId array", body: []byte(`{"contactId":["c"],"instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId true", body: []byte(`{"contactId":true,"instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId false", body: []byte(`{"contactId":false,"instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{
			name: "instanceId number", body: []byte(`{"contactId":"c","instanceId":42,"requestId":"r"}`),
			wantCode: invalidRequest, wantField: "instanceId", wantEcho: &events.StopRequest{ContactID: "c", RequestID: "r"},
		},
		{name: "requestId number", body: []byte(`{"contactId":"c","instanceId":"a","requestId":1.5e3}`), wantCode: invalidRequest, wantField: "requestId"},
		{name: "disconnectReason object", body: []byte(`{"contactId":"c","instanceId":"a","disconnectReason":{}}`), wantCode: invalidRequest, wantField: "disconnectReason"},
		{name: "securityUser array", body: []byte(`{"contactId":"c","instanceId":"a","securityUser":[]}`), wantCode: invalidRequest, wantField: "securityUser"},
		{
			name: "contactId unpaired high surrogate", body: []byte(`{"contactId":"c\ud800","instanceId":"a"}`),
			wantCode: invalidRequest, wantField: "contactId", wantEcho: &events.StopRequest{InstanceID: "a"},
		},
		{name: "contactId unpaired low surrogate", body: []byte(`{"contactId":"\udc00c","instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId high surrogate then letter", body: []byte(`{"contactId":"\ud800\u0041","instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId two high surrogates", body: []byte(`{"contactId":"\uD83D\uD83D","instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId high surrogate then escaped backslash", body: []byte(`{"contactId":"\ud800\\u","instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "contactId high surrogate at the end", body: []byte(`{"contactId":"abc\uDBFF","instanceId":"a"}`), wantCode: invalidRequest, wantField: "contactId"},
		{name: "requestId unpaired surrogate", body: []byte(`{"contactId":"c","instanceId":"a","requestId":"\ud800\n"}`), wantCode: invalidRequest, wantField: "requestId"},
		{
			name: "unreadable field before a broken constraint", body: []byte(`{"contactId":5,"instanceId":"a.b"}`),
			wantCode: invalidRequest, wantField: "contactId", wantEcho: &events.StopRequest{InstanceID: "a.b"},
		},
		{name: "unreadable field before an earlier broken constraint", body: []byte(`{"contactId":"c","instanceId":"a b","securityUser":5}`), wantCode: invalidRequest, wantField: "securityUser"},
		{name: "unreadable fields in field order", body: []byte(`{"securityUser":1,"requestId":2,"contactId":3,"instanceId":4}`), wantCode: invalidRequest, wantField: "instanceId"},

		// instanceId.
		{name: "empty object", body: []byte(`{}`), wantCode: invalidParameter, wantField: "instanceId"},
		{
			name: "instanceId missing", body: []byte(`{"contactId":"c","requestId":"r"}`),
			wantCode: invalidParameter, wantField: "instanceId", wantEcho: &events.StopRequest{ContactID: "c", RequestID: "r"},
		},
		{name: "instanceId null", body: []byte(`{"contactId":"c","instanceId":null}`), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId empty", body: []byte(`{"contactId":"c","instanceId":""}`), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId of 101 characters", body: obj(t, "contactId", "c", "instanceId", strings.Repeat("i", 101)), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId with a dot", body: obj(t, "contactId", "c", "instanceId", "acme.prod"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId with a space", body: obj(t, "contactId", "c", "instanceId", "acme prod"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId wildcard", body: obj(t, "contactId", "c", "instanceId", "*"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId full wildcard", body: obj(t, "contactId", "c", "instanceId", ">"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId with a colon", body: obj(t, "contactId", "c", "instanceId", "a:b"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId non-ASCII", body: obj(t, "contactId", "c", "instanceId", "acmé"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId with NUL", body: obj(t, "contactId", "c", "instanceId", "a\x00"), wantCode: invalidParameter, wantField: "instanceId"},
		{name: "instanceId checked before contactId", body: []byte(`{"instanceId":"a b"}`), wantCode: invalidParameter, wantField: "instanceId"},

		// contactId.
		{name: "contactId missing", body: []byte(`{"instanceId":"a"}`), wantCode: invalidParameter, wantField: "contactId"},
		{name: "contactId null", body: []byte(`{"contactId":null,"instanceId":"a"}`), wantCode: invalidParameter, wantField: "contactId"},
		{name: "contactId empty", body: []byte(`{"contactId":"","instanceId":"a"}`), wantCode: invalidParameter, wantField: "contactId"},
		{name: "contactId of 257 ASCII characters", body: obj(t, "contactId", strings.Repeat("c", 257), "instanceId", "a"), wantCode: invalidParameter, wantField: "contactId"},
		{name: "contactId of 257 three-byte characters", body: obj(t, "contactId", strings.Repeat("日", 257), "instanceId", "a"), wantCode: invalidParameter, wantField: "contactId"},
		{
			name: "contactId of 257 four-byte characters", body: obj(t, "contactId", strings.Repeat("😀", 257), "instanceId", "a"),
			wantCode: invalidParameter, wantField: "contactId", wantEcho: &events.StopRequest{ContactID: strings.Repeat("😀", 257), InstanceID: "a"},
		},
		{name: "contactId checked before requestId", body: []byte(`{"instanceId":"a","requestId":""}`), wantCode: invalidParameter, wantField: "contactId"},

		// requestId.
		{name: "requestId empty", body: []byte(`{"contactId":"c","instanceId":"a","requestId":""}`), wantCode: invalidParameter, wantField: "requestId"},
		{name: "requestId of 129 characters", body: obj(t, "contactId", "c", "instanceId", "a", "requestId", strings.Repeat("é", 129)), wantCode: invalidParameter, wantField: "requestId"},
		{name: "requestId checked before disconnectReason", body: []byte(`{"contactId":"c","instanceId":"a","requestId":"","disconnectReason":""}`), wantCode: invalidParameter, wantField: "requestId"},

		// disconnectReason.
		{name: "disconnectReason empty", body: []byte(`{"contactId":"c","instanceId":"a","disconnectReason":""}`), wantCode: invalidParameter, wantField: "disconnectReason"},
		{name: "disconnectReason of 129 characters", body: obj(t, "contactId", "c", "instanceId", "a", "disconnectReason", strings.Repeat("😀", 129)), wantCode: invalidParameter, wantField: "disconnectReason"},

		// securityUser.
		{name: "securityUser over 8 KiB", body: obj(t, "contactId", "c", "instanceId", "a", "securityUser", strings.Repeat("t", 8<<10+1)), wantCode: invalidParameter, wantField: "securityUser"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.DecodeStopRequest(tt.body)
			requireValidationError(t, err, tt.wantCode, tt.wantField)
			if tt.wantEcho != nil {
				require.Equal(t, *tt.wantEcho, got)
			}
			for _, s := range []string{got.RequestID, got.ContactID, got.InstanceID, got.DisconnectReason, got.SecurityUser} {
				require.True(t, utf8.ValidString(s), "echoed field %q is not valid UTF-8", s)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()

	_, err := events.DecodeStopRequest(obj(t, "contactId", strings.Repeat("日", 300), "instanceId", "a"))
	require.EqualError(t, err, "contactId: must be 1 to 256 characters, got 300")

	_, err = events.DecodeStopRequest([]byte(`[]`))
	require.EqualError(t, err, "message is not a JSON object")

	_, err = events.DecodeStopRequest(bytes.Repeat([]byte(" "), events.MaxMessageSize+1))
	require.EqualError(t, err, "message is 65537 bytes, more than the limit of 65536")

	_, err = events.DecodeStopRequest([]byte(`{"contactId":{},"instanceId":"a"}`))
	require.EqualError(t, err, "contactId: must be a string, got an object")

	require.Equal(t, "reason only", (&events.ValidationError{Code: events.ReasonInvalidRequest, Reason: "reason only"}).Error())
}

func TestStopRequestValidate(t *testing.T) {
	t.Parallel()

	valid := events.StopRequest{ContactID: "c", InstanceID: "a"}
	with := func(f func(*events.StopRequest)) events.StopRequest {
		r := valid
		f(&r)
		return r
	}
	tests := []struct {
		name      string
		req       events.StopRequest
		wantCode  events.ReasonCode // "" when valid
		wantField string
	}{
		{name: "minimal", req: valid},
		{name: "empty requestId is absent", req: with(func(r *events.StopRequest) { r.RequestID = "" })},
		{name: "every field", req: events.StopRequest{RequestID: "r", ContactID: "c", InstanceID: "a", DisconnectReason: "d", SecurityUser: "t"}},
		{name: "zero request", req: events.StopRequest{}, wantCode: events.ReasonInvalidParameter, wantField: "instanceId"},
		{name: "no contactId", req: with(func(r *events.StopRequest) { r.ContactID = "" }), wantCode: events.ReasonInvalidParameter, wantField: "contactId"},
		{name: "bad instanceId", req: with(func(r *events.StopRequest) { r.InstanceID = "a/b" }), wantCode: events.ReasonInvalidParameter, wantField: "instanceId"},
		{name: "long requestId", req: with(func(r *events.StopRequest) { r.RequestID = strings.Repeat("r", 129) }), wantCode: events.ReasonInvalidParameter, wantField: "requestId"},
		{name: "long disconnectReason", req: with(func(r *events.StopRequest) { r.DisconnectReason = strings.Repeat("d", 129) }), wantCode: events.ReasonInvalidParameter, wantField: "disconnectReason"},
		{name: "long securityUser", req: with(func(r *events.StopRequest) { r.SecurityUser = strings.Repeat("t", 8<<10+1) }), wantCode: events.ReasonInvalidParameter, wantField: "securityUser"},
		{name: "contactId not UTF-8", req: with(func(r *events.StopRequest) { r.ContactID = "c\xff" }), wantCode: events.ReasonInvalidRequest, wantField: "contactId"},
		{name: "instanceId not UTF-8", req: with(func(r *events.StopRequest) { r.InstanceID = "\xff" }), wantCode: events.ReasonInvalidRequest, wantField: "instanceId"},
		{name: "requestId not UTF-8", req: with(func(r *events.StopRequest) { r.RequestID = "\xc3" }), wantCode: events.ReasonInvalidRequest, wantField: "requestId"},
		{name: "disconnectReason not UTF-8", req: with(func(r *events.StopRequest) { r.DisconnectReason = "\x80" }), wantCode: events.ReasonInvalidRequest, wantField: "disconnectReason"},
		{name: "securityUser not UTF-8", req: with(func(r *events.StopRequest) { r.SecurityUser = "\xfe" }), wantCode: events.ReasonInvalidRequest, wantField: "securityUser"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.req.Validate()
			if tt.wantCode == "" {
				require.NoError(t, err)
				return
			}
			requireValidationError(t, err, tt.wantCode, tt.wantField)
		})
	}
}

func TestStopRequestCheckSubject(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		instanceID string
		subject    string
		wantErr    bool
	}{
		{name: "bare subject", instanceID: "acme", subject: "contact.stop.requested"},
		{name: "bare subject, any body", instanceID: "", subject: "contact.stop.requested"},
		{name: "matching instance", instanceID: "acme", subject: "contact.stop.requested.acme"},
		{name: "other instance", instanceID: "acme", subject: "contact.stop.requested.evil", wantErr: true},
		{name: "case differs", instanceID: "acme", subject: "contact.stop.requested.ACME", wantErr: true},
		{name: "prefix of the instance", instanceID: "acme-prod", subject: "contact.stop.requested.acme", wantErr: true},
		{name: "extra tokens", instanceID: "a.b", subject: "contact.stop.requested.a.b", wantErr: true},
		{name: "extra tokens, body differs", instanceID: "acme", subject: "contact.stop.requested.acme.x", wantErr: true},
		{name: "empty token", instanceID: "", subject: "contact.stop.requested.", wantErr: true},
		{name: "wildcard token", instanceID: "*", subject: "contact.stop.requested.*", wantErr: true},
		{name: "not a request subject", instanceID: "acme", subject: "contact.stopped.acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := events.StopRequest{ContactID: "c", InstanceID: tt.instanceID}.CheckSubject(tt.subject)
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			requireValidationError(t, err, events.ReasonInvalidParameter, "instanceId")
		})
	}
}

func TestValidInstanceID(t *testing.T) {
	t.Parallel()

	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"acme-prod", true},
		{"ACME_prod-01", true},
		{"_", true},
		{"-", true},
		{strings.Repeat("x", 100), true},
		{strings.Repeat("x", 101), false},
		{"", false},
		{"a.b", false},
		{"a b", false},
		{"*", false},
		{">", false},
		{"a/b", false},
		{"a:b", false},
		{"é", false},
		{"\x00", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, events.ValidInstanceID(tt.id))
		})
	}
}

// typicalRequest is a request body of the usual size, about 150 bytes.
var typicalRequest = []byte(`{"requestId":"r-7f3c9a2e-42","contactId":"3f1c0c7e-8a2b-4c1d-9e5f-6a7b8c9d0e1f","instanceId":"acme-prod","disconnectReason":"CUSTOMER_HUNG_UP"}`)

func BenchmarkDecodeStopRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	for b.Loop() {
		if _, err := events.DecodeStopRequest(typicalRequest); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStopRequestJSON is the general path (encoding/json), which
// DecodeStopRequest takes for a body not in the canonical form.
func BenchmarkDecodeStopRequestJSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	for b.Loop() {
		if _, err := events.DecodeStopRequestJSON(typicalRequest); err != nil {
			b.Fatal(err)
		}
	}
}
