package cxone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/cxone/cxonetest"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// newClient makes a Client bound to srv's tenant, discovering its API
// from srv, with srv's credentials; mod edits its Config first.
func newClient(t *testing.T, srv *cxonetest.Server, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		TenantID:        srv.TenantID,
		DiscoveryURL:    srv.URL(),
		AccessKeyID:     srv.AccessKeyID,
		AccessKeySecret: srv.AccessKeySecret,
		ClientID:        srv.ClientID,
		ClientSecret:    srv.ClientSecret,
		ClientAuth:      "basic",
		CallTimeout:     5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(t.Context(), cfg)
	require.NoError(t, err)
	return c
}

// attempts counts OnAttempt's calls per operation.
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
		srv := cxonetest.New(t)
		return platformtest.Harness{
			Platform:        newClient(t, srv),
			UnknownInstance: newClient(t, srv, func(c *Config) { c.TenantID = "no-such-tenant" }),
			Fake:            cxonetest.ContractFake{T: t, S: srv},
		}
	})
}

// TestContractWithEndpoint runs the suite with the API's address given
// (no discovery) and the client authenticated in the form.
func TestContractWithEndpoint(t *testing.T) {
	platformtest.Run(t, func(t *testing.T) platformtest.Harness {
		srv := cxonetest.New(t)
		return platformtest.Harness{
			Platform: newClient(t, srv, func(c *Config) {
				c.TenantID, c.Endpoint, c.ClientAuth = "", srv.URL(), "post"
			}),
			UnknownInstance: newClient(t, srv, func(c *Config) { c.TenantID = "no-such-tenant" }),
			Fake:            cxonetest.ContractFake{T: t, S: srv},
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

// ops is the log's operations, in order.
func ops(calls []cxonetest.Call) []cxonetest.Op {
	out := make([]cxonetest.Op, len(calls))
	for i, c := range calls {
		out[i] = c.Op
	}
	return out
}

func TestDiscovery(t *testing.T) {
	srv := cxonetest.New(t)
	srv.AddContact(cxonetest.Contact{ID: "1001"})
	srv.AddContact(cxonetest.Contact{ID: "1002"})
	c := newClient(t, srv)
	require.NoError(t, c.StopContact(t.Context(), "1001", ""))
	require.NoError(t, c.StopContact(t.Context(), "1002", ""))
	calls := srv.Calls()
	assert.Equal(t, []cxonetest.Op{cxonetest.OpDiscovery, cxonetest.OpToken, cxonetest.OpStopContact, cxonetest.OpStopContact}, ops(calls),
		"discovered once, then the token, then the calls")
	assert.Equal(t, srv.TenantID, calls[0].TenantID)
	assert.Equal(t, http.StatusOK, calls[0].Status)

	t.Run("Endpoint", func(t *testing.T) {
		srv := cxonetest.New(t)
		srv.AddContact(cxonetest.Contact{ID: "1001"})
		c := newClient(t, srv, func(c *Config) { c.Endpoint = srv.URL() + "/" })
		require.NoError(t, c.StopContact(t.Context(), "1001", ""))
		assert.Equal(t, []cxonetest.Op{cxonetest.OpToken, cxonetest.OpStopContact}, ops(srv.Calls()), "no discovery")
	})

	t.Run("FailureIsRetriedByTheNextCall", func(t *testing.T) {
		srv := cxonetest.New(t)
		srv.AddContact(cxonetest.Contact{ID: "1001"})
		c := newClient(t, srv)
		srv.FailNext(cxonetest.OpDiscovery, 1, cxonetest.ServiceUnavailable())
		pe := requireError(t, c.StopContact(t.Context(), "1001", ""), platform.Transient)
		assert.Equal(t, OpStopContact, pe.Op)
		assert.Equal(t, http.StatusServiceUnavailable, pe.Status)
		assert.Contains(t, pe.Message, "API discovery")
		assert.Zero(t, srv.StopEffects("1001"))
		srv.FailNext(cxonetest.OpDiscovery, 1, cxonetest.Throttling("3"))
		pe = requireError(t, c.StopContact(t.Context(), "1001", ""), platform.Throttled)
		assert.Equal(t, 3*time.Second, pe.RetryAfter)
		require.NoError(t, c.StopContact(t.Context(), "1001", ""))
		assert.Len(t, srv.CallsOf(cxonetest.OpDiscovery), 3)
	})

	t.Run("UnknownTenant", func(t *testing.T) {
		srv := cxonetest.New(t)
		srv.AddContact(cxonetest.Contact{ID: "1001"})
		var a attempts
		c := newClient(t, srv, func(c *Config) { c.TenantID = "11ee0000-dead-beef-0000-000000000000"; c.OnAttempt = a.count })
		pe := requireError(t, c.StopContact(t.Context(), "1001", ""), platform.ResourceNotFound)
		assert.Equal(t, http.StatusNotFound, pe.Status)
		assert.Contains(t, pe.Error(), "11ee0000-dead-beef-0000-000000000000")
		_, err := c.DescribeContact(t.Context(), "1001")
		requireError(t, err, platform.ResourceNotFound)
		requireError(t, c.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.ResourceNotFound)
		assert.Equal(t, map[string]int{OpDiscovery: 3}, a.get(), "no token was asked for, no call made")
	})
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	srv := cxonetest.New(t, cxonetest.WithTokenTTL(time.Second))
	for i := range 3 {
		srv.AddContact(cxonetest.Contact{ID: fmt.Sprint(1000 + i)})
	}
	c := newClient(t, srv)
	require.NoError(t, c.StopContact(t.Context(), "1000", ""))
	require.NoError(t, c.StopContact(t.Context(), "1001", ""), "the token is reused")
	assert.Equal(t, 1, srv.TokensIssued())
	time.Sleep(800 * time.Millisecond) // past three quarters of its second
	require.NoError(t, c.StopContact(t.Context(), "1002", ""))
	assert.Equal(t, 2, srv.TokensIssued(), "renewed before it expired")
	for _, call := range srv.Calls() {
		assert.NotEqual(t, http.StatusUnauthorized, call.Status, "no call was refused: %+v", call)
	}
}

func TestTokenRenewedAfter401(t *testing.T) {
	srv := cxonetest.New(t)
	srv.AddContact(cxonetest.Contact{ID: "1001", SkillID: "42"})
	srv.AddContact(cxonetest.Contact{ID: "1002"})
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	_, err := c.DescribeContact(t.Context(), "1002")
	require.NoError(t, err)

	// The token is revoked early: the call is refused once, the token
	// renewed, and the call made again.
	srv.ExpireTokens()
	require.NoError(t, c.StopContact(t.Context(), "1001", ""))
	assert.Equal(t, 1, srv.StopEffects("1001"))
	assert.Equal(t, 2, srv.TokensIssued())
	stops := srv.CallsOf(cxonetest.OpStopContact)
	require.Len(t, stops, 2)
	assert.Equal(t, http.StatusUnauthorized, stops[0].Status)
	assert.Equal(t, "invalid_token", stops[0].Code)
	assert.False(t, stops[0].Effect)
	assert.Equal(t, http.StatusAccepted, stops[1].Status)
	assert.Equal(t, map[string]int{OpDiscovery: 1, OpToken: 2, OpDescribeContact: 1, OpStopContact: 2}, a.get())

	// Refused again with the new token: Denied, and the next call starts
	// with a new token.
	srv.FailNext(cxonetest.OpDescribeContact, 2, cxonetest.Unauthorized())
	_, err = c.DescribeContact(t.Context(), "1002")
	pe := requireError(t, err, platform.Denied)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	assert.Equal(t, "invalid_token", pe.Code)
	assert.Equal(t, 3, srv.TokensIssued())
	_, err = c.DescribeContact(t.Context(), "1002")
	require.NoError(t, err)
	assert.Equal(t, 4, srv.TokensIssued())
}

func TestTokenSharedByConcurrentCalls(t *testing.T) {
	srv := cxonetest.New(t)
	srv.SetLatency(cxonetest.OpToken, 100*time.Millisecond)
	const n = 20
	for i := range n {
		srv.AddContact(cxonetest.Contact{ID: fmt.Sprint(2000 + i)})
	}
	c := newClient(t, srv)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.StopContact(t.Context(), fmt.Sprint(2000+i), "") })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, srv.TokensIssued(), "one token for all")
	assert.Len(t, srv.CallsOf(cxonetest.OpDiscovery), 1)
}

func TestTokenRequest(t *testing.T) {
	for _, auth := range []string{"basic", "post"} {
		t.Run(auth, func(t *testing.T) {
			srv := cxonetest.New(t)
			c := newClient(t, srv, func(c *Config) { c.ClientAuth = auth })
			_, err := c.DescribeContact(t.Context(), "9")
			requireError(t, err, platform.NotFound)
			tok := srv.CallsOf(cxonetest.OpToken)
			require.Len(t, tok, 1)
			assert.Equal(t, auth, tok[0].ClientAuth)
			assert.Equal(t, http.StatusOK, tok[0].Status)
		})
	}

	t.Run("Environment", func(t *testing.T) {
		srv := cxonetest.New(t)
		srv.AddContact(cxonetest.Contact{ID: "1001"})
		t.Setenv(EnvAccessKeyID, srv.AccessKeyID)
		t.Setenv(EnvAccessKeySecret, srv.AccessKeySecret)
		t.Setenv(EnvClientID, srv.ClientID)
		t.Setenv(EnvClientSecret, srv.ClientSecret)
		t.Setenv(EnvClientAuth, "post")
		c, err := New(t.Context(), Config{TenantID: srv.TenantID, DiscoveryURL: srv.URL()})
		require.NoError(t, err)
		require.NoError(t, c.StopContact(t.Context(), "1001", ""))
		assert.Equal(t, "post", srv.CallsOf(cxonetest.OpToken)[0].ClientAuth)
	})

	t.Run("NoAccessKey", func(t *testing.T) {
		srv := cxonetest.New(t)
		t.Setenv(EnvAccessKeyID, "")
		t.Setenv(EnvAccessKeySecret, "")
		var a attempts
		c := newClient(t, srv, func(c *Config) {
			c.AccessKeyID, c.AccessKeySecret, c.Endpoint, c.OnAttempt = "", "", srv.URL(), a.count
		})
		pe := requireError(t, c.StopContact(t.Context(), "1001", ""), platform.Denied)
		assert.Equal(t, OpStopContact, pe.Op)
		assert.Contains(t, pe.Message, EnvAccessKeyID)
		assert.Empty(t, srv.Calls(), "nothing was sent")
		assert.Empty(t, a.get())
	})
}

func TestListActivePages(t *testing.T) {
	srv := cxonetest.New(t)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	media := []cxonetest.MediaType{cxonetest.MediaPhoneCall, cxonetest.MediaChat, cxonetest.MediaEmail, cxonetest.MediaWorkItem,
		cxonetest.MediaSMS, cxonetest.MediaVoicemail, cxonetest.MediaPhoneCall}
	want := map[string]platform.Status{}
	for i, m := range media {
		id := fmt.Sprint(3000 + i)
		ct := cxonetest.Contact{ID: id, MediaType: m, InitiatedAt: t0}
		st := platform.Status{Active: true, State: store.StateInitiated}
		switch i % 3 {
		case 1:
			ct.SkillID, ct.EnqueuedAt = "77", t0.Add(time.Second)
			st.State, st.QueueID, st.EnqueuedAt = store.StateQueued, "77", t0.Add(time.Second)
		case 2:
			ct.SkillID, ct.EnqueuedAt, ct.AgentConnected = "78", t0.Add(time.Second), true
			st.State, st.QueueID = store.StateConnected, "78"
		}
		srv.AddContact(ct)
		want[id] = st
	}
	srv.AddContact(cxonetest.Contact{ID: "3900"})
	require.True(t, srv.Disconnect("3900"))
	srv.AddContact(cxonetest.Contact{ID: "3901", DisconnectedAt: t0})

	c := newClient(t, srv)
	c.pageSize = 3
	got := map[string]platform.Status{}
	require.NoError(t, c.ListActive(t.Context(), func(l platform.Listed) error {
		require.NotContains(t, got, l.ContactID, "listed twice")
		got[l.ContactID] = l.Status
		return nil
	}))
	channels := []store.Channel{store.ChannelVoice, store.ChannelChat, store.ChannelEmail, store.ChannelWorkItem,
		store.ChannelSMS, store.ChannelVoicemail, store.ChannelVoice}
	for i, ch := range channels {
		w := want[fmt.Sprint(3000+i)]
		w.Channel = ch
		want[fmt.Sprint(3000+i)] = w
	}
	assert.Equal(t, want, got)
	list := srv.CallsOf(cxonetest.OpListActive)
	require.Len(t, list, 3, "pages of 3, 3 and 1")
	for i, call := range list {
		assert.Equal(t, 3, call.Top)
		assert.Equal(t, 3*i, call.Skip)
	}

	t.Run("EndsAtTotalRecords", func(t *testing.T) {
		c := newClient(t, srv)
		c.pageSize = 7
		n := 0
		require.NoError(t, c.ListActive(t.Context(), func(platform.Listed) error { n++; return nil }))
		assert.Equal(t, 7, n)
		assert.Len(t, srv.CallsOf(cxonetest.OpListActive), 4, "one more page, full, and totalRecords reached")
	})

	t.Run("ShortPages", func(t *testing.T) {
		srv := cxonetest.New(t, cxonetest.WithMaxPageSize(2))
		for i := range 7 {
			srv.AddContact(cxonetest.Contact{ID: fmt.Sprint(3100 + i)})
		}
		c := newClient(t, srv)
		c.pageSize = 5
		n := 0
		require.NoError(t, c.ListActive(t.Context(), func(platform.Listed) error { n++; return nil }))
		assert.Equal(t, 7, n, "totalRecords says when the list ends")
		assert.Len(t, srv.CallsOf(cxonetest.OpListActive), 4)
	})

	t.Run("StopsAtFnError", func(t *testing.T) {
		c := newClient(t, srv)
		c.pageSize = 3
		stop := errors.New("enough")
		n := 0
		err := c.ListActive(t.Context(), func(platform.Listed) error {
			if n++; n == 4 {
				return stop
			}
			return nil
		})
		assert.Same(t, stop, err)
		assert.Equal(t, 4, n)
	})

	t.Run("FailureOnAPage", func(t *testing.T) {
		c := newClient(t, srv)
		c.pageSize = 3
		srv.FailNext(cxonetest.OpListActive, 1, cxonetest.Throttling("2"))
		pe := requireError(t, c.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.Throttled)
		assert.Equal(t, OpListActive, pe.Op)
		assert.Equal(t, 2*time.Second, pe.RetryAfter)
	})

	t.Run("Empty", func(t *testing.T) {
		srv := cxonetest.New(t)
		c := newClient(t, srv)
		require.NoError(t, c.ListActive(t.Context(), func(platform.Listed) error {
			t.Fatal("nothing to list")
			return nil
		}))
		list := srv.CallsOf(cxonetest.OpListActive)
		require.Len(t, list, 1)
		assert.Equal(t, http.StatusNoContent, list[0].Status)
	})
}

func TestOneAttemptPerCall(t *testing.T) {
	srv := cxonetest.New(t)
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })
	faults := []cxonetest.Fault{
		cxonetest.Throttling("1"), cxonetest.InternalError(), cxonetest.ServiceUnavailable(), cxonetest.Forbidden(),
		cxonetest.DropConnection(), {Status: http.StatusBadGateway, Body: "<html>bad gateway</html>"},
		cxonetest.InvalidContactID(), cxonetest.InvalidParameter(), cxonetest.InvalidRequest(),
	}
	for i, f := range faults {
		id := fmt.Sprint(4000 + i)
		srv.AddContact(cxonetest.Contact{ID: id})
		srv.FailNext(cxonetest.OpStopContact, 1, f)
		require.Error(t, c.StopContact(t.Context(), id, ""), "fault %+v", f)
		assert.Zero(t, srv.StopEffects(id))
	}
	srv.AddContact(cxonetest.Contact{ID: "lost"})
	srv.LoseNext(cxonetest.OpStopContact, 1)
	requireError(t, c.StopContact(t.Context(), "lost", ""), platform.Transient)
	assert.Equal(t, 1, srv.StopEffects("lost"))
	srv.AddContact(cxonetest.Contact{ID: "ok"})
	require.NoError(t, c.StopContact(t.Context(), "ok", ""))
	srv.FailNext(cxonetest.OpDescribeContact, 1, cxonetest.InternalError())
	_, err := c.DescribeContact(t.Context(), "ok")
	requireError(t, err, platform.Transient)
	srv.FailNext(cxonetest.OpListActive, 1, cxonetest.InternalError())
	requireError(t, c.ListActive(t.Context(), func(platform.Listed) error { return nil }), platform.Transient)

	stops := len(faults) + 2
	assert.Equal(t, map[string]int{OpDiscovery: 1, OpToken: 1, OpStopContact: stops, OpDescribeContact: 1, OpListActive: 1}, a.get())
	assert.Len(t, srv.CallsOf(cxonetest.OpStopContact), stops, "the fake saw one request per call")
}

