package store

import (
	"strconv"

	"github.com/contactstop/contactstop/internal/jsonx"
)

// appendRecord appends c's record, byte for byte what json.Marshal(c)
// writes, without reflection (the worker writes one per stop).
func (c *Contact) appendRecord(b []byte) []byte {
	b = append(b, '{')
	b = jsonx.String(jsonx.Field(b, "contactId"), c.ContactID)
	b = jsonx.String(jsonx.Field(b, "instanceId"), c.InstanceID)
	b = jsonx.String(jsonx.Field(b, "state"), string(c.State))
	if c.QueueID != "" {
		b = jsonx.String(jsonx.Field(b, "queueId"), c.QueueID)
	}
	b = jsonx.String(jsonx.Field(b, "channel"), string(c.Channel))
	if !c.EnqueuedAt.IsZero() {
		b = jsonx.Time(jsonx.Field(b, "enqueuedAt"), c.EnqueuedAt)
	}
	b = jsonx.Time(jsonx.Field(b, "updatedAt"), c.UpdatedAt)
	if !c.EndedAt.IsZero() {
		b = jsonx.Time(jsonx.Field(b, "endedAt"), c.EndedAt)
	}
	if c.EndedBy != "" {
		b = jsonx.String(jsonx.Field(b, "endedBy"), c.EndedBy)
	}
	if c.EndedBySeq != 0 {
		b = strconv.AppendUint(jsonx.Field(b, "endedBySeq"), c.EndedBySeq, 10)
	}
	if c.DisconnectReason != "" {
		b = jsonx.String(jsonx.Field(b, "disconnectReason"), c.DisconnectReason)
	}
	if c.PreviousState != "" {
		b = jsonx.String(jsonx.Field(b, "previousState"), string(c.PreviousState))
	}
	if in := c.Intent; in != nil {
		b = jsonx.String(jsonx.Field(append(jsonx.Field(b, "stopIntent"), '{'), "requestId"), in.RequestID)
		if in.RequestSeq != 0 {
			b = strconv.AppendUint(jsonx.Field(b, "requestSeq"), in.RequestSeq, 10)
		}
		if in.DisconnectReason != "" {
			b = jsonx.String(jsonx.Field(b, "disconnectReason"), in.DisconnectReason)
		}
		b = append(jsonx.Time(jsonx.Field(b, "at"), in.At), '}')
	}
	if !c.EventAt.IsZero() {
		b = jsonx.Time(jsonx.Field(b, "eventAt"), c.EventAt)
	}
	return append(b, '}')
}
