package webclient

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// TestSDKListsMatchTheDomain checks that the JS SDK's lists of error codes
// and coupon statuses are the domain's (the closed lists of protocol v1).
func TestSDKListsMatchTheDomain(t *testing.T) {
	src, err := os.ReadFile("src/sdk/errors.js")
	if err != nil {
		t.Fatal(err)
	}
	list := func(name string) []string {
		m := regexp.MustCompile(`(?s)export const ` + name + ` = Object\.freeze\(\[(.*?)\]\)`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("errors.js has no %s", name)
		}
		var out []string
		for _, q := range regexp.MustCompile(`'([a-z_]+)'`).FindAllSubmatch(m[1], -1) {
			out = append(out, string(q[1]))
		}
		return out
	}
	var codes []string
	for _, c := range couponmesh.Codes {
		codes = append(codes, string(c))
	}
	if got := list("ERROR_CODES"); !slices.Equal(got, codes) {
		t.Errorf("JS SDK ERROR_CODES %v, domain %v", got, codes)
	}
	statuses := []string{string(couponmesh.StatusScheduled), string(couponmesh.StatusActive), string(couponmesh.StatusSoldOut),
		string(couponmesh.StatusExpired), string(couponmesh.StatusWithdrawn)}
	got := list("COUPON_STATUSES")
	if !slices.Equal(got, statuses) {
		t.Errorf("JS SDK COUPON_STATUSES %v, want %v", got, statuses)
	}
	for _, s := range got {
		if !couponmesh.Status(s).Valid() {
			t.Errorf("JS SDK status %q is not a domain status", s)
		}
	}
}

// TestSDKSubprotocol checks the JS SDK's subprotocol against protocol v1's.
// The frames themselves are checked by test/golden.test.js against the
// golden frames of protocol/testdata.
func TestSDKSubprotocol(t *testing.T) {
	src, err := os.ReadFile("src/sdk/client.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`export const SUBPROTOCOL = '([^']*)'`).FindSubmatch(src)
	if m == nil || string(m[1]) != protocol.Subprotocol {
		t.Fatalf("JS SDK SUBPROTOCOL %q, protocol v1 %q", m, protocol.Subprotocol)
	}
}
