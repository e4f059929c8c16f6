// Command faults is `make faults`: it runs the real sluice binary under the
// local Lambda platform (extension/lambdatest) with the sample function,
// archiving to a real S3 server (versitygw over TLS) through a
// fault-injecting proxy (extension/lambdatest/faultproxy), and accounts for
// every line the function wrote under each fault scenario.
//
// Each scenario gets a fresh S3 server, proxy and execution environment,
// runs its invocations and faults, shuts the environment down and prints
// exactly one row on stdout (scenario "none", a healthy sink, is the
// control):
//
//	fault=<name> emitted=<N> archived=<N> fallback=<N> lost=<N> duplicates=<N>
//
// emitted counts the function lines the platform produced (plus the records
// a scenario posts itself: through the platform, or straight to sluice's
// listener, where only lines answered 200 count, since a refused body stays
// with its sender and must not be delivered); archived the distinct lines
// found in the bucket; fallback the distinct lines found only in sluice's stdout
// fallback rows; lost is emitted-archived-fallback (lines the platform
// dropped because sluice fell behind never reach either, so they are lost
// too); duplicates the extra copies over archive and fallback. Details of
// each run go to stderr. The exit status is 1 if any scenario lost a line
// or could not run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/extension/lambdatest"
	"github.com/sluice-logs/sluice/extension/lambdatest/faultproxy"
	"github.com/sluice-logs/sluice/sinks/s3test"
	"golang.org/x/sync/errgroup"
)

