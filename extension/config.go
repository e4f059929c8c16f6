package extension

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// Flush modes: when sealed batches are uploaded.
const (
	// FlushBackground uploads due batches at the start of each invocation,
	// while the function runs, and waits for nothing else: the cheapest mode.
	FlushBackground = "background"
	// FlushInvoke waits for the invocation's platform.runtimeDone, seals the
	// open batch and uploads it before /event/next: logs land within seconds,
	// at the price of billed post-runtime duration.
	FlushInvoke = "invoke"
)

// Config is sluice's whole configuration, read once from SLUICE_* variables.
type Config struct {
	Sink Sink // SLUICE_SINK's archive (s3:// or file://); zero when there is none
	// OpenSearch are SLUICE_SINK's OpenSearch entries, each with its own
	// delivery path (SLUICE_OPENSEARCH_SECRET_ARN supplies basic auth).
	OpenSearch     []sinks.OpenSearchTarget
	BatchMaxBytes  int           // SLUICE_BATCH_MAX_BYTES: uncompressed NDJSON per object
	BatchMaxAge    time.Duration // SLUICE_BATCH_MAX_AGE
	BatchMinBytes  int           // SLUICE_BATCH_MIN_BYTES: age seals only batches this large...
	BatchMaxHold   time.Duration // SLUICE_BATCH_MAX_HOLD: ...smaller ones are held at most this long
	BufferMaxBytes int           // SLUICE_BUFFER_MAX_BYTES: compressed bytes held for upload
	ListenAddr     string        // SLUICE_LISTEN_ADDR
	Flush          string        // SLUICE_FLUSH
	LogLevel       slog.Level    // SLUICE_LOG_LEVEL
	S3BucketOwner  string        // SLUICE_S3_EXPECTED_BUCKET_OWNER
	S3KMSKeyID     string        // SLUICE_S3_KMS_KEY_ID
	SpillDir       string        // SLUICE_SPILL_DIR
	SpillMaxBytes  int           // SLUICE_SPILL_MAX_BYTES; 0 disables spilling
	MemoryLimitMB  int           // SLUICE_MEMORY_LIMIT_MB: GOMEMLIMIT

	Policy   buffer.Policy    // SLUICE_SAMPLE_RATE, SLUICE_KEEP_LEVEL, SLUICE_MIN_LEVEL, SLUICE_MAX_LINES_PER_INVOKE
	Redactor *buffer.Redactor // SLUICE_REDACT, SLUICE_REDACT_PATTERNS; nil when off
	Platform PlatformFilter   // SLUICE_PLATFORM
	Format   buffer.Format    // SLUICE_FORMAT, SLUICE_COMPRESSION

	// ManagedInstances is detected, not configured (DetectManagedInstances):
	// the function runs on Lambda Managed Instances, where invocations
	// share the environment concurrently and it is never frozen.
	ManagedInstances bool
}

// DetectManagedInstances reports whether getenv describes a Lambda Managed
// Instances environment: AWS_LAMBDA_INITIALIZATION_TYPE is
// lambda-managed-instances there, and AWS_LAMBDA_MAX_CONCURRENCY is set
// (it is set nowhere else).
func DetectManagedInstances(getenv func(string) string) bool {
	return getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "lambda-managed-instances" ||
		getenv("AWS_LAMBDA_MAX_CONCURRENCY") != ""
}

// Sink is the parsed SLUICE_SINK: s3://bucket/prefix or file:///dir.
type Sink struct {
	Scheme string // "s3" or "file"
	Bucket string // s3 only
	Prefix string // s3 only, without leading or trailing slash
	Dir    string // file only, absolute
}

func (s Sink) String() string {
	if s.Scheme == "file" {
		return "file://" + s.Dir
	}
	if s.Prefix == "" {
		return "s3://" + s.Bucket
	}
	return "s3://" + s.Bucket + "/" + s.Prefix
}

