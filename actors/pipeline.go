package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Flush starts the next write of j's pipeline when none is in flight: the
// entries of j.Next go to the store on a goroutine of their own, bounded by
// timeout, and the outcome comes back to the grain (ctx.Self()) as a
// *BatchResult message, which the grain hands to j.Settle. So the grain
// keeps receiving (and deciding) requests while a write is in flight. Call
// it at the end of every message the grain handles.
func Flush(ctx actor.Context, j *Journal, timeout time.Duration) {
	es := j.Next()
	if es == nil {
		return
	}
	root, self, store := ctx.ActorSystem().Root, ctx.Self(), j.Store
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		root.Send(self, WriteBatch(wctx, store, es))
	}()
}