func main() {
	ext := flag.String("extension", "", "the sluice binary (its file name is the extension's name)")
	fn := flag.String("function", "", "the sample function's bootstrap binary")
	only := flag.String("only", "", "run only these scenarios (comma-separated names)")
	verbose := flag.Bool("v", false, "copy the extension's output to stderr")
	debug := flag.Bool("debug", false, "run sluice with SLUICE_LOG_LEVEL=debug (implies -v)")
	keep := flag.Bool("keep", false, "keep each scenario's work directory (S3 data, certificates)")
	retry := flag.Int("retry", 0, "run a scenario that lost lines up to this many more times (its earlier rows go to stderr); for shared machines where the platform, the function and S3 compete with sluice for the same cores")
	var vars varList
	flag.Var(&vars, "var", "NAME=VALUE for the extension in every scenario, after the scenario's own (repeatable), e.g. -var SLUICE_FLUSH=invoke")
	flag.Parse()
	if *ext == "" || *fn == "" {
		fmt.Fprintln(os.Stderr, "usage: faults -extension PATH_TO_SLUICE -function BOOTSTRAP [-only NAME[,NAME]] [-var NAME=VALUE]... [-v|-debug] [-keep]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runAll(ctx, options{extension: *ext, function: *fn, only: *only, verbose: *verbose || *debug, debug: *debug, keep: *keep, vars: vars, retry: *retry}))
}

type options struct {
	extension, function, only string
	verbose, debug, keep      bool
	vars                      []string
	retry                     int
	opensearch                *osNode // started by the first OpenSearch scenario (scenarios_opensearch.go)
}

// varList is a repeatable NAME=VALUE flag.
type varList []string

func (v *varList) String() string { return strings.Join(*v, " ") }

func (v *varList) Set(s string) error {
	if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	*v = append(*v, s)
	return nil
}

func runAll(ctx context.Context, o options) int {
	var selected []scenario
	want := map[string]bool{}
	for n := range strings.SplitSeq(o.only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.name)
		if len(want) == 0 || want[sc.name] {
			selected = append(selected, sc)
		}
	}
	for n := range want {
		if !slices.Contains(names, n) {
			fmt.Fprintf(os.Stderr, "faults: unknown scenario %q; known: %s\n", n, strings.Join(names, " "))
			return 2
		}
	}
	start := time.Now()
	status := 0
	o.opensearch = &osNode{}
	defer o.opensearch.stop()
	for _, sc := range selected {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "--- fault=%s\n", sc.name)
		row, lost, err := runScenario(ctx, sc, o)
		for try := 1; try <= o.retry && err == nil && lost != 0 && ctx.Err() == nil; try++ {
			fmt.Fprintf(os.Stderr, "faults: %s lost lines, running it again (%d of %d): %s\n", sc.name, try, o.retry, row)
			row, lost, err = runScenario(ctx, sc, o)
		}
		if err != nil {
			fmt.Printf("fault=%s error=%q\n", sc.name, err.Error())
			status = 1
			continue
		}
		fmt.Println(row)
		// A negative count means lines nobody wrote were archived: as
		// wrong as a loss.
		if lost != 0 {
			status = 1
		}
	}
	fmt.Fprintf(os.Stderr, "faults: %d scenarios in %s\n", len(selected), time.Since(start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		return 1
	}
	return status
}

// request is the sample function's payload (see sample/main.go).
type request struct {
	Lines   int  `json:"lines,omitempty"`
	JSON    bool `json:"json,omitempty"`
	Big     int  `json:"big,omitempty"`
	SleepMs int  `json:"sleep_ms,omitempty"`
}

// steady is the usual invocation: 200 lines, text and JSON, about 45 KB of
// NDJSON, so that 64 KiB batches seal every other invocation or so.
var steady = request{Lines: 200, JSON: true}

// scenario is one fault and the workload around it.
type scenario struct {
	name    string
	vars    []string      // extra variables for the extension (later wins)
	timeout time.Duration // per invocation; default 3s
	initial faultproxy.Fault
	rss     bool // report the extension's peak RSS
	bigLine int  // the size of the sample's long line, if the scenario asks for one
	// setup, if set, runs before the environment starts (r.p is nil).
	setup func(r *run) error
	// run invokes the function and applies faults; the harness shuts the
	// environment down afterwards unless run did.
	run func(r *run) error
	// check, if set, runs once the lines are accounted for: it returns
	// fields to add to the row, or why the scenario failed.
	check func(r *run) (string, error)
	os    *osScenario // OpenSearch alongside S3 (scenarios_opensearch.go)
}

// run is one scenario in progress.
type run struct {
	ctx       context.Context
	start     time.Time
	proxy     *faultproxy.Proxy
	p         *lambdatest.Platform
	ledger    *ledger
	out       *outputScanner
	statuses  map[string]int
	postMax   time.Duration // longest PostRuntime (time sluice added to an invoke)
	durMax    time.Duration // longest invocation as the caller saw it
	invokes   int
	shut      *lambdatest.ShutdownResult
	spillDir  string // sluice's SLUICE_SPILL_DIR, one per scenario
	rssPeakKB int64  // the extension's peak RSS, when the scenario asks for it
}

// note logs a step of the scenario; it may be called from any goroutine.
func (r *run) note(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  +%.1fs %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// invoke runs one invocation and records what the function wrote.
func (r *run) invoke(req request) (*lambdatest.Result, error) {
	payload, _ := json.Marshal(req) // a struct of ints and bools always encodes
	start := time.Now()
	res, err := r.p.Invoke(r.ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("invoke %d: %w", r.invokes+1, err)
	}
	r.durMax = max(r.durMax, time.Since(start))
	r.postMax = max(r.postMax, res.PostRuntime)
	r.invokes++
	r.statuses[res.Status]++
	r.ledger.wrote(written{RequestID: res.RequestID, Lines: req.Lines, Big: req.Big})
	if res.Init > 0 {
		r.note("invocation %d ran a fresh Init (the environment had been reset)", r.invokes)
	}
	return res, nil
}

// invokeN runs n invocations back to back.
func (r *run) invokeN(n int, req request) error {
	for range n {
		if _, err := r.invoke(req); err != nil {
			return err
		}
	}
	return nil
}

// invokeFor starts an invocation every period (or as soon as the previous
// one returns, when it took longer) until d has passed.
func (r *run) invokeFor(d, period time.Duration, req request) error {
	end := time.Now().Add(d)
	next := time.Now()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for time.Now().Before(end) {
		if _, err := r.invoke(req); err != nil {
			return err
		}
		next = next.Add(period)
		wait := time.Until(next)
		if wait <= 0 {
			next = time.Now()
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	return nil
}

// wait waits d, or until the run is cancelled.
func (r *run) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// fault installs f in the proxy.
func (r *run) fault(f faultproxy.Fault) error {
	if err := r.proxy.SetFault(f); err != nil {
		return err
	}
	r.note("proxy: %v", f)
	return nil
}

// post delivers a raw telemetry body to sluice as one POST.
func (r *run) post(body string) error {
	if err := r.p.PostTelemetry(r.ctx, []byte(body)); err != nil {
		return err
	}
	r.note("posted a telemetry body of %d bytes", len(body))
	return nil
}

// shutdown runs the Shutdown phase.
func (r *run) shutdown() error {
	if r.shut != nil {
		return nil
	}
	sd, err := r.p.Shutdown(r.ctx, "spindown")
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	r.shut = sd
	r.note("shutdown took %s, killed at the deadline: %v", sd.Duration.Round(time.Millisecond), sd.Killed)
	return nil
}

// waitInFlight waits until the proxy holds a request, up to limit.
func (r *run) waitInFlight(limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for r.proxy.Stats().InFlight == 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("no upload reached the proxy within %v", limit)
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	return nil
}

const scenarioTimeout = 2 * time.Minute

func runScenario(ctx context.Context, sc scenario, o options) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	work, err := os.MkdirTemp("", "sluice-faults-"+sc.name+"-")
	if err != nil {
		return "", 0, err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "  work directory kept: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	s3dir := filepath.Join(work, "s3")
	srv, stopS3, err := s3test.Run(ctx, s3dir)
	if err != nil {
		return "", 0, fmt.Errorf("start versitygw: %w", err)
	}
	defer stopS3()
	proxy, err := faultproxy.Start(ctx, srv.Endpoint, srv.CAFile,
		filepath.Join(s3dir, "tls", "cert.pem"), filepath.Join(s3dir, "tls", "key.pem"))
	if err != nil {
		return "", 0, err
	}
	defer proxy.Close()

	exp := &expect{bigSize: sc.bigLine}
	r := &run{
		ctx:      ctx,
		start:    time.Now(),
		proxy:    proxy,
		ledger:   newLedger(exp),
		statuses: map[string]int{},
		spillDir: filepath.Join(work, "sluice-spill"),
	}
	r.out = &outputScanner{ledger: r.ledger}
	if o.verbose {
		r.out.copy = os.Stderr
	}
	if sc.initial.Kind != faultproxy.None {
		if err := r.fault(sc.initial); err != nil {
			return "", 0, err
		}
	}

	if sc.setup != nil {
		if err := sc.setup(r); err != nil {
			return "", 0, fmt.Errorf("setup: %w", err)
		}
	}
	// Each scenario has its own spill: a spill shared with another run of
	// sluice on the machine would lend or take batches.
	vars := append([]string{"SLUICE_SPILL_DIR=" + r.spillDir}, sc.vars...)
	vars = append(vars, o.vars...)
	if o.debug {
		vars = append(vars, "SLUICE_LOG_LEVEL=debug")
	}
	// OpenSearch alongside S3 (scenarios_opensearch.go)
	osr, err := sc.os.start(ctx, o.opensearch, srv, work)
	if err != nil {
		return "", 0, err
	}
	defer osr.close()
	vars = append(osr.vars(srv), vars...)

	env := environment(srv, proxy, vars)
	p, err := lambdatest.Start(ctx, lambdatest.Config{
		Extensions:      []string{o.extension},
		Runtime:         []string{o.function},
		Env:             env,
		FunctionName:    "faults",
		LogFormat:       "JSON",
		Timeout:         cmpOr(sc.timeout, 3*time.Second),
		ExtensionOutput: r.out,
	})
	if err != nil {
		return "", 0, fmt.Errorf("start the local Lambda: %w", err)
	}
	defer p.Close()
	r.p = p
	r.note("environment ready")

	var peak *rssWatch
	if sc.rss {
		peak = watchRSS(p)
	}
	runErr := sc.run(r)
	if runErr == nil {
		runErr = r.shutdown()
	}
	if peak != nil {
		peak.stop()
	}
	if runErr != nil {
		tail(r.out.lines(), 20)
		return "", 0, runErr
	}
	r.out.flush()

	objects, err := srv.ReadObjects()
	if err != nil {
		return "", 0, fmt.Errorf("read the archive: %w", err)
	}
	// Decoding and strictly parsing millions of rows is the slow part of
	// the log storm: use every core.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for k, data := range objects {
		g.Go(func() error { return r.ledger.addObject(k, data) })
	}
	if err := g.Wait(); err != nil {
		return "", 0, err
	}

	st := p.Stats()
	c := r.ledger.result(st.FunctionLines)
	ps := proxy.Stats()
	fmt.Fprintf(os.Stderr, "  took %s; %d invocations %v; longest invoke %s, longest PostRuntime %s\n",
		time.Since(r.start).Round(100*time.Millisecond), r.invokes, r.statuses,
		r.durMax.Round(time.Millisecond), r.postMax.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "  proxy: %d requests, %d forwarded, %d faulted, %d upstream errors; archive: %d objects\n",
		ps.Requests, ps.Forwarded, ps.Faulted, ps.UpstreamErrors, len(objects))
	fmt.Fprintf(os.Stderr, "  platform: %d function lines, %d records dropped (counted as lost), %d undelivered at the end, %d POST retries, %d resets, %d killed\n",
		st.FunctionLines, st.RecordsDropped, st.RecordsUndelivered, st.PostRetries, st.Resets, st.ExtensionsKilled)
	l := r.ledger
	if c.Missing > 0 || l.corrupt > 0 || l.strange > 0 || l.badRows > 0 || l.fbErrors > 0 || c.Refused > 0 {
		fmt.Fprintf(os.Stderr, "  checks: %d written lines found nowhere, %d long lines altered, %d unexpected malformed rows, %d unparsable fallback rows, %d fallback_error rows, %d lines delivered though refused\n",
			c.Missing, l.corrupt, l.strange, l.badRows, l.fbErrors, c.Refused)
	}
	if len(c.MissingKeys) > 0 {
		// The keys are the lines' own text (request id and number): grep
		// the extension's output and the archive for them.
		fmt.Fprintf(os.Stderr, "  found nowhere: %s\n", strings.Join(c.MissingKeys, " "))
	}
	for _, t := range r.out.totals() {
		fmt.Fprintf(os.Stderr, "  sluice: %s\n", t)
	}
	fmt.Fprintf(os.Stderr, "  sluice output: %d lines, %d at ERROR, %d at WARN, %d fallback rows\n",
		r.out.n, r.out.errors, r.out.warns, r.out.fallback)

	row := fmt.Sprintf("fault=%s emitted=%d archived=%d fallback=%d lost=%d duplicates=%d",
		sc.name, c.Emitted, c.Archived, c.Fallback, c.Lost, c.Duplicates)
	if c.Refused > 0 {
		row += fmt.Sprintf(" refused_delivered=%d", c.Refused)
	}
	if peak != nil {
		r.rssPeakKB = peak.maxKB()
		row += fmt.Sprintf(" rss_peak_mb=%.1f", float64(r.rssPeakKB)/1024)
	}
	// OpenSearch alongside S3 (scenarios_opensearch.go)
	osRow, osLost, err := osr.account(ctx, r.ledger, c.Emitted)
	if err != nil {
		return "", 0, err
	}
	row += osRow
	if sc.check != nil {
		extra, err := sc.check(r)
		if extra != "" {
			row += " " + extra
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "  %s\n", row)
			return "", 0, err
		}
	}
	// Lines a refused POST carried must stay with the sender: Lambda sends
	// them again, so delivering them too is as wrong as a loss.
	return row, c.Lost + c.Refused + osLost, nil
}

// environment is the extension's: the S3 server's credentials, region and
// CA, its endpoint replaced by the proxy's, sluice's settings, then the
// scenario's (a later value of a name wins).
func environment(srv *s3test.Server, proxy *faultproxy.Proxy, extra []string) []string {
	vars := append(srv.Env(),
		"AWS_ENDPOINT_URL_S3="+proxy.Endpoint(),
		"SLUICE_SINK=s3://"+srv.Bucket+"/archive",
		"SLUICE_LISTEN_ADDR=127.0.0.1:0",
		"SLUICE_BATCH_MAX_BYTES=64KiB",
	)
	return dedupEnv(append(vars, extra...))
}

// dedupEnv keeps one entry per name, the last value at the first place.
func dedupEnv(vars []string) []string {
	var out []string
	at := map[string]int{}
	for _, kv := range vars {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			out[i] = kv
			continue
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	return out
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func tail(lines []string, n int) {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Fprintf(os.Stderr, "  | %.300s\n", l)
	}
}

// outputScanner receives the extensions' output (whole lines, each written
// as the line then "\n") and counts the fallback rows as they come, so
// that a fallback of millions of lines needs no copy.
type outputScanner struct {
	ledger *ledger
	copy   io.Writer

	mu                         sync.Mutex
	buf                        []byte
	n, errors, warns, fallback int
	last                       []string // recent non-fallback lines
	totalsLines                []string
	shutdownAt                 time.Time // when sluice's first "shutdown" line arrived
}

func (s *outputScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.copy != nil {
		_, _ = s.copy.Write(p)
	}
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		s.lineLocked(s.buf[:i])
		s.buf = s.buf[i+1:]
	}
	if len(s.buf) == 0 {
		s.buf = nil // let a large line's buffer go
	}
	return len(p), nil
}

func (s *outputScanner) lineLocked(line []byte) {
	s.n++
	if bytes.HasPrefix(line, []byte(fallbackPrefix)) {
		s.fallback++
		s.ledger.addOutputLine(line)
		return
	}
	switch {
	case bytes.Contains(line, []byte(`"level":"ERROR"`)) || bytes.Contains(line, []byte("level=ERROR")):
		s.errors++
	case bytes.Contains(line, []byte(`"level":"WARN"`)) || bytes.Contains(line, []byte("level=WARN")):
		s.warns++
	}
	if bytes.Contains(line, []byte(`"msg":"totals"`)) || bytes.Contains(line, []byte("msg=totals")) {
		s.totalsLines = append(s.totalsLines, string(line))
	}
	if s.shutdownAt.IsZero() && (bytes.Contains(line, []byte(`"msg":"shutdown"`)) || bytes.Contains(line, []byte("msg=shutdown "))) {
		s.shutdownAt = time.Now()
	}
	s.last = append(s.last, string(line))
	if len(s.last) > 200 {
		s.last = slices.Clone(s.last[100:])
	}
}

// flush takes a last line cut short (the extension was killed mid-write).
func (s *outputScanner) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 {
		s.lineLocked(s.buf)
		s.buf = nil
	}
}

func (s *outputScanner) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.last)
}

// sawShutdown is when sluice's "shutdown" line arrived (zero: not yet).
func (s *outputScanner) sawShutdown() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdownAt
}

func (s *outputScanner) totals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.totalsLines)
}

// rssWatch samples the extension's peak resident set (VmHWM) while it
// runs, across environments.
type rssWatch struct {
	done chan struct{}
	quit chan struct{}
	mu   sync.Mutex
	kb   int64
}

func watchRSS(p *lambdatest.Platform) *rssWatch {
	w := &rssWatch{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if pid := p.PIDs()["sluice"]; pid != 0 {
				if kb, ok := vmHWM(pid); ok {
					w.mu.Lock()
					w.kb = max(w.kb, kb)
					w.mu.Unlock()
				}
			}
			select {
			case <-tick.C:
			case <-w.quit:
				return
			}
		}
	}()
	return w
}

func (w *rssWatch) stop() {
	close(w.quit)
	<-w.done
}

func (w *rssWatch) maxKB() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kb
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 0 {
				return 0, false
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}
