package main

import (
	"strings"
	"testing"
	"time"
)

func TestMongoAndCacheConfig(t *testing.T) {
	cfg, err := LoadConfig("../../configs/node.yaml", map[string]string{
		"COUPONMESH_MONGO_URI":             "mongodb://u:secret@a,b,c/?replicaSet=rs0&w=2&readPreference=secondaryPreferred",
		"COUPONMESH_MONGO_POOL_MAX":        "200",
		"COUPONMESH_MONGO_POOL_MIN":        "10",
		"COUPONMESH_MONGO_BATCH_MAX_OPS":   "64",
		"COUPONMESH_MONGO_BATCH_MAX_DELAY": "3ms",
		"COUPONMESH_MONGO_WRITE_TIMEOUT":   "2s",
		"COUPONMESH_CACHE_SIZE_MB":         "32",
		"COUPONMESH_CACHE_BROWSE_TTL":      "1s",
	})
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.mongoConfig(cfg.MongoURI)
	if m.MaxPoolSize != 200 || m.MinPoolSize != 10 || m.BatchMaxOps != 64 || m.BatchMaxDelay != 3*time.Millisecond ||
		m.WriteTimeout != 2*time.Second || m.OpTimeout != 5*time.Second || m.WriteConcern != "majority" || m.Flushers != 1 {
		t.Errorf("mongo config %+v", m)
	}
	if cfg.Cache.SizeMB != 32 || cfg.Cache.BrowseTTL != time.Second || cfg.Cache.SnapshotTTL != 10*time.Minute {
		t.Errorf("cache config %+v", cfg.Cache)
	}
	out := cfg.Redacted()
	for _, want := range []string{"pool_max: 200", "batch_max_delay: 3ms", "write_concern: majority", "size_mb: 32",
		"#   replicaSet=rs0", "#   w=2", "#   readPreference=secondaryPreferred"} {
		if !strings.Contains(out, want) {
			t.Errorf("--check-config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "u:secret") {
		t.Errorf("password in --check-config output:\n%s", out)
	}
	for env, want := range map[string]string{
		"COUPONMESH_MONGO_WRITE_CONCERN": "write_concern",
		"COUPONMESH_MONGO_POOL_MIN":      "PoolMin",
	} {
		_, err := LoadConfig("../../configs/node.yaml", map[string]string{env: "lots"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=lots: %v, want an error about %s", env, err, want)
		}
	}
}
