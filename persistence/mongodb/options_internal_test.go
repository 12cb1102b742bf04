package mongodb

import "testing"

// The URI's own options win over the mongo: keys (docs/OPERATIONS.md): a
// maxPoolSize in the URI is the pool size.
func TestURIOptionsWinOverKeys(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		want uint64
	}{
		{"mongodb://127.0.0.1:1/", 100},
		{"mongodb://127.0.0.1:1/?maxPoolSize=5", 5},
	} {
		c := DefaultConfig()
		c.URI, c.MaxPoolSize = tc.uri, 100
		opts, err := c.clientOptions()
		if err != nil {
			t.Fatal(err)
		}
		if opts.MaxPoolSize == nil || *opts.MaxPoolSize != tc.want {
			t.Errorf("%s: pool size %v, want %d", tc.uri, opts.MaxPoolSize, tc.want)
		}
	}
}
