package mongodb

import "testing"

// The URI's own options win over the mongo: keys (docs/OPERATIONS.md): a
// maxPoolSize in the URI is the pool size (and caps the pool kept open,
// and the group commit's own pool), a maxConnecting the connections opened
// at once.
func TestURIOptionsWinOverKeys(t *testing.T) {
	for _, tc := range []struct {
		uri                  string
		max, min, connecting uint64
		writerMax, writerMin uint64 // the group commit's own pool, with one flusher
	}{
		{"mongodb://127.0.0.1:1/", 100, 20, maxConnecting, 1 + writerPool, 1},
		{"mongodb://127.0.0.1:1/?maxPoolSize=5", 5, 5, maxConnecting, 5, 1},
		{"mongodb://127.0.0.1:1/?maxPoolSize=3", 3, 3, maxConnecting, 3, 1},
		{"mongodb://127.0.0.1:1/?minPoolSize=2&maxConnecting=3", 100, 2, 3, 1 + writerPool, 1},
	} {
		c := DefaultConfig()
		c.URI = tc.uri
		opts, err := c.clientOptions()
		if err != nil {
			t.Fatalf("%s: %v", tc.uri, err)
		}
		if opts.MaxPoolSize == nil || *opts.MaxPoolSize != tc.max {
			t.Errorf("%s: pool size %v, want %d", tc.uri, opts.MaxPoolSize, tc.max)
		}
		if opts.MinPoolSize == nil || *opts.MinPoolSize != tc.min {
			t.Errorf("%s: pool kept open %v, want %d", tc.uri, opts.MinPoolSize, tc.min)
		}
		if opts.MaxConnecting == nil || *opts.MaxConnecting != tc.connecting {
			t.Errorf("%s: connections opened at once %v, want %d", tc.uri, opts.MaxConnecting, tc.connecting)
		}
		w := writerOptions(opts, 1)
		if *w.MaxPoolSize != tc.writerMax || *w.MinPoolSize != tc.writerMin {
			t.Errorf("%s: the group commit's pool %d, %d kept open; want %d, %d", tc.uri, *w.MaxPoolSize, *w.MinPoolSize, tc.writerMax, tc.writerMin)
		}
		if *opts.MaxPoolSize != tc.max {
			t.Errorf("%s: the group commit's options changed the reads' pool to %d", tc.uri, *opts.MaxPoolSize)
		}
	}
}
