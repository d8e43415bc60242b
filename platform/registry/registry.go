// Package registry resolves contactstop instances to the platforms they are
// bound to (store.Binding), for the worker: the platform's adapter,
// instrumented, and its shared call budgets. It implements
// worker.Platforms.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/amazonconnect"
	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/cxone"
	"github.com/contactstop/contactstop/platform/genesys"
	"github.com/contactstop/contactstop/platform/twilio"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// Instances reads instance records (store.KV).
type Instances interface {
	GetInstance(ctx context.Context, instanceID string) (store.Instance, error)
}

// Config configures a Registry.
type Config struct {
	Instances Instances
	Budgets   *budget.Budgets
	// BudgetsFunc, when Budgets is nil, returns the budgets once they are
	// open (serve opens them in the background when the bucket cannot be
	// reached at start), or nil until then: bound instances wait.
	BudgetsFunc func() *budget.Budgets
	// New builds the adapter of a binding. Default: the platform's own
	// (Amazon Connect through the AWS SDK, credentials from the
	// environment).
	New func(ctx context.Context, b store.Binding, onAttempt func(op string)) (platform.Platform, error)
	// TTL is how long an instance's binding is used before it is read
	// again: a changed binding applies within it. Default 5 s.
	TTL        time.Duration
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	Now        func() time.Time
}

// Registry resolves instances to their bound platforms. Safe for
// concurrent use.
type Registry struct {
	cfg     Config
	metrics *metrics

	mu        sync.RWMutex
	instances map[string]cached
	bound     map[store.Binding]*worker.Bound
}

type cached struct {
	bound *worker.Bound
	until time.Time
}

