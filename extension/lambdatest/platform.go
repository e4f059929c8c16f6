package lambdatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config describes the function and the execution environment to emulate.
// Zero values take the defaults noted on each field.
type Config struct {
	Extensions      []string      // executables started as external extensions; extension name = file base name
	Runtime         []string      // bootstrap command line (path + args)
	Env             []string      // extra "K=V" for runtime and extensions
	FunctionName    string        // default "sample"
	FunctionVersion string        // default "$LATEST"
	Handler         string        // _HANDLER of the runtime and "handler" of /register; default "bootstrap"
	AccountID       string        // accountId of /register (with Lambda-Extension-Accept-Feature: accountId) and ARNs; default "123456789012"
	MemoryMB        int           // default 128
	Timeout         time.Duration // per invocation, default 3s
	LogFormat       string        // "Text" (default) or "JSON"
	ExtensionOutput io.Writer     // optional copy of the extensions' stdout+stderr
	RuntimeOutput   io.Writer     // optional copy of the runtime's stdout+stderr
	NoFreeze        bool          // by default extensions and runtime are SIGSTOPped between invocations

	// MaxQueuedRecords bounds, per subscriber, the records waiting for
	// delivery; beyond it function and extension records are dropped and
	// reported in platform.logsDropped. Default 10000.
	MaxQueuedRecords int
	// MaxQueuedBytes bounds the same queue by encoded size. Default 64 MiB.
	MaxQueuedBytes int
	// InitTimeout bounds the Init phase (extensions registered, runtime and
	// extensions waiting on next). Default 10s, Lambda's on-demand limit.
	InitTimeout time.Duration
	// ShutdownTimeout is the time extensions get between the SHUTDOWN
	// event and SIGKILL. Default 2s, Lambda's limit with external extensions.
	ShutdownTimeout time.Duration
	// PostTimeout bounds one telemetry POST to a subscriber; a POST that
	// takes longer counts as failed and is retried. Default 1s.
	PostTimeout time.Duration

	// ManagedInstances emulates Lambda Managed Instances: Invoke may be
	// called concurrently and invocations interleave, extensions may
	// register for SHUTDOWN only (INVOKE is refused with 403), telemetry
	// needs schema 2025-01-29, no platform.runtimeDone is sent and
	// platform.report carries only durationMs and status. The environment
	// is never frozen; LogFormat defaults to JSON. See managed.go.
	ManagedInstances bool
	// MaxConcurrency is AWS_LAMBDA_MAX_CONCURRENCY in that mode: how many
	// runtime workers the function should run. Default 4. As with AWS's
	// emulator, AWS_LAMBDA_MAX_CONCURRENCY=N in Env also selects the mode.
	MaxConcurrency int
}

const (
	defaultMaxQueuedRecords = 10000
	defaultMaxQueuedBytes   = 64 << 20
	maxPayload              = 6 << 20 // Lambda's synchronous request and response limit
	maxExtensions           = 10
	maxExtensionLines       = 100000
	runtimeTermGrace        = 300 * time.Millisecond
)

