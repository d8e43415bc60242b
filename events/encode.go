package events

import "github.com/contactstop/contactstop/internal/jsonx"

// AppendJSON appends s's JSON encoding to b: byte for byte what
// json.Marshal(s) writes, without reflection (the worker encodes one per
// stop).
func (s *Stopped) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonx.String(jsonx.Field(b, "requestId"), s.RequestID)
	b = jsonx.String(jsonx.Field(b, "contactId"), s.ContactID)
	b = jsonx.String(jsonx.Field(b, "instanceId"), s.InstanceID)
	b = jsonx.String(jsonx.Field(b, "previousState"), s.PreviousState)
	if s.DisconnectReason != "" {
		b = jsonx.String(jsonx.Field(b, "disconnectReason"), s.DisconnectReason)
	}
	b = jsonx.Time(jsonx.Field(b, "stoppedAt"), s.StoppedAt)
	return append(b, '}')
}

// AppendJSON appends f's JSON encoding to b: byte for byte what
// json.Marshal(f) writes.
func (f *StopFailed) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonx.String(jsonx.Field(b, "requestId"), f.RequestID)
	b = jsonx.String(jsonx.Field(b, "contactId"), f.ContactID)
	b = jsonx.String(jsonx.Field(b, "instanceId"), f.InstanceID)
	b = jsonx.String(jsonx.Field(b, "reasonCode"), string(f.ReasonCode))
	b = jsonx.String(jsonx.Field(b, "message"), f.Message)
	b = jsonx.Field(b, "retryable")
	if f.Retryable {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	b = jsonx.Time(jsonx.Field(b, "failedAt"), f.FailedAt)
	return append(b, '}')
}
