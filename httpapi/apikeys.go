package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/contactstop/contactstop/auth"
)

// MinAPISecret is the shortest secret access key an API keys file may
// hold, in bytes.
const MinAPISecret = 16

// maxAPIKeyID bounds an access key ID, as AWS's (16 to 128 characters).
const maxAPIKeyID = 128

// APIKey is one access key of the StopContact API: the access key ID that
// signs requests, its secret, and the grants of the requests it signs. Its
// String and Format never show the secret.
type APIKey struct {
	// AccessKeyID names the key in a signature's credential scope.
	AccessKeyID string
	// Grants are what requests signed with the key may do, as in a
	// security-user token (auth.Grant).
	Grants []auth.Grant

	secret string
}

// String returns "apikey:<access key id>", the key's subject in logs and
// minted tokens.
func (k *APIKey) String() string { return "apikey:" + k.AccessKeyID }

// Format writes k as String does, for every verb, so that no formatting
// of a key shows its secret.
func (k *APIKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// Allows reports whether the key's grants permit action on resource.
func (k *APIKey) Allows(action auth.Action, resource string) bool {
	c := auth.Claims{Grants: k.Grants}
	return c.Allows(action, resource)
}

// APIKeys are the access keys of an API keys file, by access key ID.
type APIKeys struct {
	byID map[string]*APIKey
}

// apiKeysFile is the file's form. Keys are YAML (or JSON, which YAML
// reads too); unknown fields are refused.
type apiKeysFile struct {
	Keys []struct {
		AccessKeyID     string       `yaml:"accessKeyId"`
		SecretAccessKey string       `yaml:"secretAccessKey"`
		Grants          []auth.Grant `yaml:"grants"`
	} `yaml:"keys"`
}

// LoadAPIKeys reads an API keys file (see ParseAPIKeys). Errors name the
// file and the key at fault, never a secret.
func LoadAPIKeys(path string) (*APIKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseAPIKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParseAPIKeys reads API keys from YAML (or JSON):
//
//	keys:
//	  - accessKeyId: AKIDACMEPROD0000001
//	    secretAccessKey: "at least 16 characters, e.g. openssl rand -base64 30"
//	    grants:
//	      - actions: ["contact:Stop"]
//	        resources: ["instance/acme-prod/contact/*"]
//
// An access key ID is 1 to 128 characters of [A-Za-z0-9_-], unique in the
// file; a secret is at least 16 visible ASCII characters; every key has at
// least one grant and every grant is valid (auth.Grant.Validate). Unknown
// fields are refused, so that a misspelt or unsupported setting (say a
// "deny") is not silently ignored. At least one key is required.
func ParseAPIKeys(data []byte) (*APIKeys, error) {
	var f apiKeysFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no keys: the file is empty")
		}
		// yaml's errors quote lines of the file, which may hold secrets.
		return nil, errors.New("not a valid API keys file (YAML or JSON with keys: [{accessKeyId, secretAccessKey, grants}])" + yamlProblems(err))
	}
	if len(f.Keys) == 0 {
		return nil, errors.New("no keys: the file has no keys: entries")
	}
	ks := &APIKeys{byID: make(map[string]*APIKey, len(f.Keys))}
	var errs []error
	for i, k := range f.Keys {
		name := fmt.Sprintf("key %d (%q)", i+1, k.AccessKeyID)
		if err := checkKeyID(k.AccessKeyID); err != nil {
			errs = append(errs, fmt.Errorf("key %d: accessKeyId %w", i+1, err))
			continue
		}
		if ks.byID[k.AccessKeyID] != nil {
			errs = append(errs, fmt.Errorf("%s: the access key ID is given twice", name))
		}
		if err := checkSecret(k.SecretAccessKey); err != nil {
			errs = append(errs, fmt.Errorf("%s: secretAccessKey %w", name, err))
		}
		if len(k.Grants) == 0 {
			errs = append(errs, fmt.Errorf("%s: no grants (give at least one, e.g. actions [contact:Stop] on instance/<id>/contact/*)", name))
		}
		for j, g := range k.Grants {
			if err := g.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: grant %d: %w", name, j+1, err))
			}
		}
		ks.byID[k.AccessKeyID] = &APIKey{AccessKeyID: k.AccessKeyID, Grants: k.Grants, secret: k.SecretAccessKey}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

// Len is the number of keys.
func (ks *APIKeys) Len() int { return len(ks.byID) }

// Key returns the key with the access key ID, or nil.
func (ks *APIKeys) Key(accessKeyID string) *APIKey { return ks.byID[accessKeyID] }

// secret is the secret of an access key ID, for the signature verifier.
func (ks *APIKeys) secret(accessKeyID string) (string, bool) {
	k := ks.byID[accessKeyID]
	if k == nil {
		return "", false
	}
	return k.secret, true
}

func checkKeyID(id string) error {
	if id == "" || len(id) > maxAPIKeyID {
		return fmt.Errorf("must be 1 to %d characters, got %d", maxAPIKeyID, len(id))
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return errors.New("must be made of A-Z, a-z, 0-9, _ and -")
		}
	}
	return nil
}

func checkSecret(s string) error {
	if len(s) < MinAPISecret {
		return fmt.Errorf("is %d characters; at least %d are required (for example: openssl rand -base64 30)", len(s), MinAPISecret)
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' {
			return errors.New("must be visible ASCII characters only (no spaces or control characters)")
		}
	}
	return nil
}

// yamlProblems describes a yaml error without quoting the file (whose
// values may be secrets): unknown fields by name, other problems by line.
func yamlProblems(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return ""
	}
	var parts []string
	for _, e := range te.Errors {
		line, rest, _ := strings.Cut(e, ": ")
		if strings.Contains(rest, "not found in type") {
			field, _, _ := strings.Cut(rest, " not found")
			parts = append(parts, line+": unknown "+field)
			continue
		}
		parts = append(parts, line+": a value of the wrong type")
	}
	return ": " + strings.Join(parts, "; ")
}
