package main

// End-to-end tests of the OpenSearch sink: the real sluice binary under the
// local Lambda platform, indexing into a real OpenSearch node (sinks/ostest)
// through the proxy that checks SigV4 signatures and injects faults, with
// versitygw alongside for the archive.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/ostest"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// openSearch is the one node of this test binary, started by the first
// test that needs it; runMain stops it.
var openSearch struct {
	once sync.Once
	dir  string
	node *ostest.Node
	err  error
}

// needNode returns the node, starting it at the first call; it skips or
// fails the test as ostest.Skip says when there can be none.
func needNode(t *testing.T) *ostest.Node {
	t.Helper()
	openSearch.once.Do(func() {
		openSearch.dir, openSearch.err = os.MkdirTemp("", "sluice-e2e-opensearch-")
		if openSearch.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		openSearch.node, openSearch.err = ostest.Run(ctx, openSearch.dir)
		if openSearch.node != nil {
			t.Logf("opensearch %s node started in %v", ostest.Version, openSearch.node.Started.Round(time.Millisecond))
		}
	})
	ostest.Skip(t, openSearch.err)
	return openSearch.node
}

// stopOpenSearch stops the node, if a test started one.
func stopOpenSearch() {
	if openSearch.node != nil {
		openSearch.node.Stop()
	}
	if openSearch.dir != "" {
		os.RemoveAll(openSearch.dir)
	}
}

// osEnv is one function with sluice indexing into its own index through
// its own proxy, and archiving to S3 when asked to.
type osEnv struct {
	*env
	node  *ostest.Node
	proxy *ostest.Proxy
	index string // the index pattern (without placeholders unless a test uses them)
	json  bool   // the function uses the JSON log format
}

type osOptions struct {
	options
	index  string        // index pattern; default e2e-<test name>
	query  string        // options of the OpenSearch URL, e.g. "bulk_bytes=64KiB"
	withS3 bool          // archive to S3 as well (SLUICE_SINK lists both)
	faults ostest.Faults // from the start
	// serverless makes the proxy act as a Serverless time-series
	// collection checking aoss signatures (the URL then needs service=aoss).
	serverless bool
	// keepIndex keeps the documents of an earlier run (-count) in the
	// index, or an index the test made.
	keepIndex bool
}

// resetIndex deletes the index (a name, or a pattern: its placeholders
// become wildcards) left by an earlier run of the test (-count=N).
func resetIndex(t *testing.T, node *ostest.Node, pattern string) {
	t.Helper()
	name := pattern
	if i := strings.IndexByte(name, '%'); i >= 0 {
		name = name[:i] + "*"
	}
	if err := node.Do(context.Background(), "DELETE", "/"+name+"?ignore_unavailable=true", "", nil); err != nil {
		t.Fatalf("delete index %s: %v", name, err)
	}
}

