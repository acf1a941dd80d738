package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often Certificates looks at its files.
const DefaultReloadInterval = 10 * time.Second

// CertOptions configure Certificates: either one certificate (CertFile
// and KeyFile) or a directory of per-host certificates (CertDir).
type CertOptions struct {
	// CertFile is a PEM certificate chain (leaf first) and KeyFile its
	// PEM private key: the certificate for every host name.
	CertFile, KeyFile string
	// CertDir holds per-host certificates: every NAME.crt or NAME.pem with
	// a NAME.key beside it, in the directory and in its subdirectories one
	// level down (such as Kubernetes TLS secrets mounted as
	// <dir>/<secret>/tls.crt and tls.key); names starting with '.' are
	// skipped. A handshake gets the certificate whose DNS names (or IP
	// addresses) match its server name (SNI) exactly, else the one for the
	// wildcard *.<parent>, else the default: the one for *.BaseDomain (or
	// BaseDomain), else the first by file name.
	CertDir string
	// ClientCAFile is a PEM bundle of the CAs whose client certificates
	// are verified: with it, clients are asked for a certificate (not
	// required to send one), and one that does not verify fails the
	// handshake.
	ClientCAFile string
	// BaseDomain picks the default certificate of CertDir.
	BaseDomain string
	// ReloadInterval is how often the files are checked for changes (size
	// and modification time); changed files are loaded and swapped in for
	// new handshakes. A file that does not load keeps the previous
	// certificates (and is logged). Default DefaultReloadInterval; < 0
	// disables reloading (Reload still works).
	ReloadInterval time.Duration
	// Logger receives reloads and failures. Default slog.Default().
	Logger *slog.Logger
}

// Certificates serves TLS certificates from files and reloads them without
// a restart: New loads them, Start watches them, Close stops watching.
// Handshakes pick a certificate from the current set, which a reload swaps
// atomically.
type Certificates struct {
	opts CertOptions
	log  *slog.Logger
	cur  atomic.Pointer[certSet]

	mu      sync.Mutex // serializes reloads; guards sig
	sig     string     // the files' signature at the last load attempt
	started bool
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// certSet is one load of the files.
type certSet struct {
	byName    map[string]*tls.Certificate // lower-case DNS names ("*.x" for wildcards) and IPs
	def       *tls.Certificate
	clientCAs *x509.CertPool
	files     []string // what was loaded, for logs

	configs sync.Map // nextProtos → *tls.Config for this set
}

// NewCertificates validates opts and loads the certificates.
func NewCertificates(opts CertOptions) (*Certificates, error) {
	switch {
	case opts.CertDir != "" && (opts.CertFile != "" || opts.KeyFile != ""):
		return nil, errors.New("tls: give a certificate and key, or a certificate directory, not both")
	case opts.CertDir == "" && (opts.CertFile == "" || opts.KeyFile == ""):
		return nil, errors.New("tls: a certificate needs both a certificate file and a key file")
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = DefaultReloadInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.BaseDomain = normalizeHost(opts.BaseDomain)
	c := &Certificates{opts: opts, log: opts.Logger.With("component", "tls"), quit: make(chan struct{})}
	sig, err := c.signature()
	if err != nil {
		return nil, err
	}
	set, err := c.load()
	if err != nil {
		return nil, err
	}
	c.sig = sig
	c.cur.Store(set)
	c.log.Info("TLS certificates loaded", "files", set.files, "client_ca", opts.ClientCAFile)
	return c, nil
}

// Start checks the files every ReloadInterval until Close.
func (c *Certificates) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.opts.ReloadInterval < 0 {
		return
	}
	c.started = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.opts.ReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-c.quit:
				return
			case <-t.C:
				c.Reload()
			}
		}
	}()
}

// Close stops watching the files; it is idempotent. Handshakes go on with
// the current certificates.
func (c *Certificates) Close() error {
	c.once.Do(func() {
		close(c.quit)
		c.wg.Wait()
	})
	return nil
}

// Reload loads the files if they changed since the last attempt and
// swaps them in. If they do not load, the previous certificates stay and
// the error is returned (and logged); the same files are not tried again
// until they change.
func (c *Certificates) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sig, err := c.signature()
	if err != nil {
		if sig != c.sig {
			c.log.Warn("TLS certificate reload failed; keeping the previous certificates", "err", err)
			c.sig = sig
		}
		return err
	}
	if sig == c.sig {
		return nil
	}
	c.sig = sig
	set, err := c.load()
	if err != nil {
		c.log.Warn("TLS certificate reload failed; keeping the previous certificates", "err", err)
		return err
	}
	c.cur.Store(set)
	c.log.Info("TLS certificates reloaded", "files", set.files)
	return nil
}

