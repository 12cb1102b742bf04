package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
)

// Config of the memberlist provider. Zero fields take the DefaultConfig
// values.
//
// The yaml and env tags are the node configuration's keys (its cluster
// section, COUPONMESH_CLUSTER_<KEY>), declared here once: the node embeds
// Config. Fields tagged yaml:"-" are set by the node (from its top-level
// keys, the decoded gossip_key, its listeners) or are hooks.
type Config struct {
	NodeName      string   `yaml:"-"`                                   // shown to operators; the member ID is protoactor's system ID
	BindAddr      string   `yaml:"-"`                                   // memberlist host:port (TCP and UDP); port 0 picks one
	AdvertiseAddr string   `yaml:"advertise_addr" env:"ADVERTISE_ADDR"` // host:port other members reach; empty: the bound address
	Seeds         []string `yaml:"-"`                                   // host:port of members to join
	SecretKey     []byte   `yaml:"-"`                                   // gossip encryption (AES, 16/24/32 bytes); nil: none
	Label         string   `yaml:"gossip_label" env:"GOSSIP_LABEL"`     // gossip label: members with another label are ignored
	// Profile sets failure detection: "fast" (default: a crash is detected
	// in about 1.5 s on a LAN) or "lan" (memberlist's defaults, 5–7 s).
	// ProbeInterval, ProbeTimeout and SuspicionMult override it when set.
	Profile        string        `yaml:"failure_detection" env:"FAILURE_DETECTION"`
	ProbeInterval  time.Duration `yaml:"probe_interval" env:"PROBE_INTERVAL"`
	ProbeTimeout   time.Duration `yaml:"probe_timeout" env:"PROBE_TIMEOUT"`
	SuspicionMult  int           `yaml:"suspicion_mult" env:"SUSPICION_MULT"`
	RejoinInterval time.Duration `yaml:"rejoin_interval" env:"REJOIN_INTERVAL"` // re-join seeds and known members (partition heal); default 5 s
	// DeadGrace keeps a member that memberlist declared dead in protoactor's
	// list this long (default 500 ms), since protoactor's removal is
	// permanent: a false death (a stale "dead" rumour arriving after a
	// partition healed) is refuted within a few gossip rounds. Members that
	// leave gracefully are removed at once.
	DeadGrace time.Duration `yaml:"dead_grace" env:"DEAD_GRACE"`
	HTTPAddr  string        `yaml:"-"` // the node's public address, in its metadata
	AdminAddr string        `yaml:"-"` // the node's admin address, in its metadata
	// TopologyDelay makes this member apply membership changes late. For
	// tests of stale views only.
	TopologyDelay time.Duration `yaml:"topology_delay" env:"TOPOLOGY_DELAY"`
	// OnEvicted is called once when a majority of the other members say they
	// declared this member dead: it must exit (a new process gets a new ID).
	OnEvicted func() `yaml:"-"`
	// OnChurn, when set, is called on every change that may have let two
	// activations of an identity coexist: a member joined or left (or was
	// declared dead), the member list given to protoactor changed, and
	// whenever conflict changes. conflict is true while a member this node
	// blocked (declared dead) is alive in memberlist: a healed partition or
	// a paused process, which may still be writing until it exits. Called
	// from memberlist's and the provider's goroutines; it must not block.
	OnChurn   func(conflict bool)  `yaml:"-"`
	Transport memberlist.Transport `yaml:"-"` // nil: UDP and TCP on BindAddr
	Log       *slog.Logger         `yaml:"-"`
}

// Meta is what a member publishes about itself (memberlist node metadata,
// at most 512 bytes).
type Meta struct {
	ID    string   `json:"id"`    // protoactor member ID (a new one per process start)
	Host  string   `json:"host"`  // protoactor remote host
	Port  int      `json:"port"`  // protoactor remote port
	Kinds []string `json:"kinds"` // grain kinds hosted
	Name  string   `json:"name"`
	HTTP  string   `json:"http,omitempty"`
	Admin string   `json:"admin,omitempty"`
}

