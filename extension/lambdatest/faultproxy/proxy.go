// Package faultproxy is an HTTPS reverse proxy for S3 that injects faults
// chosen at run time: the sink down, S3 error answers (503 SlowDown, 403
// AccessDenied...), latency, and connections reset in the middle of an
// upload. It sits between an extension and a real S3 server (versitygw in
// the tests) and forwards everything else unchanged: the Host header as the
// client sent it (SigV4 signs it), every header, and bodies streamed as they
// come, aws-chunked trailers included.
//
// The proxy serves TLS on 127.0.0.1 with a certificate the client already
// trusts (the S3 test server's own, which names 127.0.0.1), so pointing
// AWS_ENDPOINT_URL_S3 at Endpoint is the only change a client needs.
package faultproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a fault does to a request.
type Kind int

const (
	// None forwards every request.
	None Kind = iota
	// Down makes the server unreachable: new connections are reset as soon
	// as they are accepted, requests on connections opened earlier are
	// reset before any of their body is read, and setting an unconditional
	// Down resets every open connection at once.
	Down
	// Status answers with Fault.Code and an S3 XML error document
	// (Fault.S3Code, Fault.Message) without forwarding.
	Status
	// Latency waits Fault.Delay, then forwards.
	Latency
	// Reset reads Fault.ResetAfter bytes of the request body, then resets
	// the TCP connection (RST, no TLS close): an upload cut mid-way.
	Reset
)

// String names the kind as it appears in the Fault's String.
func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case Down:
		return "down"
	case Status:
		return "status"
	case Latency:
		return "latency"
	case Reset:
		return "reset"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is what the proxy does to the requests it selects, and which ones.
// The zero Fault forwards everything. Count, Every and Percent select
// requests counted from the SetFault that installed the fault; a request
// must pass all three.
type Fault struct {
	Kind Kind

	Code    int    // Status: the HTTP status, e.g. 503
	S3Code  string // Status: the S3 error code, e.g. "SlowDown"
	Message string // Status: the error message; empty takes the status text

	Delay time.Duration // Latency: the wait before forwarding

	// ResetAfter is, for Reset, how many body bytes are read before the
	// reset; zero reads half the declared Content-Length (at least one
	// byte when there is a body).
	ResetAfter int64

	// Count is the most requests the fault applies to; 0 means no limit.
	Count int
	// Every applies the fault to every Every-th request only (the
	// Every-th, 2*Every-th...); 0 and 1 mean every request.
	Every int
	// Percent applies the fault to this share of the requests, spread
	// evenly and deterministically, the first ones faulted first (80: four
	// in five, the fifth passes); 0 and 100 mean every request.
	Percent int
}

// String describes the fault for logs.
func (f Fault) String() string {
	s := f.Kind.String()
	switch f.Kind {
	case Status:
		s += fmt.Sprintf(" %d %s", f.Code, f.S3Code)
	case Latency:
		s += " " + f.Delay.String()
	case Reset:
		if f.ResetAfter > 0 {
			s += fmt.Sprintf(" after %d bytes", f.ResetAfter)
		}
	}
	if f.Count > 0 {
		s += fmt.Sprintf(" count=%d", f.Count)
	}
	if f.Every > 1 {
		s += fmt.Sprintf(" every=%d", f.Every)
	}
	if f.Percent > 0 && f.Percent < 100 {
		s += fmt.Sprintf(" percent=%d", f.Percent)
	}
	return s
}

// unconditional reports whether the fault applies to every request.
func (f Fault) unconditional() bool {
	return f.Count <= 0 && f.Every <= 1 && (f.Percent <= 0 || f.Percent >= 100)
}

