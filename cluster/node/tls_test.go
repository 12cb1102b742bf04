package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for dnsName (server and client use) and its
// key to dir, returning their paths.
func (ca *testCA) issue(t *testing.T, dir, dnsName string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dnsName},
		DNSNames: []string{dnsName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, dnsName+".crt"), filepath.Join(dir, dnsName+".key")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A member with remote TLS answers only peers with a certificate of the
// cluster's CA: a plaintext client, a TLS client without a certificate and
// one with a certificate of another CA are all refused.
func TestRemoteTLSRefusesOutsiders(t *testing.T) {
	if inOwnProcess(t) {
		return
	}
	dir := t.TempDir()
	ca, other := newCA(t), newCA(t)
	caFile := filepath.Join(dir, "ca.crt")
	write(t, caFile, ca.pem)
	cert, key := ca.issue(t, dir, "couponmesh-node")
	rt, err := node.LoadRemoteTLS(cert, key, caFile, "couponmesh-node")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.Start(node.Config{
		RemoteAddr: "127.0.0.1:0", TLS: rt, Log: log,
		Provider: membership.New(membership.Config{BindAddr: "127.0.0.1:0", Log: log}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(false) })
	addr := n.Address()

	list := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = remote.NewRemotingClient(conn).ListProcesses(ctx, &remote.ListProcessesRequest{})
		return err
	}
	// A member gets through TLS to the service (whose unary RPCs are not
	// served); the others do not get past the handshake.
	if err := list(credentials.NewTLS(rt.Client)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("a member of the cluster: %v, want Unimplemented from the service", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	otherCert, otherKey := other.issue(t, dir, "intruder")
	intruder, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":                 insecure.NewCredentials(),
		"TLS without a certificate": credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "couponmesh-node"}),
		"certificate of another CA": credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "couponmesh-node", Certificates: []tls.Certificate{intruder}}),
	} {
		if err := list(creds); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want the connection refused (Unavailable)", name, err)
		}
	}
}

// Without TLS, a stranger calling protoactor's unimplemented RPCs gets an
// error, and the node does not crash.
func TestRemoteSurvivesUnimplementedCalls(t *testing.T) {
	if inOwnProcess(t) {
		return
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.Start(node.Config{
		RemoteAddr: "127.0.0.1:0", Log: log,
		Provider: membership.New(membership.Config{BindAddr: "127.0.0.1:0", Log: log}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(false) })
	conn, err := grpc.NewClient(n.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c := remote.NewRemotingClient(conn)
	if _, err := c.ListProcesses(ctx, &remote.ListProcessesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListProcesses: %v", err)
	}
	if _, err := c.GetProcessDiagnostics(ctx, &remote.GetProcessDiagnosticsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("GetProcessDiagnostics: %v", err)
	}
}
