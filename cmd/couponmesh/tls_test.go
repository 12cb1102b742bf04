package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/client"
)

// The TLS keys come from the environment like every key, must come in
// pairs, and must load.
func TestTLSConfig(t *testing.T) {
	pki := newTestPKI(t)
	env := func(kv ...string) map[string]string {
		m := map[string]string{"COUPONMESH_JWT_SECRET": testSecret, "COUPONMESH_DEV": "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cfg, err := LoadConfig("", env("COUPONMESH_TLS_CERT_FILE", pki.certFile, "COUPONMESH_TLS_KEY_FILE", pki.keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLSCertFile != pki.certFile || cfg.TLSKeyFile != pki.keyFile {
		t.Fatalf("tls files from the environment: %q %q", cfg.TLSCertFile, cfg.TLSKeyFile)
	}
	for name, e := range map[string]map[string]string{
		"cert without key": env("COUPONMESH_TLS_CERT_FILE", pki.certFile),
		"key without cert": env("COUPONMESH_TLS_KEY_FILE", pki.keyFile),
		"missing file":     env("COUPONMESH_TLS_CERT_FILE", pki.certFile+".nope", "COUPONMESH_TLS_KEY_FILE", pki.keyFile),
		"key is no key":    env("COUPONMESH_TLS_CERT_FILE", pki.certFile, "COUPONMESH_TLS_KEY_FILE", pki.certFile),
	} {
		if _, err := LoadConfig("", e); err == nil || !strings.Contains(err.Error(), "tls_") {
			t.Errorf("%s: %v, want an error naming the tls keys", name, err)
		}
	}
}

// A node with tls_cert_file and tls_key_file serves HTTPS and WSS over
// HTTP/1.1: a client that trusts the CA connects over wss://, one that does
// not is refused, plain ws:// gets nowhere, and a renewed certificate is
// served without a restart.
func TestTLSNode(t *testing.T) {
	pki := newTestPKI(t)
	saved := keyPairCheck
	keyPairCheck = 0 // look at the file on every handshake
	t.Cleanup(func() { keyPairCheck = saved })
	a := startApp(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = pki.certFile, pki.keyFile })
	base, wss := "https://"+a.HTTPAddr(), "wss://"+a.HTTPAddr()+"/ws"
	ctx := context.Background()

	hc := pki.client()
	hc.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.TLS == nil {
		t.Fatalf("GET /readyz over TLS: %d %s (tls %v), want 200 over HTTP/1.1", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}
	tok := devLoginTLS(t, hc, base, "alice")
	c, err := client.Dial(ctx, wss, client.Options{HTTPClient: pki.client()})
	if err != nil {
		t.Fatalf("wss:// with the CA: %v", err)
	}
	defer c.Close()
	if _, err := c.Auth(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	if c, err := client.Dial(ctx, wss, client.Options{}); err == nil {
		c.Close()
		t.Error("a client that does not trust the CA connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted client: %v, want a certificate error", err)
	}
	if c, err := client.Dial(ctx, "ws://"+a.HTTPAddr()+"/ws", client.Options{}); err == nil {
		c.Close()
		t.Error("plain ws:// connected to the TLS listener")
	}

	// Renewal: a certificate from another CA written over the files is
	// served to the next handshake; the old CA no longer verifies it.
	renewed := newTestPKI(t)
	for _, f := range [][2]string{{renewed.certFile, pki.certFile}, {renewed.keyFile, pki.keyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(pki.certFile, later, later) // a new mtime even within the file system's granularity
	c2, err := client.Dial(ctx, wss, client.Options{HTTPClient: renewed.client()})
	if err != nil {
		t.Fatalf("after renewal, wss:// with the new CA: %v", err)
	}
	c2.Close()
	if _, err := pki.client().Get(base + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("after renewal, the old CA: %v, want a certificate error", err)
	}
}

// devLoginTLS is client.DevLogin with an HTTP client of our own.
func devLoginTLS(t testing.TB, hc *http.Client, base, user string) string {
	t.Helper()
	resp, err := hc.Post(base+"/api/dev/login", "application/json", bytes.NewBufferString(`{"user":"`+user+`","role":"shopper"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	_, rest, ok := strings.Cut(buf.String(), `"token":"`)
	tok, _, ok2 := strings.Cut(rest, `"`)
	if resp.StatusCode != 200 || !ok || !ok2 {
		t.Fatalf("dev login over TLS: %d %s", resp.StatusCode, buf.String())
	}
	return tok
}
