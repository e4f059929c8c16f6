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
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/extension"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

func main() {
	os.Exit(run())
}

func run() int {
	start := time.Now()
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
	if cfgErr == nil {
		level.Set(cfg.LogLevel)
		// A user's own GOMEMLIMIT wins; otherwise the heap is held to the
		// configured share of the function's memory.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(int64(cfg.MemoryLimitMB) << 20)
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

	runner := &extension.Runner{
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
			return openSinks(ctx, cfg, reg, env, fallback, log)
		},
	}
	if err := runner.Init(ctx); err != nil {
		if !errors.As(err, new(*extension.InitError)) {
			log.Error("init failed", "err", err)
		}
		return 1
	}
	log.Info("ready", "sink", cfg.Sink.String(), "env", env, "flush", cfg.Flush, "init_ms", float64(time.Since(start).Microseconds())/1000)
	if err := runner.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// openSinks builds the delivery path of the configured sink: the sink
// itself, its spill and the fallback, wrapped in a sinks.Durable.
func openSinks(ctx context.Context, cfg extension.Config, reg extension.Registration, env string, fallback sinks.Sink, log *slog.Logger) ([]extension.Delivery, error) {
	function := firstNonEmpty(reg.FunctionName, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
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
	default:
		return nil, fmt.Errorf("SLUICE_SINK=%q: unsupported scheme", cfg.Sink)
	}
	var spill *sinks.Spill
	if cfg.SpillMaxBytes > 0 {
		var err error
		spill, err = sinks.OpenSpill(cfg.SpillDir, int64(cfg.SpillMaxBytes), env)
		if err != nil {
			return nil, fmt.Errorf("SLUICE_SPILL_DIR=%q: %w", cfg.SpillDir, err)
		}
		if n := spill.Len(); n > 0 {
			log.Info("found batches spilled by an earlier process; they will be delivered first", "batches", n, "bytes", spill.Bytes())
		}
	}
	d := sinks.NewDurable(sink, sinks.DurableOptions{
		Name:     cfg.Sink.Scheme,
		Spill:    spill,
		Fallback: fallback,
		MaxHeld:  cfg.BufferMaxBytes,
		Hint:     hint,
		Log:      log,
	})
	return []extension.Delivery{d}, nil
}

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