// startOpenSearch starts versitygw, a proxy to the node that checks es
// signatures made with versitygw's credentials (the extension has one set
// for both), and the platform with sluice configured for them.
func startOpenSearch(t *testing.T, o osOptions) *osEnv {
	t.Helper()
	node := needNode(t)
	srv := s3test.Start(t)
	pc := ostest.ProxyConfig{Service: "es", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	if o.serverless {
		pc.Service, pc.Serverless = "aoss", true
	}
	proxy := ostest.NewProxy(t, node.URL, pc)
	proxy.SetFaults(o.faults)
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(certFile, proxy.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	index := o.index
	if index == "" {
		index = "e2e-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	}
	if !o.keepIndex {
		resetIndex(t, node, index)
	}
	sink := proxy.URL + "/" + index
	if o.query != "" {
		sink += "?" + o.query
	}
	if o.withS3 {
		sink = "s3://" + srv.Bucket + "/archive," + sink
	}
	vars := append(srv.Env(),
		"SLUICE_SINK="+sink,
		"SLUICE_LISTEN_ADDR=127.0.0.1:0",
		"SLUICE_SPILL_DIR="+filepath.Join(t.TempDir(), "sluice-spill"),
		// Go reads the roots from SSL_CERT_FILE on Linux: the proxy's
		// certificate is verified as a domain's would be.
		"SSL_CERT_FILE="+certFile,
	)
	p, err := lambdatest.Start(context.Background(), lambdatest.Config{
		Extensions:   []string{binaries.sluice},
		Runtime:      []string{binaries.sample},
		Env:          append(vars, o.vars...),
		FunctionName: "e2e",
		LogFormat:    o.logFormat,
		Timeout:      cmpOrDuration(o.timeout, 10*time.Second),
	})
	if err != nil {
		t.Fatalf("start the platform: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return &osEnv{env: &env{t: t, srv: srv, p: p, want: map[string]buffer.Row{}}, node: node, proxy: proxy, index: index,
		json: strings.EqualFold(o.logFormat, "JSON")}
}

// logOutput logs the extension's output but its fallback rows.
func (e *osEnv) logOutput() {
	var out []string
	for _, l := range e.p.ExtensionLines() {
		if !strings.HasPrefix(l, `{"sluice":"fallback",`) {
			out = append(out, l)
		}
	}
	e.t.Logf("extension output (fallback rows left out):\n%s", strings.Join(out, "\n"))
}

func cmpOrDuration(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// indexed returns the rows of every document in the index (or pattern),
// each read back from its _source: the archive row with @timestamp in
// front, which must equal the row's time.
func (e *osEnv) indexed(index string) []buffer.Row {
	e.t.Helper()
	// Close waits for the requests in flight: a request sluice gave up on
	// may still reach the node, as it would a cluster.
	e.proxy.Close()
	ctx := context.Background()
	srcs, err := e.node.Sources(ctx, index)
	if err != nil {
		e.t.Fatalf("read index %s: %v", index, err)
	}
	n, err := e.node.Count(ctx, index, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if n != len(srcs) {
		e.t.Errorf("index %s: _count says %d documents, the search returned %d", index, n, len(srcs))
	}
	rows := make([]buffer.Row, 0, len(srcs))
	for _, src := range srcs {
		row, err := docRow(src)
		if err != nil {
			e.t.Fatalf("index %s: %v", index, err)
		}
		rows = append(rows, row)
	}
	return rows
}

// docRow returns the archive row a document was made from, checking that
// the document starts with its @timestamp, equal to the row's time.
func docRow(src []byte) (buffer.Row, error) {
	var ts struct {
		Timestamp time.Time `json:"@timestamp"`
	}
	if err := json.Unmarshal(src, &ts); err != nil {
		return buffer.Row{}, fmt.Errorf("document %.200s: %v", src, err)
	}
	rest, ok := bytes.CutPrefix(src, []byte(`{"@timestamp":"`))
	if !ok {
		return buffer.Row{}, fmt.Errorf("document %.200s does not start with @timestamp", src)
	}
	_, rest, ok = bytes.Cut(rest, []byte(`",`))
	if !ok {
		return buffer.Row{}, fmt.Errorf("document %.200s has nothing but @timestamp", src)
	}
	row, err := buffer.ParseRow(append([]byte("{"), rest...))
	if err != nil {
		return buffer.Row{}, fmt.Errorf("document %.200s: %v", src, err)
	}
	if !row.Time.Equal(ts.Timestamp) {
		return buffer.Row{}, fmt.Errorf("document %.200s: @timestamp %v, time %v", src, ts.Timestamp, row.Time)
	}
	return row, nil
}

// workload runs the invocations most tests use: text and JSON lines, a
// failed invocation, an ERROR-level one. Each is followed by one that only
// runs for a while: sluice delivers while the function runs, and retries
// need that time (between invocations the environment is frozen).
func (e *osEnv) workload(n int) {
	e.t.Helper()
	for i := range n {
		if _, err := e.p.Invoke(context.Background(), []byte(`{"sleep_ms":250}`)); err != nil {
			e.t.Fatalf("idle invocation: %v", err)
		}
		req := request{Lines: 40 + i, JSON: true}
		switch i {
		case 3:
			req.Fail = true
		case 5:
			req.Level = "ERROR"
		}
		e.invoke(req, e.json)
	}
}

// Every line is indexed exactly once through item 429s, a storm of
// whole-request 503s, bodies split by the bound and 413s, and alongside S3
// (each line once in each).
func TestOpenSearchIndexedOnce(t *testing.T) {
	tests := []struct {
		name   string
		o      osOptions
		checks func(t *testing.T, ps ostest.ProxyStats)
	}{
		{
			name: "items-429",
			o:    osOptions{faults: ostest.Faults{ItemRejectPercent: 10}},
			checks: func(t *testing.T, ps ostest.ProxyStats) {
				if ps.ItemsRejected < 20 {
					t.Errorf("the proxy answered %d items 429, want about 10%% of them", ps.ItemsRejected)
				}
			},
		},
		{
			name: "storm-503",
			o:    osOptions{faults: ostest.Faults{FailRequests: 6, FailStatus: 503}},
			checks: func(t *testing.T, ps ostest.ProxyStats) {
				if ps.Failed != 6 {
					t.Errorf("the proxy answered %d requests 503, want 6", ps.Failed)
				}
			},
		},
		{
			// The bound is checked on the bodies as the node gets them
			// (decompressed); the proxy also refuses compressed bodies
			// over 2 KiB with 413 (a 64 KiB body is about 3 KiB gzipped),
			// and each is split, never sent again whole.
			name: "split",
			o: osOptions{
				query:  "bulk_bytes=64KiB",
				faults: ostest.Faults{MaxBody: 2 << 10},
			},
			checks: func(t *testing.T, ps ostest.ProxyStats) {
				if ps.MaxBulkBody > 64<<10 || ps.MaxBulkBody < 16<<10 {
					t.Errorf("largest _bulk body %d bytes, want up to the 64 KiB bound (and near it)", ps.MaxBulkBody)
				}
				if ps.TooLarge == 0 {
					t.Error("no body refused with 413: the split was not exercised")
				}
			},
		},
		{
			// A Serverless collection refuses client ids: none are sent,
			// and only the items answered 429 are sent again.
			name: "serverless-429",
			o:    osOptions{serverless: true, query: "service=aoss", faults: ostest.Faults{ItemRejectPercent: 10}},
			checks: func(t *testing.T, ps ostest.ProxyStats) {
				if ps.IDsRefused > 0 || ps.ItemsRejected < 20 {
					t.Errorf("the proxy refused %d ids and answered %d items 429: want none, and about 10%% of them", ps.IDsRefused, ps.ItemsRejected)
				}
			},
		},
		{
			name: "with-s3",
			o:    osOptions{withS3: true, faults: ostest.Faults{ItemRejectPercent: 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.vars = append([]string{"SLUICE_BATCH_MAX_BYTES=64KiB"}, tt.o.vars...)
			e := startOpenSearch(t, tt.o)
			e.workload(8)
			e.shutdown()
			if fb := e.fallbackRows(); len(fb) > 0 {
				t.Errorf("%d rows went to the fallback", len(fb))
			}
			rows := e.indexed(e.index)
			e.checkExactlyOnce(rows)
			ps := e.proxy.Stats()
			if ps.BadSignatures > 0 {
				t.Errorf("the proxy refused %d signatures", ps.BadSignatures)
			}
			if tt.checks != nil {
				tt.checks(t, ps)
			}
			archived, _ := e.archive()
			if tt.o.withS3 {
				e.checkExactlyOnce(archived)
				checkStats(t, archived, e.p.Stats().FunctionLines)
				// The same rows in both places, platform and sluice rows
				// included (sluice.stats rows differ: each path has its
				// own batches but shares the totals).
				if diff := gocmp.Diff(types(archived), types(rows)); diff != "" {
					t.Errorf("row types in S3 and OpenSearch differ (-S3 +OpenSearch):\n%s", diff)
				}
			} else if len(archived) > 0 {
				t.Errorf("%d rows in S3, which is not configured", len(archived))
			}
			t.Logf("proxy: %+v", ps)
			if t.Failed() {
				e.logOutput()
			}
		})
	}
}

// types counts rows by type, without sluice's own.
func types(rows []buffer.Row) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		if !strings.HasPrefix(r.Type, "sluice.") {
			m[r.Type]++
		}
	}
	return m
}

// Archive everything, index WARN and above (min_level): S3 holds every
// line once, the index exactly the lines at WARN or above, and the rows
// without a level (platform events).
func TestOpenSearchMinLevel(t *testing.T) {
	e := startOpenSearch(t, osOptions{withS3: true, query: "min_level=WARN", options: options{logFormat: "JSON"}})
	e.workload(7) // invocation 5 logs its JSON lines at ERROR
	e.shutdown()
	archived, _ := e.archive()
	e.checkExactlyOnce(archived)
	rows := e.indexed(e.index)
	warn := &env{t: t, srv: e.srv, p: e.p, want: map[string]buffer.Row{}}
	for id, r := range e.want {
		if l, ok := buffer.ParseLevelName(r.Level); ok && l >= buffer.LevelWarn {
			warn.want[id] = r
		}
	}
	if len(warn.want) == 0 || len(warn.want) == len(e.want) {
		t.Fatalf("%d of %d lines at WARN or above: the workload does not test the filter", len(warn.want), len(e.want))
	}
	warn.checkExactlyOnce(rows)
	want := types(archived)
	want["function"] = len(warn.want)
	got := types(rows)
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("indexed rows by type (-want +got):\n%s", diff)
	}
}

// A row the index refuses (its mapping says error_type is a number) is
// archived in S3 as a sluice.deadletter row with the reason and the row;
// everything else is indexed once.
func TestOpenSearchDeadLetter(t *testing.T) {
	node := needNode(t)
	const index = "e2e-deadletter"
	resetIndex(t, node, index)
	if err := node.Do(context.Background(), "PUT", "/"+index, `{"mappings":{"properties":{"error_type":{"type":"long"}}}}`, nil); err != nil {
		t.Fatal(err)
	}
	e := startOpenSearch(t, osOptions{index: index, withS3: true, keepIndex: true})
	e.workload(6) // invocation 3 fails: its runtimeDone and report rows carry error_type
	e.shutdown()
	rows := e.indexed(index)
	e.checkExactlyOnce(rows)
	archived, _ := e.archive()
	e.checkExactlyOnce(archived)

	var dead []buffer.Row
	for _, r := range archived {
		if r.Type == sinks.DeadLetterType {
			dead = append(dead, r)
		}
	}
	var refused []buffer.Row // the rows with an error_type, which cannot be indexed
	for _, r := range archived {
		if r.ErrorType != "" && r.Type != sinks.DeadLetterType {
			refused = append(refused, r)
		}
	}
	if len(refused) == 0 {
		t.Fatal("no archived row with an error_type: the failed invocation did not produce one")
	}
	if len(dead) != len(refused) {
		t.Errorf("%d dead-letter rows, want %d (one per row with an error_type)", len(dead), len(refused))
	}
	var gotRows []buffer.Row
	for _, d := range dead {
		var f struct {
			Status int
			Reason string
			Row    buffer.Row
		}
		if err := json.Unmarshal([]byte(d.Fields), &f); err != nil {
			t.Fatalf("dead-letter fields %s: %v", d.Fields, err)
		}
		if f.Status != 400 || !strings.Contains(f.Reason, "mapper_parsing_exception") || d.Message != f.Reason || d.Function != "e2e" {
			t.Errorf("dead-letter row %+v: want status 400 and a mapper_parsing_exception reason as its message", d)
		}
		gotRows = append(gotRows, f.Row)
	}
	byTime := func(a, b buffer.Row) int { return a.Time.Compare(b.Time)*4 + strings.Compare(a.Type, b.Type) }
	slices.SortFunc(gotRows, byTime)
	slices.SortFunc(refused, byTime)
	if diff := gocmp.Diff(refused, gotRows); diff != "" {
		t.Errorf("dead-lettered rows differ from the refused ones (-archived +dead-letter):\n%s", diff)
	}
	for _, r := range rows {
		if r.ErrorType != "" {
			t.Errorf("a row with error_type %q was indexed", r.ErrorType)
		}
	}
	if t.Failed() {
		e.logOutput()
	}
}

// A cluster slower than the SHUTDOWN budget: sluice ends inside the
// deadline (not SIGKILLed) and what the cluster did not take comes out on
// stdout as fallback rows. Every line is indexed or in the fallback.
func TestOpenSearchSlowAtShutdown(t *testing.T) {
	e := startOpenSearch(t, osOptions{query: "bulk_bytes=64KiB"})
	e.workload(6) // the default batch bounds: everything is pending at SHUTDOWN
	e.proxy.SetFaults(ostest.Faults{Latency: 1200 * time.Millisecond})
	sd := e.shutdown()
	if sd.Duration > 2*time.Second {
		t.Errorf("shutdown took %v, more than the 2 s budget", sd.Duration)
	}
	rows := e.indexed(e.index)
	fallback := e.fallbackRows()
	if len(fallback) == 0 {
		t.Errorf("no fallback rows: the slow cluster took everything (%d documents)", len(rows))
	}
	// A batch partly indexed when time ran out is written whole to the
	// fallback: a line may be in both, never in neither.
	seen := map[string]bool{}
	for _, r := range append(rows, fallback...) {
		if id, ok := sampleID(r.Message); ok && r.Type == "function" {
			seen[id] = true
		}
	}
	missing := 0
	for id := range e.want {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d lines neither indexed nor in the fallback", missing, len(e.want))
	}
	t.Logf("shutdown took %v: %d documents indexed, %d fallback rows", sd.Duration.Round(time.Millisecond), len(rows), len(fallback))
}

// layer/opensearch's index template installed on the node: the documents
// sluice ships (every row shape: text and JSON lines with fields, a failed
// invocation, reports, sluice.stats, a long line) add no field to the
// mapping.
func TestOpenSearchTemplate(t *testing.T) {
	node := needNode(t)
	tmpl, err := os.ReadFile("../../../layer/opensearch/index-template.json")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := node.InstallTemplate(ctx, "sluice-logs", tmpl); err != nil {
		t.Fatal(err)
	}
	const pattern = "lambda-logs-e2e-%Y.%m.%d"
	e := startOpenSearch(t, osOptions{index: pattern, options: options{logFormat: "JSON"}})
	e.workload(4)
	e.invoke(request{Lines: 2, Big: 50_000}, e.json)
	e.shutdown()
	rows := e.indexed("lambda-logs-e2e-*")
	e.checkExactlyOnce(rows)

	var mappings map[string]struct {
		Mappings struct {
			Dynamic    any                        `json:"dynamic"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	if err := node.Do(ctx, "GET", "/lambda-logs-e2e-*/_mapping", "", &mappings); err != nil {
		t.Fatal(err)
	}
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
	if len(mappings) == 0 {
		t.Fatal("no lambda-logs-e2e-* index")
	}
	for index, m := range mappings {
		daily := sinks.IndexPattern{Pattern: pattern}.Name(time.Now())
		if !strings.HasPrefix(index, "lambda-logs-e2e-") || len(index) != len(daily) {
			t.Errorf("index %q, want a daily index like %q", index, daily)
		}
		if diff := gocmp.Diff(want.Template.Mappings.Properties, m.Mappings.Properties, jsonEqual()); diff != "" {
			t.Errorf("index %s: mapping differs from the template (-template +index):\n%s", index, diff)
		}
	}
	n, err := node.Count(ctx, "lambda-logs-e2e-*", `type:"platform.report" AND duration_ms:>=0`)
	if err != nil || n != 9 {
		t.Errorf("report documents found by duration_ms: %d (%v), want 9 (4 invocations, each after an idle one, and the long line's)", n, err)
	}
}

// jsonEqual compares raw JSON by value.
func jsonEqual() gocmp.Option {
	return gocmp.Comparer(func(a, b json.RawMessage) bool {
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && gocmp.Equal(x, y)
	})
}

// TestInitTimeBySink measures the extension's own init time (its "ready"
// line's init_ms, process start to ready) with each sink configuration,
// median of 21 starts. It runs when SLUICE_TEST_MEASURE is set.
func TestInitTimeBySink(t *testing.T) {
	if os.Getenv("SLUICE_TEST_MEASURE") == "" {
		t.Skip("set SLUICE_TEST_MEASURE=1 to measure")
	}
	srv := s3test.Start(t)
	// Init sends nothing to OpenSearch: the proxy needs no node behind it.
	proxy := ostest.NewProxy(t, "http://127.0.0.1:1", ostest.ProxyConfig{Service: "es"})
	certFile := filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(certFile, proxy.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, sink string }{
		{"s3", "s3://" + srv.Bucket + "/archive"},
		{"opensearch", proxy.URL + "/init"},
		{"both", "s3://" + srv.Bucket + "/archive," + proxy.URL + "/init"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ms []float64
			for range 21 {
				p, err := lambdatest.Start(context.Background(), lambdatest.Config{
					Extensions: []string{binaries.sluice},
					Runtime:    []string{binaries.sample},
					Env: append(srv.Env(), "SLUICE_SINK="+tt.sink, "SLUICE_LISTEN_ADDR=127.0.0.1:0",
						"SLUICE_SPILL_DIR="+filepath.Join(t.TempDir(), "sluice-spill"), "SSL_CERT_FILE="+certFile),
				})
				if err != nil {
					t.Fatal(err)
				}
				v := -1.0
				for _, l := range p.ExtensionLines() {
					if _, rest, ok := strings.Cut(l, " init_ms="); ok && strings.Contains(l, "msg=ready") {
						fmt.Sscanf(rest, "%g", &v)
					}
				}
				p.Close()
				if v < 0 {
					t.Fatalf("no ready line with init_ms: %q", p.ExtensionLines())
				}
				ms = append(ms, v)
			}
			slices.Sort(ms)
			t.Logf("init_ms median %.2f (min %.2f, max %.2f) over %d starts", ms[len(ms)/2], ms[0], ms[len(ms)-1], len(ms))
		})
	}
}
