// Package s3test runs a real S3 server, versitygw, for tests and the local
// demo. It speaks TLS with a self-signed certificate and checks SigV4
// signatures and upload checksums, so clients see the wire format
// production uses; its posix backend stores each object as a file at its
// key, so tests can read what was written.
package s3test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Fixed test credentials and names; nothing here protects anything.
const (
	accessKey = "sluicetest"
	secretKey = "sluicetest-secret-key"
	region    = "us-east-1"
	bucket    = "sluice-test"
)

// Bounds of the start-up wait.
const (
	startTimeout = 10 * time.Second
	pollEvery    = 20 * time.Millisecond
	startTries   = 3 // a fresh port each time: another process may take ours
	stopTimeout  = 5 * time.Second
)

// ErrNotFound is returned by Run when the versitygw binary is not installed.
var ErrNotFound = errors.New(`versitygw not found: run "make tools"`)

// Server is a running versitygw with one bucket.
type Server struct {
	Endpoint  string // https://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	CAFile    string // PEM of the server's self-signed certificate
	Dir       string // posix backend root: objects are files at Dir/Bucket/KEY
}

// Start runs a server for the test and stops it in t.Cleanup. It fails the
// test when versitygw is missing or does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	s, stop, err := Run(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(stop)
	return s
}

// Run starts a server keeping its certificate and data under dir, waits
// until it accepts TLS connections and creates the bucket. ctx bounds the
// start only; the server runs until stop is called. stop is idempotent.
func Run(ctx context.Context, dir string) (s *Server, stop func(), err error) {
	bin, err := findBinary()
	if err != nil {
		return nil, nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, nil, err
	}
	certFile, keyFile := filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
	certPEM, err := writeCert(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("make certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	data := filepath.Join(dir, "data")
	// The posix backend treats every directory under its root as a bucket.
	if err := os.MkdirAll(filepath.Join(data, bucket), 0o755); err != nil {
		return nil, nil, err
	}

	for try := 1; ; try++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, nil, err
		}
		p, err := start(ctx, bin, dir, addr, certFile, keyFile, data, roots)
		if err == nil {
			s := &Server{
				Endpoint:  "https://" + addr,
				Bucket:    bucket,
				AccessKey: accessKey,
				SecretKey: secretKey,
				Region:    region,
				CAFile:    certFile,
				Dir:       data,
			}
			return s, p.stop, nil
		}
		if !errors.Is(err, errExited) || try == startTries {
			return nil, nil, err
		}
	}
}

var errExited = errors.New("versitygw exited")

// proc is a started versitygw.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been reaped
	err    error         // cmd.Wait's result, valid after done
	stderr bytes.Buffer  // read only after done
	once   sync.Once
}

func start(ctx context.Context, bin, dir, addr, certFile, keyFile, data string, roots *x509.CertPool) (*proc, error) {
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(bin,
		"--access", accessKey, "--secret", secretKey, "--region", region,
		"--port", addr, "--cert", certFile, "--key", keyFile, "--quiet",
		"posix", data)
	p.cmd.Dir = dir
	p.cmd.Env = cleanEnv(os.Environ())
	p.cmd.Stderr = &p.stderr
	p.cmd.Stdout = &p.stderr
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()

	tlsConf := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if ready(ctx, addr, tlsConf) {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%w (%v): %s", errExited, p.err, strings.TrimSpace(p.stderr.String()))
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("wait for versitygw on %s: %w", addr, ctx.Err())
		case <-deadline.C:
			p.stop()
			return nil, fmt.Errorf("versitygw did not accept TLS on %s within %v: %s", addr, startTimeout, strings.TrimSpace(p.stderr.String()))
		case <-tick.C:
		}
	}
}

// ready reports whether the server completes a TLS handshake.
func ready(ctx context.Context, addr string, conf *tls.Config) bool {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: conf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// stop asks the server to exit and kills it if it does not.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// cleanEnv drops versitygw's own variables, which would override nothing
// we pass but could add settings a developer's shell happens to have.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// findBinary looks for versitygw on PATH, in $GOBIN, then in GOPATH/bin,
// where "make tools" installs it.
func findBinary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	} else if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// writeCert writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, and its key, and returns the certificate's PEM.
func writeCert(certFile, keyFile string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sluice s3test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, so it can sit in a CA bundle
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, nil
}

// Env returns what a child process needs to reach the server through the
// SDK's default configuration: credentials, region, endpoint and CA bundle.
// Append it to os.Environ(); later entries win.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_CA_BUNDLE=" + s.CAFile,
	}
}

// NewClient returns an SDK client for the server: path-style, trusting
// only the server's certificate, independent of the AWS_* environment.
func (s *Server) NewClient() (*s3.Client, error) {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", s.CAFile)
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}
	cfg := aws.Config{
		Region:      s.Region,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
		o.UsePathStyle = true
		o.HTTPClient = hc
	}), nil
}

// Client is NewClient for tests: it fails the test on error and closes
// idle connections at cleanup.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	c, err := s.NewClient()
	if err != nil {
		t.Fatalf("s3 client: %v", err)
	}
	t.Cleanup(func() {
		if cl, ok := c.Options().HTTPClient.(*http.Client); ok {
			cl.CloseIdleConnections()
		}
	})
	return c
}

// Objects returns the bucket's objects, key to stored bytes, read from the
// backend directory. Hidden entries (versitygw's temporary files) are
// skipped.
func (s *Server) Objects(t testing.TB) map[string][]byte {
	t.Helper()
	objs, err := s.ReadObjects()
	if err != nil {
		t.Fatalf("read objects: %v", err)
	}
	return objs
}

// ReadObjects is Objects without testing.TB.
func (s *Server) ReadObjects() (map[string][]byte, error) {
	root := filepath.Join(s.Dir, s.Bucket)
	objs := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs[filepath.ToSlash(rel)] = b
		return nil
	})
	return objs, err
}
