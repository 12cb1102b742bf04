package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/transport/transporttest"
)

// TestFrameSentWithTheHandshake: a client that sends its first frame in the
// same packet as the upgrade request (nothing forbids it) gets it read: the
// bytes net/http buffered move to the session's own reader.
func TestFrameSentWithTheHandshake(t *testing.T) {
	hub := transporttest.NewHub()
	srv := httptest.NewServer(NewHandler(LocalConfig(), transporttest.NewService(hub), hub, nil, nil, nil))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))

	var out bytes.Buffer
	out.WriteString("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + Subprotocol + "\r\n\r\n")
	payload := []byte(`{"id":1,"op":"ping"}`)
	mask := [4]byte{1, 2, 3, 4}
	out.Write([]byte{0x81, 0x80 | byte(len(payload))})
	out.Write(mask[:])
	for i, b := range payload {
		out.WriteByte(b ^ mask[i%4])
	}
	if _, err := c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}

	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	if got := string(body); hdr[0] != 0x81 || !strings.Contains(got, `"id":1,"ok"`) {
		t.Fatalf("frame %#x %q, want the ping's reply", hdr[0], got)
	}
}
