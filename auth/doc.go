// Package auth verifies and mints the security-user tokens that authorize
// stop requests: JSON Web Tokens signed with Ed25519 (EdDSA) or HMAC-SHA256
// (HS256) that carry grants in the style of an IAM policy.
//
// A [Verifier] holds the configured keys. [Verifier.Authorize] checks a token
// and one (action, resource) pair and returns the token's [Claims], or an
// [*Error] whose Code is events.ReasonInvalidSecurityUser (the token is
// missing, too large, malformed, expired, not yet valid, badly signed, or
// uses an algorithm no configured key has) or events.ReasonUnauthorized (the
// token is valid but none of its grants covers the pair). Error reasons never
// contain the token. [Verifier.AuthorizeAt] judges the token's times at a
// given instant, such as the time JetStream stored the request, so that
// redeliveries and backlogs are judged as the request was when published.
// [Issue] mints tokens; [GenerateKeyPair] makes an Ed25519 key pair for
// development.
//
// # Token
//
// A compact JWS (header.claims.signature, base64url without padding) of at
// most [MaxTokenSize] bytes. The header's "alg" must be "EdDSA" or "HS256"
// and must be the algorithm of at least one configured key: "none" and every
// other algorithm are refused, and a token is only ever checked against keys
// of its own algorithm, so an HS256 token is never verified with an Ed25519
// public key used as an HMAC secret. An optional "kid" header selects the
// configured keys with that ID (see [Key]); a kid that names no key of the
// token's algorithm is ignored and every key of the algorithm is tried. A
// token with a "crit" header is refused.
//
// The claims:
//
//	{
//	  "sub": "crm-sync",                         required, non-empty
//	  "exp": 1795000000,                         required (NumericDate)
//	  "nbf": 1794990000,                         optional; honoured
//	  "iat": 1794990000,                         optional; must not be in the future
//	  "grants": [
//	    {"actions": ["contact:Stop"],     "resources": ["instance/acme-prod/contact/*"]},
//	    {"actions": ["contact:BulkStop"], "resources": ["instance/acme-prod"]}
//	  ]
//	}
//
// exp, nbf and iat are checked with a clock leeway (default 30 s,
// [Config].Leeway). Other registered claims (iss, aud, jti) are ignored. A
// grant object with a field other than "actions" and "resources" (an
// "effect": "Deny", say) makes the token malformed rather than being
// silently read as an allow.
//
// # Actions
//
// A request to stop one contact needs [ActionStop] ("contact:Stop") on
// [ContactResource]; a bulk request or an emergency broadcast needs
// [ActionBulkStop] ("contact:BulkStop") on [InstanceResource]; reading an
// instance through the JSON API or the web console needs [ActionRead]
// ("contact:Read") or [ActionBulkStop] on [InstanceResource]. A grant's
// action is one of those three or "contact:*", which matches them all.
// Actions are compared case-sensitively.
//
// # Resources and grant patterns
//
// A resource is "instance/<instanceId>" or
// "instance/<instanceId>/contact/<contactId>". An instance ID is 1 to 100
// characters of [A-Za-z0-9_-], so it never holds "/" or "*"; a contact ID
// is any non-empty text, "/", "*", "." and "\" included, and is compared as
// the exact string (no case folding, no Unicode normalisation). A resource
// is read from the left: the instance ID ends at the first "/" after
// "instance/", and everything after "/contact/" is the contact ID, whatever
// it holds.
//
// A grant's resource pattern is "*", which matches every resource, or has
// one of two shapes and matches only resources of the same shape:
//
//	instance/<I>                         instance resources (bulk stops)
//	instance/<I>/contact/<C>             contact resources (single stops)
//
// <I> is made of instance-ID characters and "*"; <C> is any text in which
// "*" is a wildcard, "\*" is a literal "*", "\\" is a literal "\", and any
// other use of "\" is invalid. "*" matches any run of characters, including
// none, but only within its own field: in <I> it never reaches past the
// instance ID, and in <C> it spans any characters of the contact ID, "/"
// included, but never the instance part. A "*" inside a requested contact ID
// is an ordinary character. Hence:
//
//	instance/acme                        only instance acme (bulk)
//	instance/acme*                       instances acme, acme-evil, acmex (bulk only)
//	instance/acme/contact/*              every contact of acme, but nothing of acme-evil
//	instance/acme*/contact/*             every contact of acme and of acme-evil: the grant says so
//	instance/acme/contact/vip-*          acme's contacts whose ID starts with "vip-"
//	instance/acme/contact/eu/*           acme's contacts whose ID starts with "eu/" (e.g. "eu/42/x")
//	instance/acme/contact/a\*b           exactly contact "a*b" ([EscapePattern] writes this)
//	instance/*/contact/*                 every contact of every instance
//
// An instance-level grant does not cover the instance's contacts, and a
// contact-level grant does not cover bulk stops. A pattern that does not
// parse matches nothing; [Issue] refuses it. Matching is defined on the
// UTF-8 bytes, which for valid UTF-8 gives the same answers as matching
// characters.
package auth