func (c Config) withDefaults() (Config, error) {
	var errs []error
	if len(c.Runtime) == 0 || c.Runtime[0] == "" {
		errs = append(errs, errors.New("config: Runtime must name the bootstrap executable"))
	}
	if len(c.Extensions) > maxExtensions {
		errs = append(errs, fmt.Errorf("config: %d extensions, Lambda allows %d", len(c.Extensions), maxExtensions))
	}
	seen := map[string]bool{}
	for _, e := range c.Extensions {
		name := filepath.Base(e)
		if seen[name] {
			errs = append(errs, fmt.Errorf("config: two extensions named %q", name))
		}
		seen[name] = true
	}
	if c.FunctionName == "" {
		c.FunctionName = "sample"
	}
	if c.FunctionVersion == "" {
		c.FunctionVersion = "$LATEST"
	}
	if c.Handler == "" {
		c.Handler = "bootstrap"
	}
	if c.AccountID == "" {
		c.AccountID = "123456789012"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 128
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Second
	}
	for _, kv := range c.Env {
		if k, v, _ := strings.Cut(kv, "="); k == "AWS_LAMBDA_MAX_CONCURRENCY" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("config: Env %q: want a positive number", kv))
				continue
			}
			c.ManagedInstances, c.MaxConcurrency = true, n
		}
	}
	if c.ManagedInstances {
		// Never frozen; JSON is the default log format there.
		c.NoFreeze = true
		if c.LogFormat == "" {
			c.LogFormat = "JSON"
		}
		if c.MaxConcurrency == 0 {
			c.MaxConcurrency = 4
		}
	}
	switch strings.ToLower(c.LogFormat) {
	case "", "text":
		c.LogFormat = "Text"
	case "json":
		c.LogFormat = "JSON"
	default:
		errs = append(errs, fmt.Errorf("config: LogFormat %q, want Text or JSON", c.LogFormat))
	}
	if c.MaxQueuedRecords == 0 {
		c.MaxQueuedRecords = defaultMaxQueuedRecords
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = defaultMaxQueuedBytes
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 2 * time.Second
	}
	if c.PostTimeout == 0 {
		c.PostTimeout = time.Second
	}
	if c.MemoryMB < 0 || c.Timeout < 0 || c.MaxConcurrency < 0 || c.MaxQueuedRecords < 0 || c.MaxQueuedBytes < 0 ||
		c.InitTimeout < 0 || c.ShutdownTimeout < 0 || c.PostTimeout < 0 {
		errs = append(errs, errors.New("config: sizes and durations must not be negative"))
	}
	for _, kv := range c.Env {
		if !strings.Contains(kv, "=") {
			errs = append(errs, fmt.Errorf("config: Env entry %q is not K=V", kv))
		}
	}
	return c, errors.Join(errs...)
}

// Result is the outcome of one invocation.
type Result struct {
	RequestID string
	Status    string // success | error | failure | timeout (the status of platform.report)
	ErrorType string // e.g. the function's error type, "Runtime.ExitError", "Extension.Crash"
	Response  []byte // the runtime's response, or its error document when Status is "error"
	// Duration is the runtime's part: from platform.start to the response.
	Duration time.Duration
	// PostRuntime runs from the runtime's response to the last extension's
	// /event/next (Lambda's PostRuntimeExtensionsDuration).
	PostRuntime time.Duration
	// Init is the duration of the Init phase this invocation had to run
	// first because the previous environment was reset; zero otherwise.
	Init time.Duration
}

// ShutdownResult tells how the Shutdown phase went.
type ShutdownResult struct {
	Killed   []string // extensions SIGKILLed at the deadline
	Duration time.Duration
}

// Stats counts what the platform did. Counters cover every environment the
// platform ran (an environment is replaced after a timeout or a crash).
type Stats struct {
	Inits              int64 // Init phases run
	Resets             int64 // environments torn down after a timeout, a crash or a cancelled invoke
	Invocations        int64
	FunctionLines      int64 // function records produced from runtime output
	ExtensionLines     int64 // lines the extensions wrote
	RecordsQueued      int64 // records put in a subscriber's queue
	RecordsDelivered   int64 // records in POSTs answered 2xx
	RecordsDropped     int64 // records dropped because a queue was full (reported in platform.logsDropped)
	DropsReported      int64 // records counted in the platform.logsDropped events emitted so far
	RecordsUndelivered int64 // records still queued or in flight when their subscriber's environment ended
	Posts              int64 // telemetry POSTs sent, retries included
	PostRetries        int64
	ExtensionsKilled   int64 // extensions SIGKILLed at a shutdown deadline
}

type counters struct {
	inits, resets, invocations, functionLines, extensionLines atomic.Int64
	queued, delivered, dropped, dropsReported, undelivered    atomic.Int64
	posts, postRetries, killed                                atomic.Int64
}

// ExtensionError is a call to /extension/init/error or /extension/exit/error,
// or to the runtime's /runtime/init/error.
type ExtensionError struct {
	Extension string // extension name, or "runtime"
	Phase     string // "init" or "exit"
	ErrorType string // the Lambda-Extension-Function-Error-Type (or runtime error type) header
	Message   string // errorMessage of the body, or the raw body when it is not that JSON
}

// InitError is returned by Start (and by Invoke when it must re-run Init)
// when the Init phase fails.
type InitError struct {
	Source    string   // extension name, or "runtime"
	ErrorType string   // e.g. "Extension.ConfigInvalid", "Extension.ExitError", "Runtime.ExitError"
	Message   string   // what the source reported, or what the platform saw
	Output    []string // the extension output lines of this Init phase
}