// Defaults. The batch bounds trade object count (PUT cost, Athena per-file
// overhead) against delay and memory: 8 MiB of NDJSON compresses to about
// 1 MiB, and a busy environment writes at most one object a minute.
const (
	DefaultBatchMaxBytes  = 8 << 20
	DefaultBatchMaxAge    = 60 * time.Second
	DefaultBufferMaxBytes = 16 << 20
	DefaultListenAddr     = "sandbox.localdomain:4243"
	DefaultSpillDir       = "/tmp/sluice-spill"
	// DefaultSpillMaxBytes leaves most of Lambda's default 512 MB /tmp to
	// the function.
	DefaultSpillMaxBytes = 128 << 20
	// DefaultMemoryLimitMB is the Go heap limit. The extension needs about
	// 10 MB to run, the buffer cap 16 MiB, an open batch 3-4 MiB and the
	// telemetry in flight up to 8 MiB: 48 MB leaves a 128 MB function about
	// 80 MB, and a log storm makes the GC work harder instead of growing.
	DefaultMemoryLimitMB = 48
)

// Load reads the configuration through getenv and returns every problem at
// once, each naming its variable and quoting the bad value.
func Load(getenv func(string) string) (Config, error) {
	c := Config{
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
	var errs []error
	bad := func(name, val, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, val, fmt.Sprintf(format, args...)))
	}

	if v := getenv("SLUICE_SINK"); v == "" {
		errs = append(errs, errors.New(`SLUICE_SINK is not set: want s3://BUCKET/PREFIX, file:///DIR or https://OPENSEARCH/INDEX (a comma-separated list for more than one)`))
	} else {
		errs = append(errs, c.parseSinks(v, getenv("SLUICE_OPENSEARCH_SECRET_ARN"))...)
	}

	size := func(name string, dst *int, lo, hi int) {
		v := getenv(name)
		if v == "" {
			return
		}
		n, err := parseSize(v)
		if err != nil {
			bad(name, v, "%v", err)
			return
		}
		if n < lo || n > hi {
			bad(name, v, "want between %s and %s", formatSize(lo), formatSize(hi))
			return
		}
		*dst = n
	}
	size("SLUICE_BATCH_MAX_BYTES", &c.BatchMaxBytes, 64<<10, 256<<20)
	size("SLUICE_BUFFER_MAX_BYTES", &c.BufferMaxBytes, 1<<20, 1<<30)
	size("SLUICE_SPILL_MAX_BYTES", &c.SpillMaxBytes, 0, 10<<30)

	if v := getenv("SLUICE_SPILL_DIR"); v != "" {
		if !strings.HasPrefix(v, "/") {
			bad("SLUICE_SPILL_DIR", v, "want an absolute directory (Lambda can write only under /tmp)")
		} else {
			c.SpillDir = v
		}
	}

	memOK := true
	if v := getenv("SLUICE_MEMORY_LIMIT_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 16 || n > 10240 {
			bad("SLUICE_MEMORY_LIMIT_MB", v, "want a whole number of MB between 16 and 10240")
			memOK = false
		} else {
			c.MemoryLimitMB = n
		}
	}
	if memOK && c.BufferMaxBytes > c.MemoryLimitMB<<20/2 {
		errs = append(errs, fmt.Errorf("SLUICE_BUFFER_MAX_BYTES=%s is more than half of SLUICE_MEMORY_LIMIT_MB=%d: raise the limit or lower the buffer",
			formatSize(c.BufferMaxBytes), c.MemoryLimitMB))
	}

	if v := getenv("SLUICE_BATCH_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			bad("SLUICE_BATCH_MAX_AGE", v, "want a duration such as 30s or 5m")
		case d < time.Second || d > time.Hour:
			bad("SLUICE_BATCH_MAX_AGE", v, "want between 1s and 1h")
		default:
			c.BatchMaxAge = d
		}
	}

	minSet := false
	if v := getenv("SLUICE_BATCH_MIN_BYTES"); v != "" {
		n, err := parseSize(v)
		switch {
		case err != nil:
			bad("SLUICE_BATCH_MIN_BYTES", v, "%v", err)
		case n > c.BatchMaxBytes:
			bad("SLUICE_BATCH_MIN_BYTES", v, "want at most SLUICE_BATCH_MAX_BYTES (%s)", formatSize(c.BatchMaxBytes))
		default:
			c.BatchMinBytes, minSet = n, true
		}
	}
	if !minSet {
		c.BatchMinBytes = min(c.BatchMinBytes, c.BatchMaxBytes)
	}
	if v := getenv("SLUICE_BATCH_MAX_HOLD"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			bad("SLUICE_BATCH_MAX_HOLD", v, "want a duration such as 30m or 1h")
		case d < c.BatchMaxAge || d > 6*time.Hour:
			bad("SLUICE_BATCH_MAX_HOLD", v, "want between SLUICE_BATCH_MAX_AGE (%s) and 6h", c.BatchMaxAge)
		default:
			c.BatchMaxHold = d
		}
	}

	if v := getenv("SLUICE_LISTEN_ADDR"); v != "" {
		if _, port, err := net.SplitHostPort(v); err != nil {
			bad("SLUICE_LISTEN_ADDR", v, "want HOST:PORT")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || p == 9001 {
			bad("SLUICE_LISTEN_ADDR", v, "want a port in 0..65535 other than 9001 (the Runtime API)")
		} else {
			c.ListenAddr = v
		}
	}

	switch v := getenv("SLUICE_FLUSH"); strings.ToLower(v) {
	case "":
	case FlushBackground, FlushInvoke:
		c.Flush = strings.ToLower(v)
	default:
		bad("SLUICE_FLUSH", v, "want %q or %q", FlushBackground, FlushInvoke)
	}

	if v := getenv("SLUICE_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			bad("SLUICE_LOG_LEVEL", v, "want debug, info, warn or error")
		}
	}

	if v := getenv("SLUICE_SAMPLE_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1) {
			bad("SLUICE_SAMPLE_RATE", v, "want a share of invocations between 0 and 1, such as 0.1")
		} else {
			c.Policy.SampleRate = f
		}
	}
	level := func(name string, dst *buffer.Level, allowOff bool) {
		v := getenv(name)
		if v == "" {
			return
		}
		l, ok := buffer.ParseLevelName(v)
		if strings.EqualFold(v, "off") && allowOff {
			l, ok = buffer.LevelOff, true
		}
		if !ok || (l == buffer.LevelOff && !allowOff) {
			bad(name, v, "want TRACE, DEBUG, INFO, WARN, ERROR or FATAL")
			return
		}
		*dst = l
	}
	level("SLUICE_KEEP_LEVEL", &c.Policy.KeepLevel, true)
	level("SLUICE_MIN_LEVEL", &c.Policy.MinLevel, false)
	if v := getenv("SLUICE_MAX_LINES_PER_INVOKE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("SLUICE_MAX_LINES_PER_INVOKE", v, "want a whole number of lines, 0 for no cap")
		} else {
			c.Policy.MaxLinesPerInvoke = n
		}
	}

	var presets, patterns []string
	if v := getenv("SLUICE_REDACT"); v != "" {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				presets = append(presets, strings.ToLower(p))
			}
		}
	}
	if v := getenv("SLUICE_REDACT_PATTERNS"); v != "" {
		if strings.HasPrefix(strings.TrimSpace(v), "[") {
			if err := json.Unmarshal([]byte(v), &patterns); err != nil {
				bad("SLUICE_REDACT_PATTERNS", v, "want a JSON array of regular expressions, or one expression")
			}
		} else {
			patterns = []string{v}
		}
	}
	if len(presets)+len(patterns) > 0 {
		red, err := buffer.NewRedactor(presets, patterns)
		if err != nil {
			name, val := "SLUICE_REDACT", getenv("SLUICE_REDACT")
			if len(patterns) > 0 && !strings.Contains(err.Error(), "preset") {
				name, val = "SLUICE_REDACT_PATTERNS", getenv("SLUICE_REDACT_PATTERNS")
			}
			bad(name, val, "%v", err)
		} else {
			c.Redactor = red
		}
	}

	if f, err := buffer.ParseFormat(getenv("SLUICE_FORMAT"), getenv("SLUICE_COMPRESSION")); err != nil {
		errs = append(errs, fmt.Errorf("SLUICE_FORMAT=%q SLUICE_COMPRESSION=%q: %w", getenv("SLUICE_FORMAT"), getenv("SLUICE_COMPRESSION"), err))
	} else {
		c.Format = f
		if f == buffer.FormatParquet && len(c.OpenSearch) > 0 {
			errs = append(errs, errors.New(`SLUICE_FORMAT="parquet": OpenSearch sinks in SLUICE_SINK index NDJSON rows; use ndjson, or archive Parquet and index from another function`))
		}
	}

	if v := getenv("SLUICE_PLATFORM"); v != "" {
		f, err := parsePlatformFilter(v)
		if err != nil {
			bad("SLUICE_PLATFORM", v, "%v", err)
		} else {
			c.Platform = f
		}
	}

	c.S3BucketOwner = getenv("SLUICE_S3_EXPECTED_BUCKET_OWNER")
	if v := c.S3BucketOwner; v != "" && !isAccountID(v) {
		bad("SLUICE_S3_EXPECTED_BUCKET_OWNER", v, "want a 12-digit AWS account id")
	}
	c.S3KMSKeyID = getenv("SLUICE_S3_KMS_KEY_ID")
	if (c.S3BucketOwner != "" || c.S3KMSKeyID != "") && c.Sink.Scheme != "s3" {
		errs = append(errs, errors.New("SLUICE_S3_EXPECTED_BUCKET_OWNER and SLUICE_S3_KMS_KEY_ID apply only to an s3:// SLUICE_SINK"))
	}
	return c, errors.Join(errs...)
}

