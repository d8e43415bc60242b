package auth_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/contactstop/contactstop/auth"
)

// Mint a token with an HS256 secret and check two requests with it.
func Example() {
	secret := []byte("an example secret of at least 32 bytes")
	signing, err := auth.ParseHS256SigningSecret(secret)
	if err != nil {
		panic(err)
	}
	token, err := auth.Issue(signing, auth.Claims{
		Subject:   "crm-sync",
		ExpiresAt: time.Now().Add(time.Hour),
		Grants: []auth.Grant{{
			Actions:   []auth.Action{auth.ActionStop},
			Resources: []string{"instance/acme-prod/contact/*"},
		}},
	})
	if err != nil {
		panic(err)
	}

	key, err := auth.ParseHS256Secret(secret)
	if err != nil {
		panic(err)
	}
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{key}})
	if err != nil {
		panic(err)
	}
	c, err := v.Authorize(token, auth.ActionStop, auth.ContactResource("acme-prod", "call/42"))
	fmt.Println(c.Subject, err)

	_, err = v.Authorize(token, auth.ActionStop, auth.ContactResource("acme-evil", "call/42"))
	var ae *auth.Error
	if errors.As(err, &ae) {
		fmt.Println(ae.Code, ae.Reason)
	}
	// Output:
	// crm-sync <nil>
	// UNAUTHORIZED "crm-sync" is not granted contact:Stop on "instance/acme-evil/contact/call/42"
}
