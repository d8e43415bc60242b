package amazonconnect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/connect/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/amazonconnect/connecttest"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// testInstance is the Connect instance the clients under test are bound
// to.
const testInstance = "11111111-2222-3333-4444-555555555555"

// newClient makes a Client bound to testInstance on srv with the fake's
// credentials; mod edits its Config first.
func newClient(t *testing.T, srv *connecttest.Server, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		ConnectInstanceID: testInstance,
		Region:            srv.Region,
		Endpoint:          srv.URL(),
		Credentials:       srv.Credentials(),
		CallTimeout:       5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	return c
}

func TestContract(t *testing.T) {
	platformtest.Run(t, func(t *testing.T) platformtest.Harness {
		srv := connecttest.New(t, connecttest.WithInstance(testInstance))
		c := newClient(t, srv)
		unknown := *c // the same SDK client, bound to another instance
		unknown.instanceID = "no-such-instance"
		return platformtest.Harness{Platform: c, UnknownInstance: &unknown, Fake: fake{t: t, srv: srv}}
	})
}

// fake is platformtest's control of connecttest.
type fake struct {
	t   *testing.T
	srv *connecttest.Server
}

func (f fake) AddContact(c platformtest.Contact) {
	ch := map[store.Channel]types.Channel{
		"": types.ChannelVoice, store.ChannelVoice: types.ChannelVoice, store.ChannelChat: types.ChannelChat,
		store.ChannelWorkItem: types.ChannelTask, store.ChannelEmail: types.ChannelEmail,
	}[c.Channel]
	require.NotEmpty(f.t, ch, "Amazon Connect has no channel %s", c.Channel)
	f.srv.AddContact(testInstance, connecttest.Contact{ID: c.ID, Channel: ch, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected})
}

func (f fake) HangUp(contactID string) {
	require.True(f.t, f.srv.Disconnect(testInstance, contactID), "contact %s is not active", contactID)
}

func (f fake) FailNext(op string, fl platformtest.Failure) {
	var fault connecttest.Fault
	switch fl.Kind {
	case platform.Throttled:
		fault = connecttest.Throttling("")
		if fl.RetryAfter > 0 {
			fault.RetryAfter = strconv.Itoa(int(fl.RetryAfter / time.Second))
		}
	case platform.Transient:
		fault = connecttest.InternalError()
	case platform.Denied:
		fault = connecttest.AccessDenied()
	case platform.InvalidParameter:
		fault = connecttest.InvalidParameter()
	case platform.InvalidRequest:
		fault = connecttest.InvalidRequest()
	default:
		f.t.Fatalf("connecttest cannot fail a call with %v", fl)
	}
	f.srv.FailNext(connecttest.Op(op), 1, fault)
}

func (f fake) LoseNextAnswer(op string)         { f.srv.LoseNext(connecttest.Op(op), 1) }
func (f fake) StopEffects(contactID string) int { return f.srv.StopEffects(contactID) }
func (f fake) DisconnectReason(contactID string) string {
	c, _ := f.srv.Contact(testInstance, contactID)
	return c.DisconnectReason
}

// requireError checks that err is a *platform.Error of kind k.
func requireError(t *testing.T, err error, k platform.Kind) *platform.Error {
	t.Helper()
	var pe *platform.Error
	require.True(t, errors.As(err, &pe), "not a *platform.Error: %T %v", err, err)
	require.Equal(t, k, pe.Kind, "%v", err)
	return pe
}

