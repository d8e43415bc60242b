package budget

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRefill(t *testing.T) {
	l := limits{rate: 10, burst: 15}
	s := state{Tokens: 0, At: t0}
	assert.InDelta(t, 5, s.refill(t0.Add(500*time.Millisecond), l).Tokens, 1e-9)
	assert.InDelta(t, 15, s.refill(t0.Add(time.Hour), l).Tokens, 1e-9, "capped at the burst")
	// A clock behind the stored time refills nothing and keeps At.
	back := s.refill(t0.Add(-time.Second), l)
	assert.Zero(t, back.Tokens)
	assert.Equal(t, t0, back.At)
	// A lowered burst caps what is stored; garbage is an empty bucket.
	assert.InDelta(t, 2, state{Tokens: 9, At: t0}.refill(t0, limits{rate: 10, burst: 2}).Tokens, 1e-9)
	assert.Zero(t, state{Tokens: -3, At: t0}.refill(t0, l).Tokens)
	assert.Equal(t, state{At: t0}, decodeState([]byte("{nonsense"), t0))
	enc := state{Tokens: 1.5, At: t0, PausedUntil: t0.Add(time.Second)}
	assert.Equal(t, state{Tokens: 1.5, At: t0, PausedUntil: t0.Add(time.Second), Rate: 10, Burst: 15},
		decodeState(enc.encode(l), time.Time{}))
}

func TestPlan(t *testing.T) {
	l := limits{rate: 10, burst: 15}
	full := state{Tokens: 15, At: t0}
	kh, kl, _ := plan(full, t0, l, 3, 100)
	assert.Equal(t, [2]int{3, 11}, [2]int{kh, kl}, "Low leaves one token")

	// 1.5 tokens: a High may go, a Low may not; the Low's token is due
	// when the bucket holds 2.
	s := state{Tokens: 1.5, At: t0}
	kh, kl, _ = plan(s, t0, l, 1, 5)
	assert.Equal(t, [2]int{1, 0}, [2]int{kh, kl})
	kh, kl, due := plan(s, t0, l, 0, 5)
	assert.Equal(t, [2]int{0, 0}, [2]int{kh, kl})
	assert.Equal(t, t0.Add(50*time.Millisecond), due)
	// 0.5 tokens: a High's token is due in 50 ms.
	_, _, due = plan(state{Tokens: 0.5, At: t0}, t0, l, 1, 5)
	assert.Equal(t, t0.Add(50*time.Millisecond), due)

	// Burst 1: nothing can be kept for singles, so Low takes the token.
	kh, kl, _ = plan(state{Tokens: 1, At: t0}, t0, limits{rate: 1, burst: 1}, 0, 1)
	assert.Equal(t, [2]int{0, 1}, [2]int{kh, kl})
}

func TestThrottleState(t *testing.T) {
	l := limits{rate: 10, burst: 15}
	until := t0.Add(2 * time.Second)
	s := state{Tokens: 12, At: t0}.throttle(t0, until, l)
	assert.Zero(t, s.Tokens)
	assert.Equal(t, until, s.PausedUntil)
	for _, at := range []time.Time{t0, t0.Add(time.Second), until.Add(-time.Nanosecond)} {
		kh, kl, due := plan(s.refill(at, l), at, l, 1, 1)
		assert.Equal(t, [2]int{0, 0}, [2]int{kh, kl}, "nothing during the pause")
		assert.Equal(t, until, due)
	}
	// At the end of the pause one token is whole: a single may go, bulk
	// work one interval later; no burst.
	kh, kl, _ := plan(s.refill(until, l), until, l, 1, 10)
	assert.Equal(t, [2]int{1, 0}, [2]int{kh, kl})
	kh, kl, due := plan(s.refill(until, l), until, l, 0, 10)
	assert.Equal(t, [2]int{0, 0}, [2]int{kh, kl})
	assert.Equal(t, until.Add(100*time.Millisecond), due)
	// A shorter pause reported later does not shorten it.
	s2 := s.throttle(t0.Add(time.Second), t0.Add(1500*time.Millisecond), l)
	assert.Equal(t, until, s2.PausedUntil)
}

// TestSimulatedSaturation runs the grant rule over 10 s of simulated time,
// two processes each with Low waiters always queued and reading the state
// fresh, plus singles arriving at random, alone or one at each process at
// once: no window of any length d holds more than burst + rate·d grants,
// Low reaches ≥ 95 % of the rate, a lone single is granted at once and the
// second of a pair within one interval.
func TestSimulatedSaturation(t *testing.T) {
	l := limits{rate: 10, burst: 15}
	rng := rand.New(rand.NewPCG(1, 2))
	s := state{Tokens: 15, At: t0}
	var grants []time.Time
	var highPending []time.Time // arrival times, any process
	nextHigh := t0.Add(time.Second)
	var maxLatency time.Duration
	const step = time.Millisecond
	end := t0.Add(10 * time.Second)
	for now := t0; now.Before(end); now = now.Add(step) {
		if !now.Before(nextHigh) {
			highPending = append(highPending, now)
			if rng.IntN(3) == 0 {
				highPending = append(highPending, now)
			}
			nextHigh = now.Add(200*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond))))
		}
		for range 2 { // each process in turn
			s = s.refill(now, l)
			kh, kl, _ := plan(s, now, l, min(len(highPending), 1), 8)
			s = s.take(kh + kl)
			for range kh {
				maxLatency = max(maxLatency, now.Sub(highPending[0]))
				highPending = highPending[1:]
			}
			for range kh + kl {
				grants = append(grants, now)
			}
		}
	}
	for i := range grants {
		for j := i; j < len(grants); j++ {
			d := grants[j].Sub(grants[i]).Seconds()
			require.LessOrEqual(t, float64(j-i+1), 15+10*d+1e-6, "window %s–%s", grants[i], grants[j])
		}
	}
	assert.LessOrEqual(t, maxLatency, 100*time.Millisecond)
	assert.GreaterOrEqual(t, float64(len(grants)), 0.95*(15+10*10))
	t.Logf("grants %d in 10 s (budget %d), max single latency %s", len(grants), 15+10*10, maxLatency)
}

func TestKVKey(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	seen := map[string]string{}
	for _, k := range []string{"", "amazon-connect/us-east-1/", "a.b", ".", "x y*>", "ünïcödé", strings.Repeat("long", 100), strings.Repeat("long", 101)} {
		enc := kvKey(k)
		assert.Regexp(t, valid, enc)
		assert.False(t, strings.HasPrefix(enc, ".") || strings.HasSuffix(enc, "."))
		assert.LessOrEqual(t, len(enc), 202)
		_, dup := seen[enc]
		assert.False(t, dup, "%q and %q", k, seen[enc])
		seen[enc] = k
	}
}

func TestRateWindow(t *testing.T) {
	var w rateWindow
	for i := range 100 { // 20 per second for 5 s
		w.add(t0.Add(time.Duration(i)*50*time.Millisecond), 1)
	}
	assert.InDelta(t, 20, w.perSecond(t0.Add(5*time.Second)), 0.01)
	assert.Zero(t, w.perSecond(t0.Add(time.Minute)))
}