func TestNoSecretInErrors(t *testing.T) {
	srv := cxonetest.New(t)
	srv.AddContact(cxonetest.Contact{ID: "1001"})
	secrets := []string{srv.AccessKeyID, srv.AccessKeySecret, srv.ClientSecret}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		texts := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
		var pe *platform.Error
		if errors.As(err, &pe) {
			texts = append(texts, pe.Message, pe.Code, fmt.Sprintf("%#v", *pe))
		}
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			texts = append(texts, e.Error())
		}
		for _, text := range texts {
			for _, s := range secrets {
				assert.NotContains(t, text, s)
			}
		}
	}

	// Refused credentials.
	wrongKey := newClient(t, srv, func(c *Config) { c.AccessKeySecret = "not-" + srv.AccessKeySecret })
	pe := requireError(t, wrongKey.StopContact(t.Context(), "1001", ""), platform.Denied)
	assert.Equal(t, "invalid_grant", pe.Code)
	assert.Equal(t, http.StatusBadRequest, pe.Status)
	check(t, pe)
	wrongClient := newClient(t, srv, func(c *Config) { c.ClientSecret = "not-" + srv.ClientSecret })
	pe = requireError(t, wrongClient.StopContact(t.Context(), "1001", ""), platform.Denied)
	assert.Equal(t, "invalid_client", pe.Code)
	assert.Equal(t, http.StatusUnauthorized, pe.Status)
	check(t, pe)

	// Answers that quote the secrets back.
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
	srv.FailNext(cxonetest.OpToken, 1, cxonetest.Fault{Status: http.StatusBadRequest, Code: "invalid_grant",
		Message: "no user with access key " + srv.AccessKeyID + " and password " + srv.AccessKeySecret})
	err := c.StopContact(t.Context(), "1001", "")
	requireError(t, err, platform.Denied)
	assert.Contains(t, err.Error(), "[REDACTED]")
	check(t, err)
	srv.FailNext(cxonetest.OpStopContact, 1, cxonetest.Fault{Status: http.StatusInternalServerError,
		Body: "exception: client " + srv.ClientSecret + " user " + srv.AccessKeyID})
	err = c.StopContact(t.Context(), "1001", "")
	requireError(t, err, platform.Transient)
	check(t, err)

	// Other failures.
	srv.FailNext(cxonetest.OpStopContact, 1, cxonetest.Throttling("1"))
	check(t, c.StopContact(t.Context(), "1001", ""))
	srv.HangNext(cxonetest.OpDescribeContact, 1)
	_, err = c.DescribeContact(t.Context(), "1001")
	check(t, err)
	srv.FailNext(cxonetest.OpStopContact, 1, cxonetest.DropConnection())
	check(t, c.StopContact(t.Context(), "1001", ""))
	assert.Zero(t, srv.StopEffects("1001"))
}

