// Package budget is the call budget of a contact-center platform shared by
// every contactstop process: a token bucket per quota key (an account and
// region of the platform, as a binding names it) whose state lives in a
// NATS JetStream key-value bucket, so that any number of `serve` replicas
// bound to one quota key stay within the platform's limit together
// (Amazon Connect: 10 StopContact calls per second, burst 15, per account
// and Region, for all callers).
//
// # The bucket
//
// Each quota key has one KV key holding {tokens, at, pausedUntil}. A
// process that wants calls reads it, refills it to its own wall-clock time
// (tokens += rate·(now−at), at most burst; at never moves back), takes
// whole tokens, and writes the result with a compare-and-set on the
// revision it read. A conflict means another process wrote first: it
// reads again and decides anew. A call is granted only once its write is
// acknowledged, so the successive states of a key form one chain, and in
// any span of time of length d at most burst + rate·d calls are granted,
// whatever the number of processes. A write whose answer is lost (a
// timeout) at worst takes tokens that nobody uses.
//
// Refill is computed from the wall clock of the process doing the
// compare-and-set: replicas' clocks must agree (NTP), as bulk leases
// already require. A replica whose clock runs ahead by δ can grant up to
// rate·δ calls early; one that runs behind grants nothing until its clock
// passes the stored time.
//
// # Priorities
//
// Single requests (High) go before bulk work (Low). Across processes the
// rule is in the bucket: High takes a token while one is whole; Low only
// while a whole token would remain after it (for burst 1, where nothing
// can be kept, Low takes the last token too). While bulk work saturates the
// budget the bucket therefore keeps one token for singles, and a single
// arriving at any replica finds it at once; if another single took it, the
// next one is whole one interval (1/rate) later, before any Low may take
// again. Within a process, waiters are served High first, then Low, first
// come first served within a priority, by one goroutine per quota key that
// does the KV round trips for all of them (taking tokens for several
// waiters in one write) and sleeps until the next token is due rather
// than polling.
//
// # Throttling
//
// When the platform answers "throttled", Budget.Throttled empties the
// bucket and pauses every process until now + max(retryAfter, 1/rate);
// the first token is whole then, and calls resume at the rate, not with a
// burst.
//
// A KV that cannot be reached only delays grants: the goroutine retries
// with a backoff of 25 ms to 1 s, and Wait fails only when its context
// ends (or the Budgets are closed).
package budget

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the budgets of a process. The zero value is usable.
type Config struct {
	// Bucket is the KV bucket holding the budgets' states. Default
	// "contactstop-budgets".
	Bucket string
	// Replicas is the bucket's number of replicas in a JetStream cluster,
	// 1 to 5. Default 1.
	Replicas int
	// Registerer, when set, gets the budgets' metrics
	// (contactstop_platform_budget_*). Close unregisters them.
	Registerer prometheus.Registerer
	// Now is the wall clock refill is computed from. Default time.Now.
	// For tests; the goroutines still sleep in real time.
	Now func() time.Time
}

// DefaultBucket is the KV bucket of the budgets unless Config.Bucket says
// otherwise.
const DefaultBucket = "contactstop-budgets"

// Timings.
const (
	// opTimeout bounds one KV read or write.
	opTimeout = 2 * time.Second
	// backoffMin and backoffMax bound the wait after a failed KV
	// operation; it doubles from one to the other.
	backoffMin = 25 * time.Millisecond
	backoffMax = time.Second
	// throttleWait is how long Throttled waits for the pause to be stored.
	throttleWait = time.Second
)

// ErrClosed is returned by Wait once the Budgets are closed.
var ErrClosed = errors.New("budget: closed")

var bucketNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Priority orders the waiters of a budget.
type Priority uint8

const (
	// Low is bulk work (clears, emergencies): it takes a token only while
	// one would remain for singles. It is the zero value, so that a caller
	// who forgets to choose does not compete with singles.
	Low Priority = iota
	// High is a single request.
	High
)

func (p Priority) String() string {
	if p == High {
		return "high"
	}
	return "low"
}

// Budgets are the budgets of one process, one per quota key, on one KV
// bucket. They are safe for concurrent use.
type Budgets struct {
	kv      jetstream.KeyValue
	now     func() time.Time
	reg     prometheus.Registerer
	metrics *metrics

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	byKey  map[string]*Budget
	closed bool

	js    jetstream.JetStream
	kvCfg jetstream.KeyValueConfig
}

