package extension

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
// overhead) against delay and memory: 4 MiB of NDJSON compresses to about
// 0.5-1 MiB, and a busy environment writes an object every few seconds to
// a minute. 8 MiB halved the PUTs ($0.0006 instead of $0.0012 per GB) but
// held twice the memory in the open batch and in the one being uploaded,
// and made the upload an invocation carries twice as long on a small
// function's CPU.
const (
	DefaultBatchMaxBytes  = 4 << 20
	DefaultBatchMaxAge    = 60 * time.Second
	DefaultBufferMaxBytes = 16 << 20
	DefaultListenAddr     = "sandbox.localdomain:4243"
	DefaultSpillDir       = "/tmp/sluice-spill"
	// DefaultSpillMaxBytes leaves most of Lambda's default 512 MB /tmp to
	// the function.
	DefaultSpillMaxBytes = 128 << 20
	// DefaultMemoryLimitMB is the Go heap limit. The extension needs about
	// 10 MB to run, the buffer cap 16 MiB, an open batch 3-4 MiB and the
	// telemetry in flight up to 8 MiB (telemetry.DefaultMaxPendingBytes):
	// 48 MB leaves a 128 MB function about 80 MB, and a log storm makes the
	// GC work harder instead of growing.
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
		errs = append(errs, fmt.Errorf("%s=%s: %s", name, quoteValue(name, val), fmt.Sprintf(format, args...)))
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
		if err := checkSpillDir(v, getenv("TMPDIR")); err != nil {
			bad("SLUICE_SPILL_DIR", v, "%v", err)
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
	// The open batch is in memory too: compressed as it grows for NDJSON,
	// as rows for Parquet, and a record larger than the batch whole.
	if memOK && c.BatchMaxBytes > c.MemoryLimitMB<<20/2 {
		errs = append(errs, fmt.Errorf("SLUICE_BATCH_MAX_BYTES=%s is more than half of SLUICE_MEMORY_LIMIT_MB=%d: raise the limit or lower the batch size",
			formatSize(c.BatchMaxBytes), c.MemoryLimitMB))
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

	c.Redactor = loadRedactor(getenv, bad)

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
	if v := c.S3KMSKeyID; v != "" && !validKMSKey(v) {
		bad("SLUICE_S3_KMS_KEY_ID", v, "want a KMS key id, key ARN, alias name (alias/NAME) or alias ARN")
	}
	if (c.S3BucketOwner != "" || c.S3KMSKeyID != "") && c.Sink.Scheme != "s3" {
		errs = append(errs, errors.New("SLUICE_S3_EXPECTED_BUCKET_OWNER and SLUICE_S3_KMS_KEY_ID apply only to an s3:// SLUICE_SINK"))
	}
	return c, errors.Join(errs...)
}

// binaryReserveMB is the part of the extension's resident memory that the
// Go runtime does not count: the executable's pages (10.2 MB on x86_64,
// 8.3 MB of them resident after init, more as more code runs), and 2 MB
// because the limit is soft. With 10, the listener-flood scenario, whose
// live heap stays near the limit, peaked at 44-47 MB of a 48 MB budget;
// with 12, at 30-42 MB.
const binaryReserveMB = 12

// GoMemoryLimit is the GOMEMLIMIT that keeps the whole process, not just
// the heap, within SLUICE_MEMORY_LIMIT_MB: the limit less what the binary
// occupies, but never less than half of it.
func GoMemoryLimit(limitMB int) int64 {
	return int64(max(limitMB-binaryReserveMB, limitMB/2)) << 20
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
				errs = append(errs, fmt.Errorf("SLUICE_SINK=%s: %w", quoteValue("SLUICE_SINK", part), err))
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
			errs = append(errs, fmt.Errorf("SLUICE_SINK=%s: %w", quoteValue("SLUICE_SINK", part), err))
		case c.Sink.Scheme != "":
			errs = append(errs, fmt.Errorf("SLUICE_SINK=%s: more than one archive (s3:// or file://); want at most one, plus OpenSearch endpoints", quoteValue("SLUICE_SINK", v)))
		default:
			c.Sink = s
		}
	}
	if len(errs) == 0 && c.Sink.Scheme == "" && len(c.OpenSearch) == 0 {
		errs = append(errs, fmt.Errorf("SLUICE_SINK=%s: no sink: want s3://BUCKET/PREFIX, file:///DIR or https://OPENSEARCH/INDEX", quoteValue("SLUICE_SINK", v)))
	}
	return errs
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
	"SLUICE_REDACT", "SLUICE_REDACT_PATTERNS", "SLUICE_REDACT_KEYS", "SLUICE_PLATFORM",
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
	if u.User != nil {
		return Sink{}, errors.New("credentials in the URL are refused: sluice writes with the function's role, remove them")
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return Sink{}, errors.New("no bucket: want s3://BUCKET/PREFIX")
		}
		if err := checkBucket(u.Host); err != nil {
			return Sink{}, fmt.Errorf("bucket %q %v", u.Host, err)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			return Sink{}, errors.New("query and fragment are not allowed")
		}
		// The prefix as written: u.Path has its escapes decoded.
		raw := strings.TrimPrefix(v, "s3://"+u.Host)
		prefix := strings.Trim(raw, "/")
		if err := checkPrefix(prefix); err != nil {
			return Sink{}, err
		}
		return Sink{Scheme: "s3", Bucket: u.Host, Prefix: prefix}, nil
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

// maxPrefixBytes leaves room in S3's 1,024-byte key limit for what sluice
// appends to the prefix: /function=NAME (64 characters at most)/dt=.../
// hour=../<start>-<env>-<seq>.json.zst, under 200 bytes.
const maxPrefixBytes = 1024 - 200

// checkPrefix holds an S3 prefix to what the archive's readers need: S3's
// safe characters (no space, no percent-escape, nothing a URL or a shell
// reads otherwise), no empty, "." or ".." segment, no segment that
// sluice's own partitions would be confused with, and room for the key.
func checkPrefix(p string) error {
	if len(p) > maxPrefixBytes {
		return fmt.Errorf("prefix of %d bytes: S3 keys are at most 1024 bytes and sluice needs up to 200 of them, want at most %d", len(p), maxPrefixBytes)
	}
	if p == "" {
		return nil
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!-_.*'()=/", c) >= 0) {
			return fmt.Errorf("prefix holds %q: want letters, digits and ! - _ . * ' ( ) = /", c)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch {
		case seg == "":
			return errors.New("prefix has an empty segment (//)")
		case seg == "." || seg == "..":
			return fmt.Errorf("prefix has a %q segment", seg)
		}
		for _, part := range []string{"function=", "dt=", "hour="} {
			if strings.HasPrefix(seg, part) {
				return fmt.Errorf("prefix has a %q segment, which readers would take for one of sluice's partitions", part)
			}
		}
	}
	return nil
}

// checkBucket applies S3's bucket naming rules for general purpose buckets.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return errors.New("is not 3 to 63 characters long")
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return errors.New("is not a valid S3 bucket name: want lower-case letters, digits, '-' and '.'")
		}
	}
	first, last := b[0], b[len(b)-1]
	switch {
	case first == '-' || first == '.' || last == '-' || last == '.':
		return errors.New("is not a valid S3 bucket name: it must start and end with a letter or digit")
	case strings.Contains(b, ".."):
		return errors.New("is not a valid S3 bucket name: two periods in a row")
	case isIPv4(b):
		return errors.New("is not a valid S3 bucket name: it has the form of an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Errorf("is not a valid S3 bucket name: the prefix %q is reserved", p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, sfx) {
			return fmt.Errorf("is not a valid S3 bucket name: the suffix %q is reserved", sfx)
		}
	}
	return nil
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