// TestErrorTable checks the README's table row by row: CXone's answers to
// the end-contact operation (and to contact details, the token endpoint
// and the discovery) and the kind each is.
func TestErrorTable(t *testing.T) {
	srv := cxonetest.New(t)
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
	date := time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name  string
		op    cxonetest.Op
		fault *cxonetest.Fault // nil: the contact is unknown
		kind  platform.Kind
		code  string
		retry time.Duration
	}{
		// End a Contact: Studio's branches.
		{name: "InvalidContactID/404", op: cxonetest.OpStopContact, kind: platform.NotFound, code: "NotFound"},
		{name: "InvalidContactID/400", op: cxonetest.OpStopContact, fault: ptr(cxonetest.InvalidContactID()), kind: platform.NotFound, code: "InvalidContactId"},
		{name: "Unauthorized/403", op: cxonetest.OpStopContact, fault: ptr(cxonetest.Forbidden()), kind: platform.Denied, code: "Forbidden"},
		// (Invalid Security User, 401: TestTokenRenewedAfter401.)
		{name: "400/OtherParameter", op: cxonetest.OpStopContact, fault: ptr(cxonetest.InvalidParameter()), kind: platform.InvalidParameter, code: "InvalidParameter"},
		{name: "409", op: cxonetest.OpStopContact, fault: ptr(cxonetest.InvalidRequest()), kind: platform.InvalidRequest, code: "Conflict"},
		{name: "422", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusUnprocessableEntity}, kind: platform.InvalidRequest},
		{name: "404/NotJSON", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusNotFound, Body: "404 page not found"}, kind: platform.ResourceNotFound},
		{name: "302", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusFound}, kind: platform.InvalidRequest},
		{name: "429", op: cxonetest.OpStopContact, fault: ptr(cxonetest.Throttling("")), kind: platform.Throttled, code: "TooManyRequests"},
		{name: "429/RetryAfterSeconds", op: cxonetest.OpStopContact, fault: ptr(cxonetest.Throttling("2")), kind: platform.Throttled, retry: 2 * time.Second},
		{name: "429/RetryAfterDate", op: cxonetest.OpStopContact, fault: ptr(cxonetest.Throttling(date)), kind: platform.Throttled, retry: 5 * time.Second},
		{name: "500", op: cxonetest.OpStopContact, fault: ptr(cxonetest.InternalError()), kind: platform.Transient},
		{name: "502", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusBadGateway, Body: "<html>"}, kind: platform.Transient},
		{name: "503", op: cxonetest.OpStopContact, fault: ptr(cxonetest.ServiceUnavailable()), kind: platform.Transient},
		{name: "504", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusGatewayTimeout}, kind: platform.Transient},
		{name: "408", op: cxonetest.OpStopContact, fault: &cxonetest.Fault{Status: http.StatusRequestTimeout}, kind: platform.Transient},
		{name: "Dropped", op: cxonetest.OpStopContact, fault: ptr(cxonetest.DropConnection()), kind: platform.Transient},
		// Contact details.
		{name: "Describe/404", op: cxonetest.OpDescribeContact, kind: platform.NotFound, code: "NotFound"},
		{name: "Describe/204", op: cxonetest.OpDescribeContact, fault: &cxonetest.Fault{Status: http.StatusNoContent}, kind: platform.NotFound},
		{name: "Describe/400InvalidContactID", op: cxonetest.OpDescribeContact, fault: ptr(cxonetest.InvalidContactID()), kind: platform.NotFound},
		{name: "Describe/403", op: cxonetest.OpDescribeContact, fault: ptr(cxonetest.Forbidden()), kind: platform.Denied},
		{name: "Describe/429", op: cxonetest.OpDescribeContact, fault: ptr(cxonetest.Throttling("1")), kind: platform.Throttled, retry: time.Second},
		{name: "Describe/500", op: cxonetest.OpDescribeContact, fault: ptr(cxonetest.InternalError()), kind: platform.Transient},
		// The token endpoint.
		{name: "Token/invalid_grant", op: cxonetest.OpToken, fault: &cxonetest.Fault{Status: http.StatusBadRequest, Code: "invalid_grant", Message: "Invalid access key"}, kind: platform.Denied, code: "invalid_grant"},
		{name: "Token/invalid_client", op: cxonetest.OpToken, fault: &cxonetest.Fault{Status: http.StatusUnauthorized, Code: "invalid_client"}, kind: platform.Denied, code: "invalid_client"},
		{name: "Token/403", op: cxonetest.OpToken, fault: &cxonetest.Fault{Status: http.StatusForbidden}, kind: platform.Denied},
		{name: "Token/429", op: cxonetest.OpToken, fault: ptr(cxonetest.Throttling("4")), kind: platform.Throttled, retry: 4 * time.Second},
		{name: "Token/500", op: cxonetest.OpToken, fault: ptr(cxonetest.InternalError()), kind: platform.Transient},
		{name: "Token/Dropped", op: cxonetest.OpToken, fault: ptr(cxonetest.DropConnection()), kind: platform.Transient},
		// The discovery.
		{name: "Discovery/404", op: cxonetest.OpDiscovery, fault: &cxonetest.Fault{Status: http.StatusNotFound, Code: "NotFound"}, kind: platform.ResourceNotFound},
		{name: "Discovery/429", op: cxonetest.OpDiscovery, fault: ptr(cxonetest.Throttling("")), kind: platform.Throttled},
		{name: "Discovery/500", op: cxonetest.OpDiscovery, fault: ptr(cxonetest.InternalError()), kind: platform.Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "no-such-contact"
			if tc.fault != nil {
				id = "c-" + tc.name
				srv.AddContact(cxonetest.Contact{ID: id})
				srv.FailNext(tc.op, 1, *tc.fault)
			}
			c := c
			if tc.op == cxonetest.OpToken || tc.op == cxonetest.OpDiscovery {
				c = newClient(t, srv) // no token, no API endpoint yet
			}
			var err error
			op := OpStopContact
			if tc.op == cxonetest.OpDescribeContact {
				op = OpDescribeContact
				_, err = c.DescribeContact(t.Context(), id)
			} else {
				err = c.StopContact(t.Context(), id, "")
			}
			pe := requireError(t, err, tc.kind)
			assert.Equal(t, op, pe.Op)
			if tc.fault != nil && !tc.fault.Drop {
				assert.Equal(t, tc.fault.Status, pe.Status)
			}
			if tc.code != "" {
				assert.Equal(t, tc.code, pe.Code)
			}
			assert.InDelta(t, tc.retry, pe.RetryAfter, float64(1100*time.Millisecond))
			assert.Equal(t, tc.kind == platform.Transient || tc.kind == platform.Throttled, platform.Retryable(err))
			assert.Zero(t, srv.StopEffects(id))
		})
	}

	t.Run("Timeout", func(t *testing.T) {
		srv.AddContact(cxonetest.Contact{ID: "slow"})
		srv.HangNext(cxonetest.OpStopContact, 1)
		start := time.Now()
		pe := requireError(t, c.StopContact(t.Context(), "slow", ""), platform.Transient)
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		assert.Contains(t, pe.Error(), "no answer within 300ms")
		assert.Equal(t, 1, srv.StopEffects("slow"), "the stop took effect, its answer was lost")
	})
}

