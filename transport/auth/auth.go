package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/couponmesh/couponmesh"
)

// Defaults filled in by New for zero Config fields.
const (
	DefaultIssuer   = "couponmesh"
	DefaultAudience = "couponmesh"
	DefaultTTL      = time.Hour

	// MinSecretLen is the shortest HS256 secret New accepts.
	MinSecretLen = 32
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway = 30 * time.Second
	// MaxTokenLen bounds the token text Verify looks at; longer tokens are
	// refused before any parsing.
	MaxTokenLen = 4096
	// VerifiedTokens is how many tokens that passed Verify it remembers
	// (least recently used first out), so that the same token again costs
	// a lookup and a clock check: a merchant's API calls, a client's
	// reconnects.
	VerifiedTokens = 4096
)

// Config configures token issuing and verification. Zero fields take the
// DefaultConfig values.
//
// The yaml and env tags are the node configuration's keys (top level,
// COUPONMESH_<KEY>), declared here once: the node embeds Config. The node
// sets Secret and PublicKeys from its jwt_secret and jwt_public_keys keys
// (a text secret, a file to load).
type Config struct {
	// Secret is the HS256 key, at least MinSecretLen bytes. It signs the
	// tokens Issue makes (dev login) and verifies HS256 tokens. Optional
	// when PublicKeys are given.
	Secret []byte `yaml:"-"`
	// PublicKeys verify ES256 and EdDSA tokens from an identity provider
	// (LoadPublicKeys reads them from a JWKS or PEM file).
	PublicKeys []PublicKey `yaml:"-"`
	// Issuer is put in and required of the "iss" claim (default DefaultIssuer).
	Issuer string `yaml:"jwt_issuer" env:"JWT_ISSUER"`
	// Audience is put in and required of the "aud" claim (default DefaultAudience).
	Audience string `yaml:"jwt_audience" env:"JWT_AUDIENCE"`
	// TTL is the lifetime of issued tokens (default DefaultTTL).
	TTL time.Duration `yaml:"token_ttl" env:"TOKEN_TTL"`
}

// DefaultConfig returns the defaults, without keys: DefaultIssuer,
// DefaultAudience, DefaultTTL.
func DefaultConfig() Config {
	return Config{Issuer: DefaultIssuer, Audience: DefaultAudience, TTL: DefaultTTL}
}

// Validate reports settings New would refuse or misuse: an HS256 secret
// shorter than MinSecretLen, a negative TTL. Each error names the key.
func (c Config) Validate() error {
	var errs []error
	if n := len(c.Secret); n > 0 && n < MinSecretLen {
		errs = append(errs, fmt.Errorf("jwt_secret must be at least %d bytes", MinSecretLen))
	}
	if c.TTL < 0 {
		errs = append(errs, fmt.Errorf("token_ttl %s is negative", c.TTL))
	}
	return errors.Join(errs...)
}

// LocalConfig returns a config for tests and local development with the
// given secret (padded to MinSecretLen if shorter) and a one hour TTL.
func LocalConfig(secret string) Config {
	s := []byte(secret)
	for len(s) < MinSecretLen {
		s = append(s, '.')
	}
	return Config{Secret: s, TTL: DefaultTTL}
}

// Tokens issues and verifies session tokens. Safe for concurrent use.
type Tokens struct {
	secret   []byte
	public   []PublicKey
	issuer   string
	audience string
	ttl      time.Duration
	parser   *jwt.Parser
	now      func() time.Time
	verified *lru.Cache[string, verifiedToken]
}

// verifiedToken is what Verify found in a token that passed every check.
// Only its time claims can turn it invalid later.
type verifiedToken struct {
	p        couponmesh.Principal
	exp, nbf time.Time // nbf zero: none
}

// validAt tells whether v's time claims still hold at now, with Leeway,
// as golang-jwt checks them.
func (v verifiedToken) validAt(now time.Time) bool {
	return now.Before(v.exp.Add(Leeway)) && !now.Before(v.nbf.Add(-Leeway))
}

// claims is the JWT body: the registered claims plus the role.
type claims struct {
	Role couponmesh.Role `json:"role"`
	jwt.RegisteredClaims
}

