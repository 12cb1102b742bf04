package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadRemoteTLS builds mutual TLS for node-to-node traffic: every node
// presents certFile/keyFile and accepts only peers whose certificate chains
// to caFile. Nodes dial each other by IP, so the peer's certificate is
// checked for serverName (a DNS name every node certificate carries), not
// for the address.
func LoadRemoteTLS(certFile, keyFile, caFile, serverName string) (*RemoteTLS, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("remote TLS needs a certificate, its key and the CA of the cluster")
	}
	if serverName == "" {
		return nil, errors.New("remote TLS needs the server name every node certificate carries")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("remote TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("remote TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("remote TLS CA %s: no certificate", caFile)
	}
	return &RemoteTLS{
		Server: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		},
		Client: &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			RootCAs: pool, ServerName: serverName,
		},
	}, nil
}
