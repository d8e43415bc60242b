package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
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
	// maxKeyFileSize bounds what LoadKeyFile reads.
	maxKeyFileSize = 64 << 10
)

// ErrInvalidKey is wrapped by every error about a key file's content.
var ErrInvalidKey = errors.New("invalid key")

// Key is a verification key: an Ed25519 public key (algorithm EdDSA) or an
// HS256 secret. The zero Key is not usable; make one with [ParseKey] or
// [LoadKeyFile].
type Key struct {
	// ID is matched against a token's "kid" header. LoadKeyFile sets it to
	// the file's name up to its first dot ("acme.pub.pem" → "acme").
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
// an HS256 secret. Make one with [ParseSigningKey] or [LoadSigningKeyFile].
type SigningKey struct {
	// ID, when set, is written as the token's "kid" header.
	ID string

	alg     string
	private ed25519.PrivateKey
	secret  []byte
}

// Algorithm returns AlgEdDSA or AlgHS256, or "" for the zero SigningKey.
func (k SigningKey) Algorithm() string { return k.alg }

// ParseKey reads a verification key from the content of a key file: a PEM
// "PUBLIC KEY" block holding an Ed25519 public key (PKIX, as written by
// `openssl pkey -pubout` or GenerateKeyPair), or else an HS256 secret (see
// ParseSigningKey for the rules on secrets). A private key is refused: the
// verifier needs only the public half. Errors wrap ErrInvalidKey.
func ParseKey(data []byte) (Key, error) {
	block, err := pemBlock(data)
	if err != nil {
		return Key{}, err
	}
	if block == nil {
		secret, err := parseSecret(data)
		if err != nil {
			return Key{}, err
		}
		return Key{alg: AlgHS256, secret: secret}, nil
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

// ParseSigningKey reads a signing key from the content of a key file: a PEM
// "PRIVATE KEY" block holding an Ed25519 private key (PKCS #8, as written by
// `openssl genpkey -algorithm ed25519` or GenerateKeyPair), or else an HS256
// secret: the file's bytes, less one trailing newline ("\n" or "\r\n"), at
// least MinSecretLen bytes. Content that looks like a public key (PEM, an
// OpenSSH "ssh-ed25519" line, or base64 of an Ed25519 PKIX key) is never
// taken as a secret, so a public key given by mistake cannot become an HMAC
// secret that anyone could sign with. Errors wrap ErrInvalidKey.
func ParseSigningKey(data []byte) (SigningKey, error) {
	block, err := pemBlock(data)
	if err != nil {
		return SigningKey{}, err
	}
	if block == nil {
		secret, err := parseSecret(data)
		if err != nil {
			return SigningKey{}, err
		}
		return SigningKey{alg: AlgHS256, secret: secret}, nil
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

// LoadKeyFile reads a verification key file (see ParseKey) and sets the
// key's ID from the file name. Errors name the file.
func LoadKeyFile(path string) (Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return Key{}, err
	}
	k, err := ParseKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	k.ID = keyID(path)
	return k, nil
}

// LoadSigningKeyFile reads a signing key file (see ParseSigningKey). The
// key's ID is left empty: minted tokens carry a kid only when the caller
// sets one. Errors name the file.
func LoadSigningKeyFile(path string) (SigningKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return SigningKey{}, err
	}
	k, err := ParseSigningKey(data)
	if err != nil {
		return SigningKey{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// GenerateKeyPair makes a new Ed25519 key pair and returns the private key
// as a PEM "PRIVATE KEY" block (PKCS #8, unencrypted: keep it secret) and
// the public key as a PEM "PUBLIC KEY" block (PKIX), the forms
// LoadSigningKeyFile and LoadKeyFile read.
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

// parseSecret reads an HS256 secret (see ParseSigningKey).
func parseSecret(data []byte) ([]byte, error) {
	secret := bytes.TrimSuffix(data, []byte("\n"))
	if len(secret) < len(data) {
		secret = bytes.TrimSuffix(secret, []byte("\r"))
	}
	text := bytes.TrimSpace(secret)
	switch {
	case bytes.Contains(secret, []byte("-----BEGIN")):
		return nil, fmt.Errorf("%w: holds a PEM block after other text; a key file holds one key and nothing else", ErrInvalidKey)
	case bytes.HasPrefix(text, []byte("ssh-ed25519 ")):
		return nil, fmt.Errorf("%w: an OpenSSH public key; give the Ed25519 public key in PEM (PKIX) form", ErrInvalidKey)
	case bytes.HasPrefix(text, []byte(ed25519PKIXBase64)):
		return nil, fmt.Errorf("%w: looks like an Ed25519 public key in base64; give it as a PEM PUBLIC KEY block", ErrInvalidKey)
	case len(secret) < MinSecretLen:
		return nil, fmt.Errorf("%w: an HS256 secret of %d bytes; at least %d are required", ErrInvalidKey, len(secret), MinSecretLen)
	}
	return bytes.Clone(secret), nil
}

// keyKind names a key's type for an error message.
func keyKind(k any) string {
	name := fmt.Sprintf("%T", k)
	name = strings.TrimPrefix(name, "*")
	name, _, _ = strings.Cut(name, ".")
	return strings.ToUpper(name)
}