func ptr[T any](v T) *T { return &v }

func TestInvalidParameterClientSide(t *testing.T) {
	srv := cxonetest.New(t)
	c := newClient(t, srv)
	requireError(t, c.StopContact(t.Context(), "", ""), platform.InvalidParameter)
	_, err := c.DescribeContact(t.Context(), "")
	requireError(t, err, platform.InvalidParameter)
	assert.Empty(t, srv.Calls())
}

func TestDisconnectReasonHeader(t *testing.T) {
	srv := cxonetest.New(t)
	srv.AddContact(cxonetest.Contact{ID: "1001"})
	c := newClient(t, srv)
	require.NoError(t, c.StopContact(t.Context(), "1001", "CUSTOMER_REQUEST"))
	stops := srv.CallsOf(cxonetest.OpStopContact)
	require.Len(t, stops, 1)
	assert.Equal(t, "CUSTOMER_REQUEST", stops[0].DisconnectReason)
	assert.Equal(t, http.StatusAccepted, stops[0].Status)
}

func TestDescribeWithoutStateHistory(t *testing.T) {
	srv := cxonetest.New(t)
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	srv.AddContact(cxonetest.Contact{ID: "5001", SkillID: "42", EnqueuedAt: at, AgentConnected: true, ConnectedAt: at.Add(time.Second)})
	srv.AddContact(cxonetest.Contact{ID: "5002", SkillID: "43", EnqueuedAt: at})
	var a attempts
	c := newClient(t, srv, func(c *Config) { c.OnAttempt = a.count })

	st, err := c.DescribeContact(t.Context(), "5001")
	require.NoError(t, err)
	assert.Equal(t, platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelVoice, QueueID: "42", EnqueuedAt: at}, st)

	// The history fails: the description goes without what it adds.
	srv.FailNext(cxonetest.OpStateHistory, 1, cxonetest.InternalError())
	st, err = c.DescribeContact(t.Context(), "5001")
	require.NoError(t, err)
	assert.Equal(t, platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelVoice, QueueID: "42"}, st)
	srv.FailNext(cxonetest.OpStateHistory, 1, cxonetest.Throttling("1"))
	st, err = c.DescribeContact(t.Context(), "5002")
	require.NoError(t, err)
	assert.Equal(t, platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelVoice, QueueID: "43", EnqueuedAt: at}, st,
		"a queued contact's last state change is when it was queued")
	assert.Equal(t, 3, a.get()[OpStateHistory])
	assert.Equal(t, 3, a.get()[OpDescribeContact])
}

