package cxone

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contactstop/contactstop/platform"
)

// credentials are what the client authenticates with.
type credentials struct {
	accessKeyID, accessKeySecret string
	clientID, clientSecret       string
}

// Token lifetimes.
const (
	// defaultTokenLifetime is assumed when the token endpoint does not say
	// (expires_in); CXone's tokens last an hour.
	defaultTokenLifetime = 5 * time.Minute
	// maxRenewMargin is how long before its expiry a token is renewed at
	// most; a short-lived token is renewed after three quarters of its
	// life.
	maxRenewMargin = time.Minute
)

// token is a bearer token and when to renew it.
type token struct {
	value   string
	renewAt time.Time
}

// tokenCache holds the current token; one fetch at a time.
type tokenCache struct {
	mu       sync.Mutex
	value    string
	renewAt  time.Time
	inflight *flight[token]
}

// bearer returns a token to call the API with: the cached one until its
// renewal time, else a new one from the token endpoint. stale, when not
// "", is a token the API refused (401): it is dropped, and a different one
// returned. Callers share one fetch; each waits for it within its own
// context, the fetch itself within the call timeout.
func (c *Client) bearer(ctx context.Context, stale string) (string, error) {
	if c.creds.accessKeyID == "" || c.creds.accessKeySecret == "" {
		return "", &platform.Error{Kind: platform.Denied, Op: OpToken,
			Message: "no CXone access key: set " + EnvAccessKeyID + " and " + EnvAccessKeySecret + " in the environment"}
	}
	t := &c.tokens
	t.mu.Lock()
	if stale != "" && t.value == stale {
		t.value = ""
	}
	if t.value != "" && c.now().Before(t.renewAt) {
		v := t.value
		t.mu.Unlock()
		return v, nil
	}
	f := t.inflight
	if f == nil {
		f = &flight[token]{done: make(chan struct{})}
		t.inflight = f
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		go func() {
			defer cancel()
			tok, err := c.fetchToken(fctx)
			t.mu.Lock()
			if err == nil {
				t.value, t.renewAt = tok.value, tok.renewAt
			}
			f.v, f.err = tok, err
			t.inflight = nil
			t.mu.Unlock()
			close(f.done)
		}()
	}
	t.mu.Unlock()
	tok, err := f.wait(ctx)
	return tok.value, err
}

// dropToken forgets tok if it is still the cached token.
func (c *Client) dropToken(tok string) {
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	if c.tokens.value == tok {
		c.tokens.value = ""
	}
}

