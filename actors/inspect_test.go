package actors

import (
	"fmt"
	"testing"
)

func TestRecentRingKeepsTheLastNewestFirst(t *testing.T) {
	var r recentRing
	for i := range RecentSize + 8 {
		r.begin(fmt.Sprintf("m.%d", i%3))
		if i%2 == 0 {
			r.answered("ok")
		} else if i%3 == 0 {
			r.answered("sold_out")
		}
		r.end()
		recs := r.records()
		if want := min(i+1, RecentSize); len(recs) != want {
			t.Fatalf("after %d: %d records, want %d", i+1, len(recs), want)
		}
		if recs[0].Method != fmt.Sprintf("m.%d", i%3) {
			t.Fatalf("after %d: newest is %+v", i+1, recs[0])
		}
		for j := 1; j < len(recs); j++ {
			if recs[j].At.After(recs[j-1].At) {
				t.Fatalf("after %d: records not newest first: %v", i+1, recs)
			}
			if want := fmt.Sprintf("m.%d", (i-j)%3); recs[j].Method != want {
				t.Fatalf("after %d: record %d is %s, want %s", i+1, j, recs[j].Method, want)
			}
		}
	}
	if r.total != RecentSize+8 {
		t.Fatalf("total %d", r.total)
	}
	last := r.records()[0] // i = RecentSize+7 = 39: odd, 39%3 == 0
	if last.Outcome != "sold_out" || !last.Answered {
		t.Fatalf("newest: %+v", last)
	}
	r.end() // nothing pending: no record
	if r.total != RecentSize+8 {
		t.Fatal("end without begin recorded")
	}
}

func BenchmarkRecentRing(b *testing.B) {
	var r recentRing
	for b.Loop() {
		r.begin(CouponClaim)
		r.answered("ok")
		r.end()
	}
}
