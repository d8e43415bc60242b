package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// V1Store is what the JSON API reads and changes in the state store
// (*store.KV).
type V1Store interface {
	ListInstances(ctx context.Context) ([]store.Instance, error)
	GetInstance(ctx context.Context, instanceID string) (store.Instance, error)
	WalkContacts(ctx context.Context, p store.WalkParams, fn func(store.WalkEntry) error) error
	GetBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	ListBulks(ctx context.Context, instanceID string) ([]store.BulkRecord, error)
	CancelBulk(ctx context.Context, instanceID, bulkID string) (store.BulkRecord, error)
	CountMatching(ctx context.Context, instanceID string, f events.BulkFilter) (store.MatchCount, error)
}

// V1Publisher publishes stop and bulk requests (*client.Client).
type V1Publisher interface {
	Stop(ctx context.Context, req events.StopRequest, opts client.StopOptions) (client.Receipt, *events.Result, error)
	Clear(ctx context.Context, req events.BulkRequest) (client.Receipt, error)
}

// Defaults of V1Config.
const (
	DefaultV1MaxWait = 30 * time.Second
	// DefaultV1Wait is how long ?wait=true waits for a stop's result.
	DefaultV1Wait = 10 * time.Second
)

// V1Config configures the JSON API.
type V1Config struct {
	// JetStream reads the results and dead-letter streams; required.
	JetStream jetstream.JetStream
	// Store reads instances, contacts and bulk requests; required.
	Store V1Store
	// Publisher publishes stop and bulk requests; required.
	Publisher V1Publisher
	// Verifier, when not nil, turns authorization on: every call needs a
	// security-user token (Authorization: Bearer). Nil: every call is
	// allowed, as serve without --auth-key allows every request.
	Verifier *auth.Verifier
	// MaxWait bounds ?wait= of a stop. Default DefaultV1MaxWait (30 s).
	MaxWait time.Duration
	// Heartbeat is the interval of /v1/events' keep-alive comments and of
	// its look for new bulk requests. Default 15 s.
	Heartbeat time.Duration
	// ProgressInterval is how often /v1/events reads the progress of the
	// bulk requests that run. Default 1 s.
	ProgressInterval time.Duration
	// Logger logs failures of the store and streams. Default: none.
	Logger *zap.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (c *V1Config) setDefaults() {
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultV1MaxWait
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a missing JetStream, Store or Publisher.
func (c V1Config) Validate() error {
	var errs []error
	if c.JetStream == nil {
		errs = append(errs, errors.New("httpapi: v1: JetStream is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("httpapi: v1: Store is required"))
	}
	if c.Publisher == nil {
		errs = append(errs, errors.New("httpapi: v1: Publisher is required"))
	}
	return errors.Join(errs...)
}

// V1 is the JSON API under /v1/ (described by openapi.json, served at
// /v1/openapi.json). Every answer is JSON in camelCase, and every error has
// the one shape {"error": {"code", "message", "field"?}}.
type V1 struct {
	cfg V1Config
	mux *http.ServeMux
	log *zap.Logger
	// closing is closed by Close: event streams end.
	closing   chan struct{}
	closeOnce sync.Once
}

// NewV1 returns the JSON API, or the errors of cfg.Validate.
func NewV1(cfg V1Config) (*V1, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &V1{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger.Named("api"), closing: make(chan struct{})}
	m := a.mux
	m.HandleFunc("GET /v1/openapi.json", a.openAPI)
	m.HandleFunc("GET /v1/instances", a.listInstances)
	m.HandleFunc("GET /v1/instances/{instanceId}/summary", a.summary)
	m.HandleFunc("GET /v1/instances/{instanceId}/contacts", a.listContacts)
	m.HandleFunc("GET /v1/instances/{instanceId}/failures", a.failures)
	m.HandleFunc("POST /v1/instances/{instanceId}/stops", a.stop)
	m.HandleFunc("POST /v1/instances/{instanceId}/clears", a.clear)
	m.HandleFunc("GET /v1/instances/{instanceId}/bulks/{bulkId}", a.getBulk)
	m.HandleFunc("POST /v1/instances/{instanceId}/bulks/{bulkId}/cancel", a.cancelBulk)
	m.HandleFunc("GET /v1/bulks", a.listBulks)
	m.HandleFunc("GET /v1/deadletters", a.deadLetters)
	m.HandleFunc("GET /v1/events", a.events)
	m.HandleFunc("/v1/", a.notFound)
	return a, nil
}

// Register adds the API to mux under "/v1/".
func (a *V1) Register(mux *http.ServeMux) {
	mux.Handle("/v1/", a)
}

// Close ends the open event streams (/v1/events), which an HTTP server's
// Shutdown would otherwise wait for; other calls are unaffected. Call it
// before shutting the server down.
func (a *V1) Close() {
	a.closeOnce.Do(func() { close(a.closing) })
}

// ServeHTTP serves the API.
func (a *V1) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	a.mux.ServeHTTP(w, r)
}

// notFound answers what no route matches: 405 when the path is served for
// another method, else 404.
func (a *V1) notFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" && pattern != "/v1/" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		v1WriteError(w, http.StatusMethodNotAllowed, v1CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")), "")
		return
	}
	v1WriteError(w, http.StatusNotFound, v1CodeNotFound, "no such route: "+r.URL.Path+" (see /v1/openapi.json)", "")
}

// v1InstanceParam returns the {instanceId} path value, or answers 400 and
// returns false when it is not a valid instance ID.
func v1InstanceParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("instanceId")
	if !events.ValidInstanceID(id) {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			fmt.Sprintf("instanceId %q: must be 1-100 characters of [A-Za-z0-9_-]", v1Short(id)), "instanceId")
		return "", false
	}
	return id, true
}

// v1Short cuts s to 100 bytes for a message.
func v1Short(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
