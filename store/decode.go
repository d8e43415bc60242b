package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// unmarshalContact decodes a contact record into c as json.Unmarshal
// would. Records as contactstop writes them (appendRecord; json.Marshal
// writes the same bytes) take a fast path without reflection — the worker
// decodes one per request; anything else (whitespace, escapes, unknown or
// repeated fields, other spellings of a field's name) falls back to
// json.Unmarshal.
func unmarshalContact(data []byte, c *Contact) error {
	if fastContact(data, c) {
		return nil
	}
	*c = Contact{}
	return json.Unmarshal(data, c)
}

// fastContact decodes a record of the canonical form into c: one JSON
// object, no whitespace, known field names spelled exactly once, strings
// without escapes and of valid UTF-8, endedBySeq a plain unsigned integer.
// It reports false, leaving c in any state, for anything else.
func fastContact(data []byte, c *Contact) bool {
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return false
	}
	rest := data[1 : len(data)-1]
	var seen uint16
	for len(rest) > 0 {
		name, after, ok := fastString(rest)
		if !ok || len(after) == 0 || after[0] != ':' {
			return false
		}
		rest = after[1:]
		f := fieldIndex(name)
		if f < 0 || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if f == fieldEndedBySeq {
			end := 0
			for end < len(rest) && '0' <= rest[end] && rest[end] <= '9' {
				end++
			}
			if end == 0 || end > 1 && rest[0] == '0' {
				return false
			}
			n, err := strconv.ParseUint(string(rest[:end]), 10, 64)
			if err != nil {
				return false
			}
			c.EndedBySeq, rest = n, rest[end:]
		} else {
			v, after, ok := fastString(rest)
			if !ok || !setField(c, f, v) {
				return false
			}
			rest = after
		}
		if len(rest) > 0 {
			if rest[0] != ',' || len(rest) == 1 {
				return false
			}
			rest = rest[1:]
		}
	}
	return true
}

// fastString reads a JSON string without escapes at the start of b and
// returns its contents and what follows it.
func fastString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	s = b[1 : 1+end]
	for _, ch := range s {
		if ch < 0x20 || ch == '\\' {
			return nil, nil, false
		}
	}
	if !utf8.Valid(s) {
		return nil, nil, false
	}
	return s, b[2+end:], true
}

// The fields of a record, in appendRecord's order.
const (
	fieldContactID = iota
	fieldInstanceID
	fieldState
	fieldQueueID
	fieldChannel
	fieldEnqueuedAt
	fieldUpdatedAt
	fieldEndedAt
	fieldEndedBy
	fieldEndedBySeq
	fieldDisconnectReason
	fieldPreviousState
)

var fieldNames = [...]string{"contactId", "instanceId", "state", "queueId", "channel", "enqueuedAt", "updatedAt",
	"endedAt", "endedBy", "endedBySeq", "disconnectReason", "previousState"}

func fieldIndex(name []byte) int {
	for i, n := range fieldNames {
		if string(name) == n {
			return i
		}
	}
	return -1
}

// setField sets field f of c to the string v; false when v is not a valid
// value of the field (a time that does not parse).
func setField(c *Contact, f int, v []byte) bool {
	switch f {
	case fieldContactID:
		c.ContactID = string(v)
	case fieldInstanceID:
		c.InstanceID = string(v)
	case fieldState:
		c.State = State(v)
	case fieldQueueID:
		c.QueueID = string(v)
	case fieldChannel:
		c.Channel = Channel(v)
	case fieldEnqueuedAt:
		return c.EnqueuedAt.UnmarshalText(v) == nil
	case fieldUpdatedAt:
		return c.UpdatedAt.UnmarshalText(v) == nil
	case fieldEndedAt:
		return c.EndedAt.UnmarshalText(v) == nil
	case fieldEndedBy:
		c.EndedBy = string(v)
	case fieldDisconnectReason:
		c.DisconnectReason = string(v)
	case fieldPreviousState:
		c.PreviousState = State(v)
	}
	return true
}
