package actors

import (
	"sync"
	"weak"

	"github.com/asynkron/protoactor-go/cluster"
	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxCachedPIDs bounds the grain PIDs a node keeps in its cluster's
// PidCache for Call. protoactor drops an entry only when the grain's
// member leaves, when a call to it meets a dead letter, or (on the owner
// alone) when the grain stops: a node calling ever-new grains on other
// nodes (each round of users and coupons in `make soak`) kept every PID it
// had ever used. Beyond the bound the least recently called is forgotten;
// calling it again costs one placement lookup.
const MaxCachedPIDs = 32768

type pidKey struct{ id, kind string }

// pidIndexes holds, per cluster (weakly: a stopped node's is not kept
// alive), the keys Call put into its PidCache, least recently used first.
var pidIndexes sync.Map // weak.Pointer[cluster.Cluster] → *lru.Cache[pidKey, struct{}]

// cachedPID records that Call uses c's PidCache entry for kind/id, and
// removes the least recently used entry beyond MaxCachedPIDs.
func cachedPID(c *cluster.Cluster, kind, id string) {
	wp := weak.Make(c)
	v, ok := pidIndexes.Load(wp)
	if !ok {
		l, _ := lru.NewWithEvict(MaxCachedPIDs, func(k pidKey, _ struct{}) {
			if c := wp.Value(); c != nil {
				c.PidCache.Remove(k.id, k.kind)
			}
		})
		v, _ = pidIndexes.LoadOrStore(wp, l)
	}
	v.(*lru.Cache[pidKey, struct{}]).Add(pidKey{id, kind}, struct{}{})
}
