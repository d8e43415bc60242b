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
	// Default 256.
	Workers int
	// BatchSize is the most requests decided together: their contacts
	// read in one request, their writes and results published without
	// waiting in between. 1 turns batching off. Default 64 (at most
	// Workers).
	BatchSize int
	// MaxAckPending is the consumer's limit of delivered but unacknowledged
	// requests, shared by every worker process on the consumer. It must be
	// at least 2×Workers (the requests being handled plus one pull buffer);
	// with several replicas it should be at least 2×Workers×replicas.
	// Default 1024.
	MaxAckPending int
	// AckWait is how long the server waits for an acknowledgement before it
	// redelivers a request to any worker. Default 30s.
	AckWait time.Duration
	// MaxDeliveries is how many deliveries a request that keeps failing
	// with transient errors gets before it ends as INTERNAL_ERROR and is
	// copied to the dead-letter stream. Default 5.
	MaxDeliveries int
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
	// Default 256.
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
	// Metrics, when set, records the worker's Prometheus metrics (see
	// NewMetrics).
	Metrics *Metrics
	// Logger receives the worker's logs; it is named "worker". Default: no
	// logging.
	Logger *zap.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Workers == 0 {
		c.Workers = 256
	}
	if c.BatchSize == 0 {
		c.BatchSize = min(64, c.Workers)
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(1024, 2*c.Workers)
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 20 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = time.Second
	}
	if c.RetryMaxElapsed == 0 {
		c.RetryMaxElapsed = 5 * time.Second
	}
	if c.RedeliveryDelay == 0 {
		c.RedeliveryDelay = time.Second
	}
	if c.RedeliveryDelayMax == 0 {
		c.RedeliveryDelayMax = 30 * time.Second
	}
	if c.Bulks == 0 {
		c.Bulks = 2
	}
	if c.BulkWorkers == 0 {
		c.BulkWorkers = 256
	}
	if c.BulkLease == 0 {
		c.BulkLease = min(30*time.Second, c.AckWait)
	}
	if c.EmergencyMaxAge == 0 {
		c.EmergencyMaxAge = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
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
	if c.MaxDeliveries < 1 {
		errs = append(errs, fmt.Errorf("max deliveries must be at least 1, got %d", c.MaxDeliveries))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("retry backoff must satisfy 0 < initial (%s) <= max (%s)", c.RetryInitial, c.RetryMax))
	}
	if c.RetryMaxElapsed <= 0 || c.RetryMaxElapsed >= c.AckWait {
		errs = append(errs, fmt.Errorf("retry max elapsed (%s) must be positive and below ack wait (%s)", c.RetryMaxElapsed, c.AckWait))
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
