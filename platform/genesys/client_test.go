package genesys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/genesys/genesystest"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// newClient makes a Client bound to srv with its OAuth client; mod edits
// its Config first.
func newClient(t *testing.T, srv *genesystest.Server, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{Endpoint: srv.URL(), ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, CallTimeout: 5 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	return c
}

// attempts counts Config.OnAttempt's calls by operation.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) count(op string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[op]++
}

func (a *attempts) get() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.n {
		out[k] = v
	}
	return out
}

func TestContract(t *testing.T) {
	platformtest.Run(t, func(t *testing.T) platformtest.Harness {
		switch path.Base(t.Name()) {
		case "DisconnectReason":
			t.Skip("Genesys Cloud's disconnect (POST /api/v2/conversations/{id}/disconnect) takes no reason: none reaches the platform")
		case "DescribeChannels":
			t.Skip("Genesys Cloud's conversations have no work item media (Task Management work items are another resource); VOICE, CHAT and EMAIL are checked by TestDescribeChannels")
		}
		srv := genesystest.New(t)
		return platformtest.Harness{
			Platform: newClient(t, srv),
			// An endpoint with no Genesys Cloud behind it: its login
			// service answers 404.
			UnknownInstance: newClient(t, srv, func(c *Config) { c.Endpoint = srv.URL() + "/no-such-org" }),
			Fake:            genesystest.ContractFake{T: t, Server: srv},
		}
	})
}

// requireError checks that err is a *platform.Error of kind k.
func requireError(t *testing.T, err error, k platform.Kind) *platform.Error {
	t.Helper()
	var pe *platform.Error
	require.True(t, errors.As(err, &pe), "not a *platform.Error: %T %v", err, err)
	require.Equal(t, k, pe.Kind, "%v", err)
	return pe
}

// ops lists the operations of the calls the fake received.
func ops(calls []genesystest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = fmt.Sprintf("%s %d", c.Op, c.Status)
	}
	return out
}

func TestTokenCachedAcrossCalls(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	for i := range 5 {
		id := fmt.Sprint("c-", i)
		srv.AddConversation(genesystest.Conversation{ID: id})
		_, err := c.DescribeContact(t.Context(), id)
		require.NoError(t, err)
	}
	assert.Equal(t, 1, srv.TokensIssued())
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	srv := genesystest.New(t, genesystest.WithTokenTTL(time.Hour))
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	clock := time.Now()
	c.now = func() time.Time { return clock }

	_, err := c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	// An hour's token is renewed a minute before it expires: not yet.
	clock = clock.Add(58 * time.Minute)
	_, err = c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	assert.Equal(t, 1, srv.TokensIssued())
	// Now: renewed before the call, which is never refused.
	clock = clock.Add(time.Minute + time.Second)
	_, err = c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	assert.Equal(t, 2, srv.TokensIssued())
	assert.Equal(t, []string{"token 200", "getConversation 200", "getConversation 200", "token 200", "getConversation 200"}, ops(srv.Calls()))
	assert.Equal(t, map[string]int{OpToken: 2, OpDescribeContact: 3}, a.get())
}

func TestShortTokenRenewedEarly(t *testing.T) {
	// A token of 10 s is renewed with a fifth of its life left.
	srv := genesystest.New(t, genesystest.WithTokenTTL(10*time.Second))
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	c := newClient(t, srv)
	clock := time.Now()
	c.now = func() time.Time { return clock }
	_, err := c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	clock = clock.Add(7 * time.Second)
	_, err = c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	assert.Equal(t, 1, srv.TokensIssued())
	clock = clock.Add(1500 * time.Millisecond)
	_, err = c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	assert.Equal(t, 2, srv.TokensIssued())
}

func TestTokenRenewedAfter401(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	_, err := c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)

	srv.ExpireTokens() // revoked, or expired earlier than announced
	require.NoError(t, c.StopContact(t.Context(), "c-1", ""))
	assert.Equal(t, 1, srv.StopEffects("c-1"))
	calls := srv.Calls()
	assert.Equal(t, []string{"token 200", "getConversation 200", "postConversationDisconnect 401", "token 200", "postConversationDisconnect 202"}, ops(calls))
	assert.Equal(t, "credentials.expired", calls[2].Code)
	assert.Equal(t, map[string]int{OpToken: 2, OpDescribeContact: 1, OpStopContact: 2}, a.get())
}

