// Package clustertest runs couponmesh as real processes for tests: the
// binary built once per test process, the embedded database (`couponmesh
// devdb`) and nodes, each optionally in a network namespace of
// internal/netlab, with the controls a fault test needs (kill -9, SIGSTOP
// and SIGCONT, drain) and the views it polls (readiness, members).
//
// Every process it starts is stopped by its PID when the test ends (SIGTERM,
// then SIGKILL after a deadline, reported as a failure); a DB or Node
// started again (Restart) is stopped where the first process would have
// been. It may import the standard library, internal/netlab and
// internal/testutil only. Not safe for concurrent use but for the methods
// of Node and DB that only read.
package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/internal/netlab"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary builds ./cmd/couponmesh (without -race, as it runs in production)
// once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "couponmesh-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "couponmesh")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/couponmesh")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// RemoveBinary deletes what Binary built (a TestMain calls it last).
func RemoveBinary() {
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// AdminToken is the admin token of the nodes Start starts.
const AdminToken = "clustertest-admin-token"

// JWTSecret is the nodes' token secret (dev login is on).
const JWTSecret = "clustertest-secret-0123456789abcdef0123"

// Proc is a child process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start starts cmd. StartDB and LaunchNode register the cleanup that stops
// it, once for the DB or Node and not per process, so that one started
// again is stopped in the order of the first (after what the test set up
// later, before what it set up earlier).
func start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited is closed when the process has exited; Err then says how.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Err is the process's exit error (nil: status 0); valid once Exited.
func (p *Proc) Err() error { <-p.done; return p.err }

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil && p.Running() {
		t.Fatalf("%s: signal %v: %v", p.Name, sig, err)
	}
}

// Kill kills the process (SIGKILL) and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM (and SIGCONT, in case it is stopped) and waits up to
// wait, then kills it and fails the test.
func (p *Proc) Stop(t testing.TB, wait time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(wait):
		t.Errorf("%s did not stop on SIGTERM within %s; killing it", p.Name, wait)
		p.Kill()
	}
}

func command(host *netlab.Host, bin string, args ...string) *exec.Cmd {
	if host != nil {
		return host.Command(bin, args...)
	}
	return exec.Command(bin, args...)
}

// DB is `couponmesh devdb` as a child process.
type DB struct {
	*Proc
	Addr, Dir string
	host      *netlab.Host
	bin       string
}

// StartDB starts the embedded database on addr (in host's namespace when
// host is set), with its files in dir, and waits until it listens.
func StartDB(t testing.TB, host *netlab.Host, addr, dir string) *DB {
	t.Helper()
	db := &DB{Addr: addr, Dir: dir, host: host, bin: Binary(t)}
	db.Restart(t)
	t.Cleanup(func() { db.Stop(t, 30*time.Second) })
	return db
}

// Restart starts the database again (after Kill) on the same address and
// directory, and waits until it listens. The process is stopped when the
// test ends, as the first one would have been.
func (db *DB) Restart(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cmd := command(db.host, db.bin, "devdb", "--addr", db.Addr, "--data", db.Dir, "--log-level", "warn")
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := start(t, "devdb", cmd)
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.HasPrefix(line, "devdb listening") {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			db.Proc = p
			return
		}
		<-p.done // the port of a killed process can take a moment to be free
		if time.Now().After(deadline) {
			t.Fatalf("devdb on %s did not start: %q", db.Addr, line)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// URI is the database's MongoDB URI.
func (db *DB) URI() string { return "mongodb://" + db.Addr + "/" }

// NodeConfig says how to start a node.
type NodeConfig struct {
	Name  string
	Host  *netlab.Host // nil: loopback, on the ports given
	HTTP  string       // host:port of the public listener (with Host: Host.Addr(8080) when empty)
	Admin string       // admin listener (with Host: Host.Addr(8081))
	// Gossip is the memberlist address (with Host: Host.Addr(7946)); the
	// protoactor remote listens on Host.Addr(8090), or 127.0.0.1:0.
	Gossip string
	Seeds  []string
	DB     string   // MongoDB URI (empty: the node's default, its embedded database)
	Env    []string // more COUPONMESH_* settings; they win over the ones StartNode sets
	Log    io.Writer
	// DataDir is the node's data directory (empty: a new t.TempDir()); a
	// node started again on the same one finds what it kept there.
	DataDir string
}

// Node is a node process.
type Node struct {
	*Proc
	HTTP, Admin, Gossip string
	cfg                 NodeConfig
}

// StartNode starts a node and waits up to 60 s until it is ready (/readyz);
// it fails the test if the node exits or is not ready by then.
func StartNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	n := LaunchNode(t, cfg)
	n.WaitReady(t, 60*time.Second)
	return n
}

// LaunchNode starts a node and returns at once, without waiting until it is
// ready (nodes that name each other as seeds start together this way); call
// WaitReady next.
func LaunchNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	if h := cfg.Host; h != nil {
		cfg.HTTP, cfg.Admin, cfg.Gossip = or(cfg.HTTP, h.Addr(8080)), or(cfg.Admin, h.Addr(8081)), or(cfg.Gossip, h.Addr(7946))
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	n := &Node{HTTP: cfg.HTTP, Admin: cfg.Admin, Gossip: cfg.Gossip, cfg: cfg}
	n.launch(t)
	t.Cleanup(func() { n.Stop(t, 30*time.Second) })
	return n
}

// Restart starts the node again (after Kill, or once it exited) with the
// same configuration, addresses and data directory, and waits up to 60 s
// until it is ready. The process is stopped when the test ends, as the
// first one would have been.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.launch(t)
	n.WaitReady(t, 60*time.Second)
}

