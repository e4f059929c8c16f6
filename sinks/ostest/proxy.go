package ostest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Fixed test credentials; nothing here protects anything.
const (
	AccessKey = "AKIDSLUICETEST"
	SecretKey = "sluice-test-secret-key"
	Region    = "us-east-1"
)

// maxClockSkew is how far a signature's time may be from the proxy's, as
// AWS allows.
const maxClockSkew = 5 * time.Minute

// ProxyConfig says what the proxy checks and how it behaves.
type ProxyConfig struct {
	// Service, when set ("es" or "aoss"), makes the proxy check every
	// request's SigV4 signature for it, over the bytes received, and refuse
	// a missing or bad one with 403.
	Service string
	// Serverless makes the proxy act like an OpenSearch Serverless
	// time-series collection: items with a client _id are refused with
	// 400, GET / answers 404, refresh=true answers 400.
	Serverless bool
	// AccessKey and SecretKey are the credentials signatures are checked
	// against; empty means the package's AccessKey and SecretKey. A
	// process that also talks to another test server (versitygw) signs
	// every request with one set of credentials: pass that server's.
	AccessKey, SecretKey string
}

// Faults are injected on demand; the zero value injects none.
type Faults struct {
	// ItemRejectPercent of the bulk items are answered 429
	// (rejected_execution_exception) inside a 200 the first time the proxy
	// sees them (chosen by a hash of the _id, or of the source when there
	// is none); later tries pass.
	ItemRejectPercent int
	// FailRequests requests are answered FailStatus (429 or 503) as a
	// whole before any reaches the node.
	FailRequests int
	FailStatus   int
	// MaxBody answers 413 to a request whose body, as received, is larger.
	MaxBody int
	// Latency delays every request.
	Latency time.Duration
	// ResetRequests requests have their connection closed without an answer.
	ResetRequests int
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	Requests      int // every request received
	BadSignatures int // refused with 403
	Bulks         int // _bulk requests forwarded to the node
	Items         int // bulk items forwarded to the node
	ItemsRejected int // items answered 429 by ItemRejectPercent
	IDsRefused    int // items refused for their _id (Serverless)
	Failed        int // requests answered FailStatus
	TooLarge      int // requests answered 413
	Resets        int // connections closed
	MaxWireBody   int // largest request body received
	MaxBulkBody   int // largest _bulk body after gzip decoding
	WireBytes     int // request bodies received, in total
	BulkBytes     int // _bulk bodies after gzip decoding, in total
}

// Proxy is a TLS front end to a node.
type Proxy struct {
	URL    string       // https://127.0.0.1:PORT
	Client *http.Client // trusts the proxy's certificate

	cfg    ProxyConfig
	target *url.URL
	srv    *httptest.Server
	rp     *httputil.ReverseProxy
	signer *v4.Signer

	mu     sync.Mutex
	faults Faults
	seen   map[string]bool // item keys seen, for ItemRejectPercent
	stats  ProxyStats
}

// NewProxy starts a proxy to the node at target (http://HOST:PORT) and
// closes it in t.Cleanup.
func NewProxy(t testing.TB, target string, cfg ProxyConfig) *Proxy {
	t.Helper()
	p, err := StartProxy(target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartProxy starts a proxy to the node at target (http://HOST:PORT) for a
// program that is not a test; Close stops it.
func StartProxy(target string, cfg ProxyConfig) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q: want http://HOST:PORT (%v)", target, err)
	}
	if cfg.AccessKey == "" {
		cfg.AccessKey, cfg.SecretKey = AccessKey, SecretKey
	}
	p := &Proxy{cfg: cfg, target: u, seen: map[string]bool{}, signer: v4.NewSigner()}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	p.Client = p.srv.Client()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// CertPEM returns the proxy's certificate in PEM. A child process trusts
// it when SSL_CERT_FILE names a file holding it (Go's crypto/x509 reads
// that variable on Linux), as the sluice binary under test does.
func (p *Proxy) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
}

// AWSConfig returns a configuration whose credentials the proxy accepts.
func (p *Proxy) AWSConfig() aws.Config {
	return aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider(p.cfg.AccessKey, p.cfg.SecretKey, ""),
	}
}