func TestWrongSecretDenied(t *testing.T) {
	srv := connecttest.New(t)
	srv.AddContact(testInstance, connecttest.Contact{ID: "c-1"})
	c := newClient(t, srv, func(c *Config) {
		c.Credentials = aws.NewCredentialsCache(staticCredentials(srv.AccessKeyID, "wrong-secret-0123456789", ""))
	})
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
	assert.Equal(t, "InvalidSignatureException", pe.Code)
	assert.Equal(t, http.StatusForbidden, pe.Status)
	assert.Contains(t, pe.Message, "signature we calculated does not match")
	_, err := c.DescribeContact(t.Context(), "c-1")
	requireError(t, err, platform.Denied)

	calls := srv.Calls()
	require.Len(t, calls, 2)
	assert.Equal(t, connecttest.Call{Op: connecttest.OpStopContact, InstanceID: testInstance, ContactID: "c-1",
		InvocationID: calls[0].InvocationID, At: calls[0].At, Status: http.StatusForbidden, Code: "InvalidSignatureException"}, calls[0])
	assert.Zero(t, srv.StopEffects("c-1"))
	ct, _ := srv.Contact(testInstance, "c-1")
	assert.True(t, ct.Active())
}

func TestRejectedCredentialsDenied(t *testing.T) {
	srv := connecttest.New(t, connecttest.WithRegion("eu-central-1"))
	srv.AddContact(testInstance, connecttest.Contact{ID: "c-1"})
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		code string
	}{
		{"UnknownAccessKey", func(c *Config) { c.Credentials = staticCredentials("AKIAUNKNOWN000000000", srv.SecretAccessKey, "") },
			"UnrecognizedClientException"},
		{"WrongRegion", func(c *Config) { c.Region = "us-west-2" }, "InvalidSignatureException"},
		{"Unsigned", func(c *Config) { c.Credentials = aws.AnonymousCredentials{} }, "MissingAuthenticationTokenException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, srv, tc.mod)
			pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
			assert.Equal(t, tc.code, pe.Code)
			assert.Equal(t, http.StatusForbidden, pe.Status)
		})
	}
	assert.Zero(t, srv.StopEffects("c-1"))
}

func TestMissingCredentialsDenied(t *testing.T) {
	srv := connecttest.New(t)
	var attempts int
	c := newClient(t, srv, func(c *Config) {
		c.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no credentials in the environment")
		})
		c.OnAttempt = func(string) { attempts++ }
	})
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
	assert.Contains(t, pe.Error(), "credentials")
	assert.Empty(t, srv.Calls(), "nothing was sent")
	assert.Zero(t, attempts)
}

func TestOneAttemptPerCall(t *testing.T) {
	srv := connecttest.New(t, connecttest.WithQuota(connecttest.OpStopContact, 0, 0))
	var mu sync.Mutex
	attempts := map[string]int{}
	c := newClient(t, srv, func(c *Config) {
		c.OnAttempt = func(op string) {
			mu.Lock()
			defer mu.Unlock()
			attempts[op]++
		}
	})
	faults := []connecttest.Fault{
		connecttest.Throttling("1"), connecttest.InternalError(), connecttest.AccessDenied(),
		connecttest.DropConnection(), {Status: http.StatusServiceUnavailable, Code: "ServiceUnavailableException"},
		{Status: http.StatusBadGateway},
	}
	for i, f := range faults {
		id := fmt.Sprint("c-", i)
		srv.AddContact(testInstance, connecttest.Contact{ID: id})
		srv.FailNext(connecttest.OpStopContact, 1, f)
		require.Error(t, c.StopContact(t.Context(), id, ""), "fault %+v", f)
	}
	srv.AddContact(testInstance, connecttest.Contact{ID: "lost"})
	srv.LoseNext(connecttest.OpStopContact, 1)
	requireError(t, c.StopContact(t.Context(), "lost", ""), platform.Transient)
	srv.AddContact(testInstance, connecttest.Contact{ID: "ok"})
	require.NoError(t, c.StopContact(t.Context(), "ok", ""))
	srv.FailNext(connecttest.OpDescribeContact, 1, connecttest.InternalError())
	_, err := c.DescribeContact(t.Context(), "ok")
	requireError(t, err, platform.Transient)

	stops := len(faults) + 2
	assert.Equal(t, map[string]int{OpStopContact: stops, OpDescribeContact: 1}, attempts)
	calls := srv.Calls()
	require.Len(t, calls, stops+1, "the fake saw one request per call")
	seen := map[string]bool{}
	for _, call := range calls {
		assert.False(t, seen[call.InvocationID], "invocation %s sent twice", call.InvocationID)
		seen[call.InvocationID] = true
	}
}