// selects reports whether the n-th request (1-based) since the fault was
// set gets it, given that applied requests already did.
func (f Fault) selects(n, applied int64) bool {
	if f.Kind == None {
		return false
	}
	if f.Count > 0 && applied >= int64(f.Count) {
		return false
	}
	if f.Every > 1 && n%int64(f.Every) != 0 {
		return false
	}
	if p := int64(f.Percent); p > 0 && p < 100 {
		// The n-th request is faulted when it brings the faulted share
		// up to the next whole request: ceil(n*p/100) grows.
		if (n*p+99)/100 == ((n-1)*p+99)/100 {
			return false
		}
	}
	return true
}

func (f Fault) validate() error {
	switch f.Kind {
	case None, Down, Reset:
	case Status:
		if f.Code < 100 || f.Code > 999 {
			return fmt.Errorf("status fault: code %d is not an HTTP status", f.Code)
		}
	case Latency:
		if f.Delay < 0 {
			return fmt.Errorf("latency fault: negative delay %v", f.Delay)
		}
	default:
		return fmt.Errorf("unknown fault kind %d", int(f.Kind))
	}
	if f.Count < 0 || f.Every < 0 || f.Percent < 0 || f.Percent > 100 || f.ResetAfter < 0 {
		return fmt.Errorf("fault %v: Count, Every, ResetAfter must not be negative and Percent must be 0..100", f)
	}
	return nil
}

// Stats counts what the proxy did since it started.
type Stats struct {
	// Requests counts requests received, plus connections reset at
	// accept while Down.
	Requests int64
	// Forwarded counts requests passed to the upstream (delayed ones
	// included).
	Forwarded int64
	// Faulted counts requests (and connections) a fault was applied to.
	Faulted int64
	// UpstreamErrors counts forwarded requests that got no answer from
	// the upstream (answered 502), client cancellations included.
	UpstreamErrors int64
	// InFlight is the number of requests being handled now.
	InFlight int64
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	endpoint  string
	srv       *http.Server
	rp        *httputil.ReverseProxy
	transport *http.Transport
	serveDone chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	stopCtx   func() bool

	inFlight atomic.Int64
	errorSeq atomic.Int64 // request ids of the error answers

	mu      sync.Mutex
	fault   Fault
	seen    int64 // requests since the fault was set
	applied int64 // of which faulted
	conns   map[net.Conn]struct{}
	stats   Stats
}

// Start starts a proxy in front of upstream (https://HOST:PORT), trusting
// the certificates in caFile for the upstream and serving TLS with the
// certificate and key in certFile and keyFile on 127.0.0.1 at a random
// port. It runs until Close is called or ctx is done.
func Start(ctx context.Context, upstream, caFile, certFile, keyFile string) (*Proxy, error) {
	up, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("start fault proxy: upstream %q: %w", upstream, err)
	}
	if up.Scheme != "https" || up.Host == "" {
		return nil, fmt.Errorf("start fault proxy: upstream %q: want https://HOST:PORT", upstream)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("start fault proxy: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("start fault proxy: no certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("start fault proxy: load certificate: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start fault proxy: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start fault proxy: listen: %w", err)
	}

	p := &Proxy{
		endpoint:  "https://" + ln.Addr().String(),
		serveDone: make(chan struct{}),
		closed:    make(chan struct{}),
		conns:     map[net.Conn]struct{}{},
	}
	p.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		// Compression would change the bytes the client gets.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = up.Scheme
			r.Out.URL.Host = up.Host
			// SigV4 signs the Host the client used: the proxy's.
			r.Out.Host = r.In.Host
		},
		Transport: p.transport,
		// A negative interval flushes each write: bodies stream through.
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.mu.Lock()
			p.stats.UpstreamErrors++
			p.mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState:         p.trackConn,
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: Reset and Down hijack connections.
		NextProtos: []string{"http/1.1"},
	}
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(tls.NewListener(&listener{Listener: ln, p: p}, tlsConf)) // ErrServerClosed at Close
	}()
	p.stopCtx = context.AfterFunc(ctx, func() { _ = p.Close() })
	return p, nil
}

// Endpoint is the proxy's URL, https://127.0.0.1:PORT.
func (p *Proxy) Endpoint() string { return p.endpoint }