func TestTokenRenewedOnceAfter401(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	srv.FailNext(genesystest.OpDisconnect, 2, genesystest.CredentialsExpired())
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
	assert.Equal(t, "credentials.expired", pe.Code)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	assert.Equal(t, map[string]int{OpToken: 2, OpStopContact: 2}, a.get(), "one renewal, one more attempt, no loop")
	assert.Zero(t, srv.StopEffects("c-1"))
	// The next call uses the renewed token.
	require.NoError(t, c.StopContact(t.Context(), "c-1", ""))
	assert.Equal(t, 2, srv.TokensIssued())
}

func TestTokenRenewedOnceForConcurrentCalls(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	const n = 8
	for i := range n {
		srv.AddConversation(genesystest.Conversation{ID: fmt.Sprint("c-", i)})
	}
	_, err := c.DescribeContact(t.Context(), "c-0")
	require.NoError(t, err)
	srv.ExpireTokens()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = c.DescribeContact(t.Context(), fmt.Sprint("c-", i)) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 2, srv.TokensIssued(), "the refused token is renewed once, not once per call")
}

func TestMissingCredentialsDenied(t *testing.T) {
	t.Setenv(EnvClientID, "")
	t.Setenv(EnvClientSecret, "")
	srv := genesystest.New(t)
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.ClientID, c.ClientSecret, c.OnAttempt = "", "", a.count })
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
	assert.Contains(t, pe.Error(), EnvClientID)
	assert.Empty(t, srv.Calls(), "nothing was sent")
	assert.Empty(t, a.get())
}

func TestCredentialsFromEnvironment(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	t.Setenv(EnvClientID, srv.ClientID)
	t.Setenv(EnvClientSecret, srv.ClientSecret)
	c := newClient(t, srv, func(c *Config) { c.ClientID, c.ClientSecret = "", "" })
	require.NoError(t, c.StopContact(t.Context(), "c-1", ""))
}

func TestWrongSecretDenied(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	c := newClient(t, srv, func(c *Config) { c.ClientSecret = "wrong-secret-0123456789" })
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Denied)
	assert.Equal(t, "invalid_client", pe.Code)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	assert.Contains(t, pe.Message, "client not found")
	_, err := c.DescribeContact(t.Context(), "c-1")
	requireError(t, err, platform.Denied)
	assert.Equal(t, []string{"token 401", "token 401"}, ops(srv.Calls()), "no API request without a token")
	assert.Zero(t, srv.StopEffects("c-1"))
}

func TestOneAttemptPerCall(t *testing.T) {
	srv := genesystest.New(t, genesystest.WithClientLimit(0, 0))
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	faults := []genesystest.Fault{
		genesystest.TooManyRequests("1"), genesystest.InternalServerError(), genesystest.ServiceUnavailable(),
		genesystest.MissingPermissions("conversation:communication:disconnect"), genesystest.DropConnection(),
		genesystest.BadRequest(), {Status: http.StatusBadGateway},
	}
	for i, f := range faults {
		id := fmt.Sprint("c-", i)
		srv.AddConversation(genesystest.Conversation{ID: id})
		srv.FailNext(genesystest.OpDisconnect, 1, f)
		require.Error(t, c.StopContact(t.Context(), id, ""), "fault %+v", f)
		assert.Zero(t, srv.StopEffects(id))
	}
	srv.AddConversation(genesystest.Conversation{ID: "lost"})
	srv.LoseNext(genesystest.OpDisconnect, 1)
	requireError(t, c.StopContact(t.Context(), "lost", ""), platform.Transient)
	srv.AddConversation(genesystest.Conversation{ID: "ok"})
	require.NoError(t, c.StopContact(t.Context(), "ok", ""))
	srv.FailNext(genesystest.OpGetConversation, 1, genesystest.InternalServerError())
	_, err := c.DescribeContact(t.Context(), "ok")
	requireError(t, err, platform.Transient)
	srv.FailNext(genesystest.OpDetailsQuery, 1, genesystest.ServiceUnavailable())
	requireError(t, c.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.Transient)

	stops := len(faults) + 2
	assert.Equal(t, map[string]int{OpToken: 1, OpStopContact: stops, OpDescribeContact: 1, OpListActive: 1}, a.get())
	calls := srv.Calls()
	require.Len(t, calls, 1+stops+2, "the fake saw one request per call (and one token request)")
}

