package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eco-project/eco/pki"
)

func TestIssueVerifiesAgainstCA(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		name    string
		req     pki.LeafRequest
		usage   x509.ExtKeyUsage
		dnsName string
		wantErr bool
	}{
		{name: "serving cert for an IP", req: pki.LeafRequest{CommonName: "s", Hosts: []string{"127.0.0.1"}}, usage: x509.ExtKeyUsageServerAuth, dnsName: "127.0.0.1"},
		{name: "serving cert for a name", req: pki.LeafRequest{CommonName: "s", Hosts: []string{"hub.example"}}, usage: x509.ExtKeyUsageServerAuth, dnsName: "hub.example"},
		{name: "serving cert for another name", req: pki.LeafRequest{CommonName: "s", Hosts: []string{"hub.example"}}, usage: x509.ExtKeyUsageServerAuth, dnsName: "other.example", wantErr: true},
		{name: "client cert", req: pki.LeafRequest{CommonName: "admin", Organization: []string{"system:masters"}}, usage: x509.ExtKeyUsageClientAuth},
		{name: "client cert is no serving cert", req: pki.LeafRequest{CommonName: "admin"}, usage: x509.ExtKeyUsageServerAuth, wantErr: true},
		{name: "expired", req: pki.LeafRequest{CommonName: "old", NotAfter: now.Add(-time.Minute)}, usage: x509.ExtKeyUsageClientAuth, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.Issue(tt.req, now)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(kp.CertPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.dnsName, KeyUsages: []x509.ExtKeyUsage{tt.usage}, CurrentTime: now})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify() error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && tt.req.Organization != nil && cert.Subject.Organization[0] != tt.req.Organization[0] {
				t.Errorf("organization = %v, want %v", cert.Subject.Organization, tt.req.Organization)
			}
		})
	}
}

// TestMutualTLS runs a real TLS server on loopback that requires client
// certificates from the CA.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := pki.LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := reloaded.Issue(pki.LeafRequest{CommonName: "srv", Hosts: []string{"127.0.0.1"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(pki.LeafRequest{CommonName: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := serving.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	cliCert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cliCert}}}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "alice" {
		t.Fatalf("server saw client %q, want alice", body)
	}

	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if resp, err := anon.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("server accepted a client without a certificate")
	}
}

func TestLoadCARejectsLeaf(t *testing.T) {
	ca, err := pki.NewCA("test-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: "leaf"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCA(leaf.CertPEM, leaf.KeyPEM); err == nil {
		t.Fatal("LoadCA accepted a leaf certificate")
	}
	if _, err := pki.LoadCA([]byte("garbage"), []byte("garbage")); err == nil {
		t.Fatal("LoadCA accepted garbage")
	}
}
