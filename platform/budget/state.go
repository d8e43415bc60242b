package budget

import (
	"encoding/json"
	"math"
	"time"
)

// state is a quota key's token bucket as stored in its KV key. Every
// change is a compare-and-set on the revision it was computed from, so the
// successive states of one key form a single chain whatever the number of
// processes.
type state struct {
	// Tokens is what the bucket held at At: 0 to burst.
	Tokens float64 `json:"tokens"`
	// At is when Tokens was computed; it never moves back. After a
	// throttling answer it lies in the future (PausedUntil − 1/rate): no
	// refill before then.
	At time.Time `json:"at"`
	// PausedUntil: no call is granted before it.
	PausedUntil time.Time `json:"pausedUntil,omitzero"`
	// Rate and Burst are the limits of the process that wrote the state,
	// for people reading the bucket; every process refills with its own.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

// limits are a budget's configured rate (tokens per second, > 0) and burst
// (the bucket's capacity, ≥ 1).
type limits struct {
	rate  float64
	burst int
}

// interval is the time one token takes to accrue.
func (l limits) interval() time.Duration { return seconds(1 / l.rate) }

// maxWait bounds the durations computed from a rate, so that a tiny one
// does not overflow them.
const maxWait = 24 * time.Hour

// seconds is x seconds, rounded up to the nanosecond, within 0 to maxWait.
func seconds(x float64) time.Duration {
	if !(x > 0) {
		return 0
	}
	if x >= maxWait.Seconds() {
		return maxWait
	}
	return time.Duration(math.Ceil(x * float64(time.Second)))
}

// reserve is how many tokens a Low grant must leave in the bucket for
// singles: one, unless the bucket holds only one (burst 1), where keeping
// it would starve bulk work forever.
func (l limits) reserve() float64 { return min(1, float64(l.burst-1)) }

// epsilon absorbs the rounding of the refill arithmetic, so that a token
// due at t is whole at t.
const epsilon = 1e-9

// decodeState reads a stored state. Anything unreadable counts as an empty
// bucket at now: the safe side, until the next write replaces it.
func decodeState(data []byte, now time.Time) state {
	var s state
	if err := json.Unmarshal(data, &s); err != nil || s.At.IsZero() {
		return state{At: now}
	}
	return s
}

func (s state) encode(l limits) []byte {
	s.Rate, s.Burst = l.rate, l.burst
	data, err := json.Marshal(s)
	if err != nil { // floats are kept finite by refill; times are in range
		panic("budget: encode state: " + err.Error())
	}
	return data
}

// refill returns s as of now: tokens accrued at the rate since At, capped
// at the burst, and At moved to now unless it is later (a pause, or a
// writer whose clock is ahead): refill never counts a span of time twice.
func (s state) refill(now time.Time, l limits) state {
	if math.IsNaN(s.Tokens) || s.Tokens < 0 {
		s.Tokens = 0
	}
	s.Tokens = min(s.Tokens, float64(l.burst))
	if now.After(s.At) {
		s.Tokens = min(float64(l.burst), s.Tokens+l.rate*now.Sub(s.At).Seconds())
		s.At = now
	}
	return s
}

// whole is how many whole tokens there are above floor.
func whole(tokens, floor float64) int {
	if n := math.Floor(tokens - floor + epsilon); n > 0 {
		return int(min(n, math.MaxInt32))
	}
	return 0
}

// plan decides, from s refilled to now, how many of high High and low Low
// waiters may be granted at once: High while a whole token is left, Low
// while a whole token is left above the reserve. With none grantable, due
// is when the first one will be (the next High's token if any waits, else
// the next Low's), assuming no other process takes tokens first.
func plan(s state, now time.Time, l limits, high, low int) (kHigh, kLow int, due time.Time) {
	if now.Before(s.PausedUntil) {
		return 0, 0, s.PausedUntil
	}
	kHigh = min(high, whole(s.Tokens, 0))
	kLow = min(low, whole(s.Tokens-float64(kHigh), l.reserve()))
	if kHigh+kLow > 0 || high+low == 0 {
		return kHigh, kLow, time.Time{}
	}
	need := 1.0
	if high == 0 {
		need += l.reserve()
	}
	// Tokens accrue from At (which is now, or later during a pause).
	due = s.At.Add(seconds((need - s.Tokens) / l.rate))
	if due.Before(s.PausedUntil) {
		due = s.PausedUntil
	}
	return 0, 0, due
}

// take removes n tokens from s (refilled to now by the caller).
func (s state) take(n int) state {
	s.Tokens = max(0, s.Tokens-float64(n))
	return s
}

// throttle empties s at now and pauses it until until: no grant before
// until, and the first token whole exactly then, so that calls resume at
// the rate, not with a burst.
func (s state) throttle(now, until time.Time, l limits) state {
	s = s.refill(now, l)
	if until.After(s.PausedUntil) {
		s.PausedUntil = until
	}
	s.Tokens = 0
	if at := s.PausedUntil.Add(-l.interval()); at.After(s.At) {
		s.At = at
	}
	return s
}
