package store

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Instance is a tenant (a contact-center instance) known to the store,
// stored in the instances bucket under its InstanceID. A stop request for an
// instance that is not registered fails with RESOURCE_NOT_FOUND.
type Instance struct {
	InstanceID string    `json:"instanceId"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	// Binding, when set, binds the instance to the contact-center platform
	// that holds its contacts: its stops end them there (SPEC, Platforms).
	Binding *Binding `json:"platform,omitempty"`
}

// Binding is where an instance's contacts really live. It holds
// identifiers and limits only: credentials come from the environment of
// serve and are never stored.
type Binding struct {
	// Platform names the platform (PlatformAmazonConnect).
	Platform string `json:"platform"`
	// ConnectInstanceID is the Amazon Connect instance id.
	ConnectInstanceID string `json:"connectInstanceId,omitempty"`
	// Region is the platform's region: an AWS Region (Amazon Connect), or
	// the Genesys Cloud region's host (mypurecloud.com, usw2.pure.cloud…).
	Region string `json:"region,omitempty"`
	// TenantID is the NICE CXone tenant: its API host is discovered from it.
	TenantID string `json:"tenantId,omitempty"`
	// WorkspaceSID is the Twilio TaskRouter workspace whose tasks are the
	// contacts (call sids need none).
	WorkspaceSID string `json:"workspaceSid,omitempty"`
	// Endpoint, when set, overrides the platform's API address.
	Endpoint string `json:"endpoint,omitempty"`
	// Rate and Burst are the budget of stop calls: calls per second, and
	// how many may go at once after a quiet spell.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// QuotaKey names the budget: bindings with the same key share one.
	QuotaKey string `json:"quotaKey"`
}

// Platforms an instance can be bound to.
const (
	PlatformNone          = "none"
	PlatformAmazonConnect = "amazon-connect"
	PlatformCXone         = "cxone"
	PlatformTwilio        = "twilio"
	PlatformGenesys       = "genesys"
)

// platformDefaults are the documented (or, where a vendor publishes none,
// conservative) budgets of each platform's stop operation.
var platformDefaults = map[string]struct {
	rate  float64
	burst int
}{
	PlatformAmazonConnect: {10, 15}, // StopContact: 10/s, burst 15, per account and Region
	PlatformCXone:         {10, 10},
	PlatformTwilio:        {10, 10}, // no published per-second limit; each stop is a fetch and an update
	PlatformGenesys:       {5, 10},  // 300 requests per minute per OAuth client
}

// Validate checks a binding, filling the defaults: the platform's
// documented budget and a quota key of platform, region and endpoint. Its
// errors wrap ErrInvalidInstance and name the field.
func (b *Binding) Validate() error {
	switch b.Platform {
	case PlatformAmazonConnect:
		if !amazonConnectInstanceID.MatchString(b.ConnectInstanceID) {
			return fmt.Errorf("%w: connectInstanceId %q: an Amazon Connect instance id (1–100 characters of [A-Za-z0-9-]) is required", ErrInvalidInstance, b.ConnectInstanceID)
		}
		if !awsRegion.MatchString(b.Region) {
			return fmt.Errorf("%w: region %q: an AWS Region such as us-east-1 is required", ErrInvalidInstance, b.Region)
		}
	case PlatformCXone:
		if b.TenantID == "" && b.Endpoint == "" {
			return fmt.Errorf("%w: cxone: a tenantId (its API host is discovered from it) or an endpoint is required", ErrInvalidInstance)
		}
		if b.TenantID != "" && !platformID.MatchString(b.TenantID) {
			return fmt.Errorf("%w: tenantId %q: 1–100 characters of [A-Za-z0-9_-]", ErrInvalidInstance, b.TenantID)
		}
	case PlatformTwilio:
		if b.WorkspaceSID != "" && !twilioWorkspaceSID.MatchString(b.WorkspaceSID) {
			return fmt.Errorf("%w: workspaceSid %q: a TaskRouter workspace sid is WS and 32 hex digits", ErrInvalidInstance, b.WorkspaceSID)
		}
	case PlatformGenesys:
		if !genesysRegion.MatchString(b.Region) {
			return fmt.Errorf("%w: region %q: the Genesys Cloud region's host is required, such as mypurecloud.com or usw2.pure.cloud", ErrInvalidInstance, b.Region)
		}
	default:
		return fmt.Errorf("%w: platform %q (valid: %s, %s, %s, %s, or %s for none)", ErrInvalidInstance, b.Platform,
			PlatformAmazonConnect, PlatformCXone, PlatformTwilio, PlatformGenesys, PlatformNone)
	}
	d := platformDefaults[b.Platform]
	if b.Rate == 0 {
		b.Rate = d.rate
	}
	if b.Burst == 0 {
		b.Burst = d.burst
	}
	if b.Endpoint != "" {
		u, err := url.Parse(b.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%w: endpoint %q: an http(s) URL is required", ErrInvalidInstance, b.Endpoint)
		}
	}
	if !(b.Rate > 0 && b.Rate <= 10000) {
		return fmt.Errorf("%w: rate %v: calls per second must be above 0 and at most 10000", ErrInvalidInstance, b.Rate)
	}
	if b.Burst < 1 || b.Burst > 100000 {
		return fmt.Errorf("%w: burst %d: must be 1–100000", ErrInvalidInstance, b.Burst)
	}
	if b.QuotaKey == "" {
		b.QuotaKey = b.Platform + ":" + b.Region + b.TenantID + b.WorkspaceSID
		if b.Endpoint != "" {
			b.QuotaKey += ":" + b.Endpoint
		}
	}
	if len(b.QuotaKey) > 256 {
		return fmt.Errorf("%w: quotaKey: at most 256 bytes", ErrInvalidInstance)
	}
	return nil
}

var (
	amazonConnectInstanceID = regexp.MustCompile(`^[A-Za-z0-9-]{1,100}$`)
	awsRegion               = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	platformID              = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	twilioWorkspaceSID      = regexp.MustCompile(`^WS[0-9a-f]{32}$`)
	genesysRegion           = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+$`)
)

// decodeInstance decodes the record stored under key instanceID. The key is
// authoritative: an empty instanceId in the body is filled from it, a
// different one is an error.
func decodeInstance(instanceID string, data []byte) (Instance, error) {
	var inst Instance
	if err := json.Unmarshal(data, &inst); err != nil {
		return Instance{}, fmt.Errorf("store: instance %s: malformed record: %w", instanceID, err)
	}
	if inst.InstanceID == "" {
		inst.InstanceID = instanceID
	}
	if inst.InstanceID != instanceID {
		return Instance{}, fmt.Errorf("store: instance %s: record names instance %q", instanceID, inst.InstanceID)
	}
	if b := inst.Binding; b != nil {
		if err := b.Validate(); err != nil {
			return Instance{}, fmt.Errorf("store: instance %s: bad platform binding: %w", instanceID, err)
		}
	}
	return inst, nil
}
