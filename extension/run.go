package extension

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

// Timing of the lifecycle. Lambda gives extensions about 2 s at SHUTDOWN
// (less the runtime's share) and kills them at deadlineMs.
const (
	// invokeMargin is kept free before an invocation's deadline: sluice
	// is back in /event/next by then whatever its uploads do (one still
	// running goes on in the background), so that it never makes the
	// function time out.
	invokeMargin = 200 * time.Millisecond
	// yieldShare and minYield bound how long an upload running when the
	// function's runtime finishes may hold the invocation: a quarter of the
	// invocation so far, at least 10 ms. Past that the upload goes on in the
	// background and into the next invocation, instead of adding its whole
	// length to this one's billed duration (on a small function's CPU a
	// 4 MiB batch takes hundreds of ms).
	yieldShare = 4
	minYield   = 10 * time.Millisecond
	// shutdownMargin is kept free before the SHUTDOWN deadline to write what
	// was not delivered to the fallback and exit before SIGKILL.
	shutdownMargin = 300 * time.Millisecond
	// quietWindow is how long the listener must have received nothing at
	// SHUTDOWN before the last telemetry is taken as delivered.
	quietWindow = 100 * time.Millisecond
	// maxDrain bounds the wait for the last telemetry at SHUTDOWN.
	maxDrain = 500 * time.Millisecond
	// signalBudget is the shutdown budget when sluice is stopped by a
	// signal or loses the Extensions API, which give no deadline.
	signalBudget = 1500 * time.Millisecond
	// defaultShutdownBudget replaces a SHUTDOWN deadline that is missing or
	// implausibly far away.
	defaultShutdownBudget = 2 * time.Second
	// maxShutdownBudget is the longest SHUTDOWN deadline taken as given.
	maxShutdownBudget = 10 * time.Second
)

// API is the Extensions API as the Runner uses it (*Client).
type API interface {
	Register(ctx context.Context, name string, events []EventType) (Registration, error)
	Next(ctx context.Context) (Event, error)
	InitError(ctx context.Context, errType, msg string) error
}

// Listener is the telemetry listener as the Runner uses it
// (*telemetry.Listener).
type Listener interface {
	URI() string
	Serve(ctx context.Context, out chan<- []buffer.Record) error
	LastPost() time.Time
	Stats() telemetry.Stats
	Close() error
}

// Delivery is one sink's durable delivery path (*sinks.Durable).
type Delivery interface {
	Name() string
	Run(ctx context.Context)
	Write(ctx context.Context, b *buffer.Batch) error
	Deliver(ctx context.Context, stop <-chan struct{}) sinks.DeliverResult
	Close(ctx context.Context) error
	Stats() sinks.DurableStats
}

// InitError is an initialisation failure reported to Lambda through
// /init/error; Type is the error type the platform shows
// (Extension.ConfigInvalid, ...).
type InitError struct {
	Type string
	Err  error
}

func (e *InitError) Error() string { return e.Type + ": " + e.Err.Error() }
func (e *InitError) Unwrap() error { return e.Err }

// Runner is the extension's lifecycle: registration, the telemetry
// subscription, the invoke/shutdown state machine and the rule that uploads
// happen only while the environment cannot freeze. Delivery itself (retry,
// spill, fallback) belongs to the Delivery paths, and turning records into
// batches to the pipeline.
type Runner struct {
	// Name is the extension's name: its executable's file name.
	Name   string
	API    API
	Config Config
	// ConfigErr is Load's error, reported through /init/error once
	// registered.
	ConfigErr error
	// Listen opens the telemetry listener on addr.
	Listen func(addr string) (Listener, error)
	// Subscribe subscribes uri to the Telemetry API; telemetry.ErrNotSupported
	// makes sluice a no-op extension that stays out of the way.
	Subscribe func(ctx context.Context, uri string) error
	// OpenSinks builds the delivery paths once the function's name is
	// known.
	OpenSinks func(ctx context.Context, reg Registration) ([]Delivery, error)
	// Fallback takes batches no delivery path takes any more.
	Fallback sinks.Sink
	// Getenv reads the function's environment (memory size for the cost
	// columns); nil means none.
	Getenv func(string) string
	Log    *slog.Logger

	reg        Registration
	events     []EventType // what the platform accepted the registration for
	tel        Listener    // nil when the platform refused the subscription
	deliveries []Delivery
	c          counters
}

// session is what one Run holds: the goroutines it started and how to stop
// them.
type session struct {
	p            *pipeline
	served       chan error
	stopListener context.CancelFunc
	pipelineDone chan struct{}
	stopPipeline context.CancelFunc
}

