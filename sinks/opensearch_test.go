package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

func TestParseOpenSearchURL(t *testing.T) {
	tests := []struct {
		in      string
		want    OpenSearchTarget
		wantErr []string // parts of the error
	}{
		{in: "https://search-logs-abc.us-east-1.es.amazonaws.com/lambda-logs-%Y.%m.%d", want: OpenSearchTarget{
			Endpoint: "https://search-logs-abc.us-east-1.es.amazonaws.com", Index: IndexPattern{"lambda-logs-%Y.%m.%d"},
			Service: "es", Region: "us-east-1", Auth: AuthSigV4}},
		{in: "https://search-logs-abc.eu-west-3.es.amazonaws.com", want: OpenSearchTarget{
			Endpoint: "https://search-logs-abc.eu-west-3.es.amazonaws.com", Index: IndexPattern{DefaultIndexPattern},
			Service: "es", Region: "eu-west-3", Auth: AuthSigV4}},
		{in: "https://abc123.us-west-2.aoss.amazonaws.com/logs?min_level=warn", want: OpenSearchTarget{
			Endpoint: "https://abc123.us-west-2.aoss.amazonaws.com", Index: IndexPattern{"logs"},
			Service: "aoss", Region: "us-west-2", Auth: AuthSigV4, MinLevel: buffer.LevelWarn}},
		{in: "https://search.example.com:9200/app-%Y.%m?secret_arn=arn:aws:secretsmanager:us-east-1:123456789012:secret:os-AbC&bulk_bytes=1MiB", want: OpenSearchTarget{
			Endpoint: "https://search.example.com:9200", Index: IndexPattern{"app-%Y.%m"}, Service: "es", Auth: AuthSecret,
			SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:os-AbC", BulkBytes: 1 << 20}},
		{in: "https://vpc-proxy.internal/logs?service=aoss&region=eu-central-1", want: OpenSearchTarget{
			Endpoint: "https://vpc-proxy.internal", Index: IndexPattern{"logs"}, Service: "aoss", Region: "eu-central-1", Auth: AuthSigV4}},
		{in: "http://localhost:9200/dev?allow_http=true&auth=none", want: OpenSearchTarget{
			Endpoint: "http://localhost:9200", Index: IndexPattern{"dev"}, Service: "es", Auth: AuthNone}},
		{in: "http://localhost:9200/dev", wantErr: []string{"allow_http=true"}},
		{in: "ftp://x/y", wantErr: []string{"want https://HOST"}},
		{in: "https://user:pw@host/logs", wantErr: []string{"credentials in the URL"}},
		{in: "https://host/Logs", wantErr: []string{"lower case"}},
		{in: "https://host/a/b", wantErr: []string{"one path segment"}},
		{in: "https://host/logs-%q", wantErr: []string{"% must be followed"}},
		{in: "https://host/_logs", wantErr: []string{"must not start"}},
		{in: "https://host/logs?service=lambda&min_level=LOUD&bulk_bytes=12&color=red", wantErr: []string{
			`service="lambda"`, `min_level="LOUD"`, `bulk_bytes="12"`, `unknown option "color"`}},
		{in: "https://host/logs?auth=secret", wantErr: []string{"needs secret_arn"}},
		{in: "https://x.us-east-1.aoss.amazonaws.com/logs?secret_arn=arn:aws:secretsmanager:us-east-1:1:secret:s", wantErr: []string{"SigV4 only"}},
		{in: "https://host/logs?secret_arn=not-an-arn", wantErr: []string{`secret_arn="not-an-arn"`}},
		{in: "https://host:99999/logs", wantErr: []string{"port"}},
		{in: "https://host/logs?region=Mars", wantErr: []string{`region="Mars"`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOpenSearchURL(tt.in)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseOpenSearchURL(%q) = %+v, want an error", tt.in, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ParseOpenSearchURL(%q) error %q does not mention %q", tt.in, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOpenSearchURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOpenSearchURL(%q) (-want +got):\n%s", tt.in, diff)
			}
			again, err := ParseOpenSearchURL(got.String())
			if err != nil || again != got {
				t.Errorf("ParseOpenSearchURL(%q.String() = %q) = %+v, %v; want the same target", tt.in, got.String(), again, err)
			}
		})
	}
}

func TestIndexPatternName(t *testing.T) {
	at := time.Date(2026, 3, 7, 4, 5, 6, 0, time.FixedZone("x", 10*3600)) // 2026-03-06T18:05:06Z
	for p, want := range map[string]string{
		"lambda-logs-%Y.%m.%d": "lambda-logs-2026.03.06",
		"logs-%Y.%m.%d.%H":     "logs-2026.03.06.18",
		"logs":                 "logs",
		"pct-%%-%Y":            "pct-%-2026",
	} {
		if got := (IndexPattern{p}).Name(at); got != want {
			t.Errorf("IndexPattern(%q).Name = %q, want %q", p, got, want)
		}
	}
}

type secretFunc func(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)

func (f secretFunc) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return f(ctx, in, o...)
}

