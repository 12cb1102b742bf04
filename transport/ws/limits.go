package ws

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limitOf turns a configured rate into a rate.Limit: negative means none.
func limitOf(r float64) rate.Limit {
	if r < 0 {
		return rate.Inf
	}
	return rate.Limit(r)
}

// ipKey is the unit the per-address limits count: the address itself for
// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64, so
// counting single IPv6 addresses would limit nothing).
func ipKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// clientAddr returns the client address of r: the TCP peer, or, when the
// peer is a trusted proxy, the right-most X-Forwarded-For hop that is not a
// trusted proxy itself (hops to the left of it were written by the client
// and prove nothing). The zero Addr means the peer address could not be
// read.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A trusted proxy passed on garbage: the last good hop is all
			// that is known.
			return addr
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			return addr
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipLimits holds the per-address session counts and handshake buckets of a
// Handler. Safe for concurrent use.
type ipLimits struct {
	maxSessions int
	maxAnon     int
	every       rate.Limit
	burst       int

	mu        sync.Mutex
	addrs     map[netip.Addr]*ipState
	lastSweep time.Time
}

type ipState struct {
	sessions   int
	anonymous  int // of sessions, those anonymous
	handshakes *rate.Limiter
}

// sweepEvery is how often idle addresses are forgotten.
const sweepEvery = 10 * time.Second

func newIPLimits(cfg Config) *ipLimits {
	return &ipLimits{
		maxSessions: cfg.SessionsPerIP,
		maxAnon:     cfg.AnonymousPerIP,
		every:       limitOf(cfg.HandshakeRate),
		burst:       cfg.HandshakeBurst,
		addrs:       make(map[netip.Addr]*ipState),
	}
}

// Refusals of admit.
const (
	refusedHandshakeRate = "handshake_rate"
	refusedIPSessions    = "ip_sessions"
)

// admit counts a new session of addr, or returns why it is refused. Every
// admitted session must be given back with release.
func (l *ipLimits) admit(addr netip.Addr, now time.Time) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > sweepEvery {
		l.sweep(now)
	}
	st := l.addrs[addr]
	if st == nil {
		st = &ipState{handshakes: rate.NewLimiter(l.every, l.burst)}
		l.addrs[addr] = st
	}
	if !st.handshakes.AllowN(now, 1) {
		return refusedHandshakeRate
	}
	if l.maxSessions > 0 && st.sessions >= l.maxSessions {
		return refusedIPSessions
	}
	st.sessions++
	return ""
}

func (l *ipLimits) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[addr]; st != nil && st.sessions > 0 {
		st.sessions--
	}
}

// admitAnonymous counts one of addr's admitted sessions as anonymous, or
// reports false when addr holds AnonymousPerIP anonymous sessions already.
// Every admitted one must be given back with releaseAnonymous.
func (l *ipLimits) admitAnonymous(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.addrs[addr]
	if st == nil {
		return false // cannot happen: the session was admitted and is open
	}
	if l.maxAnon > 0 && st.anonymous >= l.maxAnon {
		return false
	}
	st.anonymous++
	return true
}

func (l *ipLimits) releaseAnonymous(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[addr]; st != nil && st.anonymous > 0 {
		st.anonymous--
	}
}

// sweep forgets the addresses without sessions whose bucket is full again:
// a new state for them would be the same. It keeps the map as small as the
// set of recently active addresses.
func (l *ipLimits) sweep(now time.Time) {
	l.lastSweep = now
	for a, st := range l.addrs {
		if st.sessions == 0 && (l.every == rate.Inf || st.handshakes.TokensAt(now) >= float64(l.burst)) {
			delete(l.addrs, a)
		}
	}
}

// userLimits counts the authenticated sessions of each user on this node
// and remembers, for a cooldown, the users one of whose sessions was closed
// for flooding: reconnecting would otherwise give a flooder a fresh request
// bucket every time. Safe for concurrent use.
type userLimits struct {
	max      int
	cooldown time.Duration

	mu        sync.Mutex
	users     map[string]*userState
	lastSweep time.Time
}

type userState struct {
	sessions int
	until    time.Time // no new session before this (flooding)
}

// Refusals of bind.
const (
	refusedUserSessions = "user_sessions"
	refusedUserFlooded  = "user_flooded"
)

// bind counts one more session of user, or returns why it is refused: the
// user holds max sessions already, or is cooling down after a flood.
func (u *userLimits) bind(user string, now time.Time) (refused string, wait time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	st := u.users[user]
	if st == nil {
		st = &userState{}
		u.users[user] = st
	}
	if now.Before(st.until) {
		return refusedUserFlooded, st.until.Sub(now)
	}
	if u.max > 0 && st.sessions >= u.max {
		return refusedUserSessions, 0
	}
	st.sessions++
	return "", 0
}

func (u *userLimits) unbind(user string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.users[user]
	if st == nil {
		return
	}
	if st.sessions > 0 {
		st.sessions--
	}
	if st.sessions == 0 && !now.Before(st.until) {
		delete(u.users, user)
	}
}

// penalize refuses new sessions of user for the cooldown.
func (u *userLimits) penalize(user string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	st := u.users[user]
	if st == nil {
		st = &userState{}
		u.users[user] = st
	}
	st.until = now.Add(u.cooldown)
}

// sweep forgets, at most once per cooldown, the users without sessions
// whose cooldown has passed (refused binds leave such entries behind).
func (u *userLimits) sweep(now time.Time) {
	if now.Sub(u.lastSweep) <= u.cooldown {
		return
	}
	u.lastSweep = now
	for k, st := range u.users {
		if st.sessions == 0 && !now.Before(st.until) {
			delete(u.users, k)
		}
	}
}
