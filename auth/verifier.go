package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenSize is the largest token accepted, in bytes; a longer one is
// refused before it is parsed. It equals the limit the events package puts
// on a request's securityUser.
const MaxTokenSize = 8 << 10

// DefaultLeeway is the clock skew allowed when checking exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// maxLeeway bounds Config.Leeway.
const maxLeeway = 5 * time.Minute

// Config configures a Verifier.
type Config struct {
	// Keys verify tokens; at least one is required. Tokens are accepted
	// only with the algorithms of these keys.
	Keys []Key
	// Leeway is the clock skew allowed when checking exp, nbf and iat:
	// 0 means DefaultLeeway (30 s), a negative value means none, and more
	// than 5 minutes is refused.
	Leeway time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Leeway < 0 {
		c.Leeway = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with the configuration: no keys, a zero
// Key, or a leeway above 5 minutes.
func (c Config) Validate() error {
	var errs []error
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("auth: config: at least one key is required"))
	}
	for i, k := range c.Keys {
		if k.alg == "" {
			errs = append(errs, fmt.Errorf("auth: config: key %d is the zero Key; make keys with ParsePublicKey, ParseHS256Secret or their Load…File forms", i+1))
		}
	}
	if c.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("auth: config: leeway %s is more than %s", c.Leeway, maxLeeway))
	}
	return errors.Join(errs...)
}

// Verifier checks security-user tokens. It is safe for concurrent use. A nil
// *Verifier refuses every token as INVALID_SECURITY_USER: whether
// authorization is on is the caller's decision, never a nil pointer's.
type Verifier struct {
	parser *jwt.Parser
	// options are the parser's options but the clock, for VerifyAt.
	options []jwt.ParserOption
	algs    []string
	// byAlg holds, per algorithm, every key of that algorithm; byID, per
	// algorithm and key ID, the keys with that ID.
	byAlg map[string]jwt.VerificationKeySet
	byID  map[algID]jwt.VerificationKeySet
}

type algID struct{ alg, id string }

// NewVerifier returns a verifier for the configuration, or the errors of
// Config.Validate.
func NewVerifier(cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		byAlg: make(map[string]jwt.VerificationKeySet),
		byID:  make(map[algID]jwt.VerificationKeySet),
	}
	for _, k := range cfg.Keys {
		set := v.byAlg[k.alg]
		set.Keys = append(set.Keys, k.verificationKey())
		v.byAlg[k.alg] = set
		if k.ID != "" {
			key := algID{k.alg, k.ID}
			set := v.byID[key]
			set.Keys = append(set.Keys, k.verificationKey())
			v.byID[key] = set
		}
		if !slices.Contains(v.algs, k.alg) {
			v.algs = append(v.algs, k.alg)
		}
	}
	slices.Sort(v.algs)
	v.options = []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	v.parser = jwt.NewParser(append(slices.Clone(v.options), jwt.WithTimeFunc(cfg.Now))...)
	return v, nil
}

// Algorithms returns the algorithms the verifier accepts, sorted, in a new
// slice.
func (v *Verifier) Algorithms() []string {
	if v == nil {
		return nil
	}
	return slices.Clone(v.algs)
}

// Authorize verifies the token (see Verify) and checks that one of its
// grants permits action on resource (see Claims.Allows). It returns the
// token's claims and nil, or an *Error: INVALID_SECURITY_USER from Verify,
// or UNAUTHORIZED, with the verified claims, when no grant matches (the
// caller may log the subject).
func (v *Verifier) Authorize(token string, action Action, resource string) (Claims, error) {
	return v.authorize(token, action, resource, nil)
}

// AuthorizeAt is Authorize with the token's times (exp, nbf, iat) checked
// at the given instant instead of now. A worker passes the time JetStream
// stored the request, so that a request whose token was valid when it was
// published is judged the same way on every redelivery and after a
// backlog, while a token that had expired by then is still refused: the
// publisher cannot choose the stored time.
func (v *Verifier) AuthorizeAt(token string, action Action, resource string, at time.Time) (Claims, error) {
	return v.authorize(token, action, resource, &at)
}

