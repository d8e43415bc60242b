package jsonx_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/internal/jsonx"
)

// Awkward strings: every escape, invalid UTF-8, separators, HTML.
var awkward = []string{
	"", "plain", `quote"and\backslash`, "\b\f\n\r\t\x00\x01\x1f\x7f", "<script>&amp;</script>",
	"日本語 📞☎️", "\u2028\u2029", "\xff\xfe", "a\xc3", "\xed\xa0\x80", "é" + string([]byte{0xe9}), "/slash",
}

func TestString(t *testing.T) {
	t.Parallel()
	check := func(s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(jsonx.String(nil, s)), "%q", s)
	}
	for _, s := range awkward {
		check(s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		check(string(b))
	}
}

func FuzzString(f *testing.F) {
	for _, s := range awkward {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(jsonx.String(nil, s)))
	})
}

func TestTime(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{
		time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC),
		time.Date(2026, 11, 21, 10, 0, 0, 120000000, time.FixedZone("CET", 3600)),
		{},
	} {
		want, err := json.Marshal(tm)
		require.NoError(t, err)
		require.Equal(t, string(want), string(jsonx.Time(nil, tm)))
	}
}

func TestField(t *testing.T) {
	t.Parallel()
	b := jsonx.Field([]byte("{"), "a")
	b = append(b, '1')
	b = jsonx.Field(b, "b")
	require.Equal(t, `{"a":1,"b":`, string(b))
}