func TestAwkwardContactID(t *testing.T) {
	srv := cxonetest.New(t)
	c := newClient(t, srv)
	for _, id := range []string{"a b/c?d=e&f#g", "ünï%2Fcode", "x+y;z", "5012345678901"} {
		srv.AddContact(cxonetest.Contact{ID: id, SkillID: "q/1"})
		st, err := c.DescribeContact(t.Context(), id)
		require.NoError(t, err, "%q", id)
		assert.Equal(t, "q/1", st.QueueID)
		require.NoError(t, c.StopContact(t.Context(), id, ""), "%q", id)
		assert.Equal(t, 1, srv.StopEffects(id))
	}
}

func TestNewConfig(t *testing.T) {
	ctx := context.Background()
	_, err := New(ctx, Config{})
	require.ErrorContains(t, err, "TenantID")
	_, err = New(ctx, Config{TenantID: "t", CallTimeout: -time.Second})
	require.Error(t, err)
	_, err = New(ctx, Config{TenantID: "t", Endpoint: "ftp://x"})
	require.ErrorContains(t, err, "Endpoint")
	_, err = New(ctx, Config{TenantID: "t", DiscoveryURL: "not a url"})
	require.ErrorContains(t, err, "DiscoveryURL")
	_, err = New(ctx, Config{TenantID: "t", ClientAuth: "jwt"})
	require.ErrorContains(t, err, "jwt")
	_, err = New(ctx, Config{TenantID: "t", APIVersion: "v1/../x"})
	require.Error(t, err)
	c, err := New(ctx, Config{TenantID: "t"})
	require.NoError(t, err)
	assert.Equal(t, DefaultCallTimeout, c.timeout)
	assert.Equal(t, DefaultIssuer, c.issuer)
	assert.Equal(t, DefaultAPIVersion, c.version)
	assert.NotNil(t, c.hc.CheckRedirect)
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
	} {
		d, ok := platform.ParseRetryAfter(tc.v, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		assert.Equal(t, tc.d, d, "%q", tc.v)
	}
}