func (v *Verifier) authorize(token string, action Action, resource string, at *time.Time) (Claims, error) {
	c, err := v.verify(token, at)
	if err != nil {
		return Claims{}, err
	}
	if !c.Allows(action, resource) {
		return c, unauthorized(fmt.Sprintf("%s is not granted %s on %s", quoteShort(c.Subject), action, quoteShort(resource)))
	}
	return c, nil
}

// Verify checks a token: at most MaxTokenSize bytes, well-formed, signed
// with an accepted algorithm by one of the keys, with a sub, not expired, not
// before its nbf, not issued in the future (each within the leeway). It
// returns the token's claims, or an *Error with Code
// INVALID_SECURITY_USER saying which check failed.
func (v *Verifier) Verify(token string) (Claims, error) {
	return v.verify(token, nil)
}

// VerifyAt is Verify with the token's times checked at the given instant
// instead of now (see AuthorizeAt).
func (v *Verifier) VerifyAt(token string, at time.Time) (Claims, error) {
	return v.verify(token, &at)
}

func (v *Verifier) verify(token string, at *time.Time) (Claims, error) {
	switch {
	case v == nil:
		return Claims{}, invalidToken("authorization is not configured: no verification keys")
	case token == "":
		return Claims{}, invalidToken("no security token")
	case len(token) > MaxTokenSize:
		return Claims{}, invalidToken(fmt.Sprintf("security token is %d bytes, more than %d", len(token), MaxTokenSize))
	}
	parser := v.parser
	if at != nil {
		instant := *at
		parser = jwt.NewParser(append(slices.Clone(v.options), jwt.WithTimeFunc(func() time.Time { return instant }))...)
	}
	var tc tokenClaims
	t, err := parser.ParseWithClaims(token, &tc, v.keyFunc)
	if err != nil {
		return Claims{}, v.refusal(t, &tc, err)
	}
	if tc.Subject == "" {
		return Claims{}, invalidToken("security token has no sub claim")
	}
	return tc.claims(), nil
}

// errCritical is returned by keyFunc for a token with a "crit" header.
var errCritical = errors.New("crit header")

// keyFunc returns the keys a token's signature may be checked with: those
// of its algorithm (the parser has already refused other algorithms), and
// of those, the ones whose ID is the token's kid, if any are.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	alg := t.Method.Alg()
	if kid, ok := t.Header["kid"].(string); ok && kid != "" {
		if set, ok := v.byID[algID{alg, kid}]; ok {
			return set, nil
		}
	}
	return v.byAlg[alg], nil
}

// refusal turns a parse error into an *Error whose reason names the check
// that failed, without any of the token's text beyond a registered
// algorithm name and the token's own times.
func (v *Verifier) refusal(t *jwt.Token, tc *tokenClaims, err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidToken("security token is malformed: not three base64url parts holding a JSON header and JSON claims of the expected types")
	case t == nil || t.Method == nil:
		return invalidToken("security token's algorithm (alg) is missing or unknown")
	case !slices.Contains(v.algs, t.Method.Alg()):
		return invalidToken(fmt.Sprintf("security token's algorithm %s is not accepted; the configured keys accept %v", t.Method.Alg(), v.algs))
	case errors.Is(err, errCritical):
		return invalidToken("security token has a crit header, which is not supported")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken(fmt.Sprintf("security token's %s signature does not verify with any configured key", t.Method.Alg()))
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("security token has no exp claim")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("security token expired at " + formatTime(tc.ExpiresAt))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("security token is not valid before " + formatTime(tc.NotBefore))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidToken("security token is issued in the future, at " + formatTime(tc.IssuedAt))
	default:
		return invalidToken("security token is invalid")
	}
}

func formatTime(d *jwt.NumericDate) string {
	if d == nil {
		return "(unknown)"
	}
	return d.UTC().Format(time.RFC3339)
}

// quoteShort quotes s for a message, cut to 300 bytes.
func quoteShort(s string) string {
	const limit = 300
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