// TestErrorTable checks the classification of Genesys's answers, row by
// row (errors.go).
func TestErrorTable(t *testing.T) {
	srv := genesystest.New(t, genesystest.WithClientLimit(0, 0))
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	c := newClient(t, srv)
	for _, tc := range []struct {
		name  string
		op    genesystest.Op
		fault genesystest.Fault
		kind  platform.Kind
	}{
		{"429", genesystest.OpDisconnect, genesystest.TooManyRequests("3"), platform.Throttled},
		{"429 bare", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusTooManyRequests}, platform.Throttled},
		{"401 twice", genesystest.OpDisconnect, genesystest.CredentialsExpired(), platform.Denied},
		{"403 missing.permissions", genesystest.OpDisconnect, genesystest.MissingPermissions("conversation:communication:disconnect"), platform.Denied},
		{"403 missing.any.permissions", genesystest.OpDetailsQuery, genesystest.Fault{Status: http.StatusForbidden, Code: "missing.any.permissions", Message: "Unable to perform the requested action."}, platform.Denied},
		{"403 not.authorized", genesystest.OpGetConversation, genesystest.Fault{Status: http.StatusForbidden, Code: "not.authorized", Message: "You are not authorized to perform the requested action."}, platform.Denied},
		{"404 not.found", genesystest.OpDisconnect, genesystest.NotFound(), platform.NotFound},
		{"404 not.found describe", genesystest.OpGetConversation, genesystest.NotFound(), platform.NotFound},
		{"404 bare", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusNotFound}, platform.ResourceNotFound},
		{"409 disconnect", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusConflict, Code: "conflict", Message: "ended"}, platform.NotFound},
		{"410 disconnect", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusGone, Code: "gone", Message: "ended"}, platform.NotFound},
		{"409 describe", genesystest.OpGetConversation, genesystest.Fault{Status: http.StatusConflict, Code: "conflict"}, platform.InvalidRequest},
		{"400 invalid.value", genesystest.OpDisconnect, genesystest.InvalidValue(), platform.InvalidParameter},
		{"400 invalid.date", genesystest.OpDetailsQuery, genesystest.Fault{Status: http.StatusBadRequest, Code: "invalid.date", Message: "Dates must be specified as ISO-8601 strings."}, platform.InvalidParameter},
		{"400 bad.request", genesystest.OpDisconnect, genesystest.BadRequest(), platform.InvalidRequest},
		{"400 other code", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusBadRequest, Code: "chat.error.conversation.state"}, platform.InvalidRequest},
		{"415", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusUnsupportedMediaType, Code: "unsupported.media.type"}, platform.InvalidRequest},
		{"408", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusRequestTimeout}, platform.Transient},
		{"500", genesystest.OpDisconnect, genesystest.InternalServerError(), platform.Transient},
		{"502 bare", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusBadGateway}, platform.Transient},
		{"503", genesystest.OpGetConversation, genesystest.ServiceUnavailable(), platform.Transient},
		{"504 request.timeout", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusGatewayTimeout, Code: "request.timeout"}, platform.Transient},
		{"504 authentication.request.timeout", genesystest.OpDisconnect, genesystest.Fault{Status: http.StatusGatewayTimeout, Code: "authentication.request.timeout"}, platform.Transient},
		{"dropped connection", genesystest.OpDisconnect, genesystest.DropConnection(), platform.Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			if tc.fault.Status == http.StatusUnauthorized {
				n = 2 // the first is answered by renewing the token
			}
			srv.FailNext(tc.op, n, tc.fault)
			var err error
			var op string
			switch tc.op {
			case genesystest.OpDisconnect:
				op, err = OpStopContact, c.StopContact(t.Context(), "c-1", "")
			case genesystest.OpGetConversation:
				op = OpDescribeContact
				_, err = c.DescribeContact(t.Context(), "c-1")
			case genesystest.OpDetailsQuery:
				op, err = OpListActive, c.ListActive(t.Context(), func(platform.Listed) error { return nil })
			}
			pe := requireError(t, err, tc.kind)
			assert.Equal(t, op, pe.Op)
			if !tc.fault.Drop {
				assert.Equal(t, tc.fault.Status, pe.Status)
				assert.Equal(t, tc.fault.Code, pe.Code)
			}
			if tc.fault.Message != "" {
				assert.Contains(t, pe.Message, tc.fault.Message)
				assert.Contains(t, pe.Message, "[contextId ", "Genesys's correlation id, for its support")
			}
			assert.Zero(t, srv.StopEffects("c-1"))
		})
	}

	t.Run("token rows", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			fault genesystest.Fault
			kind  platform.Kind
		}{
			{"401 invalid_client", genesystest.InvalidClient(), platform.Denied},
			{"400 unauthorized_client", genesystest.Fault{Status: http.StatusBadRequest, Code: "unauthorized_client", Message: "client credentials grant not allowed"}, platform.Denied},
			{"403", genesystest.Fault{Status: http.StatusForbidden, Code: "access_denied", Message: "denied"}, platform.Denied},
			{"404", genesystest.Fault{Status: http.StatusNotFound}, platform.ResourceNotFound},
			{"429", genesystest.Fault{Status: http.StatusTooManyRequests, Code: "too_many_requests", Message: "slow down", RetryAfter: "7"}, platform.Throttled},
			{"503", genesystest.Fault{Status: http.StatusServiceUnavailable}, platform.Transient},
			{"dropped connection", genesystest.DropConnection(), platform.Transient},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := newClient(t, srv) // no token yet
				srv.FailNext(genesystest.OpToken, 1, tc.fault)
				pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), tc.kind)
				assert.Equal(t, OpStopContact, pe.Op, "reported as the operation that needed the token")
				if !tc.fault.Drop {
					assert.Equal(t, tc.fault.Status, pe.Status)
					assert.Equal(t, tc.fault.Code, pe.Code)
				}
				if tc.fault.RetryAfter != "" {
					assert.Equal(t, 7*time.Second, pe.RetryAfter)
				}
			})
		}
	})

	t.Run("unknown region host", func(t *testing.T) {
		c, err := New(t.Context(), Config{Region: "no-such-region.example", ClientID: "id-1234", ClientSecret: "secret-1234",
			HTTPClient: &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}}}})
		require.NoError(t, err)
		pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.ResourceNotFound)
		assert.Contains(t, pe.Message, "login.no-such-region.example")
	})

	t.Run("timeout", func(t *testing.T) {
		c := newClient(t, srv, func(c *Config) { c.CallTimeout = 100 * time.Millisecond })
		srv.HangNext(genesystest.OpGetConversation, 1)
		_, err := c.DescribeContact(t.Context(), "c-1")
		pe := requireError(t, err, platform.Transient)
		assert.Contains(t, pe.Error(), "no answer within 100ms")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestStopEndedConversation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer *genesystest.Fault
		kind   platform.Kind // ok when answered 2xx
		ok     bool
	}{
		{name: "default 404", kind: platform.NotFound},
		{name: "409", answer: &genesystest.Fault{Status: http.StatusConflict, Code: "conversation.error.state", Message: "ended"}, kind: platform.NotFound},
		{name: "410", answer: &genesystest.Fault{Status: http.StatusGone, Code: "gone", Message: "ended"}, kind: platform.NotFound},
		// Were Genesys to accept the teardown of an ended conversation, the
		// adapter could not tell (StopContact's doc).
		{name: "202 again", answer: &genesystest.Fault{Status: http.StatusAccepted}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []genesystest.Option
			if tc.answer != nil {
				opts = append(opts, genesystest.WithEndedDisconnect(*tc.answer))
			}
			srv := genesystest.New(t, opts...)
			srv.AddConversation(genesystest.Conversation{ID: "c-1"})
			require.True(t, srv.Disconnect("c-1"))
			c := newClient(t, srv)
			err := c.StopContact(t.Context(), "c-1", "")
			if tc.ok {
				require.NoError(t, err)
			} else {
				requireError(t, err, tc.kind)
			}
			assert.Zero(t, srv.StopEffects("c-1"))
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v  string
		d  time.Duration
		ok bool
	}{
		{"", 0, false},
		{"42", 42 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"86401", 0, false},
		{"soon", 0, false},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
	} {
		d, ok := platform.ParseRetryAfter(tc.v, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		assert.Equal(t, tc.d, d, "%q", tc.v)
	}

	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	c := newClient(t, srv)
	srv.FailNext(genesystest.OpDisconnect, 1, genesystest.TooManyRequests(time.Now().Add(5*time.Second).UTC().Format(http.TimeFormat)))
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Throttled)
	assert.InDelta(t, 5*time.Second, pe.RetryAfter, float64(1100*time.Millisecond))
	srv.FailNext(genesystest.OpGetConversation, 1, genesystest.TooManyRequests("42"))
	_, err := c.DescribeContact(t.Context(), "c-1")
	pe = requireError(t, err, platform.Throttled)
	assert.Equal(t, 42*time.Second, pe.RetryAfter)
	assert.Equal(t, "too.many.requests.retry.after", pe.Code)
	assert.Contains(t, pe.Message, "Retry the request in [42] seconds")
}

func TestClientLimit(t *testing.T) {
	srv := genesystest.New(t, genesystest.WithClientLimit(5, time.Minute))
	c := newClient(t, srv)
	const n = 8
	for i := range n {
		srv.AddConversation(genesystest.Conversation{ID: fmt.Sprint("c-", i)})
	}
	stopped := 0
	for i := range n {
		err := c.StopContact(t.Context(), fmt.Sprint("c-", i), "")
		if err == nil {
			stopped++
			continue
		}
		pe := requireError(t, err, platform.Throttled)
		assert.Equal(t, http.StatusTooManyRequests, pe.Status)
		assert.Equal(t, "too.many.requests.retry.after", pe.Code)
		assert.Greater(t, pe.RetryAfter, 50*time.Second, "the rest of the minute")
		assert.LessOrEqual(t, pe.RetryAfter, time.Minute)
		assert.Zero(t, srv.StopEffects(fmt.Sprint("c-", i)), "a throttled stop has no effect")
	}
	assert.Equal(t, 5, stopped)
	assert.Equal(t, 1, srv.TokensIssued(), "token requests are not API requests")
}

func TestNoSecretInErrors(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 200 * time.Millisecond })
	_, err := c.DescribeContact(t.Context(), "c-1")
	require.NoError(t, err)
	token := c.tokens.valid()
	require.NotEmpty(t, token)
	secrets := []string{srv.ClientSecret, srv.ClientID, token}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		texts := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			texts = append(texts, e.Error(), fmt.Sprintf("%#v", e))
		}
		for _, text := range texts {
			for _, s := range secrets {
				assert.NotContains(t, text, s)
			}
		}
	}
	// A proxy or service that quotes the request back.
	echo := "request with Authorization: Bearer " + token + " for client " + srv.ClientID + ":" + srv.ClientSecret
	srv.FailNext(genesystest.OpDisconnect, 1, genesystest.Fault{Status: http.StatusBadRequest, Code: "bad.request", Message: echo})
	err = c.StopContact(t.Context(), "c-1", "")
	requireError(t, err, platform.InvalidRequest)
	assert.Contains(t, err.Error(), "[REDACTED]")
	check(t, err)

	// The login service quoting the credentials.
	fresh := newClient(t, srv)
	srv.FailNext(genesystest.OpToken, 1, genesystest.Fault{Status: http.StatusUnauthorized, Code: "invalid_client",
		Message: "bad secret " + srv.ClientSecret + " for " + srv.ClientID})
	err = fresh.StopContact(t.Context(), "c-1", "")
	requireError(t, err, platform.Denied)
	check(t, err)

	// Other failures.
	srv.FailNext(genesystest.OpDisconnect, 1, genesystest.TooManyRequests("1"))
	check(t, c.StopContact(t.Context(), "c-1", ""))
	srv.FailNext(genesystest.OpDisconnect, 2, genesystest.CredentialsExpired())
	check(t, c.StopContact(t.Context(), "c-1", ""))
	srv.HangNext(genesystest.OpGetConversation, 1)
	_, err = c.DescribeContact(t.Context(), "c-1")
	check(t, err)
	srv.LoseNext(genesystest.OpDisconnect, 1)
	check(t, c.StopContact(t.Context(), "c-1", ""))
}

