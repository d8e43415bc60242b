package auth_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
)

// fuzzKeys are fixed, so that the corpus's signed tokens stay valid.
func fuzzKeys(f *testing.F) (ed, hs auth.SigningKey, v *auth.Verifier) {
	f.Helper()
	priv := ed25519.NewKeyFromSeed([]byte("contactstop fuzz seed, 32 bytes!"))
	ed, err := auth.ParsePrivateKey(pemPrivate(f, priv))
	if err != nil {
		f.Fatal(err)
	}
	if hs, err = auth.ParseHS256SigningSecret(hsSecret); err != nil {
		f.Fatal(err)
	}
	pub, err := auth.ParsePublicKey(pemPublic(f, priv.Public().(ed25519.PublicKey)))
	if err != nil {
		f.Fatal(err)
	}
	hsv, err := auth.ParseHS256Secret(hsSecret)
	if err != nil {
		f.Fatal(err)
	}
	v, err = auth.NewVerifier(auth.Config{Keys: []auth.Key{pub, hsv}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	return ed, hs, v
}

// FuzzAuthorize feeds arbitrary tokens, arbitrary claims (signed with the
// verifier's HS256 secret, so that they pass the signature check and reach
// claim validation and grant matching), arbitrary grant patterns and
// contact IDs. Nothing may panic; every refusal is an *auth.Error with a
// known code that does not repeat the token; and matching keeps its
// promises: a pattern without "*" or "\" matches only itself, and an
// escaped contact ID matches only that contact ID.
func FuzzAuthorize(f *testing.F) {
	ed, hs, v := fuzzKeys(f)
	valid := claims()
	valid.Grants = append(valid.Grants, auth.Grant{Actions: []auth.Action{auth.ActionAll}, Resources: []string{`instance/acme/contact/a\*b*`}})
	for _, key := range []auth.SigningKey{ed, hs} {
		tok, err := auth.Issue(key, valid)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok, []byte(`{"sub":"s","exp":1795000000,"grants":[{"actions":["contact:Stop"],"resources":["instance/acme/contact/*"]}]}`), "instance/acme/contact/*", "c1")
	}
	f.Add("", []byte(`{}`), "*", "a/b*c")
	f.Add("a.b.c", []byte(`{"sub":"s","exp":1e300,"nbf":-1e300,"grants":[{"actions":["contact:*"],"resources":["*"]}]}`), "instance/acme*", "é")
	f.Add("eyJhbGciOiJub25lIn0.e30.", []byte(`{"sub":"s","exp":1795000000,"grants":[{"effect":"Deny"}]}`), `instance/acme/contact/a\*b`, "a*b")
	f.Add(strings.Repeat("x", auth.MaxTokenSize+1), []byte(`{"sub":"s","exp":1795000000,"grants":null}`), `instance/*/contact/*/\\*`, `x/\y`)

	contactResource := func(id string) string { return auth.ContactResource("acme", id) }
	everything := auth.Claims{Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionAll}, Resources: []string{"*"}}}}
	f.Fuzz(func(t *testing.T, token string, claimsJSON []byte, pattern, contactID string) {
		check := func(tok string, action auth.Action, res string) {
			_, err := v.Authorize(tok, action, res)
			if err == nil {
				return
			}
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("refusal %v is not an *auth.Error", err)
			}
			if ae.Code != events.ReasonInvalidSecurityUser && ae.Code != events.ReasonUnauthorized {
				t.Fatalf("refusal with code %q", ae.Code)
			}
			if len(tok) >= 24 && strings.Contains(ae.Reason, tok) {
				t.Fatalf("the reason %q repeats the token", ae.Reason)
			}
		}
		check(token, auth.ActionStop, contactResource(contactID))
		check(token, auth.ActionBulkStop, pattern)
		signed := signHS256(claimsJSON)
		check(signed, auth.ActionStop, contactResource(contactID))
		check(signed, auth.ActionBulkStop, auth.InstanceResource("acme"))

		c := auth.Claims{Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionAll}, Resources: []string{pattern}}}}
		for _, res := range []string{contactResource(contactID), auth.InstanceResource(contactID), pattern} {
			got := c.Allows(auth.ActionStop, res)
			isResource := everything.Allows(auth.ActionStop, res)
			if got && !isResource {
				t.Fatalf("pattern %q allows %q, which is not a resource", pattern, res)
			}
			if !strings.ContainsAny(pattern, `*\`) && got != (pattern == res && isResource) {
				t.Fatalf("literal pattern %q vs resource %q: allowed %v", pattern, res, got)
			}
		}
		if contactID != "" && len(contactResource(contactID)) <= 4096 {
			exact := auth.Claims{Grants: []auth.Grant{{Actions: []auth.Action{auth.ActionStop}, Resources: []string{"instance/acme/contact/" + auth.EscapePattern(contactID)}}}}
			if !exact.Allows(auth.ActionStop, contactResource(contactID)) {
				t.Fatalf("escaped pattern does not match its contact ID %q", contactID)
			}
			if exact.Allows(auth.ActionStop, contactResource(contactID+"x")) || exact.Allows(auth.ActionStop, contactResource("x"+contactID)) {
				t.Fatalf("escaped pattern of %q matches another contact ID", contactID)
			}
		}
	})
}

// signHS256 makes a token of arbitrary claims bytes, validly signed with
// hsSecret.
func signHS256(claimsJSON []byte) string {
	b64 := base64.RawURLEncoding.EncodeToString
	signingInput := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(claimsJSON)
	mac := hmac.New(sha256.New, hsSecret)
	mac.Write([]byte(signingInput))
	return signingInput + "." + b64(mac.Sum(nil))
}
