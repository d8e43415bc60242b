package worker

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Config configures a Worker. The zero value of every field means "use the
// default" noted beside it; New fills the defaults in and validates.
type Config struct {
	// Workers is the number of requests this process has in hand at once:
	// the pull buffer holds as many, and the batched path works on them in
	// batches of BatchSize, Workers/BatchSize batches at a time.
	// Default 1024.
	Workers int
	// BatchSize is the most requests decided together: their contacts
	// read in one request, their writes and results published without
	// waiting in between. 1 turns batching off. Default 128 (at most
	// Workers).
	BatchSize int
	// MaxAckPending is the consumer's limit of delivered but unacknowledged
	// requests, shared by every worker process on the consumer. It must be
	// at least 2×Workers (the requests being handled plus one pull buffer);
	// with several replicas it should be at least 2×Workers×replicas.
	// Default 2048.
	MaxAckPending int
	// AckWait is how long the server waits for an acknowledgement before it
	// redelivers a request to any worker. A delivery is given up (handed
	// back, not counted as an attempt) if it is still unsettled AckWait/4
	// before that, which only a paused or starved process ever meets.
	// Default 30s.
	AckWait time.Duration
	// DuplicateWindow is the duplicate window of the results stream
	// (TopologyConfig.DuplicateWindow). A result published again — by a
	// redelivery of the message that decided it, or by a bulk run taking
	// over from one that died — is dropped only within it, and both come
	// at most about twice AckWait later: it must be at least 2×AckWait.
	// Default 2m.
	DuplicateWindow time.Duration
	// MaxAttempts is how many attempts that meet transient errors a
	// request gets before it ends as INTERNAL_ERROR and is copied to the
	// dead-letter stream. An attempt is one delivery whose retries (up to
	// RetryMaxElapsed) all failed; deliveries handed back at shutdown, or
	// redelivered while still in hand, are not attempts. Attempts are
	// counted in the store (the request's outcome record). Default 5.
	MaxAttempts int
	// RetryInitial, RetryMax and RetryMaxElapsed bound the exponential
	// backoff (with jitter) applied to transient errors within one
	// delivery. Defaults 20ms, 1s, 5s.
	RetryInitial    time.Duration
	RetryMax        time.Duration
	RetryMaxElapsed time.Duration
	// RedeliveryDelay is the delay of the first NakWithDelay after a
	// delivery's retries are exhausted; it doubles with each delivery up to
	// RedeliveryDelayMax. Defaults 1s and 30s.
	RedeliveryDelay    time.Duration
	RedeliveryDelayMax time.Duration
	// Bulks is how many bulk requests this process runs at once. Default 2.
	Bulks int
	// BulkWorkers is how many contacts one bulk run stops at once, in
	// batches of BatchSize (BulkWorkers/BatchSize batches in flight).
	// Default 1024.
	BulkWorkers int
	// BulkLease is how long a bulk run's lease lasts unless renewed (it is
	// renewed every second): when its runner dies, another takes the bulk
	// request over after this. Keep it at most AckWait. Default 30s.
	BulkLease time.Duration
	// Emergency turns on the emergency lane: emergency.broadcast.<instance>
	// messages clear the instance's QUEUED contacts. Default off; the
	// topology must have been provisioned with Emergency too.
	Emergency bool
	// EmergencyMaxAge ignores broadcasts older than this when they are
	// first seen (a backlog found at start-up is not an emergency any
	// more). Default 5m.
	EmergencyMaxAge time.Duration
	// Authorizer, when set, turns authorization on: every request's
	// securityUser token must grant contact:Stop on the contact, and every
	// bulk request's and emergency broadcast's contact:BulkStop on the
	// instance. Nil runs open.
	Authorizer Authorizer
	// Ender, when set, ends contacts in place of the store's
	// compare-and-set (a platform adapter). Default: the store.
	Ender Ender
	// Platforms, when set, resolves instances bound to a contact-center
	// platform: their contacts are ended there (platform.go).
	Platforms Platforms
	// Metrics, when set, records the worker's Prometheus metrics (see
	// NewMetrics).
	Metrics *Metrics
	// Logger receives the worker's logs; it is named "worker". Default: no
	// logging.
	Logger *zap.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// deliveryBudget is how long one delivery may take: its context ends then,
// well before the server redelivers it (AckWait), so a process never
// works on a request another process has been given; a delivery that
// signals progress (InProgress) starts a new budget.
func (c Config) deliveryBudget() time.Duration { return c.AckWait - c.AckWait/4 }

// Defaults of Config and TopologyConfig, defined once: setDefaults and
// serve's flags use them.
const (
	DefaultWorkers            = 1024
	DefaultBatchSize          = 128
	DefaultMaxAckPending      = 2048
	DefaultAckWait            = 30 * time.Second
	DefaultMaxAttempts        = 5
	DefaultRetryInitial       = 20 * time.Millisecond
	DefaultRetryMax           = time.Second
	DefaultRetryMaxElapsed    = 5 * time.Second
	DefaultRedeliveryDelay    = time.Second
	DefaultRedeliveryDelayMax = 30 * time.Second
	DefaultBulks              = 2
	DefaultBulkWorkers        = 1024
	DefaultEmergencyMaxAge    = 5 * time.Minute
	DefaultReplicas           = 1
	DefaultDuplicateWindow    = 2 * time.Minute
	DefaultMaxAge             = 7 * 24 * time.Hour
	DefaultStreamMaxBytes     = 1 << 30
)

func (c *Config) setDefaults() {
	setDefault(&c.Workers, DefaultWorkers)
	setDefault(&c.BatchSize, min(DefaultBatchSize, c.Workers))
	setDefault(&c.MaxAckPending, max(DefaultMaxAckPending, 2*c.Workers))
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.DuplicateWindow, DefaultDuplicateWindow)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.RetryInitial, DefaultRetryInitial)
	setDefault(&c.RetryMax, DefaultRetryMax)
	setDefault(&c.RetryMaxElapsed, DefaultRetryMaxElapsed)
	setDefault(&c.RedeliveryDelay, DefaultRedeliveryDelay)
	setDefault(&c.RedeliveryDelayMax, DefaultRedeliveryDelayMax)
	setDefault(&c.Bulks, DefaultBulks)
	setDefault(&c.BulkWorkers, DefaultBulkWorkers)
	setDefault(&c.BulkLease, min(DefaultAckWait, c.AckWait))
	setDefault(&c.EmergencyMaxAge, DefaultEmergencyMaxAge)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// setDefault sets *v to def when it is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every setting that is out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers must be at least 1, got %d", c.Workers))
	}
	if c.BatchSize < 1 || c.BatchSize > c.Workers {
		errs = append(errs, fmt.Errorf("batch size must be 1 to workers (%d), got %d", c.Workers, c.BatchSize))
	}
	if c.MaxAckPending < 2*c.Workers {
		errs = append(errs, fmt.Errorf("max ack pending (%d) must be at least 2×workers (%d)", c.MaxAckPending, 2*c.Workers))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait must be at least 1s, got %s", c.AckWait))
	}
	if c.DuplicateWindow < 2*c.AckWait {
		errs = append(errs, fmt.Errorf("duplicate window (%s) must be at least 2×ack wait (%s): a result published again by a redelivery "+
			"or a bulk takeover must fall within it", c.DuplicateWindow, 2*c.AckWait))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts must be at least 1, got %d", c.MaxAttempts))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("retry backoff must satisfy 0 < initial (%s) <= max (%s)", c.RetryInitial, c.RetryMax))
	}
	if c.RetryMaxElapsed <= 0 || c.RetryMaxElapsed >= c.AckWait {
		errs = append(errs, fmt.Errorf("retry max elapsed (%s) must be positive and below ack wait (%s)", c.RetryMaxElapsed, c.AckWait))
	}
	if c.RetryMax > c.deliveryBudget()/2 {
		errs = append(errs, fmt.Errorf("retry max (%s) must be at most half of a delivery's budget (%s: three quarters of ack wait %s): "+
			"a delivery signals progress between retries, and must not wait longer than that in between", c.RetryMax, c.deliveryBudget(), c.AckWait))
	}
	if c.RedeliveryDelay <= 0 || c.RedeliveryDelayMax < c.RedeliveryDelay {
		errs = append(errs, fmt.Errorf("redelivery delay must satisfy 0 < delay (%s) <= max (%s)", c.RedeliveryDelay, c.RedeliveryDelayMax))
	}
	if c.Bulks < 1 || c.BulkWorkers < 1 {
		errs = append(errs, fmt.Errorf("bulks (%d) and bulk workers (%d) must be at least 1", c.Bulks, c.BulkWorkers))
	}
	if c.BulkLease < time.Second || c.BulkLease > c.AckWait {
		errs = append(errs, fmt.Errorf("bulk lease (%s) must be between 1s and ack wait (%s)", c.BulkLease, c.AckWait))
	}
	return errors.Join(errs...)
}