func TestTimeoutAfterEffect(t *testing.T) {
	srv := genesystest.New(t)
	srv.AddConversation(genesystest.Conversation{ID: "c-1"})
	srv.AddConversation(genesystest.Conversation{ID: "c-2"})
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 150 * time.Millisecond })

	srv.HangNext(genesystest.OpDisconnect, 1)
	start := time.Now()
	pe := requireError(t, c.StopContact(t.Context(), "c-1", ""), platform.Transient)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	assert.Contains(t, pe.Error(), "no answer within 150ms")
	assert.Equal(t, 1, srv.StopEffects("c-1"))

	srv.SetLatency(genesystest.OpDisconnect, time.Second)
	requireError(t, c.StopContact(t.Context(), "c-2", ""), platform.Transient)
	assert.Equal(t, 1, srv.StopEffects("c-2"), "a slow answer's call took effect")
	srv.SetLatency(genesystest.OpDisconnect, 0)

	st, err := c.DescribeContact(t.Context(), "c-2")
	require.NoError(t, err)
	assert.False(t, st.Active)
}

func TestInvalidParameterClientSide(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	requireError(t, c.StopContact(t.Context(), "", ""), platform.InvalidParameter)
	_, err := c.DescribeContact(t.Context(), "")
	requireError(t, err, platform.InvalidParameter)
	assert.Empty(t, srv.Calls())
}

