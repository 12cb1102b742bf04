package bench

import "testing"

// TestCouponsBatchFlag: --batch takes 1 (one PUT per update) to the bulk
// endpoint's limit, and a batched run has a scenario name of its own, so
// its result never stands for the one-PUT runs in the report.
func TestCouponsBatchFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true}, {[]string{"--batch", "1"}, true}, {[]string{"--batch", "100"}, true},
		{[]string{"--batch", "0"}, false}, {[]string{"--batch", "101"}, false},
	} {
		f, err := parseCouponsFlags(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.args, err)
		}
		if err == nil && len(tc.args) == 0 && f.batch != 1 {
			t.Errorf("default --batch %d, want 1", f.batch)
		}
	}
	for _, tc := range []struct {
		db    string
		batch int
		want  string
	}{{"devdb", 1, "coupons"}, {"embedded", 1, "coupons-embedded"}, {"devdb", 20, "coupons-batched"}, {"embedded", 20, "coupons-embedded-batched"}} {
		if got := couponsScenario(tc.db, tc.batch); got != tc.want {
			t.Errorf("couponsScenario(%s, %d) = %s, want %s", tc.db, tc.batch, got, tc.want)
		}
	}
}