func (e *InitError) Error() string {
	msg := "init failed: " + e.Source
	if e.ErrorType != "" {
		msg += ": " + e.ErrorType
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

var (
	errClosed  = errors.New("platform closed")
	errTimeout = errors.New("timed out")
)

// Platform is a running emulated execution environment and its API server.
// Its methods are safe for concurrent use; Invoke, Shutdown and
// PostTelemetry run one at a time, like Lambda's on-demand environments,
// except that with Config.ManagedInstances invocations run concurrently
// (Shutdown and PostTelemetry still wait for them).
type Platform struct {
	cfg       Config
	addr      string
	srv       *http.Server
	serveDone chan struct{}
	client    *http.Client
	nonce     string

	// opMu serialises Invoke, Shutdown, PostTelemetry and Close's teardown;
	// Managed Instances invocations share it (RLock).
	opMu sync.RWMutex
	// slots bounds the Managed Instances invocations in flight to
	// MaxConcurrency, as Lambda routes no more to one environment.
	slots chan struct{}

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change under mu
	env       *env
	gen       int
	shut      bool
	extLines  []string
	extErrors []ExtensionError
	extOutMu  sync.Mutex
	rtOutMu   sync.Mutex
	stats     counters
	closed    chan struct{}
	closeOnce sync.Once
	closeWait sync.Once
}

// Start starts the API server and runs the Init phase: it starts the
// extensions, waits until they have registered, starts the runtime, and
// returns once the runtime and every extension wait on their next event.
// Unless cfg.NoFreeze, the environment is then frozen until Invoke.
func Start(ctx context.Context, cfg Config) (*Platform, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start lambda platform: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start lambda platform: listen: %w", err)
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	p := &Platform{
		cfg:       cfg,
		addr:      ln.Addr().String(),
		serveDone: make(chan struct{}),
		client:    &http.Client{Transport: transport},
		nonce:     "\x00sluice-lambdatest-drain-" + newID()[:8] + ":",
		changed:   make(chan struct{}),
		closed:    make(chan struct{}),
		slots:     make(chan struct{}, max(cfg.MaxConcurrency, 1)),
	}
	p.srv = &http.Server{Handler: p.routes(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(ln) // returns http.ErrServerClosed at Close
	}()
	e, err := p.initEnv(ctx)
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("start lambda platform: %w", err)
	}
	p.freeze(e)
	return p, nil
}

// Addr is the host:port of the API server (AWS_LAMBDA_RUNTIME_API).
func (p *Platform) Addr() string { return p.addr }

// Invoke runs one invocation: it thaws the environment, sends INVOKE to the
// extensions registered for it, hands the payload to the runtime, waits for
// the response (or the timeout), then for every extension's next
// /event/next, emits platform.report and freezes the environment again.
// After a timeout or a crash the environment is shut down (SHUTDOWN with
// reason "timeout" or "failure") and the next Invoke runs a fresh Init.
// The returned error is for the platform's own failures; a failed function
// is a Result with Status "error", "failure" or "timeout".
func (p *Platform) Invoke(ctx context.Context, payload []byte) (*Result, error) {
	if p.cfg.ManagedInstances {
		return p.invokeManaged(ctx, payload)
	}
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if err := p.usable(); err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("invoke: payload of %d bytes exceeds Lambda's %d", len(payload), maxPayload)
	}
	res := &Result{}
	p.mu.Lock()
	env := p.env
	if env != nil && env.rt != nil && env.rt.exited {
		env.broken = "failure"
	}
	broken := env != nil && env.broken != ""
	p.mu.Unlock()
	if broken {
		p.reset(env, env.broken)
		env = nil
	}
	if env == nil {
		e, err := p.initEnv(ctx)
		if err != nil {
			return nil, fmt.Errorf("invoke: %w", err)
		}
		env = e
		res.Init = e.initDuration
	}
	return p.invoke(ctx, env, payload, res)
}

// Shutdown runs the Shutdown phase: SIGTERM to the runtime (SIGKILL after
// 300 ms), a bounded flush of the queued telemetry, SHUTDOWN with the given
// reason to the extensions registered for it, SIGKILL for those still alive
// at the deadline, and the API server stops. The platform cannot be used
// afterwards; Close is still needed (and harmless).
func (p *Platform) Shutdown(ctx context.Context, reason string) (*ShutdownResult, error) {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if err := p.usable(); err != nil {
		return nil, fmt.Errorf("shutdown: %w", err)
	}
	start := time.Now()
	p.mu.Lock()
	env := p.env
	p.shut = true
	p.mu.Unlock()
	res := &ShutdownResult{}
	if env != nil {
		res.Killed = p.shutdownEnv(ctx, env, reason)
	}
	p.stopServer()
	res.Duration = time.Since(start)
	return res, ctx.Err()
}

// Close kills whatever is left (processes, dispatchers, the API server). It
// is idempotent and safe after any failure.
func (p *Platform) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	p.opMu.Lock()
	defer p.opMu.Unlock()
	p.closeWait.Do(func() {
		p.mu.Lock()
		env := p.env
		p.shut = true
		p.mu.Unlock()
		if env != nil {
			p.teardown(env)
		}
		p.stopServer()
		p.client.CloseIdleConnections()
	})
	return nil
}