// Limits are the batch bounds for buffer.NewBatcher.
func (c Config) Limits() buffer.Limits {
	minBytes := c.BatchMinBytes
	if minBytes == 0 {
		minBytes = -1 // no minimum: the age bound seals any batch
	}
	return buffer.Limits{MaxBytes: c.BatchMaxBytes, MaxAge: c.BatchMaxAge, MinBytes: minBytes, MaxHold: c.BatchMaxHold, Format: c.Format}
}

// parseSinks reads SLUICE_SINK: a comma-separated list of at most one
// archive (s3:// or file://) and any number of OpenSearch endpoints.
func (c *Config) parseSinks(v, secretARN string) []error {
	var errs []error
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.HasPrefix(part, "https://") || strings.HasPrefix(part, "http://") {
			t, err := sinks.ParseOpenSearchURL(part)
			if err != nil {
				errs = append(errs, fmt.Errorf("SLUICE_SINK=%q: %w", quoteSafe(part), err))
				continue
			}
			if secretARN != "" && t.Auth == sinks.AuthSigV4 && !t.Serverless() {
				t.Auth, t.SecretARN = sinks.AuthSecret, secretARN
			}
			c.OpenSearch = append(c.OpenSearch, t)
			continue
		}
		s, err := parseSink(part)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("SLUICE_SINK=%q: %w", quoteSafe(part), err))
		case c.Sink.Scheme != "":
			errs = append(errs, fmt.Errorf("SLUICE_SINK=%q: more than one archive (s3:// or file://); want at most one, plus OpenSearch endpoints", v))
		default:
			c.Sink = s
		}
	}
	if len(errs) == 0 && c.Sink.Scheme == "" && len(c.OpenSearch) == 0 {
		errs = append(errs, fmt.Errorf("SLUICE_SINK=%q: no sink: want s3://BUCKET/PREFIX, file:///DIR or https://OPENSEARCH/INDEX", v))
	}
	return errs
}

