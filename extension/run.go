package extension

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// Timing of the lifecycle. Lambda gives extensions about 2 s at SHUTDOWN
// (less the runtime's share) and kills them at deadlineMs.
const (
	// invokeMargin is kept free before an invocation's deadline: uploads
	// still running then are abandoned (the batch is spilled and retried)
	// so that sluice never makes the function time out.
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
	Spill     *Spill     // nil when spilling is off
	Telemetry Telemetry  // nil when the platform refused the subscription
	Log       *slog.Logger
	// Retryable says whether a sink error may succeed later (default
	// sinks.Retryable).
	Retryable func(error) bool

	c       counters
	backoff backoff
	pending *buffer.Batch // without a spill: the batch whose upload failed, retried first
}

// Run serves /event/next until SHUTDOWN (or ctx ends, which is treated as a
// shutdown with a short deadline) and returns after the final flush.
func (r *Runner) Run(ctx context.Context) error {
	if r.Retryable == nil {
		r.Retryable = sinks.Retryable
	}
	if r.Telemetry == nil {
		return r.runNoop(ctx)
	}
	// A few POSTs' worth: the pipeline keeps up with Lambda's rate, and a
	// deeper queue would only hold more decoded records in memory.
	recs := make(chan []buffer.Record, 4)
	lctx, stopListener := context.WithCancel(context.WithoutCancel(ctx))
	defer stopListener()
	served := make(chan error, 1)
	go func() { served <- r.Telemetry.Serve(lctx, recs) }()

	p := newPipeline(recs,
		buffer.NewBatcher(r.Meta, buffer.Limits{MaxBytes: r.Config.BatchMaxBytes, MaxAge: r.Config.BatchMaxAge, Format: r.Config.Format}, time.Now),
		buffer.NewQueue(r.Config.BufferMaxBytes),
		r.evict, &r.c)
	p.stager = buffer.NewStager(r.Config.Policy, r.Config.Redactor)
	p.platform = r.Config.Platform
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
	done := p.runtimeDone(ctx, requestID)
	if r.Config.Flush == FlushInvoke {
		select {
		case <-done:
		case <-ctx.Done():
		}
		r.upload(ctx, p, true, nil)
		return
	}
	// In the background mode uploads overlap the function's own run. Once
	// it has finished, every further upload would be billed duration: after
	// one upload, stop there and leave the rest to the next invocations.
	r.upload(ctx, p, false, done)
}

