package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/embedded"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

type benchOptions struct {
	natsURL    string
	count      int
	workers    int
	batch      int
	cpuProfile string
	rate       int
	latencyFor time.Duration
	baseline   bool
	ceiling    bool
	bulk       bool
	replicas   int
	json       bool
	dataDir    string
	sec        natsSecurity

	platformClear int
	platform      string
	platformRate  float64
	platformBurst int
}

// benchReport is what bench measured; --json prints it.
type benchReport struct {
	Server   string `json:"server"`
	Requests int    `json:"requests"`
	Workers  int    `json:"workers"`

	DrainSeconds    float64 `json:"drainSeconds"`
	DrainStopsPerS  float64 `json:"drainStopsPerSecond"`
	BaselineMsgsPS  float64 `json:"baselineMsgsPerSecond,omitempty"`
	DrainToBaseline float64 `json:"drainToBaseline,omitempty"`
	// DrainWorkerCPUMicros is the worker's CPU time from the first result
	// to the last, per stop: the drain without the process's start-up,
	// measured as compare.sh's bound measures its own.
	DrainWorkerCPUMicros float64 `json:"drainWorkerCpuMicrosPerStop,omitempty"`

	BulkSeconds   float64 `json:"bulkSeconds,omitempty"`
	BulkStopsPerS float64 `json:"bulkStopsPerSecond,omitempty"`

	LatencyRate  int                `json:"latencyOfferedPerSecond,omitempty"`
	LatencyCount int                `json:"latencyRequests,omitempty"`
	LatencyMS    map[string]float64 `json:"latencyMillis,omitempty"`
	// LatencyRSSMiB is the worker's resident memory during the latency
	// phase, sampled every second: the mean of the first and of the last
	// tenth of the samples, and the largest.
	LatencyRSSMiB map[string]float64 `json:"latencyRssMiB,omitempty"`
	// LatencyWindows are the percentiles of each latencyWindow of the
	// phase, by publish time: where in the run the slow requests were.
	LatencyWindows []latencyWindow `json:"latencyWindows,omitempty"`
	// LatencyMinutes are the same per minute of the phase (when it lasts
	// a minute or more).
	LatencyMinutes []latencyWindow `json:"latencyMinutes,omitempty"`
	// LatencyWorkerCPUMicros is the worker's CPU time during the latency
	// phase per request offered, in microseconds.
	LatencyWorkerCPUMicros float64 `json:"latencyWorkerCpuMicrosPerRequest,omitempty"`

	// CeilingLatencyMS and the rest are the latency phase's figures for
	// the design's ceiling at the same rate (--latency-ceiling).
	CeilingLatencyMS      map[string]float64 `json:"ceilingLatencyMillis,omitempty"`
	CeilingLatencyWindows []latencyWindow    `json:"ceilingLatencyWindows,omitempty"`
	CeilingLatencyMinutes []latencyWindow    `json:"ceilingLatencyMinutes,omitempty"`
	// CeilingProcessCPUMicros is the bench process's CPU time during the
	// ceiling's phase per request: its publisher, its stop worker and its
	// result subscriber together.
	CeilingProcessCPUMicros float64 `json:"ceilingProcessCpuMicrosPerRequest,omitempty"`

	WorkerCPUSeconds float64 `json:"workerCpuSeconds"`
	WorkerPeakRSSMiB float64 `json:"workerPeakRssMiB"`

	Verified bool     `json:"verified"`
	Problems []string `json:"problems,omitempty"`
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench [--count N] [--rate R] [--baseline] [--bulk] [--nats-url URL]",
		Short: "Load test: drain a backlog, measure latency at a rate, and verify every guarantee",
		Long: `Measure the worker on a NATS server, and check that nothing was lost,
duplicated or ended twice.

Without --nats-url an embedded server runs inside this process (files in a
temporary directory, or --data-dir). With --nats-url the given server is used,
and contactstop's streams and buckets on it are DELETED first: use a
throw-away server.

The worker runs as a child process ("contactstop serve --nats-url …"), so its
CPU time and peak RSS are its own. Phases:

  seed       write --count contacts
  baseline   (--baseline) raw JetStream async publishes of 128-byte messages
  drain      publish --count stop requests, then start the worker; stops/s
             from the first stored result to the last (JetStream's
             timestamps)
  latency    (--rate R) publish R requests/s for --latency-for; publish→result
             percentiles, read from result arrival times
  ceiling    (--latency-ceiling) the same for the design's ceiling: a stop
             worker in the bench process doing only each request's
             compare-and-set (no read) and result, pipelined, on a bucket
             and streams of its own
  bulk       (--bulk) one bulk request clearing --count more contacts, in
             an instance of their own; stops/s from request to completion
             event
  verify     every request has exactly one stored result, all
             contact.stopped, no requestId twice, every contact ENDED by its
             request

Exit code 0 when verification passed, 1 otherwise.`,
		Example: `  contactstop bench --count 100000 --baseline
  contactstop bench --count 20000 --rate 5000 --latency-for 20s --json
  contactstop bench --nats-url nats://127.0.0.1:4333 --count 1000000 --bulk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.count < 1 || o.workers < 1 || o.rate < 0 {
				return errors.New("--count and --workers must be at least 1, --rate not negative")
			}
			if o.ceiling && o.rate == 0 {
				return errors.New("--latency-ceiling needs --rate: it measures the ceiling at the latency phase's rate")
			}
			if o.platformClear > 0 {
				if o.platformRate <= 0 || o.platformBurst < 1 {
					return errors.New("--platform-rate must be above 0 and --platform-burst at least 1")
				}
				rep, err := runPlatformBench(cmd.Context(), cmd.ErrOrStderr(), o)
				if err != nil {
					return err
				}
				if o.json {
					if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
						return err
					}
				} else {
					printPlatformTable(cmd.OutOrStdout(), rep)
				}
				if !rep.Verified {
					return fmt.Errorf("verification failed: %s", strings.Join(rep.Problems, "; "))
				}
				return nil
			}
			rep, err := runBench(cmd.Context(), cmd.ErrOrStderr(), o)
			if err != nil {
				return err
			}
			if o.json {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printBenchTable(cmd.OutOrStdout(), rep)
			}
			if !rep.Verified {
				return fmt.Errorf("verification failed: %s", strings.Join(rep.Problems, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.natsURL, "nats-url", "", "server to measure (its contactstop streams are deleted); empty: an embedded server")
	f.StringVar(&o.dataDir, "data-dir", "", "embedded server: JetStream directory (default: a temporary one, removed after)")
	f.IntVar(&o.count, "count", 100000, "requests in the backlog (and contacts in the bulk clear)")
	f.IntVar(&o.workers, "workers", worker.DefaultWorkers, "the worker's --workers and --bulk-workers")
	f.IntVar(&o.batch, "batch-size", worker.DefaultBatchSize, "the worker's --batch-size")
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write pprof CPU profiles to this directory: worker.pprof (the worker process, whole run) and, with the embedded server, server.pprof (this process during the drain)")
	f.IntVar(&o.rate, "rate", 0, "offered requests per second for the latency phase; 0: skip it")
	f.DurationVar(&o.latencyFor, "latency-for", 10*time.Second, "length of the latency phase")
	f.BoolVar(&o.baseline, "baseline", false, "also measure raw JetStream async publishes of 128-byte messages")
	f.BoolVar(&o.ceiling, "latency-ceiling", false, "with --rate: also measure the design's ceiling at the same rate and length (an in-process worker doing only each request's compare-and-set and result, pipelined, no read)")
	f.BoolVar(&o.bulk, "bulk", false, "also measure a bulk clear of --count contacts")
	f.IntVar(&o.replicas, "replicas", 1, "stream and bucket replicas (3 on a cluster)")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.IntVar(&o.platformClear, "platform-clear", 0, "instead of the phases above: clear this many contacts of two instances bound to a platform's fake (--platform) with one shared budget, from two worker processes, with single stops meanwhile; report the rate reached against the budget")
	f.StringVar(&o.platform, "platform", "amazon-connect", "--platform-clear: the platform whose fake is measured: amazon-connect, cxone or genesys")
	f.Float64Var(&o.platformRate, "platform-rate", 10, "--platform-clear: the budget and the fake's quota, StopContact calls per second")
	f.IntVar(&o.platformBurst, "platform-burst", 15, "--platform-clear: the budget's and the fake's burst")
	o.sec.register(f)
	return cmd
}

type bench struct {
	o      benchOptions
	log    io.Writer
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.KV
	rep    benchReport
	child  *exec.Cmd
	exited chan error // receives the worker process's exit
	// connOpts connect to the server as nc does.
	connOpts []nats.Option
}

func runBench(ctx context.Context, log io.Writer, o benchOptions) (*benchReport, error) {
	b := &bench{o: o, log: log, url: o.natsURL}
	if b.url == "" {
		dir := o.dataDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "contactstop-bench-")
			if err != nil {
				return nil, err
			}
			defer func() { _ = os.RemoveAll(tmp) }()
			dir = tmp
		}
		srv, err := embedded.Start(embedded.Config{DataDir: dir, Listen: "127.0.0.1:-1"})
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		b.url = srv.ClientURL()
		b.rep.Server = "embedded in the bench process"
	} else {
		b.rep.Server = o.natsURL
	}
	b.rep.Requests, b.rep.Workers = o.count, o.workers
	sec, err := o.sec.options()
	if err != nil {
		return nil, err
	}
	b.connOpts = append(sec, nats.MaxReconnects(-1))
	if b.nc, err = nats.Connect(b.url, append(b.connOpts, nats.Name("contactstop bench"))...); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer b.nc.Close()
	if b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return nil, err
	}
	defer func() { _ = b.stopWorker() }()
	for _, phase := range []func(context.Context) error{b.reset, b.seed, b.measureBaseline, b.drain, b.latency, b.latencyCeiling, b.bulkClear, b.verify} {
		if err := phase(ctx); err != nil {
			return nil, err
		}
	}
	if err := b.stopWorker(); err != nil {
		return nil, err
	}
	return &b.rep, nil
}

func (b *bench) say(format string, args ...any) { fmt.Fprintf(b.log, format+"\n", args...) }

func (b *bench) bar(n int, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(b.log), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionClearOnFinish(),
		progressbar.OptionSetVisibility(isTerminal(os.Stderr)), progressbar.OptionThrottle(100*time.Millisecond))
}

// reset deletes and re-creates contactstop's streams and buckets.
func (b *bench) reset(ctx context.Context) error {
	for _, s := range []string{events.StreamRequests, events.StreamResults, events.StreamDeadLetter, events.StreamBulk, "CONTACTSTOP_BENCH_RAW"} {
		_ = b.js.DeleteStream(ctx, s)
	}
	b.deleteCeiling()
	for _, kv := range []string{"contactstop-contacts", "contactstop-instances", "contactstop-bulks"} {
		_ = b.js.DeleteKeyValue(ctx, kv)
	}
	if err := worker.Provision(ctx, b.js, worker.TopologyConfig{Replicas: b.o.replicas, MaxAckPending: max(1024, 2*b.o.workers)}); err != nil {
		return err
	}
	var err error
	if b.st, err = store.Open(ctx, b.js, store.Config{Replicas: b.o.replicas}); err != nil {
		return err
	}
	for _, inst := range []string{benchInstance, benchBulkInstance} {
		if _, err = b.st.PutInstance(ctx, store.Instance{InstanceID: inst}); err != nil {
			return err
		}
	}
	return nil
}

// The single requests' contacts are in one instance; the bulk clear's in
// another, so that the clear walks only its own contacts.
const (
	benchInstance     = "bench"
	benchBulkInstance = "bench-bulk"
)

func (b *bench) seedContacts(ctx context.Context, instance, prefix string, n int) error {
	bar := b.bar(n, "seeding "+prefix)
	defer func() { _ = bar.Finish() }()
	_, err := b.st.SeedContacts(ctx, iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
		for i := range n {
			if !yield(store.Contact{ContactID: prefix + strconv.Itoa(i), InstanceID: instance,
				State: store.StateQueued, QueueID: prefix, Channel: store.ChannelVoice}) {
				return
			}
			_ = bar.Add(1)
		}
	}))
	return err
}

func (b *bench) seed(ctx context.Context) error {
	if err := b.seedContacts(ctx, benchInstance, "d", b.o.count); err != nil {
		return err
	}
	if b.o.rate > 0 {
		if err := b.seedContacts(ctx, benchInstance, "l", b.o.rate*int(b.o.latencyFor.Seconds())); err != nil {
			return err
		}
	}
	if b.o.bulk {
		return b.seedContacts(ctx, benchBulkInstance, "b", b.o.count)
	}
	return nil
}

// publishAll publishes n messages asynchronously with a bounded window and
// waits for every acknowledgement.
func (b *bench) publishAll(ctx context.Context, n int, msg func(i int) *nats.Msg, bar *progressbar.ProgressBar) error {
	for i := range n {
		if _, err := b.js.PublishMsgAsync(msg(i), jetstream.WithStallWait(time.Minute)); err != nil {
			return err
		}
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *bench) measureBaseline(ctx context.Context) error {
	if !b.o.baseline {
		return nil
	}
	_, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "CONTACTSTOP_BENCH_RAW", Subjects: []string{"contactstop.bench.raw"},
		Storage: jetstream.FileStorage, Replicas: b.o.replicas})
	if err != nil {
		return err
	}
	defer func() { _ = b.js.DeleteStream(context.Background(), "CONTACTSTOP_BENCH_RAW") }()
	payload := make([]byte, 128)
	b.say("baseline: %d async publishes of 128 bytes", b.o.count)
	start := time.Now()
	err = b.publishAll(ctx, b.o.count, func(int) *nats.Msg { return &nats.Msg{Subject: "contactstop.bench.raw", Data: payload} }, nil)
	if err != nil {
		return err
	}
	b.rep.BaselineMsgsPS = float64(b.o.count) / time.Since(start).Seconds()
	return nil
}

func (b *bench) request(id, contact string) *nats.Msg {
	m := &nats.Msg{Subject: events.StopRequestedSubject(benchInstance), Header: nats.Header{},
		Data: fmt.Appendf(nil, `{"requestId":%q,"contactId":%q,"instanceId":%q}`, id, contact, benchInstance)}
	m.Header.Set(events.HeaderMsgID, events.RequestMsgID(benchInstance, id))
	return m
}

func (b *bench) resultCount(ctx context.Context) (uint64, error) {
	s, err := b.js.Stream(ctx, events.StreamResults)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// waitResults waits until n results are stored, advancing bar.
func (b *bench) waitResults(ctx context.Context, n uint64, bar *progressbar.ProgressBar) error {
	for {
		got, err := b.resultCount(ctx)
		if err != nil {
			return err
		}
		if bar != nil {
			_ = bar.Set64(int64(got))
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-b.exited:
			b.child = nil
			return fmt.Errorf("the worker process exited: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *bench) drain(ctx context.Context) error {
	bar := b.bar(b.o.count, "publishing backlog")
	if err := b.publishAll(ctx, b.o.count, func(i int) *nats.Msg {
		return b.request("d-"+strconv.Itoa(i), "d"+strconv.Itoa(i))
	}, bar); err != nil {
		return err
	}
	_ = bar.Finish()
	if err := b.startWorker(ctx); err != nil {
		return err
	}
	// Timed from the first result to the last as JetStream stored them,
	// not counting the worker process's start-up (nor this process's
	// polling interval).
	if err := b.waitResults(ctx, 1, nil); err != nil {
		return err
	}
	cpu0, cpuErr := b.workerCPU()
	if b.o.cpuProfile != "" && b.o.natsURL == "" {
		stop, err := startCPUProfile(filepath.Join(b.o.cpuProfile, "server.pprof"))
		if err != nil {
			return err
		}
		defer func() { _ = stop() }()
	}
	bar = b.bar(b.o.count, "draining")
	if err := b.waitResults(ctx, uint64(b.o.count), bar); err != nil {
		return err
	}
	if cpu1, err := b.workerCPU(); err == nil && cpuErr == nil && b.o.count > 1 {
		b.rep.DrainWorkerCPUMicros = (cpu1 - cpu0) / float64(b.o.count-1) * 1e6
	}
	_ = bar.Finish()
	results, err := b.js.Stream(ctx, events.StreamResults)
	if err != nil {
		return err
	}
	first, err := results.GetMsg(ctx, 1)
	if err != nil {
		return err
	}
	last, err := results.GetMsg(ctx, uint64(b.o.count))
	if err != nil {
		return err
	}
	// n results stored from the first to the last: n-1 intervals.
	b.rep.DrainSeconds = last.Time.Sub(first.Time).Seconds()
	b.rep.DrainStopsPerS = float64(b.o.count-1) / max(b.rep.DrainSeconds, 1e-6)
	if b.rep.BaselineMsgsPS > 0 {
		b.rep.DrainToBaseline = b.rep.DrainStopsPerS / b.rep.BaselineMsgsPS
	}
	return nil
}

// latencyWindowLen is the length of a latencyWindow.
const latencyWindowLen = 10 * time.Second

// latencyWindow is the latency of the requests published in one window of
// the latency phase.
type latencyWindow struct {
	StartS float64 `json:"startSeconds"` // from the start of the phase
	P50MS  float64 `json:"p50Millis"`
	P99MS  float64 `json:"p99Millis"`
	MaxMS  float64 `json:"maxMillis"`
}

// latencyWindows splits got, the latencies of requests published at a
// steady interval, into windows of length each.
func latencyWindows(got []time.Duration, interval, length time.Duration) []latencyWindow {
	per := max(1, int(length/interval))
	var out []latencyWindow
	for lo := 0; lo < len(got); lo += per {
		w := slices.Clone(got[lo:min(len(got), lo+per)])
		slices.Sort(w)
		out = append(out, latencyWindow{
			StartS: (time.Duration(lo) * interval).Seconds(),
			P50MS:  percentileMS(w, .50),
			P99MS:  percentileMS(w, .99),
			MaxMS:  percentileMS(w, 1),
		})
	}
	return out
}

// percentileMS returns the p-th percentile (0 to 1) of sorted latencies, in
// milliseconds.
func percentileMS(sorted []time.Duration, p float64) float64 {
	return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
}

// latency offers requests at a steady rate and times each from publish to
// the arrival of its result.
func (b *bench) latency(ctx context.Context) error {
	if b.o.rate == 0 {
		return nil
	}
	n := b.o.rate * int(b.o.latencyFor.Seconds())
	base, err := b.resultCount(ctx)
	if err != nil {
		return err
	}
	b.say("latency: %d requests at %d/s", n, b.o.rate)
	stopSampling := b.sampleRSS()
	cpu0, cpuErr := b.workerCPU()
	got, err := b.offer(ctx, n, "latency", events.StoppedSubject(benchInstance),
		func(i int) *nats.Msg { return b.request("l-"+strconv.Itoa(i), "l"+strconv.Itoa(i)) },
		func(m *nats.Msg) int {
			id, ok := strings.CutPrefix(requestIDOf(m.Data), "l-")
			if !ok {
				return -1
			}
			i, err := strconv.Atoi(id)
			if err != nil {
				return -1
			}
			return i
		})
	if err != nil {
		return err
	}
	b.rep.LatencyRSSMiB = stopSampling()
	if err := b.waitResults(ctx, base+uint64(n), nil); err != nil {
		return err
	}
	if cpu1, err := b.workerCPU(); err == nil && cpuErr == nil {
		b.rep.LatencyWorkerCPUMicros = (cpu1 - cpu0) / float64(n) * 1e6
	}
	b.rep.LatencyRate, b.rep.LatencyCount = b.o.rate, n
	b.rep.LatencyMS, b.rep.LatencyWindows, b.rep.LatencyMinutes = b.summarize(got)
	return nil
}

// offer publishes n messages made by msg at b.o.rate and returns, for
// each, the time from its publish to the arrival of its result on
// resultSubject; index tells which message a result answers (-1: none).
func (b *bench) offer(ctx context.Context, n int, what, resultSubject string, msg func(i int) *nats.Msg, index func(*nats.Msg) int) ([]time.Duration, error) {
	sent := make([]time.Time, n)
	got := make([]time.Duration, n)
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	sub, err := b.nc.Subscribe(resultSubject, func(m *nats.Msg) {
		now := time.Now()
		i := index(m)
		if i < 0 || i >= n {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if got[i] == 0 && !sent[i].IsZero() {
			got[i] = now.Sub(sent[i])
			if arrived++; arrived == n {
				close(all)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	bar := b.bar(n, what)
	interval := time.Second / time.Duration(b.o.rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if _, err := b.js.PublishMsgAsync(msg(i), jetstream.WithStallWait(time.Minute)); err != nil {
			return nil, err
		}
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	select {
	case <-all:
		return got, nil
	case <-time.After(time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("%s: only %d of %d results arrived within a minute", what, arrived, n)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// summarize gives the percentiles of a run of offer, overall, per
// latencyWindowLen and, for runs of a minute or more, per minute.
func (b *bench) summarize(got []time.Duration) (ms map[string]float64, windows, minutes []latencyWindow) {
	interval := time.Second / time.Duration(b.o.rate)
	windows = latencyWindows(got, interval, latencyWindowLen)
	if b.o.latencyFor >= time.Minute {
		minutes = latencyWindows(got, interval, time.Minute)
	}
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	return map[string]float64{"p50": percentileMS(sorted, .50), "p90": percentileMS(sorted, .90),
		"p99": percentileMS(sorted, .99), "max": percentileMS(sorted, 1)}, windows, minutes
}

// sampleRSS samples the worker's resident memory every second until the
// returned function is called, which summarizes the samples: the mean of
// the first and of the last tenth, and the largest (nil without samples).
func (b *bench) sampleRSS() (stop func() map[string]float64) {
	if b.child == nil || b.child.Process == nil {
		return func() map[string]float64 { return nil }
	}
	pid := b.child.Process.Pid
	done := make(chan struct{})
	samples := make(chan []float64, 1)
	go func() {
		var got []float64
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if rss, err := procRSS(pid); err == nil {
					got = append(got, rss)
				}
			case <-done:
				samples <- got
				return
			}
		}
	}()
	return func() map[string]float64 {
		close(done)
		got := <-samples
		if len(got) == 0 {
			return nil
		}
		tenth := max(1, len(got)/10)
		mean := func(xs []float64) float64 {
			sum := 0.0
			for _, x := range xs {
				sum += x
			}
			return sum / float64(len(xs))
		}
		return map[string]float64{"first": mean(got[:tenth]), "last": mean(got[len(got)-tenth:]), "max": slices.Max(got)}
	}
}

// procRSS reads a process's current resident memory (MiB) from /proc.
func procRSS(pid int) (float64, error) {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// requestIDOf extracts the requestId of a result body without a full decode.
func requestIDOf(data []byte) string {
	_, rest, ok := strings.Cut(string(data), `"requestId":"`)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, `"`)
	return id
}

func (b *bench) bulkClear(ctx context.Context) error {
	if !b.o.bulk {
		return nil
	}
	base, err := b.resultCount(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = events.NewPublisher(b.js).Bulk(ctx, events.BulkRequest{BulkID: "bench", InstanceID: benchBulkInstance,
		Filter: events.BulkFilter{QueueIDs: []string{"b"}}})
	if err != nil {
		return err
	}
	bar := b.bar(b.o.count+1, "bulk clear")
	for {
		rec, err := b.st.GetBulk(ctx, benchBulkInstance, "bench")
		if err == nil {
			_ = bar.Set(rec.Done)
			if rec.Status == store.BulkCompleted {
				break
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = bar.Finish()
	b.rep.BulkSeconds = time.Since(start).Seconds()
	b.rep.BulkStopsPerS = float64(b.o.count) / b.rep.BulkSeconds
	return b.waitResults(ctx, base+uint64(b.o.count)+1, nil)
}

// verify reads every stored result and every contact.
func (b *bench) verify(ctx context.Context) error {
	want := b.o.count + b.o.rate*int(b.o.latencyFor.Seconds())
	if b.o.bulk {
		want += b.o.count
	}
	bar := b.bar(want, "verifying")
	defer func() { _ = bar.Finish() }()
	var problems []string
	seen := make(map[string]bool, want)
	cons, err := b.js.OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	total, err := b.resultCount(ctx)
	if err != nil {
		return err
	}
	completions := 0
	for read := uint64(0); read < total; {
		batch, err := cons.Fetch(int(min(1000, total-read)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			read++
			if strings.HasPrefix(m.Subject(), events.SubjectBulkCompleted+".") {
				completions++
				continue
			}
			res, err := events.DecodeResult(m.Subject(), m.Data())
			if err != nil {
				problems = append(problems, "unreadable result: "+err.Error())
				continue
			}
			id := res.RequestID()
			if seen[id] {
				problems = append(problems, "request "+id+" has two stored results")
			}
			seen[id] = true
			if res.Failed != nil {
				problems = append(problems, fmt.Sprintf("request %s failed: %s", id, res.Failed.ReasonCode))
			}
			_ = bar.Add(1)
		}
		if err := batch.Error(); err != nil {
			return err
		}
	}
	if len(seen) != want {
		problems = append(problems, fmt.Sprintf("%d requests have a result, want %d", len(seen), want))
	}
	if b.o.bulk && completions != 1 {
		problems = append(problems, fmt.Sprintf("%d bulk completion events, want 1", completions))
	}
	ended := 0
	for _, inst := range []string{benchInstance, benchBulkInstance} {
		err = b.st.ListContacts(ctx, inst, func(c store.Contact) error {
			// Contact d7 was stopped by request d-7, l7 by l-7, b7 by the bulk.
			wantBy := c.ContactID[:1] + "-" + c.ContactID[1:]
			if c.QueueID == "b" {
				wantBy = events.BulkItemRequestID("bench", c.ContactID)
			}
			switch {
			case c.State != store.StateEnded:
				problems = append(problems, "contact "+c.ContactID+" is not ENDED")
			case c.EndedBy != wantBy:
				problems = append(problems, fmt.Sprintf("contact %s ended by %s, want %s", c.ContactID, c.EndedBy, wantBy))
			default:
				ended++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if ended != want {
		problems = append(problems, fmt.Sprintf("%d contacts ENDED by their request, want %d", ended, want))
	}
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("… and %d more", len(problems)-10))
	}
	b.rep.Verified, b.rep.Problems = len(problems) == 0, problems
	return nil
}

// startWorker runs "contactstop serve" as a child process on the server.
func (b *bench) startWorker(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b.child = exec.Command(exe, "serve", "--nats-url", b.url, "--workers", strconv.Itoa(b.o.workers), "--batch-size", strconv.Itoa(min(b.o.batch, b.o.workers)),
		"--bulk-workers", strconv.Itoa(b.o.workers), "--replicas", strconv.Itoa(b.o.replicas),
		"--max-ack-pending", strconv.Itoa(max(1024, 2*b.o.workers)), "--log-level", "warn")
	if b.o.cpuProfile != "" {
		b.child.Args = append(b.child.Args, "--cpu-profile", filepath.Join(b.o.cpuProfile, "worker.pprof"))
	}
	b.child.Args = append(b.child.Args, b.o.sec.args()...)
	b.child.Stdout, b.child.Stderr = os.Stderr, os.Stderr
	b.child.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "CONTACTSTOP_") })
	if err := b.child.Start(); err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	b.exited = make(chan error, 1)
	go func(c *exec.Cmd) { b.exited <- c.Wait() }(b.child)
	return nil
}

// workerCPU is the worker process's CPU time so far, in seconds.
func (b *bench) workerCPU() (float64, error) {
	if b.child == nil {
		return 0, errors.New("no worker process")
	}
	cpu, _, err := procUsage(b.child.Process.Pid)
	return cpu, err
}

// stopWorker stops the worker process with SIGTERM, first reading its CPU
// time and peak RSS. It is safe to call twice.
func (b *bench) stopWorker() error {
	if b.child == nil || b.child.Process == nil {
		return nil
	}
	p := b.child.Process
	b.child = nil
	cpu, rss, err := procUsage(p.Pid)
	if err == nil {
		b.rep.WorkerCPUSeconds, b.rep.WorkerPeakRSSMiB = cpu, rss
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case exit := <-b.exited:
		if exit != nil {
			return fmt.Errorf("the worker exited with %w after SIGTERM", exit)
		}
	case <-time.After(45 * time.Second):
		_ = p.Kill()
		<-b.exited
		return errors.New("the worker did not stop within 45s of SIGTERM")
	}
	return err
}

// procUsage reads a process's CPU time (user+system, seconds) and peak RSS
// (MiB) from /proc.
func procUsage(pid int) (cpu, rssMiB float64, err error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 14th and 15th fields of the line.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			rssMiB = kb / 1024
		}
	}
	return (ut + st) / ticks, rssMiB, nil
}

func printBenchTable(out io.Writer, r *benchReport) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "server\t%s\n", r.Server)
	fmt.Fprintf(tw, "requests / workers\t%d / %d\n", r.Requests, r.Workers)
	if r.BaselineMsgsPS > 0 {
		fmt.Fprintf(tw, "raw async publish (128 B)\t%.0f msgs/s\n", r.BaselineMsgsPS)
	}
	fmt.Fprintf(tw, "backlog drain\t%.0f stops/s (%.2fs)\n", r.DrainStopsPerS, r.DrainSeconds)
	if r.DrainToBaseline > 0 {
		fmt.Fprintf(tw, "drain / raw\t%.1f%%\n", 100*r.DrainToBaseline)
	}
	if r.DrainWorkerCPUMicros > 0 {
		fmt.Fprintf(tw, "worker CPU in the drain\t%.1f µs per stop (first result to last)\n", r.DrainWorkerCPUMicros)
	}
	if r.LatencyCount > 0 {
		fmt.Fprintf(tw, "latency at %d/s (%d requests)\tp50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.LatencyRate, r.LatencyCount, r.LatencyMS["p50"], r.LatencyMS["p90"], r.LatencyMS["p99"], r.LatencyMS["max"])
	}
	if len(r.LatencyWindows) > 1 {
		worst := slices.Clone(r.LatencyWindows)
		slices.SortFunc(worst, func(a, b latencyWindow) int { return cmp.Compare(b.P99MS, a.P99MS) })
		var parts []string
		for _, w := range worst[:min(5, len(worst))] {
			parts = append(parts, fmt.Sprintf("%.0fs %.1f/%.0f ms", w.StartS, w.P99MS, w.MaxMS))
		}
		fmt.Fprintf(tw, "slowest %s windows (start: p99/max)\t%s\n", latencyWindowLen, strings.Join(parts, ", "))
	}
	if len(r.LatencyMinutes) > 0 {
		var parts []string
		for _, w := range r.LatencyMinutes {
			parts = append(parts, fmt.Sprintf("%.1f/%.1f", w.P50MS, w.P99MS))
		}
		fmt.Fprintf(tw, "per minute (p50/p99 ms)\t%s\n", strings.Join(parts, ", "))
	}
	if r.LatencyWorkerCPUMicros > 0 {
		fmt.Fprintf(tw, "worker CPU at that rate\t%.1f µs per request\n", r.LatencyWorkerCPUMicros)
	}
	if r.LatencyRSSMiB != nil {
		fmt.Fprintf(tw, "worker RSS while at that rate\tfirst tenth %.1f MiB, last tenth %.1f MiB, max %.1f MiB\n",
			r.LatencyRSSMiB["first"], r.LatencyRSSMiB["last"], r.LatencyRSSMiB["max"])
	}
	if r.CeilingLatencyMS != nil {
		fmt.Fprintf(tw, "ceiling's latency at %d/s\tp50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.LatencyRate, r.CeilingLatencyMS["p50"], r.CeilingLatencyMS["p90"], r.CeilingLatencyMS["p99"], r.CeilingLatencyMS["max"])
		if len(r.CeilingLatencyMinutes) > 0 {
			var parts []string
			for _, w := range r.CeilingLatencyMinutes {
				parts = append(parts, fmt.Sprintf("%.1f/%.1f", w.P50MS, w.P99MS))
			}
			fmt.Fprintf(tw, "ceiling per minute (p50/p99 ms)\t%s\n", strings.Join(parts, ", "))
		}
		fmt.Fprintf(tw, "ceiling's process CPU at that rate\t%.1f µs per request (publisher, worker, subscriber)\n", r.CeilingProcessCPUMicros)
	}
	if r.BulkSeconds > 0 {
		fmt.Fprintf(tw, "bulk clear\t%.0f stops/s (%.2fs, request to completion)\n", r.BulkStopsPerS, r.BulkSeconds)
	}
	fmt.Fprintf(tw, "worker CPU / peak RSS\t%.1f s / %.0f MiB\n", r.WorkerCPUSeconds, r.WorkerPeakRSSMiB)
	verdict := "PASSED: every request has exactly one result, all stopped; every contact ENDED by its request"
	if !r.Verified {
		verdict = "FAILED: " + strings.Join(r.Problems, "; ")
	}
	fmt.Fprintf(tw, "verification\t%s\n", verdict)
	_ = tw.Flush()
}
