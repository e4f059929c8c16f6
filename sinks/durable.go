package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// Durable is the delivery path of one sink: it owns everything between a
// sealed batch and the sink's acceptance of it. Batches handed to Write are
// held in memory up to a cap; uploads run one at a time inside delivery
// windows (Deliver), which the Lambda lifecycle opens while the environment
// is sure not to freeze; a failed upload is classified (Retryable), the sink
// backs off with jitter, and batches go to the disk spill meanwhile, to be
// replayed oldest first; past the spill's cap, at the memory cap without a
// spill, and at Close, what cannot be delivered goes to the fallback. Every
// move is counted.
//
// One goroutine, Run, owns all of this state. Other goroutines only send it
// requests, each of which is answered: a caller never gives up on a request
// that was taken, and Run never works for a caller that has gone. An upload
// belongs to Run, not to the window that started it: when the window ends
// first, the upload goes on (in Lambda, into the next invocation after a
// freeze) and its result comes back to Run. Only Close's deadline (see
// Close) and Run's end cut it, and then its batch comes back too.
type Durable struct {
	primary Sink
	o       DurableOptions

	writes   chan writeReq
	delivers chan deliverReq
	closes   chan closeReq
	done     chan struct{}
	c        durableCounters

	// Owned by Run.
	held      []*buffer.Batch // oldest first
	heldBytes int
	heldRaw   int
	rate      float64 // recent uploads' uncompressed bytes per second
	backoff   backoff
	inflight  *upload
	window    *window
	closing   *closeReq
	results   chan uploadResult
}

// DurableOptions configure a Durable.
type DurableOptions struct {
	// Name identifies the sink in logs ("s3", "opensearch").
	Name string
	// Spill keeps batches on disk while the sink fails; nil turns
	// spilling off (batches then wait in memory, up to MaxHeld).
	Spill *Spill
	// Fallback takes what cannot be delivered: stdout in Lambda. Required.
	Fallback Sink
	// MaxHeld caps the compressed bytes held in memory; past it the oldest
	// batches are spilled (or, without a spill, written to the fallback).
	// Zero means 16 MiB.
	MaxHeld int
	// Retryable says whether an upload error may heal by itself (default
	// Retryable). Permanent errors are logged once each, with Hint, and
	// probed every PermanentBackoff.
	Retryable func(error) bool
	// Hint says what a person should fix for a permanent error.
	Hint func(error) string
	// UploadTimeout bounds one upload whatever the window (default 30 s).
	UploadTimeout time.Duration
	// Eager keeps a delivery window open at all times, for environments
	// that are never frozen (Lambda Managed Instances).
	Eager bool
	// FallbackRate is how fast the fallback takes batches, in uncompressed
	// bytes per second. At Close, uploads stop (and one in flight is cut)
	// while the time left still lets everything waiting reach the
	// fallback at that rate. Zero means no such reserve.
	FallbackRate int64
	// Log receives counts and problems; nil means slog.Default().
	Log *slog.Logger
}

// DefaultFallbackRate is how fast batches reach stdout through a busy
// platform's log pipe on two shared cores, in uncompressed bytes per
// second (measured by make faults, scenario managed-instances: 8 MB/s).
const DefaultFallbackRate = 8 << 20

// Backoff bounds.
const (
	BackoffBase      = 500 * time.Millisecond
	BackoffMax       = 30 * time.Second
	PermanentBackoff = 5 * time.Minute
)

// DurableStats are a Durable's counters since it was made.
type DurableStats struct {
	Uploaded       int64         // batches the sink accepted
	UploadedLines  int64         // function lines among them
	RawBytes       int64         // their uncompressed NDJSON bytes
	StoredBytes    int64         // their stored (compressed) bytes
	UploadTime     time.Duration // wall time spent in uploads, failed ones included
	UploadErrors   int64         // failed uploads (each then retried or spilled)
	Spilled        int64         // batches written to the spill
	Replayed       int64         // spilled batches delivered later
	EvictedMemory  int64         // batches pushed out of memory by MaxHeld
	EvictedSpill   int64         // spilled batches pushed out by the spill's cap
	BadSpill       int64         // spilled entries moved aside as unusable
	Fallback       int64         // batches written to the fallback
	FallbackLines  int64         // function lines among them
	Lost           int64         // batches the fallback refused too (logged at Error)
	Held           int64         // batches waiting in memory now
	SpilledPending int64         // batches waiting on disk now
	// WaitingRawBytes is the uncompressed size of what waits (in memory
	// and on disk): what writing it to the fallback would print.
	WaitingRawBytes int64
}