func TestAwkwardContactID(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	for _, id := range []string{"a b/c?d=e&f#g", "ünï%2Fcode", "x+y;z", ".."} {
		srv.AddConversation(genesystest.Conversation{ID: id, QueueID: "q/1"})
		st, err := c.DescribeContact(t.Context(), id)
		require.NoError(t, err, "%q", id)
		assert.Equal(t, "q/1", st.QueueID)
		require.NoError(t, c.StopContact(t.Context(), id, ""), "%q", id)
		assert.Equal(t, 1, srv.StopEffects(id))
	}
}

func TestDescribeChannels(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	for media, ch := range map[string]store.Channel{
		genesystest.MediaVoice: store.ChannelVoice, genesystest.MediaCallback: store.ChannelVoice,
		genesystest.MediaChat: store.ChannelChat, genesystest.MediaMessage: store.ChannelChat,
		genesystest.MediaEmail: store.ChannelEmail,
	} {
		srv.AddConversation(genesystest.Conversation{ID: "c-" + media, MediaType: media})
		st, err := c.DescribeContact(t.Context(), "c-"+media)
		require.NoError(t, err)
		assert.Equal(t, ch, st.Channel, media)
	}
}

func TestListActive(t *testing.T) {
	srv := genesystest.New(t)
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	now := time.Now()
	clock := now
	c.now = func() time.Time { return clock }

	// 230 conversations waiting in queues, one answered, and others that
	// are not listed.
	want := map[string]platform.Status{}
	for i := range 230 {
		id := fmt.Sprintf("q-%03d", i)
		at := now.Add(-time.Duration(230-i) * time.Minute).Truncate(time.Millisecond).UTC()
		media := []string{genesystest.MediaVoice, genesystest.MediaChat, genesystest.MediaEmail, genesystest.MediaMessage}[i%4]
		srv.AddConversation(genesystest.Conversation{ID: id, MediaType: media, QueueID: fmt.Sprint("queue-", i%3), EnqueuedAt: at})
		want[id] = platform.Status{Active: true, State: store.StateQueued, Channel: channelOfMedia(media),
			QueueID: fmt.Sprint("queue-", i%3), EnqueuedAt: at}
	}
	connectedAt := now.Add(-time.Minute).Truncate(time.Millisecond).UTC()
	srv.AddConversation(genesystest.Conversation{ID: "connected", MediaType: genesystest.MediaCallback, QueueID: "queue-0",
		EnqueuedAt: connectedAt.Add(-time.Minute), AgentConnected: true, ConnectedAt: connectedAt})
	want["connected"] = platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelVoice,
		QueueID: "queue-0", EnqueuedAt: connectedAt.Add(-time.Minute)}
	srv.AddConversation(genesystest.Conversation{ID: "in-ivr"}) // never routed to a queue
	srv.AddConversation(genesystest.Conversation{ID: "ended", QueueID: "queue-0", EndedAt: now})
	srv.AddConversation(genesystest.Conversation{ID: "hung-up", QueueID: "queue-1"})
	require.True(t, srv.Disconnect("hung-up"))
	srv.AddConversation(genesystest.Conversation{ID: "too-old", QueueID: "queue-2", StartedAt: now.Add(-ListLookback - 48*time.Hour)})

	got := map[string]platform.Status{}
	require.NoError(t, c.ListActive(t.Context(), func(l platform.Listed) error {
		_, dup := got[l.ContactID]
		require.False(t, dup, "%s listed twice", l.ContactID)
		got[l.ContactID] = l.Status
		return nil
	}))
	assert.Equal(t, want, got)

	// The query: routed to a queue and not ended, paged by 100, one
	// interval for every page.
	var queries []*genesystest.ConversationQuery
	for _, call := range srv.Calls() {
		if call.Op == genesystest.OpDetailsQuery {
			queries = append(queries, call.Query)
		}
	}
	require.Len(t, queries, 3)
	for i, q := range queries {
		assert.Equal(t, genesystest.PagingSpec{PageSize: 100, PageNumber: i + 1}, *q.Paging)
		assert.Equal(t, queries[0].Interval, q.Interval)
	}
	q := queries[0]
	assert.Equal(t, isoTime(now.Add(-ListLookback))+"/"+isoTime(now.Add(time.Minute)), q.Interval)
	assert.Equal(t, "asc", q.Order)
	assert.Equal(t, "conversationStart", q.OrderBy)
	value := func(v string) *string { return &v }
	assert.Equal(t, []genesystest.QueryFilter{{Type: "and", Predicates: []genesystest.QueryPredicate{
		{Type: "dimension", Dimension: "purpose", Operator: "matches", Value: value("acd")},
	}}}, q.SegmentFilters)
	assert.Equal(t, []genesystest.QueryFilter{{Type: "and", Predicates: []genesystest.QueryPredicate{
		{Type: "dimension", Dimension: "conversationEnd", Operator: "notExists"},
	}}}, q.ConversationFilters)
	assert.Equal(t, map[string]int{OpToken: 1, OpListActive: 3}, a.get())
}

