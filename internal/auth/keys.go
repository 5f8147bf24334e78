package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SigningKey is the Ed25519 key that signs access tokens, with the key id
// ("kid") that names it in token headers.
type SigningKey struct {
	ID      string
	private ed25519.PrivateKey
	public  ed25519.PublicKey
}

// LoadOrCreateSigningKey reads the PEM (PKCS #8) Ed25519 key at path, or, if
// the file does not exist, generates one and writes it with mode 0600. A file
// readable by group or others is refused.
func LoadOrCreateSigningKey(path string) (*SigningKey, error) {
	// #nosec G304 -- the key file the operator configured
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createSigningKey(path)
	case err != nil:
		return nil, fmt.Errorf("auth: read signing key: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth: stat signing key: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("auth: signing key %s is readable by others (mode %v); run chmod 600 on it", path, info.Mode().Perm())
	}
	return parseSigningKey(data)
}

// ParseSigningKey reads a PEM (PKCS #8) Ed25519 key given as text, such as
// one handed to every instance by a secret store.
func ParseSigningKey(pemData []byte) (*SigningKey, error) { return parseSigningKey(pemData) }

func createSigningKey(path string) (*SigningKey, error) {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("auth: encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("auth: create key directory: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// O_EXCL: two servers starting on one data dir must not overwrite each
	// other's key; the loser reads the winner's.
	// #nosec G304 -- the key file the operator configured
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSigningKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: write signing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close() // the write's error is the one to report
		return nil, fmt.Errorf("auth: write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("auth: write signing key: %w", err)
	}
	return NewSigningKey(private), nil
}

func parseSigningKey(data []byte) (*SigningKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("auth: signing key file is not a PEM \"PRIVATE KEY\"")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: parse signing key: %w", err)
	}
	private, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: signing key is %T, want an Ed25519 key", key)
	}
	return NewSigningKey(private), nil
}

// NewSigningKey wraps an Ed25519 private key; its id is derived from the
// public key, so the same key always has the same id.
func NewSigningKey(private ed25519.PrivateKey) *SigningKey {
	public := private.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(public)
	return &SigningKey{
		ID:      base64.RawURLEncoding.EncodeToString(sum[:12]),
		private: private,
		public:  public,
	}
}
