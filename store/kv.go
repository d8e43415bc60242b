package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/internal/jspub"
)

// Config configures a [KV] store. The zero value is usable: Open fills in
// the defaults.
type Config struct {
	// ContactsBucket is the KV bucket holding contacts. Default
	// "contactstop-contacts".
	ContactsBucket string
	// InstancesBucket is the KV bucket holding instances. Default
	// "contactstop-instances".
	InstancesBucket string
	// BulksBucket is the KV bucket holding the progress records of bulk
	// requests. Default "contactstop-bulks".
	BulksBucket string
	// Replicas is the number of replicas of both buckets in a JetStream
	// cluster, 1 to 5. Default 1. Buckets always use file storage.
	Replicas int
	// OutcomeTTL is how long the outcome records of failed requests are
	// kept: as long as requests are (serve's --max-age). Default 7 days.
	OutcomeTTL time.Duration
	// KeepExisting makes Open use buckets that exist as they are, without
	// updating their configuration, and create only missing ones. Client
	// commands set it so that they never resize what serve set up.
	KeepExisting bool
}

// Defaults of Config.
const (
	defaultContactsBucket  = "contactstop-contacts"
	defaultInstancesBucket = "contactstop-instances"
	defaultBulksBucket     = "contactstop-bulks"
)

var bucketNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// setDefaults fills every unset field with its default.
func (c *Config) setDefaults() {
	if c.ContactsBucket == "" {
		c.ContactsBucket = defaultContactsBucket
	}
	if c.InstancesBucket == "" {
		c.InstancesBucket = defaultInstancesBucket
	}
	if c.BulksBucket == "" {
		c.BulksBucket = defaultBulksBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.OutcomeTTL == 0 {
		c.OutcomeTTL = 7 * 24 * time.Hour
	}
}

// Validate reports every problem with the configuration: bucket names that
// are empty or not [A-Za-z0-9_-], the same bucket for both, and Replicas
// outside 1–5. Call it after defaults are filled (Open does both).
func (c Config) Validate() error {
	var errs []error
	for _, b := range []struct{ field, name string }{
		{"ContactsBucket", c.ContactsBucket},
		{"InstancesBucket", c.InstancesBucket},
		{"BulksBucket", c.BulksBucket},
	} {
		if !bucketNameRe.MatchString(b.name) {
			errs = append(errs, fmt.Errorf("store: config: %s %q must be non-empty [A-Za-z0-9_-]", b.field, b.name))
		}
	}
	if c.ContactsBucket != "" && (c.ContactsBucket == c.InstancesBucket || c.ContactsBucket == c.BulksBucket) ||
		c.InstancesBucket != "" && c.InstancesBucket == c.BulksBucket {
		errs = append(errs, fmt.Errorf("store: config: the contacts, instances and bulks buckets must differ (%q, %q, %q)",
			c.ContactsBucket, c.InstancesBucket, c.BulksBucket))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("store: config: Replicas %d must be 1 to 5", c.Replicas))
	}
	if c.OutcomeTTL < time.Second {
		errs = append(errs, fmt.Errorf("store: config: OutcomeTTL %s must be at least 1s", c.OutcomeTTL))
	}
	return errors.Join(errs...)
}

// KV is the contact and instance store on JetStream key-value buckets. It is
// safe for concurrent use. It holds no goroutines and needs no closing; it
// lives as long as the JetStream connection it was opened on.
type KV struct {
	js        jetstream.JetStream
	cfg       Config
	contacts  jetstream.KeyValue
	instances jetstream.KeyValue
	bulks     jetstream.KeyValue
	// pub publishes EndContacts' writes; replies receives its reads.
	pub     *jspub.Publisher
	replies *jspub.Replies

	// The streams behind the buckets.
	contactsBucket, bulksBucket, instancesBucket bucket

	// known caches the ids of instances seen to exist. Instances are never
	// deleted by contactstop, so a hit never needs re-checking.
	known sync.Map // string → struct{}

	now func() time.Time
}

