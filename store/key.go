package store

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Key encoding.
//
// JetStream KV keys may only contain [-/_=.A-Za-z0-9], and '.' separates
// subject tokens. A contact's key is "<instanceId>.<escaped contactId>":
// instanceIds are already [A-Za-z0-9_-], and the escaped contactId is always
// exactly one non-empty token, so "<instanceId>.>" selects every contact of
// one instance and nothing of another.
//
// Escaping: bytes in [A-Za-z0-9_-] and '/' are kept; every other byte
// (including '.', '=', ' ', '*', '>' and each byte of a multi-byte UTF-8
// character) becomes '=' and two upper-case hex digits. So "a.b" is "a=2Eb",
// "é" is "=C3=A9" and "=" is "=3D". The encoding is canonical: each contactId
// has exactly one escaped form, and decoding rejects any other.

const upperHex = "0123456789ABCDEF"

// keep reports whether byte b passes through escaping unchanged.
func keep(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '_' || b == '/'
}

// escapedLen returns the length of the escaped form of id.
func escapedLen(id string) int {
	n := len(id)
	for i := 0; i < len(id); i++ {
		if !keep(id[i]) {
			n += 2
		}
	}
	return n
}

// writeEscaped writes the escaped form of id to b.
func writeEscaped(b *strings.Builder, id string) {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if keep(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0F])
	}
}

// EscapeContactID returns id escaped into a single KV key token (see the key
// encoding above). It accepts any string; for a non-empty id the result is
// non-empty and contains no '.'. It does not validate id: an id that
// [KV.PutContact] would reject still has an escaped form.
func EscapeContactID(id string) string {
	n := escapedLen(id)
	if n == len(id) {
		return id
	}
	var b strings.Builder
	b.Grow(n)
	writeEscaped(&b, id)
	return b.String()
}

// unhex returns the value of an upper-case hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// UnescapeContactID reverses [EscapeContactID]. It is strict and accepts only
// the canonical escaped form: it returns an error for an empty string, a byte
// that is neither kept nor '=', a truncated escape, lower-case or non-hex
// digits, an escape of a byte that is kept as itself (such as "=41" for "A"),
// and a result that is not valid UTF-8.
func UnescapeContactID(s string) (string, error) {
	if s == "" {
		return "", errors.New("store: empty escaped contactId")
	}
	if strings.IndexByte(s, '=') < 0 {
		for i := 0; i < len(s); i++ {
			if !keep(s[i]) {
				return "", fmt.Errorf("store: escaped contactId %q: byte %q at %d must be escaped", s, s[i], i)
			}
		}
		return s, nil // only kept bytes: ASCII, valid UTF-8.
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			b.WriteByte(c)
			continue
		}
		if c != '=' {
			return "", fmt.Errorf("store: escaped contactId %q: byte %q at %d must be escaped", s, c, i)
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("store: escaped contactId %q: truncated escape at %d", s, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("store: escaped contactId %q: escape at %d is not two upper-case hex digits", s, i)
		}
		v := hi<<4 | lo
		if keep(v) {
			return "", fmt.Errorf("store: escaped contactId %q: escape at %d encodes %q, which is never escaped", s, i, v)
		}
		b.WriteByte(v)
		i += 2
	}
	id := b.String()
	if !utf8.ValidString(id) {
		return "", fmt.Errorf("store: escaped contactId %q: decodes to invalid UTF-8", s)
	}
	return id, nil
}

// ContactKey returns the KV key of a contact: instanceID, '.', and the
// escaped contactID. It does not validate its arguments; given a valid
// instanceId and contactId the result is a valid KV key.
func ContactKey(instanceID, contactID string) string {
	var b strings.Builder
	b.Grow(len(instanceID) + 1 + escapedLen(contactID))
	b.WriteString(instanceID)
	b.WriteByte('.')
	writeEscaped(&b, contactID)
	return b.String()
}

// contactSubject is prefix followed by the contact's key (ContactKey), in
// one allocation.
func contactSubject(prefix, instanceID, contactID string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(instanceID) + 1 + escapedLen(contactID))
	b.WriteString(prefix)
	b.WriteString(instanceID)
	b.WriteByte('.')
	writeEscaped(&b, contactID)
	return b.String()
}

// ParseContactKey splits a contact key into its instanceId and contactId. It
// returns an error when the key does not have exactly two tokens, the
// instanceId is not valid, or the second token is not a canonical escaped
// contactId (see [UnescapeContactID]).
func ParseContactKey(key string) (instanceID, contactID string, err error) {
	inst, esc, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", fmt.Errorf("store: contact key %q: want <instanceId>.<escaped contactId>", key)
	}
	if err := validateInstanceID(inst); err != nil {
		return "", "", fmt.Errorf("store: contact key %q: %w", key, err)
	}
	id, err := UnescapeContactID(esc)
	if err != nil {
		return "", "", fmt.Errorf("store: contact key %q: %w", key, err)
	}
	return inst, id, nil
}

// Limits on identifiers, from the product specification.
const (
	maxInstanceIDLen = 100 // bytes of [A-Za-z0-9_-]
	maxContactIDLen  = 256 // UTF-8 characters (runes)
)

// validateInstanceID checks that id is 1–100 characters of [A-Za-z0-9_-].
func validateInstanceID(id string) error {
	if id == "" {
		return errors.New("instanceId is empty")
	}
	if len(id) > maxInstanceIDLen {
		return fmt.Errorf("instanceId is %d characters, more than %d", len(id), maxInstanceIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return fmt.Errorf("instanceId %q has a character outside [A-Za-z0-9_-] at %d", id, i)
		}
	}
	return nil
}

// validateContactID checks that id is 1–256 characters of valid UTF-8.
func validateContactID(id string) error {
	if id == "" {
		return errors.New("contactId is empty")
	}
	if !utf8.ValidString(id) {
		return errors.New("contactId is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(id); n > maxContactIDLen {
		return fmt.Errorf("contactId is %d characters, more than %d", n, maxContactIDLen)
	}
	return nil
}