func TestOneAttemptDespiteEnvironment(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "5")
	t.Setenv("AWS_RETRY_MODE", "adaptive")
	srv := connecttest.New(t)
	attempts := 0
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = func(string) { attempts++ } })
	srv.FailNext(connecttest.OpStopContact, 1, connecttest.InternalError())
	requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Transient)
	assert.Equal(t, 1, attempts)
	assert.Len(t, srv.Calls(), 1)
}

func TestClassification(t *testing.T) {
	srv := connecttest.New(t, connecttest.WithQuota(connecttest.OpStopContact, 0, 0))
	c := newClient(t, srv)
	for _, tc := range []struct {
		fault connecttest.Fault
		kind  platform.Kind
	}{
		{connecttest.Throttling(""), platform.Throttled},
		{connecttest.Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequestsException"}, platform.Throttled},
		{connecttest.Fault{Status: http.StatusTooManyRequests}, platform.Throttled},
		{connecttest.Fault{Status: http.StatusBadRequest, Code: "ThrottlingException"}, platform.Throttled},
		{connecttest.InternalError(), platform.Transient},
		{connecttest.Fault{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailableException"}, platform.Transient},
		{connecttest.Fault{Status: http.StatusBadGateway}, platform.Transient},
		{connecttest.Fault{Status: http.StatusGatewayTimeout, Code: "SomethingNew"}, platform.Transient},
		{connecttest.DropConnection(), platform.Transient},
		{connecttest.AccessDenied(), platform.Denied},
		{connecttest.Fault{Status: http.StatusForbidden, Code: "ExpiredTokenException"}, platform.Denied},
		{connecttest.Fault{Status: http.StatusBadRequest, Code: "ExpiredToken"}, platform.Denied},
		{connecttest.Fault{Status: http.StatusUnauthorized}, platform.Denied},
		{connecttest.Fault{Status: http.StatusForbidden, Code: "SomethingNew"}, platform.Denied},
		{connecttest.InvalidParameter(), platform.InvalidParameter},
		{connecttest.InvalidRequest(), platform.InvalidRequest},
		{connecttest.Fault{Status: http.StatusConflict, Code: "SomethingNew"}, platform.InvalidRequest},
		{connecttest.Fault{Status: http.StatusGone, Code: "ContactNotFoundException"}, platform.NotFound},
		{connecttest.Fault{Status: http.StatusNotFound, Code: "ResourceNotFoundException"}, platform.ResourceNotFound},
	} {
		t.Run(fmt.Sprintf("%d-%s", tc.fault.Status, tc.fault.Code), func(t *testing.T) {
			srv.FailNext(connecttest.OpStopContact, 1, tc.fault)
			pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), tc.kind)
			assert.Equal(t, OpStopContact, pe.Op)
			assert.Equal(t, tc.fault.Status, pe.Status)
			if tc.fault.Code != "" {
				assert.Equal(t, tc.fault.Code, pe.Code)
			}
			if tc.fault.Message != "" {
				assert.Equal(t, tc.fault.Message, pe.Message)
			}
		})
	}
}

func TestInvalidParameterClientSide(t *testing.T) {
	srv := connecttest.New(t)
	c := newClient(t, srv)
	requireError(t, c.StopContact(t.Context(), "", ""), platform.InvalidParameter)
	_, err := c.DescribeContact(t.Context(), "")
	requireError(t, err, platform.InvalidParameter)
	assert.Empty(t, srv.Calls())
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v  string
		d  time.Duration
		ok bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
	} {
		d, ok := platform.ParseRetryAfter(tc.v, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		assert.Equal(t, tc.d, d, "%q", tc.v)
	}

	// Through the SDK, with an HTTP date.
	srv := connecttest.New(t)
	c := newClient(t, srv)
	srv.FailNext(connecttest.OpStopContact, 1, connecttest.Throttling(time.Now().Add(5*time.Second).UTC().Format(http.TimeFormat)))
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Throttled)
	assert.InDelta(t, 5*time.Second, pe.RetryAfter, float64(1100*time.Millisecond))
	srv.FailNext(connecttest.OpDescribeContact, 1, connecttest.Throttling("4"))
	_, err := c.DescribeContact(t.Context(), "c-1")
	pe = requireError(t, err, platform.Throttled)
	assert.Equal(t, 4*time.Second, pe.RetryAfter)
}