// openBucket binds to the bucket when it exists (no update: replicas
// restarting do not rewrite it), else creates it.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// Ensure creates the bucket again if it disappeared (deleted by hand),
// returning its name then; serve's keeper calls it with the store's. Grants
// wait, retrying, while it is missing; the first write after it is back
// starts a full bucket.
func (bs *Budgets) Ensure(ctx context.Context) (recreated []string, err error) {
	_, err = bs.js.KeyValue(ctx, bs.kvCfg.Bucket)
	switch {
	case err == nil:
		return nil, nil
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("budget: look up bucket %q: %w", bs.kvCfg.Bucket, err)
	}
	if _, err := bs.js.CreateKeyValue(ctx, bs.kvCfg); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("budget: re-create bucket %q: %w", bs.kvCfg.Bucket, err)
	}
	return []string{bs.kvCfg.Bucket}, nil
}

// Open creates the bucket (history 1, file storage), or updates its
// configuration if it exists, and returns the budgets on it. Any number of
// processes may call it at start-up.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Budgets, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if !bucketNameRe.MatchString(cfg.Bucket) {
		return nil, fmt.Errorf("budget: config: Bucket %q must be [A-Za-z0-9_-]", cfg.Bucket)
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("budget: config: Replicas %d must be 1 to 5", cfg.Replicas)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kvCfg := jetstream.KeyValueConfig{
		Bucket:       cfg.Bucket,
		Description:  "contactstop platform call budgets: key k-<base64url of the quota key>, value JSON token bucket {tokens, at, pausedUntil} (platform/budget)",
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
		MaxValueSize: 1 << 10,
	}
	kv, err := openBucket(ctx, js, kvCfg)
	if err != nil {
		return nil, fmt.Errorf("budget: open bucket %q: %w", cfg.Bucket, err)
	}
	bs := &Budgets{kv: kv, js: js, kvCfg: kvCfg, now: cfg.Now, reg: cfg.Registerer, byKey: map[string]*Budget{}}
	if bs.reg != nil {
		m := newMetrics(bs)
		if err := bs.reg.Register(m); err != nil {
			return nil, fmt.Errorf("budget: register metrics: %w", err)
		}
		bs.metrics = m
	}
	bs.ctx, bs.cancel = context.WithCancel(context.Background())
	return bs, nil
}

// Get returns the budget of a quota key (any string), creating it on first
// use, with the given rate (calls per second, > 0) and burst (≥ 1); a call
// with other limits than the last applies them from then on. It panics on
// limits out of range, which binding validation excludes.
func (bs *Budgets) Get(key string, rate float64, burst int) *Budget {
	if !(rate > 0) || math.IsInf(rate, 0) || burst < 1 {
		panic(fmt.Sprintf("budget: quota key %q: rate %v must be > 0 and burst %d ≥ 1", key, rate, burst))
	}
	l := limits{rate: rate, burst: burst}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.byKey[key]; ok {
		b.mu.Lock()
		changed := b.limits != l
		b.limits = l
		b.mu.Unlock()
		if changed {
			b.wake()
		}
		return b
	}
	b := &Budget{bs: bs, key: key, kvKey: kvKey(key), limits: l, kick: make(chan struct{}, 1)}
	bs.byKey[key] = b
	if !bs.closed {
		bs.wg.Add(1)
		go b.run()
	}
	return b
}

// Close stops the budgets' goroutines and waits for them; waiting calls
// return ErrClosed. It unregisters the metrics. It is safe to call more
// than once.
func (bs *Budgets) Close() {
	bs.mu.Lock()
	if bs.closed {
		bs.mu.Unlock()
		return
	}
	bs.closed = true
	bs.mu.Unlock()
	bs.cancel()
	bs.wg.Wait()
	if bs.metrics != nil {
		bs.reg.Unregister(bs.metrics)
	}
}

func (bs *Budgets) budgets() []*Budget {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := make([]*Budget, 0, len(bs.byKey))
	for _, b := range bs.byKey {
		out = append(out, b)
	}
	return out
}

// kvKey is the KV key of a quota key: "k-" and its base64url (a KV key
// allows [-/_=.A-Za-z0-9]), or "h-" and the hex SHA-256 of one too long
// for a subject.
func kvKey(quotaKey string) string {
	if enc := base64.RawURLEncoding.EncodeToString([]byte(quotaKey)); len(enc) <= 200 {
		return "k-" + enc
	}
	sum := sha256.Sum256([]byte(quotaKey))
	return "h-" + hex.EncodeToString(sum[:])
}

