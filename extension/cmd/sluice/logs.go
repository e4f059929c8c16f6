//go:build !lambda

// sluice logs is left out of builds tagged lambda (the layer's binary): it
// needs the SDK's full configuration loader (profiles, SSO, assume-role),
// whose packages cost every cold start of the extension about 1 ms and
// 2 MB. logs_lambda.go stands in for it there.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/archive"
)

// Exit codes of sluice logs.
const (
	exitOK      = 0 // done, including a window with no objects (said on stderr)
	exitFailed  = 1 // nothing could be read: credentials, access, bucket, network
	exitUsage   = 2 // bad flags or arguments
	exitPartial = 3 // done, but some objects could not be read (named on stderr)
)

const logsUsage = `usage: sluice logs [SINK] --function NAME [flags]

Prints a function's archived log lines in time order, like aws logs tail.
SINK is s3://BUCKET/PREFIX or file:///DIR (default: $SLUICE_SINK).

Times (--start, --end) are RFC 3339 ("2026-03-07T09:30:00Z"), a date
("2026-03-07"), a local date and time ("2026-03-07 09:30") or time of day
("09:30"), or a duration before now ("15m", "2h", "1d"); without a zone
they are local (set TZ=UTC for UTC).

Exit status: 0 done (also when the window holds no objects), 1 failure,
2 bad usage, 3 done but some objects were unreadable (named on stderr).

flags:
`

// listFlag collects a repeatable flag whose values may also be comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// logsOptions is the parsed command line.
type logsOptions struct {
	sink       extension.Sink
	functions  []string
	start, end time.Time
	follow     bool
	poll       time.Duration
	requestID  string
	level      buffer.Level
	levelSet   bool
	grep       *regexp.Regexp
	types      []string
	json       bool
	color      bool
	progress   bool
	version    bool
}

// logsMain is `sluice logs`. It reads the archive through the SDK's
// default configuration chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, ...)
// and AWS_ENDPOINT_URL_S3.
func logsMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, code := parseLogsArgs(args, stderr, getenv, time.Now())
	if code >= 0 {
		return code
	}
	if o.version {
		fmt.Fprintln(stdout, "sluice", buildVersion())
		return exitOK
	}
	o.color = isTerminal(stdout) && getenv("NO_COLOR") == ""
	o.progress = isTerminal(stderr) && !o.follow

	var store archive.Store
	prefix := ""
	switch o.sink.Scheme {
	case "s3":
		c, err := newS3Client(ctx, getenv("AWS_REGION"))
		if err != nil {
			fmt.Fprintf(stderr, "sluice logs: %v\n", err)
			return exitFailed
		}
		// Found before any request, so that "no credentials" is told apart
		// from a refusal.
		if _, err := c.Options().Credentials.Retrieve(ctx); err != nil {
			fmt.Fprintf(stderr, "sluice logs: no AWS credentials: %v\n"+
				"  set AWS_PROFILE (after aws sso login), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n", err)
			return exitFailed
		}
		store, prefix = archive.NewS3(c, o.sink.Bucket), o.sink.Prefix
	case "file":
		store = &archive.Dir{Root: o.sink.Dir}
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	var mu sync.Mutex // stderr is shared with the progress line
	prog := &progress{w: stderr, on: o.progress}
	counters := &archive.Counters{}
	r := &archive.Reader{
		Store:    store,
		Prefix:   prefix,
		Poll:     o.poll,
		Counters: counters,
		Warn: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			prog.clear()
			fmt.Fprintf(stderr, "sluice logs: %v\n", err)
		},
	}
	p := newPrinter(o, out)
	emit := func(l *archive.Line) error {
		if err := p.print(l); err != nil {
			return err
		}
		if o.follow || o.color {
			// A person is watching: lines go out as they come.
			return out.Flush()
		}
		return nil
	}
	q := archive.Query{Functions: o.functions, Start: o.start, End: o.end}

	stopProgress := prog.run(&mu, counters)
	var err error
	if o.follow {
		err = r.Follow(ctx, q, emit)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			err = nil // Ctrl-C ends --follow
		}
	} else {
		err = r.Read(ctx, q, emit)
	}
	stopProgress()
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice logs: %s\n", explain(err, o.sink))
		return exitFailed
	}
	if !o.follow && counters.Objects.Load() == 0 {
		fmt.Fprintf(stderr, "sluice logs: no objects for %s between %s and %s in %s (listed %d hour partitions)\n",
			strings.Join(o.functions, ", "), o.start.Format(time.RFC3339), o.end.Format(time.RFC3339), o.sink, counters.Lists.Load())
		return exitOK
	}
	if n := counters.Skipped.Load(); n > 0 {
		fmt.Fprintf(stderr, "sluice logs: %d objects could not be read in full (named above); the rest was printed\n", n)
		return exitPartial
	}
	return exitOK
}