// SetFaults replaces the faults to inject.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
}

// Stats returns the counters so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.stats.Requests++
	p.stats.MaxWireBody = max(p.stats.MaxWireBody, len(body))
	p.stats.WireBytes += len(body)
	f := p.faults
	p.mu.Unlock()

	if p.cfg.Service != "" {
		if err := p.verify(r, body); err != nil {
			p.count(func(s *ProxyStats) { s.BadSignatures++ })
			writeJSON(w, http.StatusForbidden, map[string]string{"message": "The request signature we calculated does not match the signature you provided: " + err.Error()})
			return
		}
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if p.take(func(f *Faults) bool { return take(&f.ResetRequests) }) {
		p.count(func(s *ProxyStats) { s.Resets++ })
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if f.MaxBody > 0 && len(body) > f.MaxBody {
		p.count(func(s *ProxyStats) { s.TooLarge++ })
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"Message": fmt.Sprintf("Request size exceeded %d bytes", f.MaxBody)})
		return
	}
	if status := f.FailStatus; status != 0 && p.take(func(f *Faults) bool { return take(&f.FailRequests) }) {
		p.count(func(s *ProxyStats) { s.Failed++ })
		writeJSON(w, status, map[string]any{"error": map[string]string{"type": "injected", "reason": "injected fault"}, "status": status})
		return
	}
	if p.cfg.Serverless {
		if r.Method == http.MethodGet && r.URL.Path == "/" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("refresh") == "true" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "illegal_argument_exception", "reason": "refresh=true is not supported"}, "status": 400})
			return
		}
	}
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_bulk") {
		p.bulk(w, r, body, f)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) count(f func(*ProxyStats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.stats)
}

// take applies f to the faults under the lock and returns its answer.
func (p *Proxy) take(f func(*Faults) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f(&p.faults)
}

