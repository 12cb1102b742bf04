package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/couponmesh/couponmesh"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTokens(t testing.TB) *Tokens {
	t.Helper()
	tk, err := New(Config{Secret: testSecret, Issuer: "iss", Audience: "aud", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// sign makes a token with arbitrary claims, method and key, for the cases
// Issue would never produce.
func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNew(t *testing.T) {
	if _, err := New(Config{Secret: []byte("short")}); err == nil {
		t.Fatal("New accepted a 5-byte secret")
	}
	if _, err := New(Config{Secret: testSecret, TTL: -time.Second}); err == nil {
		t.Fatal("New accepted a negative TTL")
	}
	tk, err := New(Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if tk.issuer != DefaultIssuer || tk.audience != DefaultAudience || tk.TTL() != DefaultTTL {
		t.Fatalf("defaults not filled: %q %q %v", tk.issuer, tk.audience, tk.TTL())
	}
	if _, err := New(LocalConfig("x")); err != nil {
		t.Fatalf("LocalConfig: %v", err)
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	tk := newTokens(t)
	for _, p := range []couponmesh.Principal{
		{User: "alice", Role: couponmesh.RoleShopper},
		{User: "m.1_x-y", Role: couponmesh.RoleMerchant},
		{User: "root", Role: couponmesh.RoleAdmin},
	} {
		tok, exp, err := tk.Issue(p)
		if err != nil {
			t.Fatalf("Issue(%v): %v", p, err)
		}
		got, gotExp, err := tk.Verify(tok)
		if err != nil {
			t.Fatalf("Verify(%v): %v", p, err)
		}
		if got != p || !gotExp.Equal(exp) {
			t.Fatalf("Verify = %v %v, want %v %v", got, gotExp, p, exp)
		}
		if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
			t.Fatalf("expiry %v away, want about 1h", d)
		}
	}
}

func TestIssueRejectsBadPrincipal(t *testing.T) {
	tk := newTokens(t)
	for _, p := range []couponmesh.Principal{
		{User: "", Role: couponmesh.RoleShopper},
		{User: "bad user", Role: couponmesh.RoleShopper},
		{User: "alice", Role: "root"},
	} {
		if _, _, err := tk.Issue(p); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
			t.Errorf("Issue(%v) = %v, want bad_request", p, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	tk := newTokens(t)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "iss", "aud": "aud", "sub": "alice", "role": "shopper", "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	valid := sign(t, jwt.SigningMethodHS256, testSecret, good())
	parts := strings.Split(valid, ".")

	cases := []struct {
		name  string
		token string
		want  string // substring of the message
	}{
		{"empty", "", "missing"},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "too long"},
		{"garbage", "not-a-token", "malformed"},
		{"two parts", parts[0] + "." + parts[1], "malformed"},
		{"bad signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), "signature"},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes long!!!"), good()), "signature"},
		{"HS512", sign(t, jwt.SigningMethodHS512, testSecret, good()), "algorithm"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good()), "algorithm"},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"no expiry", sign(t, jwt.SigningMethodHS256, testSecret, with("exp", nil)), "no expiry"},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, testSecret, with("nbf", now.Add(time.Minute).Unix())), "not valid yet"},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, testSecret, with("iss", "evil")), "issuer"},
		{"no issuer", sign(t, jwt.SigningMethodHS256, testSecret, with("iss", nil)), "issuer"},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, testSecret, with("aud", "other")), "audience"},
		{"no audience", sign(t, jwt.SigningMethodHS256, testSecret, with("aud", nil)), "audience"},
		{"no subject", sign(t, jwt.SigningMethodHS256, testSecret, with("sub", nil)), "subject"},
		{"bad subject", sign(t, jwt.SigningMethodHS256, testSecret, with("sub", "a/b")), "subject"},
		{"unknown role", sign(t, jwt.SigningMethodHS256, testSecret, with("role", "root")), "role"},
		{"no role", sign(t, jwt.SigningMethodHS256, testSecret, with("role", nil)), "role"},
		{"role not a string", sign(t, jwt.SigningMethodHS256, testSecret, with("role", 7)), "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _, err := tk.Verify(tc.token)
			var e *couponmesh.Error
			if !errors.As(err, &e) || e.Code != couponmesh.CodeUnauthorized {
				t.Fatalf("Verify = %v, %v; want unauthorized", p, err)
			}
			if !strings.Contains(e.Message, tc.want) {
				t.Fatalf("message %q does not mention %q", e.Message, tc.want)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	tk := newTokens(t)
	tok, exp, err := tk.Issue(couponmesh.Principal{User: "alice", Role: couponmesh.RoleShopper})
	if err != nil {
		t.Fatal(err)
	}
	tk.now = func() time.Time { return exp.Add(20 * time.Second) }
	if _, _, err := tk.Verify(tok); err != nil {
		t.Fatalf("20 s after expiry (within leeway): %v", err)
	}
	tk.now = func() time.Time { return exp.Add(31 * time.Second) }
	if _, _, err := tk.Verify(tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("31 s after expiry: %v, want expired", err)
	}
}

func FuzzVerify(f *testing.F) {
	tk := newTokens(f)
	valid, _, err := tk.Issue(couponmesh.Principal{User: "alice", Role: couponmesh.RoleShopper})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(valid[:len(valid)-3])
	f.Fuzz(func(t *testing.T, token string) {
		p, exp, err := tk.Verify(token)
		if err != nil {
			var e *couponmesh.Error
			if !errors.As(err, &e) || e.Code != couponmesh.CodeUnauthorized || e.Message == "" {
				t.Fatalf("Verify(%q) error %v is not a clear unauthorized", token, err)
			}
			return
		}
		if !couponmesh.ValidID(p.User) || !p.Role.Valid() || exp.IsZero() {
			t.Fatalf("Verify(%q) accepted %v exp %v", token, p, exp)
		}
	})
}

// TestVerifyRemembersVerifiedTokens: a token that passed is answered from
// memory the next time, still subject to its time claims; a token that
// failed is never remembered.
func TestVerifyRemembersVerifiedTokens(t *testing.T) {
	tk := newTokens(t)
	now := time.Now()
	tk.now = func() time.Time { return now }
	claims := jwt.MapClaims{"iss": "iss", "aud": "aud", "sub": "alice", "role": "shopper",
		"nbf": now.Add(time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
	early := sign(t, jwt.SigningMethodHS256, testSecret, claims)
	if _, _, err := tk.Verify(early); err == nil || !strings.Contains(err.Error(), "not valid yet") {
		t.Fatalf("before nbf: %v", err)
	}
	if tk.verified.Contains(early) {
		t.Fatal("a refused token was remembered")
	}
	now = now.Add(time.Minute)
	p, exp, err := tk.Verify(early)
	if err != nil || p.User != "alice" {
		t.Fatalf("at nbf: %v %v", p, err)
	}
	if !tk.verified.Contains(early) {
		t.Fatal("a verified token was not remembered")
	}
	if p2, exp2, err := tk.Verify(early); err != nil || p2 != p || !exp2.Equal(exp) {
		t.Fatalf("again: %v %v %v, want %v %v", p2, exp2, err, p, exp)
	}
	now = exp.Add(Leeway)
	if _, _, err := tk.Verify(early); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("remembered token past its expiry: %v, want expired", err)
	}
	// Clock stepped back before nbf (less the leeway): not valid yet again.
	now = time.Unix(claims["nbf"].(int64), 0).Add(-Leeway - time.Second)
	if _, _, err := tk.Verify(early); err == nil || !strings.Contains(err.Error(), "not valid yet") {
		t.Fatalf("remembered token before its nbf: %v, want not valid yet", err)
	}
}

// BenchmarkVerify: a token seen before (remembered) and tokens never seen
// (more distinct tokens than Verify remembers, in turn).
func BenchmarkVerify(b *testing.B) {
	tk := newTokens(b)
	toks := make([]string, 2*VerifiedTokens)
	for i := range toks {
		tok, _, err := tk.Issue(couponmesh.Principal{User: fmt.Sprintf("shopper-%05d", i), Role: couponmesh.RoleShopper})
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = tok
	}
	b.Run("remembered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := tk.Verify(toks[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := tk.Verify(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