func TestListActiveExactPages(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	for i := range 2 * ListPageSize {
		srv.AddConversation(genesystest.Conversation{ID: fmt.Sprintf("q-%03d", i), QueueID: "queue-1"})
	}
	n := 0
	require.NoError(t, c.ListActive(t.Context(), func(platform.Listed) error { n++; return nil }))
	assert.Equal(t, 2*ListPageSize, n)
	assert.Len(t, srv.Calls(), 1+3, "a token, two full pages and an empty one")
}

func TestListActiveShiftingPages(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	now := time.Now()
	for i := range 150 {
		srv.AddConversation(genesystest.Conversation{ID: fmt.Sprintf("q-%03d", i), QueueID: "queue-1",
			StartedAt: now.Add(-time.Duration(150-i) * time.Second)})
	}
	seen := map[string]int{}
	first := true
	require.NoError(t, c.ListActive(t.Context(), func(l platform.Listed) error {
		if first {
			// A conversation that started earlier shows up meanwhile: the
			// next page starts one conversation earlier.
			first = false
			srv.AddConversation(genesystest.Conversation{ID: "early", QueueID: "queue-1", StartedAt: now.Add(-time.Hour)})
		}
		seen[l.ContactID]++
		return nil
	}))
	for id, n := range seen {
		assert.Equal(t, 1, n, "%s passed to fn %d times", id, n)
	}
	assert.Len(t, seen, 150)
}

