package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// PublicKey is a verification key of an identity provider: ES256 (ECDSA
// P-256) or EdDSA (Ed25519). KeyID, when set, must match a token's "kid".
type PublicKey struct {
	KeyID string
	Key   crypto.PublicKey
}

// alg returns the one JWT algorithm the key verifies.
func (k PublicKey) alg() (string, error) {
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key %q: curve %s, want P-256 (ES256)", k.KeyID, key.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	default:
		return "", fmt.Errorf("key %q: %T is not an ES256 or EdDSA public key", k.KeyID, k.Key)
	}
}

// LoadPublicKeys reads verification keys from a file: a JWKS document
// ({"keys": [...]}, as identity providers publish) or PEM public keys
// ("PUBLIC KEY" blocks). Private keys and other key types are refused.
func LoadPublicKeys(path string) ([]PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: public keys: %w", err)
	}
	var keys []PublicKey
	if json.Valid(b) {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("auth: JWKS %s: %w", path, err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				return nil, fmt.Errorf("auth: JWKS %s: key %q is private; give public keys only", path, k.KeyID)
			}
			if k.Use != "" && k.Use != "sig" {
				continue
			}
			keys = append(keys, PublicKey{KeyID: k.KeyID, Key: k.Key})
		}
	} else {
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "PUBLIC KEY" {
				return nil, fmt.Errorf("auth: %s: PEM block %q; give PUBLIC KEY blocks only", path, block.Type)
			}
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("auth: %s: %w", path, err)
			}
			keys = append(keys, PublicKey{Key: k})
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: %s holds no public signing key (JWKS or PEM)", path)
	}
	for _, k := range keys {
		if _, err := k.alg(); err != nil {
			return nil, fmt.Errorf("auth: %s: %w", path, err)
		}
	}
	return keys, nil
}

// verificationKey picks the keys a token may be verified with: the HS256
// secret for HS256, the public keys of the token's algorithm (and kid, if
// it names one) otherwise. The parser allows only the configured
// algorithms, so a token can never make a public key serve as an HMAC
// secret.
func (t *Tokens) verificationKey(tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		if len(t.secret) == 0 {
			return nil, errors.New("HS256 is not accepted")
		}
		return t.secret, nil
	}
	kid, _ := tok.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range t.public {
		if a, _ := k.alg(); a == alg && (kid == "" || k.KeyID == "" || k.KeyID == kid) {
			set.Keys = append(set.Keys, k.Key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with id %q", alg, kid)
	}
	return set, nil
}