// quoteSafe keeps credentials out of error messages: the userinfo of a
// URL is masked.
func quoteSafe(v string) string {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		u.User = url.User("REDACTED")
		return u.String()
	}
	return v
}

// SinkNames lists the configured sinks for logs.
func (c Config) SinkNames() string {
	var names []string
	if c.Sink.Scheme != "" {
		names = append(names, c.Sink.String())
	}
	for _, t := range c.OpenSearch {
		names = append(names, t.Endpoint+"/"+t.Index.Pattern)
	}
	return strings.Join(names, ",")
}

// KnownVars lists every variable Load reads, for spotting typos.
var KnownVars = []string{
	"SLUICE_SINK", "SLUICE_OPENSEARCH_SECRET_ARN", "SLUICE_BATCH_MAX_BYTES", "SLUICE_BATCH_MAX_AGE", "SLUICE_BATCH_MIN_BYTES", "SLUICE_BATCH_MAX_HOLD", "SLUICE_BUFFER_MAX_BYTES",
	"SLUICE_LISTEN_ADDR", "SLUICE_FLUSH", "SLUICE_LOG_LEVEL",
	"SLUICE_S3_EXPECTED_BUCKET_OWNER", "SLUICE_S3_KMS_KEY_ID",
	"SLUICE_SPILL_DIR", "SLUICE_SPILL_MAX_BYTES", "SLUICE_MEMORY_LIMIT_MB",
	"SLUICE_SAMPLE_RATE", "SLUICE_KEEP_LEVEL", "SLUICE_MIN_LEVEL", "SLUICE_MAX_LINES_PER_INVOKE",
	"SLUICE_REDACT", "SLUICE_REDACT_PATTERNS", "SLUICE_PLATFORM",
	"SLUICE_FORMAT", "SLUICE_COMPRESSION",
}