// Address is the protoactor address of the member.
func (m Meta) Address() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Member is a member as memberlist sees it.
type Member struct {
	Meta
	Gossip string    `json:"gossip"` // memberlist address
	Status string    `json:"status"` // alive, suspect, gone (left or declared dead)
	Since  time.Time `json:"since"`  // when this node last saw the status change
}

// Provider is a protoactor ClusterProvider backed by hashicorp/memberlist.
type Provider struct {
	cfg Config
	log *slog.Logger

	ml   *memberlist.Memberlist
	self Meta
	kick chan struct{}
	stop chan struct{}
	done sync.WaitGroup

	publish func([]*cluster.Member)
	blocked func(id string) bool

	mu        sync.Mutex
	addr      string               // this member's memberlist address
	nodes     map[string]node      // alive members by memberlist name, copied from events
	known     map[string]time.Time // memberlist addresses seen alive → when
	gone      map[string]Member    // members that left or died, by ID, for a while
	since     map[string]time.Time // status changes, by memberlist name
	evictedBy map[string]time.Time // member ID → when it said we were dead
	lastSent  map[string]time.Time // eviction notices sent, by member ID
	evicted   bool
	joined    bool
	conflict  bool                 // a member protoactor blocked is alive (OnChurn)
	applied   []*cluster.Member    // the member list last given to protoactor
	pending   time.Time            // when the current change was first seen (TopologyDelay)
	missing   map[string]time.Time // members published but no longer alive → since when (DeadGrace)
	leaving   map[string]time.Time // members that said they leave gracefully
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// DefaultConfig returns the defaults: the fast profile, re-joins every 5 s,
// 500 ms of grace for a member declared dead.
func DefaultConfig() Config {
	return Config{Profile: "fast", RejoinInterval: 5 * time.Second, DeadGrace: 500 * time.Millisecond}
}

// Validate reports settings StartMember would refuse: an unknown profile, a
// secret key that is not 16, 24 or 32 bytes. Each error names the field's
// key.
func (c Config) Validate() error {
	var errs []error
	switch c.Profile {
	case "", "fast", "lan":
	default:
		errs = append(errs, fmt.Errorf("failure_detection %q: want fast or lan", c.Profile))
	}
	if n := len(c.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		errs = append(errs, fmt.Errorf("gossip_key: %d bytes, want 16, 24 or 32", n))
	}
	return errors.Join(errs...)
}

// New returns a provider; StartMember starts it.
func New(cfg Config) *Provider {
	d := DefaultConfig()
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = d.RejoinInterval
	}
	if cfg.DeadGrace <= 0 {
		cfg.DeadGrace = d.DeadGrace
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Provider{
		cfg: cfg, log: cfg.Log.With("component", "memberlist"),
		kick: make(chan struct{}, 1), stop: make(chan struct{}),
		nodes: make(map[string]node), known: make(map[string]time.Time), gone: make(map[string]Member), since: make(map[string]time.Time),
		evictedBy: make(map[string]time.Time), lastSent: make(map[string]time.Time),
		missing: make(map[string]time.Time), leaving: make(map[string]time.Time),
	}
}

// StartMember implements cluster.ClusterProvider.
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	kinds := c.GetClusterKinds()
	sort.Strings(kinds)
	self := Meta{ID: c.ActorSystem.ID, Host: host, Port: port, Kinds: kinds, Name: p.cfg.NodeName, HTTP: p.cfg.HTTPAddr, Admin: p.cfg.AdminAddr}
	return p.start(self,
		func(ms []*cluster.Member) { c.MemberList.UpdateClusterTopology(ms) },
		func(id string) bool { return c.GetBlockedMembers().Contains(id) })
}