// Init registers, reports a bad configuration, opens the sinks, listens and
// subscribes. A returned *InitError has been reported to Lambda already.
//
// A bad SLUICE_* value is the only failure sluice reports on purpose: it
// fails the function's init, naming the variable. Where the platform
// refuses something instead (INVOKE events, the subscription), sluice steps
// aside: it logs why at Error and serves /event/next as a no-op, because on
// Lambda an extension that exits takes the function down with it
// (Extension.Crash). Only when no registration at all is accepted does Init
// return an error: an unregistered extension cannot step aside (the
// platform waits for it until the init timeout), and exiting at once fails
// the init fastest, with the reason in the log.
func (r *Runner) Init(ctx context.Context) error {
	if r.Getenv == nil {
		r.Getenv = func(string) string { return "" }
	}
	want := []EventType{Invoke, Shutdown}
	if r.Config.ManagedInstances {
		// Managed Instances refuse INVOKE (403): there is no invocation
		// to hook, the environment is never frozen.
		want = []EventType{Shutdown}
	}
	reg, err := r.register(ctx, want)
	if err != nil {
		return fmt.Errorf("cannot register with the Extensions API: %w", err)
	}
	r.reg = reg
	if r.ConfigErr != nil {
		return r.initError(ctx, "Extension.ConfigInvalid", r.ConfigErr)
	}
	if !slices.Contains(r.events, Shutdown) {
		// Without SHUTDOWN nothing held could be delivered before the
		// SIGKILL: collect nothing.
		r.Log.Error("the platform refused every registration with events: sluice archives nothing in this environment and stays out of the way")
		return nil
	}
	if r.deliveries, err = r.OpenSinks(ctx, reg); err != nil {
		return r.initError(ctx, "Extension.SinkInvalid", err)
	}
	tel, err := r.Listen(r.Config.ListenAddr)
	if err != nil {
		return r.initError(ctx, "Extension.ListenFailed", fmt.Errorf("SLUICE_LISTEN_ADDR=%q: %w", r.Config.ListenAddr, err))
	}
	err = r.Subscribe(ctx, tel.URI())
	switch {
	case errors.Is(err, telemetry.ErrNotSupported):
		r.Log.Warn("telemetry is unavailable: the Telemetry API is not supported here (a local emulator?); sluice will archive nothing and stays out of the way", "err", err)
		tel.Close()
	case err != nil:
		r.Log.Error("telemetry is unavailable: the platform refused the subscription; sluice will archive nothing and stays out of the way", "err", err)
		tel.Close()
	default:
		r.tel = tel
	}
	return nil
}

// register registers for want and, when the platform refuses, for less:
// SHUTDOWN only (what Managed Instances accept), then no events at all, so
// that sluice can stay registered as a no-op rather than exit.
func (r *Runner) register(ctx context.Context, want []EventType) (Registration, error) {
	ladder := [][]EventType{want}
	if slices.Contains(want, Invoke) {
		ladder = append(ladder, []EventType{Shutdown})
	}
	ladder = append(ladder, []EventType{})
	var errs []error
	for _, events := range ladder {
		reg, err := r.API.Register(ctx, r.Name, events)
		if err == nil {
			if len(errs) > 0 {
				r.Log.Error("the platform refused the registration sluice asked for; registered for fewer events",
					"events", fmt.Sprint(events), "err", errors.Join(errs...))
			}
			r.events = events
			return reg, nil
		}
		errs = append(errs, fmt.Errorf("register for %v: %w", events, err))
		if ctx.Err() != nil {
			break
		}
	}
	return Registration{}, errors.Join(errs...)
}

// Eager reports whether the platform sends no INVOKE events (Lambda Managed
// Instances): the environment is never frozen, so delivery paths keep an
// upload window open at all times, and invocations may run concurrently.
// Valid once Init has registered.
func (r *Runner) Eager() bool {
	return r.Config.ManagedInstances || !slices.Contains(r.events, Invoke)
}

func (r *Runner) initError(ctx context.Context, errType string, err error) error {
	r.Log.Error("init failed", "error_type", errType, "err", err)
	if rerr := r.API.InitError(ctx, errType, err.Error()); rerr != nil {
		r.Log.Error("cannot report the init error", "err", rerr)
	}
	return &InitError{Type: errType, Err: err}
}