// validKMSKey accepts the forms S3 takes for SSE-KMS: a key id (a UUID, or
// mrk- and 32 hex digits for a multi-Region key), a key ARN, an alias name
// (alias/NAME) or an alias ARN.
func validKMSKey(v string) bool {
	if rest, ok := strings.CutPrefix(v, "arn:"); ok {
		parts := strings.SplitN(rest, ":", 5) // partition, service, region, account, resource
		if len(parts) != 5 || !isPartition(parts[0]) || parts[1] != "kms" || !isRegion(parts[2]) || !isAccountID(parts[3]) {
			return false
		}
		if id, ok := strings.CutPrefix(parts[4], "key/"); ok {
			return isKeyID(id)
		}
		return isAlias(parts[4])
	}
	return isKeyID(v) || isAlias(v)
}

func isKeyID(s string) bool {
	if hex, ok := strings.CutPrefix(s, "mrk-"); ok {
		return len(hex) == 32 && allOf(hex, "0123456789abcdef")
	}
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return true
}

// isAlias accepts alias/NAME with NAME of 1 to 250 letters, digits, '/',
// '_' and '-' (alias/aws/s3, the AWS managed key, included).
func isAlias(s string) bool {
	name, ok := strings.CutPrefix(s, "alias/")
	return ok && len(name) >= 1 && len(name) <= 250 &&
		allOf(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-")
}

func isPartition(s string) bool {
	return s == "aws" || strings.HasPrefix(s, "aws-") && allOf(s, "abcdefghijklmnopqrstuvwxyz-")
}

func isRegion(s string) bool {
	return len(s) >= 6 && allOf(s, "abcdefghijklmnopqrstuvwxyz0123456789-")
}

func allOf(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

// checkSpillDir wants a directory of sluice's own under /tmp (or under
// $TMPDIR, where tests and local runs put theirs): sluice deletes the
// temporary files it finds there and adopts (uploads, then deletes) the
// files named like its batches, so it must not share one with the function
// or be /tmp itself. The name starting with "sluice" is how a setting says
// the directory is sluice's.
func checkSpillDir(v, tmpdir string) error {
	clean := path.Clean(v)
	under := func(root string) bool {
		root = path.Clean(root)
		return strings.HasPrefix(root, "/") && root != "/" && strings.HasPrefix(clean, root+"/")
	}
	switch {
	case !strings.HasPrefix(v, "/"):
		return errors.New("want an absolute directory under /tmp (Lambda can write only there)")
	case !under("/tmp") && (tmpdir == "" || !under(tmpdir)):
		return errors.New("want a directory of sluice's own under /tmp, such as /tmp/sluice-spill: sluice deletes and adopts files there")
	case clean != strings.TrimSuffix(v, "/") || strings.Contains(v, "//"):
		return fmt.Errorf("want a clean path, such as %q", clean)
	case !strings.HasPrefix(path.Base(clean), "sluice"):
		return errors.New("want a directory of sluice's own, its name starting with \"sluice\" (such as /tmp/sluice-spill): sluice deletes and adopts files there")
	}
	return nil
}

// maxQuoted is the longest value an error quotes whole; a longer one may be
// a secret pasted by mistake, and the error goes to CloudWatch.
const maxQuoted = 32

// quoteValue quotes v for an error message without what may be secret:
// the user information of a URL is masked, a long value is cut to half of
// maxQuoted, and a pattern list (which can hold the very secret it is meant
// to hide) is cut past 16 bytes, to 8.
func quoteValue(name, v string) string {
	if i := strings.Index(v, "://"); i >= 0 {
		rest := v[i+3:]
		host := rest
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			host = rest[:j]
		}
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			v = v[:i+3] + "***" + rest[at:]
		}
	}
	limit := maxQuoted
	if name == "SLUICE_REDACT_PATTERNS" {
		limit = 16
	}
	if len(v) <= limit {
		return strconv.Quote(v)
	}
	cut := v[:limit/2]
	for !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return fmt.Sprintf("%q (%d bytes)", cut+"...", len(v))
}