// PostTelemetry delivers body, as is, to every telemetry subscriber as one
// POST (no retry), thawing the environment for the time it takes. It
// returns the first delivery error (non-2xx answer or connection error).
func (p *Platform) PostTelemetry(ctx context.Context, body []byte) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if err := p.usable(); err != nil {
		return fmt.Errorf("post telemetry: %w", err)
	}
	p.mu.Lock()
	env := p.env
	var subs []*subscriber
	if env != nil {
		subs = slices.Clone(env.subs)
	}
	frozen := env != nil && env.frozen
	p.mu.Unlock()
	if len(subs) == 0 {
		return errors.New("post telemetry: no telemetry subscriber")
	}
	if frozen {
		p.thaw(env)
		defer p.freeze(env)
	}
	dones := make([]chan error, len(subs))
	for i, s := range subs {
		dones[i] = make(chan error, 1)
		s.enqueue(item{raw: slices.Clone(body), done: dones[i]})
	}
	var errs []error
	for i, d := range dones {
		select {
		case err := <-d:
			if err != nil {
				errs = append(errs, fmt.Errorf("post telemetry to %s: %w", subs[i].ext, err))
			}
		case <-ctx.Done():
			return fmt.Errorf("post telemetry: %w", ctx.Err())
		case <-p.closed:
			return fmt.Errorf("post telemetry: %w", errClosed)
		}
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the counters.
func (p *Platform) Stats() Stats {
	c := &p.stats
	return Stats{
		Inits:              c.inits.Load(),
		Resets:             c.resets.Load(),
		Invocations:        c.invocations.Load(),
		FunctionLines:      c.functionLines.Load(),
		ExtensionLines:     c.extensionLines.Load(),
		RecordsQueued:      c.queued.Load(),
		RecordsDelivered:   c.delivered.Load(),
		RecordsDropped:     c.dropped.Load(),
		DropsReported:      c.dropsReported.Load(),
		RecordsUndelivered: c.undelivered.Load(),
		Posts:              c.posts.Load(),
		PostRetries:        c.postRetries.Load(),
		ExtensionsKilled:   c.killed.Load(),
	}
}

// ExtensionLines returns every line the extensions wrote (stdout and
// stderr), in order, across environments; at most 100,000 are kept.
func (p *Platform) ExtensionLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.extLines)
}

// ExtensionErrors returns the init/error and exit/error calls received.
func (p *Platform) ExtensionErrors() []ExtensionError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.extErrors)
}

// PIDs returns the process ids of the current environment's live
// processes: the extensions by name and the runtime as "runtime".
func (p *Platform) PIDs() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	if p.env == nil {
		return m
	}
	for _, pr := range p.env.procs() {
		if !pr.exited {
			m[pr.name] = pr.pid
		}
	}
	return m
}

// TelemetryDestinations returns, by extension name, the address each
// telemetry subscriber of the current environment is sent its POSTs at
// (sandbox.localdomain resolved to 127.0.0.1). Fault tests use it to reach
// a listener directly, at any phase, Shutdown included, which PostTelemetry
// cannot.
func (p *Platform) TelemetryDestinations() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]string{}
	if p.env == nil {
		return m
	}
	for _, s := range p.env.subs {
		m[s.ext] = s.sub.url
	}
	return m
}

