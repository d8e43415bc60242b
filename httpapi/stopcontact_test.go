package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/connect"
	"github.com/aws/aws-sdk-go-v2/service/connect/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/httpapi"
	"github.com/contactstop/contactstop/internal/natstest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

const (
	inst = "acme"
	// keysYAML: "ops" may stop acme's contacts, "readonly" has a grant for
	// another instance only.
	keysYAML = `
keys:
  - accessKeyId: AKIDOPS0000000001
    secretAccessKey: ops-secret-0123456789abcdef
    grants:
      - actions: ["contact:Stop"]
        resources: ["instance/acme/contact/*", "instance/ghost/contact/*", "instance/bad_inst-x/contact/*"]
  - accessKeyId: AKIDREADONLY00001
    secretAccessKey: readonly-secret-0123456789
    grants:
      - actions: ["contact:Stop"]
        resources: ["instance/other/contact/*"]
`
	opsID, opsSecret = "AKIDOPS0000000001", "ops-secret-0123456789abcdef"
	roID, roSecret   = "AKIDREADONLY00001", "readonly-secret-0123456789"
)

// env is a NATS server with the topology and store, instance acme, a
// worker (started by start), and the StopContact API over HTTP.
type env struct {
	t   *testing.T
	js  jetstream.JetStream
	st  *store.KV
	srv *httptest.Server
}

type options struct {
	wait        time.Duration
	tokenKey    *auth.SigningKey
	noWorker    bool
	workerAuthz *auth.Verifier
}

func setup(t *testing.T, o options) *env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := t.Context()
	require.NoError(t, worker.Provision(ctx, js, worker.TopologyConfig{AckWait: 2 * time.Second}))
	st, err := store.Open(ctx, js, store.Config{})
	require.NoError(t, err)
	_, err = st.PutInstance(ctx, store.Instance{InstanceID: inst})
	require.NoError(t, err)
	keys, err := httpapi.ParseAPIKeys([]byte(keysYAML))
	require.NoError(t, err)
	h, err := httpapi.NewStopContact(httpapi.StopContactConfig{
		Client: client.New(js, st), Keys: keys, TokenKey: o.tokenKey, Wait: o.wait, Logger: zaptest.NewLogger(t),
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	e := &env{t: t, js: js, st: st, srv: httptest.NewServer(mux)}
	t.Cleanup(e.srv.Close)
	if !o.noWorker {
		e.startWorker(o.workerAuthz)
	}
	return e
}

func (e *env) startWorker(authz *auth.Verifier) {
	cfg := worker.Config{
		Workers: 4, AckWait: 2 * time.Second, MaxAttempts: 2,
		RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, RetryMaxElapsed: 100 * time.Millisecond,
		RedeliveryDelay: 50 * time.Millisecond, RedeliveryDelayMax: 200 * time.Millisecond,
		Logger: zaptest.NewLogger(e.t),
	}
	if authz != nil {
		cfg.Authorizer = authz
	}
	w, err := worker.New(e.js, e.st, cfg)
	require.NoError(e.t, err)
	require.NoError(e.t, w.Start(context.Background()))
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
}

func (e *env) seed(ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		_, err := e.st.PutContact(e.t.Context(), store.Contact{ContactID: id, InstanceID: inst, State: store.StateQueued,
			QueueID: "q1", Channel: store.ChannelVoice, EnqueuedAt: time.Now()})
		require.NoError(e.t, err)
	}
}

// recorder is the SDK's HTTP client: it records every attempt's
// invocation id and status, and can act on an answer before the SDK sees
// it (after returns a replacement error, or nil to pass the answer on).
type recorder struct {
	mu       sync.Mutex
	attempts []attempt
	after    func(n int, resp *http.Response) error
}

type attempt struct {
	invocationID string
	status       int
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.attempts = append(r.attempts, attempt{req.Header.Get("Amz-Sdk-Invocation-Id"), resp.StatusCode})
	n := len(r.attempts)
	after := r.after
	r.mu.Unlock()
	if after != nil {
		if err := after(n, resp); err != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil, err
		}
	}
	return resp, nil
}