// Open creates both buckets, or updates their configuration if they exist
// (idempotently, so any number of processes may call it at start-up), and
// returns the store. It fails if cfg is invalid or a bucket cannot be
// created or updated (for example, no JetStream, or a replica count the
// cluster cannot provide).
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*KV, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &KV{
		js:              js,
		cfg:             cfg,
		contactsBucket:  bucket{stream: "KV_" + cfg.ContactsBucket, prefix: "$KV." + cfg.ContactsBucket + "."},
		instancesBucket: bucket{stream: "KV_" + cfg.InstancesBucket, prefix: "$KV." + cfg.InstancesBucket + "."},
		bulksBucket:     bucket{stream: "KV_" + cfg.BulksBucket, prefix: "$KV." + cfg.BulksBucket + "."},
		now:             func() time.Time { return time.Now().UTC() },
	}
	var err error
	s.pub, s.replies = jspub.New(js.Conn()), jspub.NewReplies(js.Conn())
	configs := s.bucketConfigs()
	if s.contacts, err = openBucket(ctx, js, cfg.KeepExisting, configs[0]); err != nil {
		return nil, err
	}
	if !cfg.KeepExisting {
		if err := allowBatches(ctx, js, s.contactsBucket.stream); err != nil {
			return nil, err
		}
		if err := s.markFront(ctx); err != nil {
			return nil, err
		}
	}
	if s.instances, err = openBucket(ctx, js, cfg.KeepExisting, configs[1]); err != nil {
		return nil, err
	}
	if s.bulks, err = openBucket(ctx, js, cfg.KeepExisting, configs[2]); err != nil {
		return nil, err
	}
	for _, b := range []*bucket{&s.contactsBucket, &s.bulksBucket, &s.instancesBucket} {
		st, err := js.Stream(ctx, b.stream)
		if err != nil {
			return nil, fmt.Errorf("store: stream %s: %w", b.stream, err)
		}
		b.replicated = st.CachedInfo().Config.Replicas > 1
	}
	return s, nil
}

// bucketConfigs are the contacts, instances and bulks buckets, in that
// order.
func (s *KV) bucketConfigs() []jetstream.KeyValueConfig {
	cfg := s.cfg
	return []jetstream.KeyValueConfig{{
		Bucket:      cfg.ContactsBucket,
		Description: "contactstop contacts: key <instanceId>.<escaped contactId>, value JSON; outcome records =o.<instanceId>.<hash> (docs/store.md)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Per-message TTLs, for the outcome records. The markers it also
		// turns on (left when a key expires) live this long.
		LimitMarkerTTL: time.Minute,
		MaxValueSize:   MaxContactRecord,
	}, {
		Bucket:       cfg.InstancesBucket,
		Description:  "contactstop instances: key <instanceId>, value JSON (docs/store.md)",
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
		MaxValueSize: MaxContactRecord,
	}, {
		Bucket:       cfg.BulksBucket,
		Description:  "contactstop bulk requests: key <instanceId>.<escaped bulkId>, value JSON progress (docs/store.md)",
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
		MaxValueSize: maxBulkRecord,
	}}
}

// Ensure creates again, as Open did, every bucket of the store that no
// longer exists (deleted by hand), and returns their names. The store goes
// on using them: its handles name the buckets, not their old streams. An
// error means a bucket could not be checked or created; call it again.
func (s *KV) Ensure(ctx context.Context) (recreated []string, err error) {
	for _, c := range s.bucketConfigs() {
		_, err := s.js.Stream(ctx, "KV_"+c.Bucket)
		switch {
		case err == nil:
			continue
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return recreated, fmt.Errorf("store: bucket %s: %w", c.Bucket, err)
		}
		if _, err := s.js.CreateOrUpdateKeyValue(ctx, c); err != nil {
			return recreated, fmt.Errorf("store: create bucket %s again: %w", c.Bucket, err)
		}
		if c.Bucket == s.cfg.ContactsBucket {
			if err := allowBatches(ctx, s.js, s.contactsBucket.stream); err != nil {
				return recreated, err
			}
			if err := s.markFront(ctx); err != nil {
				return recreated, err
			}
		}
		recreated = append(recreated, c.Bucket)
	}
	return recreated, nil
}

