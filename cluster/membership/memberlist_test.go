package membership

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"

	"github.com/couponmesh/couponmesh/internal/testutil"
)

// These tests run real memberlist instances on loopback, in one process,
// with protoactor's side (the member list it is given, and the members it
// blocks for good once they leave it) emulated by member.

// cutTransport is memberlist's UDP/TCP transport with a switch that drops
// every packet and connection to a set of addresses: a network partition.
type cutTransport struct {
	*memberlist.NetTransport
	mu  sync.Mutex
	cut map[string]bool
}

func (t *cutTransport) blocked(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cut[addr]
}

func (t *cutTransport) set(addrs []string, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range addrs {
		t.cut[a] = on
	}
}

var errCut = fmt.Errorf("partitioned")

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil // lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(a.Addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *cutTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		time.Sleep(d)
		return nil, errCut
	}
	return t.NetTransport.DialTimeout(addr, d)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, d)
}

// member is one provider plus the protoactor behaviour it feeds.
type member struct {
	p       *Provider
	tr      *cutTransport
	addr    string
	mu      sync.Mutex
	current []*cluster.Member
	blocks  map[string]bool // IDs that left the published list: blocked forever, as protoactor does
	evicted chan struct{}
	churns  int  // OnChurn calls
	inConf  bool // the last OnChurn's conflict
	sawConf bool // OnChurn reported a conflict at least once
}

func (m *member) onChurn(conflict bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.churns++
	m.inConf = conflict
	m.sawConf = m.sawConf || conflict
}

// churn returns the OnChurn calls so far, whether the last one reported a
// conflict, and whether any did.
func (m *member) churn() (calls int, conflict, sawConflict bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.churns, m.inConf, m.sawConf
}

func startMember(t *testing.T, id string, port int, seeds []string) *member {
	t.Helper()
	return startMemberWith(t, id, port, seeds, func(*Config) {})
}

func startMemberWith(t *testing.T, id string, port int, seeds []string, mod func(*Config)) *member {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: port})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{tr: &cutTransport{NetTransport: nt, cut: map[string]bool{}}, blocks: map[string]bool{}, evicted: make(chan struct{})}
	m.addr = "127.0.0.1:" + strconv.Itoa(nt.GetAutoBindPort())
	level := slog.LevelWarn + 10
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	cfg := Config{
		NodeName: id, BindAddr: m.addr, Seeds: seeds, Transport: m.tr, RejoinInterval: time.Second,
		OnEvicted: func() { close(m.evicted) },
		OnChurn:   m.onChurn,
		Log:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("member", id),
	}
	mod(&cfg)
	m.p = New(cfg)
	self := Meta{ID: id, Host: "127.0.0.1", Port: 1000 + len(id), Kinds: []string{"coupon"}, Name: id}
	err = m.p.start(self, m.publish, func(id string) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.blocks[id]
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.p.Shutdown(false) })
	return m
}

func (m *member) publish(ms []*cluster.Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next []*cluster.Member
	for _, x := range ms {
		if !m.blocks[x.Id] {
			next = append(next, x)
		}
	}
	for _, old := range m.current {
		if !slices.ContainsFunc(next, func(x *cluster.Member) bool { return x.Id == old.Id }) {
			m.blocks[old.Id] = true
		}
	}
	m.current = next
}

func (m *member) ids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, x := range m.current {
		out = append(out, x.Id)
	}
	slices.Sort(out)
	return out
}

func sees(m *member, ids ...string) func() bool {
	return func() bool { return slices.Equal(m.ids(), ids) }
}

