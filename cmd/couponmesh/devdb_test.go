package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/internal/netlab"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// dbProc is `couponmesh devdb` running as a real child process, so that a
// test can kill -9 it and start it again on the same address and directory.
type dbProc struct {
	bin, addr, dir string
	host           *netlab.Host // nil: the test's own network namespace
	cmd            *exec.Cmd
}

func startDBProc(t testing.TB, bin, addr, dir string) *dbProc {
	t.Helper()
	p := &dbProc{bin: bin, addr: addr, dir: dir}
	p.start(t)
	t.Cleanup(func() { p.stop(t) })
	return p
}

// start runs the process and waits for its "listening" line.
func (p *dbProc) start(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		args := []string{"devdb", "--addr", p.addr, "--data", p.dir, "--log-level", "warn"}
		if p.host != nil {
			p.cmd = p.host.Command(p.bin, args...)
		} else {
			p.cmd = exec.Command(p.bin, args...)
		}
		p.cmd.Stderr = os.Stderr
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.HasPrefix(line, "devdb listening") {
			go func() { _, _ = bufio.NewReader(out).WriteTo(devNull{}) }()
			return
		}
		// The port of a killed process can take a moment to be free again.
		_ = p.cmd.Wait()
		if time.Now().After(deadline) {
			t.Fatalf("devdb on %s did not start", p.addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type devNull struct{}

func (devNull) Write(b []byte) (int, error) { return len(b), nil }

// kill sends SIGKILL: FerretDB gets no chance to close anything.
func (p *dbProc) kill(t testing.TB) { killCmd(p.cmd) }

func (p *dbProc) stop(t testing.TB) { stopCmd(t, p.cmd, 20*time.Second, "devdb") }

func (p *dbProc) uri() string { return "mongodb://" + p.addr + "/" }

// TestDevDBProcessKillRestart: the devdb subcommand serves the MongoDB wire
// protocol, survives kill -9 with what it acknowledged, and starts again on
// the same port and directory.
func TestDevDBProcessKillRestart(t *testing.T) {
	bin := nodeBinary(t)
	p := startDBProc(t, bin, testAddr(t), t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(p.uri()).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("t").Collection("c")
	for i := range 10 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	p.kill(t)
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after kill")
	}
	p.start(t)
	for i := range 10 {
		var d bson.M
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint(i)}}).Decode(&d); err != nil {
			t.Fatalf("doc %d after restart: %v", i, err)
		}
	}
}