func (r *recorder) all() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.attempts...)
}

// sdk returns an Amazon Connect client of the SDK aimed at the API, with
// the access key, no retries unless retryer is given, and rec as its HTTP
// client when given.
func (e *env) sdk(id, secret string, rec *recorder, retryer aws.Retryer, optFns ...func(*connect.Options)) *connect.Client {
	if retryer == nil {
		retryer = aws.NopRetryer{}
	}
	cfg := aws.Config{
		Region: "eu-west-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: "test"}, nil
		}),
		Retryer: func() aws.Retryer { return retryer },
	}
	if rec != nil {
		cfg.HTTPClient = rec
	}
	return connect.NewFromConfig(cfg, append([]func(*connect.Options){func(o *connect.Options) {
		o.BaseEndpoint = aws.String(e.srv.URL)
	}}, optFns...)...)
}

func stopInput(instanceID, contactID string) *connect.StopContactInput {
	return &connect.StopContactInput{InstanceId: aws.String(instanceID), ContactId: aws.String(contactID),
		DisconnectReason: &types.DisconnectReason{Code: aws.String("EMERGENCY")}}
}

// results returns the results stored for a request.
func (e *env) results(requestID string) []events.Result {
	e.t.Helper()
	ctx := e.t.Context()
	s, err := e.js.Stream(ctx, events.StreamResults)
	require.NoError(e.t, err)
	info, err := s.Info(ctx)
	require.NoError(e.t, err)
	var out []events.Result
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := e.js.OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{})
	require.NoError(e.t, err)
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(5*time.Second))
	require.NoError(e.t, err)
	n := 0
	for msg := range batch.Messages() {
		n++
		r, err := events.DecodeResult(msg.Subject(), msg.Data())
		if err == nil && r.RequestID() == requestID {
			out = append(out, r)
		}
	}
	require.NoError(e.t, batch.Error())
	require.Equal(e.t, int(info.State.Msgs), n)
	return out
}

func (e *env) contact(id string) store.Contact {
	e.t.Helper()
	c, err := e.st.GetContact(e.t.Context(), inst, id)
	require.NoError(e.t, err)
	return c
}

// accessDenied reports whether err is the SDK's decoding of a 403
// AccessDeniedException. StopContact's model does not list
// AccessDeniedException among its errors, so the SDK gives it as a
// smithy.APIError with that code rather than *types.AccessDeniedException
// (as it does for Amazon Connect's own IAM denials).
func accessDenied(err error) bool {
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	return errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException" &&
		errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

func TestStopContactStops(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.seed("c-1")
	rec := &recorder{}
	withCorrelationID := func(o *connect.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(events.HeaderCorrelationID, "corr-42"))
	}
	out, err := e.sdk(opsID, opsSecret, rec, nil, withCorrelationID).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.NoError(t, err)
	require.NotNil(t, out)
	attempts := rec.all()
	require.Len(t, attempts, 1)
	require.Equal(t, http.StatusOK, attempts[0].status)
	id := attempts[0].invocationID
	require.NotEmpty(t, id)

	c := e.contact("c-1")
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, id, c.EndedBy, "the invocation id is the requestId")
	require.Equal(t, "EMERGENCY", c.DisconnectReason)
	res := e.results(id)
	require.Len(t, res, 1)
	require.NotNil(t, res[0].Stopped)
	stream, err := e.js.Stream(t.Context(), events.StreamResults)
	require.NoError(t, err)
	msg, err := stream.GetLastMsgForSubject(t.Context(), events.StoppedSubject(inst))
	require.NoError(t, err)
	require.Equal(t, "corr-42", msg.Header.Get(events.HeaderCorrelationID), "the call's Correlation-Id is passed on")
}