// start runs the provider for member self: publish receives the member list
// (full snapshots), blocked tells which member IDs protoactor evicted.
func (p *Provider) start(self Meta, publish func([]*cluster.Member), blocked func(string) bool) error {
	p.self, p.publish, p.blocked = self, publish, blocked
	mc, err := p.memberlistConfig()
	if err != nil {
		return err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("memberlist: %w", err)
	}
	p.ml = ml
	p.addr = ml.LocalNode().Address() // before any other member can change it
	p.refresh()
	p.done.Add(2)
	go p.loop()
	go p.joinLoop()
	p.log.Info("gossip started", "addr", p.addr, "seeds", p.cfg.Seeds, "profile", p.profile())
	return nil
}

func (p *Provider) profile() string {
	if p.cfg.Profile == "" {
		return DefaultConfig().Profile
	}
	return p.cfg.Profile
}

func (p *Provider) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	switch p.profile() {
	case "lan":
	case "fast":
		// Measured on loopback: a crash is declared in ~1.5 s, and a member
		// busy with -race tests on 2 cores is not falsely declared dead.
		mc.ProbeInterval = 400 * time.Millisecond
		mc.ProbeTimeout = 200 * time.Millisecond
		mc.SuspicionMult = 2
		mc.GossipInterval = 100 * time.Millisecond
		mc.TCPTimeout = 2 * time.Second
	default:
		return nil, fmt.Errorf("failure detection profile %q: want fast or lan", p.cfg.Profile)
	}
	if p.cfg.ProbeInterval > 0 {
		mc.ProbeInterval = p.cfg.ProbeInterval
	}
	if p.cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = p.cfg.ProbeTimeout
	}
	if p.cfg.SuspicionMult > 0 {
		mc.SuspicionMult = p.cfg.SuspicionMult
	}
	mc.Name = p.self.ID
	host, port, err := splitHostPort(p.cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster address: %w", err)
	}
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = host, port, port
	if p.cfg.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(p.cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("cluster advertise address: %w", err)
		}
	}
	if len(p.cfg.SecretKey) > 0 {
		switch len(p.cfg.SecretKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("gossip key: %d bytes, want 16, 24 or 32", len(p.cfg.SecretKey))
		}
		mc.SecretKey = p.cfg.SecretKey
	}
	mc.Label = p.cfg.Label
	mc.Delegate = delegate{p}
	mc.Events = events{p}
	mc.Transport = p.cfg.Transport
	mc.Logger = log.New(logWriter{p.log}, "", 0)
	return mc, nil
}

// StartClient implements cluster.ClusterProvider; every couponmesh node is a
// member.
func (p *Provider) StartClient(*cluster.Cluster) error {
	return errors.New("membership: client mode is not supported")
}

// Shutdown implements cluster.ClusterProvider: a graceful shutdown tells the
// others that this member leaves (they stop routing to it at once).
func (p *Provider) Shutdown(graceful bool) error {
	if p.ml == nil {
		return nil
	}
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	p.done.Wait()
	if graceful {
		p.announceLeave()
		if err := p.ml.Leave(2 * time.Second); err != nil {
			p.log.Warn("leave", "err", err)
		}
	}
	return p.ml.Shutdown()
}

// Members returns every member this node knows, the ones that left or died
// in the last 10 minutes included.
func (p *Provider) Members() []Member {
	var out []Member
	p.mu.Lock()
	for _, n := range p.nodes {
		out = append(out, Member{Meta: n.meta, Gossip: n.addr(), Status: "alive", Since: n.since})
	}
	for _, m := range p.gone {
		out = append(out, m)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name+out[i].ID < out[j].Name+out[j].ID })
	return out
}

// node is a member as the last memberlist event described it. memberlist's
// Members() hands out pointers to nodes it mutates without a lock, so the
// provider keeps its own copies, made inside the event callbacks.
type node struct {
	n     memberlist.Node // Name, Addr, Port, Meta: copies
	meta  Meta
	since time.Time
}

func (n node) addr() string { return n.n.Address() }

func copyNode(in *memberlist.Node) memberlist.Node {
	return memberlist.Node{Name: in.Name, Addr: slices.Clone(in.Addr), Port: in.Port, Meta: slices.Clone(in.Meta)}
}