// New returns Tokens for cfg, filling defaults. It fails when the secret is
// shorter than MinSecretLen bytes or the TTL is negative.
func New(cfg Config) (*Tokens, error) {
	if len(cfg.PublicKeys) == 0 && len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: secret must be at least %d bytes, got %d", MinSecretLen, len(cfg.Secret))
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: secret must be at least %d bytes, got %d", MinSecretLen, len(cfg.Secret))
	}
	methods := []string{}
	if len(cfg.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	for _, k := range cfg.PublicKeys {
		alg, err := k.alg()
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		if !slices.Contains(methods, alg) {
			methods = append(methods, alg)
		}
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("auth: negative TTL %v", cfg.TTL)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	verified, err := lru.New[string, verifiedToken](VerifiedTokens)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	t := &Tokens{
		verified: verified,
		secret:   append([]byte(nil), cfg.Secret...),
		public:   slices.Clone(cfg.PublicKeys),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		ttl:      cfg.TTL,
		now:      time.Now,
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

// TTL returns the lifetime of the tokens Issue makes.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Issue signs a token for p that expires after the configured TTL. exp is
// the expiry as written in the token (whole seconds). It fails with
// bad_request when p's user is not a valid id or its role unknown.
func (t *Tokens) Issue(p couponmesh.Principal) (token string, exp time.Time, err error) {
	if !couponmesh.ValidID(p.User) {
		return "", time.Time{}, couponmesh.Errorf(couponmesh.CodeBadRequest,
			"user must be 1-%d characters of letters, digits, '_', '-' or '.'", couponmesh.MaxIDLen)
	}
	if !p.Role.Valid() {
		return "", time.Time{}, couponmesh.Errorf(couponmesh.CodeBadRequest,
			"role must be one of shopper, merchant, admin")
	}
	if len(t.secret) == 0 {
		return "", time.Time{}, errors.New("auth: no secret to sign tokens with (only an identity provider's public keys are configured)")
	}
	now := t.now()
	exp = now.Add(t.ttl).Truncate(time.Second)
	c := claims{
		Role: p.Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   p.User,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
		},
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, exp.UTC(), nil
}

// Verify checks token and returns its principal and expiry. Every failure
// is a *couponmesh.Error with code unauthorized whose message says what is
// wrong (missing, malformed, bad signature or algorithm, expired, wrong
// issuer or audience, bad subject or role).
func (t *Tokens) Verify(token string) (couponmesh.Principal, time.Time, error) {
	if token == "" {
		return couponmesh.Principal{}, time.Time{}, unauthorized("token is missing")
	}
	if len(token) > MaxTokenLen {
		return couponmesh.Principal{}, time.Time{}, unauthorized("token is too long")
	}
	if v, ok := t.verified.Get(token); ok && v.validAt(t.now()) {
		return v.p, v.exp, nil
	}
	var c claims
	if _, err := t.parser.ParseWithClaims(token, &c, t.verificationKey); err != nil {
		return couponmesh.Principal{}, time.Time{}, unauthorized(reason(err))
	}
	if !couponmesh.ValidID(c.Subject) {
		return couponmesh.Principal{}, time.Time{}, unauthorized("token subject is not a valid user id")
	}
	if !c.Role.Valid() {
		return couponmesh.Principal{}, time.Time{}, unauthorized("token role is missing or unknown")
	}
	v := verifiedToken{p: couponmesh.Principal{User: c.Subject, Role: c.Role}, exp: c.ExpiresAt.Time.UTC()}
	if c.NotBefore != nil {
		v.nbf = c.NotBefore.Time
	}
	t.verified.Add(token, v)
	return v.p, v.exp, nil
}

func unauthorized(msg string) *couponmesh.Error {
	return &couponmesh.Error{Code: couponmesh.CodeUnauthorized, Message: msg}
}

// reason turns a golang-jwt error into a message safe for a client. The
// order matters: an expired token with a bad signature is reported as a bad
// signature, since signatures are checked first.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature is invalid or its algorithm is not accepted"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token cannot be verified (algorithm or key id not accepted)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// golang-jwt names the missing claim only in the message.
		msg := err.Error()
		switch {
		case strings.Contains(msg, "exp claim"):
			return "token has no expiry"
		case strings.Contains(msg, "iss claim"):
			return "token has no issuer"
		case strings.Contains(msg, "aud claim"):
			return "token has no audience"
		}
		return "token is missing a required claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token issuer is not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token audience is not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidClaims), errors.Is(err, jwt.ErrInvalidType):
		return "token claims are invalid"
	}
	return "token is invalid"
}