// MaxContactRecord is the largest value the contacts and instances buckets
// store: a contact record is a few hundred bytes (its ids are at most 100
// and 256 characters); a larger write is refused by the bucket.
const MaxContactRecord = 16 << 10

// maxBulkRecord bounds the bulks bucket's values: a bulk record, or a
// pending slot of up to 256 contact ids of up to 1 KiB each.
const maxBulkRecord = 1 << 20

// FrontKey is the key of the contacts bucket's front marker: a record
// contactstop writes once and never changes, so that the bucket's stream
// always has a message older than every contact. It is not a contact key
// (no instance id starts with "="), so no listing returns it.
//
// Why: a mass clear walks an instance's contacts with a consumer while it
// rewrites them, and each rewrite deletes the contact's older message. When
// every message before the walk's position is gone, nats-server (v2.15)
// counts the filter's matches over the whole subject tree on every step of
// the consumer (fileStore.LoadNextMsg, when start <= the stream's first
// sequence): a third of its CPU in a 1M-contact clear, which took 36 s
// instead of 26 s. A message that is never rewritten at the front keeps
// the first sequence below the walk.
const FrontKey = "=front"

// markFront writes the front marker unless it exists. In a new bucket it is
// the first message; in a bucket created before it existed it becomes the
// front once the older records have been rewritten.
func (s *KV) markFront(ctx context.Context) error {
	_, err := s.contacts.Create(ctx, FrontKey,
		[]byte(`{"note":"contactstop front marker: not a contact; keep it (docs/store.md)"}`))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("store: write the contacts bucket's front marker: %w", err)
	}
	return nil
}

// allowBatches lets the contacts bucket's stream take fast batches
// (nats-server 2.14+), in which EndContacts publishes its writes. A key-value
// bucket's own configuration has no such setting, and updating the bucket
// (Open, from any process) turns it off until this turns it on again:
// meanwhile a batch is refused and its writes go out one by one.
func allowBatches(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowBatchPublish {
		return nil
	}
	cfg.AllowBatchPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("store: let stream %s take batches: %w", stream, err)
	}
	return nil
}