func (n *Node) launch(t testing.TB) {
	t.Helper()
	cfg := n.cfg
	remote := "127.0.0.1:0"
	if cfg.Host != nil {
		remote = cfg.Host.Addr(8090)
	}
	cmd := command(cfg.Host, Binary(t), "node")
	cmd.Env = append(os.Environ(),
		"COUPONMESH_NODE_NAME="+cfg.Name, "COUPONMESH_HTTP_ADDR="+cfg.HTTP, "COUPONMESH_ADMIN_ADDR="+cfg.Admin,
		"COUPONMESH_ADMIN_TOKEN="+AdminToken, "COUPONMESH_CLUSTER_ADDR="+cfg.Gossip, "COUPONMESH_REMOTE_ADDR="+remote,
		"COUPONMESH_SEEDS="+strings.Join(cfg.Seeds, ","), "COUPONMESH_MONGO_URI="+cfg.DB, "COUPONMESH_DATA_DIR="+cfg.DataDir,
		"COUPONMESH_DEV=true", "COUPONMESH_JWT_SECRET="+JWTSecret, "COUPONMESH_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, cfg.Env...)
	w := cfg.Log
	if w == nil {
		w = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = w, w
	n.Proc = start(t, cfg.Name, cmd)
}

// WaitReady waits up to within until the node answers /readyz with 200; it
// fails the test at once if the node exits.
func (n *Node) WaitReady(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for n.Ready() != nil {
		if !n.Running() || time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v (running %v)", n.Name, n.Ready(), n.Running())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Ready returns nil when the node answers /readyz with 200.
func (n *Node) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d", resp.StatusCode)
	}
	return nil
}

// Member is a member as a node's admin API lists it.
type Member struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Status string `json:"status"` // alive, suspect, gone
}

// Members returns the members the node knows.
func (n *Node) Members() ([]Member, error) {
	var res struct {
		Members []Member `json:"members"`
	}
	return res.Members, n.AdminCall(http.MethodGet, "/admin/api/members", &res)
}

// Alive returns the names of the members the node sees alive.
func (n *Node) Alive() ([]string, error) {
	ms, err := n.Members()
	var out []string
	for _, m := range ms {
		if m.Status == "alive" {
			out = append(out, m.Name)
		}
	}
	return out, err
}

// AdminCall calls the node's admin API and decodes the JSON answer into
// out (nil: ignored).
func (n *Node) AdminCall(method, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.Admin+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// WaitAlive waits until n sees want members alive and none suspect.
func (n *Node) WaitAlive(t testing.TB, want int, within time.Duration) {
	t.Helper()
	testutil.CheckFor(t, within, fmt.Sprintf("%s sees %d members alive, none suspect", n.Name, want), func() error {
		ms, err := n.Members()
		if err != nil {
			return err
		}
		alive, suspect := 0, 0
		for _, m := range ms {
			switch m.Status {
			case "alive":
				alive++
			case "suspect":
				suspect++
			}
		}
		if alive != want || suspect != 0 {
			return fmt.Errorf("%d alive, %d suspect", alive, suspect)
		}
		return nil
	})
}
