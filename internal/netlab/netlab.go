// Package netlab builds a small network of Linux network namespaces for
// tests of real network faults: hosts (a namespace each, with loopback up
// and one veth on a private bridge) whose traffic to each other can be cut
// with iptables and healed again, while the test process (in the root
// namespace) still reaches every host over the bridge.
//
// It runs iproute2's ip and iptables (Debian packages iproute2 and
// iptables) and needs root: CI runs as root, and .ci/run installs both. A
// Lab removes everything it created when its test ends, also when the test
// fails; namespaces and bridges left by a process that died (kill -9 of a
// test binary) are removed by the next New.
//
// Addresses are 10.<a>.<b>.0/24 with a and b taken from the process ID
// and the Lab's number,
// checked free against the machine's own addresses: traffic stays on the
// bridge and in the namespaces the Lab made.
//
// It may import only the standard library. Not safe for concurrent use
// except Cut and Heal, which serialise themselves.
package netlab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// The tools, resolved by New: /usr/sbin may be missing from PATH.
var ipPath, iptablesPath = "ip", "iptables"

func lookTool(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var labs atomic.Int64 // Labs made by this process

// Lab is a bridge in the root namespace and the hosts attached to it.
type Lab struct {
	t      testing.TB
	id     string // "cm<pid>": prefix of every name the Lab creates
	bridge string
	subnet string // "10.a.b."
	hosts  []*Host
	mu     sync.Mutex
	cuts   map[[2]string]bool
}

// Host is one network namespace with one address on the Lab's bridge.
type Host struct {
	Name string // as given to Host
	NS   string // the namespace's name
	IP   string // its address on the bridge
	lab  *Lab
}

// New creates the bridge (address .1 of the Lab's subnet) and registers
// its removal with t.Cleanup. It fails the test when not root or when ip
// or iptables is missing.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netlab: network namespaces need root (CI runs as root)")
	}
	for _, tool := range []*string{&ipPath, &iptablesPath} {
		p, err := lookTool(*tool)
		if err != nil {
			t.Fatalf("netlab: %v: install Debian's iproute2 and iptables (.ci/run does)", err)
		}
		*tool = p
	}
	removeOrphans(t)
	pid := os.Getpid()
	// A letter per Lab of this process: a removed namespace's veth pair
	// can outlive the Lab for a moment, and its names must not be taken.
	seq := int(labs.Add(1) - 1)
	l := &Lab{t: t, id: "cm" + strconv.Itoa(pid) + string(rune('a'+seq%26)), cuts: map[[2]string]bool{}}
	l.bridge = l.id + "br"
	l.subnet = freeSubnet(t, pid+seq*104729)
	t.Cleanup(l.close)
	l.run(ipPath, "link", "add", l.bridge, "type", "bridge")
	l.run(ipPath, "addr", "add", l.subnet+"1/24", "dev", l.bridge)
	l.run(ipPath, "link", "set", l.bridge, "up")
	return l
}

// Gateway is the root namespace's address on the bridge: where hosts reach
// servers of the test process itself.
func (l *Lab) Gateway() string { return l.subnet + "1" }

// Host creates a namespace attached to the bridge, at the next address.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	i := len(l.hosts) + 2
	h := &Host{Name: name, NS: l.id + "-" + name, IP: l.subnet + strconv.Itoa(i), lab: l}
	outer, inner := l.id+"h"+strconv.Itoa(i), l.id+"n"+strconv.Itoa(i)
	l.run(ipPath, "netns", "add", h.NS)
	l.hosts = append(l.hosts, h)
	l.run(ipPath, "link", "add", outer, "type", "veth", "peer", "name", inner)
	l.run(ipPath, "link", "set", inner, "netns", h.NS)
	l.run(ipPath, "link", "set", outer, "master", l.bridge, "up")
	h.run(ipPath, "link", "set", "lo", "up")
	h.run(ipPath, "addr", "add", h.IP+"/24", "dev", inner)
	h.run(ipPath, "link", "set", inner, "up")
	return h
}

