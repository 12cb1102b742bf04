package client

import (
	"slices"
	"testing"
)

func TestNodeURL(t *testing.T) {
	for _, tc := range []struct {
		addr, like, want string
	}{
		{"10.0.0.2:8080", "ws://10.0.0.1:8080/ws", "ws://10.0.0.2:8080/ws"},
		{"10.0.0.2:8080", "wss://a.example/couponmesh/ws", "wss://10.0.0.2:8080/couponmesh/ws"},
		{"node-b:8080", "https://a.example/ws", "wss://node-b:8080/ws"},
		{"[::1]:8080", "ws://127.0.0.1:1/ws", "ws://[::1]:8080/ws"},
		{"b.example", "", "ws://b.example/ws"},
		{"b.example:81/other", "ws://a/ws", "ws://b.example:81/other"},
		{"http://b:1", "wss://a/ws", "ws://b:1/ws"},
		{"wss://b:1/x", "ws://a/ws", "wss://b:1/x"},
		{" b:1 ", "ws://a/ws", "ws://b:1/ws"},
		{"", "ws://a/ws", ""},
		{"ftp://b:1", "ws://a/ws", ""},
		{"user@b:1", "ws://a/ws", ""},
		{"b:1?x=1", "ws://a/ws", ""},
		{"not an address!", "ws://a/ws", ""},
	} {
		got, ok := nodeURL(tc.addr, tc.like)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("nodeURL(%q, %q) = %q, %v; want %q", tc.addr, tc.like, got, ok, tc.want)
		}
	}
}

func TestHandoverURLs(t *testing.T) {
	got := handoverURLs("10.0.0.2:8080,10.0.0.3:8080 ; 10.0.0.2:8080,, bogus!", "ws://10.0.0.1:8080/ws")
	want := []string{"ws://10.0.0.2:8080/ws", "ws://10.0.0.3:8080/ws"}
	if !slices.Equal(got, want) {
		t.Fatalf("handoverURLs = %q, want %q", got, want)
	}
	if got := handoverURLs("", "ws://a/ws"); got != nil {
		t.Fatalf("empty reason: %q", got)
	}
	// A node with no other node to name says so in prose.
	if got := handoverURLs("node draining", "ws://a/ws"); got != nil {
		t.Fatalf("\"node draining\": %q, want no address", got)
	}
	if got, want := handoverURLs("wss://b.example/ws, c.example:9000/x", "ws://a/ws"), []string{"wss://b.example/ws", "ws://c.example:9000/x"}; !slices.Equal(got, want) {
		t.Fatalf("URL and host:port with a path: %q, want %q", got, want)
	}
}
