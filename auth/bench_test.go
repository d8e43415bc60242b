package auth_test

import (
	"testing"

	"github.com/contactstop/contactstop/auth"
)

// BenchmarkAuthorize measures the check every request pays when
// authorization is on: parse, verify the signature, validate the claims,
// match the grants.
func BenchmarkAuthorize(b *testing.B) {
	ed := newEdPair(b)
	hsSign, hsVerify := hsKeys(b)
	v := newVerifier(b, 0, ed.verifying, hsVerify)
	resource := auth.ContactResource("acme", "c-42")
	for _, bc := range []struct {
		name string
		key  auth.SigningKey
	}{{"EdDSA", ed.signing}, {"HS256", hsSign}} {
		token := issue(b, bc.key, claims())
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Authorize(token, auth.ActionStop, resource); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/At", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.AuthorizeAt(token, auth.ActionStop, resource, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
