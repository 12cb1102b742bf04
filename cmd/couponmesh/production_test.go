package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Production mode refuses, one line each, the configurations that would
// expose a node; allow_insecure turns a named check off.
func TestProductionModeRefusals(t *testing.T) {
	good := map[string]string{
		"COUPONMESH_DEV":          "false",
		"COUPONMESH_JWT_SECRET":   testSecret,
		"COUPONMESH_MONGO_URI":    "mongodb://app:pw@db1,db2/?replicaSet=rs0&tls=true",
		"COUPONMESH_REMOTE_ADDR":  "127.0.0.1:0",
		"COUPONMESH_CLUSTER_ADDR": "127.0.0.1:7946",
	}
	with := func(kv ...string) map[string]string {
		m := make(map[string]string)
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
		want string // "" = accepted
	}{
		{"secure", good, ""},
		{"no JWT key", with("COUPONMESH_JWT_SECRET", ""), "jwt_secret"},
		{"embedded database", with("COUPONMESH_MONGO_URI", ""), "embedded database"},
		{"MongoDB without TLS", with("COUPONMESH_MONGO_URI", "mongodb://app:pw@db1/?replicaSet=rs0"), "TLS"},
		{"MongoDB with TLS off", with("COUPONMESH_MONGO_URI", "mongodb://app:pw@db1/?tls=false"), "TLS"},
		{"MongoDB without credentials", with("COUPONMESH_MONGO_URI", "mongodb://db1/?tls=true"), "credentials"},
		{"MongoDB over SRV with X.509", with("COUPONMESH_MONGO_URI", "mongodb+srv://cluster.example.com/?authMechanism=MONGODB-X509"), ""},
		{"MongoDB insecure, allowed", with("COUPONMESH_MONGO_URI", "mongodb://db1/", "COUPONMESH_ALLOW_INSECURE", "mongo"), ""},
		{"public remote without TLS", with("COUPONMESH_REMOTE_ADDR", "10.0.0.5:7000"), "remote_tls"},
		{"public remote, allowed", with("COUPONMESH_REMOTE_ADDR", "10.0.0.5:7000", "COUPONMESH_ALLOW_INSECURE", "remote"), ""},
		{"public gossip without key", with("COUPONMESH_CLUSTER_ADDR", "0.0.0.0:7946"), "gossip_key"},
		{"public gossip with key", with("COUPONMESH_CLUSTER_ADDR", "0.0.0.0:7946", "COUPONMESH_CLUSTER_GOSSIP_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), ""},
		{"unknown check allowed", with("COUPONMESH_ALLOW_INSECURE", "everything"), "unknown check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig("", tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a refusal mentioning %q", err, tc.want)
			}
		})
	}

	// Several problems: one line each, and the process exits non-zero
	// before listening.
	cmd := exec.Command(nodeBinary(t), "node")
	cmd.Env = append(os.Environ(), "COUPONMESH_DEV=false", "COUPONMESH_MONGO_URI=mongodb://db1/",
		"COUPONMESH_REMOTE_ADDR=10.0.0.5:7000", "COUPONMESH_JWT_SECRET="+testSecret)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the node started in production mode with an insecure configuration:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "TLS") || !strings.Contains(lines[1], "remote_tls") {
		t.Fatalf("want one line per refusal (mongo, remote), got:\n%s", out)
	}
}
