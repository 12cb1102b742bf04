package coupon

import (
	"context"
	"time"

	"github.com/couponmesh/couponmesh"
)

// FollowerLoads exposes the node's batched follower reads to the tests.
func FollowerLoads(store couponmesh.Store, timeout time.Duration) func(ctx context.Context, coupon string) ([]string, error) {
	return newFollowerLoads(store, timeout).followers
}