// alive returns a copy of the alive members, self included.
func (p *Provider) alive() []node {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]node, 0, len(p.nodes))
	for _, n := range p.nodes {
		out = append(out, n)
	}
	return out
}

// Joined reports whether this member has joined a cluster: another member
// answered, or there is no seed but itself, or no seed answered for 10 s
// (it then runs alone and keeps trying; the clusters merge when one answers).
func (p *Provider) Joined() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joined
}

func (p *Provider) setJoined() {
	p.mu.Lock()
	p.joined = true
	p.mu.Unlock()
}

// Self returns this member's metadata.
func (p *Provider) Self() Meta { return p.self }

// loop publishes the member list on every memberlist event and every second
// (protoactor applies gossip-driven blocks only on a publish), and sends
// eviction notices to members protoactor blocked that memberlist still sees.
func (p *Provider) loop() {
	defer p.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		case <-t.C:
			p.notifyEvicted()
		}
		p.refresh()
	}
}

// refresh gives protoactor the alive members (memberlist's suspect members
// included: removal is permanent in protoactor, so a hiccup must not evict).
func (p *Provider) refresh() {
	var ms []*cluster.Member
	for _, n := range p.alive() {
		ms = append(ms, &cluster.Member{Id: n.meta.ID, Host: n.meta.Host, Port: int32(n.meta.Port), Kinds: n.meta.Kinds})
	}
	p.mu.Lock()
	ms = p.withGrace(ms)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Id < ms[j].Id })
	switch {
	case sameMembers(ms, p.applied):
		p.pending = time.Time{}
	case p.cfg.TopologyDelay > 0 && p.applied != nil:
		if p.pending.IsZero() {
			p.pending = time.Now()
		}
		if time.Since(p.pending) < p.cfg.TopologyDelay {
			ms = p.applied // not yet: keep the old view
		} else {
			p.pending = time.Time{}
		}
	}
	changed := !sameMembers(ms, p.applied)
	p.applied = ms
	p.mu.Unlock()
	p.publish(ms)
	// After the publish: protoactor blocks members that left on a publish.
	conflict := false
	for _, n := range p.alive() {
		if n.n.Name != p.self.ID && p.blocked(n.n.Name) {
			conflict = true
			break
		}
	}
	p.mu.Lock()
	changed = changed || conflict != p.conflict
	p.conflict = conflict
	p.mu.Unlock()
	if changed {
		if conflict {
			p.log.Warn("a member this node declared dead is alive: grains validate against the journal before every answer until it is gone")
		}
		p.churned()
	}
}

// churned tells OnChurn about a change.
func (p *Provider) churned() {
	if p.cfg.OnChurn == nil {
		return
	}
	p.mu.Lock()
	conflict := p.conflict
	p.mu.Unlock()
	p.cfg.OnChurn(conflict)
}

// withGrace adds back the members published before that memberlist no
// longer lists, for DeadGrace, unless they said they were leaving.
func (p *Provider) withGrace(ms []*cluster.Member) []*cluster.Member {
	now := map[string]bool{}
	for _, m := range ms {
		now[m.Id] = true
		delete(p.missing, m.Id)
	}
	for _, m := range p.applied {
		if now[m.Id] {
			continue
		}
		if _, ok := p.leaving[m.Id]; ok {
			delete(p.missing, m.Id)
			continue
		}
		since, ok := p.missing[m.Id]
		if !ok {
			since = time.Now()
			p.missing[m.Id] = since
			go func() { // publish again when the grace ends
				time.Sleep(p.cfg.DeadGrace)
				select {
				case p.kick <- struct{}{}:
				default:
				}
			}()
		}
		if time.Since(since) < p.cfg.DeadGrace {
			ms = append(ms, m)
		} else {
			delete(p.missing, m.Id)
		}
	}
	for id, at := range p.leaving {
		if time.Since(at) > time.Minute {
			delete(p.leaving, id)
		}
	}
	return ms
}

