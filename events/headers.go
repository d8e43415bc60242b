package events

import "github.com/nats-io/nats.go"

// MaxCorrelationIDBytes is the longest Correlation-Id header copied from a
// request to its result; a longer one is not copied.
const MaxCorrelationIDBytes = 128

// PassHeaders copies the headers that travel from a request to its result
// (traceparent and Correlation-Id) from src into dst. A traceparent is
// copied only when it has the W3C Trace Context form, a Correlation-Id
// only when it is 1 to MaxCorrelationIDBytes bytes of printable ASCII:
// anything else is dropped, never truncated, so that a result never
// carries a value its request did not.
func PassHeaders(dst, src nats.Header) {
	if v := src.Get(HeaderTraceparent); v != "" && ValidTraceparent(v) {
		dst.Set(HeaderTraceparent, v)
	}
	if v := src.Get(HeaderCorrelationID); v != "" && len(v) <= MaxCorrelationIDBytes && printableASCII(v) {
		dst.Set(HeaderCorrelationID, v)
	}
}

// ValidTraceparent reports whether v is a W3C traceparent: version "-"
// trace-id "-" parent-id "-" flags in lower-case hex (2, 32, 16 and 2
// digits), the version not "ff", the ids not all zeros. Version 00 is
// exactly that; a later version may append "-" and more fields (at most
// 512 bytes in all).
func ValidTraceparent(v string) bool {
	const base = 55 // 2+1+32+1+16+1+2
	if len(v) < base || len(v) > 512 {
		return false
	}
	if !lowerHex(v[0:2]) || v[0:2] == "ff" || v[2] != '-' || !lowerHex(v[3:35]) || v[35] != '-' ||
		!lowerHex(v[36:52]) || v[52] != '-' || !lowerHex(v[53:55]) {
		return false
	}
	if allZero(v[3:35]) || allZero(v[36:52]) {
		return false
	}
	if len(v) > base {
		return v[0:2] != "00" && v[base] == '-'
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