func TestNoCredentialInErrors(t *testing.T) {
	srv := connecttest.New(t)
	srv.AddContact(testInstance, connecttest.Contact{ID: "c-1"})
	const token = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789abcdef"
	secrets := []string{srv.AccessKeyID, srv.SecretAccessKey, token}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		texts := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			texts = append(texts, e.Error())
		}
		for _, text := range texts {
			for _, s := range secrets {
				assert.NotContains(t, text, s)
			}
		}
	}
	// The fake signs the session token into the canonical string it quotes
	// back on a signature mismatch, as AWS does.
	wrong := newClient(t, srv, func(c *Config) {
		c.Credentials = staticCredentials(srv.AccessKeyID, "not-"+srv.SecretAccessKey, token)
	})
	err := wrong.StopContact(t.Context(), "c-1", "")
	requireError(t, err, platform.Denied)
	assert.Contains(t, err.Error(), "[REDACTED]", "the canonical string quoted the session token")
	check(t, err)
	_, err = wrong.DescribeContact(t.Context(), "c-1")
	check(t, err)

	// Secrets in a provider's failure.
	failing := newClient(t, srv, func(c *Config) {
		c.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("bad profile: aws_secret_access_key=" + srv.SecretAccessKey)
		})
	})
	err = failing.StopContact(t.Context(), "c-1", "")
	requireError(t, err, platform.Denied)
	// The client has never seen that secret succeed, so it cannot know to
	// scrub it: the provider's own text is kept out of Message, and Err is
	// the provider's failure (it is the provider's duty not to show
	// secrets). Only Message is checked here.
	var pe *platform.Error
	require.True(t, errors.As(err, &pe))
	assert.NotContains(t, pe.Message, srv.SecretAccessKey)

	// Other failures.
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 200 * time.Millisecond })
	srv.FailNext(connecttest.OpStopContact, 1, connecttest.Throttling("1"))
	check(t, c.StopContact(t.Context(), "c-1", ""))
	srv.HangNext(connecttest.OpDescribeContact, 1)
	_, err = c.DescribeContact(t.Context(), "c-1")
	check(t, err)
}

func TestTimeoutAfterEffect(t *testing.T) {
	srv := connecttest.New(t)
	srv.AddContact(testInstance, connecttest.Contact{ID: "c-1"})
	srv.AddContact(testInstance, connecttest.Contact{ID: "c-2"})
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 150 * time.Millisecond })

	srv.HangNext(connecttest.OpStopContact, 1)
	start := time.Now()
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Transient)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	assert.Contains(t, pe.Error(), "no answer within 150ms")
	assert.Equal(t, 1, srv.StopEffects("c-1"))

	srv.SetLatency(connecttest.OpStopContact, time.Second)
	requireError(t, c.StopContact(t.Context(), "c-2", ""), platform.Transient)
	assert.Equal(t, 1, srv.StopEffects("c-2"), "a slow answer's call took effect")
	srv.SetLatency(connecttest.OpStopContact, 0)

	st, err := c.DescribeContact(t.Context(), "c-2")
	require.NoError(t, err)
	assert.False(t, st.Active)
}