func TestStatusOf(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	iso := func(d time.Duration) string { return strconv.Quote(t0.Add(d).Format("2006-01-02T15:04:05.000Z")) }
	for _, tc := range []struct {
		name string
		json string
		want platform.Status
	}{
		{"PreQueue", `{"contactId":1,"stateName":"PreQueue","contactStateCategory":"Pre-Queue","mediaTypeId":4,"mediaTypeName":"Phone Call","skillId":0}`,
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelVoice}},
		{"InQueueByCategory", `{"contactId":1,"stateName":"Something","contactStateCategory":"In Queue","mediaTypeName":"Chat","skillId":42,"lastUpdateTime":` + iso(time.Second) + `}`,
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelChat, QueueID: "42", EnqueuedAt: t0.Add(time.Second)}},
		{"InqueueByName", `{"contactId":1,"stateName":"Inqueue","mediaTypeId":"1","skillId":"42"}`,
			platform.Status{Active: true, State: store.StateQueued, Channel: store.ChannelEmail, QueueID: "42"}},
		{"WithAgent", `{"contactId":1,"stateName":"Active","contactStateCategory":"With Agent","mediaTypeName":"Work Item","skillId":42}`,
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelWorkItem, QueueID: "42"}},
		{"Hold", `{"contactId":1,"stateName":"Hold","mediaTypeId":5}`,
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelVoicemail}},
		{"PostAgent", `{"contactId":1,"stateName":"ACW","contactStateCategory":"Post Agent","mediaTypeId":7}`,
			platform.Status{Active: true, State: store.StateConnected, Channel: store.ChannelSMS}},
		{"DigitalSubType", `{"contactId":1,"stateName":"Routing","mediaTypeName":"Digital","mediaSubTypeName":"SMS"}`,
			platform.Status{Active: true, State: store.StateInitiated, Channel: store.ChannelSMS}},
		{"UnknownMedia", `{"contactId":1,"stateName":"Routing","mediaTypeId":99}`,
			platform.Status{Active: true, State: store.StateInitiated}},
		{"UnknownMediaName", `{"contactId":1,"mediaTypeId":4,"mediaTypeName":"Hologram"}`,
			platform.Status{Active: true, State: store.StateInitiated}},
		{"Completed", `{"contactId":1,"isActive":false,"contactStartDate":` + iso(0) + `,"totalDurationSeconds":62.5,"preQueueSeconds":2.25,"inQueueSeconds":60.25,"skillId":42,"mediaTypeId":4,"stateName":"EndContact"}`,
			platform.Status{State: store.StateEnded, Channel: store.ChannelVoice, QueueID: "42", EnqueuedAt: t0.Add(2250 * time.Millisecond), DisconnectedAt: t0.Add(62500 * time.Millisecond)}},
		{"CompletedNeverQueued", `{"contactId":1,"isActive":"False","contactStartDate":` + iso(0) + `,"totalDurationSeconds":"10","preQueueSeconds":10,"inQueueSeconds":0,"agentSeconds":0,"skillId":42}`,
			platform.Status{State: store.StateEnded, QueueID: "42", DisconnectedAt: t0.Add(10 * time.Second)}},
		{"CompletedWithoutDuration", `{"contactId":1,"isActive":false,"lastUpdateTime":` + iso(time.Minute) + `}`,
			platform.Status{State: store.StateEnded, DisconnectedAt: t0.Add(time.Minute)}},
		{"EndReasonWithoutIsActive", `{"contactId":1,"endReason":"Contact Hung Up","contactStartDate":` + iso(0) + `,"totalDurationSeconds":3}`,
			platform.Status{State: store.StateEnded, DisconnectedAt: t0.Add(3 * time.Second)}},
		{"ActiveDespiteEndState", `{"contactId":1,"isActive":true,"stateName":"EndContact"}`,
			platform.Status{Active: true, State: store.StateInitiated}},
		{"EpochAndOddValues", `{"contactId":1,"isActive":false,"contactStartDate":` + strconv.FormatInt(t0.UnixMilli(), 10) + `,"totalDurationSeconds":"n/a","lastUpdateTime":"yesterday"}`,
			platform.Status{State: store.StateEnded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wc wireContact
			require.NoError(t, jsonUnmarshal(tc.json, &wc))
			assert.Equal(t, tc.want, statusOf(wc))
		})
	}
}

