package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/internal/embedded"
	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/registry"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

type serveOptions struct {
	natsURL         string
	dataDir         string
	listen          string
	syncAlways      bool
	topology        worker.TopologyConfig
	worker          worker.Config
	shutdownTimeout time.Duration
	dev             bool
	logLevel        string
	http            string
	config          string
	cpuProfile      string
	gcPercent       int
	memoryLimitMiB  int64
	sec             natsSecurity
	serverConfig    string
	listenTLS       struct{ cert, key, ca string }
	allowOpen       bool
	requireAuth     bool
	authKeys        []string
	authSecrets     []string
	authLeeway      time.Duration
	ingestKey       string
	syncInterval    time.Duration
	ingestTwilio    bool
	api             apiOptions
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the worker (with an embedded NATS server unless --nats-url is given)",
		Example: `  contactstop serve --dev
  contactstop serve --data-dir /var/lib/contactstop --http :8080 --auth-key keys/ops.pub.pem
  contactstop serve --nats-url nats://nats-1:4222,nats://nats-2:4222 --replicas 3 --workers 128
  contactstop serve --config /etc/contactstop/serve.yaml`,
		Long: `Run the contactstop worker.

With no --nats-url, an embedded NATS server with JetStream starts in this
process (files under --data-dir, clients on --listen) and the worker uses it.
With --nats-url, the worker joins an existing server or cluster; any number of
serve processes share the work.

At start the streams, the durable consumer and the key-value buckets are
created or updated. SIGINT or SIGTERM stops pulling, finishes in-flight
requests (handing back any left at --shutdown-timeout) and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("batch-size") {
				o.worker.BatchSize = min(o.worker.BatchSize, o.worker.Workers)
			}
			if !cmd.Flags().Changed("max-ack-pending") {
				o.topology.MaxAckPending = max(o.topology.MaxAckPending, 2*o.worker.Workers)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.natsURL, "nats-url", "", "NATS server or cluster to use; empty starts the embedded server")
	f.StringVar(&o.dataDir, "data-dir", "./data", "embedded server: JetStream storage directory")
	f.StringVar(&o.listen, "listen", "127.0.0.1:4222", "embedded server: client listen address; off loopback, clients must authenticate (see --allow-open)")
	f.BoolVar(&o.allowOpen, "allow-open", false, "embedded server: listen off loopback with no client authentication (anyone who reaches it can do anything); refused without this")
	f.BoolVar(&o.syncAlways, "sync-always", false, "embedded server: fsync every JetStream write before acknowledging it (survives OS crashes; slower)")
	f.IntVar(&o.worker.Workers, "workers", worker.DefaultWorkers, "requests this process has in hand at once (pulled ahead, then decided in batches)")
	f.IntVar(&o.worker.BatchSize, "batch-size", worker.DefaultBatchSize, "most requests decided together (one read, pipelined writes and results); 1 turns batching off; when not given, at most --workers")
	f.IntVar(&o.topology.MaxAckPending, "max-ack-pending", worker.DefaultMaxAckPending, "consumer-wide limit of unacknowledged requests; at least 2×workers×replicas of serve; when not given, at least 2×workers")
	f.DurationVar(&o.topology.AckWait, "ack-wait", worker.DefaultAckWait, "redeliver a request not acknowledged within this time")
	f.IntVar(&o.worker.MaxAttempts, "max-attempts", worker.DefaultMaxAttempts, "attempts that meet transient errors before a request ends as INTERNAL_ERROR and is dead-lettered (deliveries handed back at shutdown are not attempts)")
	f.IntVar(&o.worker.MaxAttempts, "max-deliveries", worker.DefaultMaxAttempts, "")
	_ = f.MarkDeprecated("max-deliveries", "use --max-attempts: attempts are counted, not deliveries")
	f.DurationVar(&o.worker.RetryInitial, "retry-initial", worker.DefaultRetryInitial, "first backoff interval for transient errors within a delivery")
	f.DurationVar(&o.worker.RetryMax, "retry-max", worker.DefaultRetryMax, "largest backoff interval within a delivery")
	f.DurationVar(&o.worker.RetryMaxElapsed, "retry-max-elapsed", worker.DefaultRetryMaxElapsed, "time spent retrying within one delivery before it is handed back with a delay")
	f.DurationVar(&o.worker.RedeliveryDelay, "redelivery-delay", worker.DefaultRedeliveryDelay, "delay before the second delivery of a failing request; doubles per delivery")
	f.DurationVar(&o.worker.RedeliveryDelayMax, "redelivery-delay-max", worker.DefaultRedeliveryDelayMax, "largest delay between deliveries")
	f.IntVar(&o.worker.Bulks, "bulks", worker.DefaultBulks, "bulk requests run at once by this process")
	f.IntVar(&o.worker.BulkWorkers, "bulk-workers", worker.DefaultBulkWorkers, "contacts one bulk run stops at once (BulkWorkers ÷ batch size batches in flight)")
	f.BoolVar(&o.worker.Emergency, "emergency", false, "handle emergency.broadcast.<instance>: clear the instance's QUEUED contacts (see README)")
	f.DurationVar(&o.worker.EmergencyMaxAge, "emergency-max-age", worker.DefaultEmergencyMaxAge, "ignore emergency broadcasts older than this when first seen")
	f.IntVar(&o.topology.Replicas, "replicas", worker.DefaultReplicas, "replicas of the streams and buckets (3 on a cluster)")
	f.DurationVar(&o.topology.DuplicateWindow, "duplicate-window", worker.DefaultDuplicateWindow, "JetStream duplicate window of the requests and results streams")
	f.Int64Var(&o.topology.MaxBytes, "stream-max-bytes", worker.DefaultStreamMaxBytes, "storage bound of each stream: when the requests stream is full publishers are refused; results drop their oldest")
	f.DurationVar(&o.topology.MaxAge, "max-age", worker.DefaultMaxAge, "how long requests, results and the outcome records of failed requests are kept")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, wait this long for in-flight requests")
	f.StringVar(&o.http, "http", "", "serve /metrics, /healthz, /readyz, the JSON API (/v1/) and the web console (/) on this address (e.g. :8080); empty: off")
	f.BoolVar(&o.ingestTwilio, "ingest-twilio", false, "with --http: accept TaskRouter event callbacks at POST /ingest/twilio, verified with the X-Twilio-Signature of TWILIO_AUTH_TOKEN")
	f.DurationVar(&o.syncInterval, "sync-interval", time.Minute, "bring the inventory of instances bound to a platform that lists its contacts (cxone, twilio, genesys) up to date this often, once across the replicas; 0: off")
	o.api.register(f)
	f.StringVar(&o.ingestKey, "ingest-key", "", "with --http: accept Amazon Connect contact events at POST /ingest/amazon-connect from senders presenting the key in this file (at least 16 bytes) as Authorization: Bearer or X-Api-Key; empty: off")
	f.StringVar(&o.config, "config", "", "YAML file of settings, keys being flag names (workers: 64)")
	f.StringArrayVar(&o.authKeys, "auth-key", nil, "turn authorization on: a PEM file of an Ed25519 public key (repeatable; see docs/security.md)")
	f.StringArrayVar(&o.authSecrets, "auth-hs256-secret", nil, "turn authorization on: a file holding an HS256 secret of at least 32 bytes that cannot be read as a key (repeatable)")
	f.DurationVar(&o.authLeeway, "auth-leeway", auth.DefaultLeeway, "clock leeway for token exp, nbf and iat")
	f.BoolVar(&o.requireAuth, "require-auth", false, "refuse to start without --auth-key or --auth-hs256-secret (the container image sets it; CONTACTSTOP_REQUIRE_AUTH=false opts out)")
	f.StringVar(&o.serverConfig, "nats-server-config", "", "embedded server: a nats-server configuration file (accounts, users, TLS); serve authenticates with the --nats-* flags")
	f.StringVar(&o.listenTLS.cert, "listen-tls-cert", "", "embedded server: PEM certificate to serve TLS on --listen (with --listen-tls-key)")
	f.StringVar(&o.listenTLS.key, "listen-tls-key", "", "embedded server: PEM key of --listen-tls-cert")
	f.StringVar(&o.listenTLS.ca, "listen-tls-ca", "", "embedded server: PEM CAs whose client certificates are required (mutual TLS)")
	o.sec.register(f)
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a pprof CPU profile of the whole run to this file at shutdown")
	f.IntVar(&o.gcPercent, "gc-percent", 0, "the Go garbage collector's target (GOGC): the heap may grow this many percent over the live heap before a collection; more trades memory for CPU. 0: 400 with --nats-url (a worker's live heap is small), Go's 100 with the embedded server. The GOGC environment variable, when set, wins")
	f.Int64Var(&o.memoryLimitMiB, "memory-limit-mib", 0, "soft limit of the Go heap in MiB (GOMEMLIMIT): the collector works harder as the heap nears it. 0: 150 with --nats-url, none with the embedded server (whose streams' caches share the heap). The GOMEMLIMIT environment variable, when set, wins")
	f.BoolVar(&o.dev, "dev", false, "human-readable console logs instead of JSON")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newLogger(dev bool, level string) (*zap.Logger, error) {
	cfg, err := loggerConfig(dev, level)
	if err != nil {
		return nil, err
	}
	return cfg.Build(loggerOptions...)
}

// loggerConfig is zap's production configuration (JSON), or with dev its
// development one (console), at the level given.
func loggerConfig(dev bool, level string) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return zap.Config{}, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	if dev {
		cfg = zap.NewDevelopmentConfig()
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg, nil
}

// loggerOptions: stack traces on errors only (the development
// configuration adds them to warnings too, which buries the message).
var loggerOptions = []zap.Option{zap.AddStacktrace(zapcore.ErrorLevel)}

// The garbage collector's settings of a worker-only serve (--nats-url). Its
// live heap is small (tens of MiB) and its garbage per request large: at
// Go's GOGC 100, collection took a quarter of the worker's CPU in a 100k
// drain (marking 17 %, the scavenger's madvise 5 %, sweeping 5 %); at 400
// the worker used 20–40 % less CPU per stop. Alone, 400 let the peak RSS of
// a 1M drain and clear reach 226 MiB (98–100 at 100); with a soft limit of
// 150 MiB it was 157 MiB, and the CPU per stop lower still (README,
// Performance). With the embedded server the heap is shared with its
// streams' caches, which can be large: Go's defaults stay.
const (
	workerGCPercent      = 400
	workerMemoryLimitMiB = 150
)

// tuneGC applies --gc-percent and --memory-limit-mib, unless GOGC and
// GOMEMLIMIT say otherwise.
func tuneGC(o serveOptions) {
	gc, limit := o.gcPercent, o.memoryLimitMiB
	if o.natsURL != "" {
		gc, limit = cmp.Or(gc, workerGCPercent), cmp.Or(limit, workerMemoryLimitMiB)
	}
	if _, set := os.LookupEnv("GOGC"); !set && gc > 0 {
		debug.SetGCPercent(gc)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && limit > 0 {
		debug.SetMemoryLimit(limit << 20)
	}
}

func runServe(ctx context.Context, o serveOptions) error {
	if o.natsURL != "" {
		if err := checkNATSURL(o.natsURL); err != nil {
			return err
		}
	}
	log, err := newLogger(o.dev, o.logLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	tuneGC(o)
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer func() {
			if err := stop(); err != nil {
				log.Error("writing the CPU profile", zap.Error(err))
			}
		}()
	}
	o.worker.MaxAckPending = o.topology.MaxAckPending
	o.topology.Emergency = o.worker.Emergency
	o.worker.AckWait = o.topology.AckWait
	o.worker.DuplicateWindow = o.topology.DuplicateWindow
	o.worker.Logger = log
	if len(o.authKeys)+len(o.authSecrets) > 0 {
		keys := make([]auth.Key, 0, len(o.authKeys)+len(o.authSecrets))
		for _, path := range o.authKeys {
			k, err := auth.LoadPublicKeyFile(path)
			if err != nil {
				return fmt.Errorf("--auth-key: %w", err)
			}
			keys = append(keys, k)
		}
		for _, path := range o.authSecrets {
			k, err := auth.LoadHS256SecretFile(path)
			if err != nil {
				return fmt.Errorf("--auth-hs256-secret: %w", err)
			}
			keys = append(keys, k)
		}
		v, err := auth.NewVerifier(auth.Config{Keys: keys, Leeway: o.authLeeway})
		if err != nil {
			return fmt.Errorf("authorization keys: %w", err)
		}
		o.worker.Authorizer = v
		log.Info("authorization on: every request needs a security-user token", zap.Strings("algorithms", v.Algorithms()), zap.Int("keys", len(keys)))
	} else {
		if o.requireAuth {
			return errors.New("--require-auth: no --auth-key or --auth-hs256-secret given; give the verification keys, " +
				"or run without security-user tokens on purpose with --require-auth=false (CONTACTSTOP_REQUIRE_AUTH=false)")
		}
		log.Warn("authorization is OFF: any publisher may stop any contact; configure --auth-key or --auth-hs256-secret to require security-user tokens")
	}

	connectIngest, err := newIngest(o.ingestKey, o.http, log)
	if err != nil {
		return err
	}
	twilioIngest, err := newTwilioIngest(o.ingestTwilio, o.http, log)
	if err != nil {
		return err
	}
	ingest := ingests{connect: connectIngest, twilio: twilioIngest}
	authz, _ := o.worker.Authorizer.(*auth.Verifier)
	stopAPI, err := newStopContactAPI(o.api, o.http, authz, log.Named("api"))
	if err != nil {
		return err
	}
	web := newWebAPI(authz, o.http, log.Named("web"))

	opts := []nats.Option{
		nats.Name("contactstop serve"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() { // not our own close at shutdown
				log.Warn("disconnected from NATS; reconnecting", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	url := o.natsURL
	if url == "" {
		ecfg := embedded.Config{DataDir: o.dataDir, Listen: o.listen, SyncAlways: o.syncAlways, Logger: log,
			ConfigFile: o.serverConfig, TLSCert: o.listenTLS.cert, TLSKey: o.listenTLS.key, TLSCA: o.listenTLS.ca, AllowOpen: o.allowOpen}
		if o.serverConfig == "" {
			// The embedded server requires what serve itself presents.
			if o.sec.creds != "" || o.sec.nkey != "" {
				return errors.New("--nats-creds and --nats-nkey need --nats-server-config for the embedded server to know the user")
			}
			ecfg.User, ecfg.Password, ecfg.Token = o.sec.user, o.sec.password, o.sec.token
		}
		srv, err := embedded.Start(ecfg)
		if err != nil {
			return err
		}
		defer srv.Stop()
		log.Info("embedded NATS server started", zap.String("listen", srv.ClientURL()), zap.String("data_dir", o.dataDir),
			zap.Bool("sync_always", o.syncAlways), zap.Bool("config_file", o.serverConfig != ""),
			zap.Bool("tls", o.listenTLS.cert != ""), zap.Bool("auth", o.sec.methods() != nil || o.serverConfig != ""))
		sec, err := o.sec.authOptions() // in-process: no TLS needed
		if err != nil {
			return err
		}
		opts = append(append(opts, nats.InProcessServer(srv)), sec...)
	} else {
		if o.syncAlways {
			return errors.New("--sync-always applies to the embedded server; set sync_interval: always in your server's JetStream configuration instead")
		}
		if o.serverConfig != "" || o.listenTLS.cert != "" {
			return errors.New("--nats-server-config and --listen-tls-* apply to the embedded server, not with --nats-url")
		}
		sec, err := o.sec.options()
		if err != nil {
			return err
		}
		opts = append(opts, sec...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if url == "" {
			return fmt.Errorf("connect to the embedded NATS server (do the --nats-* credentials match a user of --nats-server-config?): %w", err)
		}
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// Metrics and health come up first, so that probes see the start-up.
	var w atomic.Pointer[worker.Worker]
	var keeper atomic.Pointer[worker.Keeper]
	var reg *prometheus.Registry // nil without --http
	if o.http != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		o.worker.Metrics = worker.NewMetrics(reg, js)
		ops, err := startOps(o.http, reg, nc, func(ctx context.Context) error {
			if k := keeper.Load(); k != nil {
				if err := k.Ready(ctx); err != nil {
					return err
				}
			}
			if w := w.Load(); w != nil {
				return w.Ready(ctx)
			}
			return errors.New("starting")
		}, log, joinRoutes(ingest.routes(reg), stopAPI.routes(), web.routes()))
		if err != nil {
			return err
		}
		defer ops.stop()
	}

	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A signal during start-up is a shutdown like any other: nothing was
	// taken yet, and the exit is clean.
	stoppedEarly := func(err error) error {
		if ctx.Err() != nil {
			log.Info("stopped during start-up", zap.NamedError("interrupted", err))
			return nil
		}
		return err
	}
	if err := startStep(setupCtx, log, "provision the streams and consumers", func(ctx context.Context) error {
		return worker.Provision(ctx, js, o.topology)
	}); err != nil {
		return stoppedEarly(err)
	}
	var st *store.KV
	if err := startStep(setupCtx, log, "open the store", func(ctx context.Context) (err error) {
		st, err = store.Open(ctx, js, store.Config{Replicas: o.topology.Replicas, OutcomeTTL: o.topology.MaxAge})
		return err
	}); err != nil {
		return stoppedEarly(err)
	}
	ingest.use(st)
	if err := stopAPI.use(js, st); err != nil {
		return err
	}
	if err := web.use(js, st); err != nil {
		return err
	}
	defer web.stop()
	// Instances bound to a platform end their contacts there, within one
	// budget per quota key shared by every replica.
	var promReg prometheus.Registerer
	if reg != nil {
		promReg = reg
	}
	// The budgets bucket is opened in the background if it cannot be at
	// once: only instances bound to a platform need it, and they wait.
	var budgets atomic.Pointer[budget.Budgets]
	openBudgets := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		bs, err := budget.Open(ctx, js, budget.Config{Replicas: o.topology.Replicas, Registerer: promReg})
		if err == nil {
			budgets.Store(bs)
		}
		return err
	}
	if err := openBudgets(setupCtx); err != nil && ctx.Err() == nil {
		log.Warn("the platforms' budgets bucket cannot be opened yet; instances bound to a platform wait until it can", zap.Error(err))
		go func() {
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
				if err := openBudgets(ctx); err == nil {
					log.Info("the platforms' budgets bucket is open")
					return
				}
			}
		}()
	}
	defer func() {
		if bs := budgets.Load(); bs != nil {
			bs.Close()
		}
	}()
	platforms, err := registry.New(registry.Config{Instances: st, BudgetsFunc: budgets.Load, Registerer: promReg, Logger: log.Named("platform")})
	if err != nil {
		return err
	}
	o.worker.Platforms = platforms
	if o.syncInterval > 0 {
		go runSyncs(ctx, js, st, platforms, o.syncInterval, log.Named("inventory"))
	}
	wk, err := worker.New(js, st, o.worker)
	if err != nil {
		return err
	}
	if err := startStep(setupCtx, log, "start the worker", wk.Start); err != nil {
		return stoppedEarly(err)
	}
	w.Store(wk)
	// Whatever disappears (a stream, a consumer, a bucket deleted by hand)
	// is created again, and /readyz says what is missing meanwhile.
	ensure := func(ctx context.Context) ([]string, error) {
		recreated, err := st.Ensure(ctx)
		if err != nil {
			return recreated, err
		}
		bs := budgets.Load()
		if bs == nil {
			return recreated, nil
		}
		more, err := bs.Ensure(ctx)
		return append(recreated, more...), err
	}
	kp := worker.NewKeeper(js, worker.KeeperConfig{Topology: o.topology, Ensure: ensure, Logger: log})
	kp.Start(ctx)
	defer kp.Stop()
	keeper.Store(kp)
	log.Info("serving", zap.String("nats", nc.ConnectedUrlRedacted()), zap.Int("workers", o.worker.Workers))
	if o.worker.Emergency {
		log.Warn("emergency handling is ON: emergency.broadcast.<instance> clears that instance's queued contacts",
			zap.Duration("emergency_max_age", o.worker.EmergencyMaxAge))
	}

	<-ctx.Done()
	log.Info("shutting down: no new requests are pulled", zap.Duration("timeout", o.shutdownTimeout))
	stopCtx, cancelStop := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancelStop()
	if err := wk.Stop(stopCtx); err != nil {
		log.Warn("in-flight requests were handed back at the shutdown deadline", zap.Error(err))
	}
	// Send the last acknowledgements before the connection closes.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		log.Warn("flushing the NATS connection", zap.Error(err))
	}
	return nil
}

// startCPUProfile profiles the process's CPU into path until stop.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// startAttempt bounds one attempt of a start-up step: a request to a
// server cut off from its cluster may get no answer at all. A step on a
// healthy cluster (creating every stream and consumer at three replicas)
// takes a few seconds at most.
const startAttempt = 10 * time.Second

// startStep runs one step of serve's start-up. JetStream may be
// unavailable for a while (a leader being elected, a partition healing, a
// server still starting): the step is tried again, with backoff, until ctx
// ends. Any other error ends the start-up at once.
func startStep(ctx context.Context, log *zap.Logger, what string, step func(ctx context.Context) error) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(3*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	var last error
	err := backoff.RetryNotify(func() error {
		actx, cancel := context.WithTimeout(ctx, startAttempt)
		defer cancel()
		last = step(actx)
		if last != nil && (ctx.Err() != nil || !unavailable(last)) {
			return backoff.Permanent(last)
		}
		return last
	}, b, func(err error, next time.Duration) {
		log.Warn("JetStream is not available yet; trying again", zap.String("step", what), zap.Duration("next", next), zap.Error(err))
	})
	if err != nil && last != nil && unavailable(last) {
		return fmt.Errorf("%s: JetStream did not become available: %w", what, last)
	}
	return err
}

// unavailable reports whether err says that JetStream cannot answer for
// now, rather than that the request is wrong.
func unavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 // 503: JetStream system temporarily unavailable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