// Command returns a command that runs name in h's namespace. ip netns exec
// replaces itself with the program, so the command's PID is the program's:
// signals (kill -9, SIGSTOP) reach it directly.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(ipPath, append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Addr returns h's address with port.
func (h *Host) Addr(port int) string { return net.JoinHostPort(h.IP, strconv.Itoa(port)) }

// Cut drops every packet between a and b, both ways (as a failed link
// would: no refusal, no reset), until Heal.
func (l *Lab) Cut(a, b *Host) { l.setCut(a, b, true) }

// Heal lets a and b reach each other again.
func (l *Lab) Heal(a, b *Host) { l.setCut(a, b, false) }

func (l *Lab) setCut(a, b *Host, on bool) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	key := [2]string{a.NS, b.NS}
	if a.NS > b.NS {
		key = [2]string{b.NS, a.NS}
	}
	if l.cuts[key] == on {
		return
	}
	op := "-I"
	if !on {
		op = "-D"
	}
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		p[0].run(iptablesPath, op, "INPUT", "-s", p[1].IP, "-j", "DROP")
		p[0].run(iptablesPath, op, "OUTPUT", "-d", p[1].IP, "-j", "DROP")
	}
	l.cuts[key] = on
}

// Loss drops percent % of the packets of proto (udp, tcp) that h receives
// on port, at random, until NoLoss with the same arguments.
func (l *Lab) Loss(h *Host, proto string, port, percent int) { l.loss(h, "-I", proto, port, percent) }

// NoLoss ends a Loss.
func (l *Lab) NoLoss(h *Host, proto string, port, percent int) { l.loss(h, "-D", proto, port, percent) }

func (l *Lab) loss(h *Host, op, proto string, port, percent int) {
	l.t.Helper()
	h.run(iptablesPath, op, "INPUT", "-p", proto, "--dport", strconv.Itoa(port),
		"-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.4f", float64(percent)/100), "-j", "DROP")
}

func (h *Host) run(args ...string) {
	h.lab.t.Helper()
	h.lab.run(append([]string{ipPath, "netns", "exec", h.NS}, args...)...)
}

func (l *Lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// close removes the namespaces (their veth ends and iptables rules go with
// them) and the bridge. Processes still running in a namespace keep it
// alive until they exit: tests stop theirs first (t.Cleanup runs in reverse
// order, so processes started after New are stopped before this runs).
func (l *Lab) close() {
	for _, h := range l.hosts {
		if out, err := exec.Command(ipPath, "netns", "delete", h.NS).CombinedOutput(); err != nil {
			l.t.Errorf("netlab: remove namespace %s: %v\n%s", h.NS, err, out)
		}
	}
	if out, err := exec.Command(ipPath, "link", "delete", l.bridge).CombinedOutput(); err != nil {
		l.t.Errorf("netlab: remove bridge %s: %v\n%s", l.bridge, err, out)
	}
}

// removeOrphans deletes namespaces and bridges named cm<pid>… whose
// process is gone.
func removeOrphans(t testing.TB) {
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(name, "cm")
		if !ok {
			return false
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end <= 0 {
			return false
		}
		pid, _ := strconv.Atoi(rest[:end])
		return pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	if out, err := exec.Command(ipPath, "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && dead(f[0]) {
				t.Logf("netlab: removing namespace %s left by a process that died", f[0])
				_ = exec.Command(ipPath, "netns", "delete", f[0]).Run()
			}
		}
	}
	if out, err := exec.Command(ipPath, "-br", "link", "show", "type", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && dead(f[0]) {
				t.Logf("netlab: removing bridge %s left by a process that died", f[0])
				_ = exec.Command(ipPath, "link", "delete", f[0]).Run()
			}
		}
	}
}

// freeSubnet picks 10.a.b.0/24 from pid, skipping any that overlaps an
// address of this machine.
func freeSubnet(t testing.TB, pid int) string {
	out, err := exec.Command(ipPath, "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("netlab: ip addr: %v", err)
	}
	for i := range 256 {
		n := (pid + i*7919) % (200 * 256)
		prefix := fmt.Sprintf("10.%d.%d.", 40+n/256, n%256)
		if !bytes.Contains(out, []byte(" "+prefix)) {
			return prefix
		}
	}
	t.Fatal("netlab: no free 10.x.y.0/24 subnet")
	return ""
}
