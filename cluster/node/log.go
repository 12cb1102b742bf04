package node

import (
	"context"
	"log/slog"
)

// levelFilter drops records below min before they reach the handler.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

func (l levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{l.Handler.WithAttrs(a), l.min}
}

func (l levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{l.Handler.WithGroup(g), l.min}
}
