package mongodb

import "testing"

// The URI's own options win over the mongo: keys (docs/OPERATIONS.md): a
// maxPoolSize in the URI is the pool size (and caps the pool kept open),
// a maxConnecting the connections opened at once.
func TestURIOptionsWinOverKeys(t *testing.T) {
	for _, tc := range []struct {
		uri                  string
		max, min, connecting uint64
	}{
		{"mongodb://127.0.0.1:1/", 100, 20, maxConnecting},
		{"mongodb://127.0.0.1:1/?maxPoolSize=5", 5, 5, maxConnecting},
		{"mongodb://127.0.0.1:1/?minPoolSize=2&maxConnecting=3", 100, 2, 3},
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
	}
}
