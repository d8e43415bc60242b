package main

import (
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/internal/embedded"
	"github.com/contactstop/contactstop/platform/amazonconnect/connecttest"
	"github.com/contactstop/contactstop/platform/cxone/cxonetest"
	"github.com/contactstop/contactstop/platform/genesys/genesystest"
	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
	"github.com/contactstop/contactstop/store"
)

// The platform phase of bench (--platform-clear N): how close a clear of a
// bound instance comes to the platform's budget, which is its limit. A fake
// Amazon Connect API (platform/amazonconnect/connecttest, the AWS SDK
// talking to it over HTTP with SigV4) enforces the binding's quota as
// Amazon does, throttling anything beyond it; two instances bound with one
// quota key are cleared at once by two worker processes (two replicas
// sharing one budget), while single requests arrive twice a second.

// platformReport is what the platform phase measured.
type platformReport struct {
	Platform string  `json:"platform"`
	Contacts int     `json:"contacts"`
	Replicas int     `json:"replicas"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
	// Seconds is from the first StopContact call to the last.
	Seconds float64 `json:"seconds"`
	// CallsPerSecond is the StopContact calls over Seconds;
	// SustainedPerSecond leaves out the burst (calls − burst over
	// Seconds), the figure to hold against Rate.
	CallsPerSecond     float64 `json:"callsPerSecond"`
	SustainedPerSecond float64 `json:"sustainedPerSecond"`
	SustainedToRate    float64 `json:"sustainedToRate"`
	// MaxCallsInASecond is the most StopContact calls in any 1 s window
	// (the budget allows burst + rate).
	MaxCallsInASecond int `json:"maxCallsInASecond"`
	// Throttled counts calls the platform refused for its quota: the
	// budget's grants and the platform's bucket see the calls a network
	// hop apart, so a call granted on time may arrive a little early. They
	// took no effect and were made again; no result says throttled.
	Throttled int `json:"throttled"`
	// SingleMS are the single requests' publish → stored result times.
	SingleMS        []float64 `json:"singleMillis"`
	SingleMaxMS     float64   `json:"singleMaxMillis"`
	TokenIntervalMS float64   `json:"tokenIntervalMillis"`
	ClearSeconds    float64   `json:"clearSeconds"`
	Verified        bool      `json:"verified"`
	Problems        []string  `json:"problems,omitempty"`
}

// benchFake is one platform's fake as the platform phase drives it.
type benchFake struct {
	// binding binds an instance to the fake (the budget's fields aside).
	binding store.Binding
	// id is the platform's contact id for a name (nil: the name).
	id func(string) string
	// env is the credentials the workers read from their environment.
	env []string
	// add adds an active contact: queued, or with an agent.
	add func(id string, queued bool)
	// effects is how many stops ended a contact.
	effects func(id string) int
	// stops are the times of the stop calls the fake received, and how
	// many of them it refused for its quota.
	stops func() (at []time.Time, throttled int)
	close func()
}

// startBenchFake starts the fake of a platform whose stop operation's quota
// is rate and burst, as the platform enforces its own.
func startBenchFake(name string, rate float64, burst int) (*benchFake, error) {
	enq := time.Now().Add(-time.Minute)
	switch name {
	case store.PlatformAmazonConnect:
		f := connecttest.Start(connecttest.WithInstance(benchConnectID), connecttest.WithQuota(connecttest.OpStopContact, rate, burst))
		return &benchFake{
			binding: store.Binding{Platform: name, ConnectInstanceID: benchConnectID, Region: f.Region, Endpoint: f.URL()},
			env:     []string{"AWS_ACCESS_KEY_ID=" + f.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + f.SecretAccessKey, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"},
			add: func(id string, queued bool) {
				c := connecttest.Contact{ID: id, AgentConnected: !queued}
				if queued {
					c.QueueID, c.EnqueuedAt = "q", enq
				}
				f.AddContact(benchConnectID, c)
			},
			effects: f.StopEffects,
			stops: func() (at []time.Time, throttled int) {
				for _, c := range f.Calls() {
					if c.Op == connecttest.OpStopContact {
						at = append(at, c.At)
						if c.Code == "ThrottlingException" {
							throttled++
						}
					}
				}
				return at, throttled
			},
			close: f.Close,
		}, nil
	case store.PlatformCXone:
		f := cxonetest.Start(cxonetest.WithQuota(cxonetest.OpStopContact, rate, burst))
		return &benchFake{
			binding: store.Binding{Platform: name, TenantID: f.TenantID, Endpoint: f.URL()},
			env: []string{"CXONE_ACCESS_KEY_ID=" + f.AccessKeyID, "CXONE_ACCESS_KEY_SECRET=" + f.AccessKeySecret,
				"CXONE_CLIENT_ID=" + f.ClientID, "CXONE_CLIENT_SECRET=" + f.ClientSecret},
			add: func(id string, queued bool) {
				c := cxonetest.Contact{ID: id, AgentConnected: !queued}
				if queued {
					c.SkillID, c.EnqueuedAt = "q", enq
				}
				f.AddContact(c)
			},
			effects: f.StopEffects,
			stops: func() (at []time.Time, throttled int) {
				for _, c := range f.CallsOf(cxonetest.OpStopContact) {
					at = append(at, c.At)
					if c.Status == 429 {
						throttled++
					}
				}
				return at, throttled
			},
			close: f.Close,
		}, nil
	case store.PlatformGenesys:
		// The stop quota stands for the client's limit (300 requests a minute by
		// default), which also counts the other calls.
		f := genesystest.Start(genesystest.WithQuota(genesystest.OpDisconnect, rate, burst), genesystest.WithClientLimit(0, time.Minute))
		return &benchFake{
			binding: store.Binding{Platform: name, Region: "mypurecloud.com", Endpoint: f.URL()},
			env:     []string{"GENESYSCLOUD_OAUTHCLIENT_ID=" + f.ClientID, "GENESYSCLOUD_OAUTHCLIENT_SECRET=" + f.ClientSecret},
			add: func(id string, queued bool) {
				f.AddConversation(genesystest.Conversation{ID: id, QueueID: "q", EnqueuedAt: enq, AgentConnected: !queued})
			},
			effects: f.StopEffects,
			stops: func() (at []time.Time, throttled int) {
				for _, c := range f.Calls() {
					if c.Op == genesystest.OpDisconnect {
						at = append(at, c.At)
						if c.Status == 429 {
							throttled++
						}
					}
				}
				return at, throttled
			},
			close: f.Close,
		}, nil
	case store.PlatformTwilio:
		ws := twiliotest.NewSID("WS")
		f := twiliotest.Start(twiliotest.WithWorkspace(ws), twiliotest.WithQuota(twiliotest.OpUpdateTask, rate, burst))
		return &benchFake{
			binding: store.Binding{Platform: name, WorkspaceSID: ws, Endpoint: f.URL()},
			env:     []string{"TWILIO_ACCOUNT_SID=" + f.AccountSID, "TWILIO_AUTH_TOKEN=" + f.AuthToken},
			id:      twiliotest.SID,
			add: func(id string, queued bool) {
				tk := twiliotest.Task{SID: id, Channel: "voice", AssignmentStatus: twiliotest.TaskAssigned}
				if queued {
					tk.AssignmentStatus, tk.TaskQueueSID = twiliotest.TaskPending, "WQ"+twiliotest.SID("q")[2:]
				}
				f.AddTask(ws, tk)
			},
			effects: f.StopEffects,
			stops: func() (at []time.Time, throttled int) {
				for _, c := range f.Calls() {
					if c.Op == twiliotest.OpUpdateTask {
						at = append(at, c.At)
						if c.Status == 429 {
							throttled++
						}
					}
				}
				return at, throttled
			},
			close: f.Close,
		}, nil
	}
	return nil, fmt.Errorf("--platform %q: amazon-connect, cxone, twilio or genesys", name)
}

const (
	benchPlatformA  = "bench-platform-a"
	benchPlatformB  = "bench-platform-b"
	benchConnectID  = "bench-0000-0000-0000-connect"
	benchQuotaKey   = "bench-quota"
	benchSingles    = 8
	benchSingleWait = 500 * time.Millisecond
)

// runPlatformBench measures a clear of o.platformClear contacts on bound
// instances.
func runPlatformBench(ctx context.Context, log io.Writer, o benchOptions) (*platformReport, error) {
	b := &bench{o: o, log: log, url: o.natsURL}
	if b.url == "" {
		tmp, err := os.MkdirTemp("", "contactstop-bench-")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		srv, err := embedded.Start(embedded.Config{DataDir: tmp, Listen: "127.0.0.1:-1"})
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		b.url = srv.ClientURL()
	}
	sec, err := o.sec.options()
	if err != nil {
		return nil, err
	}
	if b.nc, err = nats.Connect(b.url, append(sec, nats.Name("contactstop bench"))...); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer b.nc.Close()
	if b.js, err = jetstream.New(b.nc); err != nil {
		return nil, err
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	_ = b.js.DeleteKeyValue(ctx, "contactstop-budgets")

	rate, burst := o.platformRate, o.platformBurst
	fake, err := startBenchFake(o.platform, rate, burst)
	if err != nil {
		return nil, err
	}
	id := fake.id
	if id == nil {
		id = func(name string) string { return name }
	}
	defer fake.close()
	rep := &platformReport{Platform: o.platform, Contacts: o.platformClear, Replicas: 2, Rate: rate, Burst: burst, TokenIntervalMS: 1000 / rate}

	// Two instances, one quota key: their clears share one budget.
	half := [2]int{o.platformClear / 2, o.platformClear - o.platformClear/2}
	for k, inst := range []string{benchPlatformA, benchPlatformB} {
		bd := fake.binding
		bd.Rate, bd.Burst, bd.QuotaKey = rate, burst, benchQuotaKey
		_, err := b.st.PutInstance(ctx, store.Instance{InstanceID: inst, Binding: &bd})
		if err != nil {
			return nil, err
		}
		prefix := fmt.Sprintf("%d00", k+1)
		for i := range half[k] {
			fake.add(id(prefix+strconv.Itoa(i)), true)
		}
		if err := b.seedPlatformContacts(ctx, inst, prefix, half[k], id); err != nil {
			return nil, err
		}
	}
	for i := range benchSingles {
		fake.add(id(benchSingleID(i)), false)
	}

	env := append(slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "CONTACTSTOP_") || strings.HasPrefix(e, "AWS_") || strings.HasPrefix(e, "CXONE_") ||
			strings.HasPrefix(e, "GENESYSCLOUD_") || strings.HasPrefix(e, "TWILIO_")
	}), fake.env...)
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range children {
			_ = c.Wait()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for range rep.Replicas {
		c := exec.Command(exe, "serve", "--nats-url", b.url, "--workers", "64", "--log-level", "warn", "--sync-interval", "0")
		c.Args = append(c.Args, o.sec.args()...)
		c.Stdout, c.Stderr, c.Env = os.Stderr, os.Stderr, env
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("start a worker: %w", err)
		}
		children = append(children, c)
	}
	// Wait for the workers' consumers (serve provisions them).
	time.Sleep(2 * time.Second)

	b.say("platform %s: clearing %d contacts on 2 instances bound to one budget (%g/s, burst %d), %d single requests meanwhile",
		o.platform, o.platformClear, rate, burst, benchSingles)
	pub := events.NewPublisher(b.js)
	start := time.Now()
	for _, inst := range []string{benchPlatformA, benchPlatformB} {
		if _, err := pub.Bulk(ctx, events.BulkRequest{BulkID: "clear-" + inst, InstanceID: inst,
			Filter: events.BulkFilter{States: []string{string(store.StateQueued)}}}); err != nil {
			return nil, err
		}
	}
	// Single requests, two a second, once the clears are under way.
	time.Sleep(2 * time.Second)
	for i := range benchSingles {
		cid := id(benchSingleID(i))
		sent := time.Now()
		if _, err := pub.Stop(ctx, events.StopRequest{RequestID: "r-" + benchSingleID(i), ContactID: cid, InstanceID: benchPlatformA}); err != nil {
			return nil, err
		}
		if err := waitStopped(ctx, b.st, benchPlatformA, cid); err != nil {
			return nil, err
		}
		ms := float64(time.Since(sent).Microseconds()) / 1000
		rep.SingleMS = append(rep.SingleMS, ms)
		rep.SingleMaxMS = max(rep.SingleMaxMS, ms)
		time.Sleep(benchSingleWait)
	}
	for _, inst := range []string{benchPlatformA, benchPlatformB} {
		if err := waitCompleted(ctx, b.st, inst, "clear-"+inst); err != nil {
			return nil, err
		}
	}
	rep.ClearSeconds = time.Since(start).Seconds()

	stops, throttled := fake.stops()
	rep.Throttled = throttled
	if len(stops) > 1 {
		rep.Seconds = stops[len(stops)-1].Sub(stops[0]).Seconds()
		rep.CallsPerSecond = float64(len(stops)-1) / rep.Seconds
		rep.SustainedPerSecond = float64(len(stops)-1-burst) / rep.Seconds
		rep.SustainedToRate = rep.SustainedPerSecond / rate
	}
	for i := range stops {
		n := 0
		for _, at := range stops[i:] {
			if at.Sub(stops[i]) >= time.Second {
				break
			}
			n++
		}
		rep.MaxCallsInASecond = max(rep.MaxCallsInASecond, n)
	}
	// Verify: every contact stopped once on the platform, every one ENDED
	// by its request in the store.
	// A throttled call did not take effect and was made again: one call
	// per contact besides those.
	want := o.platformClear + benchSingles
	if len(stops)-rep.Throttled != want {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d StopContact calls not throttled, want %d (one per contact)", len(stops)-rep.Throttled, want))
	}
	for i := range benchSingles {
		cid := id(benchSingleID(i))
		if n := fake.effects(cid); n != 1 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s stopped %d times on the platform", cid, n))
		}
	}
	for k, inst := range []string{benchPlatformA, benchPlatformB} {
		for i := range half[k] {
			cid := id(fmt.Sprintf("%d00%d", k+1, i))
			if n := fake.effects(cid); n != 1 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s stopped %d times on the platform", cid, n))
			}
			c, err := b.st.GetContact(ctx, inst, cid)
			if err != nil || c.State != store.StateEnded || c.EndedBy != "clear-"+inst+"/"+cid || c.Intent != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s/%s not ENDED by its clear (%v)", inst, cid, err))
			}
		}
	}
	if rep.MaxCallsInASecond > burst+int(rate) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d calls in one second, budget %d", rep.MaxCallsInASecond, burst+int(rate)))
	}
	if len(rep.Problems) > 10 {
		rep.Problems = append(rep.Problems[:10], fmt.Sprintf("… and %d more", len(rep.Problems)-10))
	}
	rep.Verified = len(rep.Problems) == 0
	return rep, nil
}

// waitStopped waits until the contact is ENDED in the store.
func waitStopped(ctx context.Context, st *store.KV, inst, id string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if c, err := st.GetContact(ctx, inst, id); err == nil && c.State == store.StateEnded {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s/%s was not stopped within a minute", inst, id)
}

// waitCompleted waits until the bulk's record says COMPLETED.
func waitCompleted(ctx context.Context, st *store.KV, inst, bulkID string) error {
	for {
		r, err := st.GetBulk(ctx, inst, bulkID)
		if err == nil && r.Status == store.BulkCompleted {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func printPlatformTable(out io.Writer, r *platformReport) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "platform clear\t%s: %d contacts, %d replicas, budget %g/s burst %d (the platform's fake, the same quota)\n", r.Platform, r.Contacts, r.Replicas, r.Rate, r.Burst)
	fmt.Fprintf(tw, "StopContact calls\t%.2f/s over %.1f s; sustained (burst left out) %.2f/s = %.1f%% of the budget\n",
		r.CallsPerSecond, r.Seconds, r.SustainedPerSecond, 100*r.SustainedToRate)
	fmt.Fprintf(tw, "most calls in one second\t%d (budget allows %d)\n", r.MaxCallsInASecond, r.Burst+int(r.Rate))
	fmt.Fprintf(tw, "throttled by the platform\t%d calls (made again within the budget; no result throttled)\n", r.Throttled)
	fmt.Fprintf(tw, "single stops during the clear\tmax %.0f ms (token interval %.0f ms); all: %v\n", r.SingleMaxMS, r.TokenIntervalMS, r.SingleMS)
	fmt.Fprintf(tw, "clear, request to completion\t%.1f s\n", r.ClearSeconds)
	verdict := "PASSED: every contact stopped once on the platform and ENDED by its request"
	if !r.Verified {
		verdict = "FAILED: " + strings.Join(r.Problems, "; ")
	}
	fmt.Fprintf(tw, "verification\t%s\n", verdict)
	_ = tw.Flush()
}

// benchSingleID is the contact of the i-th single request: numeric, as
// CXone's contact ids are.
func benchSingleID(i int) string { return "900" + strconv.Itoa(i) }

// seedPlatformContacts writes n queued contacts id(prefix+i) of instance.
func (b *bench) seedPlatformContacts(ctx context.Context, instance, prefix string, n int, id func(string) string) error {
	_, err := b.st.SeedContacts(ctx, iter.Seq[store.Contact](func(yield func(store.Contact) bool) {
		for i := range n {
			if !yield(store.Contact{ContactID: id(prefix + strconv.Itoa(i)), InstanceID: instance,
				State: store.StateQueued, QueueID: "q", Channel: store.ChannelVoice}) {
				return
			}
		}
	}))
	return err
}