// A partition splits {a, b} from {c}; each side declares the other dead.
// When the network heals, the members find each other again (memberlist
// alone would not), the minority member is told by a majority that it was
// evicted, and after its restart with a new ID the cluster is one again.
func TestPartitionHealsIntoOneCluster(t *testing.T) {
	a := startMember(t, "a", 0, nil)
	b := startMember(t, "b", 0, []string{a.addr})
	c := startMember(t, "c", 0, []string{a.addr})
	for _, m := range []*member{a, b, c} {
		testutil.Until(t, 10*time.Second, "three members", sees(m, "a", "b", "c"))
	}

	// Partition.
	a.tr.set([]string{c.addr}, true)
	b.tr.set([]string{c.addr}, true)
	c.tr.set([]string{a.addr, b.addr}, true)
	start := time.Now()
	testutil.Until(t, 15*time.Second, "a drops c", sees(a, "a", "b"))
	testutil.Until(t, 15*time.Second, "b drops c", sees(b, "a", "b"))
	testutil.Until(t, 15*time.Second, "c alone", sees(c, "c"))
	t.Logf("partition detected on both sides after %s", time.Since(start).Round(time.Millisecond))
	for _, m := range []*member{a, b, c} {
		if calls, conflict, saw := m.churn(); calls == 0 || conflict || saw {
			t.Fatalf("%s during the partition: %d churn calls, conflict %v (ever %v); want calls and no conflict yet", m.p.self.ID, calls, conflict, saw)
		}
	}

	// Heal.
	a.tr.set([]string{c.addr}, false)
	b.tr.set([]string{c.addr}, false)
	c.tr.set([]string{a.addr, b.addr}, false)
	start = time.Now()
	select {
	case <-c.evicted:
		t.Logf("c evicted %s after the heal", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("c was not evicted after the heal; memberlist on a: %d members", a.p.ml.NumMembers())
	}
	// Both sides saw a member they declared dead alive again: their grains
	// must validate before every answer until it is gone.
	for _, m := range []*member{a, b, c} {
		testutil.Until(t, 5*time.Second, m.p.self.ID+" reports the conflict", func() bool { _, _, saw := m.churn(); return saw })
	}
	select {
	case <-a.evicted:
		t.Fatal("a (majority side) was evicted")
	case <-b.evicted:
		t.Fatal("b (majority side) was evicted")
	default:
	}

	// The supervisor restarts c: a new process, a new ID, the same address.
	_ = c.p.Shutdown(false)
	port, _ := strconv.Atoi(c.addr[len("127.0.0.1:"):])
	c2 := startMember(t, "c2", port, []string{a.addr})
	for _, m := range []*member{a, b, c2} {
		testutil.Until(t, 15*time.Second, "one cluster again", sees(m, "a", "b", "c2"))
	}
	for _, m := range []*member{a, b} {
		testutil.Until(t, 15*time.Second, m.p.self.ID+" ends the conflict", func() bool { _, conflict, _ := m.churn(); return !conflict })
	}
	t.Logf("one cluster again %s after the heal", time.Since(start).Round(time.Millisecond))
}

// Members that start before their seed is listening keep trying, and end
// up in one cluster.
func TestJoinRetriesUntilTheSeedAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := ln.Addr().String()
	ln.Close()
	b := startMember(t, "b", 0, []string{seed})
	time.Sleep(1500 * time.Millisecond)
	port, _ := strconv.Atoi(seed[len("127.0.0.1:"):])
	a := startMember(t, "a", port, []string{seed})
	testutil.Until(t, 10*time.Second, "b joins a", sees(b, "a", "b"))
	testutil.Until(t, 10*time.Second, "a sees b", sees(a, "a", "b"))
	if !b.p.Joined() {
		t.Error("b does not report joined")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"bad profile", Config{BindAddr: "127.0.0.1:0", Profile: "wan"}},
		{"short key", Config{BindAddr: "127.0.0.1:0", SecretKey: []byte("short")}},
		{"bad address", Config{BindAddr: "nowhere"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.cfg)
			if err := p.start(Meta{ID: "x", Host: "127.0.0.1", Port: 1}, func([]*cluster.Member) {}, func(string) bool { return false }); err == nil {
				_ = p.Shutdown(false)
				t.Fatal("started")
			}
		})
	}
}

// Gossip encryption: a member with another key, with no key, or with
// another label never joins; one with the key does.
func TestGossipKeyAndLabelKeepStrangersOut(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secure := func(c *Config) { c.SecretKey, c.Label = key, "prod" }
	a := startMemberWith(t, "a", 0, nil, secure)
	b := startMemberWith(t, "b", 0, []string{a.addr}, secure)
	testutil.Until(t, 10*time.Second, "b joins with the key", sees(a, "a", "b"))
	strangers := []*member{
		startMemberWith(t, "wrongkey", 0, []string{a.addr}, func(c *Config) {
			c.SecretKey, c.Label = []byte("fedcba9876543210fedcba9876543210"), "prod"
		}),
		startMemberWith(t, "nokey", 0, []string{a.addr}, func(c *Config) { c.Label = "prod" }),
		startMemberWith(t, "wronglabel", 0, []string{a.addr}, func(c *Config) { c.SecretKey, c.Label = key, "staging" }),
	}
	time.Sleep(4 * time.Second) // several join attempts and gossip rounds
	for _, m := range []*member{a, b} {
		if got := m.ids(); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("members of %v: %v, want only a and b", m.p.self.ID, got)
		}
	}
	for _, s := range strangers {
		if got := s.ids(); !slices.Equal(got, []string{s.p.self.ID}) {
			t.Errorf("%s sees %v, want only itself", s.p.self.ID, got)
		}
	}
}