func TestSecretAuth(t *testing.T) {
	const arn = "arn:aws:secretsmanager:us-east-1:1:secret:os"
	tests := []struct {
		name    string
		secret  *string
		err     error
		wantErr string
	}{
		{name: "ok", secret: aws.String(`{"username":"shipper","password":"p@ss:word"}`)},
		{name: "not json", secret: aws.String(`shipper:pw`), wantErr: "not JSON"},
		{name: "no password", secret: aws.String(`{"username":"shipper"}`), wantErr: "both username and password"},
		{name: "binary", wantErr: "no SecretString"},
		{name: "denied", err: errors.New("AccessDeniedException"), wantErr: "AccessDeniedException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			api := secretFunc(func(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
				calls++
				if aws.ToString(in.SecretId) != arn {
					t.Errorf("SecretId = %q, want %q", aws.ToString(in.SecretId), arn)
				}
				return &secretsmanager.GetSecretValueOutput{SecretString: tt.secret}, tt.err
			})
			auth, err := NewOpenSearchAuth(context.Background(), OpenSearchTarget{Auth: AuthSecret, SecretARN: arn}, aws.Config{}, api)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), arn) {
					t.Fatalf("err = %v, want one naming the secret and saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "shipper:pw") {
					t.Errorf("err %q quotes the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				req := httptest.NewRequest(http.MethodPost, "https://h/_bulk", nil)
				if err := auth.Authorize(req); err != nil {
					t.Fatal(err)
				}
				if u, p, ok := req.BasicAuth(); !ok || u != "shipper" || p != "p@ss:word" {
					t.Errorf("BasicAuth() = %q, %q, %v", u, p, ok)
				}
			}
			if calls != 1 {
				t.Errorf("secret fetched %d times, want once", calls)
			}
			if s := fmt.Sprint(auth); strings.Contains(s, "p@ss") {
				t.Errorf("auth prints as %q, with the password", s)
			}
		})
	}
}

// fakeCluster answers _bulk with a function of the decoded items.
type fakeCluster struct {
	mu     sync.Mutex
	bodies [][]byte // decompressed bodies received
	answer func(call int, items []string) (int, string)
}

func (f *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	zr, err := gzip.NewReader(r.Body)
	if err != nil || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "want gzip", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(zr)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	call := len(f.bodies)
	f.mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	var actions []string
	for i := 0; i+1 < len(lines); i += 2 {
		actions = append(actions, lines[i])
	}
	status, ans := f.answer(call, actions)
	w.WriteHeader(status)
	io.WriteString(w, ans)
}

func items(statuses ...int) string {
	var sb strings.Builder
	sb.WriteString(`{"took":1,"errors":true,"items":[`)
	for i, s := range statuses {
		if i > 0 {
			sb.WriteByte(',')
		}
		if s >= 300 {
			fmt.Fprintf(&sb, `{"create":{"status":%d,"error":{"type":"t%d","reason":"r%d"}}}`, s, s, s)
		} else {
			fmt.Fprintf(&sb, `{"create":{"status":%d}}`, s)
		}
	}
	sb.WriteString("]}")
	return sb.String()
}