func TestStopContactExceptions(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.seed("gone")
	_, err := e.sdk(opsID, opsSecret, nil, nil).StopContact(t.Context(), stopInput(inst, "gone"))
	require.NoError(t, err)
	// A record with an unknown state: INTERNAL_ERROR, not retryable.
	kv, err := e.js.KeyValue(t.Context(), "contactstop-contacts")
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "acme.weird", []byte(`{"contactId":"weird","instanceId":"acme","state":"PARKED","channel":"VOICE","updatedAt":"2026-01-01T00:00:00Z"}`))
	require.NoError(t, err)

	noInvocationID := func(o *connect.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Finalize.Add(middleware.FinalizeMiddlewareFunc("dropInvocationID",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if req, ok := in.Request.(*smithyhttp.Request); ok {
						req.Header.Del("Amz-Sdk-Invocation-Id")
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.Before)
		})
	}
	for _, tc := range []struct {
		name        string
		id, secret  string
		in          *connect.StopContactInput
		opt         func(*connect.Options)
		status      int
		target      func(err error) bool
		msgContains string
	}{
		{"ended contact", opsID, opsSecret, stopInput(inst, "gone"), nil, http.StatusGone,
			func(err error) bool { var x *types.ContactNotFoundException; return errors.As(err, &x) }, "not active"},
		{"unknown contact", opsID, opsSecret, stopInput(inst, "never"), nil, http.StatusGone,
			func(err error) bool { var x *types.ContactNotFoundException; return errors.As(err, &x) }, ""},
		{"unknown instance", opsID, opsSecret, stopInput("ghost", "c-1"), nil, http.StatusNotFound,
			func(err error) bool { var x *types.ResourceNotFoundException; return errors.As(err, &x) }, "ghost"},
		{"bad instance id", opsID, opsSecret, stopInput("bad.inst", "c-1"), nil, http.StatusBadRequest,
			func(err error) bool { var x *types.InvalidParameterException; return errors.As(err, &x) }, "InstanceId"},
		{"too long contact id", opsID, opsSecret, stopInput(inst, strings.Repeat("x", 257)), nil, http.StatusBadRequest,
			func(err error) bool { var x *types.InvalidParameterException; return errors.As(err, &x) }, "ContactId"},
		{"no invocation id", opsID, opsSecret, stopInput(inst, "c-1"), noInvocationID, http.StatusBadRequest,
			func(err error) bool { var x *types.InvalidRequestException; return errors.As(err, &x) }, "amz-sdk-invocation-id"},
		{"no grant", roID, roSecret, stopInput(inst, "c-1"), nil, http.StatusForbidden,
			accessDenied, "contact:Stop"},
		{"wrong secret", opsID, "not-the-secret-at-all", stopInput(inst, "c-1"), nil, http.StatusForbidden,
			accessDenied, "signature"},
		{"unknown key", "AKIDNOBODY0000001", opsSecret, stopInput(inst, "c-1"), nil, http.StatusForbidden,
			accessDenied, "security token"},
		{"bad record", opsID, opsSecret, stopInput(inst, "weird"), nil, http.StatusInternalServerError,
			func(err error) bool { var x *types.InternalServiceException; return errors.As(err, &x) }, "PARKED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*connect.Options)
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			rec := &recorder{}
			_, err := e.sdk(tc.id, tc.secret, rec, nil, opts...).StopContact(t.Context(), tc.in)
			require.Error(t, err)
			require.True(t, tc.target(err), "got %T: %v", errors.Unwrap(err), err)
			var re *smithyhttp.ResponseError
			require.True(t, errors.As(err, &re))
			require.Equal(t, tc.status, re.HTTPStatusCode())
			require.Contains(t, err.Error(), tc.msgContains)
			require.NotContains(t, err.Error(), opsSecret)
		})
	}
}

// A body changed after signing (a bad signature) is refused, and nothing
// is published.
func TestStopContactTamperedBody(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.seed("c-1")
	tamper := func(o *connect.Options) {
		o.HTTPClient = tamperer{}
	}
	_, err := e.sdk(opsID, opsSecret, nil, nil, tamper).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.True(t, accessDenied(err), "got %v", err)
	require.Contains(t, err.Error(), "signature we calculated does not match")
	require.Equal(t, store.StateQueued, e.contact("c-1").State)
}