// loadRedactor reads SLUICE_REDACT, SLUICE_REDACT_PATTERNS and
// SLUICE_REDACT_KEYS, reporting each problem under its own variable. The
// default key list applies when SLUICE_REDACT_KEYS is unset and a preset or
// pattern is set: redaction that is off stays off.
func loadRedactor(getenv func(string) string, bad func(name, val, format string, args ...any)) *buffer.Redactor {
	var presets, patterns, keys []string
	if v := getenv("SLUICE_REDACT"); v != "" {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				presets = append(presets, strings.ToLower(p))
			}
		}
	}
	patternsOK := true
	if v := getenv("SLUICE_REDACT_PATTERNS"); v != "" {
		t := strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(t, "[") && json.Unmarshal([]byte(t), &patterns) == nil:
		case strings.HasPrefix(t, `["`):
			bad("SLUICE_REDACT_PATTERNS", v, "want a JSON array of regular expressions, or one expression")
			patternsOK = false
		default:
			// One expression, which may start with a character class.
			patterns = []string{v}
		}
	}
	switch v := getenv("SLUICE_REDACT_KEYS"); {
	case strings.EqualFold(strings.TrimSpace(v), "none"):
	case v == "":
		if len(presets)+len(patterns) > 0 {
			keys = buffer.DefaultRedactKeys()
		}
	default:
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); strings.EqualFold(k, "default") {
				keys = append(keys, buffer.DefaultRedactKeys()...)
			} else if k != "" {
				keys = append(keys, k)
			}
		}
	}
	if len(presets)+len(patterns)+len(keys) == 0 || !patternsOK {
		return nil
	}
	red, err := buffer.NewRedactor(presets, patterns, keys...)
	if err == nil {
		return red
	}
	byVar := map[string][]string{}
	var each []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		each = j.Unwrap()
	} else {
		each = []error{err}
	}
	for _, e := range each {
		name := "SLUICE_REDACT"
		var re *buffer.RedactError
		if errors.As(e, &re) {
			switch re.Setting {
			case buffer.SettingPatterns:
				name = "SLUICE_REDACT_PATTERNS"
			case buffer.SettingKeys:
				name = "SLUICE_REDACT_KEYS"
			}
		}
		byVar[name] = append(byVar[name], e.Error())
	}
	for _, name := range []string{"SLUICE_REDACT", "SLUICE_REDACT_PATTERNS", "SLUICE_REDACT_KEYS"} {
		if msgs := byVar[name]; len(msgs) > 0 {
			bad(name, getenv(name), "%s", strings.Join(msgs, "; "))
		}
	}
	return nil
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
