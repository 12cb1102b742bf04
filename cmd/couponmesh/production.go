package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Production mode (dev: false) refuses configurations that would expose the
// node: each check below is one error line, and allow_insecure names the
// ones an operator deliberately turns off (e.g. a MongoDB reached over a
// private link that has no TLS).
var insecureChecks = []string{"mongo", "remote", "gossip"}

func (c *Config) productionErrors() []error {
	if c.Dev {
		return nil
	}
	var errs []error
	allowed := func(check string) bool { return slices.Contains(c.AllowInsecure, check) }
	for _, a := range c.AllowInsecure {
		if !slices.Contains(insecureChecks, a) {
			errs = append(errs, fmt.Errorf("allow_insecure: unknown check %q (want %s)", a, strings.Join(insecureChecks, ", ")))
		}
	}
	if !allowed("mongo") {
		if err := secureMongoURI(c.MongoURI); err != nil {
			errs = append(errs, fmt.Errorf("production mode: %w (or allow_insecure: [mongo])", err))
		}
	}
	if !allowed("remote") && !loopback(c.RemoteAddr) && c.Cluster.RemoteTLSCert == "" {
		errs = append(errs, fmt.Errorf("production mode: remote_addr %s is not loopback and node-to-node traffic is plaintext: set cluster.remote_tls_cert, remote_tls_key and remote_tls_ca (or allow_insecure: [remote])", c.RemoteAddr))
	}
	if !allowed("gossip") && !loopback(c.ClusterAddr) && c.Cluster.GossipKey == "" {
		errs = append(errs, fmt.Errorf("production mode: cluster_addr %s is not loopback and gossip is unencrypted: set cluster.gossip_key (or allow_insecure: [gossip])", c.ClusterAddr))
	}
	return errs
}

// secureMongoURI requires a MongoDB URI with TLS and credentials (a
// password, or an X.509 or cloud IAM mechanism).
func secureMongoURI(uri string) error {
	if uri == "" {
		return errors.New("mongo_uri is empty (the embedded database is for development)")
	}
	u, err := url.Parse(uri)
	if err != nil {
		return errors.New("mongo_uri is not a URI")
	}
	q := u.Query()
	tls := u.Scheme == "mongodb+srv" || q.Get("tls") == "true" || q.Get("ssl") == "true"
	if q.Get("tls") == "false" || q.Get("ssl") == "false" {
		tls = false
	}
	if !tls {
		return errors.New("mongo_uri does not use TLS (add tls=true)")
	}
	if _, hasPassword := u.User.Password(); !hasPassword && q.Get("authMechanism") == "" {
		return errors.New("mongo_uri has no credentials (user:password@ or authMechanism)")
	}
	return nil
}
