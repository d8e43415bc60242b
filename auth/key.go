package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// The algorithms contactstop signs and verifies with, as named in a
// token's "alg" header.
const (
	AlgEdDSA = "EdDSA"
	AlgHS256 = "HS256"
)

const (
	// MinSecretLen is the shortest HS256 secret accepted: 32 bytes, the
	// size of the HMAC-SHA256 output (RFC 7518, section 3.2).
	MinSecretLen = 32
	// maxKeyFileSize bounds what the Load…File functions read.
	maxKeyFileSize = 64 << 10
)

// ErrInvalidKey is wrapped by every error about a key file's content.
var ErrInvalidKey = errors.New("invalid key")

// Key is a verification key: an Ed25519 public key (algorithm EdDSA) or an
// HS256 secret. The zero Key is not usable; make one with [ParsePublicKey],
// [ParseHS256Secret] or their Load…File forms.
type Key struct {
	// ID is matched against a token's "kid" header. The Load…File
	// functions set it to the file's name up to its first dot
	// ("acme.pub.pem" → "acme").
	ID string

	alg    string
	public ed25519.PublicKey
	secret []byte
}

// Algorithm returns AlgEdDSA or AlgHS256, or "" for the zero Key.
func (k Key) Algorithm() string { return k.alg }

// verificationKey returns the key in the form jwt's signing method of its
// algorithm expects, and only that one: an ed25519.PublicKey for EdDSA, a
// []byte secret for HS256.
func (k Key) verificationKey() jwt.VerificationKey {
	if k.alg == AlgEdDSA {
		return k.public
	}
	return k.secret
}

// SigningKey is a key that mints tokens: an Ed25519 private key (EdDSA) or
// an HS256 secret. Make one with [ParsePrivateKey],
// [ParseHS256SigningSecret] or their Load…File forms.
type SigningKey struct {
	// ID, when set, is written as the token's "kid" header.
	ID string

	alg     string
	private ed25519.PrivateKey
	secret  []byte
}

// Algorithm returns AlgEdDSA or AlgHS256, or "" for the zero SigningKey.
func (k SigningKey) Algorithm() string { return k.alg }

// Key files are typed: a file holds an Ed25519 key in PEM, or an HS256
// secret, and which one is said by how it is given (serve --auth-key or
// --auth-hs256-secret; token issue --key or --hs256-secret), never guessed
// from its content. Content that could be read either way — a JWK, the raw
// 32 bytes of a key, or their hex or base64 — is refused as a secret: taken
// as an HMAC secret, a public key would let anyone who holds it sign
// tokens.

// ParsePublicKey reads a verification key from the content of an
// --auth-key file: one PEM "PUBLIC KEY" block holding an Ed25519 public key
// (PKIX, as written by `openssl pkey -pubout` or GenerateKeyPair), and
// nothing else. Anything else is refused, saying what it looks like: a
// private key (verification needs only the public half), another key type,
// a secret. Errors wrap ErrInvalidKey.
func ParsePublicKey(data []byte) (Key, error) {
	block, err := pemBlock(data)
	if err != nil {
		return Key{}, err
	}
	if block == nil {
		return Key{}, fmt.Errorf("%w: %s; an Ed25519 public key is given as a PEM PUBLIC KEY block (an HS256 secret goes to --auth-hs256-secret)",
			ErrInvalidKey, describeNonPEM(data))
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return Key{}, fmt.Errorf("%w: PUBLIC KEY block: %w", ErrInvalidKey, err)
		}
		edPub, ok := pub.(ed25519.PublicKey)
		if !ok {
			return Key{}, fmt.Errorf("%w: %s public key; only Ed25519 is supported", ErrInvalidKey, keyKind(pub))
		}
		return Key{alg: AlgEdDSA, public: edPub}, nil
	case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
		return Key{}, fmt.Errorf("%w: a private key (%s); verification takes the public key, which must be the only thing the verifying side holds", ErrInvalidKey, block.Type)
	default:
		return Key{}, fmt.Errorf("%w: PEM block %q; expected PUBLIC KEY (Ed25519)", ErrInvalidKey, block.Type)
	}
}