// fetchToken exchanges the access key for a bearer token at CXone's token
// endpoint, {issuer}/auth/token: an OAuth 2.0 password grant whose
// username and password are the access key's id and secret, with the
// registered application's client id and secret (HTTP Basic, or in the
// form).
func (c *Client) fetchToken(ctx context.Context) (token, error) {
	form := url.Values{
		"grant_type": {"password"},
		"username":   {c.creds.accessKeyID},
		"password":   {c.creds.accessKeySecret},
	}
	basic := c.clientAuth == "basic" && c.creds.clientID != ""
	if !basic && c.creds.clientID != "" {
		form.Set("client_id", c.creds.clientID)
		if c.creds.clientSecret != "" {
			form.Set("client_secret", c.creds.clientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.issuer+"/auth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: each form-encoded, then Basic.
		cred := url.QueryEscape(c.creds.clientID) + ":" + url.QueryEscape(c.creds.clientSecret)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
	issued := c.now()
	resp, perr := c.send(OpToken, req)
	if perr != nil {
		perr.Message = "token endpoint: " + perr.Message
		return token{}, perr
	}
	if resp.status != http.StatusOK {
		return token{}, c.tokenError(resp)
	}
	var w wireToken
	if err := json.Unmarshal(resp.body, &w); err != nil || w.AccessToken == "" {
		return token{}, &platform.Error{Kind: platform.Transient, Op: OpToken, Status: resp.status,
			Message: "token endpoint: the answer has no access_token"}
	}
	c.secrets.remember(w.AccessToken, w.RefreshToken, w.IDToken)
	if tt := strings.ToLower(w.TokenType); tt != "" && tt != "bearer" {
		return token{}, &platform.Error{Kind: platform.Denied, Op: OpToken, Status: resp.status,
			Message: "token endpoint: a token of type " + c.secrets.scrub(w.TokenType) + ", not bearer"}
	}
	life := defaultTokenLifetime
	if secs, ok := w.ExpiresIn.get(); ok && secs > 0 {
		life = time.Duration(secs * float64(time.Second))
	}
	margin := min(life/4, maxRenewMargin)
	return token{value: w.AccessToken, renewAt: issued.Add(life - margin)}, nil
}

// tokenError classifies the token endpoint's refusal: 429 Throttled,
// 408 and 5xx Transient; any other (invalid_grant: the access key is
// wrong, disabled or its user inactive; invalid_client: the application's
// client id or secret) Denied.
func (c *Client) tokenError(resp *response) *platform.Error {
	pe := c.answerError(OpToken, resp)
	switch pe.Kind {
	case platform.Throttled, platform.Transient:
	default:
		pe.Kind = platform.Denied
	}
	switch {
	case pe.Message != "":
		pe.Message = "token endpoint: " + pe.Message
	case pe.Code != "":
		pe.Message = "token endpoint refused the credentials"
	default:
		pe.Message = "token endpoint: " + http.StatusText(resp.status)
	}
	return pe
}

// flight is one fetch that several callers wait for.
type flight[T any] struct {
	done chan struct{}
	v    T
	err  error
}

func (f *flight[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// lazy is a value fetched once, on first use; a failed fetch is tried
// again by the next use.
type lazy[T any] struct {
	mu       sync.Mutex
	ok       bool
	v        T
	inflight *flight[T]
}

func (l *lazy[T]) get(ctx context.Context, timeout time.Duration, fetch func(context.Context) (T, error)) (T, error) {
	l.mu.Lock()
	if l.ok {
		v := l.v
		l.mu.Unlock()
		return v, nil
	}
	f := l.inflight
	if f == nil {
		f = &flight[T]{done: make(chan struct{})}
		l.inflight = f
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		go func() {
			defer cancel()
			v, err := fetch(fctx)
			l.mu.Lock()
			if err == nil {
				l.ok, l.v = true, v
			}
			f.v, f.err = v, err
			l.inflight = nil
			l.mu.Unlock()
			close(f.done)
		}()
	}
	l.mu.Unlock()
	return f.wait(ctx)
}

// secrets are the credentials and tokens the client has used, so that no
// error text ever shows them.
type secrets struct {
	mu     sync.Mutex
	fixed  []string // the credentials
	recent []string // tokens, the latest maxTokens
}

// maxTokens bounds the remembered tokens.
const maxTokens = 24

// keep remembers the credentials.
func (s *secrets) keep(ss ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range ss {
		if len(v) >= 4 && !slices.Contains(s.fixed, v) {
			s.fixed = append(s.fixed, v)
		}
	}
}

// remember remembers tokens.
func (s *secrets) remember(ss ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range ss {
		if len(v) < 4 || slices.Contains(s.recent, v) {
			continue
		}
		s.recent = append(s.recent, v)
		if len(s.recent) > maxTokens {
			s.recent = s.recent[1:]
		}
	}
}

// scrub replaces every remembered secret in v, and their form-encoded and
// path-escaped spellings.
func (s *secrets) scrub(v string) string {
	if v == "" {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range [][]string{s.fixed, s.recent} {
		for _, secret := range list {
			v = strings.ReplaceAll(v, secret, "[REDACTED]")
			if q := url.QueryEscape(secret); q != secret {
				v = strings.ReplaceAll(v, q, "[REDACTED]")
			}
			if p := url.PathEscape(secret); p != secret {
				v = strings.ReplaceAll(v, p, "[REDACTED]")
			}
		}
	}
	return v
}