// SetFault installs f for the requests that arrive from now on; requests
// already being handled keep the fault they were given. Its selection
// (Count, Every, Percent) counts from here. An unconditional Down also
// resets every open connection.
func (p *Proxy) SetFault(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("set fault: %w", err)
	}
	p.mu.Lock()
	p.fault, p.seen, p.applied = f, 0, 0
	var open []net.Conn
	if f.Kind == Down && f.unconditional() {
		for c := range p.conns {
			open = append(open, c)
		}
		clear(p.conns)
		p.stats.Faulted += int64(len(open))
	}
	p.mu.Unlock()
	for _, c := range open {
		resetConn(c)
	}
	return nil
}

// Fault returns the fault in force.
func (p *Proxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	s := p.stats
	p.mu.Unlock()
	s.InFlight = p.inFlight.Load()
	return s
}

// Close stops the proxy: the listener, every connection and the requests
// waiting on a delay. It is idempotent.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		if p.stopCtx != nil {
			p.stopCtx()
		}
		_ = p.srv.Close()
		<-p.serveDone
		p.transport.CloseIdleConnections()
	})
	return nil
}

// decide counts a request and returns the fault it gets (None if not
// selected). atAccept is true for a new connection, which only Down affects.
func (p *Proxy) decide(atAccept bool) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fault
	if atAccept && f.Kind != Down {
		return Fault{}
	}
	p.stats.Requests++
	if f.Kind == None {
		return Fault{}
	}
	p.seen++
	if !f.selects(p.seen, p.applied) {
		return Fault{}
	}
	p.applied++
	p.stats.Faulted++
	return f
}

// ServeHTTP applies the fault in force to one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	f := p.decide(false)
	switch f.Kind {
	case Down:
		p.reset(w)
	case Reset:
		n := f.ResetAfter
		if n == 0 && r.ContentLength != 0 {
			n = max(r.ContentLength/2, 1)
		}
		if n > 0 {
			_, _ = io.CopyN(io.Discard, r.Body, n)
		}
		p.reset(w)
	case Status:
		// Read the body first, as S3 does before answering a PUT, so the
		// client gets the answer rather than a broken pipe.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
		p.writeS3Error(w, r, f)
	case Latency:
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
			p.forward(w, r)
		case <-r.Context().Done():
			t.Stop()
			p.reset(w) // the client has gone; never answer 200 by returning
		case <-p.closed:
			t.Stop()
			p.reset(w)
		}
	default:
		p.forward(w, r)
	}
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.stats.Forwarded++
	p.mu.Unlock()
	p.rp.ServeHTTP(w, r)
}

// reset takes the connection from the server and resets it.
func (p *Proxy) reset(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not expected on HTTP/1.1; still a failure, never a success.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	resetConn(c)
}

// trackConn keeps the open connections, so that Down can reset them.
func (p *Proxy) trackConn(c net.Conn, state http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch state {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
	}
}

// listener resets connections as they are accepted while Down.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.p.decide(true).Kind == Down {
			resetConn(c)
			continue
		}
		return c, nil
	}
}

// resetConn closes c's TCP connection with SO_LINGER 0: the peer gets a
// RST, not a TLS close_notify or a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = c.Close()
}

// writeS3Error answers the way S3 does: an XML Error document, with the
// request id in the body and in x-amz-request-id. HEAD gets no body.
func (p *Proxy) writeS3Error(w http.ResponseWriter, r *http.Request, f Fault) {
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(f.Code)
	}
	id := fmt.Sprintf("FAULTPROXY%010d", p.errorSeq.Add(1))
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		"<Error><Code>" + html.EscapeString(f.S3Code) + "</Code><Message>" + html.EscapeString(msg) +
		"</Message><Resource>" + html.EscapeString(r.URL.Path) + "</Resource><RequestId>" + id +
		"</RequestId><HostId>faultproxy</HostId></Error>"
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("x-amz-request-id", id)
	h.Set("x-amz-id-2", "faultproxy")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(f.Code)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
