// Command sluice is the Lambda extension shipped in the layer as
// /opt/extensions/sluice. It diverts the function's logs from CloudWatch Logs
// to S3: see the repository's README.md for its configuration.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "logs" {
		os.Exit(logsMain(context.Background(), os.Args[2:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(run())
}

func run() int {
	start := time.Now()
	// One P in an on-demand environment: the function's vCPU share is
	// the extension's too, so a second P only adds idle threads spinning
	// for work and wake-ups between them (make bench: 20-25% less CPU per
	// invocation at 1-10 lines, ~0.8 ms less init, 5-9% more CPU at 1,000
	// lines per invocation); one core's pipeline
	// (~130 MB/s of logs) is far above what Lambda delivers. Managed
	// Instances, which serve many invocations at once on larger
	// instances, keep the runtime's default; GOMAXPROCS set by the user
	// wins everywhere.
	if os.Getenv("GOMAXPROCS") == "" && !extension.DetectManagedInstances(os.Getenv) {
		runtime.GOMAXPROCS(1)
	}
	level := new(slog.LevelVar)
	log := newLogger(level)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	runtimeAPI := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if runtimeAPI == "" {
		log.Error("AWS_LAMBDA_RUNTIME_API is not set: sluice runs only as a Lambda extension")
		return 1
	}
	// No timeout: /event/next blocks while the environment is idle.
	hc := &http.Client{}
	client := extension.NewClient(hc, runtimeAPI)

	cfg, cfgErr := extension.Load(os.Getenv)
	cfg.ManagedInstances = extension.DetectManagedInstances(os.Getenv)
	if cfgErr == nil {
		level.Set(cfg.LogLevel)
		// A user's own GOMEMLIMIT wins; otherwise the process is held to
		// the configured share of the function's memory.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(extension.GoMemoryLimit(cfg.MemoryLimitMB))
		}
	}
	if unknown := extension.UnknownVars(os.Environ()); len(unknown) > 0 {
		log.Warn("ignoring unknown SLUICE_ variables (typo?)", "vars", strings.Join(unknown, ","))
	}
	env, err := newEnvID()
	if err != nil {
		log.Error("init failed", "err", err)
		return 1
	}
	fallback := sinks.NewFallback(os.Stdout)
	buffering := telemetry.DefaultBuffering()
	if cfg.Flush == extension.FlushInvoke {
		buffering = telemetry.InvokeBuffering()
	}

	var runner *extension.Runner
	runner = &extension.Runner{
		Name:      filepath.Base(os.Args[0]),
		API:       client,
		Config:    cfg,
		ConfigErr: cfgErr,
		Fallback:  fallback,
		Getenv:    os.Getenv,
		Log:       log,
		Listen: func(addr string) (extension.Listener, error) {
			lis, err := telemetry.Listen(addr)
			if err != nil {
				return nil, err
			}
			lis.Logger = log
			// Lambda sends at most 2*maxBytes plus metadata in one POST.
			lis.MaxBody = int64(2*buffering.MaxBytes + 1<<20)
			return lis, nil
		},
		Subscribe: func(ctx context.Context, uri string) error {
			return telemetry.Subscribe(ctx, hc, runtimeAPI, client.ID(), telemetry.Subscription{
				SchemaVersion: telemetry.SchemaVersion,
				// Never "extension": sluice's own output would feed back into itself.
				Types:     []string{"platform", "function"},
				Buffering: buffering,
				URI:       uri,
			})
		},
		OpenSinks: func(ctx context.Context, reg extension.Registration) ([]extension.Delivery, error) {
			// runner.Eager is known here: registration comes first.
			return openSinks(ctx, cfg, reg, env, fallback, log, runner.Eager())
		},
	}
	if err := runner.Init(ctx); err != nil {
		if !errors.As(err, new(*extension.InitError)) {
			log.Error("init failed", "err", err)
		}
		return 1
	}
	flush := cfg.Flush
	if runner.Eager() {
		// No INVOKE events: batches are uploaded as their size or age
		// bound seals them, whatever SLUICE_FLUSH says.
		flush = "eager"
	}
	log.Info("ready", "version", version, "sink", cfg.SinkNames(), "env", env, "flush", flush, "managed_instances", cfg.ManagedInstances, "init_ms", float64(time.Since(start).Microseconds())/1000)
	if err := runner.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// openSinks builds one delivery path per configured sink: the sink itself,
// its spill and the fallback, wrapped in a sinks.Durable. The archive (S3 or
// a directory) comes first; each OpenSearch endpoint gets its own path, so a
// slow cluster never holds back the archive. eager keeps an upload window
// open at all times, for environments that are never frozen.
func openSinks(ctx context.Context, cfg extension.Config, reg extension.Registration, env string, fallback sinks.Sink, log *slog.Logger, eager bool) ([]extension.Delivery, error) {
	function := firstNonEmpty(reg.FunctionName, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	var out []extension.Delivery
	var archive *sinks.Durable
	if cfg.Sink.Scheme != "" {
		layout := sinks.Layout{Function: function, Env: env}
		var sink sinks.Sink
		hint := func(error) string { return "check the SLUICE_SINK directory" }
		switch cfg.Sink.Scheme {
		case "s3":
			layout.Prefix = cfg.Sink.Prefix
			s3c, err := sinks.NewLazyS3Client(os.Getenv("AWS_REGION"))
			if err != nil {
				return nil, fmt.Errorf("SLUICE_SINK=%q: %w", cfg.Sink, err)
			}
			sink = sinks.NewS3(s3c, sinks.S3Options{
				Bucket:              cfg.Sink.Bucket,
				Layout:              layout,
				ExpectedBucketOwner: cfg.S3BucketOwner,
				KMSKeyID:            cfg.S3KMSKeyID,
			})
			hint = sinks.S3Hint
		case "file":
			sink = sinks.NewDir(cfg.Sink.Dir, layout)
		}
		d, err := durable(cfg, cfg.Sink.Scheme, cfg.SpillDir, sink, hint, env, fallback, log, eager)
		if err != nil {
			return nil, err
		}
		archive = d
		out = append(out, d)
	}
	if len(cfg.OpenSearch) == 0 {
		return out, nil
	}
	// Items OpenSearch refuses for good (mapping errors) are archived as
	// sluice.deadletter rows, or written to stdout without an archive.
	var deadLetter sinks.Sink = fallback
	if archive != nil {
		deadLetter = orFallback{primary: archive, fallback: fallback}
	}
	var feeders []*sinks.Durable // the paths that dead-letter into the archive
	// The Lambda environment's region, credentials and endpoints, without
	// the SDK's configuration loader (see sinks.AWSConfigFromEnv).
	awsCfg, err := sinks.AWSConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("SLUICE_SINK: load aws config: %w", err)
	}
	for i, t := range cfg.OpenSearch {
		var sm sinks.GetSecretValueAPI
		if t.Auth == sinks.AuthSecret {
			sm = secretsmanager.NewFromConfig(awsCfg)
		}
		auth, err := sinks.NewOpenSearchAuth(ctx, t, awsCfg, sm)
		if err != nil {
			return nil, fmt.Errorf("SLUICE_SINK=%q: %w", t.Endpoint, err)
		}
		o := t.Options()
		o.Function, o.Env, o.Auth, o.DeadLetter, o.Log = function, env, auth, deadLetter, log
		sink, err := sinks.NewOpenSearch(o)
		if err != nil {
			return nil, fmt.Errorf("SLUICE_SINK=%q: %w", t.Endpoint, err)
		}
		name := "opensearch"
		if i > 0 {
			name = fmt.Sprintf("opensearch%d", i+1)
		}
		spillDir := cfg.SpillDir
		if archive != nil || i > 0 {
			spillDir = filepath.Join(cfg.SpillDir, name)
		}
		d, err := durable(cfg, name, spillDir, sink, func(error) string {
			return "check the endpoint, the role's es:ESHttpPost/aoss:APIAccessAll permission, or the secret"
		}, env, fallback, log, eager)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		feeders = append(feeders, d)
	}
	if archive != nil {
		out[0] = archivePath{Durable: archive, feeders: feeders}
	}
	return out, nil
}

// archivePath is the archive's delivery path when OpenSearch paths
// dead-letter into it. At SHUTDOWN the runner closes every path at once;
// the archive, usually done first, would leave the dead-letters of a path
// still indexing to stdout. Its Close delivers what waits (leaving the
// time writing it to the fallback would take, as Durable.Close does),
// waits for those paths to close (within ctx), then closes, delivering
// their dead-letters.
type archivePath struct {
	*sinks.Durable
	feeders []*sinks.Durable
}

func (a archivePath) Close(ctx context.Context) error {
	window := ctx
	if deadline, ok := ctx.Deadline(); ok {
		keep := time.Duration(a.Stats().WaitingRawBytes * int64(time.Second) / sinks.DefaultFallbackRate)
		var cancel context.CancelFunc
		window, cancel = context.WithDeadline(ctx, deadline.Add(-keep))
		defer cancel()
	}
	a.Deliver(window, nil)
	for _, f := range a.feeders {
		select {
		case <-f.Done():
		case <-ctx.Done():
		}
	}
	return a.Durable.Close(ctx)
}

// durable wraps sink in its delivery path, with a spill in dir unless
// spilling is off.
func durable(cfg extension.Config, name, dir string, sink sinks.Sink, hint func(error) string, env string, fallback sinks.Sink, log *slog.Logger, eager bool) (*sinks.Durable, error) {
	var spill *sinks.Spill
	if cfg.SpillMaxBytes > 0 {
		var err error
		spill, err = sinks.OpenSpill(dir, int64(cfg.SpillMaxBytes), env)
		if err != nil {
			return nil, fmt.Errorf("SLUICE_SPILL_DIR=%q: %w", cfg.SpillDir, err)
		}
		if n := spill.Len(); n > 0 {
			log.Info("found batches spilled by an earlier process; they will be delivered first", "sink", name, "batches", n, "bytes", spill.Bytes())
		}
	}
	return sinks.NewDurable(sink, sinks.DurableOptions{
		Name:     name,
		Spill:    spill,
		Fallback: fallback,
		MaxHeld:  cfg.BufferMaxBytes,
		Hint:     hint,
		Eager:    eager,
		// At SHUTDOWN, uploads stop in time for what waits to reach stdout.
		FallbackRate: sinks.DefaultFallbackRate,
		Log:          log,
	}), nil
}

// orFallback writes to primary, and to fallback when primary no longer
// takes batches (it was closed at SHUTDOWN).
type orFallback struct{ primary, fallback sinks.Sink }

func (o orFallback) Write(ctx context.Context, b *buffer.Batch) error {
	if err := o.primary.Write(ctx, b); err != nil {
		return o.fallback.Write(ctx, b)
	}
	return nil
}

func (o orFallback) Close(context.Context) error { return nil }

// newLogger logs to stderr, in JSON when the function uses Lambda's JSON log
// format so that CloudWatch (if the role still allows it) can parse it.
func newLogger(level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(os.Getenv("AWS_LAMBDA_LOG_FORMAT"), "JSON") {
		h = slog.NewJSONHandler(os.Stderr, opts)
	} else {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h).With("extension", "sluice")
}

// newEnvID names this execution environment in object keys. Lambda exposes
// no id of its own to extensions; 48 random bits make collisions between the
// environments of one function writing in the same second negligible.
func newEnvID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("environment id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