// New makes a Registry.
func New(cfg Config) (*Registry, error) {
	if cfg.Instances == nil || cfg.Budgets == nil && cfg.BudgetsFunc == nil {
		return nil, errors.New("registry: Instances and Budgets (or BudgetsFunc) are required")
	}
	if cfg.New == nil {
		cfg.New = NewAdapter
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registry{cfg: cfg, instances: map[string]cached{}, bound: map[store.Binding]*worker.Bound{}}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	return r, nil
}

// NewAdapter builds the adapter of a binding's platform.
func NewAdapter(ctx context.Context, b store.Binding, onAttempt func(op string)) (platform.Platform, error) {
	switch b.Platform {
	case store.PlatformAmazonConnect:
		return amazonconnect.New(ctx, amazonconnect.Config{ConnectInstanceID: b.ConnectInstanceID, Region: b.Region,
			Endpoint: b.Endpoint, OnAttempt: onAttempt})
	case store.PlatformCXone:
		// --endpoint stands for CXone's hosts: its API and its token issuer
		// (a proxy in front of both, or a fake).
		return cxone.New(ctx, cxone.Config{TenantID: b.TenantID, Endpoint: b.Endpoint, DiscoveryURL: b.Endpoint, OnAttempt: onAttempt})
	case store.PlatformTwilio:
		return twilio.New(ctx, twilio.Config{WorkspaceSID: b.WorkspaceSID, Endpoint: b.Endpoint, OnAttempt: onAttempt})
	case store.PlatformGenesys:
		return genesys.New(ctx, genesys.Config{Region: b.Region, Endpoint: b.Endpoint, OnAttempt: onAttempt})
	}
	return nil, fmt.Errorf("registry: platform %q is not supported", b.Platform)
}

// For returns the platform instanceID is bound to, or nil when it is not
// bound. It implements worker.Platforms.
func (r *Registry) For(ctx context.Context, instanceID string) (*worker.Bound, error) {
	now := r.cfg.Now()
	r.mu.RLock() // every request of every instance comes here: readers share
	c, ok := r.instances[instanceID]
	r.mu.RUnlock()
	if ok && now.Before(c.until) {
		return c.bound, nil
	}
	inst, err := r.cfg.Instances.GetInstance(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	var b *worker.Bound
	if inst.Binding != nil {
		if b, err = r.boundFor(ctx, *inst.Binding); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.instances[instanceID] = cached{bound: b, until: now.Add(r.cfg.TTL)}
	r.mu.Unlock()
	return b, nil
}

// boundFor returns the adapter and budgets of a binding, made once.
func (r *Registry) boundFor(ctx context.Context, b store.Binding) (*worker.Bound, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if wb, ok := r.bound[b]; ok {
		return wb, nil
	}
	bs := r.cfg.Budgets
	if bs == nil {
		bs = r.cfg.BudgetsFunc()
	}
	if bs == nil {
		return nil, errors.New("the platforms' budgets bucket is not open yet")
	}
	p, err := r.cfg.New(ctx, b, func(op string) { r.metrics.attempt(b.Platform, op) })
	if err != nil {
		return nil, fmt.Errorf("platform %s of %s: %w", b.Platform, b.QuotaKey, err)
	}
	var ip platform.Platform = &instrumented{p: p, name: b.Platform, m: r.metrics}
	if l, ok := p.(platform.Lister); ok {
		ip = &instrumentedLister{instrumented: ip.(*instrumented), l: l}
	}
	wb := &worker.Bound{
		Name:     b.Platform,
		Platform: ip,
		// Every API of the platform has its own limit: DescribeContact
		// gets a budget of its own, of the binding's size.
		Stops:     budgetOf{bs.Get(b.QuotaKey, b.Rate, b.Burst)},
		Describes: budgetOf{bs.Get(b.QuotaKey+"/DescribeContact", b.Rate, b.Burst)},
	}
	r.bound[b] = wb
	r.cfg.Logger.Info("platform binding ready", zap.String("platform", b.Platform), zap.String("quota_key", b.QuotaKey),
		zap.Float64("rate", b.Rate), zap.Int("burst", b.Burst), zap.String("region", b.Region))
	return wb, nil
}

// budgetOf adapts a budget.Budget to the worker's Budget.
type budgetOf struct{ b *budget.Budget }

func (b budgetOf) Wait(ctx context.Context, single bool) error {
	p := budget.Low
	if single {
		p = budget.High
	}
	return b.b.Wait(ctx, p)
}

func (b budgetOf) Throttled(retryAfter time.Duration) { b.b.Throttled(retryAfter) }

// instrumented counts a platform's calls and times them.
type instrumented struct {
	p    platform.Platform
	name string
	m    *metrics
}

func (i *instrumented) StopContact(ctx context.Context, contactID, reason string) error {
	start := time.Now()
	err := i.p.StopContact(ctx, contactID, reason)
	i.m.call(i.name, "StopContact", err, time.Since(start))
	return err
}

func (i *instrumented) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	start := time.Now()
	st, err := i.p.DescribeContact(ctx, contactID)
	i.m.call(i.name, "DescribeContact", err, time.Since(start))
	return st, err
}

// instrumentedLister is instrumented for a platform that lists its
// active contacts.
type instrumentedLister struct {
	*instrumented
	l platform.Lister
}

func (i *instrumentedLister) ListActive(ctx context.Context, fn func(platform.Listed) error) error {
	start := time.Now()
	err := i.l.ListActive(ctx, fn)
	i.m.call(i.name, "ListActive", err, time.Since(start))
	return err
}

// Lists passes the platform's coverage on (inventory.Coverage).
func (i *instrumentedLister) Lists(contactID string) bool {
	if c, ok := i.l.(interface{ Lists(string) bool }); ok {
		return c.Lists(contactID)
	}
	return true
}

// Lister returns the platform instanceID is bound to as a Lister, or nil
// when it is not bound or its platform cannot list its contacts (Amazon
// Connect: its inventory comes from events).
func (r *Registry) Lister(ctx context.Context, instanceID string) (platform.Lister, error) {
	b, err := r.For(ctx, instanceID)
	if err != nil || b == nil {
		return nil, err
	}
	l, ok := b.Platform.(platform.Lister)
	if !ok {
		return nil, nil
	}
	return &confirmingLister{Lister: l, p: b.Platform, describes: b.Describes}, nil
}

// confirmingLister lets an inventory sync ask the platform about a contact
// its listing left out (inventory.Confirmer), within the DescribeContact
// budget, below single requests.
type confirmingLister struct {
	platform.Lister
	p         platform.Platform
	describes worker.Budget
}

func (c *confirmingLister) Confirm(ctx context.Context, contactID string) (platform.Status, error) {
	if err := c.describes.Wait(ctx, false); err != nil {
		return platform.Status{}, err
	}
	st, err := c.p.DescribeContact(ctx, contactID)
	var pe *platform.Error
	if errors.As(err, &pe) && pe.Kind == platform.Throttled {
		c.describes.Throttled(pe.RetryAfter)
	}
	return st, err
}

// Lists passes the platform's coverage on (inventory.Coverage).
func (c *confirmingLister) Lists(contactID string) bool {
	if cov, ok := c.Lister.(interface{ Lists(string) bool }); ok {
		return cov.Lists(contactID)
	}
	return true
}

type metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	attempts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_platform_calls_total",
			Help: "Calls to contact-center platforms, by platform, operation and outcome (ok, or the kind of failure: throttled, not_found, transient, denied, …).",
		}, []string{"platform", "operation", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "contactstop_platform_call_duration_seconds",
			Help:    "Time of one call to a platform, its answer included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"platform", "operation"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "contactstop_platform_sdk_attempts_total",
			Help: "HTTP attempts the platform's SDK made (its own retries are off: one per call, contactstop's backoff retries).",
		}, []string{"platform", "operation"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.latency, m.attempts} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registry: metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) call(name, op string, err error, took time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = platform.KindOf(err).String()
	}
	m.calls.WithLabelValues(name, op, outcome).Inc()
	m.latency.WithLabelValues(name, op).Observe(took.Seconds())
}

func (m *metrics) attempt(name, op string) {
	m.attempts.WithLabelValues(name, op).Inc()
}
