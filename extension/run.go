package extension

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// Timing of the lifecycle. Lambda gives extensions about 2 s at SHUTDOWN
// (less the runtime's share) and kills them at deadlineMs.
const (
	// invokeMargin is kept free before an invocation's deadline: uploads
	// still running then are abandoned (the batch is kept and retried) so
	// that sluice never makes the function time out.
	invokeMargin = 200 * time.Millisecond
	// shutdownMargin is kept free before the SHUTDOWN deadline to write what
	// was not delivered to the fallback and exit before SIGKILL.
	shutdownMargin = 300 * time.Millisecond
	// quietWindow is how long the listener must have received nothing at
	// SHUTDOWN before the last telemetry is taken as delivered.
	quietWindow = 100 * time.Millisecond
	// maxDrain bounds the wait for the last telemetry at SHUTDOWN.
	maxDrain = 500 * time.Millisecond
)

// Telemetry is the listener as the run loop sees it.
type Telemetry interface {
	Serve(ctx context.Context, out chan<- []buffer.Record) error
	LastPost() time.Time
}

// Runner is the extension's main loop after registration.
type Runner struct {
	Config    Config
	Client    *Client
	Meta      buffer.Meta
	Sink      sinks.Sink
	Fallback  sinks.Sink // stdout: the last resort for batches that cannot be delivered
	Telemetry Telemetry  // nil when the platform refused the subscription
	Log       *slog.Logger

	c       counters
	pending *buffer.Batch // a batch whose upload failed; retried first
}

// Run serves /event/next until SHUTDOWN (or ctx ends, which is treated as a
// shutdown with a short deadline) and returns after the final flush.
func (r *Runner) Run(ctx context.Context) error {
	if r.Telemetry == nil {
		return r.runNoop(ctx)
	}
	recs := make(chan []buffer.Record, 64)
	lctx, stopListener := context.WithCancel(context.WithoutCancel(ctx))
	defer stopListener()
	served := make(chan error, 1)
	go func() { served <- r.Telemetry.Serve(lctx, recs) }()

	p := newPipeline(recs,
		buffer.NewBatcher(r.Meta, buffer.Limits{MaxBytes: r.Config.BatchMaxBytes, MaxAge: r.Config.BatchMaxAge}, time.Now),
		buffer.NewQueue(r.Config.BufferMaxBytes),
		r.toFallback, &r.c)
	pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipeline()
	pipelineDone := make(chan struct{})
	go func() { defer close(pipelineDone); p.run(pctx) }()

	defer func() {
		stopListener()
		<-served
		stopPipeline()
		<-pipelineDone
	}()

	for {
		ev, err := r.Client.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				r.Log.Warn("stopped by signal: shutting down", "budget", "1.5s")
				r.shutdown(p, time.Now().Add(1500*time.Millisecond))
				return nil
			}
			r.shutdown(p, time.Now().Add(1500*time.Millisecond))
			return err
		}
		deadline := time.UnixMilli(ev.DeadlineMs)
		switch strings.ToUpper(ev.EventType) {
		case Invoke:
			r.invoke(ctx, p, ev.RequestID, deadline)
		case Shutdown:
			r.Log.Info("shutdown", "reason", ev.ShutdownReason, "budget_ms", time.Until(deadline).Milliseconds())
			r.shutdown(p, deadline)
			return nil
		default:
			r.Log.Warn("unknown event type, ignored", "event_type", ev.EventType)
		}
	}
}

// runNoop keeps the function working when telemetry is unavailable (local
// emulators answer the subscription with 202 Telemetry.NotSupported).
func (r *Runner) runNoop(ctx context.Context) error {
	for {
		ev, err := r.Client.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if strings.EqualFold(ev.EventType, Shutdown) {
			return nil
		}
	}
}

// invoke uploads what is due while the function runs, and returns when the
// extension may call /event/next.
func (r *Runner) invoke(ctx context.Context, p *pipeline, requestID string, deadline time.Time) {
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-invokeMargin))
	defer cancel()
	force := false
	if r.Config.Flush == FlushInvoke {
		select {
		case <-p.runtimeDone(ctx, requestID):
			force = true
		case <-ctx.Done():
		}
	}
	r.upload(ctx, p, force)
}

