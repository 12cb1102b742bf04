// Package faultproxy is a TCP proxy for tests that simulates network faults
// between a client and a database on loopback: it forwards, black-holes
// (connections stay open, nothing gets through in either direction), drops
// only the replies (requests reach the server, answers are lost: a write
// whose outcome the client cannot know), or plays a database that is gone
// (every connection closed at once).
//
// It imports the standard library only. A Proxy's methods may be called from
// any goroutine.
package faultproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Mode is what the proxy does with traffic.
type Mode int32

const (
	// Forward passes everything through.
	Forward Mode = iota
	// BlackHole accepts connections and reads from both sides but delivers
	// nothing: peers see silence, not a reset.
	BlackHole
	// DropReplies delivers client to server traffic and discards the
	// server's replies.
	DropReplies
	// Down closes the open connections and every new one as soon as it is
	// accepted: peers fail at once, as against a database process that is
	// gone. (A black hole makes the MongoDB driver time out, and its pool
	// clear after timeouts races with connections being set up: -race
	// reports it in go.mongodb.org/mongo-driver/v2 v2.10.0, x/mongo/driver/
	// topology, connection.connect against pool.removeConnection. Tests of
	// the layers in the test process use Down; the node's black-hole test
	// runs the node as a process of its own.)
	Down
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	target string
	ln     net.Listener
	mode   atomic.Int32

	cutTo atomic.Pointer[[]byte] // CutReplyTo's request bytes, until a request has them

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cuts  map[*atomic.Bool]struct{} // one per forwarded connection
	wg    sync.WaitGroup
}

// Start listens on 127.0.0.1:0 and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[net.Conn]struct{}), cuts: make(map[*atomic.Bool]struct{})}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches the mode. Leaving BlackHole or DropReplies closes every
// open connection: their streams lost bytes and cannot carry on, as a real
// connection through a broken path would eventually be reset. Entering Down
// closes them too.
func (p *Proxy) SetMode(m Mode) {
	old := Mode(p.mode.Swap(int32(m)))
	if old != Forward && m == Forward || m == Down {
		p.closeConns()
	}
}

// CutNextReply arms every connection open now: the next reply the server
// sends on it is dropped and the connection is closed at once (the request
// reached the server; the client sees the connection lost without an
// answer). Connections opened later are not affected.
func (p *Proxy) CutNextReply() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cut := range p.cuts {
		cut.Store(true)
	}
}

// CutReplyTo arms the proxy for one request: the next one whose bytes
// contain request, on a connection open now or later, reaches the server,
// and its reply is dropped and its connection closed. Unlike CutNextReply
// it cannot hit another connection's traffic first (a MongoDB driver's
// heartbeats, which would make it clear its pool).
func (p *Proxy) CutReplyTo(request []byte) { p.cutTo.Store(&request) }

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.closeConns()
	p.wg.Wait()
	return err
}

func (p *Proxy) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *Proxy) serve(client net.Conn) {
	p.track(client)
	defer p.untrack(client)
	defer client.Close()
	switch Mode(p.mode.Load()) {
	case Down:
		return
	case BlackHole:
		// Nothing behind it: swallow until the mode changes.
		_, _ = io.Copy(io.Discard, client)
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(server)
	defer p.untrack(server)
	defer server.Close()
	cut := new(atomic.Bool)
	p.mu.Lock()
	p.cuts[cut] = struct{}{}
	p.mu.Unlock()
	defer func() { p.mu.Lock(); delete(p.cuts, cut); p.mu.Unlock() }()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client, false, cut); server.Close() })
	wg.Go(func() { p.pipe(client, server, true, cut); client.Close() })
	wg.Wait()
}

// pipe copies src to dst while the mode lets this direction through. On
// the reply side, when cut is set, the next chunk is dropped and the pipe
// ends (closing both); the request side sets cut for CutReplyTo.
func (p *Proxy) pipe(dst, src net.Conn, reply bool, cut *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && reply && cut.Swap(false) {
			return
		}
		if n > 0 && !reply {
			if want := p.cutTo.Load(); want != nil && bytes.Contains(buf[:n], *want) && p.cutTo.CompareAndSwap(want, nil) {
				cut.Store(true)
			}
		}
		if n > 0 {
			m := Mode(p.mode.Load())
			if m == Forward || (m == DropReplies && !reply) {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