// Run serves /event/next until SHUTDOWN (or ctx ends, which is treated as a
// shutdown with a short deadline) and returns after the final flush.
func (r *Runner) Run(ctx context.Context) error {
	if r.tel == nil {
		return r.runNoop(ctx)
	}
	s := r.start(ctx)
	for {
		ev, err := r.API.Next(ctx)
		if err != nil {
			r.shutdown(ctx, s, time.Now().Add(signalBudget))
			if ctx.Err() != nil {
				r.Log.Warn("stopped by signal: shut down", "budget", signalBudget.String())
				return nil
			}
			return err
		}
		deadline := time.UnixMilli(ev.DeadlineMs)
		switch EventType(strings.ToUpper(string(ev.EventType))) {
		case Invoke:
			r.invoke(ctx, s, ev.RequestID, deadline)
		case Shutdown:
			r.Log.Info("shutdown", "reason", ev.ShutdownReason, "budget_ms", time.Until(deadline).Milliseconds())
			r.shutdown(ctx, s, deadline)
			return nil
		default:
			r.Log.Warn("unknown event type, ignored", "event_type", ev.EventType)
		}
	}
}

// start runs the listener, the delivery paths and the pipeline.
func (r *Runner) start(ctx context.Context) *session {
	// A few POSTs' worth: a POST is answered once its records are queued,
	// and Lambda's buffer for a subscriber whose answer is late overflows
	// into drops (the log-storm scenario lost 0.03-0.1% of its lines with
	// room for one). Memory stays bounded by the queue, in POSTs and in
	// bytes (telemetry.DefaultMaxPendingBytes), and a POST that finds it
	// full waits or is answered 503.
	recs := make(chan []buffer.Record, 4)
	s := &session{served: make(chan error, 1), pipelineDone: make(chan struct{})}
	var lctx, pctx context.Context
	lctx, s.stopListener = context.WithCancel(context.WithoutCancel(ctx))
	go func() { s.served <- r.tel.Serve(lctx, recs) }()

	// Each path's goroutine ends with its Close at shutdown.
	for _, d := range r.deliveries {
		go d.Run(context.WithoutCancel(ctx))
	}

	batcher := buffer.NewBatcher(buffer.Meta{Function: r.reg.FunctionName, Version: r.reg.FunctionVersion}, r.Config.Limits(), time.Now)
	p := newPipeline(recs, batcher, r.deliveries, r.Fallback, &r.c)
	if t, ok := r.tel.(interface{ Taken() }); ok {
		p.taken = t.Taken // a POST waiting for room in its queue goes in at once
	}
	policy := r.Config.Policy
	// Interleaved invocations: a line without a requestId belongs to none.
	policy.Concurrent = r.Eager()
	p.stager = buffer.NewStager(policy, r.Config.Redactor)
	p.platform = r.Config.Platform
	p.stats = statsSource{listener: r.tel.Stats, memoryMB: functionMemoryMB(r.Getenv), arch: lambdaArch()}
	if len(r.deliveries) > 0 {
		p.stats.archive = r.deliveries[0].Stats
	}
	s.p = p
	pctx, s.stopPipeline = context.WithCancel(context.WithoutCancel(ctx))
	go func() { defer close(s.pipelineDone); p.run(pctx) }()
	return s
}

// runNoop keeps the function working when telemetry is unavailable (local
// emulators answer the subscription with 202 Telemetry.NotSupported, a
// platform may refuse it) or registration succeeded only without events.
func (r *Runner) runNoop(ctx context.Context) error {
	for _, d := range r.deliveries {
		go d.Run(context.WithoutCancel(ctx))
		defer d.Close(context.Background())
	}
	for {
		ev, err := r.API.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if strings.EqualFold(string(ev.EventType), string(Shutdown)) {
			return nil
		}
	}
}

// invoke uploads what is due while the function runs, and returns when the
// extension may call /event/next.
func (r *Runner) invoke(ctx context.Context, s *session, requestID string, deadline time.Time) {
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-invokeMargin))
	defer cancel()
	done := s.p.AwaitRuntimeDone(ctx, requestID)
	var finished <-chan struct{} // closed once the function's runtime is done
	if done != nil {
		finished = done.Done()
	}
	if r.Config.Flush == FlushInvoke {
		select {
		case <-finished:
		case <-ctx.Done():
		}
		s.p.Seal(ctx)
		r.deliver(ctx, nil)
	} else {
		// Uploads overlap the function's own run. Once it has finished,
		// every further upload would be billed duration: no new one starts
		// after the window's first, and one still running holds the
		// invocation for a share of its length at most.
		wctx := ctx
		if finished != nil {
			var cancel context.CancelFunc
			wctx, cancel = context.WithCancel(ctx)
			defer cancel()
			go yieldAfter(wctx, cancel, finished, time.Now())
		}
		r.deliver(wctx, finished)
	}
	if finished != nil && isClosed(finished) {
		r.c.addedNanos.Add(int64(max(time.Since(done.At()), 0)))
	}
}