// newS3Client returns the S3 client of a person's shell: the SDK's
// default configuration chain (environment, shared files and profiles,
// SSO, assume-role), region overriding AWS_REGION when not empty.
func newS3Client(ctx context.Context, region string) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("load aws config: no region (set AWS_REGION)")
	}
	return sinks.NewS3ClientFromConfig(cfg), nil
}

// explain turns an error into what a person can act on.
func explain(err error, sink extension.Sink) string {
	switch archive.Classify(err) {
	case archive.ProblemNoSuchBucket:
		return fmt.Sprintf("bucket %q does not exist (check SINK or SLUICE_SINK, and AWS_REGION): %v", sink.Bucket, err)
	case archive.ProblemAccessDenied:
		return fmt.Sprintf("access denied to %s: the credentials need s3:ListBucket on the bucket for the prefix and s3:GetObject on its objects (and kms:Decrypt with SSE-KMS): %v", sink, err)
	case archive.ProblemBadCredentials:
		return fmt.Sprintf("S3 rejected the credentials (expired or wrong; try aws sso login or check AWS_PROFILE): %v", err)
	}
	return err.Error()
}

// parseLogsArgs parses the command line; code is -1 to go on, or the exit
// code to return at once.
func parseLogsArgs(args []string, stderr io.Writer, getenv func(string) string, now time.Time) (o logsOptions, code int) {
	fs := flag.NewFlagSet("sluice logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, logsUsage)
		fs.PrintDefaults()
	}
	var functions, types listFlag
	fs.Var(&functions, "function", "function `NAME` (repeat the flag or give a comma list)")
	since := fs.String("since", "", "show lines from this `DURATION` before now (default 10m)")
	start := fs.String("start", "", "show lines from `TIME`")
	end := fs.String("end", "", "show lines before `TIME` (default now)")
	fs.BoolVar(&o.follow, "follow", false, "keep printing new lines as objects land (Ctrl-C ends)")
	fs.DurationVar(&o.poll, "poll", archive.DefaultPoll, "with --follow, list new objects this often (at most 2 LISTs per function each time)")
	fs.StringVar(&o.requestID, "request-id", "", "only the lines of this request `ID`")
	level := fs.String("level", "", "only lines at or above `LEVEL` (TRACE DEBUG INFO WARN ERROR FATAL)")
	grep := fs.String("grep", "", "only lines whose message matches this RE2 `REGEX`")
	fs.Var(&types, "type", "only rows of this `TYPE` (function, platform.report, ...; repeatable)")
	fs.BoolVar(&o.json, "json", false, "print the archived rows as they are, one JSON object per line")
	version := fs.Bool("version", false, "print the version and exit")

	// Flags may come before and after SINK.
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return o, exitOK
			}
			return o, exitUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	if *version {
		o.version = true
		return o, -1
	}
	bad := func(format string, a ...any) (logsOptions, int) {
		fmt.Fprintf(stderr, "sluice logs: "+format+"\n", a...)
		fmt.Fprintln(stderr, `run "sluice logs -h" for help`)
		return o, exitUsage
	}
	sinkArg := getenv("SLUICE_SINK")
	switch len(rest) {
	case 0:
		if sinkArg == "" {
			return bad("no SINK: give s3://BUCKET/PREFIX or file:///DIR, or set SLUICE_SINK")
		}
	case 1:
		sinkArg = rest[0]
	default:
		return bad("one SINK only, got %q", rest)
	}
	// The extension's own parser, so that the command takes exactly what
	// SLUICE_SINK takes.
	cfg, err := extension.Load(func(k string) string {
		if k == "SLUICE_SINK" {
			return sinkArg
		}
		return ""
	})
	if err != nil {
		return bad("SINK %q: want s3://BUCKET/PREFIX or file:///DIR (%v)", sinkArg, err)
	}
	o.sink = cfg.Sink
	if len(functions) == 0 {
		return bad("no --function: name the function(s) to read")
	}
	o.functions = slices.Compact(slices.Sorted(slices.Values(functions)))

	switch {
	case *since != "" && *start != "":
		return bad("--since and --start both given: use one")
	case *since != "":
		d, err := parseDuration(*since)
		if err != nil {
			return bad("--since %q: %v", *since, err)
		}
		o.start = now.Add(-d)
	case *start != "":
		if o.start, err = parseTime(*start, now, time.Local); err != nil {
			return bad("--start %q: %v", *start, err)
		}
	default:
		o.start = now.Add(-10 * time.Minute)
	}
	o.end = now
	if *end != "" {
		if o.follow {
			return bad("--end and --follow: --follow has no end")
		}
		if o.end, err = parseTime(*end, now, time.Local); err != nil {
			return bad("--end %q: %v", *end, err)
		}
	}
	if !o.follow && !o.start.Before(o.end) {
		return bad("the window is empty: start %s is not before end %s", o.start.Format(time.RFC3339), o.end.Format(time.RFC3339))
	}
	if o.poll < 100*time.Millisecond {
		return bad("--poll %v: want at least 100ms", o.poll)
	}
	if *level != "" {
		l, ok := buffer.ParseLevelName(*level)
		if !ok || l == buffer.LevelOff {
			return bad("--level %q: want TRACE, DEBUG, INFO, WARN, ERROR or FATAL", *level)
		}
		o.level, o.levelSet = l, true
	}
	if *grep != "" {
		if o.grep, err = regexp.Compile(*grep); err != nil {
			return bad("--grep: %v", err)
		}
	}
	o.types = types
	return o, -1
}

