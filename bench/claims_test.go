package bench

import "testing"

func TestClaimPairUnique(t *testing.T) {
	for _, tc := range []struct{ users, coupons int }{{1, 1}, {3, 7}, {7, 3}, {500, 200}} {
		seen := make(map[[2]int]bool)
		for k := range tc.users * tc.coupons {
			u, c := claimPair(k, tc.users, tc.coupons)
			if u < 0 || u >= tc.users || c < 0 || c >= tc.coupons {
				t.Fatalf("%d users, %d coupons: claim %d -> (%d, %d) out of range", tc.users, tc.coupons, k, u, c)
			}
			if seen[[2]int{u, c}] {
				t.Fatalf("%d users, %d coupons: claim %d repeats (%d, %d)", tc.users, tc.coupons, k, u, c)
			}
			seen[[2]int{u, c}] = true
		}
	}
}

func TestFmtCodes(t *testing.T) {
	if got := fmtCodes(nil); got != "none" {
		t.Errorf("nil: %q", got)
	}
	if got, want := fmtCodes(map[string]int{"unavailable": 2, "sold_out": 950}), "sold_out 950, unavailable 2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