func newTestSink(t *testing.T, f *fakeCluster, mod func(*OpenSearchOptions)) (*OpenSearch, *recordSink) {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	dead := &recordSink{}
	o := OpenSearchOptions{Endpoint: srv.URL, Index: IndexPattern{"logs"}, Function: "f", Env: "e",
		DeadLetter: dead, HTTPClient: srv.Client(), MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	s, err := NewOpenSearch(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, dead
}

type recordSink struct {
	mu      sync.Mutex
	batches []*buffer.Batch
}

func (r *recordSink) Write(_ context.Context, b *buffer.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
	return nil
}
func (r *recordSink) Close(context.Context) error { return nil }

// TestOpenSearchItems covers the item outcomes against a fake cluster.
func TestOpenSearchItems(t *testing.T) {
	b := testBatch(t, 3, row("a"), `{"time":"2026-03-07T04:05:06.000Z","type":"function","level":"DEBUG","message":"low"}`, row("b"), row("c"))
	tests := []struct {
		name     string
		answer   func(call int, actions []string) (int, string)
		minLevel buffer.Level
		want     OpenSearchStats
		wantDead []string // reasons
		wantErr  bool
	}{
		{name: "all created", answer: func(int, []string) (int, string) { return 200, items(201, 201, 201, 201) },
			want: OpenSearchStats{Indexed: 4, Requests: 1}},
		{name: "min level", minLevel: buffer.LevelInfo, answer: func(int, []string) (int, string) { return 200, items(201, 201, 201) },
			want: OpenSearchStats{Indexed: 3, BelowLevel: 1, Requests: 1}},
		{name: "409 and 429 then ok", answer: func(call int, a []string) (int, string) {
			if call == 1 {
				return 200, items(409, 429, 201, 503)
			}
			return 200, items(201, 201)
		}, want: OpenSearchStats{Indexed: 3, Duplicates: 1, Retried: 2, Requests: 2}},
		{name: "400 dead", answer: func(int, []string) (int, string) { return 200, items(201, 400, 201, 201) },
			want: OpenSearchStats{Indexed: 3, DeadLettered: 1, Requests: 1}, wantDead: []string{"t400: r400"}},
		{name: "413 split down to one", answer: func(call int, a []string) (int, string) {
			if len(a) > 1 || strings.Contains(a[0], `-3.2"`) {
				return 413, `{"Message":"Request size exceeded 10 bytes"}`
			}
			return 200, items(201)
		}, want: OpenSearchStats{Indexed: 3, DeadLettered: 1, Splits: 3, Requests: 7},
			wantDead: []string{"document larger than the cluster accepts in one request (413)"}},
		{name: "bad answer retried", answer: func(call int, a []string) (int, string) {
			if call == 1 {
				return 200, `{"errors":false,"items":[]}`
			}
			return 200, items(201, 201, 201, 201)
		}, want: OpenSearchStats{Indexed: 4, Requests: 2}},
		{name: "403 permanent", answer: func(int, []string) (int, string) { return 403, `{"message":"no"}` },
			want: OpenSearchStats{Requests: 1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeCluster{answer: tt.answer}
			s, dead := newTestSink(t, f, func(o *OpenSearchOptions) { o.MinLevel = tt.minLevel })
			err := s.Write(context.Background(), b)
			if (err != nil) != tt.wantErr || (err != nil && Retryable(err)) {
				t.Fatalf("Write: err = %v, want error %v (permanent)", err, tt.wantErr)
			}
			got := s.Stats()
			got.WireBytes, got.BulkBytes = 0, 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			var reasons []string
			for _, db := range dead.batches {
				if db.Seq != b.Seq || db.Env != "e-deadletter" {
					t.Errorf("dead-letter batch Seq %d Env %q, want %d e-deadletter", db.Seq, db.Env, b.Seq)
				}
				lines, err := buffer.DecodeBatch(db.Data)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range lines {
					r, err := buffer.ParseRow(l)
					if err != nil {
						t.Fatal(err)
					}
					reasons = append(reasons, r.Message)
				}
			}
			if diff := cmp.Diff(tt.wantDead, reasons); diff != "" {
				t.Errorf("dead-letter reasons (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenSearchIDs(t *testing.T) {
	f := &fakeCluster{answer: func(_ int, a []string) (int, string) { return 200, items(201, 201) }}
	for _, serverless := range []bool{false, true} {
		t.Run(fmt.Sprint("serverless=", serverless), func(t *testing.T) {
			f.bodies = nil
			s, _ := newTestSink(t, f, func(o *OpenSearchOptions) { o.Serverless = serverless })
			b := testBatch(t, 42, row("a"), `{}`)
			b.Env = "old"
			if err := s.Write(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			want := `{"create":{"_index":"logs","_id":"f.20260307T040506Z-old-42.0"}}
{"@timestamp":"2026-03-07T04:05:06.000Z","time":"2026-03-07T04:05:06.000Z","type":"function","function":"f","version":"$LATEST","message":"a"}
{"create":{"_index":"logs","_id":"f.20260307T040506Z-old-42.1"}}
{"@timestamp":"2026-03-07T04:05:06.000Z"}
`
			if serverless {
				want = strings.ReplaceAll(want, `,"_id":"f.20260307T040506Z-old-42.0"`, "")
				want = strings.ReplaceAll(want, `,"_id":"f.20260307T040506Z-old-42.1"`, "")
			}
			if diff := cmp.Diff(want, string(f.bodies[0])); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOpenSearchServerlessResend: a Serverless collection takes no ids, so
// a batch written again after a Write that ended with items pending (its
// ctx cut in the retry wait: a delivery window ended, SHUTDOWN restarted
// it) must send only the rows no attempt has indexed. Sending it whole
// indexes the others twice.
func TestOpenSearchServerlessResend(t *testing.T) {
	refuse := true
	f := &fakeCluster{answer: func(_ int, a []string) (int, string) {
		if refuse {
			refuse = false
			return 200, items(201, 429, 201, 503)
		}
		st := make([]int, len(a))
		for i := range st {
			st[i] = 201
		}
		return 200, items(st...)
	}}
	s, _ := newTestSink(t, f, func(o *OpenSearchOptions) {
		o.Serverless = true
		o.MinBackoff, o.MaxBackoff = time.Minute, time.Minute
	})
	b := testBatch(t, 7, row("a"), row("b"), row("c"), row("d"))
	// The first Write's ctx ends in its retry wait.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	s.o.Log = slog.New(logFunc(func(r slog.Record) {
		if r.Message == "opensearch: retrying" {
			cancel(errors.New("window over"))
		}
	}))
	if err := s.Write(ctx, b); err == nil || !Retryable(err) {
		t.Fatalf("first Write = %v, want a retryable error (2 items pending)", err)
	}
	// The same batch again (the Durable keeps the pointer; a spilled one
	// comes back as a new Batch with the same identity).
	again := *b
	if err := s.Write(context.Background(), &again); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if len(f.bodies) != 2 {
		t.Fatalf("%d requests, want 2", len(f.bodies))
	}
	var docs []string
	lines := strings.Split(strings.TrimSuffix(string(f.bodies[1]), "\n"), "\n")
	for i := 1; i < len(lines); i += 2 {
		var r struct{ Message string }
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, r.Message)
	}
	if diff := cmp.Diff([]string{"b", "d"}, docs); diff != "" {
		t.Errorf("the batch written again sent other rows than those refused (-want +got):\n%s", diff)
	}
	got := s.Stats()
	got.WireBytes, got.BulkBytes = 0, 0
	if diff := cmp.Diff(OpenSearchStats{Indexed: 4, Retried: 2, AlreadyIndexed: 2, Requests: 2}, got); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	// Delivered whole: nothing of it is kept, a third Write sends it all.
	f.bodies = nil
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(f.bodies[0]), `{"create"`); n != 4 {
		t.Errorf("a delivered batch written again sent %d documents, want 4", n)
	}
}

// TestOpenSearchHurry: when the Durable starts to close, a retry wait of
// the sink's own ends at once, and the waits after it are short.
func TestOpenSearchHurry(t *testing.T) {
	var calls atomic.Int32
	f := &fakeCluster{answer: func(_ int, a []string) (int, string) {
		if calls.Add(1) <= 2 {
			return 200, items(429)
		}
		return 200, items(201)
	}}
	ch := make(chan struct{})
	s, _ := newTestSink(t, f, func(o *OpenSearchOptions) {
		o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
		o.Log = slog.New(logFunc(func(r slog.Record) {
			if calls.Load() == 1 {
				close(ch) // in the first retry wait
			}
		}))
	})
	ctx := context.WithValue(context.Background(), hurryKey{}, ch)
	start := time.Now()
	if err := s.Write(ctx, testBatch(t, 1, row("a"))); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Write took %v, want the hurried retries at once (the second wait at most %v)", took, hurriedBackoff)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestIndexedRowsBound: the rows of batches never written again (given up
// to the fallback) do not pile up: past maxUnfinished the oldest go.
func TestIndexedRowsBound(t *testing.T) {
	var x indexedRows
	for i := range maxUnfinished + 1 {
		var r rowSet
		r.add(i)
		x.keep(fmt.Sprint(i), r)
	}
	x.keep("empty", nil)
	if r := x.take("0"); r != nil {
		t.Errorf("take(oldest) = %v after %d more were kept, want it forgotten", r, maxUnfinished)
	}
	if r := x.take("empty"); r != nil {
		t.Errorf("take(empty) = %v, want nothing kept", r)
	}
	r := x.take(fmt.Sprint(maxUnfinished))
	if !r.has(maxUnfinished) || r.has(maxUnfinished-1) || r.has(1000) {
		t.Errorf("take(newest) = %v, want the set of row %d", r, maxUnfinished)
	}
	if r := x.take(fmt.Sprint(maxUnfinished)); r != nil {
		t.Errorf("second take = %v, want nil: take hands the rows over", r)
	}
	if len(x.rows) != maxUnfinished-1 || len(x.order) != maxUnfinished-1 {
		t.Errorf("%d sets in %d keys left, want %d", len(x.rows), len(x.order), maxUnfinished-1)
	}
}

// logFunc is a slog.Handler calling itself with each record.
type logFunc func(slog.Record)

func (f logFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (f logFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }
func (f logFunc) WithAttrs([]slog.Attr) slog.Handler            { return f }
func (f logFunc) WithGroup(string) slog.Handler                 { return f }

func TestOpenSearchRefuses(t *testing.T) {
	f := &fakeCluster{answer: func(int, []string) (int, string) { return 200, items(201) }}
	s, _ := newTestSink(t, f, nil)
	pq := &buffer.Batch{Seq: 1, Start: testStart, Data: []byte("PAR1...."), Ext: buffer.ExtParquet}
	if err := s.Write(context.Background(), pq); !errors.Is(err, ErrParquetToOpenSearch) || Retryable(err) {
		t.Errorf("Write(parquet) = %v, want a permanent ErrParquetToOpenSearch", err)
	}
	damaged := testBatch(t, 2, row("a"))
	damaged.Data = damaged.Data[:len(damaged.Data)-3]
	if err := s.Write(context.Background(), damaged); err == nil || Retryable(err) {
		t.Errorf("Write(damaged) = %v, want a permanent error", err)
	}
	s.Close(context.Background())
	s.Close(context.Background())
	if err := s.Write(context.Background(), testBatch(t, 3, row("a"))); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if _, err := NewOpenSearch(OpenSearchOptions{}); err == nil || !strings.Contains(err.Error(), "dead-letter") {
		t.Errorf("NewOpenSearch({}) = %v, want an error naming what is missing", err)
	}
}

// TestOpenSearchDeadline: items refused until ctx ends leave a retryable
// error, and no wait runs past the deadline.
func TestOpenSearchDeadline(t *testing.T) {
	f := &fakeCluster{answer: func(int, []string) (int, string) { return 200, items(429) }}
	s, _ := newTestSink(t, f, func(o *OpenSearchOptions) { o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := s.Write(ctx, testBatch(t, 1, row("a")))
	if err == nil || !Retryable(err) {
		t.Fatalf("Write = %v, want a retryable error", err)
	}
	var oe *OpenSearchError
	if !errors.As(err, &oe) || oe.Status != 429 || oe.Pending != 1 {
		t.Errorf("Write = %v, want an OpenSearchError with status 429, 1 pending", err)
	}
	if d := time.Since(begin); d > 400*time.Millisecond {
		t.Errorf("Write took %v with a 200ms deadline", d)
	}
}

func TestAppendDoc(t *testing.T) {
	for in, want := range map[string]string{
		row("x"):                              `{"@timestamp":"2026-03-07T04:05:06.000Z",` + row("x")[1:],
		`{}`:                                  `{"@timestamp":"2026-03-07T04:05:06.000Z"}`,
		`{"type":"sluice.stats"}`:             `{"@timestamp":"2026-03-07T04:05:06.000Z","type":"sluice.stats"}`,
		`{"time":"2020-01-01T00:00:00.000Z"}`: `{"@timestamp":"2020-01-01T00:00:00.000Z","time":"2020-01-01T00:00:00.000Z"}`,
	} {
		got, ok := appendDoc(nil, []byte(in), testStart)
		if !ok || string(got) != want {
			t.Errorf("appendDoc(%s) = %s, %v; want %s", in, got, ok, want)
		}
		if back := originalRow(got); string(back) != in {
			t.Errorf("originalRow(%s) = %s, want %s", got, back, in)
		}
	}
	if _, ok := appendDoc(nil, []byte(`["x"]`), testStart); ok {
		t.Errorf("appendDoc of an array: ok")
	}
}

// FuzzOpenSearchDoc: a document is valid JSON with @timestamp whenever the
// row is a JSON object, and gives the row back.
func FuzzOpenSearchDoc(f *testing.F) {
	f.Add([]byte(row("x")))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"time":"\"","level":"WARN"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		doc, ok := appendDoc(nil, in, testStart)
		rowLevel(in)
		var m map[string]json.RawMessage
		if json.Unmarshal(in, &m) != nil || !ok {
			return
		}
		var d map[string]any
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatalf("appendDoc(%q) = %q: %v", in, doc, err)
		}
		if _, ok := d["@timestamp"].(string); !ok {
			t.Fatalf("appendDoc(%q) = %q: no @timestamp", in, doc)
		}
		if back := originalRow(doc); !bytes.Equal(back, bytes.TrimSpace(in)) {
			t.Fatalf("originalRow(appendDoc(%q)) = %q", in, back)
		}
	})
}

// FuzzParseBulkResponse: any answer either fails to parse or yields one
// result per item with a real status.
func FuzzParseBulkResponse(f *testing.F) {
	f.Add([]byte(items(201, 409, 429)), 3)
	f.Add([]byte(`{"errors":false,"items":[{"index":{"status":200}}]}`), 1)
	f.Add([]byte(`{"errors":true,"items":[{"create":{"status":400,"error":"string reason"}}]}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		res, err := parseBulkResponse(data, n)
		answerReason(data)
		if err != nil {
			return
		}
		if len(res.items) != n {
			t.Fatalf("%d results for %d items", len(res.items), n)
		}
		for _, r := range res.items {
			if r.Status < 100 || r.Status > 599 {
				t.Fatalf("status %d", r.Status)
			}
			r.reason()
		}
	})
}

func FuzzParseOpenSearchURL(f *testing.F) {
	f.Add("https://search-x.us-east-1.es.amazonaws.com/lambda-logs-%Y.%m.%d?min_level=WARN")
	f.Add("http://localhost:9200/x?allow_http=true&auth=none")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseOpenSearchURL(s)
		if err != nil {
			return
		}
		again, err := ParseOpenSearchURL(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseOpenSearchURL(%q) = %+v; its String %q parses to %+v, %v", s, got, got.String(), again, err)
		}
	})
}

// BenchmarkOpenSearchEncode measures turning a batch into compressed _bulk
// bodies (decode, documents, actions, gzip), without the network.
func BenchmarkOpenSearchEncode(b *testing.B) {
	const n = 10000
	bt := buffer.NewBatcher(buffer.Meta{Function: "orders-api", Version: "$LATEST"}, buffer.Limits{MaxBytes: 256 << 20}, nil)
	for i := range n {
		bt.Add(&buffer.Record{Time: testStart.Add(time.Duration(i) * time.Millisecond), Type: "function",
			RequestID: "8f5c1f2e-4b1a-4c9e-9a57-3d0c2b7e1a90", Level: "INFO",
			Message: fmt.Sprintf("order %d accepted for customer c-%d in 12.%03d ms", 100000+i, i%977, i%1000)})
	}
	batch := bt.Seal()
	s := &OpenSearch{o: OpenSearchOptions{Index: IndexPattern{"logs"}, Function: "orders-api", Env: "e", BulkBytes: DefaultBulkBytes}}
	var wire, raw int
	b.ReportAllocs()
	for b.Loop() {
		w := &bulkWrite{s: s, idBase: s.idBase(batch), action: appendAction(nil, "logs")}
		wire, raw = 0, 0
		row := 0
		for line, err := range buffer.Rows(batch) {
			if err != nil {
				b.Fatal(err)
			}
			w.add(row, line, batch.Start)
			row++
			if len(w.buf) >= s.o.BulkBytes {
				raw += w.compress(w.items)
				wire += w.body.Len()
				w.buf, w.items = w.buf[:0], w.items[:0]
			}
		}
		raw += w.compress(w.items)
		wire += w.body.Len()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(wire)/n, "wire-bytes/doc")
	b.ReportMetric(float64(raw)/n, "bulk-bytes/doc")
}