// parseDuration is time.ParseDuration with days ("1d", "1d12h") and
// without a sign: a duration always reaches back from now.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "-")
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > 3660 {
			return 0, errors.New("want a duration such as 15m, 2h or 1d")
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 15m, 2h or 1d")
	}
	return days + d, nil
}

// timeLayouts are the absolute forms parseTime takes; those without a zone
// are read in the local zone.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
}

// parseTime reads a --start or --end value: an absolute time, a time of day
// today, "now", or a duration before now.
func parseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, nil
		}
	}
	for _, l := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			y, m, d := now.In(loc).Date()
			return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, loc), nil
		}
	}
	if d, err := parseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New(`want RFC 3339, "2006-01-02 15:04", "15:04", or a duration before now such as 15m`)
}

// printer filters rows and writes them as text or as archived.
type printer struct {
	o     logsOptions
	w     *bufio.Writer
	many  bool // several functions: name each line's
	needs bool // a filter or the text format needs the row decoded
	row   archiveRow
	reqID []byte
}

// archiveRow is the part of a row the command reads: filters and text.
type archiveRow struct {
	Type             string  `json:"type"`
	Function         string  `json:"function"`
	RequestID        string  `json:"request_id"`
	Level            string  `json:"level"`
	Message          string  `json:"message"`
	Status           string  `json:"status"`
	ErrorType        string  `json:"error_type"`
	DurationMs       float64 `json:"duration_ms"`
	BilledDurationMs float64 `json:"billed_duration_ms"`
	InitDurationMs   float64 `json:"init_duration_ms"`
	MemorySizeMB     int64   `json:"memory_size_mb"`
	MaxMemoryUsedMB  int64   `json:"max_memory_used_mb"`
	Fields           string  `json:"fields"`
}

func newPrinter(o logsOptions, w *bufio.Writer) *printer {
	return &printer{
		o:     o,
		w:     w,
		many:  len(o.functions) > 1,
		needs: !o.json || o.requestID != "" || o.levelSet || o.grep != nil || len(o.types) > 0,
		reqID: []byte(o.requestID),
	}
}

func (p *printer) print(l *archive.Line) error {
	// Request ids are plain ASCII, so a row without the bytes cannot match:
	// most rows of a window are passed over without decoding.
	if len(p.reqID) > 0 && !bytes.Contains(l.Row, p.reqID) {
		return nil
	}
	if p.needs {
		p.row = archiveRow{}
		if err := json.Unmarshal(l.Row, &p.row); err != nil {
			return nil // RowTime read it, so it is JSON; a damaged row is not printed
		}
		if !p.match(&p.row) {
			return nil
		}
	}
	if p.o.json {
		p.w.Write(l.Row)
		return p.w.WriteByte('\n')
	}
	return p.text(l, &p.row)
}

// rowLevel is the level a row is filtered at: its level column, or for
// platform rows, which have none, ERROR when the invocation failed.
func rowLevel(r *archiveRow) buffer.Level {
	if l, ok := buffer.ParseLevelName(r.Level); ok {
		return l
	}
	switch r.Status {
	case "failure", "error", "timeout":
		return buffer.LevelError
	}
	return buffer.LevelInfo
}

