package node_test

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// ownProcessEnv names, in a child test process, the one test it runs.
const ownProcessEnv = "COUPONMESH_NODE_TEST"

// inOwnProcess runs the calling test in a process of its own (this test
// binary again, -race and all, running only that test) and reports true in
// the parent, which then returns; in the child it reports false and the
// test runs. Every test here that starts a node calls it: protoactor's
// remote sets grpc's global logger in Start while the endpoint writers of
// a node an earlier test stopped may still be dialing and reading it, a
// race -race reports inside the libraries. (DESIGN.md runs multi-member
// tests as separate processes for the same kind of reason; members one
// after another in one process trip it too.)
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(ownProcessEnv) == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), ownProcessEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in its own process: %v\n%s", t.Name(), err, out)
	}
	if testing.Verbose() {
		t.Logf("in its own process:\n%s", out)
	}
	return true
}
