package bench

import (
	"context"
	"log/slog"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// The scenarios check what the nodes acknowledged against the journal,
// read from the database through persistence/mongodb (not through the
// nodes), so that the bench depends on the journal's format only through
// the store that writes it.

// openStore opens the nodes' database at uri through persistence/mongodb
// (the database name the nodes use by default), logging nothing. Close it
// when done.
func openStore(ctx context.Context, uri string) (*mongodb.Store, error) {
	cfg := mongodb.DefaultConfig()
	cfg.URI = uri
	return mongodb.Open(ctx, cfg, slog.New(slog.DiscardHandler))
}

// journalPage is how many entries one read returns: each read is bounded
// by the store's operation timeout, and a busy database after a burst
// takes a while per entry.
const journalPage = 256

// journalEntries returns every entry of entity, in seq order.
func journalEntries(ctx context.Context, s *mongodb.Store, entity string) ([]couponmesh.Entry, error) {
	var out []couponmesh.Entry
	for {
		page, err := s.Entries(ctx, entity, int64(len(out)), journalPage)
		if err != nil {
			return out, err
		}
		out = append(out, page...)
		if len(page) < journalPage {
			return out, nil
		}
	}
}

// countEntries returns how many entries of type typ entity's journal
// holds.
func countEntries(ctx context.Context, s *mongodb.Store, entity, typ string) (int, error) {
	entries, err := journalEntries(ctx, s, entity)
	n := 0
	for _, e := range entries {
		if e.Type == typ {
			n++
		}
	}
	return n, err
}
