package clustertest_test

import (
	"bufio"
	"os/exec"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/cluster/clustertest"
)

func TestLaunchTerminate(t *testing.T) {
	p, err := clustertest.Launch("sleep", exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Running() {
		t.Fatal("not running after Launch")
	}
	if killed := p.Terminate(10 * time.Second); killed {
		t.Fatal("sleep needed SIGKILL after SIGTERM")
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Terminate")
	}
	if p.Err() == nil {
		t.Fatal("want the exit error of a process ended by SIGTERM")
	}
	if p.Terminate(time.Second) {
		t.Fatal("Terminate of an exited process killed")
	}
}

// A process that ignores SIGTERM is killed after the wait.
func TestTerminateKills(t *testing.T) {
	cmd := exec.Command("sh", "-c", `trap "" TERM; echo up; while :; do sleep 0.1; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := clustertest.Launch("stubborn", cmd)
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "up\n" { // the trap is set
		t.Fatalf("got %q, want up", line)
	}
	if !p.Terminate(500 * time.Millisecond) {
		t.Fatal("a process ignoring SIGTERM was not killed")
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Terminate")
	}
}
