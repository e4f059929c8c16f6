package faultproxy

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
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// seen is what the upstream received.
type seen struct {
	Method     string
	RequestURI string
	Host       string
	Header     http.Header
	Body       []byte
}

// upstream is an httptest TLS server that records requests.
type upstream struct {
	srv    *httptest.Server
	caFile string
	hits   atomic.Int64
	mu     sync.Mutex
	last   seen
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream read body: %v", err)
		}
		h := r.Header.Clone()
		// Added by the proxy's transport; not part of what is compared.
		h.Del("Accept-Encoding")
		u.mu.Lock()
		u.last = seen{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: h, Body: body}
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "got %d bytes", len(body))
	}))
	t.Cleanup(u.srv.Close)
	u.caFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
	der := u.srv.Certificate().Raw
	if err := os.WriteFile(u.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "faultproxy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// setup starts an upstream, a proxy in front of it and a client trusting
// the proxy. Keep-alives are off so that each request is one connection
// and the transport never replays a request by itself.
func setup(t *testing.T) (*upstream, *Proxy, *http.Client) {
	t.Helper()
	u := newUpstream(t)
	certFile, keyFile, pool := selfSigned(t)
	p, err := Start(context.Background(), u.srv.URL, u.caFile, certFile, keyFile)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
	return u, p, c
}

// slowReader returns its data in small pieces, so the body is streamed.
type slowReader struct {
	data []byte
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 4096)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestForwardUnchanged(t *testing.T) {
	u, p, c := setup(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320 KB
	uri := "/bucket/archive/function%3De2e/dt=2026-11-30/x.json.zst?x-id=PutObject"
	for _, tc := range []struct {
		name   string
		length int64 // -1: chunked transfer encoding
	}{
		{"content-length", int64(len(body))},
		{"chunked", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPut, p.Endpoint()+uri, &slowReader{data: body})
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.length
			req.Header.Set("Content-Encoding", "aws-chunked")
			req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32c")
			req.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
			req.Header.Set("If-None-Match", "*")
			req.Header.Set("User-Agent", "faultproxy-test")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("PUT through the proxy: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Upstream") != "yes" || string(got) != fmt.Sprintf("got %d bytes", len(body)) {
				t.Errorf("answer = %d %q (X-Upstream %q), want the upstream's 201", resp.StatusCode, got, resp.Header.Get("X-Upstream"))
			}
			u.mu.Lock()
			last := u.last
			u.mu.Unlock()
			want := http.Header{
				"Content-Encoding":     {"aws-chunked"},
				"X-Amz-Trailer":        {"x-amz-checksum-crc32c"},
				"X-Amz-Content-Sha256": {"STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
				"If-None-Match":        {"*"},
				"User-Agent":           {"faultproxy-test"},
			}
			if tc.length >= 0 {
				want.Set("Content-Length", fmt.Sprint(len(body)))
			}
			wantSeen := seen{Method: http.MethodPut, RequestURI: uri, Host: strings.TrimPrefix(p.Endpoint(), "https://"), Header: want, Body: body}
			if diff := cmp.Diff(wantSeen, last); diff != "" {
				t.Errorf("upstream saw (-want +got):\n%.3000s", diff)
			}
		})
	}
	if s := p.Stats(); s.Requests != 2 || s.Forwarded != 2 || s.Faulted != 0 {
		t.Errorf("Stats = %+v, want 2 requests forwarded", s)
	}
}

func TestFaults(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100_000)
	for _, tc := range []struct {
		name       string
		fault      Fault
		wantStatus int    // 0: the request must fail
		wantBody   string // substring of the answer
		wantHits   int64  // requests the upstream got
		minTime    time.Duration
	}{
		{name: "none", fault: Fault{}, wantStatus: http.StatusCreated, wantHits: 1},
		{name: "slowdown", fault: Fault{Kind: Status, Code: 503, S3Code: "SlowDown", Message: "Please reduce your request rate."},
			wantStatus: 503, wantBody: "<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"},
		{name: "access-denied", fault: Fault{Kind: Status, Code: 403, S3Code: "AccessDenied"},
			wantStatus: 403, wantBody: "<Code>AccessDenied</Code><Message>Forbidden</Message>"},
		{name: "latency", fault: Fault{Kind: Latency, Delay: 150 * time.Millisecond}, wantStatus: http.StatusCreated, wantHits: 1, minTime: 150 * time.Millisecond},
		{name: "down", fault: Fault{Kind: Down}},
		{name: "reset", fault: Fault{Kind: Reset}},
		{name: "reset-after", fault: Fault{Kind: Reset, ResetAfter: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, p, c := setup(t)
			if err := p.SetFault(tc.fault); err != nil {
				t.Fatalf("SetFault: %v", err)
			}
			start := time.Now()
			resp, err := c.Post(p.Endpoint()+"/b/k", "application/octet-stream", bytes.NewReader(body))
			elapsed := time.Since(start)
			if tc.wantStatus == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("POST = %d, want a connection error", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatalf("POST: %v", err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus || !strings.Contains(string(got), tc.wantBody) {
					t.Errorf("POST = %d %q, want %d with %q", resp.StatusCode, got, tc.wantStatus, tc.wantBody)
				}
			}
			if got := u.hits.Load(); got != tc.wantHits {
				t.Errorf("upstream got %d requests, want %d", got, tc.wantHits)
			}
			if elapsed < tc.minTime {
				t.Errorf("POST took %v, want at least %v", elapsed, tc.minTime)
			}
			s := p.Stats()
			wantFaulted := int64(1)
			if tc.fault.Kind == None {
				wantFaulted = 0
			}
			if s.Requests != 1 || s.Faulted != wantFaulted || s.Forwarded != tc.wantHits {
				t.Errorf("Stats = %+v, want 1 request, %d faulted, %d forwarded", s, wantFaulted, tc.wantHits)
			}
			// Back to normal.
			if err := p.SetFault(Fault{}); err != nil {
				t.Fatal(err)
			}
			resp, err = c.Post(p.Endpoint()+"/b/k", "text/plain", strings.NewReader("after"))
			if err != nil {
				t.Fatalf("POST after the fault: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("POST after the fault = %d, want 201", resp.StatusCode)
			}
		})
	}
}

func TestSelects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault Fault
		want  string // for requests 1..10: x faulted, . passed
	}{
		{"none", Fault{}, ".........."},
		{"all", Fault{Kind: Reset}, "xxxxxxxxxx"},
		{"count", Fault{Kind: Reset, Count: 3}, "xxx......."},
		{"every-2", Fault{Kind: Reset, Every: 2}, ".x.x.x.x.x"},
		{"every-3-count-2", Fault{Kind: Reset, Every: 3, Count: 2}, "..x..x...."},
		{"percent-80", Fault{Kind: Status, Code: 503, Percent: 80}, "xxxx.xxxx."},
		{"percent-50", Fault{Kind: Status, Code: 503, Percent: 50}, "x.x.x.x.x."},
		{"percent-100", Fault{Kind: Status, Code: 503, Percent: 100}, "xxxxxxxxxx"},
		{"percent-30-count-2", Fault{Kind: Latency, Percent: 30, Count: 2}, "x..x......"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got strings.Builder
			applied := int64(0)
			for n := int64(1); n <= 10; n++ {
				if tc.fault.selects(n, applied) {
					applied++
					got.WriteByte('x')
				} else {
					got.WriteByte('.')
				}
			}
			if got.String() != tc.want {
				t.Errorf("%v selects %s, want %s", tc.fault, got.String(), tc.want)
			}
		})
	}
}