func TestListActiveStopsOnFnError(t *testing.T) {
	srv := genesystest.New(t)
	c := newClient(t, srv)
	for i := range 150 {
		srv.AddConversation(genesystest.Conversation{ID: fmt.Sprintf("q-%03d", i), QueueID: "queue-1"})
	}
	stop := errors.New("enough")
	n := 0
	err := c.ListActive(t.Context(), func(platform.Listed) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	assert.Same(t, stop, err, "fn's error is returned as is")
	assert.Len(t, srv.Calls(), 2, "a token and one page")
}

func TestStatusOfConversation(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	calls := []media{{State: "connected"}}
	for _, tc := range []struct {
		name string
		cv   conversation
		want platform.Status
	}{
		{"InFlow", conversation{Participants: []participant{{Purpose: "customer", Calls: calls}, {Purpose: "ivr", Calls: calls}}},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{"Queued", conversation{Participants: []participant{{Purpose: "customer", Chats: calls},
			{Purpose: "acd", QueueID: "q", StartTime: at(time.Second), Chats: calls}}},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelChat, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"Requeued", conversation{Participants: []participant{{Purpose: "customer", Emails: calls},
			{Purpose: "acd", QueueID: "q1", StartTime: at(time.Second), EndTime: at(2 * time.Second)},
			{Purpose: "acd", QueueID: "q2", StartTime: at(3 * time.Second)}}},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelEmail, QueueID: "q2", EnqueuedAt: t0.Add(3 * time.Second)}},
		{"Connected", conversation{Participants: []participant{{Purpose: "external", Messages: calls},
			{Purpose: "acd", QueueID: "q", StartTime: at(time.Second), EndTime: at(2 * time.Second)},
			{Purpose: "agent", StartTime: at(2 * time.Second), ConnectedTime: at(2 * time.Second)}}},
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelChat, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"AgentAlerted", conversation{Participants: []participant{{Purpose: "customer", Callbacks: calls},
			{Purpose: "acd", QueueID: "q", StartTime: at(time.Second)},
			{Purpose: "agent", StartTime: at(2 * time.Second)}}},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelVoice, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"Ended", conversation{EndTime: at(5 * time.Second), Participants: []participant{{Purpose: "customer", Calls: calls, EndTime: at(5 * time.Second)},
			{Purpose: "acd", QueueID: "q", StartTime: at(time.Second)}}},
			platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, QueueID: "q", EnqueuedAt: t0.Add(time.Second), DisconnectedAt: t0.Add(5 * time.Second)}},
		{"UnknownMedia", conversation{Participants: []participant{{Purpose: "customer"}}},
			platform.Status{Active: true, State: store.StateInitiated}},
		{"MediaOfAnotherParticipant", conversation{Participants: []participant{{Purpose: "customer"}, {Purpose: "agent", Calls: calls}}},
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, statusOfConversation(&tc.cv)) })
	}
}

