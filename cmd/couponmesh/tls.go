package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// TLS on the public listener, for deployments without a load balancer that
// terminates TLS (configs: tls_cert_file, tls_key_file). HTTP/1.1 only: the
// WebSocket upgrade is an HTTP/1.1 request, and the SDKs speak HTTP/1.1.

func (c *Config) validateTLS() error {
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
		return nil
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		return errors.New("tls_cert_file and tls_key_file: set both or neither")
	}
	if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
		return fmt.Errorf("tls_cert_file, tls_key_file: %w", err)
	}
	return nil
}

// tlsListener wraps ln in TLS when the config names a certificate, and
// returns ln unchanged otherwise. On error it closes ln.
func tlsListener(ln net.Listener, cfg Config) (net.Listener, error) {
	if cfg.TLSCertFile == "" {
		return ln, nil
	}
	kp, err := newKeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: kp.get,
	}), nil
}

// keyPair serves a certificate and key from files and reloads them when the
// certificate file changes (checked at most every keyPairCheck), so a
// renewed certificate (cert-manager, certbot) is picked up without a
// restart. A renewal that does not load keeps the old pair.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     time.Time // the certificate file's mtime when loaded
	checked time.Time
}

// keyPairCheck is how often a handshake looks at the certificate file (a
// variable for tests).
var keyPairCheck = 10 * time.Second

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPair) load() error {
	fi, err := os.Stat(k.certFile)
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	k.cert, k.mod = &c, fi.ModTime()
	return nil
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.checked) >= keyPairCheck {
		k.checked = now
		if fi, err := os.Stat(k.certFile); err == nil && !fi.ModTime().Equal(k.mod) {
			_ = k.load() // on error keep serving the pair loaded before
		}
	}
	return k.cert, nil
}
