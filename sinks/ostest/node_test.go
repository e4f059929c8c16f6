package ostest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/ostest"
)

// node is the one node of this test binary; nodeErr says why there is none.
var (
	node    *ostest.Node
	nodeErr error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-opensearch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	node, nodeErr = ostest.Run(ctx, dir)
	cancel()
	if node != nil {
		defer node.Stop()
		if os.Getenv("SLUICE_TEST_MEASURE") != "" {
			fmt.Fprintf(os.Stderr, "opensearch %s node started in %v\n", ostest.Version, node.Started)
		}
	}
	return m.Run()
}

func needNode(t *testing.T) *ostest.Node {
	t.Helper()
	ostest.Skip(t, nodeErr)
	return node
}

// start is the start of the test batches: an index per test is named from
// the test, not the date, so the date only has to be fixed.
var start = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// makeBatch returns a batch of n function lines, each carrying a unique
// token, plus a platform.report row (without a message), in format f.
func makeBatch(t testing.TB, run string, n int, f buffer.Format, seq uint64) *buffer.Batch {
	t.Helper()
	bt := buffer.NewBatcher(buffer.Meta{Function: "fn", Version: "$LATEST"}, buffer.Limits{MaxBytes: 256 << 20, Format: f}, nil)
	for i := range n {
		level := "INFO"
		if i%10 == 0 {
			level = "ERROR"
		}
		if sealed := bt.Add(&buffer.Record{
			Time: start.Add(time.Duration(i) * time.Millisecond), Type: "function",
			RequestID: "req-1", Level: level,
			Message: fmt.Sprintf("token-%s-%06d some text that a function logs", run, i),
			Fields:  json.RawMessage(fmt.Sprintf(`{"user":"u%d","nested":{"k":%d}}`, i%7, i)),
		}); len(sealed) > 0 {
			t.Fatalf("batch sealed early")
		}
	}
	bt.Add(&buffer.Record{Time: start.Add(time.Hour - time.Second), Type: "platform.report", RequestID: "req-1", Status: "success",
		Metrics: &buffer.Metrics{DurationMs: 12.5, BilledDurationMs: 13, MemorySizeMB: 128, MaxMemoryUsedMB: 64}})
	b := bt.Seal()
	b.Seq = seq
	return b
}

// memSink keeps the batches written to it: the dead-letter sink of tests.
type memSink struct {
	mu      sync.Mutex
	batches []*buffer.Batch
}

func (m *memSink) Write(_ context.Context, b *buffer.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches = append(m.batches, b)
	return nil
}

func (m *memSink) Close(context.Context) error { return nil }