type durableCounters struct {
	uploaded, uploadedLines, rawBytes, storedBytes, uploadNanos, uploadErrors atomic.Int64
	spilled, replayed, evictedMemory, evictedSpill, badSpill                  atomic.Int64
	fallback, fallbackLines, lost, held, spilledPending, waitingRaw           atomic.Int64
}

// DeliverResult says how a delivery window ended.
type DeliverResult struct {
	Uploaded int  // batches delivered in the window
	Waiting  int  // batches still waiting (in memory or spilled)
	Failing  bool // the sink is backing off after a failure
}

type writeReq struct {
	b     *buffer.Batch
	reply chan error
}

type deliverReq struct {
	ctx   context.Context
	stop  <-chan struct{}
	reply chan DeliverResult
}

type closeReq struct {
	ctx   context.Context
	reply chan error
}

// window is an open delivery window.
type window struct {
	ctx      context.Context
	stop     <-chan struct{}
	stopped  bool // stop was seen closed
	started  int
	uploaded int
	reply    chan DeliverResult // nil for the eager window and Close's
}

type upload struct {
	b         *buffer.Batch
	fromSpill bool
	w         *window // the window that started it
	ctx       context.Context
	cancel    context.CancelCauseFunc
	release   []func() // what bounds it from outside, released when it ends
	start     time.Time
	hurry     chan struct{} // closed when Close starts, see hurry
}

// hurryKey is the context key of an upload's hurry channel.
type hurryKey struct{}

// hurry returns a channel closed when the Durable running the upload of
// ctx starts to close (SHUTDOWN): a sink in a retry wait of its own should
// retry at once, with short waits from then on. It is nil, never ready,
// outside a Durable's upload.
func hurry(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(hurryKey{}).(chan struct{})
	return ch
}

// errUploadCut is the cause of an upload's context when sluice cut it
// (Close's deadline, or Run's end): the batch is kept and the sink is not
// blamed.
var errUploadCut = errors.New("upload cut short by sluice")

type uploadResult struct {
	err error
}

// ErrLost is returned by Write when a batch could be put nowhere, not even
// in the fallback.
var ErrLost = errors.New("batch lost")