// upload writes sealed batches until none is left, one fails, or ctx ends.
// A failed batch stays pending and is retried first next time.
func (r *Runner) upload(ctx context.Context, p *pipeline, force bool) (ok bool) {
	for {
		b := r.pending
		r.pending = nil
		if b == nil {
			b = p.take(ctx, force)
		}
		if b == nil {
			return true
		}
		start := time.Now()
		if err := r.Sink.Write(ctx, b); err != nil {
			r.pending = b
			r.c.uploadErrors.Add(1)
			r.Log.Warn("upload failed; batch kept for retry", "seq", b.Seq, "bytes", len(b.Data), "err", err)
			return false
		}
		r.c.uploaded.Add(1)
		r.c.uploadedLines.Add(int64(b.Lines))
		r.c.rawBytes.Add(int64(b.RawBytes))
		r.c.storedBytes.Add(int64(len(b.Data)))
		r.Log.Debug("uploaded", "seq", b.Seq, "records", b.Records, "bytes", len(b.Data), "ms", time.Since(start).Milliseconds())
	}
}

// shutdown takes the last telemetry, delivers everything it can before
// deadline minus a margin, and sends the rest to the fallback.
func (r *Runner) shutdown(p *pipeline, deadline time.Time) {
	if deadline.IsZero() || time.Until(deadline) > 10*time.Second {
		deadline = time.Now().Add(2 * time.Second)
	}
	hard := deadline.Add(-shutdownMargin)
	drainUntil := time.Now().Add(maxDrain)
	if limit := hard.Add(-maxDrain); limit.Before(drainUntil) {
		drainUntil = limit
	}
	r.awaitQuiet(drainUntil)

	ctx, cancel := context.WithDeadline(context.Background(), hard)
	delivered := r.upload(ctx, p, true)
	cancel()

	if !delivered {
		// Whatever is left: the failed batch, the queue and the open batch.
		if r.pending != nil {
			r.toFallback(r.pending)
			r.pending = nil
		}
		fctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.do(fctx, func() {
			p.seal()
			for b := p.queue.Pop(); b != nil; b = p.queue.Pop() {
				r.toFallback(b)
			}
		})
		cancel()
	}
	r.logTotals()
}

// awaitQuiet waits until the listener has received nothing for quietWindow,
// or until limit.
func (r *Runner) awaitQuiet(limit time.Time) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(limit) {
		last := r.Telemetry.LastPost()
		if time.Since(last) >= quietWindow {
			return
		}
		<-tick.C
	}
}

// toFallback writes a batch to the fallback. It is the last resort, so a
// failure here is the one place a batch is lost: it is logged at Error with
// its size so the loss is visible.
func (r *Runner) toFallback(b *buffer.Batch) {
	r.c.fallback.Add(1)
	r.c.fallbackLines.Add(int64(b.Lines))
	if err := r.Fallback.Write(context.Background(), b); err != nil {
		r.Log.Error("fallback failed: batch lost", "seq", b.Seq, "records", b.Records, "lines", b.Lines, "err", err)
		return
	}
	r.Log.Error("batch not delivered: written to stdout as fallback", "seq", b.Seq, "records", b.Records, "lines", b.Lines)
}

func (r *Runner) logTotals() {
	c := &r.c
	r.Log.Info("totals",
		"records", c.records.Load(),
		"lines", c.lines.Load(),
		"malformed", c.malformed.Load(),
		"batches_sealed", c.sealed.Load(),
		"batches_uploaded", c.uploaded.Load(),
		"lines_uploaded", c.uploadedLines.Load(),
		"raw_bytes", c.rawBytes.Load(),
		"stored_bytes", c.storedBytes.Load(),
		"upload_errors", c.uploadErrors.Load(),
		"fallback_batches", c.fallback.Load(),
		"fallback_lines", c.fallbackLines.Load(),
		"evicted_batches", c.evicted.Load(),
	)
}
