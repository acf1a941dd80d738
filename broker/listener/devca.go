package listener

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Lifetimes of the development certificates.
const (
	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 365 * 24 * time.Hour
	// devRenewBefore: a certificate this close to its end is replaced.
	devRenewBefore = 24 * time.Hour
)

// DevCA is a development certificate authority and the server
// certificate it signed, as files: clients trust CAFile (mosquitto
// --cafile, MQTT.js ca), the server uses CertFile and KeyFile.
type DevCA struct {
	// CAFile is the CA certificate (PEM); its key is beside it in ca.key.
	CAFile string
	// CertFile and KeyFile are the server certificate and key (PEM).
	CertFile, KeyFile string
	// Created lists what this call generated ("ca", "server"); empty when
	// the files were reused.
	Created []string
}

// EnsureDevCA makes sure dir holds a development CA (ca.pem, ca.key;
// ECDSA P-256, valid 10 years) and a server certificate it signed
// (server.pem, server.key; valid 1 year) for *.<baseDomain>, <baseDomain>,
// localhost, 127.0.0.1 and ::1. Files that exist, parse, belong together,
// cover those names and are not within a day of expiry are reused; the
// others are generated (a new CA also means a new server certificate).
// Keys are written with mode 0600.
func EnsureDevCA(dir, baseDomain string, now time.Time) (*DevCA, error) {
	baseDomain = normalizeHost(baseDomain)
	if baseDomain == "" {
		return nil, errors.New("dev CA: base domain required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	d := &DevCA{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	caKeyFile := filepath.Join(dir, "ca.key")

	ca, caKey, err := loadDevPair(d.CAFile, caKeyFile)
	if err != nil || !ca.IsCA || !fresh(ca, now) {
		if ca, caKey, err = newDevCA(now); err != nil {
			return nil, err
		}
		if err := writePair(d.CAFile, caKeyFile, ca, caKey); err != nil {
			return nil, err
		}
		d.Created = append(d.Created, "ca")
	}
	dnsNames := []string{"*." + baseDomain, baseDomain, "localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	leaf, _, err := loadDevPair(d.CertFile, d.KeyFile)
	if len(d.Created) > 0 || err != nil || !fresh(leaf, now) || leaf.CheckSignatureFrom(ca) != nil || !covers(leaf, dnsNames) {
		crt, key, err := newDevLeaf(now, ca, caKey, dnsNames, ips)
		if err != nil {
			return nil, err
		}
		if err := writePair(d.CertFile, d.KeyFile, crt, key); err != nil {
			return nil, err
		}
		d.Created = append(d.Created, "server")
	}
	return d, nil
}

func fresh(c *x509.Certificate, now time.Time) bool {
	return now.After(c.NotBefore) && now.Add(devRenewBefore).Before(c.NotAfter)
}

func covers(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}

// loadDevPair reads a certificate and its ECDSA key, checking they match.
func loadDevPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("not an ECDSA key")
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, err
		}
	}
	return leaf, key, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newDevCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{"Relay development"}, CommonName: "Relay development CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return sign(tmpl, tmpl, key, key)
}

func newDevLeaf(now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dnsNames []string, ips []net.IP) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	notAfter := now.Add(devLeafLifetime)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{"Relay development"}, CommonName: dnsNames[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	return sign(tmpl, ca, key, caKey)
}

func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA: %w", err)
	}
	return crt, key, nil
}

// writePair writes a certificate (0644) and its key (0600), each through
// a temporary file and a rename, key first.
func writePair(certFile, keyFile string, crt *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw}), 0o644)
}

func writeFile(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dev CA: %w", err)
	}
	return nil
}
