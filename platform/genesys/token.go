package genesys

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// errNoCredentials: neither Config nor the environment has an OAuth client.
var errNoCredentials = errors.New("no Genesys Cloud OAuth client credentials (set " + EnvClientID + " and " + EnvClientSecret + ")")

// maxRenewalMargin is how long before its expiry a token is renewed, at
// most; a short-lived token is renewed when a fifth of its life is left.
const maxRenewalMargin = time.Minute

// tokenSource keeps the OAuth token of the client credentials grant
// (golang.org/x/oauth2/clientcredentials, client authentication with HTTP
// Basic as Genesys's SDKs send it), renewing it before it expires and when
// the API refuses it. One token request is made at a time; callers that
// need a token meanwhile wait for it. It remembers every secret it has
// handled, so that errors can be scrubbed of them.
type tokenSource struct {
	conf clientcredentials.Config
	http *http.Client
	now  func() time.Time
	lock chan struct{} // held while a token is requested

	mu      sync.Mutex
	current string
	renewAt time.Time // zero: no known expiry
	fixed   []string  // the client's secret and id
	seen    []string  // recent tokens
}

// maxSeenTokens bounds the remembered tokens.
const maxSeenTokens = 8

func newTokenSource(clientID, clientSecret, tokenURL string, hc *http.Client, now func() time.Time) *tokenSource {
	s := &tokenSource{
		conf: clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL,
			AuthStyle: oauth2.AuthStyleInHeader},
		http: hc,
		now:  now,
		lock: make(chan struct{}, 1),
	}
	for _, v := range []string{clientSecret, clientID} {
		if len(v) >= 4 {
			s.fixed = append(s.fixed, v)
		}
	}
	return s
}

// get returns a token that is not about to expire, requesting one if
// needed.
func (s *tokenSource) get(ctx context.Context) (string, error) {
	if s.conf.ClientID == "" || s.conf.ClientSecret == "" {
		return "", errNoCredentials
	}
	if tok := s.valid(); tok != "" {
		return tok, nil
	}
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.lock }()
	if tok := s.valid(); tok != "" {
		return tok, nil // renewed meanwhile
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	t, err := s.conf.Token(context.WithValue(ctx, opKey{}, OpToken))
	if err != nil {
		return "", err
	}
	fetched := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current, s.renewAt = t.AccessToken, time.Time{}
	if !t.Expiry.IsZero() {
		// x/oauth2 sets Expiry from expires_in and the wall clock; the life
		// left is measured now and counted on the client's clock.
		life := time.Until(t.Expiry)
		s.renewAt = fetched.Add(life - min(maxRenewalMargin, life/5))
	}
	s.remember(t.AccessToken)
	return t.AccessToken, nil
}

// valid is the current token if it is not due for renewal.
func (s *tokenSource) valid() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == "" || (!s.renewAt.IsZero() && !s.now().Before(s.renewAt)) {
		return ""
	}
	return s.current
}

// invalidate drops tok if it is still the current token: the API refused
// it, the next get requests another.
func (s *tokenSource) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == tok {
		s.current = ""
	}
}

// remember adds a token to the secrets scrubbed from errors (under mu).
func (s *tokenSource) remember(tok string) {
	if len(tok) < 4 || slices.Contains(s.seen, tok) {
		return
	}
	s.seen = append(s.seen, tok)
	if len(s.seen) > maxSeenTokens {
		s.seen = s.seen[1:]
	}
}

// scrub replaces every secret the source has handled in text.
func (s *tokenSource) scrub(text string) string {
	if text == "" {
		return text
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, secret := range s.seen {
		text = strings.ReplaceAll(text, secret, "[REDACTED]")
	}
	for _, secret := range s.fixed {
		text = strings.ReplaceAll(text, secret, "[REDACTED]")
	}
	return text
}
