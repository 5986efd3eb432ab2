package hub

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/eco-project/eco/pki"
)

// TLSIdentity is the hub's serving certificate and the CA agents and
// kubectl must trust for it.
type TLSIdentity struct {
	Certificate tls.Certificate
	// CAPEM is the CA to put in install YAMLs and kubeconfigs.
	CAPEM []byte
}

// LoadOrCreateTLS returns the self-signed identity kept in dir (ca.crt,
// ca.key, tls.crt, tls.key), creating the CA on first use and issuing a
// new serving certificate whenever hosts name one the current certificate
// does not cover. Used when the hub is given no certificate.
func LoadOrCreateTLS(dir string, hosts []string, now time.Time) (TLSIdentity, error) {
	if len(hosts) == 0 {
		return TLSIdentity{}, errors.New("hub TLS: at least one host name or IP is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLSIdentity{}, fmt.Errorf("hub TLS: %w", err)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	caPEM, errCert := read("ca.crt")
	caKey, errKey := read("ca.key")
	var ca *pki.CA
	var err error
	switch {
	case errCert == nil && errKey == nil:
		if ca, err = pki.LoadCA(caPEM, caKey); err != nil {
			return TLSIdentity{}, fmt.Errorf("hub TLS: %s: %w", dir, err)
		}
	case errors.Is(errCert, fs.ErrNotExist) && errors.Is(errKey, fs.ErrNotExist):
		if ca, err = pki.NewCA("eco hub CA", now); err != nil {
			return TLSIdentity{}, err
		}
		if err := pki.WriteFiles(dir, map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": ca.KeyPEM}); err != nil {
			return TLSIdentity{}, fmt.Errorf("hub TLS: %w", err)
		}
	default:
		return TLSIdentity{}, fmt.Errorf("hub TLS: %s holds only half of the CA (ca.crt: %v, ca.key: %v)", dir, errCert, errKey)
	}

	certPEM, _ := read("tls.crt")
	keyPEM, _ := read("tls.key")
	if cert, err := tls.X509KeyPair(certPEM, keyPEM); err == nil && covers(cert, hosts, ca, now) {
		return TLSIdentity{Certificate: cert, CAPEM: ca.CertPEM}, nil
	}
	kp, err := ca.Issue(pki.LeafRequest{CommonName: "eco-hub", Hosts: hosts}, now)
	if err != nil {
		return TLSIdentity{}, err
	}
	if err := pki.WriteFiles(dir, map[string][]byte{"tls.crt": kp.CertPEM, "tls.key": kp.KeyPEM}); err != nil {
		return TLSIdentity{}, fmt.Errorf("hub TLS: %w", err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return TLSIdentity{}, err
	}
	return TLSIdentity{Certificate: cert, CAPEM: ca.CertPEM}, nil
}

// covers reports whether cert is signed by ca, valid for a month more, and
// names every host.
func covers(cert tls.Certificate, hosts []string, ca *pki.CA, now time.Time) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || leaf.CheckSignatureFrom(ca.Cert) != nil || now.Add(30*24*time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return !slices.Contains(hosts, "")
}

// LoadOrCreateSecretKey returns the 32-byte key at path, creating it on
// first use. It derives agent credentials and the TLS session ticket keys
// (Hub.TLSConfig): keep it as secret as the store and the TLS key.
func LoadOrCreateSecretKey(path string) ([]byte, error) {
	key, err := LoadSecretKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	return createSecretKey(path)
}

// LoadSecretKey reads a secret key of at least 32 bytes from path, e.g.
// the hub's previous key while its key is rotated. A missing file is an
// error wrapping fs.ErrNotExist.
func LoadSecretKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("secret key %s is shorter than 32 bytes", path)
	}
	return key, nil
}

func createSecretKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating secret key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("writing secret key: %w", err)
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("writing secret key: %w", err)
	}
	return key, nil
}