func TestSetFaultInvalid(t *testing.T) {
	_, p, _ := setup(t)
	for _, f := range []Fault{
		{Kind: Status, Code: 42},
		{Kind: Latency, Delay: -time.Second},
		{Kind: Reset, Percent: 101},
		{Kind: Kind(99)},
	} {
		if err := p.SetFault(f); err == nil {
			t.Errorf("SetFault(%v) = nil, want an error", f)
		}
	}
}

// An unconditional Down breaks the connections already open, not just new
// ones.
func TestDownResetsOpenConnections(t *testing.T) {
	u, p, c := setup(t)
	roots := c.Transport.(*http.Transport).TLSClientConfig.RootCAs
	conn, err := tls.Dial("tcp", strings.TrimPrefix(p.Endpoint(), "https://"), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("dial the proxy: %v", err)
	}
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := p.SetFault(Fault{Kind: Down}); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(make([]byte, 1))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read on a connection open before Down = %d bytes, %v; want a reset", n, err)
		}
	}
	if u.hits.Load() != 0 {
		t.Errorf("upstream got %d requests while down", u.hits.Load())
	}
}

// Against versitygw with the AWS SDK: SigV4 (which signs the Host header)
// and aws-chunked trailer checksums pass through unchanged, error answers
// parse as S3 errors, and the SDK's retries get past a reset.
func TestS3ThroughProxy(t *testing.T) {
	dir := t.TempDir()
	srv, stop, err := s3test.Run(context.Background(), dir)
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(stop)
	p, err := Start(context.Background(), srv.Endpoint, srv.CAFile,
		filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem"))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	via := *srv
	via.Endpoint = p.Endpoint()
	client, err := via.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(key string) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:      aws.String(srv.Bucket),
			Key:         aws.String(key),
			Body:        bytes.NewReader(bytes.Repeat([]byte("log line\n"), 10_000)),
			IfNoneMatch: aws.String("*"),
		})
		return err
	}

	if err := put("a/function=x/one"); err != nil {
		t.Fatalf("PutObject through the proxy: %v", err)
	}

	if err := p.SetFault(Fault{Kind: Status, Code: 403, S3Code: "AccessDenied", Message: "Access Denied"}); err != nil {
		t.Fatal(err)
	}
	var apiErr smithy.APIError
	if err := put("a/two"); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Errorf("PutObject under 403 = %v, want an AccessDenied API error", err)
	}

	if err := p.SetFault(Fault{Kind: Reset, Every: 2}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a/three", "a/four"} {
		if err := put(k); err != nil {
			t.Errorf("PutObject(%s) with a reset on every 2nd request: %v (the SDK retries)", k, err)
		}
	}
	objs, err := srv.ReadObjects()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range objs {
		keys = append(keys, k)
		if len(v) != 90_000 {
			t.Errorf("object %s has %d bytes, want 90000", k, len(v))
		}
	}
	if len(keys) != 3 {
		t.Errorf("objects %v, want a/function=x/one, a/three and a/four", keys)
	}
	s := p.Stats()
	// one, two (403), three, four (reset), four retried.
	if s.Requests != 5 || s.Faulted != 2 || s.Forwarded != 3 {
		t.Errorf("Stats = %+v, want 5 requests, 2 faulted, 3 forwarded", s)
	}
}

// A client that gives up during the delay is not forwarded: the upstream
// never sees the request, so it cannot commit it behind the client's back.
func TestLatencyClientGivesUp(t *testing.T) {
	u, p, c := setup(t)
	if err := p.SetFault(Fault{Kind: Latency, Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.Endpoint()+"/b/k", strings.NewReader("data"))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("PUT = %d, want the client's timeout", resp.StatusCode)
	}
	// The delayed handler resets the connection once the client is gone;
	// nothing can forward it after that.
	if s := p.Stats(); s.Forwarded != 0 || s.Faulted != 1 || u.hits.Load() != 0 {
		t.Errorf("Stats = %+v, upstream hits %d; want nothing forwarded", s, u.hits.Load())
	}
}
