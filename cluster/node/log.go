package node

import (
	"context"
	"log/slog"
)

// levelFilter drops records below min before they reach the handler, and
// records protoactor logs as errors although they are the normal course of
// a cluster whose grains move (see routine).
type levelFilter struct {
	slog.Handler
	min slog.Level
}

// routine are protoactor messages logged at error level that describe
// expected events: a request that met a moved grain (retried) and
// connections to a member that left or died (memberlist decides membership;
// its own log lines say when a member goes).
var routine = map[string]bool{
	"cluster.RequestFuture failed":   true,
	"EndpointWriter lost connection": true,
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

func (l levelFilter) Handle(ctx context.Context, r slog.Record) error {
	if routine[r.Message] {
		return nil
	}
	return l.Handler.Handle(ctx, r)
}

func (l levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{l.Handler.WithAttrs(a), l.min}
}

func (l levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{l.Handler.WithGroup(g), l.min}
}