func (p *printer) match(r *archiveRow) bool {
	if p.o.requestID != "" && r.RequestID != p.o.requestID {
		return false
	}
	if len(p.o.types) > 0 && !slices.Contains(p.o.types, r.Type) {
		return false
	}
	if p.o.levelSet && rowLevel(r) < p.o.level {
		return false
	}
	if p.o.grep != nil && !p.o.grep.MatchString(r.Message) && !(r.Fields != "" && p.o.grep.MatchString(r.Fields)) {
		return false
	}
	return true
}

// ANSI colours, used only when stdout is a terminal.
const (
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiReset  = "\x1b[0m"
)

// text writes "TIME [FUNCTION] LEVEL REQUEST_ID MESSAGE", times in UTC as
// aws logs tail prints them.
func (p *printer) text(l *archive.Line, r *archiveRow) error {
	w := p.w
	col := func(c string) {
		if p.o.color {
			w.WriteString(c)
		}
	}
	col(ansiDim)
	w.Write(l.Time.UTC().AppendFormat(nil, "2006-01-02T15:04:05.000Z"))
	col(ansiReset)
	w.WriteByte(' ')
	if p.many {
		col(ansiCyan)
		w.WriteString(l.Object.Function)
		col(ansiReset)
		w.WriteByte(' ')
	}
	lvl := r.Level
	if lvl == "" {
		lvl = "-"
	}
	switch rowLevel(r) {
	case buffer.LevelError, buffer.LevelFatal:
		col(ansiRed)
	case buffer.LevelWarn:
		col(ansiYellow)
	case buffer.LevelTrace, buffer.LevelDebug:
		col(ansiDim)
	}
	fmt.Fprintf(w, "%-5s", lvl)
	col(ansiReset)
	w.WriteByte(' ')
	if r.RequestID != "" {
		w.WriteString(r.RequestID)
	} else {
		w.WriteByte('-')
	}
	w.WriteByte(' ')
	if r.Type != "function" {
		w.WriteString(summary(r))
	} else {
		w.WriteString(strings.TrimRight(r.Message, "\n"))
	}
	return w.WriteByte('\n')
}

// summary describes a row that is not a function line, as Lambda's own
// START/END/REPORT lines do.
func summary(r *archiveRow) string {
	var sb strings.Builder
	sb.WriteString(strings.ToUpper(strings.TrimPrefix(r.Type, "platform.")))
	add := func(k, v string) {
		if v != "" {
			sb.WriteString(" " + k + "=" + v)
		}
	}
	ms := func(f float64) string {
		if f == 0 {
			return ""
		}
		return strconv.FormatFloat(f, 'f', -1, 64) + "ms"
	}
	mb := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10) + "MB"
	}
	add("status", r.Status)
	add("error_type", r.ErrorType)
	add("duration", ms(r.DurationMs))
	add("billed", ms(r.BilledDurationMs))
	add("init", ms(r.InitDurationMs))
	add("memory", mb(r.MemorySizeMB))
	add("max_used", mb(r.MaxMemoryUsedMB))
	if r.Message != "" {
		sb.WriteString(" " + r.Message)
	}
	if r.Fields != "" && r.Type != "platform.report" {
		sb.WriteString(" " + r.Fields)
	}
	return sb.String()
}

// progress keeps one line on stderr up to date while a window is read,
// when stderr is a terminal.
type progress struct {
	w     io.Writer
	on    bool
	shown bool
}

// run updates the line every 200 ms until the returned stop is called.
func (p *progress) run(mu *sync.Mutex, c *archive.Counters) (stop func()) {
	if !p.on {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			mu.Lock()
			fmt.Fprintf(p.w, "\r\x1b[Klisted %d prefixes, %d objects; read %d (%.1f MiB); %d lines",
				c.Lists.Load(), c.Objects.Load(), c.Fetched.Load(), float64(c.Bytes.Load())/(1<<20), c.Rows.Load())
			p.shown = true
			mu.Unlock()
		}
	}()
	return func() {
		close(done)
		<-finished
		mu.Lock()
		p.clear()
		mu.Unlock()
	}
}

// clear erases the progress line; the caller holds the lock.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// isTerminal reports whether w is a character device (a terminal), by a
// stat of its file descriptor.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// buildVersion is the module version go install recorded, with the commit
// when built from a checkout.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