// yieldAfter ends a delivery window (cancel) a share of the invocation's
// length after finished closes; invoked is when the invocation began.
func yieldAfter(ctx context.Context, cancel context.CancelFunc, finished <-chan struct{}, invoked time.Time) {
	select {
	case <-finished:
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(max(time.Since(invoked)/yieldShare, minYield))
	defer t.Stop()
	select {
	case <-t.C:
		cancel()
	case <-ctx.Done():
	}
}

// deliver opens a delivery window on every path at once, so that a slow
// sink never holds back another, and returns when all are over.
func (r *Runner) deliver(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, d := range r.deliveries {
		wg.Go(func() { d.Deliver(ctx, stop) })
	}
	wg.Wait()
}

// shutdown takes the last telemetry, stops accepting more, delivers
// everything it can before deadline minus a margin, and sends the rest to
// the fallback. It runs to its end even when ctx has been cancelled (a
// signal is a reason to shut down, not to skip it): only the deadline
// bounds it.
func (r *Runner) shutdown(ctx context.Context, s *session, deadline time.Time) {
	if deadline.IsZero() || time.Until(deadline) > maxShutdownBudget {
		deadline = time.Now().Add(defaultShutdownBudget)
	}
	hard := deadline.Add(-shutdownMargin)
	drainUntil := time.Now().Add(maxDrain)
	if limit := hard.Add(-maxDrain); limit.Before(drainUntil) {
		drainUntil = limit
	}
	r.awaitQuiet(drainUntil)

	// Stop accepting telemetry (new POSTs get 503 and stay with Lambda);
	// the POSTs in flight finish and hand their records over, which the
	// pipeline keeps reading until Finish.
	s.stopListener()
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), hard)
	defer cancel()
	select {
	case err := <-s.served:
		if err != nil {
			r.Log.Warn("telemetry listener", "err", err)
		}
	case <-ctx.Done():
		r.Log.Warn("telemetry listener did not stop in time")
	}
	// The outcome of invocations still staged will not come now.
	if !s.p.Finish(ctx) {
		r.Log.Warn("the last records could not be sealed in time")
	}
	s.stopPipeline()
	<-s.pipelineDone

	var wg sync.WaitGroup
	for _, d := range r.deliveries {
		wg.Go(func() {
			if err := d.Close(ctx); err != nil {
				r.Log.Error("delivery path closed with losses", "sink", d.Name(), "err", err)
			}
		})
	}
	wg.Wait()
	r.logTotals()
}

// awaitQuiet waits until the listener has received nothing for quietWindow,
// or until limit.
func (r *Runner) awaitQuiet(limit time.Time) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(limit) {
		if time.Since(r.tel.LastPost()) >= quietWindow {
			return
		}
		<-tick.C
	}
}

func (r *Runner) logTotals() {
	c := &r.c
	ls := r.tel.Stats()
	attrs := []any{
		"records", c.records.Load(),
		"lines", c.lines.Load(),
		"malformed", c.malformed.Load(),
		"platform_events_skipped", c.platformSkip.Load(),
		"platform_dropped_records", c.platformDropped.Load(),
		"batches_sealed", c.sealed.Load(),
		"telemetry_posts", ls.Posts,
		"telemetry_oversized", ls.Oversized,
		"telemetry_busy", ls.Busy,
		"telemetry_read_errors", ls.ReadErrors,
		"added_ms", time.Duration(c.addedNanos.Load()).Milliseconds(),
	}
	lost := c.lost.Load()
	fallback := c.orphaned.Load()
	for _, d := range r.deliveries {
		st := d.Stats()
		lost += st.Lost
		fallback += st.Fallback
		attrs = append(attrs, slog.Group(d.Name(),
			"batches_uploaded", st.Uploaded,
			"lines_uploaded", st.UploadedLines,
			"raw_bytes", st.RawBytes,
			"stored_bytes", st.StoredBytes,
			"upload_ms", st.UploadTime.Milliseconds(),
			"upload_errors", st.UploadErrors,
			"batches_spilled", st.Spilled,
			"batches_replayed", st.Replayed,
			"batches_evicted_memory", st.EvictedMemory,
			"batches_evicted_spill", st.EvictedSpill,
			"spill_entries_bad", st.BadSpill,
			"fallback_batches", st.Fallback,
			"fallback_lines", st.FallbackLines,
			"lost_batches", st.Lost,
		))
	}
	attrs = append(attrs, "batches_orphaned", c.orphaned.Load(), "fallback_batches", fallback, "lost_batches", lost)
	r.Log.Info("totals", attrs...)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