// upload delivers spilled batches (oldest first), then sealed ones, until
// none is left, one fails, or ctx ends. While the sink is backing off after
// a failure, sealed batches go to the spill instead, so that an outage
// costs disk rather than memory. It reports whether everything was delivered.
//
// Once stop is closed, no new upload starts after the first one; a nil stop
// never closes.
func (r *Runner) upload(ctx context.Context, p *pipeline, force bool, stop <-chan struct{}) bool {
	for n := 0; ; n++ {
		if n > 0 && closed(stop) {
			return false
		}
		if !r.backoff.ready(time.Now()) {
			r.spillQueued(ctx, p, force)
			return false
		}
		if ctx.Err() != nil {
			return false
		}
		b, spilled := r.nextBatch(ctx, p, force)
		if b == nil {
			return true
		}
		start := time.Now()
		err := r.Sink.Write(ctx, b)
		if err != nil {
			// Running out of the invocation's time is ours, not the sink's
			// fault: keep the batch, but do not back off.
			if ctx.Err() == nil {
				r.failed(b, err)
			} else {
				r.Log.Debug("upload cut short by the deadline; batch kept", "seq", b.Seq, "err", err)
			}
			if !spilled {
				r.park(b)
			}
			return false
		}
		r.backoff = backoff{}
		if spilled {
			r.Spill.Remove(b)
			r.c.replayed.Add(1)
		}
		r.c.uploaded.Add(1)
		r.c.uploadedLines.Add(int64(b.Lines))
		r.c.rawBytes.Add(int64(b.RawBytes))
		r.c.storedBytes.Add(int64(len(b.Data)))
		r.Log.Debug("uploaded", "seq", b.Seq, "records", b.Records, "bytes", len(b.Data), "ms", time.Since(start).Milliseconds())
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// nextBatch picks what to upload next: a batch that failed before, then the
// oldest spilled one, then the oldest sealed one.
func (r *Runner) nextBatch(ctx context.Context, p *pipeline, force bool) (b *buffer.Batch, spilled bool) {
	if r.pending != nil {
		b, r.pending = r.pending, nil
		return b, false
	}
	if r.Spill != nil {
		for r.Spill.Len() > 0 {
			b, err := r.Spill.Oldest()
			if err == nil {
				return b, true
			}
			r.Log.Error("spilled batch unreadable: lost", "err", err)
			r.c.lostBatches.Add(1)
		}
	}
	return p.take(ctx, force), false
}

// failed records an upload failure and sets when the sink is tried again.
func (r *Runner) failed(b *buffer.Batch, err error) {
	r.c.uploadErrors.Add(1)
	retryable := r.Retryable(err)
	wait := r.backoff.fail(time.Now(), retryable)
	if retryable {
		r.Log.Warn("upload failed; will retry", "seq", b.Seq, "bytes", len(b.Data), "retry_in", wait.Round(time.Millisecond).String(), "err", err)
		return
	}
	// A permanent error needs a person: say it once per distinct error,
	// clearly, and probe rarely instead of retrying in a storm.
	msg := err.Error()
	if msg != r.backoff.lastPermanent {
		r.backoff.lastPermanent = msg
		r.Log.Error("upload refused: fix the configuration or the role; batches are kept (spill, then stdout) meanwhile",
			"hint", hint(err), "retry_in", wait.Round(time.Second).String(), "err", err)
	}
}

// park keeps a batch that cannot be uploaded now: on disk when spilling is
// on, else in memory (one batch); what does not fit goes to the fallback.
func (r *Runner) park(b *buffer.Batch) {
	if r.Spill == nil {
		if r.pending != nil && r.pending != b {
			r.toFallback(r.pending)
		}
		r.pending = b
		return
	}
	r.spillOrFallback(b)
}

// evict takes a batch pushed out of memory by the buffer cap. It runs on
// the pipeline's goroutine, so it touches only what is safe to share: the
// spill, the fallback and the counters.
func (r *Runner) evict(b *buffer.Batch) {
	if r.Spill == nil {
		r.toFallback(b)
		return
	}
	r.spillOrFallback(b)
}

// spillOrFallback writes b to the spill, and what the spill cannot hold to
// the fallback.
func (r *Runner) spillOrFallback(b *buffer.Batch) {
	evicted, err := r.Spill.Put(b)
	if err != nil {
		r.Log.Error("spill failed", "seq", b.Seq, "err", err)
		r.toFallback(b)
	} else {
		r.c.spilled.Add(1)
	}
	for _, old := range evicted {
		r.c.spillEvicted.Add(1)
		r.toFallback(old)
	}
}

// spillQueued moves sealed batches out of memory while the sink is down.
func (r *Runner) spillQueued(ctx context.Context, p *pipeline, force bool) {
	if r.Spill == nil {
		return
	}
	for b := p.take(ctx, force); b != nil; b = p.take(ctx, force) {
		r.park(b)
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
	// The outcome of invocations still staged will not come now.
	fctx, fcancel := context.WithDeadline(context.Background(), hard)
	p.do(fctx, p.finish)
	fcancel()

	// The last chance: try once more even while backing off from a
	// retryable error; a permanent one will not have healed.
	if !r.backoff.permanent {
		r.backoff.until = time.Time{}
	}
	ctx, cancel := context.WithDeadline(context.Background(), hard)
	delivered := r.upload(ctx, p, true, nil)
	cancel()

	if !delivered {
		// Oldest first: what failed, what was spilled, what is queued.
		if r.pending != nil {
			r.toFallback(r.pending)
			r.pending = nil
		}
		for r.Spill != nil && r.Spill.Len() > 0 {
			b, err := r.Spill.Oldest()
			if err != nil {
				r.Log.Error("spilled batch unreadable: lost", "err", err)
				r.c.lostBatches.Add(1)
				continue
			}
			r.toFallback(b)
			r.Spill.Remove(b)
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
		if time.Since(r.Telemetry.LastPost()) >= quietWindow {
			return
		}
		<-tick.C
	}
}

// toFallback writes a batch to the fallback. It is the last resort, so a
// failure here is the one place a batch is lost: it is logged at Error with
// its size so the loss is visible.
func (r *Runner) toFallback(b *buffer.Batch) {
	if err := r.Fallback.Write(context.Background(), b); err != nil {
		r.c.lostBatches.Add(1)
		r.Log.Error("fallback failed: batch lost", "seq", b.Seq, "records", b.Records, "lines", b.Lines, "err", err)
		return
	}
	r.c.fallback.Add(1)
	r.c.fallbackLines.Add(int64(b.Lines))
	r.Log.Error("batch not delivered: written to stdout as fallback", "seq", b.Seq, "records", b.Records, "lines", b.Lines)
}

func (r *Runner) logTotals() {
	c := &r.c
	r.Log.Info("totals",
		"records", c.records.Load(),
		"lines", c.lines.Load(),
		"malformed", c.malformed.Load(),
		"platform_events_skipped", c.platformSkip.Load(),
		"platform_dropped_records", c.platformDropped.Load(),
		"batches_sealed", c.sealed.Load(),
		"batches_uploaded", c.uploaded.Load(),
		"lines_uploaded", c.uploadedLines.Load(),
		"raw_bytes", c.rawBytes.Load(),
		"stored_bytes", c.storedBytes.Load(),
		"upload_errors", c.uploadErrors.Load(),
		"batches_spilled", c.spilled.Load(),
		"batches_replayed", c.replayed.Load(),
		"batches_evicted_memory", c.evicted.Load(),
		"batches_evicted_spill", c.spillEvicted.Load(),
		"fallback_batches", c.fallback.Load(),
		"fallback_lines", c.fallbackLines.Load(),
		"lost_batches", c.lostBatches.Load(),
	)
}

// backoff spaces out attempts after failures: exponential with full jitter
// for retryable errors, and slow probes for permanent ones (a fixed role or
// bucket policy heals them without a restart).
type backoff struct {
	failures      int
	until         time.Time
	permanent     bool
	lastPermanent string
}

const (
	backoffBase      = 500 * time.Millisecond
	backoffMax       = 30 * time.Second
	permanentBackoff = 5 * time.Minute
)

func (b *backoff) ready(now time.Time) bool { return !now.Before(b.until) }

func (b *backoff) fail(now time.Time, retryable bool) time.Duration {
	b.failures++
	b.permanent = !retryable
	var d time.Duration
	if retryable {
		ceiling := backoffBase << min(b.failures-1, 16)
		ceiling = min(ceiling, backoffMax)
		d = ceiling/2 + rand.N(ceiling/2+1)
	} else {
		d = permanentBackoff
	}
	b.until = now.Add(d)
	return d
}

// hint turns the usual permanent S3 refusals into what to change.
func hint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "AccessDenied"), strings.Contains(msg, "StatusCode: 403"):
		return "the function's role needs s3:PutObject on the SLUICE_SINK prefix (and kms:GenerateDataKey with SLUICE_S3_KMS_KEY_ID)"
	case strings.Contains(msg, "NoSuchBucket"):
		return "the bucket in SLUICE_SINK does not exist (or is in another region)"
	case strings.Contains(msg, "InvalidAccessKeyId"), strings.Contains(msg, "SignatureDoesNotMatch"), strings.Contains(msg, "ExpiredToken"):
		return "the credentials were refused: check the execution role"
	case errors.Is(err, sinks.ErrClosed):
		return "the sink was closed"
	}
	return "see the error"
}
