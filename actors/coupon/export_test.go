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

// WakeUnchecked is Wake on a state not validated since churn (StartWake's
// unchecked).
func (m *Machine) WakeUnchecked(ctx context.Context, r couponmesh.Reminder) error {
	_, err := inline(ctx, m, func(done func(struct{}, error)) {
		m.StartWake(ctx, r, true, func(err error) { done(struct{}{}, err) })
	})
	return err
}