func TestDecodeContactDetails(t *testing.T) {
	for name, body := range map[string]string{
		"Documented":  `{"businessUnitId":4600001,"lastPollTime":"2026-03-01T12:00:00.000Z","contactId":{"contactId":7,"stateName":"Inqueue"}}`,
		"Contacts":    `{"businessUnitId":1,"contacts":[{"contactId":6,"stateName":"Active"},{"contactId":7,"stateName":"Inqueue"}]}`,
		"Active":      `{"activeContacts":[{"contactId":"7","stateName":"Inqueue"}]}`,
		"Bare":        `{"contactId":7,"stateName":"Inqueue"}`,
		"NoIDInChild": `{"contactId":{"stateName":"Inqueue"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			wc, err := decodeContactDetails([]byte(body), "7")
			require.NoError(t, err)
			assert.Equal(t, "7", wc.ContactID.id())
			assert.Equal(t, store.StateQueued, statusOf(wc).State)
		})
	}
	_, err := decodeContactDetails([]byte(`{"businessUnitId":1}`), "7")
	require.Error(t, err)
	_, err = decodeContactDetails([]byte(`[`), "7")
	require.Error(t, err)
}

func TestErrorInfo(t *testing.T) {
	for _, tc := range []struct{ body, code, msg string }{
		{`{"error":"invalid_grant","error_description":"bad key"}`, "invalid_grant", "bad key"},
		{`{"message":"Invalid contactId"}`, "", "Invalid contactId"},
		{`[{"errorCode":"E1","errorMessage":"boom"}]`, "E1", "boom"},
		{`<html>oops</html>`, "", "<html>oops</html>"},
		{``, "", ""},
	} {
		code, msg := errorInfo([]byte(tc.body))
		assert.Equal(t, tc.code, code, tc.body)
		assert.Equal(t, tc.msg, msg, tc.body)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestSlowTokenEndpoint(t *testing.T) {
	srv := cxonetest.New(t)
	srv.AddContact(cxonetest.Contact{ID: "1001"})
	c := newClient(t, srv, func(c *Config) { c.CallTimeout = 100 * time.Millisecond })
	srv.SetLatency(cxonetest.OpToken, 300*time.Millisecond)
	pe := requireError(t, c.StopContact(t.Context(), "1001", ""), platform.Transient)
	assert.Equal(t, OpStopContact, pe.Op)
	assert.Contains(t, pe.Message, "no answer within 100ms")
	assert.Empty(t, srv.CallsOf(cxonetest.OpStopContact), "the call waited for its token")

	// A caller that gives up does not cancel the token's fetch: the next
	// call uses the token it got.
	time.Sleep(50 * time.Millisecond) // the first fetch gives up too
	srv.SetLatency(cxonetest.OpToken, 30*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	requireError(t, c.StopContact(ctx, "1001", ""), platform.Transient)
	require.Eventually(t, func() bool { return srv.TokensIssued() == 2 && len(srv.CallsOf(cxonetest.OpToken)) == 2 },
		time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // its answer reaches the client
	require.NoError(t, c.StopContact(t.Context(), "1001", ""))
	assert.Equal(t, 1, srv.StopEffects("1001"))
	assert.Len(t, srv.CallsOf(cxonetest.OpToken), 2, "no third token request")
}