// openBucket creates or updates a bucket, or with keepExisting binds to it
// as it is when it exists.
func openBucket(ctx context.Context, js jetstream.JetStream, keepExisting bool, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if keepExisting {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if err == nil {
			return kv, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("store: open bucket %q: %w", cfg.Bucket, err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open bucket %q: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// PutInstance registers an instance, or updates it if it exists, and
// returns it as stored. The instanceId must be 1–100 characters of
// [A-Za-z0-9_-], else the error wraps ErrInvalidInstance. A zero CreatedAt
// keeps the CreatedAt of an existing record, or is set to now for a new one,
// so registering an instance again is harmless. Other errors are transient.
func (s *KV) PutInstance(ctx context.Context, inst Instance) (Instance, error) {
	if err := validateInstanceID(inst.InstanceID); err != nil {
		return Instance{}, fmt.Errorf("%w: %w", ErrInvalidInstance, err)
	}
	if inst.Binding != nil {
		b := *inst.Binding
		if err := b.Validate(); err != nil {
			return Instance{}, err
		}
		inst.Binding = &b
	}
	if inst.CreatedAt.IsZero() {
		e, err := s.instances.Get(ctx, inst.InstanceID)
		switch {
		case err == nil:
			// A malformed record is simply replaced.
			if old, err := decodeInstance(inst.InstanceID, e.Value()); err == nil {
				inst.CreatedAt = old.CreatedAt
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted):
			return Instance{}, fmt.Errorf("store: put instance %s: %w", inst.InstanceID, err)
		}
	}
	if inst.CreatedAt.IsZero() {
		inst.CreatedAt = s.now()
	}
	inst.CreatedAt = inst.CreatedAt.UTC()
	data, err := json.Marshal(inst)
	if err != nil {
		return Instance{}, fmt.Errorf("store: put instance %s: %w", inst.InstanceID, err)
	}
	if _, err := s.instances.Put(ctx, inst.InstanceID, data); err != nil {
		return Instance{}, fmt.Errorf("store: put instance %s: %w", inst.InstanceID, err)
	}
	s.known.Store(inst.InstanceID, struct{}{})
	return inst, nil
}

// GetInstance returns the registered instance. It returns an error wrapping
// ErrInstanceNotFound when there is none, and ErrInvalidInstance when the
// id could not name one.
func (s *KV) GetInstance(ctx context.Context, instanceID string) (Instance, error) {
	if err := validateInstanceID(instanceID); err != nil {
		return Instance{}, fmt.Errorf("%w: %w", ErrInvalidInstance, err)
	}
	e, err := s.instances.Get(ctx, instanceID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Instance{}, fmt.Errorf("%w: %s", ErrInstanceNotFound, instanceID)
	}
	if err != nil {
		return Instance{}, fmt.Errorf("store: get instance %s: %w", instanceID, err)
	}
	inst, err := decodeInstance(instanceID, e.Value())
	if err != nil {
		return Instance{}, err
	}
	s.known.Store(instanceID, struct{}{})
	return inst, nil
}

// ListInstances returns every registered instance, sorted by id; an empty
// slice (not an error) when there are none. It fails on a record whose key
// or body is not valid.
func (s *KV) ListInstances(ctx context.Context) ([]Instance, error) {
	insts := []Instance{}
	err := s.walk(ctx, s.instancesBucket, "*", func(key string, data []byte, _ uint64) error {
		if err := validateInstanceID(key); err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		inst, err := decodeInstance(key, data)
		if err != nil {
			return err
		}
		insts = append(insts, inst)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list instances: %w", err)
	}
	slices.SortFunc(insts, func(a, b Instance) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	insts = slices.CompactFunc(insts, func(a, b Instance) bool { return a.InstanceID == b.InstanceID })
	return insts, nil
}

// InstanceExists reports whether the instance is registered. An instance
// once seen to exist is answered from memory (contactstop never deletes
// instances); a miss is always read from the bucket, so an instance
// registered by another process is found at once. It returns false and an
// error wrapping ErrInvalidInstance for an id that could not name an
// instance, and false and a transient error when the bucket cannot be read.
// Safe for concurrent use.
func (s *KV) InstanceExists(ctx context.Context, instanceID string) (bool, error) {
	if _, ok := s.known.Load(instanceID); ok {
		return true, nil
	}
	_, err := s.GetInstance(ctx, instanceID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrInstanceNotFound):
		return false, nil
	}
	return false, err
}

// PutContact writes a contact unconditionally (creating or replacing it)
// and returns it as stored, with its new Revision. The contact must have a
// valid instanceId (1–100 of [A-Za-z0-9_-]), contactId (1–256 characters of
// valid UTF-8), State and Channel (canonical upper-case values), else the
// error wraps ErrInvalidContact and nothing is written. A zero UpdatedAt is
// set to now; times are stored in UTC. PutContact does not register the
// instance: callers that need it call PutInstance.
func (s *KV) PutContact(ctx context.Context, c Contact) (Contact, error) {
	key, data, err := s.prepareContact(&c)
	if err != nil {
		return Contact{}, err
	}
	rev, err := s.contacts.Put(ctx, key, data)
	if err != nil {
		return Contact{}, fmt.Errorf("store: put contact %s/%q: %w", c.InstanceID, c.ContactID, err)
	}
	c.Revision = rev
	return c, nil
}

// prepareContact validates and normalizes c and returns its key and record.
func (s *KV) prepareContact(c *Contact) (key string, data []byte, err error) {
	if err := c.validate(); err != nil {
		return "", nil, err
	}
	c.normalize(s.now())
	data, err = json.Marshal(c)
	if err != nil {
		return "", nil, fmt.Errorf("store: encode contact %s/%q: %w", c.InstanceID, c.ContactID, err)
	}
	return ContactKey(c.InstanceID, c.ContactID), data, nil
}

// GetContact returns the contact with its Revision. It returns an error
// wrapping ErrContactNotFound when there is no record (or it was deleted),
// ErrInvalidContact when the ids could not name a contact, an unclassified
// error for a record that is not a valid contact, and a wrapped transient
// error when the bucket cannot be read.
func (s *KV) GetContact(ctx context.Context, instanceID, contactID string) (Contact, error) {
	if err := validateContactIDs(instanceID, contactID); err != nil {
		return Contact{}, err
	}
	e, err := s.contacts.Get(ctx, ContactKey(instanceID, contactID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Contact{}, fmt.Errorf("%w: %s/%q", ErrContactNotFound, instanceID, contactID)
	}
	if err != nil {
		return Contact{}, fmt.Errorf("store: get contact %s/%q: %w", instanceID, contactID, err)
	}
	return decodeContact(instanceID, contactID, e.Value(), e.Revision())
}

// validateContactIDs checks the ids naming a contact, wrapping
// ErrInvalidContact.
func validateContactIDs(instanceID, contactID string) error {
	if err := validateInstanceID(instanceID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	if err := validateContactID(contactID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContact, err)
	}
	return nil
}

// ReplaceContactParams writes one contact over whatever is stored.
type ReplaceContactParams struct {
	Contact Contact
	// Force allows replacing an ENDED contact with an active one. Without
	// it, a contact once ended stays ended: a request's stop is recorded
	// on its contact, and reviving the contact would also erase that.
	Force bool
}

// ReplaceContact writes a contact as PutContact does, by compare-and-set on
// what it read, unless that is an ENDED contact and the new state is active
// and p.Force is false: then it writes nothing and returns an error
// wrapping ErrContactEnded.
func (s *KV) ReplaceContact(ctx context.Context, p ReplaceContactParams) (Contact, error) {
	c := p.Contact
	key, data, err := s.prepareContact(&c)
	if err != nil {
		return Contact{}, err
	}
	for range maxFenceRounds {
		views, err := s.Views(ctx, ViewParams{Keys: []RequestKey{{InstanceID: c.InstanceID, ContactID: c.ContactID}}, Consistent: true, ContactsOnly: true})
		if err != nil {
			return Contact{}, err
		}
		v := views[0]
		if old := v.Contact; old != nil && old.State == StateEnded && c.State.Active() && !p.Force {
			return Contact{}, fmt.Errorf("%w: %s/%q was ended by request %q at %s; force to replace it",
				ErrContactEnded, c.InstanceID, c.ContactID, old.EndedBy, old.EndedAt.Format(time.RFC3339))
		}
		msg := &nats.Msg{Subject: s.contactsBucket.prefix + key, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(v.ContactRev, 10))
		ack := s.pub.Publish(ctx, []*nats.Msg{msg}, opTimeout)[0]
		switch {
		case ack.Err == nil:
			c.Revision = ack.Sequence
			return c, nil
		case !revisionMismatch(ack.Err):
			return Contact{}, fmt.Errorf("store: put contact %s/%q: %w", c.InstanceID, c.ContactID, ack.Err)
		}
	}
	return Contact{}, fmt.Errorf("store: put contact %s/%q: it kept changing: %w", c.InstanceID, c.ContactID, ErrRevisionConflict)
}