func sameMembers(a, b []*cluster.Member) bool {
	return slices.EqualFunc(a, b, func(x, y *cluster.Member) bool { return x.Id == y.Id })
}

// joinLoop joins the seeds until another member answers, then keeps
// re-joining seeds and known members that are not in the member list, so
// that two sides of a healed partition merge again (memberlist alone does
// not: it stops probing members it declared dead).
func (p *Provider) joinLoop() {
	defer p.done.Done()
	start := time.Now()
	if len(p.joinTargets(false)) == 0 {
		p.setJoined() // no seed but itself: the first member of a cluster
	}
	for {
		joined := p.ml.NumMembers() > 1
		if joined {
			p.setJoined()
		}
		if targets := p.joinTargets(joined); len(targets) > 0 {
			n, err := p.ml.Join(targets)
			switch {
			case n > 0 && !joined:
				p.setJoined()
				p.log.Info("joined the cluster", "contacted", n, "members", p.ml.NumMembers())
			case n > 0:
				p.log.Info("re-joined members", "contacted", n, "members", p.ml.NumMembers())
			case err != nil && !joined:
				p.log.Debug("join", "targets", targets, "err", err)
			}
		}
		if !p.Joined() && time.Since(start) > 10*time.Second {
			p.log.Warn("no seed answered for 10 s: running alone until one does", "seeds", p.cfg.Seeds)
			p.setJoined()
		}
		wait := p.cfg.RejoinInterval
		if !p.Joined() {
			wait = min(wait, time.Second)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(wait):
		}
	}
}

// joinTargets returns the seeds and known addresses that are not members
// now, self excluded.
func (p *Provider) joinTargets(joined bool) []string {
	current := map[string]bool{p.addr: true}
	for _, n := range p.alive() {
		current[n.addr()] = true
	}
	var out []string
	add := func(a string) {
		if !current[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, s := range p.cfg.Seeds {
		if ip, port, err := resolve(s); err == nil {
			add(net.JoinHostPort(ip, port))
		} else {
			add(s)
		}
	}
	if joined {
		p.mu.Lock()
		for a, seen := range p.known {
			if time.Since(seen) > time.Hour {
				delete(p.known, a)
				continue
			}
			add(a)
		}
		p.mu.Unlock()
	}
	return out
}

func resolve(hostport string) (string, string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", "", err
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), port, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", "", fmt.Errorf("resolve %s: %v", host, err)
	}
	return ips[0].String(), port, nil
}

// Eviction: protoactor blocks a member that left the member list for good.
// If memberlist sees it alive again (it was paused, or partitioned away and
// declared dead), it is a zombie still serving old activations: tell it.

const (
	evictPrefix = "couponmesh-evict:"
	leavePrefix = "couponmesh-leave:"
)

// announceLeave tells every member that this one leaves on purpose, so
// they drop it at once instead of after DeadGrace.
func (p *Provider) announceLeave() {
	var wg sync.WaitGroup
	for _, n := range p.alive() {
		if n.n.Name == p.self.ID {
			continue
		}
		wg.Go(func() { _ = p.ml.SendReliable(&n.n, []byte(leavePrefix+p.self.ID)) })
	}
	wg.Wait()
}

func (p *Provider) notifyEvicted() {
	for _, n := range p.alive() {
		name := n.n.Name
		if name == p.self.ID || !p.blocked(name) {
			continue
		}
		p.mu.Lock()
		recent := time.Since(p.lastSent[name]) < 2*time.Second
		if !recent {
			p.lastSent[name] = time.Now()
		}
		p.mu.Unlock()
		if recent {
			continue
		}
		p.log.Warn("a member this node declared dead is back; telling it to restart", "member", name, "addr", n.addr())
		go func() {
			if err := p.ml.SendReliable(&n.n, []byte(evictPrefix+p.self.ID)); err != nil {
				p.log.Debug("eviction notice", "member", name, "err", err)
			}
		}()
	}
}