// ParseHS256Secret reads a verification key from the content of an
// --auth-hs256-secret file (see ParseHS256SigningSecret for the rules).
// Errors wrap ErrInvalidKey.
func ParseHS256Secret(data []byte) (Key, error) {
	secret, err := parseSecret(data)
	if err != nil {
		return Key{}, err
	}
	return Key{alg: AlgHS256, secret: secret}, nil
}

// ParsePrivateKey reads a signing key from the content of a --key file: one
// PEM "PRIVATE KEY" block holding an Ed25519 private key (PKCS #8,
// unencrypted, as written by `openssl genpkey -algorithm ed25519` or
// GenerateKeyPair), and nothing else. Errors wrap ErrInvalidKey.
func ParsePrivateKey(data []byte) (SigningKey, error) {
	block, err := pemBlock(data)
	if err != nil {
		return SigningKey{}, err
	}
	if block == nil {
		return SigningKey{}, fmt.Errorf("%w: %s; an Ed25519 private key is given as a PEM PRIVATE KEY block (an HS256 secret goes to --hs256-secret)",
			ErrInvalidKey, describeNonPEM(data))
	}
	switch block.Type {
	case "PRIVATE KEY":
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return SigningKey{}, fmt.Errorf("%w: PRIVATE KEY block: %w", ErrInvalidKey, err)
		}
		edPriv, ok := priv.(ed25519.PrivateKey)
		if !ok {
			return SigningKey{}, fmt.Errorf("%w: %s private key; only Ed25519 is supported", ErrInvalidKey, keyKind(priv))
		}
		return SigningKey{alg: AlgEdDSA, private: edPriv}, nil
	case "PUBLIC KEY":
		return SigningKey{}, fmt.Errorf("%w: a public key cannot sign; give the private key", ErrInvalidKey)
	default:
		return SigningKey{}, fmt.Errorf("%w: PEM block %q; expected PRIVATE KEY (Ed25519, PKCS #8, unencrypted)", ErrInvalidKey, block.Type)
	}
}

// ParseHS256SigningSecret reads an HS256 secret from the content of a
// secret file: the file's bytes, less one trailing newline ("\n" or
// "\r\n"), at least MinSecretLen bytes — and not something that could be
// a key: PEM, a JWK or any JSON, an OpenSSH public key, base64 of an
// Ed25519 PKIX key, exactly 32 bytes (a raw Ed25519 key), or hex or base64
// text of exactly 32 bytes. `openssl rand -base64 48` makes a good one.
// Errors wrap ErrInvalidKey and say why.
func ParseHS256SigningSecret(data []byte) (SigningKey, error) {
	secret, err := parseSecret(data)
	if err != nil {
		return SigningKey{}, err
	}
	return SigningKey{alg: AlgHS256, secret: secret}, nil
}

// LoadPublicKeyFile reads an --auth-key file (ParsePublicKey) and sets the
// key's ID from the file name ("acme.pub.pem" → "acme"). Errors name the
// file.
func LoadPublicKeyFile(path string) (Key, error) {
	return loadKey(path, ParsePublicKey)
}

// LoadHS256SecretFile reads an --auth-hs256-secret file (ParseHS256Secret)
// and sets the key's ID from the file name. Errors name the file.
func LoadHS256SecretFile(path string) (Key, error) {
	return loadKey(path, ParseHS256Secret)
}

func loadKey(path string, parse func([]byte) (Key, error)) (Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return Key{}, err
	}
	k, err := parse(data)
	if err != nil {
		return Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	k.ID = keyID(path)
	return k, nil
}

// LoadPrivateKeyFile reads a signing key file (ParsePrivateKey). The key's
// ID is left empty: minted tokens carry a kid only when the caller sets
// one. Errors name the file.
func LoadPrivateKeyFile(path string) (SigningKey, error) {
	return loadSigningKey(path, ParsePrivateKey)
}

// LoadHS256SigningSecretFile reads a secret file
// (ParseHS256SigningSecret). Errors name the file.
func LoadHS256SigningSecretFile(path string) (SigningKey, error) {
	return loadSigningKey(path, ParseHS256SigningSecret)
}