// ServerConfig returns a TLS server configuration that serves the current
// certificates (and, with a client CA, asks for and verifies client
// certificates) at every handshake. nextProtos are the ALPN protocols
// offered (none for MQTT, so that any ALPN a client sends is accepted;
// "http/1.1" for WebSocket).
func (c *Certificates) ServerConfig(nextProtos ...string) *tls.Config {
	key := strings.Join(nextProtos, ",")
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.cur.Load().config(key, nextProtos), nil
		},
	}
}

// GetCertificate returns the certificate for a handshake's server name.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load().pick(hello.ServerName), nil
}

// config returns the set's configuration for these ALPN protocols.
func (s *certSet) config(key string, nextProtos []string) *tls.Config {
	if v, ok := s.configs.Load(key); ok {
		return v.(*tls.Config)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.pick(hello.ServerName), nil
		},
	}
	if s.clientCAs != nil {
		// Asked for, not required; verified if given (x509 checks the
		// chain, validity and the client-auth key usage).
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = s.clientCAs
	}
	v, _ := s.configs.LoadOrStore(key, cfg)
	return v.(*tls.Config)
}

// pick chooses the certificate for a server name: exact match, then
// wildcard of the parent domain, then the default.
func (s *certSet) pick(serverName string) *tls.Certificate {
	name := normalizeHost(serverName)
	if name != "" {
		if crt := s.byName[name]; crt != nil {
			return crt
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if crt := s.byName["*"+name[i:]]; crt != nil {
				return crt
			}
		}
	}
	return s.def
}

// ---------------------------------------------------------------------------
// Loading

// certPair is a certificate file and its key file.
type certPair struct{ cert, key string }

// pairs lists the certificate files to load.
func (c *Certificates) pairs() ([]certPair, error) {
	if c.opts.CertDir == "" {
		return []certPair{{c.opts.CertFile, c.opts.KeyFile}}, nil
	}
	var out []certPair
	dirs := []string{c.opts.CertDir}
	entries, err := os.ReadDir(c.opts.CertDir)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(c.opts.CertDir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.IsDir() { // follows symlinks
			dirs = append(dirs, p)
		}
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("tls: certificate directory: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			ext := filepath.Ext(name)
			if strings.HasPrefix(name, ".") || (ext != ".crt" && ext != ".pem") {
				continue
			}
			key := filepath.Join(d, strings.TrimSuffix(name, ext)+".key")
			if _, err := os.Stat(key); err != nil {
				continue // a CA bundle or a chain without key
			}
			out = append(out, certPair{filepath.Join(d, name), key})
		}
	}
	slices.SortFunc(out, func(a, b certPair) int { return strings.Compare(a.cert, b.cert) })
	if len(out) == 0 {
		return nil, fmt.Errorf("tls: no certificates in %s (want NAME.crt or NAME.pem with NAME.key)", c.opts.CertDir)
	}
	return out, nil
}

// signature describes the files' names, sizes and modification times.
func (c *Certificates) signature() (string, error) {
	pairs, err := c.pairs()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	files := make([]string, 0, 2*len(pairs)+1)
	for _, p := range pairs {
		files = append(files, p.cert, p.key)
	}
	if c.opts.ClientCAFile != "" {
		files = append(files, c.opts.ClientCAFile)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return b.String() + "!" + f, fmt.Errorf("tls: %w", err)
		}
		fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// load reads every file into a new set.
func (c *Certificates) load() (*certSet, error) {
	pairs, err := c.pairs()
	if err != nil {
		return nil, err
	}
	s := &certSet{byName: map[string]*tls.Certificate{}}
	now := time.Now()
	for _, p := range pairs {
		crt, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			return nil, fmt.Errorf("tls: %s: %w", p.cert, err)
		}
		leaf := crt.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(crt.Certificate[0]); err != nil {
				return nil, fmt.Errorf("tls: %s: %w", p.cert, err)
			}
			crt.Leaf = leaf
		}
		if now.After(leaf.NotAfter) {
			c.log.Warn("TLS certificate has expired", "file", p.cert, "not_after", leaf.NotAfter)
		}
		names := slices.Clone(leaf.DNSNames)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = append(names, leaf.Subject.CommonName)
		}
		for _, n := range names {
			n = normalizeHost(n)
			if _, dup := s.byName[n]; !dup { // first by file name wins
				s.byName[n] = &crt
			}
		}
		if s.def == nil {
			s.def = &crt
		}
		s.files = append(s.files, p.cert)
	}
	if c.opts.CertDir != "" && c.opts.BaseDomain != "" {
		if crt := s.byName["*."+c.opts.BaseDomain]; crt != nil {
			s.def = crt
		} else if crt := s.byName[c.opts.BaseDomain]; crt != nil {
			s.def = crt
		}
	}
	if c.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(c.opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		s.clientCAs = x509.NewCertPool()
		if !s.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificates", c.opts.ClientCAFile)
		}
	}
	return s, nil
}