// tamperer sends each request with another contact in its body.
type tamperer struct{}

func (tamperer) Do(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	changed := strings.Replace(string(body), `"c-1"`, `"c-2"`, 1)
	req.Body = io.NopCloser(strings.NewReader(changed))
	return http.DefaultTransport.RoundTrip(req)
}

// The first attempt finds no result in time (no worker yet) and is
// answered 500; the SDK retries with the same invocation id, and the retry
// gets the request's outcome: one stop, one result.
func TestStopContactRetryAfterTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t, options{wait: 300 * time.Millisecond, noWorker: true})
	e.seed("c-1")
	var once sync.Once
	rec := &recorder{after: func(n int, resp *http.Response) error {
		if resp.StatusCode == http.StatusInternalServerError {
			once.Do(func() { e.startWorker(nil) })
		}
		return nil
	}}
	retryer := retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 10
		o.MaxBackoff = 100 * time.Millisecond
	})
	_, err := e.sdk(opsID, opsSecret, rec, retryer).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.NoError(t, err)
	attempts := rec.all()
	require.GreaterOrEqual(t, len(attempts), 2)
	require.Equal(t, http.StatusInternalServerError, attempts[0].status)
	require.Equal(t, http.StatusOK, attempts[len(attempts)-1].status)
	for _, a := range attempts {
		require.Equal(t, attempts[0].invocationID, a.invocationID, "every retry carries the call's invocation id")
	}
	c := e.contact("c-1")
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, attempts[0].invocationID, c.EndedBy)
	require.Len(t, e.results(attempts[0].invocationID), 1, "one result for the call")
}

// The first attempt's answer (200: the contact was stopped) is lost on
// the way; the SDK's retry gets the same outcome, not ContactNotFound.
func TestStopContactRetryAfterLostAnswer(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.seed("c-1")
	rec := &recorder{after: func(n int, resp *http.Response) error {
		if n == 1 {
			return errors.New("read tcp 127.0.0.1:1: connection reset by peer (the test dropped the answer)")
		}
		return nil
	}}
	retryer := retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 100 * time.Millisecond })
	_, err := e.sdk(opsID, opsSecret, rec, retryer).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.NoError(t, err)
	attempts := rec.all()
	require.Len(t, attempts, 2)
	require.Equal(t, []int{http.StatusOK, http.StatusOK}, []int{attempts[0].status, attempts[1].status})
	require.Equal(t, attempts[0].invocationID, attempts[1].invocationID)
	c := e.contact("c-1")
	require.Equal(t, store.StateEnded, c.State)
	require.Equal(t, attempts[0].invocationID, c.EndedBy)
	require.Len(t, e.results(attempts[0].invocationID), 1)
}

// Two calls (two invocation ids) for one contact: one stops it, the other
// is answered ContactNotFoundException.
func TestStopContactTwoCallsOneContact(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.seed("c-1")
	cl := e.sdk(opsID, opsSecret, nil, nil)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := cl.StopContact(context.Background(), stopInput(inst, "c-1"))
			errs <- err
		}()
	}
	var ok, notFound int
	for range 2 {
		err := <-errs
		var nf *types.ContactNotFoundException
		switch {
		case err == nil:
			ok++
		case errors.As(err, &nf):
			notFound++
		default:
			t.Fatalf("unexpected answer: %v", err)
		}
	}
	require.Equal(t, 1, ok)
	require.Equal(t, 1, notFound)
}