func loadSigningKey(path string, parse func([]byte) (SigningKey, error)) (SigningKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return SigningKey{}, err
	}
	k, err := parse(data)
	if err != nil {
		return SigningKey{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// GenerateKeyPair makes a new Ed25519 key pair and returns the private key
// as a PEM "PRIVATE KEY" block (PKCS #8, unencrypted: keep it secret) and
// the public key as a PEM "PUBLIC KEY" block (PKIX), the forms
// LoadPrivateKeyFile and LoadPublicKeyFile read.
func GenerateKeyPair() (privatePEM, publicPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file %s: %w: larger than %d bytes", path, ErrInvalidKey, maxKeyFileSize)
	}
	return data, nil
}

// keyID is a key file's name up to its first dot.
func keyID(path string) string {
	id, _, _ := strings.Cut(filepath.Base(path), ".")
	return id
}

// pemBlock returns the one PEM block of data, or nil when data is not PEM
// at all. Data that starts like PEM but does not parse, holds more than one
// block, or an encrypted block, is an error.
func pemBlock(data []byte) (*pem.Block, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, nil
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, fmt.Errorf("%w: malformed PEM", ErrInvalidKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: more than one PEM block, or data after the block", ErrInvalidKey)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM block with headers (encrypted?); give an unencrypted key", ErrInvalidKey)
	}
	return block, nil
}

// ed25519PKIXBase64 starts the base64 (standard or URL alphabet) of every
// Ed25519 public key in PKIX DER form.
const ed25519PKIXBase64 = "MCowBQYDK2VwAyEA"

// parseSecret reads an HS256 secret (see ParseHS256SigningSecret).
func parseSecret(data []byte) ([]byte, error) {
	secret := bytes.TrimSuffix(data, []byte("\n"))
	if len(secret) < len(data) {
		secret = bytes.TrimSuffix(secret, []byte("\r"))
	}
	if why := keyLike(secret); why != "" {
		return nil, fmt.Errorf("%w: %s: it could be a key, and a key taken as an HMAC secret lets whoever holds it sign tokens; "+
			"make a secret with `openssl rand -base64 48`", ErrInvalidKey, why)
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("%w: an HS256 secret of %d bytes; at least %d are required", ErrInvalidKey, len(secret), MinSecretLen)
	}
	return bytes.Clone(secret), nil
}

// keyLike says what key data looks like, or "" when it cannot be one.
func keyLike(data []byte) string {
	text := bytes.TrimSpace(data)
	switch {
	case bytes.Contains(data, []byte("-----BEGIN")):
		return "it holds a PEM block"
	case bytes.HasPrefix(text, []byte("{")):
		return "it is JSON (a JWK?)"
	case bytes.HasPrefix(text, []byte("ssh-ed25519 ")), bytes.HasPrefix(text, []byte("ssh-")):
		return "it is an OpenSSH key"
	case bytes.HasPrefix(text, []byte(ed25519PKIXBase64)):
		return "it is an Ed25519 public key in base64 (PKIX)"
	case len(data) == ed25519.PublicKeySize:
		return "it is exactly 32 bytes, the size of a raw Ed25519 key"
	}
	if b, err := hex.DecodeString(string(text)); err == nil && (len(b) == ed25519.PublicKeySize || len(b) == ed25519.PrivateKeySize) {
		return fmt.Sprintf("it is hex of %d bytes, the size of an Ed25519 key", len(b))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(string(text)); err == nil && (len(b) == ed25519.PublicKeySize || len(b) == ed25519.PrivateKeySize) {
			return fmt.Sprintf("it is base64 of %d bytes, the size of an Ed25519 key", len(b))
		}
	}
	return ""
}

// describeNonPEM says what a key file that is not PEM looks like.
func describeNonPEM(data []byte) string {
	if why := keyLike(data); why != "" {
		return "not PEM: " + why
	}
	return "not PEM"
}

// keyKind names a key's type for an error message.
func keyKind(k any) string {
	name := fmt.Sprintf("%T", k)
	name = strings.TrimPrefix(name, "*")
	name, _, _ = strings.Cut(name, ".")
	return strings.ToUpper(name)
}
