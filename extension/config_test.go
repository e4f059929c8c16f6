package extension

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadDefaults(t *testing.T) {
	got, err := Load(env(map[string]string{"SLUICE_SINK": "s3://my-logs/lambda/"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Sink:           Sink{Scheme: "s3", Bucket: "my-logs", Prefix: "lambda"},
		BatchMaxBytes:  DefaultBatchMaxBytes,
		BatchMaxAge:    DefaultBatchMaxAge,
		BatchMinBytes:  buffer.DefaultMinBytes,
		BatchMaxHold:   buffer.DefaultMaxHold,
		BufferMaxBytes: DefaultBufferMaxBytes,
		ListenAddr:     DefaultListenAddr,
		Flush:          FlushBackground,
		LogLevel:       slog.LevelInfo,
		SpillDir:       DefaultSpillDir,
		SpillMaxBytes:  DefaultSpillMaxBytes,
		MemoryLimitMB:  DefaultMemoryLimitMB,
		Policy:         buffer.DefaultPolicy(),
		Platform:       DefaultPlatformFilter(),
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(PlatformFilter{})); diff != "" {
		t.Errorf("Load defaults (-want +got):\n%s", diff)
	}
}

func TestLoadValues(t *testing.T) {
	got, err := Load(env(map[string]string{
		"SLUICE_SINK":                     "s3://b.example-1",
		"SLUICE_BATCH_MAX_BYTES":          "2MiB",
		"SLUICE_BATCH_MAX_AGE":            "15s",
		"SLUICE_BATCH_MIN_BYTES":          "0",
		"SLUICE_BATCH_MAX_HOLD":           "2h",
		"SLUICE_BUFFER_MAX_BYTES":         "33554432",
		"SLUICE_LISTEN_ADDR":              "127.0.0.1:0",
		"SLUICE_FLUSH":                    "INVOKE",
		"SLUICE_LOG_LEVEL":                "debug",
		"SLUICE_S3_EXPECTED_BUCKET_OWNER": "123456789012",
		"SLUICE_S3_KMS_KEY_ID":            "alias/logs",
		"SLUICE_SPILL_DIR":                "/tmp/sluice-x",
		"SLUICE_SPILL_MAX_BYTES":          "0",
		"SLUICE_MEMORY_LIMIT_MB":          "96",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Sink:           Sink{Scheme: "s3", Bucket: "b.example-1"},
		BatchMaxBytes:  2 << 20,
		BatchMaxAge:    15 * time.Second,
		BatchMinBytes:  0,
		BatchMaxHold:   2 * time.Hour,
		BufferMaxBytes: 32 << 20,
		ListenAddr:     "127.0.0.1:0",
		Flush:          FlushInvoke,
		LogLevel:       slog.LevelDebug,
		S3BucketOwner:  "123456789012",
		S3KMSKeyID:     "alias/logs",
		SpillDir:       "/tmp/sluice-x",
		SpillMaxBytes:  0,
		MemoryLimitMB:  96,
		Policy:         buffer.DefaultPolicy(),
		Platform:       DefaultPlatformFilter(),
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(PlatformFilter{})); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestLoadFileSink(t *testing.T) {
	got, err := Load(env(map[string]string{"SLUICE_SINK": "file:///tmp/archive"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := (Sink{Scheme: "file", Dir: "/tmp/archive"}); got.Sink != want {
		t.Errorf("Sink = %+v, want %+v", got.Sink, want)
	}
}

// Every bad variable is reported at once, each naming the variable and
// quoting its value.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, val string
		want      string // substring of the message
	}{
		{"SLUICE_SINK", "", "SLUICE_SINK is not set"},
		{"SLUICE_SINK", "http://x/y", `SLUICE_SINK="http://x/y": opensearch url "http://x/y": http:// sends logs and credentials in clear text`},
		{"SLUICE_SINK", "ftp://x/y", `SLUICE_SINK="ftp://x/y": unsupported scheme`},
		{"SLUICE_SINK", "s3:///prefix", `SLUICE_SINK="s3:///prefix": no bucket`},
		{"SLUICE_SINK", "s3://Bad_Bucket/x", `bucket "Bad_Bucket" is not a valid`},
		{"SLUICE_SINK", "file://relative/dir", `SLUICE_SINK="file://relative/dir"`},
		{"SLUICE_BATCH_MAX_BYTES", "lots", `SLUICE_BATCH_MAX_BYTES="lots": want a size`},
		{"SLUICE_BATCH_MAX_BYTES", "1KiB", `SLUICE_BATCH_MAX_BYTES="1KiB": want between 64KiB and 256MiB`},
		{"SLUICE_BUFFER_MAX_BYTES", "-5", `SLUICE_BUFFER_MAX_BYTES="-5"`},
		{"SLUICE_BATCH_MAX_AGE", "60", `SLUICE_BATCH_MAX_AGE="60": want a duration`},
		{"SLUICE_BATCH_MAX_AGE", "2h", `SLUICE_BATCH_MAX_AGE="2h": want between 1s and 1h`},
		{"SLUICE_BATCH_MIN_BYTES", "16MiB", `SLUICE_BATCH_MIN_BYTES="16MiB": want at most SLUICE_BATCH_MAX_BYTES (4MiB)`},
		{"SLUICE_BATCH_MAX_HOLD", "30s", `SLUICE_BATCH_MAX_HOLD="30s": want between SLUICE_BATCH_MAX_AGE (1m0s) and 6h`},
		{"SLUICE_BATCH_MAX_HOLD", "soon", `SLUICE_BATCH_MAX_HOLD="soon": want a duration`},
		{"SLUICE_LISTEN_ADDR", "4243", `SLUICE_LISTEN_ADDR="4243": want HOST:PORT`},
		{"SLUICE_LISTEN_ADDR", "localhost:9001", `SLUICE_LISTEN_ADDR="localhost:9001": want a port`},
		{"SLUICE_FLUSH", "sometimes", `SLUICE_FLUSH="sometimes": want "background" or "invoke"`},
		{"SLUICE_LOG_LEVEL", "loud", `SLUICE_LOG_LEVEL="loud"`},
		{"SLUICE_S3_EXPECTED_BUCKET_OWNER", "me", `SLUICE_S3_EXPECTED_BUCKET_OWNER="me": want a 12-digit`},
		{"SLUICE_SAMPLE_RATE", "10%", `SLUICE_SAMPLE_RATE="10%": want a share`},
		{"SLUICE_SAMPLE_RATE", "1.5", `SLUICE_SAMPLE_RATE="1.5"`},
		{"SLUICE_KEEP_LEVEL", "loud", `SLUICE_KEEP_LEVEL="loud": want TRACE`},
		{"SLUICE_MIN_LEVEL", "off", `SLUICE_MIN_LEVEL="off"`},
		{"SLUICE_MAX_LINES_PER_INVOKE", "-1", `SLUICE_MAX_LINES_PER_INVOKE="-1"`},
		{"SLUICE_REDACT", "email,passwords", `SLUICE_REDACT="email,passwords"`},
		{"SLUICE_REDACT_PATTERNS", "(unclosed", `SLUICE_REDACT_PATTERNS="(unclosed"`},
		{"SLUICE_REDACT_PATTERNS", `["ok", "(bad"]`, `SLUICE_REDACT_PATTERNS=`},
		{"SLUICE_PLATFORM", "report,everything", `SLUICE_PLATFORM="report,everything": unknown event "everything"`},
		{"SLUICE_FORMAT", "csv", `SLUICE_FORMAT="csv"`},
		{"SLUICE_COMPRESSION", "brotli", `SLUICE_COMPRESSION="brotli"`},
		{"SLUICE_SPILL_DIR", "spill", `SLUICE_SPILL_DIR="spill": want an absolute directory`},
		{"SLUICE_SPILL_MAX_BYTES", "big", `SLUICE_SPILL_MAX_BYTES="big"`},
		{"SLUICE_MEMORY_LIMIT_MB", "8", `SLUICE_MEMORY_LIMIT_MB="8": want a whole number`},
		{"SLUICE_MEMORY_LIMIT_MB", "20", `SLUICE_BUFFER_MAX_BYTES=16MiB is more than half of SLUICE_MEMORY_LIMIT_MB=20`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.val, func(t *testing.T) {
			vars := map[string]string{"SLUICE_SINK": "s3://bucket"}
			vars[tt.name] = tt.val
			_, err := Load(env(vars))
			if err == nil {
				t.Fatalf("Load(%s=%q) = nil error, want %q", tt.name, tt.val, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s=%q) error = %q, want it to contain %q", tt.name, tt.val, err, tt.want)
			}
		})
	}

	t.Run("all at once", func(t *testing.T) {
		_, err := Load(env(map[string]string{"SLUICE_FLUSH": "x", "SLUICE_LOG_LEVEL": "y"}))
		if err == nil {
			t.Fatal("Load = nil error, want three problems")
		}
		for _, name := range []string{"SLUICE_SINK", "SLUICE_FLUSH", "SLUICE_LOG_LEVEL"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
		}
	})
}

func TestUnknownVars(t *testing.T) {
	typo := "SLUICE_" + "SAMPEL_RATE" // a misspelt SLUICE_SAMPLE_RATE
	got := UnknownVars([]string{"SLUICE_SINK=s3://b", typo + "=0.1", "PATH=/bin", "SLUICE_TEST_X=1"})
	if diff := cmp.Diff([]string{typo}, got); diff != "" {
		t.Errorf("UnknownVars (-want +got):\n%s", diff)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"1024", 1024}, {"8MiB", 8 << 20}, {"8mb", 8 << 20}, {"64 KiB", 64 << 10}, {"1G", 1 << 30},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestLoadPolicy(t *testing.T) {
	got, err := Load(env(map[string]string{
		"SLUICE_SINK":                 "s3://bucket",
		"SLUICE_SAMPLE_RATE":          "0.1",
		"SLUICE_KEEP_LEVEL":           "warn",
		"SLUICE_MIN_LEVEL":            "DEBUG",
		"SLUICE_MAX_LINES_PER_INVOKE": "500",
		"SLUICE_REDACT":               "email, card",
		"SLUICE_REDACT_PATTERNS":      `["order-[0-9]+", "x,y"]`,
		"SLUICE_PLATFORM":             "start,platform.report",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := buffer.DefaultPolicy()
	want.SampleRate, want.KeepLevel, want.MinLevel, want.MaxLinesPerInvoke = 0.1, buffer.LevelWarn, buffer.LevelDebug, 500
	if got.Policy != want {
		t.Errorf("Policy = %+v, want %+v", got.Policy, want)
	}
	if got.Redactor == nil {
		t.Fatal("Redactor = nil, want one")
	}
	if out, _ := got.Redactor.Redact("mail a@b.example about order-42"); out != "mail [REDACTED:email] about [REDACTED:pattern1]" {
		t.Errorf("Redact = %q", out)
	}
	for typ, keep := range map[string]bool{"platform.start": true, "platform.report": true, "platform.runtimeDone": false} {
		if got.Platform.Keep(&buffer.Record{Type: typ, Status: "success"}) != keep {
			t.Errorf("Platform.Keep(%s) = %v, want %v", typ, !keep, keep)
		}
	}
	if gz, err := Load(env(map[string]string{"SLUICE_SINK": "s3://bucket", "SLUICE_COMPRESSION": "gzip"})); err != nil || gz.Format != buffer.FormatNDJSONGzip {
		t.Errorf("SLUICE_COMPRESSION=gzip gives %v, %v; want ndjson+gzip", gz.Format, err)
	}
	if off, _ := Load(env(map[string]string{"SLUICE_SINK": "s3://bucket", "SLUICE_KEEP_LEVEL": "off"})); off.Policy.KeepLevel != buffer.LevelOff {
		t.Errorf("SLUICE_KEEP_LEVEL=off gives %v, want OFF", off.Policy.KeepLevel)
	}
}

func TestDefaultPlatformFilter(t *testing.T) {
	f := DefaultPlatformFilter()
	for _, tt := range []struct {
		typ, status string
		want        bool
	}{
		{"platform.report", "success", true},
		{"platform.logsDropped", "", true},
		{"platform.initReport", "success", true},
		{"platform.start", "", false},
		{"platform.runtimeDone", "success", false},
		{"platform.runtimeDone", "timeout", true},
		{"platform.initRuntimeDone", "error", true},
	} {
		if got := f.Keep(&buffer.Record{Type: tt.typ, Status: tt.status}); got != tt.want {
			t.Errorf("Keep(%s, %q) = %v, want %v", tt.typ, tt.status, got, tt.want)
		}
	}
}

func TestLoadSinks(t *testing.T) {
	tests := []struct {
		name, sink, secret string
		archive            string
		opensearch         []string // endpoint + index pattern + auth
		err                string
	}{
		{name: "archive only", sink: "s3://logs/lambda", archive: "s3://logs/lambda"},
		{name: "archive and a domain", sink: "s3://logs/lambda, https://search-x.us-east-1.es.amazonaws.com/app-%Y.%m.%d?min_level=WARN",
			archive: "s3://logs/lambda", opensearch: []string{"https://search-x.us-east-1.es.amazonaws.com app-%Y.%m.%d sigv4"}},
		{name: "serverless only", sink: "https://abc.us-east-1.aoss.amazonaws.com/logs",
			opensearch: []string{"https://abc.us-east-1.aoss.amazonaws.com logs sigv4"}},
		{name: "secret from its variable", sink: "https://search.example.com", secret: "arn:aws:secretsmanager:us-east-1:123456789012:secret:os-abc",
			opensearch: []string{"https://search.example.com lambda-logs-%Y.%m.%d secret"}},
		{name: "two archives", sink: "s3://logs-a/x,file:///tmp/y", err: "more than one archive"},
		{name: "credentials in the URL are refused and masked", sink: "https://admin:hunter2@search.example.com/logs", err: "REDACTED"},
		{name: "nothing", sink: " , ", err: "no sink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(map[string]string{"SLUICE_SINK": tt.sink, "SLUICE_OPENSEARCH_SECRET_ARN": tt.secret}))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Load(SLUICE_SINK=%q) = %v, want an error containing %q", tt.sink, err, tt.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error quotes a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(SLUICE_SINK=%q): %v", tt.sink, err)
			}
			got := ""
			if c.Sink.Scheme != "" {
				got = c.Sink.String()
			}
			if got != tt.archive {
				t.Errorf("archive = %q, want %q", got, tt.archive)
			}
			var os []string
			for _, o := range c.OpenSearch {
				os = append(os, o.Endpoint+" "+o.Index.Pattern+" "+string(o.Auth))
			}
			if diff := cmp.Diff(tt.opensearch, os); diff != "" {
				t.Errorf("OpenSearch (-want +got):\n%s", diff)
			}
		})
	}
	if !buffer.ParquetBuilt {
		return
	}
	if _, err := Load(env(map[string]string{"SLUICE_SINK": "s3://logs-a/x,https://search.example.com", "SLUICE_FORMAT": "parquet"})); err == nil || !strings.Contains(err.Error(), "OpenSearch") {
		t.Errorf("parquet with an OpenSearch sink: err = %v, want a refusal", err)
	}
}

func TestGoMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		mb   int
		want int64
	}{{48, 36 << 20}, {16, 8 << 20}, {20, 10 << 20}, {1024, 1012 << 20}} {
		if got := GoMemoryLimit(tt.mb); got != tt.want {
			t.Errorf("GoMemoryLimit(%d) = %d MiB, want %d MiB", tt.mb, got>>20, tt.want>>20)
		}
	}
}
