package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/auth"
)

// newTokenCmd is `contactstop token`: minting security-user tokens and
// making development keys.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint security-user tokens and make signing keys (for development and tests)",
		Example: `  contactstop token keygen --out ./keys
  contactstop token issue --key ./keys/ed25519.pem --sub ops --allow 'contact:*:instance/acme/*'`,
		Long: `Mint the securityUser tokens that serve checks when started with --auth-key.

A token is a JWT signed with an Ed25519 private key (EdDSA) or an HS256 secret,
naming its holder (sub), its expiry (exp) and its grants: actions on resources,
in the style of an IAM policy. See docs/security.md for the grant rules.`,
	}
	cmd.AddCommand(newTokenIssueCmd(), newTokenKeygenCmd())
	return cmd
}

type tokenIssueOptions struct {
	key    string
	secret string
	sub    string
	allow  []string
	ttl    time.Duration
	kid    string
	asJSON bool
}

func newTokenIssueCmd() *cobra.Command {
	var o tokenIssueOptions
	cmd := &cobra.Command{
		Use:   "issue --key FILE --sub NAME --allow ACTION:RESOURCE... [--ttl D] [--kid K]",
		Short: "Print a new signed token on stdout",
		Long: `Print a new signed token on stdout.

--key is an Ed25519 private key in PEM (PKCS #8; see token keygen) or a file
holding an HS256 secret of at least 32 bytes (one trailing newline is not part
of it). --allow ACTION:RESOURCE grants an action on a resource pattern and can
be repeated; the action is everything up to the second colon, the resource
pattern everything after it (resources may contain colons):

  --allow contact:Stop:instance/acme-prod/contact/*     stop any contact of acme-prod
  --allow contact:BulkStop:instance/acme-prod          bulk-clear acme-prod (and read it)
  --allow contact:Read:instance/acme-prod              read acme-prod in the JSON API and web console
  --allow 'contact:*:instance/acme-*/contact/*'        every action, every acme-… instance

Actions: contact:Stop, contact:BulkStop, contact:Read, contact:* (all). Quote patterns with
* so that the shell does not expand them.`,
		Example: `  contactstop token keygen --out ./keys
  TOKEN=$(contactstop token issue --key ./keys/ed25519.pem --sub dev \
    --allow 'contact:Stop:instance/acme-prod/contact/*' --ttl 1h)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTokenIssue(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "signing key: a PEM file of an Ed25519 private key (this or --hs256-secret)")
	f.StringVar(&o.secret, "hs256-secret", "", "signing key: a file holding an HS256 secret (this or --key)")
	f.StringVar(&o.sub, "sub", "", "subject: who holds the token (required)")
	f.StringArrayVar(&o.allow, "allow", nil, "ACTION:RESOURCE to grant, repeatable (at least one)")
	f.DurationVar(&o.ttl, "ttl", time.Hour, "how long the token is valid")
	f.StringVar(&o.kid, "kid", "", "key ID written as the token's kid header (the verifying key file's name up to its first dot)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON with the token and its claims")
	return cmd
}

func runTokenIssue(cmd *cobra.Command, o tokenIssueOptions) error {
	var errs []error
	if (o.key == "") == (o.secret == "") {
		errs = append(errs, errors.New("give one signing key: --key (Ed25519 private key, PEM) or --hs256-secret"))
	}
	if o.sub == "" {
		errs = append(errs, errors.New("--sub is required"))
	}
	if len(o.allow) == 0 {
		errs = append(errs, errors.New("--allow is required: at least one ACTION:RESOURCE"))
	}
	if o.ttl <= 0 {
		errs = append(errs, fmt.Errorf("--ttl must be positive, got %s", o.ttl))
	}
	grants, err := parseAllows(o.allow)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var key auth.SigningKey
	var err2 error
	if o.key != "" {
		if key, err2 = auth.LoadPrivateKeyFile(o.key); err2 != nil {
			return fmt.Errorf("--key: %w", err2)
		}
	} else if key, err2 = auth.LoadHS256SigningSecretFile(o.secret); err2 != nil {
		return fmt.Errorf("--hs256-secret: %w", err2)
	}
	key.ID = o.kid
	now := time.Now().UTC().Truncate(time.Second)
	claims := auth.Claims{Subject: o.sub, IssuedAt: now, ExpiresAt: now.Add(o.ttl), Grants: grants}
	token, err := auth.Issue(key, claims)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.asJSON {
		return printJSON(out, struct {
			Token     string       `json:"token"`
			Subject   string       `json:"sub"`
			Algorithm string       `json:"alg"`
			KeyID     string       `json:"kid,omitempty"`
			IssuedAt  time.Time    `json:"issuedAt"`
			ExpiresAt time.Time    `json:"expiresAt"`
			Grants    []auth.Grant `json:"grants"`
		}{token, o.sub, key.Algorithm(), o.kid, claims.IssuedAt, claims.ExpiresAt, grants})
	}
	_, err = fmt.Fprintln(out, token)
	return err
}

// parseAllows turns --allow values into grants, one per action in the
// order first seen, each with its resources in the order given.
func parseAllows(values []string) ([]auth.Grant, error) {
	var (
		grants []auth.Grant
		errs   []error
		index  = map[auth.Action]int{}
	)
	for _, v := range values {
		action, resource, err := parseAllow(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		i, ok := index[action]
		if !ok {
			i = len(grants)
			index[action] = i
			grants = append(grants, auth.Grant{Actions: []auth.Action{action}})
		}
		grants[i].Resources = append(grants[i].Resources, resource)
	}
	for _, g := range grants {
		if err := g.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--allow: %w", err))
		}
	}
	return grants, errors.Join(errs...)
}

// parseAllow splits ACTION:RESOURCE at the second colon: actions hold one
// colon ("contact:Stop"), resources may hold any number.
func parseAllow(v string) (auth.Action, string, error) {
	first := strings.IndexByte(v, ':')
	if first >= 0 {
		if second := strings.IndexByte(v[first+1:], ':'); second >= 0 {
			split := first + 1 + second
			if resource := v[split+1:]; resource != "" {
				return auth.Action(v[:split]), resource, nil
			}
		}
	}
	return "", "", fmt.Errorf("--allow %q: want ACTION:RESOURCE, e.g. contact:Stop:instance/acme/contact/*", v)
}

type tokenKeygenOptions struct {
	out    string
	name   string
	asJSON bool
}

func newTokenKeygenCmd() *cobra.Command {
	var o tokenKeygenOptions
	cmd := &cobra.Command{
		Use:   "keygen --out DIR [--name NAME]",
		Short: "Write a new Ed25519 key pair: NAME.pem (private) and NAME.pub.pem (public)",
		Example: `  contactstop token keygen --out ./keys
  contactstop token keygen --out ./keys --name ops --json`,
		Long: `Write a new Ed25519 key pair into --out (created if missing, mode 0700):
NAME.pem, the private key that token issue signs with (mode 0600: keep it
secret), and NAME.pub.pem, the public key to give to serve --auth-key. Existing
files are never overwritten.

For an HS256 secret instead, any 32 or more random bytes in a file will do, e.g.
  head -c 48 /dev/urandom | base64 > hs256.secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTokenKeygen(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "directory to write the key files into (required)")
	f.StringVar(&o.name, "name", "ed25519", "base name of the key files, and so the key ID that serve gives the public key")
	f.BoolVar(&o.asJSON, "json", false, "print the paths as JSON")
	return cmd
}

func runTokenKeygen(cmd *cobra.Command, o tokenKeygenOptions) error {
	if o.out == "" {
		return errors.New("--out is required")
	}
	if o.name == "" || o.name != filepath.Base(o.name) || strings.Contains(o.name, ".") {
		return fmt.Errorf("--name %q must be a plain file name without dots", o.name)
	}
	privPEM, pubPEM, err := auth.GenerateKeyPair()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	privPath := filepath.Join(o.out, o.name+".pem")
	pubPath := filepath.Join(o.out, o.name+".pub.pem")
	if _, err := os.Lstat(pubPath); err == nil {
		return fmt.Errorf("%s exists; not overwriting it", pubPath)
	}
	if err := writeNewFile(privPath, privPEM, 0o600); err != nil {
		return err
	}
	if err := writeNewFile(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(privPath)
		return err
	}
	out := cmd.OutOrStdout()
	if o.asJSON {
		return printJSON(out, map[string]string{"private": privPath, "public": pubPath, "kid": o.name})
	}
	_, err = fmt.Fprintf(out, "private key: %s  (signs tokens: token issue --key; keep it secret)\npublic key:  %s  (verifies them: serve --auth-key; key ID %q)\n", privPath, pubPath, o.name)
	return err
}

// writeNewFile creates path with data, failing if it exists.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; not overwriting it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close() // the write error is the one to report
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
