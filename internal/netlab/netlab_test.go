package netlab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the program run inside the namespaces:
// NETLAB_SERVE=addr makes it an echo server, NETLAB_DIAL=addr a client
// that prints "ok" when the server answered within a second.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETLAB_SERVE"); addr != "" {
		serve(addr)
		return
	}
	if addr := os.Getenv("NETLAB_DIAL"); addr != "" {
		fmt.Println(dial(addr))
		return
	}
	os.Exit(m.Run())
}

func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte(line))
		}()
	}
}

func dial(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "write: " + err.Error()
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		return fmt.Sprintf("read %q: %v", line, err)
	}
	return "ok"
}

// A cut between two hosts drops their traffic both ways while the root
// namespace still reaches both; a heal restores it; the Lab leaves no
// namespace or bridge behind.
func TestCutAndHeal(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		a, b := l.Host("a"), l.Host("b")
		names = []string{a.NS, b.NS, l.bridge}
		srv := a.Command(os.Args[0])
		srv.Env = append(os.Environ(), "NETLAB_SERVE="+a.Addr(7000))
		out, err := srv.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "listening\n" {
			t.Fatalf("server in %s: %q", a.NS, line)
		}
		fromB := func() string {
			cmd := b.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "NETLAB_DIAL="+a.Addr(7000))
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("client in %s: %v", b.NS, err)
			}
			return strings.TrimSpace(string(out))
		}
		fromRoot := func() string { return dial(a.Addr(7000)) }

		if got := fromB(); got != "ok" {
			t.Fatalf("b to a before the cut: %s", got)
		}
		l.Cut(a, b)
		if got := fromB(); got == "ok" {
			t.Fatal("b reached a through the cut")
		}
		if got := fromRoot(); got != "ok" {
			t.Fatalf("the root namespace to a during the cut: %s", got)
		}
		l.Heal(a, b)
		if got := fromB(); got != "ok" {
			t.Fatalf("b to a after the heal: %s", got)
		}
	})
	links, _ := exec.Command(ipPath, "-br", "link").Output()
	netns, _ := exec.Command(ipPath, "netns", "list").Output()
	for _, n := range names {
		if strings.Contains(string(links), n) || strings.Contains(string(netns), n) {
			t.Errorf("%s left behind", n)
		}
	}
}
