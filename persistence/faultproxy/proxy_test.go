package faultproxy_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/persistence/faultproxy"
)

// echo serves lines back until the listener closes.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line over a new connection and waits up to d for it.
func roundTrip(t *testing.T, addr string, d time.Duration) error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestModes(t *testing.T) {
	p, err := faultproxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := roundTrip(t, p.Addr(), time.Second); err != nil {
		t.Fatalf("forward: %v", err)
	}
	for _, m := range []faultproxy.Mode{faultproxy.BlackHole, faultproxy.DropReplies} {
		p.SetMode(m)
		err := roundTrip(t, p.Addr(), 200*time.Millisecond)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("mode %d: %v, want a timeout (silence, not a reset)", m, err)
		}
		p.SetMode(faultproxy.Forward)
		if err := roundTrip(t, p.Addr(), time.Second); err != nil {
			t.Fatalf("forward again after mode %d: %v", m, err)
		}
	}
}

// TestDown: open connections are closed and new ones fail at once, not by
// a timeout; forwarding resumes afterwards.
func TestDown(t *testing.T) {
	p, err := faultproxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	p.SetMode(faultproxy.Down)
	_ = open.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection open when the proxy went down: read %v, want it closed", err)
	}
	start := time.Now()
	err = roundTrip(t, p.Addr(), time.Second)
	if err == nil || isTimeout(err) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("new connection while down: %v after %v, want a prompt failure", err, time.Since(start))
	}
	p.SetMode(faultproxy.Forward)
	if err := roundTrip(t, p.Addr(), time.Second); err != nil {
		t.Fatalf("forward again after down: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestCutNextReply(t *testing.T) {
	p, err := faultproxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	p.CutNextReply()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("b\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("got %q after the cut, want the connection closed", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%v: want the connection closed, not silence", err)
	}
	if err := roundTrip(t, p.Addr(), time.Second); err != nil {
		t.Fatalf("a new connection after the cut: %v", err)
	}
}

// CutReplyTo cuts the reply to the first request carrying the bytes, also
// on a connection opened after the call, and leaves other traffic alone.
func TestCutReplyTo(t *testing.T) {
	p, err := faultproxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.CutReplyTo([]byte("insert"))
	if err := roundTrip(t, p.Addr(), time.Second); err != nil {
		t.Fatalf("other traffic: %v", err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("insert b\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatalf("got %q after the cut, want the connection closed", line)
	} else if isTimeout(err) {
		t.Fatalf("%v: want the connection closed, not silence", err)
	}
	if err := roundTrip(t, p.Addr(), time.Second); err != nil {
		t.Fatalf("a new connection after the cut: %v", err)
	}
}
