package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxSubjectLen bounds the sub claim Issue accepts.
const maxSubjectLen = 256

// Claims are the claims of a security-user token: who holds it, when it is
// valid, and what it grants. Times are whole seconds in a token; a zero
// time is an absent claim.
type Claims struct {
	// Subject names the holder (the "sub" claim): a user, service or
	// integration. Required.
	Subject string
	// ExpiresAt is the "exp" claim. Required.
	ExpiresAt time.Time
	// NotBefore is the "nbf" claim: the token is refused before it.
	NotBefore time.Time
	// IssuedAt is the "iat" claim: a token issued in the future is refused.
	IssuedAt time.Time
	// Grants is what the token permits.
	Grants []Grant
}

// Allows reports whether one of the grants permits action on resource. A
// resource that is not a valid [ContactResource] or [InstanceResource] is
// never allowed.
func (c *Claims) Allows(action Action, res string) bool {
	r, ok := parseResource(res)
	if !ok {
		return false
	}
	for i := range c.Grants {
		if c.Grants[i].allows(action, r) {
			return true
		}
	}
	return false
}

// Validate reports every reason Issue would refuse the claims: no subject or
// one longer than 256 bytes, no expiry, an expiry not after NotBefore or
// IssuedAt, no grants, or an invalid grant.
func (c *Claims) Validate() error {
	var errs []error
	if c.Subject == "" {
		errs = append(errs, errors.New("sub is required"))
	} else if len(c.Subject) > maxSubjectLen {
		errs = append(errs, fmt.Errorf("sub is %d bytes, more than %d", len(c.Subject), maxSubjectLen))
	}
	if c.ExpiresAt.IsZero() {
		errs = append(errs, errors.New("exp is required"))
	} else {
		if !c.NotBefore.IsZero() && !c.ExpiresAt.After(c.NotBefore) {
			errs = append(errs, errors.New("exp must be after nbf"))
		}
		if !c.IssuedAt.IsZero() && !c.ExpiresAt.After(c.IssuedAt) {
			errs = append(errs, errors.New("exp must be after iat"))
		}
	}
	if len(c.Grants) == 0 {
		errs = append(errs, errors.New("at least one grant is required"))
	}
	for i, g := range c.Grants {
		if err := g.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("grant %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// tokenClaims is the claims' JSON form in a token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Grants []Grant `json:"grants,omitempty"`
}

func newTokenClaims(c *Claims) *tokenClaims {
	return &tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			ExpiresAt: numericDate(c.ExpiresAt),
			NotBefore: numericDate(c.NotBefore),
			IssuedAt:  numericDate(c.IssuedAt),
		},
		Grants: c.Grants,
	}
}

func (t *tokenClaims) claims() Claims {
	return Claims{
		Subject:   t.Subject,
		ExpiresAt: timeOf(t.ExpiresAt),
		NotBefore: timeOf(t.NotBefore),
		IssuedAt:  timeOf(t.IssuedAt),
		Grants:    t.Grants,
	}
}

func numericDate(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}

func timeOf(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time
}