func TestStatusOfAnalytics(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	session := func(mediaType string, segs ...analyticsSegment) []analyticsSession {
		return []analyticsSession{{MediaType: mediaType, Segments: segs}}
	}
	for _, tc := range []struct {
		name string
		cv   analyticsConversation
		want platform.Status
	}{
		{"Queued", analyticsConversation{Participants: []analyticsParticipant{
			{Purpose: "customer", Sessions: session("voice", analyticsSegment{SegmentType: "interact", SegmentStart: at(0)})},
			{Purpose: "acd", Sessions: session("voice", analyticsSegment{SegmentType: "interact", SegmentStart: at(time.Second), QueueID: "q"})}}},
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelVoice, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"Connected", analyticsConversation{Participants: []analyticsParticipant{
			{Purpose: "customer", Sessions: session("email")},
			{Purpose: "acd", Sessions: session("email", analyticsSegment{SegmentType: "interact", SegmentStart: at(time.Second), SegmentEnd: at(2 * time.Second), QueueID: "q"})},
			{Purpose: "agent", Sessions: session("email", analyticsSegment{SegmentType: "alert", SegmentStart: at(2 * time.Second), SegmentEnd: at(2 * time.Second)},
				analyticsSegment{SegmentType: "interact", SegmentStart: at(2 * time.Second)})}}},
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelEmail, QueueID: "q", EnqueuedAt: t0.Add(time.Second)}},
		{"Ended", analyticsConversation{ConversationEnd: at(9 * time.Second), Participants: []analyticsParticipant{
			{Purpose: "customer", Sessions: session("video")}}},
			platform.Status{State: store.StateEnded, DisconnectedAt: t0.Add(9 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, statusOfAnalytics(&tc.cv)) })
	}
}

func TestNewConfig(t *testing.T) {
	t.Setenv(EnvClientID, "")
	t.Setenv(EnvClientSecret, "")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Region"},
		{Config{Region: "https://api.mypurecloud.com"}, "Region"},
		{Config{Endpoint: "ftp://x"}, "Endpoint"},
		{Config{Region: "mypurecloud.com", CallTimeout: -time.Second}, "CallTimeout"},
		{Config{Region: "mypurecloud.com", ClientID: "only-the-id"}, "both"},
	} {
		_, err := New(t.Context(), tc.cfg)
		require.ErrorContains(t, err, tc.want, "%+v", tc.cfg)
	}
	c, err := New(t.Context(), Config{Region: "usw2.pure.cloud"})
	require.NoError(t, err)
	assert.Equal(t, DefaultCallTimeout, c.timeout)
	assert.Equal(t, "https://api.usw2.pure.cloud", c.api)
	assert.Equal(t, "https://login.usw2.pure.cloud/oauth/token", c.tokens.conf.TokenURL)
	c, err = New(t.Context(), Config{Region: "mypurecloud.com", Endpoint: "http://127.0.0.1:9/"})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:9", c.api)
	assert.Equal(t, "http://127.0.0.1:9/oauth/token", c.tokens.conf.TokenURL)
}

func TestDescribeAnswerDoesNotDecode(t *testing.T) {
	srv := http.NewServeMux()
	srv.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "token-0123", "token_type": "bearer", "expires_in": 3600})
	})
	srv.HandleFunc("GET /api/v2/conversations/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id": 42}`))
	})
	hs := newHTTPTestServer(t, srv)
	c, err := New(t.Context(), Config{Endpoint: hs, ClientID: "id-1234", ClientSecret: "secret-1234"})
	require.NoError(t, err)
	_, err = c.DescribeContact(t.Context(), "c-1")
	pe := requireError(t, err, platform.Transient)
	assert.Equal(t, http.StatusOK, pe.Status)
}

// newHTTPTestServer serves h until the test ends; it returns its URL.
func newHTTPTestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
