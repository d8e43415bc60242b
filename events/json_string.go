package events

import (
	"bytes"
	"encoding/json"
	"strings"
)

// jsonString is one string field of an incoming message, decoded by
// encoding/json without losing what a plain string would: whether the field
// was there at all, and whether it held something other than a string. It
// never returns an error for a wrong type, so that json.Unmarshal goes on to
// read the other fields, which a failure event echoes.
//
// The decoded text is appended to a buffer shared by the fields of one
// message, so that they can all be turned into strings with one allocation
// (see stopRequestWire).
type jsonString struct {
	text       *strings.Builder // the shared buffer; set before decoding
	start, end int              // the value is text.String()[start:end]
	state      jsonStringState
	first      byte // first byte of the value, when of the wrong type
}

type jsonStringState uint8

const (
	jsonAbsent    jsonStringState = iota // not in the message, or null
	jsonSet                              // a string, possibly empty
	jsonWrongType                        // a number, boolean, object or array
	jsonBadText                          // a string with an unpaired surrogate escape
)

// UnmarshalJSON records one JSON value. encoding/json has already checked
// that raw is well-formed. When a field occurs twice, the last one counts.
func (s *jsonString) UnmarshalJSON(raw []byte) error {
	*s = jsonString{text: s.text}
	if len(raw) == 0 || raw[0] == 'n' {
		return nil
	}
	if raw[0] != '"' {
		s.state = jsonWrongType
		s.first = raw[0]
		return nil
	}
	body := raw[1 : len(raw)-1]
	start := s.text.Len()
	if bytes.IndexByte(body, '\\') < 0 {
		// The common case: nothing to unescape.
		s.text.Write(body)
	} else {
		if hasUnpairedSurrogate(body) {
			s.state = jsonBadText
			return nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		s.text.WriteString(v)
	}
	s.start, s.end = start, s.text.Len()
	s.state = jsonSet
	return nil
}

// value returns the field's text, given the shared buffer as a string.
func (s *jsonString) value(text string) string {
	return text[s.start:s.end]
}

// readError returns the *ValidationError for a value that could not be read
// as a string, or nil.
func (s *jsonString) readError(field string) error {
	switch s.state {
	case jsonWrongType:
		return invalidRequest(field, "must be a string, got "+jsonKind(s.first))
	case jsonBadText:
		return invalidRequest(field, `is not valid Unicode: \u escape of an unpaired UTF-16 surrogate`)
	}
	return nil
}

func jsonKind(first byte) string {
	switch first {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// hasUnpairedSurrogate reports whether the body of a JSON string (between
// the quotes, escapes well-formed) has a \u escape of a UTF-16 surrogate
// that is not part of a high-low pair. encoding/json would silently turn it
// into U+FFFD.
func hasUnpairedSurrogate(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		i++
		if i >= len(body) || body[i] != 'u' {
			continue // a one-character escape such as \n or \\
		}
		r, ok := hexRune(body, i+1)
		if !ok {
			return true
		}
		i += 4
		switch {
		case r >= 0xDC00 && r < 0xE000:
			return true // a low surrogate without a high one
		case r >= 0xD800 && r < 0xDC00:
			if i+2 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return true
			}
			lo, ok := hexRune(body, i+3)
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return true
			}
			i += 6
		}
	}
	return false
}

// hexRune parses the four hex digits at b[i:i+4].
func hexRune(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
