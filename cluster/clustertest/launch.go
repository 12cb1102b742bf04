package clustertest

import (
	"os/exec"
	"syscall"
	"time"
)

// Launch starts cmd as a Proc outside a test: for `couponmesh bench`,
// which runs the same processes from the binary itself. Unlike the Start
// functions, nothing stops it when a test ends: the caller must call
// Terminate (or Kill). Its Running, Exited, Err and Kill work as for a Proc
// a test started; Signal and Stop need a testing.TB.
func Launch(name string, cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Name: name, Cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Terminate is Stop without a test: it sends SIGTERM (and SIGCONT, in case
// the process is stopped), waits up to wait, then kills it. It reports
// whether it had to kill. It returns at once when the process has exited.
func (p *Proc) Terminate(wait time.Duration) (killed bool) {
	if !p.Running() {
		return false
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return false
	case <-time.After(wait):
		p.Kill()
		return true
	}
}
