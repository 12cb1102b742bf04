package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/couponmesh/couponmesh"
)

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// An identity provider's ES256 (PEM) and EdDSA (JWKS, with key ids) tokens
// verify; every way of abusing the keys is refused.
func TestPublicKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	pemKeys, err := LoadPublicKeys(writeFile(t, "idp.pem", pemPublic(t, &ec.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: edPub, KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"}}})
	jwksKeys, err := LoadPublicKeys(writeFile(t, "jwks.json", jwks))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := New(Config{PublicKeys: append(pemKeys, jwksKeys...), Issuer: "iss", Audience: "aud"})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"iss": "iss", "aud": "aud", "sub": "alice", "role": "shopper", "exp": time.Now().Add(time.Hour).Unix()}
	withKid := func(m jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, ok := range []struct{ name, token string }{
		{"ES256 from PEM", sign(t, jwt.SigningMethodES256, ec, claims)},
		{"EdDSA from JWKS with kid", withKid(jwt.SigningMethodEdDSA, "ed-1", edPriv)},
		{"EdDSA without kid", sign(t, jwt.SigningMethodEdDSA, edPriv, claims)},
	} {
		if p, _, err := tk.Verify(ok.token); err != nil || p.User != "alice" {
			t.Errorf("%s: %v", ok.name, err)
		}
	}
	// The classic confusion: an HS256 token whose HMAC key is the public
	// key's bytes.
	pubPEM := pemPublic(t, &ec.PublicKey)
	for _, bad := range []struct{ name, token string }{
		{"HS256 signed with the public key (PEM)", sign(t, jwt.SigningMethodHS256, pubPEM, claims)},
		{"HS256 signed with the public key (raw Ed25519)", sign(t, jwt.SigningMethodHS256, []byte(edPub), claims)},
		{"ES256 by another key", sign(t, jwt.SigningMethodES256, otherEC, claims)},
		{"EdDSA with an unknown kid", withKid(jwt.SigningMethodEdDSA, "ed-2", edPriv)},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims)},
	} {
		if _, _, err := tk.Verify(bad.token); err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	if _, _, err := tk.Issue(couponmesh.Principal{User: "alice", Role: couponmesh.RoleShopper}); err == nil {
		t.Error("Issue without a secret: want an error")
	}

	// With a secret too (dev login beside an identity provider), the
	// confusion still fails: HS256 verifies with the secret only.
	both, err := New(Config{Secret: testSecret, PublicKeys: pemKeys, Issuer: "iss", Audience: "aud"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := both.Verify(sign(t, jwt.SigningMethodHS256, pubPEM, claims)); err == nil {
		t.Error("HS256 signed with the public key accepted beside a secret")
	}
	if _, _, err := both.Verify(sign(t, jwt.SigningMethodES256, ec, claims)); err != nil {
		t.Errorf("ES256 beside a secret: %v", err)
	}
	// A secret-only setup refuses asymmetric tokens.
	if _, _, err := newTokens(t).Verify(sign(t, jwt.SigningMethodES256, ec, claims)); err == nil || !strings.Contains(err.Error(), "algorithm") {
		t.Errorf("ES256 with only a secret: %v", err)
	}
}

func TestLoadPublicKeysRefuses(t *testing.T) {
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	privJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: edPriv, KeyID: "k"}}})
	der, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	for name, content := range map[string][]byte{
		"private key in JWKS": privJWKS,
		"private key PEM":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"P-384 key":           pemPublic(t, &ec384.PublicKey),
		"empty JWKS":          []byte(`{"keys":[]}`),
		"garbage":             []byte("hello"),
	} {
		if _, err := LoadPublicKeys(writeFile(t, "k", content)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := LoadPublicKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: loaded")
	}
}
