package clustertest

import (
	"errors"
	"net"
	"sync"
)

// handedOut holds the addresses FreeAddr returned: the kernel may give a
// port that was free a moment ago to the next listen on port 0 as well, and
// two listeners of one process given the same address fail at start.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: make(map[string]bool)}

// FreeAddr returns a 127.0.0.1 address whose port was free just now and that
// it has not returned before in this process.
func FreeAddr() (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port not handed out before in 100 tries")
}
