package store

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// kvKeyRe is the rule JetStream KV applies to keys.
var kvKeyRe = regexp.MustCompile(`^[-/_=.A-Za-z0-9]+$`)

// requireValidKey fails unless key is a valid KV key.
func requireValidKey(t testing.TB, key string) {
	t.Helper()
	if !kvKeyRe.MatchString(key) || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		t.Fatalf("%q is not a valid KV key", key)
	}
}

func TestEscapeContactID(t *testing.T) {
	t.Parallel()
	tests := []struct{ id, escaped string }{
		{"c-1", "c-1"},
		{"AZaz09_-", "AZaz09_-"},
		{"a/b", "a/b"},
		{"a.b", "a=2Eb"},
		{".", "=2E"},
		{"..", "=2E=2E"},
		{"=", "=3D"},
		{"=2E", "=3D2E"},
		{" ", "=20"},
		{"with space", "with=20space"},
		{"*", "=2A"},
		{">", "=3E"},
		{"é", "=C3=A9"},
		{"日本", "=E6=97=A5=E6=9C=AC"},
		{"😀", "=F0=9F=98=80"},
		{"\x00", "=00"},
		{"\x7f", "=7F"},
		{"$KV.b.k", "=24KV=2Eb=2Ek"},
		{"", ""},
	}
	for _, tt := range tests {
		got := EscapeContactID(tt.id)
		require.Equal(t, tt.escaped, got, "EscapeContactID(%q)", tt.id)
		if tt.id == "" {
			continue
		}
		back, err := UnescapeContactID(got)
		require.NoError(t, err, "UnescapeContactID(%q)", got)
		require.Equal(t, tt.id, back)
		key := ContactKey("acme", tt.id)
		require.Equal(t, "acme."+tt.escaped, key)
		require.Equal(t, "$KV.c."+key, contactSubject("$KV.c.", "acme", tt.id))
		requireValidKey(t, key)
		inst, id, err := ParseContactKey(key)
		require.NoError(t, err)
		require.Equal(t, "acme", inst)
		require.Equal(t, tt.id, id)
	}
}

func TestUnescapeContactIDStrict(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"",       // empty
		".",      // unescaped separator
		"a.b",    // unescaped separator
		"a b",    // unescaped space
		"*", ">", // wildcards
		"é",         // raw non-ASCII
		"=",         // truncated
		"=2",        // truncated
		"a=C3=A",    // truncated
		"=2e",       // lower-case hex
		"=c3=a9",    // lower-case hex
		"=G0",       // not hex
		"=-1",       // not hex
		"=41",       // 'A' is never escaped
		"=2F",       // '/' is never escaped
		"=2D",       // '-' is never escaped
		"=5F",       // '_' is never escaped
		"=30",       // '0' is never escaped
		"=C3",       // truncated UTF-8
		"=FF",       // invalid UTF-8
		"=C0=80",    // overlong encoding
		"=ED=A0=80", // surrogate
	} {
		_, err := UnescapeContactID(s)
		require.Error(t, err, "UnescapeContactID(%q)", s)
	}
}

func TestParseContactKeyErrors(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"", "acme", "acme.", ".c-1", "acme.c.1", "acme..c", "ac.me.c",
		"ac*me.c", "é.c", strings.Repeat("a", 101) + ".c", "acme.=2e", "acme.=41",
	} {
		_, _, err := ParseContactKey(key)
		require.Error(t, err, "ParseContactKey(%q)", key)
	}
	inst, id, err := ParseContactKey(strings.Repeat("a", 100) + ".=2E")
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("a", 100), inst)
	require.Equal(t, ".", id)
}

func TestValidateIDs(t *testing.T) {
	t.Parallel()
	require.NoError(t, validateContactID(strings.Repeat("😀", 256)))
	require.Error(t, validateContactID(strings.Repeat("😀", 257)))
	require.Error(t, validateContactID(""))
	require.Error(t, validateContactID("\xc3"))
	require.NoError(t, validateInstanceID("A-z_0"))
	require.Error(t, validateInstanceID("a b"))
}

// FuzzContactKey checks, for any input, that escaping round-trips and always
// yields a valid KV key, and that decoding accepts only canonical forms.
func FuzzContactKey(f *testing.F) {
	for _, s := range []string{"c-1", "a.b", ".", "..", "=", "=2E", "日本語", "😀", "a/b", " ", "=C3=A9", "=c3", "=41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// s as a contactId.
		if s != "" && utf8.ValidString(s) {
			esc := EscapeContactID(s)
			if esc == "" || strings.Contains(esc, ".") {
				t.Fatalf("EscapeContactID(%q) = %q: not one non-empty token", s, esc)
			}
			back, err := UnescapeContactID(esc)
			if err != nil {
				t.Fatalf("UnescapeContactID(EscapeContactID(%q) = %q): %v", s, esc, err)
			}
			if back != s {
				t.Fatalf("round trip of %q gave %q", s, back)
			}
			key := ContactKey("acme-prod_1", s)
			requireValidKey(t, key)
			inst, id, err := ParseContactKey(key)
			if err != nil {
				t.Fatalf("ParseContactKey(%q): %v", key, err)
			}
			if inst != "acme-prod_1" || id != s {
				t.Fatalf("ParseContactKey(%q) = %q, %q; want acme-prod_1, %q", key, inst, id, s)
			}
		}
		// s as an escaped form: accepted only if canonical.
		if id, err := UnescapeContactID(s); err == nil {
			if !utf8.ValidString(id) || id == "" {
				t.Fatalf("UnescapeContactID(%q) = %q: not non-empty UTF-8", s, id)
			}
			if again := EscapeContactID(id); again != s {
				t.Fatalf("UnescapeContactID accepted non-canonical %q (canonical %q)", s, again)
			}
		}
		// s as a key: a parsed key is canonical.
		if inst, id, err := ParseContactKey(s); err == nil {
			if ContactKey(inst, id) != s {
				t.Fatalf("ParseContactKey accepted non-canonical %q", s)
			}
			requireValidKey(t, s)
		}
	})
}

func BenchmarkContactKey(b *testing.B) {
	for _, bc := range []struct{ name, id string }{
		{"plain", "550e8400-e29b-41d4-a716-446655440000"},
		{"escaped", "queue.billing/agent 7/日本"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ContactKey("acme-prod", bc.id)
			}
		})
	}
}

func BenchmarkParseContactKey(b *testing.B) {
	key := ContactKey("acme-prod", "queue.billing/agent 7/日本")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseContactKey(key); err != nil {
			b.Fatal(err)
		}
	}
}
