package auth

import (
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Issue mints a token for the claims, signed with key (EdDSA for an Ed25519
// key, HS256 for a secret) and carrying key.ID, when set, as its kid. It
// fails when the key is the zero SigningKey, when Claims.Validate reports a
// problem, or when the token would be larger than MaxTokenSize (too many
// grants for a verifier to accept).
func Issue(key SigningKey, c Claims) (string, error) {
	var (
		method   jwt.SigningMethod
		material any
	)
	switch key.alg {
	case AlgEdDSA:
		method, material = jwt.SigningMethodEdDSA, key.private
	case AlgHS256:
		method, material = jwt.SigningMethodHS256, key.secret
	default:
		return "", errors.New("auth: issue: no signing key; make one with ParsePrivateKey, ParseHS256SigningSecret or their Load…File forms")
	}
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("auth: issue: %w", err)
	}
	t := jwt.NewWithClaims(method, newTokenClaims(&c))
	if key.ID != "" {
		t.Header["kid"] = key.ID
	}
	s, err := t.SignedString(material)
	if err != nil {
		return "", fmt.Errorf("auth: issue: sign: %w", err)
	}
	if len(s) > MaxTokenSize {
		return "", fmt.Errorf("auth: issue: the token would be %d bytes, more than the %d a verifier accepts; use fewer or broader grants", len(s), MaxTokenSize)
	}
	return s, nil
}
