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
	name := filepath.Base(os.Args[0])

	cfg, cfgErr := extension.Load(os.Getenv)
	client, reg, err := extension.Register(ctx, hc, runtimeAPI, name, []string{extension.Invoke, extension.Shutdown})
	if err != nil {
		log.Error("cannot register with the Extensions API", "err", err)
		return 1
	}
	fail := func(errType string, err error) int {
		log.Error("init failed", "error_type", errType, "err", err)
		if rerr := client.InitError(ctx, errType, err.Error()); rerr != nil {
			log.Error("cannot report the init error", "err", rerr)
		}
		return 1
	}
	if cfgErr != nil {
		return fail("Extension.ConfigInvalid", cfgErr)
	}
	level.Set(cfg.LogLevel)
	// A user's own GOMEMLIMIT wins; otherwise the heap is held to the
	// configured share of the function's memory.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMB) << 20)
	}
	if unknown := extension.UnknownVars(os.Environ()); len(unknown) > 0 {
		log.Warn("ignoring unknown SLUICE_ variables (typo?)", "vars", strings.Join(unknown, ","))
	}

	meta := buffer.Meta{
		Function: firstNonEmpty(reg.FunctionName, os.Getenv("AWS_LAMBDA_FUNCTION_NAME")),
		Version:  firstNonEmpty(reg.FunctionVersion, os.Getenv("AWS_LAMBDA_FUNCTION_VERSION")),
	}
	env, err := newEnvID()
	if err != nil {
		return fail("Extension.InitFailed", err)
	}
	layout := sinks.Layout{Function: meta.Function, Env: env}

	var sink sinks.Sink
	switch cfg.Sink.Scheme {
	case "s3":
		layout.Prefix = cfg.Sink.Prefix
		s3c, err := sinks.NewS3Client(ctx, os.Getenv("AWS_REGION"))
		if err != nil {
			return fail("Extension.SinkInvalid", fmt.Errorf("SLUICE_SINK=%q: %w", cfg.Sink, err))
		}
		sink = sinks.NewS3(s3c, sinks.S3Options{
			Bucket:              cfg.Sink.Bucket,
			Layout:              layout,
			ExpectedBucketOwner: cfg.S3BucketOwner,
			KMSKeyID:            cfg.S3KMSKeyID,
		})
	case "file":
		sink = sinks.NewDir(cfg.Sink.Dir, layout)
	}
	defer sink.Close(context.Background())

	var spill *extension.Spill
	if cfg.SpillMaxBytes > 0 {
		spill, err = extension.OpenSpill(cfg.SpillDir, int64(cfg.SpillMaxBytes), env)
		if err != nil {
			return fail("Extension.SpillInvalid", fmt.Errorf("SLUICE_SPILL_DIR=%q: %w", cfg.SpillDir, err))
		}
		if n := spill.Len(); n > 0 {
			log.Info("found batches spilled by an earlier process; they will be delivered first", "batches", n, "bytes", spill.Bytes())
		}
	}

	runner := &extension.Runner{
		Spill:    spill,
		Config:   cfg,
		Client:   client,
		Meta:     meta,
		Sink:     sink,
		Fallback: sinks.NewFallback(os.Stdout),
		Log:      log,
	}

	lis, err := telemetry.Listen(cfg.ListenAddr)
	if err != nil {
		return fail("Extension.ListenFailed", fmt.Errorf("SLUICE_LISTEN_ADDR=%q: %w", cfg.ListenAddr, err))
	}
	buffering := telemetry.DefaultBuffering()
	lis.Logger = log
	// Lambda sends at most 2*maxBytes plus metadata in one POST.
	lis.MaxBody = int64(2*buffering.MaxBytes + 1<<20)
	err = telemetry.Subscribe(ctx, hc, runtimeAPI, client.ID(), telemetry.Subscription{
		SchemaVersion: telemetry.SchemaVersion,
		// Never "extension": sluice's own output would feed back into itself.
		Types:     []string{"platform", "function"},
		Buffering: buffering,
		URI:       lis.URI(),
	})
	switch {
	case errors.Is(err, telemetry.ErrNotSupported):
		log.Warn("the Telemetry API is not supported here (a local emulator?): sluice will archive nothing and stays out of the way", "err", err)
		lis.Close()
	case err != nil:
		return fail("Extension.SubscribeFailed", err)
	default:
		runner.Telemetry = lis
	}

	log.Info("ready", "sink", cfg.Sink.String(), "env", env, "flush", cfg.Flush, "init_ms", float64(time.Since(start).Microseconds())/1000)
	if err := runner.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
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