// rows returns every row written to m.
func (m *memSink) rows(t *testing.T) []buffer.Row {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []buffer.Row
	for _, b := range m.batches {
		lines, err := buffer.DecodeBatch(b.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			r, err := buffer.ParseRow(l)
			if err != nil {
				t.Fatalf("dead-letter row %s: %v", l, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// newSink returns a sink through p (signing for service) into index.
func newSink(t *testing.T, p *ostest.Proxy, index, service string, dead sinks.Sink, mod func(*sinks.OpenSearchOptions)) *sinks.OpenSearch {
	t.Helper()
	auth, err := sinks.NewSigV4Auth(p.AWSConfig(), service, "")
	if err != nil {
		t.Fatal(err)
	}
	o := sinks.OpenSearchOptions{
		Endpoint:   p.URL,
		Index:      sinks.IndexPattern{Pattern: index},
		Serverless: service == "aoss",
		Function:   "fn",
		Env:        "env1",
		Auth:       auth,
		DeadLetter: dead,
		HTTPClient: p.Client,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := sinks.NewOpenSearch(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nodeDo sends a request straight to the node and decodes its JSON answer.
func nodeDo(t *testing.T, method, path, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, node.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// counts returns how many documents index holds and how many distinct
// messages among them.
func counts(t *testing.T, index string) (docs, distinct int) {
	t.Helper()
	nodeDo(t, http.MethodPost, "/"+index+"/_refresh", "", nil)
	var ans struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			Tokens struct {
				Buckets []struct {
					DocCount int `json:"doc_count"`
				} `json:"buckets"`
			} `json:"tokens"`
		} `json:"aggregations"`
	}
	nodeDo(t, http.MethodPost, "/"+index+"/_search?track_total_hits=true",
		`{"size":0,"aggs":{"tokens":{"terms":{"field":"message.keyword","size":100000}}}}`, &ans)
	dups := 0
	for _, b := range ans.Aggregations.Tokens.Buckets {
		if b.DocCount != 1 {
			dups++
		}
	}
	if dups > 0 {
		t.Errorf("index %s: %d messages indexed more than once", index, dups)
	}
	return ans.Hits.Total.Value, len(ans.Aggregations.Tokens.Buckets)
}

// TestIndexedOnce sends a batch through faults and checks every row is
// indexed exactly once, then sends it again and checks nothing is added.
func TestIndexedOnce(t *testing.T) {
	needNode(t)
	const n = 2000
	tests := []struct {
		name   string
		faults ostest.Faults
		format buffer.Format
		check  func(t *testing.T, st sinks.OpenSearchStats, ps ostest.ProxyStats)
	}{
		{name: "clean", format: buffer.FormatNDJSONGzip},
		{name: "items429", faults: ostest.Faults{ItemRejectPercent: 10}, check: func(t *testing.T, st sinks.OpenSearchStats, ps ostest.ProxyStats) {
			if ps.ItemsRejected < n/20 || st.Retried != int64(ps.ItemsRejected) {
				t.Errorf("proxy rejected %d items, sink retried %d: want about %d, equal", ps.ItemsRejected, st.Retried, n/10)
			}
		}},
		{name: "storm503", faults: ostest.Faults{FailRequests: 4, FailStatus: 503}, check: func(t *testing.T, st sinks.OpenSearchStats, ps ostest.ProxyStats) {
			if ps.Failed != 4 {
				t.Errorf("proxy failed %d requests, want 4", ps.Failed)
			}
		}},
		{name: "whole429", faults: ostest.Faults{FailRequests: 2, FailStatus: 429}},
		{name: "resets", faults: ostest.Faults{ResetRequests: 2}},
		{name: "slow", faults: ostest.Faults{Latency: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
			p.SetFaults(tt.faults)
			index := "once-" + tt.name
			dead := &memSink{}
			s := newSink(t, p, index, "es", dead, func(o *sinks.OpenSearchOptions) { o.BulkBytes = 128 << 10 })
			b := makeBatch(t, tt.name, n, tt.format, 1)
			// Generous: the node shares two cores with the rest of the suite.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.Write(ctx, b); err != nil {
				t.Fatalf("Write: %v", err)
			}
			st := s.Stats()
			if tt.check != nil {
				tt.check(t, st, p.Stats())
			}
			if docs, distinct := counts(t, index); docs != n+1 || distinct != n {
				t.Errorf("after Write: %d documents, %d distinct messages; want %d, %d", docs, distinct, n+1, n)
			}
			if st.Indexed != n+1 || st.DeadLettered != 0 {
				t.Errorf("stats %+v: want %d indexed, none dead", st, n+1)
			}
			// The same batch again, as after a retry or a replay from spill.
			p.SetFaults(ostest.Faults{})
			ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel2()
			if err := s.Write(ctx2, b); err != nil {
				t.Fatalf("Write again: %v", err)
			}
			if docs, _ := counts(t, index); docs != n+1 {
				t.Errorf("after a replay: %d documents, want %d", docs, n+1)
			}
			if st := s.Stats(); st.Duplicates != n+1 {
				t.Errorf("replay: %d duplicates counted, want %d", st.Duplicates, n+1)
			}
		})
	}
}

// TestStormOutlastsDeadline: a storm longer than the deadline ends the
// Write with a retryable error, and the retried batch indexes each row once.
func TestStormOutlastsDeadline(t *testing.T) {
	needNode(t)
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	p.SetFaults(ostest.Faults{FailRequests: 1 << 30, FailStatus: 503})
	s := newSink(t, p, "storm-deadline", "es", &memSink{}, nil)
	b := makeBatch(t, "deadline", 300, buffer.FormatNDJSONZstd, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Write(ctx, b)
	cancel()
	if err == nil || !sinks.Retryable(err) {
		t.Fatalf("Write in a storm: err = %v, retryable = false; want a retryable error", err)
	}
	p.SetFaults(ostest.Faults{})
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write after the storm: %v", err)
	}
	if docs, _ := counts(t, "storm-deadline"); docs != 301 {
		t.Errorf("%d documents, want 301", docs)
	}
}

// TestMappingErrorDeadLetter: rows the index refuses go to the dead-letter
// sink with the reason; the others are indexed.
func TestMappingErrorDeadLetter(t *testing.T) {
	needNode(t)
	const index = "mapping-error"
	nodeDo(t, http.MethodPut, "/"+index, `{"mappings":{"properties":{"error_type":{"type":"long"}}}}`, nil)
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	dead := &memSink{}
	s := newSink(t, p, index, "es", dead, nil)
	bt := buffer.NewBatcher(buffer.Meta{Function: "fn", Version: "7"}, buffer.Limits{}, nil)
	for i := range 10 {
		r := &buffer.Record{Time: start, Type: "function", Level: "INFO", Message: fmt.Sprintf("line %d", i)}
		if i%5 == 0 {
			r.Type, r.ErrorType, r.Status = "platform.runtimeDone", "Runtime.ExitError", "error"
		}
		bt.Add(r)
	}
	b := bt.Seal()
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if docs, _ := counts(t, index); docs != 8 {
		t.Errorf("%d documents indexed, want 8", docs)
	}
	rows := dead.rows(t)
	if len(rows) != 2 {
		t.Fatalf("%d dead-letter rows, want 2: %+v", len(rows), rows)
	}
	for _, r := range rows {
		var f struct {
			Status int
			Reason string
			Row    buffer.Row
		}
		if err := json.Unmarshal([]byte(r.Fields), &f); err != nil {
			t.Fatalf("dead-letter fields %s: %v", r.Fields, err)
		}
		if r.Type != sinks.DeadLetterType || f.Status != 400 || !strings.Contains(f.Reason, "mapper_parsing_exception") ||
			f.Row.ErrorType != "Runtime.ExitError" || r.Function != "fn" || r.Version != "7" {
			t.Errorf("dead-letter row %+v with fields %+v: want type %s, status 400, a mapper_parsing_exception and the original row",
				r, f, sinks.DeadLetterType)
		}
	}
	if st := s.Stats(); st.DeadLettered != 2 || st.Indexed != 8 {
		t.Errorf("stats %+v: want 8 indexed, 2 dead-lettered", st)
	}
}

// TestSplitOn413: a body over the cluster's bound is split until it fits,
// never sent whole again.
func TestSplitOn413(t *testing.T) {
	needNode(t)
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	p.SetFaults(ostest.Faults{MaxBody: 16 << 10})
	s := newSink(t, p, "split", "es", &memSink{}, nil)
	b := makeBatch(t, "split", 3000, buffer.FormatNDJSONZstd, 1)
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	st, ps := s.Stats(), p.Stats()
	if st.Splits == 0 || ps.TooLarge != int(st.Splits) {
		t.Errorf("%d splits, proxy refused %d bodies: want some, equal", st.Splits, ps.TooLarge)
	}
	if docs, distinct := counts(t, "split"); docs != 3001 || distinct != 3000 {
		t.Errorf("%d documents, %d distinct messages: want 3001, 3000", docs, distinct)
	}
}

// TestServerless: through a proxy acting as a Serverless collection and
// checking aoss signatures, with item 429s: no ids, every row once.
func TestServerless(t *testing.T) {
	needNode(t)
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "aoss", Serverless: true})
	p.SetFaults(ostest.Faults{ItemRejectPercent: 10})
	s := newSink(t, p, "serverless", "aoss", &memSink{}, nil)
	if err := s.Write(context.Background(), makeBatch(t, "aoss", 1000, buffer.FormatNDJSONZstd, 1)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if ps := p.Stats(); ps.IDsRefused != 0 || ps.BadSignatures != 0 || ps.ItemsRejected == 0 {
		t.Errorf("proxy %+v: want no ids refused, no bad signatures, some items rejected", ps)
	}
	if docs, distinct := counts(t, "serverless"); docs != 1001 || distinct != 1000 {
		t.Errorf("%d documents, %d distinct messages: want 1001, 1000", docs, distinct)
	}

	// A domain-mode sink against the same collection: every id refused.
	dead := &memSink{}
	s2 := newSink(t, p, "serverless", "aoss", dead, func(o *sinks.OpenSearchOptions) { o.Serverless = false })
	if err := s2.Write(context.Background(), makeBatch(t, "ids", 10, buffer.FormatNDJSONZstd, 2)); err != nil {
		t.Fatalf("Write with ids: %v", err)
	}
	if rows := dead.rows(t); len(rows) != 11 || !strings.Contains(rows[0].Message, "Document ID is not supported") {
		t.Errorf("with ids: %d dead-letter rows (first %+v), want 11 saying ids are not supported", len(rows), rows)
	}
}

// TestBadSignature: a wrong secret key or service is refused with 403, a
// permanent error.
func TestBadSignature(t *testing.T) {
	needNode(t)
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	for _, tt := range []struct{ name, service, secret string }{
		{"wrong service", "aoss", ostest.SecretKey},
		{"wrong secret", "es", "not-the-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := p.AWSConfig()
			cfg.Credentials = credentialsFor(ostest.AccessKey, tt.secret)
			auth, err := sinks.NewSigV4Auth(cfg, tt.service, "")
			if err != nil {
				t.Fatal(err)
			}
			s := newSink(t, p, "badsig", tt.service, &memSink{}, func(o *sinks.OpenSearchOptions) { o.Auth = auth; o.Serverless = false })
			err = s.Write(context.Background(), makeBatch(t, "badsig", 3, buffer.FormatNDJSONZstd, 1))
			var oe *sinks.OpenSearchError
			if !errors.As(err, &oe) || oe.Status != 403 || sinks.Retryable(err) {
				t.Errorf("Write: err = %v; want a permanent 403", err)
			}
		})
	}
}

// TestClientEnvIgnored: the OPENSEARCH_GO_* variables of the function's
// environment do not change the sink.
func TestClientEnvIgnored(t *testing.T) {
	needNode(t)
	for k, v := range map[string]string{
		"OPENSEARCH_GO_REQUEST_TIMEOUT": "1ns",
		"OPENSEARCH_GO_ERROR_MASK":      "all",
		"OPENSEARCH_GO_DEBUG":           "true",
		"OPENSEARCH_GO_ROUTER":          "true",
		"OPENSEARCH_URL":                "http://127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	s := newSink(t, p, "env-ignored", "es", &memSink{}, nil)
	if err := s.Write(context.Background(), makeBatch(t, "env", 50, buffer.FormatNDJSONZstd, 1)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if docs, _ := counts(t, "env-ignored"); docs != 51 {
		t.Errorf("%d documents, want 51", docs)
	}
}

// TestTemplateNoDynamicFields installs layer/opensearch's index template
// and checks that shipped documents, of every row shape, add no field to
// the mapping.
func TestTemplateNoDynamicFields(t *testing.T) {
	needNode(t)
	tmpl, err := os.ReadFile("../../layer/opensearch/index-template.json")
	if err != nil {
		t.Fatal(err)
	}
	nodeDo(t, http.MethodPut, "/_index_template/sluice-logs", string(tmpl), nil)
	var before map[string]any
	nodeDo(t, http.MethodGet, "/_index_template/sluice-logs", "", &before)

	p := ostest.NewProxy(t, node.URL, ostest.ProxyConfig{Service: "es"})
	dead := &memSink{}
	pattern := "lambda-logs-tmpl-%Y.%m.%d"
	s := newSink(t, p, pattern, "es", dead, nil)
	b := makeBatch(t, "tmpl", 100, buffer.FormatNDJSONZstd, 1)
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	index := sinks.IndexPattern{Pattern: pattern}.Name(b.Start)
	if docs, _ := counts(t, index); docs != 101 {
		t.Errorf("%d documents, want 101", docs)
	}
	var mapping map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	nodeDo(t, http.MethodGet, "/"+index+"/_mapping", "", &mapping)
	var want struct {
		Template struct {
			Mappings struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(tmpl, &want); err != nil {
		t.Fatal(err)
	}
	got := keys(mapping[index].Mappings.Properties)
	if diff := cmp.Diff(keys(want.Template.Mappings.Properties), got); diff != "" {
		t.Errorf("mapped fields differ from the template's (-template +index):\n%s", diff)
	}
	var search struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	nodeDo(t, http.MethodPost, "/"+index+"/_search", `{"size":1,"query":{"range":{"duration_ms":{"gte":12}}}}`, &search)
	if len(search.Hits.Hits) != 1 || search.Hits.Hits[0].Source["@timestamp"] != "2026-12-07T10:59:59.000Z" {
		t.Errorf("report row by duration_ms: %+v; want the platform.report row with its @timestamp", search.Hits.Hits)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func credentialsFor(ak, sk string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(ak, sk, "")
}

// TestLayerJSON: every policy and template shipped in layer/opensearch is
// valid JSON (the template is also installed by
// TestTemplateNoDynamicFields).
func TestLayerJSON(t *testing.T) {
	files, err := filepath.Glob("../../layer/opensearch/*.json")
	if err != nil || len(files) < 6 {
		t.Fatalf("layer/opensearch: %d JSON files (%v), want the template and the policies", len(files), err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Errorf("%s is not valid JSON", f)
		}
	}
}