// With authorization on in the worker, the API attaches a token minted
// with a key the worker accepts; a key the worker does not accept yields
// 403 AccessDeniedException (INVALID_SECURITY_USER) and no stop.
func TestStopContactMintsTokens(t *testing.T) {
	t.Parallel()
	priv, pub, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	sk, err := auth.ParsePrivateKey(priv)
	require.NoError(t, err)
	pk, err := auth.ParsePublicKey(pub)
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{pk}})
	require.NoError(t, err)
	require.NoError(t, httpapi.CheckTokenKey(sk, v))

	e := setup(t, options{tokenKey: &sk, workerAuthz: v})
	e.seed("c-1")
	_, err = e.sdk(opsID, opsSecret, nil, nil).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.NoError(t, err)
	require.Equal(t, store.StateEnded, e.contact("c-1").State)

	// Without a token the worker refuses.
	e2 := setup(t, options{workerAuthz: v})
	e2.seed("c-1")
	_, err = e2.sdk(opsID, opsSecret, nil, nil).StopContact(t.Context(), stopInput(inst, "c-1"))
	require.True(t, accessDenied(err), "got %v", err)
	require.Contains(t, err.Error(), string(events.ReasonInvalidSecurityUser))
	require.Equal(t, store.StateQueued, e2.contact("c-1").State)

	// A token key the workers do not accept is found at start.
	otherPriv, _, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	other, err := auth.ParsePrivateKey(otherPriv)
	require.NoError(t, err)
	require.Error(t, httpapi.CheckTokenKey(other, v))
}

func TestParseAPIKeys(t *testing.T) {
	t.Parallel()
	keys, err := httpapi.ParseAPIKeys([]byte(keysYAML))
	require.NoError(t, err)
	require.Equal(t, 2, keys.Len())
	k := keys.Key(opsID)
	require.NotNil(t, k)
	require.True(t, k.Allows(auth.ActionStop, auth.ContactResource("acme", "x/y")))
	require.False(t, k.Allows(auth.ActionBulkStop, auth.InstanceResource("acme")))
	require.False(t, keys.Key(roID).Allows(auth.ActionStop, auth.ContactResource("acme", "x")))
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		require.NotContains(t, fmt.Sprintf(f, k), opsSecret)
	}

	// JSON is YAML too.
	_, err = httpapi.ParseAPIKeys([]byte(`{"keys":[{"accessKeyId":"k1","secretAccessKey":"0123456789abcdefXYZ","grants":[{"actions":["contact:Stop"],"resources":["*"]}]}]}`))
	require.NoError(t, err)

	const secret = "very-secret-value-0123456789"
	for name, data := range map[string]string{
		"empty":         ``,
		"no keys":       `keys: []`,
		"unknown field": "keys:\n  - accessKeyId: k1\n    secretAccessKey: " + secret + "\n    effect: Deny\n    grants: [{actions: [contact:Stop], resources: ['*']}]",
		"short secret":  "keys:\n  - accessKeyId: k1\n    secretAccessKey: short\n    grants: [{actions: [contact:Stop], resources: ['*']}]",
		"bad id":        "keys:\n  - accessKeyId: a/b\n    secretAccessKey: " + secret + "\n    grants: [{actions: [contact:Stop], resources: ['*']}]",
		"twice":         "keys:\n  - accessKeyId: k1\n    secretAccessKey: " + secret + "\n    grants: [{actions: [contact:Stop], resources: ['*']}]\n  - accessKeyId: k1\n    secretAccessKey: " + secret + "\n    grants: [{actions: [contact:Stop], resources: ['*']}]",
		"no grants":     "keys:\n  - accessKeyId: k1\n    secretAccessKey: " + secret,
		"bad grant":     "keys:\n  - accessKeyId: k1\n    secretAccessKey: " + secret + "\n    grants: [{actions: [contact:Delete], resources: ['*']}]",
		"deny in grant": "keys:\n  - accessKeyId: k1\n    secretAccessKey: " + secret + "\n    grants: [{actions: [contact:Stop], resources: ['*'], effect: Deny}]",
		"wrong type":    "keys:\n  - accessKeyId: k1\n    secretAccessKey: [" + secret + "]\n    grants: [{actions: [contact:Stop], resources: ['*']}]",
	} {
		_, err := httpapi.ParseAPIKeys([]byte(data))
		require.Error(t, err, name)
		require.NotContains(t, err.Error(), secret, name)
	}
}