// PlatformFilter says which platform.* events are archived.
type PlatformFilter struct {
	all      bool
	failures bool            // any platform event whose status is not success
	types    map[string]bool // "platform.report", ...
}

// platformEvents are the platform event names SLUICE_PLATFORM accepts.
var platformEvents = []string{
	"initStart", "initRuntimeDone", "initReport", "start", "runtimeDone", "report",
	"logsDropped", "restoreStart", "restoreRuntimeDone", "restoreReport",
	"extension", "telemetrySubscription",
}

// DefaultPlatformFilter archives what the cost and failure queries need:
// every report (durations, billed time, memory, init duration),
// logsDropped, initReport, and any event that reports a failure.
func DefaultPlatformFilter() PlatformFilter {
	f, _ := parsePlatformFilter("report,logsDropped,initReport,failures")
	return f
}

func parsePlatformFilter(v string) (PlatformFilter, error) {
	f := PlatformFilter{types: map[string]bool{}}
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimPrefix(strings.TrimSpace(name), "platform.")
		switch {
		case name == "":
		case strings.EqualFold(name, "all"):
			f.all = true
		case strings.EqualFold(name, "none"):
		case strings.EqualFold(name, "failures"):
			f.failures = true
		default:
			found := false
			for _, e := range platformEvents {
				if strings.EqualFold(e, name) {
					f.types["platform."+e] = true
					found = true
				}
			}
			if !found {
				return f, fmt.Errorf("unknown event %q: want all, none, failures or some of %s", name, strings.Join(platformEvents, ","))
			}
		}
	}
	return f, nil
}

// Keep says whether a platform record is archived.
func (f PlatformFilter) Keep(r *buffer.Record) bool {
	if f.all || f.types[r.Type] {
		return true
	}
	return f.failures && r.Status != "" && r.Status != "success"
}

// UnknownVars returns the SLUICE_* names in environ that Load does not read:
// most likely typos, which would otherwise be ignored silently.
func UnknownVars(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SLUICE_") || strings.HasPrefix(name, "SLUICE_TEST_") {
			continue
		}
		known := false
		for _, k := range KnownVars {
			if k == name {
				known = true
				break
			}
		}
		if !known {
			out = append(out, name)
		}
	}
	return out
}

func parseSink(v string) (Sink, error) {
	u, err := url.Parse(v)
	if err != nil {
		return Sink{}, errors.New("not a URL: want s3://BUCKET/PREFIX or file:///DIR")
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return Sink{}, errors.New("no bucket: want s3://BUCKET/PREFIX")
		}
		if !validBucket(u.Host) {
			return Sink{}, fmt.Errorf("bucket %q is not a valid S3 bucket name", u.Host)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return Sink{}, errors.New("query and fragment are not allowed")
		}
		return Sink{Scheme: "s3", Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Sink{}, errors.New("want file:///ABSOLUTE/DIR (three slashes)")
		}
		if !strings.HasPrefix(u.Path, "/") {
			return Sink{}, errors.New("want an absolute directory: file:///DIR")
		}
		return Sink{Scheme: "file", Dir: u.Path}, nil
	default:
		return Sink{}, errors.New("unsupported scheme: want s3://BUCKET/PREFIX or file:///DIR")
	}
}

// validBucket checks the S3 naming rules that a typo is likely to break.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	first, last := b[0], b[len(b)-1]
	return first != '-' && first != '.' && last != '-' && last != '.'
}

func isAccountID(v string) bool {
	if len(v) != 12 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// parseSize reads a byte count: a plain integer or one with a KiB/MiB/GiB
// (or KB/MB/GB, also 1024-based as users of this field expect) suffix.
func parseSize(v string) (int, error) {
	s := strings.TrimSpace(v)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("want a size in bytes, such as 8388608 or 8MiB")
	}
	if n > (1<<40)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

func formatSize(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.Itoa(n>>30) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n)
}