// Budget is the shared call budget of one quota key. It is safe for
// concurrent use.
type Budget struct {
	bs    *Budgets
	key   string
	kvKey string
	kick  chan struct{} // wakes run; capacity 1

	mu     sync.Mutex
	limits limits
	high   []*waiter
	low    []*waiter
	// pausedUntil is the latest pause this process asked for: it grants
	// nothing before it, even before the pause is stored.
	pausedUntil time.Time
	// throttle is a pause not yet stored; nil when none.
	throttle *pendingThrottle
	window   rateWindow

	// Owned by run.
	cache     state  // the state last read or written
	rev       uint64 // its revision; 0: the key has no value (create it)
	haveCache bool
	retryAt   time.Time // no KV operation before it (backoff)
	failures  int       // consecutive failed KV operations
	conflicts int       // consecutive write conflicts
}

type waiter struct {
	ready     chan struct{} // closed when granted
	granted   bool          // under Budget.mu
	grantedAt time.Time     // under Budget.mu
}

type pendingThrottle struct {
	until time.Time
	done  chan struct{} // closed once stored
}

// Key is the quota key.
func (b *Budget) Key() string { return b.key }

// Wait blocks until this process may make one call within the budget, and
// returns nil; or returns the context's error when it ends first, or
// ErrClosed once the Budgets are closed. High waiters go before Low ones,
// in this process and across processes (see the package documentation).
//
// A grant the caller takes up more than one token interval late (its
// goroutine starved of CPU) is given up and waited for again: calls made
// that late would reach the platform bunched with the next ones, beyond
// its rate, whatever the grants' spacing.
func (b *Budget) Wait(ctx context.Context, p Priority) error {
	for {
		late, err := b.wait(ctx, p)
		if err != nil || late <= b.interval() {
			return err
		}
		b.bs.metrics.late(b.key)
	}
}

func (b *Budget) interval() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limits.interval()
}

// wait is one Wait: how late the grant was taken up, or the error.
func (b *Budget) wait(ctx context.Context, p Priority) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if p != High {
		p = Low
	}
	start := time.Now()
	w := &waiter{ready: make(chan struct{})}
	b.mu.Lock()
	if b.bs.ctx.Err() != nil {
		b.mu.Unlock()
		return 0, ErrClosed
	}
	if p == High {
		b.high = append(b.high, w)
	} else {
		b.low = append(b.low, w)
	}
	b.mu.Unlock()
	b.wake()
	var err error
	select {
	case <-w.ready:
		b.bs.metrics.waited(p, time.Since(start))
		b.mu.Lock()
		late := time.Since(w.grantedAt)
		b.mu.Unlock()
		return late, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-b.bs.ctx.Done():
		err = ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted { // granted meanwhile: the token is taken, use it
		b.bs.metrics.waited(p, time.Since(start))
		return 0, nil
	}
	if p == High {
		b.high = slices.DeleteFunc(b.high, func(x *waiter) bool { return x == w })
	} else {
		b.low = slices.DeleteFunc(b.low, func(x *waiter) bool { return x == w })
	}
	return 0, err
}

// Throttled reports that the platform refused a call for its rate limit:
// every process sharing the budget pauses until now + max(retryAfter,
// 1/rate), and the bucket empties. This process pauses at once; Throttled
// returns once the pause is stored for the others, or after a second if
// the KV cannot be reached (it goes on trying).
func (b *Budget) Throttled(retryAfter time.Duration) {
	b.mu.Lock()
	if b.bs.ctx.Err() != nil {
		b.mu.Unlock()
		return
	}
	until := b.bs.now().Add(max(retryAfter, b.limits.interval()))
	if until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
	if b.throttle == nil {
		b.throttle = &pendingThrottle{done: make(chan struct{})}
	}
	if until.After(b.throttle.until) {
		b.throttle.until = until
	}
	done := b.throttle.done
	b.mu.Unlock()
	b.bs.metrics.throttled(b.key)
	b.wake()
	t := time.NewTimer(throttleWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-b.bs.ctx.Done():
	}
}

// rates are the configured rate and this process's grants per second.
func (b *Budget) rates(now time.Time) (rate, granted float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limits.rate, b.window.perSecond(now)
}

func (b *Budget) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run does the KV round trips of the budget's waiters until Close.
func (b *Budget) run() {
	defer b.bs.wg.Done()
	done := b.bs.ctx.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if b.bs.ctx.Err() != nil {
			return
		}
		d := b.step()
		switch {
		case d == 0:
			continue
		case d < 0: // nothing to do
			select {
			case <-b.kick:
			case <-done:
				return
			}
		default:
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-b.kick:
				timer.Stop()
			case <-done:
				return
			}
		}
	}
}