func TestQuota(t *testing.T) {
	srv := connecttest.New(t) // StopContact: 10/s, burst 15
	c := newClient(t, srv)
	const n = 30
	for i := range n {
		srv.AddContact(testInstance, connecttest.Contact{ID: fmt.Sprint("c-", i)})
	}
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.StopContact(t.Context(), fmt.Sprint("c-", i), "") })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopped := 0
	for i, err := range errs {
		if err == nil {
			stopped++
			continue
		}
		pe := requireError(t, err, platform.Throttled)
		assert.Equal(t, "ThrottlingException", pe.Code)
		assert.Equal(t, http.StatusTooManyRequests, pe.Status)
		assert.Zero(t, pe.RetryAfter, "Amazon sends no Retry-After")
		assert.Zero(t, srv.StopEffects(fmt.Sprint("c-", i)))
	}
	assert.GreaterOrEqual(t, stopped, connecttest.StopContactBurst)
	assert.LessOrEqual(t, stopped, connecttest.StopContactBurst+int(elapsed.Seconds()*connecttest.StopContactRate)+1,
		"%d stops in %v", stopped, elapsed)
}

func TestAwkwardContactID(t *testing.T) {
	srv := connecttest.New(t)
	c := newClient(t, srv)
	for _, id := range []string{"a b/c?d=e&f#g", "ünï%2Fcode", "x+y;z"} {
		srv.AddContact(testInstance, connecttest.Contact{ID: id, QueueID: "q/1"})
		st, err := c.DescribeContact(t.Context(), id)
		require.NoError(t, err, "%q", id)
		assert.Equal(t, "q/1", st.QueueID)
		require.NoError(t, c.StopContact(t.Context(), id, ""), "%q", id)
		assert.Equal(t, 1, srv.StopEffects(id))
	}
}

func TestStatusOf(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	for _, tc := range []struct {
		name string
		ct   types.Contact
		want platform.Status
	}{
		{"Initiated", types.Contact{Channel: types.ChannelVoice},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{"Queued", types.Contact{Channel: types.ChannelTask, QueueInfo: &types.QueueInfo{Id: aws.String("q"), EnqueueTimestamp: at(time.Second)}},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelWorkItem, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"QueueInfoWithoutTimestamp", types.Contact{Channel: types.ChannelChat, QueueInfo: &types.QueueInfo{Id: aws.String("q")}},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelChat}},
		{"Connected", types.Contact{Channel: types.ChannelEmail, QueueInfo: &types.QueueInfo{Id: aws.String("q"), EnqueueTimestamp: at(time.Second)},
			AgentInfo: &types.AgentInfo{ConnectedToAgentTimestamp: at(2 * time.Second)}},
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelEmail, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"AgentInfoWithoutTimestamp", types.Contact{Channel: types.ChannelVoice, AgentInfo: &types.AgentInfo{Id: aws.String("agent")}},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{"Disconnected", types.Contact{Channel: types.ChannelVoice, AgentInfo: &types.AgentInfo{ConnectedToAgentTimestamp: at(time.Second)},
			DisconnectTimestamp: at(3 * time.Second)},
			platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, DisconnectedAt: t0.Add(3 * time.Second)}},
		{"UnknownChannel", types.Contact{Channel: "VIDEO"},
			platform.Status{Active: true, State: store.StateInitiated}},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, statusOf(&tc.ct)) })
	}
}

func TestNewConfig(t *testing.T) {
	_, err := New(t.Context(), Config{Region: "us-east-1"})
	require.ErrorContains(t, err, "ConnectInstanceID")
	_, err = New(t.Context(), Config{ConnectInstanceID: "i", Region: "us-east-1", CallTimeout: -time.Second})
	require.Error(t, err)
	c, err := New(t.Context(), Config{ConnectInstanceID: "i", Region: "us-east-1", Credentials: staticCredentials("AKIAEXAMPLE", "secret", "")})
	require.NoError(t, err)
	assert.Equal(t, DefaultCallTimeout, c.timeout)
	o := c.api.Options()
	assert.Equal(t, 1, o.Retryer.MaxAttempts())
	assert.Equal(t, "us-east-1", o.Region)
}

// staticCredentials provides fixed credentials.
func staticCredentials(id, secret, token string) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token, Source: "test"}, nil
	})
}