// NewDurable returns the delivery path for primary. Start Run before
// calling its other methods.
func NewDurable(primary Sink, o DurableOptions) *Durable {
	if o.MaxHeld <= 0 {
		o.MaxHeld = 16 << 20
	}
	if o.Retryable == nil {
		o.Retryable = Retryable
	}
	if o.UploadTimeout <= 0 {
		o.UploadTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Name == "" {
		o.Name = "sink"
	}
	o.Log = o.Log.With("sink", o.Name)
	return &Durable{
		primary:  primary,
		o:        o,
		writes:   make(chan writeReq),
		delivers: make(chan deliverReq),
		closes:   make(chan closeReq),
		done:     make(chan struct{}),
		results:  make(chan uploadResult, 1),
	}
}

// Name is the sink's name, as in DurableOptions.
func (d *Durable) Name() string { return d.o.Name }

// Write hands b to the delivery path. It returns nil once the path holds b
// (in memory, on disk, or, when neither can take it, written to the
// fallback); the upload itself happens in a delivery window. It blocks only
// while Run finishes what it is doing (a spill write at most), which is the
// back-pressure. After Close it returns ErrClosed and b is the caller's.
func (d *Durable) Write(ctx context.Context, b *buffer.Batch) error {
	req := writeReq{b: b, reply: make(chan error, 1)}
	select {
	case d.writes <- req:
	case <-d.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.reply // taken: always answered
}

// Deliver opens a delivery window until ctx ends: waiting batches, spilled
// ones first, oldest first, are uploaded one at a time until none waits or
// the sink fails. Once stop is closed no new upload starts, except the
// window's first (nil never closes). An upload still running when ctx ends
// goes on in the background: the next window waits for it before starting
// another, and Close bounds it (see boundAtClose). Deliver returns when the
// window is over and no upload of it is running, or at the latest when ctx
// ends.
func (d *Durable) Deliver(ctx context.Context, stop <-chan struct{}) DeliverResult {
	req := deliverReq{ctx: ctx, stop: stop, reply: make(chan DeliverResult, 1)}
	select {
	case d.delivers <- req:
	case <-d.done:
		return DeliverResult{}
	case <-ctx.Done():
		return DeliverResult{}
	}
	// The window ends with ctx in Run too (no upload starts under an ended
	// context), but Run may be busy writing an evicted batch to the
	// fallback: the caller's deadline is the invocation's and is never
	// overrun for that.
	select {
	case r := <-req.reply:
		return r
	case <-ctx.Done():
		return DeliverResult{}
	}
}

// Close delivers what it can before ctx ends, one last try even while
// backing off from a retryable error, then writes everything still waiting
// to the fallback, oldest first. Run returns after it. Close is idempotent.
func (d *Durable) Close(ctx context.Context) error {
	req := closeReq{ctx: ctx, reply: make(chan error, 1)}
	select {
	case d.closes <- req:
		return <-req.reply
	case <-d.done:
		return nil
	}
}

// Done is closed when Run has returned.
func (d *Durable) Done() <-chan struct{} { return d.done }

// Stats returns a snapshot of the counters. It is safe to call from any
// goroutine.
func (d *Durable) Stats() DurableStats {
	c := &d.c
	return DurableStats{
		Uploaded:        c.uploaded.Load(),
		UploadedLines:   c.uploadedLines.Load(),
		RawBytes:        c.rawBytes.Load(),
		StoredBytes:     c.storedBytes.Load(),
		UploadTime:      time.Duration(c.uploadNanos.Load()),
		UploadErrors:    c.uploadErrors.Load(),
		Spilled:         c.spilled.Load(),
		Replayed:        c.replayed.Load(),
		EvictedMemory:   c.evictedMemory.Load(),
		EvictedSpill:    c.evictedSpill.Load(),
		BadSpill:        c.badSpill.Load(),
		Fallback:        c.fallback.Load(),
		FallbackLines:   c.fallbackLines.Load(),
		Lost:            c.lost.Load(),
		Held:            c.held.Load(),
		SpilledPending:  c.spilledPending.Load(),
		WaitingRawBytes: c.waitingRaw.Load(),
	}
}

// Run owns the delivery path until Close has finished, or until ctx ends:
// then, as at a Close whose time is up, everything waiting goes to the
// fallback.
func (d *Durable) Run(ctx context.Context) {
	defer close(d.done)
	d.syncSpill()
	for {
		d.step(ctx)
		if d.closing != nil && d.window == nil && d.inflight == nil {
			d.closing.reply <- d.drainToFallback(ctx)
			return
		}
		// A window's end and its stop need no watching: an upload in
		// flight goes on past them, step looks at both before starting
		// another, and Deliver's caller returns at its deadline anyway.
		closes := d.closes
		if d.closing != nil {
			closes = nil
		}
		// An eager path has no window to wait for: it wakes itself when
		// the backoff ends.
		var retry <-chan time.Time
		var timer *time.Timer
		if d.o.Eager && d.closing == nil && d.waiting() > 0 {
			if wait := time.Until(d.backoff.until); wait > 0 {
				timer = time.NewTimer(wait)
				retry = timer.C
			}
		}
		if d.wait(ctx, closes, retry) {
			return
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// wait serves one request or event; true when Run must return.
func (d *Durable) wait(ctx context.Context, closes chan closeReq, retry <-chan time.Time) bool {
	select {
	case <-retry:
	case req := <-d.writes:
		req.reply <- d.hold(ctx, req.b)
	case req := <-d.delivers:
		d.open(req)
	case res := <-d.results:
		d.finish(ctx, res)
	case req := <-closes:
		d.startClose(req)
	case <-ctx.Done():
		if d.inflight != nil {
			d.inflight.cancel(errUploadCut)
			d.finish(ctx, <-d.results)
		}
		if d.window != nil && d.window.reply != nil {
			d.window.reply <- d.result()
		}
		d.window = nil
		err := d.drainToFallback(context.Background())
		if d.closing != nil {
			d.closing.reply <- err
		}
		d.answerPending()
		return true
	}
	return false
}

// answerPending answers the requests that raced with the end of Run.
func (d *Durable) answerPending() {
	for {
		select {
		case req := <-d.writes:
			req.reply <- ErrClosed
		case req := <-d.delivers:
			req.reply <- d.result()
		case req := <-d.closes:
			req.reply <- nil
		default:
			return
		}
	}
}

// open starts a delivery window. One caller at a time is the contract: a
// window still open is answered first (an upload of it goes on under its
// own context).
func (d *Durable) open(req deliverReq) {
	if d.closing != nil {
		req.reply <- d.result()
		return
	}
	if w := d.window; w != nil && w.reply != nil {
		w.reply <- d.result()
	}
	d.window = &window{ctx: req.ctx, stop: req.stop, reply: req.reply}
}

func (d *Durable) startClose(req closeReq) {
	d.closing = &req
	if w := d.window; w != nil && w.reply != nil {
		w.reply <- d.result()
	}
	// The last chance: try once more even while backing off from a
	// retryable error; a permanent one will not have healed.
	if !d.backoff.permanent {
		d.backoff.until = time.Time{}
	}
	d.window = &window{ctx: req.ctx}
	if u := d.inflight; u != nil {
		d.boundAtClose(req.ctx, u)
	}
}

// boundAtClose bounds the upload running when Close starts, of an open
// window (an eager one) or one a window left running (which may have
// crossed a freeze). It is not cut at once: its answer may be on its way,
// or already in the socket when SHUTDOWN thaws the environment, and a cut
// request's batch is sent again, which a Serverless collection indexes
// twice. The sink is told to hurry, so a retry wait of its own ends now.
// Close's deadline is the upload's too, less the fallback's time when the
// sink is slow. One a window left running gets half of that: a request
// still unanswered then most likely sits on a connection that died while
// the environment was frozen, and is cut to be started again, fresh (its
// batch comes back first).
func (d *Durable) boundAtClose(ctx context.Context, u *upload) {
	close(u.hurry)
	bound := ctx
	if deadline, ok := ctx.Deadline(); ok {
		if d.sinkSlower() {
			deadline = deadline.Add(-d.fallbackTime(u.b))
		}
		if u.w.ctx.Err() != nil {
			deadline = time.Now().Add(time.Until(deadline) / 2)
		}
		var cancel context.CancelFunc
		bound, cancel = context.WithDeadline(ctx, deadline)
		u.release = append(u.release, cancel)
	}
	stop := context.AfterFunc(bound, func() { u.cancel(errUploadCut) })
	u.release = append(u.release, func() { stop() })
}

// step starts the next upload when a window allows it, and ends a window
// that is over.
func (d *Durable) step(ctx context.Context) {
	if d.window == nil && d.o.Eager && d.closing == nil {
		d.window = &window{ctx: ctx}
	}
	w := d.window
	if w == nil || d.inflight != nil {
		return
	}
	if w.stop != nil && !w.stopped && closed(w.stop) {
		w.stopped = true
	}
	canStart := w.ctx.Err() == nil && (!w.stopped || w.started == 0) && !time.Now().Before(d.backoff.until) && d.fallbackFits(w)
	if canStart && d.start(ctx, w) {
		return
	}
	if w.reply != nil {
		w.reply <- d.result()
	}
	d.window = nil
}

// start begins the upload of the oldest waiting batch; false when none
// waits. Its context is Run's (ctx), not the window's: see Durable.
func (d *Durable) start(ctx context.Context, w *window) bool {
	var b *buffer.Batch
	fromSpill := false
	if s := d.o.Spill; s != nil && s.Len() > 0 {
		sb, _, err := s.Oldest(w.ctx)
		d.syncSpill()
		if err == nil && sb != nil {
			b, fromSpill = sb, true
		}
	}
	if b == nil && len(d.held) > 0 {
		b = d.popOldest()
	}
	if b == nil {
		return false
	}
	parent := ctx
	if d.closing != nil {
		parent = w.ctx // Close's deadline
	}
	uctx, cancel := context.WithCancelCause(parent)
	u := &upload{b: b, fromSpill: fromSpill, w: w, ctx: uctx, cancel: cancel, start: time.Now(), hurry: make(chan struct{})}
	if d.closing != nil {
		close(u.hurry)
	}
	uctx = context.WithValue(uctx, hurryKey{}, u.hurry)
	limit := d.o.UploadTimeout
	if d.closing != nil && d.sinkSlower() {
		// The last uploads to a slow sink must leave the fallback its time.
		if deadline, ok := w.ctx.Deadline(); ok {
			taken := b // a spilled batch is still counted as waiting
			if fromSpill {
				taken = nil
			}
			limit = min(limit, time.Until(deadline.Add(-d.fallbackTime(taken))))
		}
	}
	uctx, cancelTimeout := context.WithTimeout(uctx, limit)
	u.release = append(u.release, cancelTimeout)
	d.inflight = u
	w.started++
	results := d.results
	go func() { results <- uploadResult{err: d.primary.Write(uctx, b)} }()
	return true
}

// finish takes the result of the upload in flight.
func (d *Durable) finish(ctx context.Context, res uploadResult) {
	u := d.inflight
	d.inflight = nil
	for _, f := range u.release {
		f()
	}
	u.cancel(nil)
	took := time.Since(u.start)
	d.c.uploadNanos.Add(int64(took))
	if res.err == nil && took > 0 {
		// Uncompressed bytes per second, as the fallback's rate is: a
		// moving average of the recent uploads.
		r := float64(u.b.RawBytes) / took.Seconds()
		if d.rate == 0 {
			d.rate = r
		} else {
			d.rate = 0.7*d.rate + 0.3*r
		}
	}
	b := u.b
	if res.err == nil {
		d.backoff = backoff{}
		if u.fromSpill {
			d.o.Spill.Remove(b)
			d.publish()
			d.c.replayed.Add(1)
		}
		d.c.uploaded.Add(1)
		d.c.uploadedLines.Add(int64(b.Lines))
		d.c.rawBytes.Add(int64(b.RawBytes))
		d.c.storedBytes.Add(int64(len(b.Data)))
		u.w.uploaded++
		d.o.Log.Debug("uploaded", "seq", b.Seq, "records", b.Records, "bytes", len(b.Data), "ms", took.Milliseconds())
		return
	}
	// A cut of ours (Close's deadline, the time Close keeps for the
	// fallback, Run's end) is not the sink's fault, and neither is running
	// out of time in an upload its window left running: the environment
	// may have been frozen meanwhile.
	detached := u.w.ctx.Err() != nil
	timedOut := errors.Is(res.err, context.DeadlineExceeded)
	cut := errors.Is(context.Cause(u.ctx), errUploadCut) || ctx.Err() != nil ||
		(d.closing != nil || detached) && timedOut
	if cut {
		// Keep the batch, but do not back off.
		d.o.Log.Debug("upload cut short by the deadline; batch kept", "seq", b.Seq, "err", res.err)
	} else {
		d.failed(b, res.err)
	}
	if !u.fromSpill {
		d.putBack(ctx, b)
	}
	if !cut && d.o.Spill != nil {
		// While the sink backs off, an outage costs disk, not memory.
		for len(d.held) > 0 {
			d.spillOrFallback(ctx, d.popOldest())
		}
	}
}

// failed records an upload failure and sets when the sink is tried again.
func (d *Durable) failed(b *buffer.Batch, err error) {
	d.c.uploadErrors.Add(1)
	retryable := d.o.Retryable(err)
	wait := d.backoff.fail(time.Now(), retryable)
	if retryable {
		d.o.Log.Warn("upload failed; will retry", "seq", b.Seq, "bytes", len(b.Data), "retry_in", wait.Round(time.Millisecond).String(), "err", err)
		return
	}
	// A permanent error needs a person: say it once per distinct error,
	// clearly, and probe rarely instead of retrying in a storm.
	msg := err.Error()
	if msg != d.backoff.lastPermanent {
		d.backoff.lastPermanent = msg
		hint := "see the error"
		if d.o.Hint != nil {
			hint = d.o.Hint(err)
		}
		d.o.Log.Error("upload refused: fix the configuration or the role; batches are kept (spill, then stdout) meanwhile",
			"hint", hint, "retry_in", wait.Round(time.Second).String(), "err", err)
	}
}

// hold takes a new batch: in memory, or straight to the spill while the
// sink backs off. What cannot be held is counted and logged where it goes.
func (d *Durable) hold(ctx context.Context, b *buffer.Batch) error {
	if d.closing != nil {
		return ErrClosed
	}
	if d.o.Spill != nil && time.Now().Before(d.backoff.until) {
		d.spillOrFallback(ctx, b)
		return nil
	}
	d.held = append(d.held, b)
	d.heldBytes += len(b.Data)
	d.heldRaw += b.RawBytes
	d.publish()
	d.evictHeld(ctx)
	return nil
}

// evictHeld enforces MaxHeld, oldest first.
func (d *Durable) evictHeld(ctx context.Context) {
	for d.heldBytes > d.o.MaxHeld && len(d.held) > 1 {
		d.c.evictedMemory.Add(1)
		d.spillOrFallback(ctx, d.popOldest())
	}
}

// putBack returns a batch whose upload did not finish to the front of the
// queue.
func (d *Durable) putBack(ctx context.Context, b *buffer.Batch) {
	d.held = append([]*buffer.Batch{b}, d.held...)
	d.heldBytes += len(b.Data)
	d.heldRaw += b.RawBytes
	d.publish()
	d.evictHeld(ctx)
}

func (d *Durable) popOldest() *buffer.Batch {
	b := d.held[0]
	d.held[0] = nil
	d.held = d.held[1:]
	d.heldBytes -= len(b.Data)
	d.heldRaw -= b.RawBytes
	d.publish()
	return b
}

// publish makes what waits visible to Stats.
func (d *Durable) publish() {
	d.c.held.Store(int64(len(d.held)))
	raw := int64(d.heldRaw)
	if s := d.o.Spill; s != nil {
		d.c.spilledPending.Store(int64(s.Len()))
		raw += s.RawBytes()
	}
	// The reserve at SHUTDOWN reads this.
	d.c.waitingRaw.Store(raw)
}

// spillOrFallback writes b to the spill, and what the spill cannot hold to
// the fallback.
func (d *Durable) spillOrFallback(ctx context.Context, b *buffer.Batch) error {
	s := d.o.Spill
	if s == nil {
		return d.toFallback(b)
	}
	evicted, err := s.Put(ctx, b)
	var ferr error
	if err != nil {
		d.o.Log.Error("spill failed; batch goes to the fallback", "seq", b.Seq, "err", err)
		ferr = d.toFallback(b)
	} else {
		d.c.spilled.Add(1)
	}
	for _, old := range evicted {
		d.c.evictedSpill.Add(1)
		if e := d.toFallback(old); e != nil {
			ferr = e
		}
	}
	d.syncSpill()
	return ferr
}

// syncSpill publishes the spill's counts, and reports entries it moved
// aside since the last call.
func (d *Durable) syncSpill() {
	s := d.o.Spill
	if s == nil {
		return
	}
	d.publish()
	if bad := s.Bad() - d.c.badSpill.Load(); bad > 0 {
		d.c.badSpill.Add(bad)
		d.o.Log.Error("spilled batches unusable: moved aside, not uploaded", "entries", bad, "dir", filepath.Join(s.dir, badDir))
	}
}

// toFallback writes a batch to the fallback. It is the last resort, so a
// failure here is the one place a batch is lost: it is logged at Error with
// its size so the loss is visible.
func (d *Durable) toFallback(b *buffer.Batch) error {
	if err := d.o.Fallback.Write(context.Background(), b); err != nil {
		d.c.lost.Add(1)
		d.o.Log.Error("fallback failed: batch lost", "seq", b.Seq, "records", b.Records, "lines", b.Lines, "err", err)
		return fmt.Errorf("fallback batch %d: %w: %w", b.Seq, ErrLost, err)
	}
	d.c.fallback.Add(1)
	d.c.fallbackLines.Add(int64(b.Lines))
	d.o.Log.Error("batch not delivered: written to stdout as fallback", "seq", b.Seq, "records", b.Records, "lines", b.Lines)
	return nil
}

// drainToFallback writes everything still waiting to the fallback, oldest
// first: what was spilled, then what is in memory.
func (d *Durable) drainToFallback(ctx context.Context) error {
	var err error
	if s := d.o.Spill; s != nil {
		for s.Len() > 0 {
			b, _, lerr := s.Oldest(ctx)
			if lerr != nil || b == nil {
				break
			}
			if e := d.toFallback(b); e != nil {
				err = e
			}
			s.Remove(b)
		}
		d.syncSpill()
	}
	for len(d.held) > 0 {
		if e := d.toFallback(d.popOldest()); e != nil {
			err = e
		}
	}
	return err
}

// fallbackTime is how long writing everything waiting, plus b when it is
// not counted there (taken for upload), to the fallback takes.
func (d *Durable) fallbackTime(b *buffer.Batch) time.Duration {
	if d.o.FallbackRate <= 0 {
		return 0
	}
	raw := d.c.waitingRaw.Load()
	if b != nil {
		raw += int64(b.RawBytes)
	}
	return time.Duration(raw * int64(time.Second) / d.o.FallbackRate)
}

// fallbackFits reports whether, at Close, there is still time for another
// upload before what waits must go to the fallback.
//
// While the sink takes batches faster than the fallback would, uploading is
// the quicker way to empty the path and the window's own deadline is the
// only bound; only a sink slower than the fallback hands its share of the
// time over to it.
func (d *Durable) fallbackFits(w *window) bool {
	if d.closing == nil || !d.sinkSlower() {
		return true
	}
	deadline, ok := w.ctx.Deadline()
	return !ok || time.Until(deadline) > d.fallbackTime(nil)
}

// sinkSlower reports whether the sink's recent uploads ran clearly slower
// than FallbackRate (under half of it: the archive is the goal, stdout the
// last resort, and small batches make an upload's rate look lower than the
// sink's); unknown (no upload yet) counts as fast.
func (d *Durable) sinkSlower() bool {
	return d.o.FallbackRate > 0 && d.rate > 0 && d.rate < float64(d.o.FallbackRate)/2
}

// waiting is the number of batches waiting for an upload.
func (d *Durable) waiting() int {
	n := len(d.held)
	if d.o.Spill != nil {
		n += d.o.Spill.Len()
	}
	return n
}

func (d *Durable) result() DeliverResult {
	r := DeliverResult{Waiting: d.waiting(), Failing: time.Now().Before(d.backoff.until)}
	if w := d.window; w != nil {
		r.Uploaded = w.uploaded
	}
	return r
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
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

func (b *backoff) fail(now time.Time, retryable bool) time.Duration {
	b.failures++
	b.permanent = !retryable
	var d time.Duration
	if retryable {
		ceiling := BackoffBase << min(b.failures-1, 16)
		ceiling = min(ceiling, BackoffMax)
		d = ceiling/2 + rand.N(ceiling/2+1)
	} else {
		d = PermanentBackoff
	}
	b.until = now.Add(d)
	return d
}