func take(n *int) bool {
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

// verify checks r's SigV4 signature for the proxy's service, region and
// credentials, over body as received, by signing the same request again.
func (p *Proxy) verify(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return fmt.Errorf("no SigV4 Authorization header")
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(auth, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		parts[k] = v
	}
	scope := strings.Split(parts["Credential"], "/")
	if len(scope) != 5 || scope[0] != p.cfg.AccessKey || scope[2] != Region || scope[3] != p.cfg.Service || scope[4] != "aws4_request" {
		return fmt.Errorf("credential scope %q: want %s/DATE/%s/%s/aws4_request", parts["Credential"], p.cfg.AccessKey, Region, p.cfg.Service)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date %q: %v", r.Header.Get("X-Amz-Date"), err)
	}
	if d := time.Since(when); d > maxClockSkew || d < -maxClockSkew {
		return fmt.Errorf("signed %v ago: clock skew", d)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != hash && (got != "" || p.cfg.Service == "aoss") {
		return fmt.Errorf("X-Amz-Content-Sha256 %q does not match the body received (%s)", got, hash)
	}
	again, err := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	again.Host = r.Host
	again.ContentLength = r.ContentLength
	for _, h := range strings.Split(parts["SignedHeaders"], ";") {
		if h == "host" || h == "content-length" {
			continue
		}
		for _, v := range r.Header.Values(h) {
			again.Header.Add(h, v)
		}
	}
	again.Header.Del("Authorization")
	creds := aws.Credentials{AccessKeyID: p.cfg.AccessKey, SecretAccessKey: p.cfg.SecretKey}
	if err := p.signer.SignHTTP(context.Background(), creds, again, hash, p.cfg.Service, Region, when); err != nil {
		return err
	}
	want := again.Header.Get("Authorization")
	if !hmac.Equal([]byte(want), []byte(auth)) {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}

// bulkItem is one item of a _bulk request as the proxy sees it.
type bulkItem struct {
	op     string // create or index
	index  string
	id     string
	action []byte
	source []byte
	answer map[string]any // set when the proxy answers the item itself
}

// bulk answers a _bulk request: it answers the items the faults or the
// Serverless rules refuse, forwards the rest to the node, and merges the
// answers in order.
func (p *Proxy) bulk(w http.ResponseWriter, r *http.Request, body []byte, f Faults) {
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "parse_exception", "reason": err.Error()}, "status": 400})
			return
		}
	}
	p.count(func(s *ProxyStats) {
		s.MaxBulkBody = max(s.MaxBulkBody, len(body))
		s.BulkBytes += len(body)
	})
	items, err := parseBulk(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "illegal_argument_exception", "reason": err.Error()}, "status": 400})
		return
	}
	var fwd bytes.Buffer
	n := 0
	p.mu.Lock()
	for _, it := range items {
		switch {
		case p.cfg.Serverless && it.id != "":
			p.stats.IDsRefused++
			it.answer = itemError(it, 400, "illegal_argument_exception", "Document ID is not supported in create/index operation request")
		case f.ItemRejectPercent > 0 && p.firstTry(it) && pick(it, f.ItemRejectPercent):
			p.stats.ItemsRejected++
			it.answer = itemError(it, 429, "rejected_execution_exception", "rejected execution of coordinating operation (injected)")
		default:
			fwd.Write(it.action)
			fwd.WriteByte('\n')
			fwd.Write(it.source)
			fwd.WriteByte('\n')
			n++
		}
	}
	p.stats.Items += n
	if n > 0 {
		p.stats.Bulks++
	}
	p.mu.Unlock()

	var nodeItems []map[string]any
	if n > 0 {
		// Once forwarded, the items are the node's even if the client
		// goes away, as on a cluster; Close waits for the answer.
		req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), http.MethodPost, p.target.String()+r.URL.Path, &fwd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(resp.StatusCode)
			w.Write(data)
			return
		}
		var ans struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(data, &ans); err != nil || len(ans.Items) != n {
			http.Error(w, fmt.Sprintf("node answer: %d items for %d (%v)", len(ans.Items), n, err), http.StatusBadGateway)
			return
		}
		nodeItems = ans.Items
	}
	out := make([]map[string]any, 0, len(items))
	errs := false
	for _, it := range items {
		a := it.answer
		if a == nil {
			a, nodeItems = nodeItems[0], nodeItems[1:]
		}
		for _, v := range a {
			if m, ok := v.(map[string]any); ok && m["error"] != nil {
				errs = true
			}
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, map[string]any{"took": 1, "errors": errs, "items": out})
}

// firstTry records it as seen and reports whether it was not seen before.
// The caller holds p.mu.
func (p *Proxy) firstTry(it *bulkItem) bool {
	k := it.id
	if k == "" {
		sum := sha256.Sum256(it.source)
		k = string(sum[:])
	}
	if p.seen[k] {
		return false
	}
	p.seen[k] = true
	return true
}

// pick chooses percent of the items, by a hash of their id or source.
func pick(it *bulkItem, percent int) bool {
	h := fnv.New32a()
	if it.id != "" {
		h.Write([]byte(it.id))
	} else {
		h.Write(it.source)
	}
	return int(h.Sum32()%100) < percent
}

func itemError(it *bulkItem, status int, typ, reason string) map[string]any {
	res := map[string]any{"_index": it.index, "status": status,
		"error": map[string]any{"type": typ, "reason": reason}}
	if it.id != "" {
		res["_id"] = it.id
	}
	return map[string]any{it.op: res}
}

// parseBulk splits a _bulk body into items; only create and index are
// supported, which is all the sink sends.
func parseBulk(body []byte) ([]*bulkItem, error) {
	var items []*bulkItem
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
			return nil, fmt.Errorf("malformed action line %q", clip(line))
		}
		it := &bulkItem{action: bytes.Clone(line)}
		for op, a := range action {
			if op != "create" && op != "index" {
				return nil, fmt.Errorf("action %q: the proxy handles create and index only", op)
			}
			it.op, it.index, it.id = op, a.Index, a.ID
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("action %q without a source line", clip(line))
		}
		it.source = bytes.Clone(sc.Bytes())
		items = append(items, it)
	}
	return items, sc.Err()
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
