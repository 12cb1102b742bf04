package ws

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"peer, no header", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:5000", []string{"203.0.113.5"}, "192.0.2.1"},
		{"trusted proxy", "10.1.2.3:5000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"trusted proxy, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"forged left hops", "10.1.2.3:5000", []string{"1.1.1.1, 2.2.2.2, 203.0.113.5"}, "203.0.113.5"},
		{"two trusted proxies", "10.1.2.3:5000", []string{"1.1.1.1, 203.0.113.5, 10.9.9.9"}, "203.0.113.5"},
		{"several headers", "10.1.2.3:5000", []string{"1.1.1.1", "203.0.113.5, 10.9.9.9"}, "203.0.113.5"},
		{"all trusted", "10.1.2.3:5000", []string{"10.4.4.4, 10.9.9.9"}, "10.4.4.4"},
		{"garbage from a trusted hop", "10.1.2.3:5000", []string{"203.0.113.5, garbage"}, "10.1.2.3"},
		{"garbage left of the client", "10.1.2.3:5000", []string{"garbage, 203.0.113.5"}, "203.0.113.5"},
		{"ipv6 client", "[fd00::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"mapped ipv4 peer", "[::ffff:192.0.2.1]:5000", nil, "192.0.2.1"},
		{"unreadable peer", "pipe", nil, "invalid IP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, trusted).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestIPKeyGroupsIPv6By64(t *testing.T) {
	a := ipKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := ipKey(netip.MustParseAddr("2001:db8:1:2:bbbb::2"))
	c := ipKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatalf("keys %s %s %s: want one /64 per key", a, b, c)
	}
	if k := ipKey(netip.MustParseAddr("192.0.2.1")); k.String() != "192.0.2.1" {
		t.Fatalf("ipv4 key %s", k)
	}
}

// TestIPLimitsForgetIdleAddresses: many addresses seen once do not stay in
// memory once their bucket is full again and they hold no session.
func TestIPLimitsForgetIdleAddresses(t *testing.T) {
	cfg := DefaultConfig()
	l := newIPLimits(cfg)
	now := time.Now()
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if r := l.admit(a, now); r != "" {
			t.Fatal(r)
		}
		l.release(a)
	}
	held := netip.MustParseAddr("192.0.2.1")
	l.admit(held, now)
	later := now.Add(time.Duration(float64(cfg.HandshakeBurst)/cfg.HandshakeRate*float64(time.Second)) + sweepEvery + time.Second)
	l.admit(netip.MustParseAddr("192.0.2.2"), later)
	l.mu.Lock()
	n := len(l.addrs)
	_, kept := l.addrs[held]
	l.mu.Unlock()
	if n != 2 || !kept {
		t.Fatalf("%d addresses kept (holding one: %v), want 2", n, kept)
	}
}