// Signal sends sig to the process groups of the extensions of the current
// environment (fault tests: SIGSTOP, SIGKILL...). Note that Invoke thaws
// with SIGCONT unless NoFreeze is set.
func (p *Platform) Signal(sig os.Signal) {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.env == nil {
		return
	}
	for _, e := range p.env.exts {
		if e.proc != nil && !e.proc.exited {
			_ = syscall.Kill(-e.proc.pid, s)
		}
	}
}

func (p *Platform) usable() error {
	select {
	case <-p.closed:
		return errClosed
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return errors.New("platform is shut down")
	}
	return nil
}

func (p *Platform) stopServer() {
	// Handlers blocked on an event return when p.closed is closed (or
	// their environment ends); the server's Close does not wait for them.
	p.closeOnce.Do(func() { close(p.closed) })
	_ = p.srv.Close()
	<-p.serveDone
}

// bumpLocked wakes everything waiting in await. p.mu must be held.
func (p *Platform) bumpLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// await waits until cond (called with p.mu held) is true. It fails at the
// deadline (zero: none), when ctx is done or when the platform is closed.
func (p *Platform) await(ctx context.Context, deadline time.Time, cond func() bool) error {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	for {
		p.mu.Lock()
		ok := cond()
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-timeout:
			return errTimeout
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closed:
			return errClosed
		}
	}
}

// childEnv builds a child's environment: what Lambda sets, PATH and HOME
// from the parent, then cfg.Env. Extensions do not see the variables
// Lambda hides from them.
func (p *Platform) childEnv(runtime bool, bootstrap string) []string {
	var out []string
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	region := "us-east-1"
	for _, kv := range p.cfg.Env {
		if k, v, _ := strings.Cut(kv, "="); k == "AWS_REGION" && v != "" {
			region = v
		}
	}
	out = append(out,
		"AWS_LAMBDA_RUNTIME_API="+p.addr,
		"AWS_LAMBDA_FUNCTION_NAME="+p.cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION="+p.cfg.FunctionVersion,
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", p.cfg.MemoryMB),
		"AWS_REGION="+region,
		"AWS_DEFAULT_REGION="+region,
		"AWS_LAMBDA_INITIALIZATION_TYPE="+p.initType(),
		"TZ=:UTC",
	)
	if p.cfg.ManagedInstances {
		out = append(out, fmt.Sprintf("AWS_LAMBDA_MAX_CONCURRENCY=%d", p.cfg.MaxConcurrency))
	}
	if p.cfg.LogFormat == "JSON" {
		out = append(out, "AWS_LAMBDA_LOG_FORMAT=JSON")
	}
	if runtime {
		root := filepath.Dir(bootstrap)
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
		out = append(out,
			"_HANDLER="+p.cfg.Handler,
			"LAMBDA_TASK_ROOT="+root,
			"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+p.cfg.FunctionName,
			"AWS_LAMBDA_LOG_STREAM_NAME="+time.Now().UTC().Format("2006/01/02")+"/["+p.cfg.FunctionVersion+"]"+strings.ReplaceAll(newID(), "-", ""),
		)
	}
	for _, kv := range p.cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !runtime && hiddenFromExtensions(k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// hiddenFromExtensions tells the variables Lambda does not pass to extensions.
func hiddenFromExtensions(k string) bool {
	switch k {
	case "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_LOG_GROUP_NAME",
		"AWS_LAMBDA_LOG_STREAM_NAME", "AWS_EXECUTION_ENV":
		return true
	}
	return false
}

func (p *Platform) functionARN() string {
	region := "us-east-1"
	for _, kv := range p.cfg.Env {
		if k, v, _ := strings.Cut(kv, "="); k == "AWS_REGION" && v != "" {
			region = v
		}
	}
	arn := "arn:aws:lambda:" + region + ":" + p.cfg.AccountID + ":function:" + p.cfg.FunctionName
	if p.cfg.FunctionVersion != "$LATEST" {
		arn += ":" + p.cfg.FunctionVersion
	}
	return arn
}