// step makes at most one KV round trip for the budget's waiters and its
// pending throttle, and returns how long to wait before the next step
// (unless woken): 0 for none, < 0 for until woken.
func (b *Budget) step() time.Duration {
	b.mu.Lock()
	high, low := len(b.high), len(b.low)
	l := b.limits
	localPause := b.pausedUntil
	thr := b.throttle
	var thrUntil time.Time
	if thr != nil {
		thrUntil = thr.until
	}
	b.mu.Unlock()
	if thr == nil && high+low == 0 {
		return -1
	}
	if wait := time.Until(b.retryAt); wait > 0 {
		return wait
	}
	ctx, cancel := context.WithTimeout(b.bs.ctx, opTimeout)
	defer cancel()
	if !b.haveCache {
		if err := b.read(ctx); err != nil {
			return b.failed()
		}
	}
	now := b.bs.now()
	if thr != nil {
		if err := b.write(ctx, b.cache.throttle(now, thrUntil, l), l); err != nil {
			return b.writeFailed(err)
		}
		b.mu.Lock()
		if b.throttle == thr && !thr.until.After(thrUntil) {
			close(thr.done)
			b.throttle = nil
		}
		b.mu.Unlock()
		return 0
	}
	if now.Before(localPause) {
		return localPause.Sub(now)
	}
	s := b.cache.refill(now, l)
	kHigh, kLow, due := plan(s, now, l, high, low)
	if kHigh+kLow == 0 {
		b.conflicts = 0
		return max(due.Sub(now), time.Microsecond)
	}
	if err := b.write(ctx, s.take(kHigh+kLow), l); err != nil {
		return b.writeFailed(err)
	}
	b.grant(kHigh + kLow)
	return 0
}

// read loads the state and its revision; a key without a value is a full
// bucket, to be created.
func (b *Budget) read(ctx context.Context) error {
	e, err := b.bs.kv.Get(ctx, b.kvKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		b.mu.Lock()
		burst := b.limits.burst
		b.mu.Unlock()
		b.cache, b.rev = state{Tokens: float64(burst), At: b.bs.now()}, 0
	case err != nil:
		return err
	default:
		b.cache, b.rev = decodeState(e.Value(), b.bs.now()), e.Revision()
	}
	b.haveCache = true
	return nil
}

// write stores s by compare-and-set on the cached revision; on success s
// becomes the cache.
func (b *Budget) write(ctx context.Context, s state, l limits) error {
	var rev uint64
	var err error
	if b.rev == 0 {
		rev, err = b.bs.kv.Create(ctx, b.kvKey, s.encode(l))
	} else {
		rev, err = b.bs.kv.Update(ctx, b.kvKey, s.encode(l), b.rev)
	}
	if err != nil {
		b.haveCache = false
		return err
	}
	b.cache, b.rev = s, rev
	b.failures, b.conflicts = 0, 0
	return nil
}

// writeFailed decides what follows a failed write: a conflict (another
// process wrote) reads again at once, the third in a row and later ones
// after a short random pause (a burst of contention, or a replica that
// answers reads before it has the latest write); any other error backs
// off.
func (b *Budget) writeFailed(err error) time.Duration {
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return b.failed()
	}
	b.failures = 0
	b.conflicts++
	if b.conflicts < 3 {
		return 0
	}
	d := time.Duration(rand.Int64N(int64(min(time.Millisecond<<(b.conflicts-3), 20*time.Millisecond)))) + 1
	b.retryAt = time.Now().Add(d)
	return d
}

// failed backs off after a KV operation that failed other than by a
// conflict: the KV is unavailable, or slow.
func (b *Budget) failed() time.Duration {
	b.haveCache = false
	d := backoffMin << min(b.failures, 10)
	d = min(d, backoffMax)
	d = d/2 + rand.N(d/2+1) // jitter, so that processes do not retry in step
	b.failures++
	b.retryAt = time.Now().Add(d)
	return d
}

// grant hands n tokens just taken to the longest waiting waiters, High
// first. Those the planned waiters no longer need (their context ended
// meanwhile) go to the next ones; any left over are lost, never kept for
// later.
func (b *Budget) grant(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var high, low int
	now := time.Now()
	for ; n > 0 && len(b.high) > 0; n-- {
		b.high[0].granted, b.high[0].grantedAt = true, now
		close(b.high[0].ready)
		b.high[0] = nil
		b.high = b.high[1:]
		high++
	}
	for ; n > 0 && len(b.low) > 0; n-- {
		b.low[0].granted, b.low[0].grantedAt = true, now
		close(b.low[0].ready)
		b.low[0] = nil
		b.low = b.low[1:]
		low++
	}
	b.window.add(time.Now(), high+low)
	b.bs.metrics.grantedN(b.key, High, high)
	b.bs.metrics.grantedN(b.key, Low, low)
}