// onEvictNotice counts the notice of member from. Only members this node
// sees alive vote, and it takes a majority of them: after a partition heals,
// the minority side hears from the majority (and exits), while a majority
// member hears from the minority only.
func (p *Provider) onEvictNotice(from string) {
	p.mu.Lock()
	alive := make(map[string]bool)
	for name := range p.nodes {
		if name != p.self.ID {
			alive[name] = true
		}
	}
	if alive[from] {
		p.evictedBy[from] = time.Now()
	}
	votes := 0
	for id, at := range p.evictedBy {
		if time.Since(at) > 10*time.Second || !alive[id] {
			delete(p.evictedBy, id)
			continue
		}
		votes++
	}
	fire := !p.evicted && votes > 0 && votes*2 > len(alive)
	if fire {
		p.evicted = true
	}
	p.mu.Unlock()
	p.log.Warn("another member says it declared this one dead", "by", from, "votes", votes, "peers", len(alive))
	if fire && p.cfg.OnEvicted != nil {
		p.log.Error("evicted by a majority of the cluster: this member must restart with a new identity")
		go p.cfg.OnEvicted()
	}
}

type delegate struct{ p *Provider }

func (d delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.p.self)
	if len(b) > limit {
		d.p.log.Error("node metadata too long", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d delegate) NotifyMsg(b []byte) {
	if from, ok := strings.CutPrefix(string(b), evictPrefix); ok {
		d.p.onEvictNotice(from)
	}
	if from, ok := strings.CutPrefix(string(b), leavePrefix); ok {
		d.p.mu.Lock()
		d.p.leaving[from] = time.Now()
		d.p.mu.Unlock()
	}
}

func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

type events struct{ p *Provider }

func (e events) NotifyJoin(n *memberlist.Node) { e.alive(n, true) }

func (e events) NotifyUpdate(n *memberlist.Node) { e.alive(n, false) }

func (e events) alive(n *memberlist.Node, joined bool) {
	c := copyNode(n)
	meta, err := decodeMeta(c.Meta)
	if err != nil {
		e.p.log.Warn("member with unreadable metadata ignored", "member", c.Name, "err", err)
		return
	}
	e.p.mu.Lock()
	since := e.p.nodes[c.Name].since
	if joined || since.IsZero() {
		since = time.Now()
	}
	e.p.nodes[c.Name] = node{n: c, meta: meta, since: since}
	e.p.known[c.Address()] = time.Now()
	delete(e.p.gone, c.Name)
	e.p.mu.Unlock()
	if joined {
		e.p.log.Info("member joined", "member", c.Name, "name", meta.Name, "addr", c.Address())
		e.p.churned()
	}
	e.kick()
}

func (e events) NotifyLeave(n *memberlist.Node) {
	c := copyNode(n)
	e.p.mu.Lock()
	if old, ok := e.p.nodes[c.Name]; ok {
		// memberlist hands over the node as it was before the change, so
		// whether it left or died is not known here.
		e.p.gone[c.Name] = Member{Meta: old.meta, Gossip: c.Address(), Status: "gone", Since: time.Now()}
	}
	delete(e.p.nodes, c.Name)
	for id, m := range e.p.gone {
		if time.Since(m.Since) > 10*time.Minute {
			delete(e.p.gone, id)
		}
	}
	e.p.mu.Unlock()
	e.p.log.Info("member gone (left or declared dead)", "member", c.Name, "addr", c.Address())
	e.p.churned()
	e.kick()
}

func (e events) kick() {
	select {
	case e.p.kick <- struct{}{}:
	default:
	}
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.ID == "" || m.Host == "" || m.Port == 0 {
		return m, errors.New("incomplete metadata")
	}
	return m, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, n, nil
}

// logWriter turns memberlist's "[LEVEL] memberlist: ..." lines into slog.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	line := string(bytes.TrimSpace(b))
	switch {
	case strings.Contains(line, "[ERR]"), strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	default:
		w.log.Debug(line)
	}
	return len(b), nil
}
