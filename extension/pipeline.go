package extension

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

// counters are the pipeline's totals. They are written by the pipeline's
// goroutine and read by the run loop at shutdown, hence atomic.
type counters struct {
	records      atomic.Int64 // telemetry records received
	lines        atomic.Int64 // function log lines added to batches (after sampling)
	platformSkip atomic.Int64 // platform events not archived (SLUICE_PLATFORM)
	malformed    atomic.Int64 // sluice.malformed rows (bodies that did not parse)
	sealed       atomic.Int64 // batches sealed
	// orphaned counts batches no delivery path would take any more (they
	// were closed): written to the fallback instead.
	orphaned atomic.Int64
	lost     atomic.Int64 // orphaned batches the fallback refused too
	// platformDropped sums platform.logsDropped droppedRecords: lines Lambda
	// dropped before sluice got them.
	platformDropped atomic.Int64
	// addedNanos sums the invocation time sluice added after the runtime
	// finished (from runtimeDone's arrival to the call of /event/next).
	addedNanos atomic.Int64
}

// maxWaiters bounds the invocations waiting for their runtimeDone.
const maxWaiters = 64

// pipeline turns records into sealed batches and hands each to every
// delivery path. One goroutine (run) owns the stager, the batcher and the
// runtimeDone bookkeeping; the run loop reaches them only through requests,
// which are values. A request whose caller gave up may still be carried out,
// and that is harmless by construction: no request hands a batch back to its
// caller (sealed batches go straight to the delivery paths), and the only
// channel a request returns is closed by the pipeline alone.
type pipeline struct {
	in       <-chan []buffer.Record
	taken    func() // called as each POST's records are taken from in; nil: none
	reqs     chan request
	batcher  *buffer.Batcher
	stager   *buffer.Stager
	platform PlatformFilter
	sinks    []Delivery
	fallback sinks.Sink // for batches no delivery path takes any more
	c        *counters
	now      func() time.Time
	stats    statsSource

	// The last sluice.stats row, for deltas.
	statsAt   time.Time
	lastStats statsSnapshot

	// runtimeDone bookkeeping.
	done    [16]doneMark // most recent requestIds whose runtime finished
	doneAt  int
	waiters map[string]*runtimeDone
}

type doneMark struct {
	id string
	at time.Time
}

// runtimeDone is closed by the pipeline once the invocation's
// platform.runtimeDone has been added; at says when it arrived.
type runtimeDone struct {
	ch chan struct{}
	at time.Time
}

// Done returns a channel closed at the invocation's runtimeDone.
func (r *runtimeDone) Done() <-chan struct{} { return r.ch }

// At is when runtimeDone arrived; valid once Done is closed.
func (r *runtimeDone) At() time.Time { return r.at }

type requestKind uint8

const (
	reqSeal      requestKind = iota + 1 // seal the open batch and hand it over
	reqAwaitDone                        // a runtimeDone for id
	reqFinish                           // SHUTDOWN: decide what is staged, last stats, seal
)

type request struct {
	kind  requestKind
	id    string
	reply chan *runtimeDone // buffered: the pipeline never waits on a caller
}

func newPipeline(in <-chan []buffer.Record, b *buffer.Batcher, deliveries []Delivery, fallback sinks.Sink, c *counters) *pipeline {
	return &pipeline{
		in:       in,
		reqs:     make(chan request),
		batcher:  b,
		sinks:    deliveries,
		fallback: fallback,
		c:        c,
		stager:   buffer.NewStager(buffer.DefaultPolicy(), nil),
		platform: PlatformFilter{all: true},
		now:      time.Now,
		statsAt:  time.Now(),
		waiters:  make(map[string]*runtimeDone),
	}
}

// run processes records and requests until ctx ends or a finish request
// has been carried out.
func (p *pipeline) run(ctx context.Context) {
	age := time.NewTimer(time.Hour)
	defer age.Stop()
	for {
		if d, ok := p.batcher.UntilNext(); ok {
			age.Reset(max(d, 0))
		} else {
			age.Stop()
		}
		select {
		case recs := <-p.in:
			p.took()
			p.add(ctx, recs)
		case req := <-p.reqs:
			// Every record already acknowledged to Lambda is added first,
			// so a flush sees all of it.
			p.drain(ctx)
			if p.serve(ctx, req) {
				return
			}
		case <-age.C:
			if p.batcher.Due() {
				p.seal(ctx)
			}
		case <-ctx.Done():
			return
		}
	}
}

// serve carries out req; true after a finish.
func (p *pipeline) serve(ctx context.Context, req request) bool {
	switch req.kind {
	case reqSeal:
		p.seal(ctx)
		req.reply <- nil
	case reqAwaitDone:
		req.reply <- p.await(req.id)
	case reqFinish:
		p.stager.Flush(func(r *buffer.Record) { p.emit(ctx, r) })
		p.writeStats(ctx, p.now())
		p.seal(ctx)
		req.reply <- nil
		return true
	}
	return false
}

// ask sends a request and waits for its answer. false means ctx ended first;
// the request may then still be carried out (see pipeline).
func (p *pipeline) ask(ctx context.Context, kind requestKind, id string) (*runtimeDone, bool) {
	req := request{kind: kind, id: id, reply: make(chan *runtimeDone, 1)}
	select {
	case p.reqs <- req:
	case <-ctx.Done():
		return nil, false
	}
	select {
	case r := <-req.reply:
		return r, true
	case <-ctx.Done():
		return nil, false
	}
}

// Seal closes the open batch and hands it to the delivery paths; when it
// returns true, they hold it.
func (p *pipeline) Seal(ctx context.Context) bool {
	_, ok := p.ask(ctx, reqSeal, "")
	return ok
}

// Finish decides every staged invocation (their outcome will not come now),
// writes the last sluice.stats row, seals, and stops the pipeline.
func (p *pipeline) Finish(ctx context.Context) bool {
	_, ok := p.ask(ctx, reqFinish, "")
	return ok
}

// AwaitRuntimeDone returns the invocation's runtimeDone signal, or nil when
// ctx ended first.
func (p *pipeline) AwaitRuntimeDone(ctx context.Context, id string) *runtimeDone {
	r, _ := p.ask(ctx, reqAwaitDone, id)
	return r
}

// took tells the listener a POST's records were taken from in, before
// they are added: a POST waiting for room in the queue goes in meanwhile.
func (p *pipeline) took() {
	if p.taken != nil {
		p.taken()
	}
}

// drain adds what is already queued on in, without waiting for more.
func (p *pipeline) drain(ctx context.Context) {
	for {
		select {
		case recs := <-p.in:
			p.took()
			p.add(ctx, recs)
		default:
			return
		}
	}
}

func (p *pipeline) add(ctx context.Context, recs []buffer.Record) {
	// The run loop learns of a runtimeDone before this POST's lines are
	// compressed (on a small function's CPU that is tens of ms): it only
	// stops new uploads and starts the yield timer. A flush waiting for it
	// still finds the invocation's lines in the batch, because its Seal is
	// served after add returns.
	for i := range recs {
		if recs[i].Type == "platform.runtimeDone" {
			p.markDone(recs[i].RequestID)
		}
	}
	emit := func(r *buffer.Record) { p.emit(ctx, r) }
	for i := range recs {
		r := &recs[i]
		switch r.Type {
		case telemetry.TypeMalformed:
			p.c.malformed.Add(1)
		case "platform.logsDropped":
			p.c.platformDropped.Add(droppedRecords(r.Fields))
		}
		p.c.records.Add(1)
		p.stager.Add(r, emit)
	}
	if now := p.now(); now.Sub(p.statsAt) >= statsInterval {
		p.writeStats(ctx, now)
	}
}

// emit takes a record the stager kept into the open batch.
func (p *pipeline) emit(ctx context.Context, r *buffer.Record) {
	if strings.HasPrefix(r.Type, "platform.") && !p.platform.Keep(r) {
		p.c.platformSkip.Add(1)
		return
	}
	if r.Type == "function" {
		p.c.lines.Add(1)
	}
	for _, b := range p.batcher.Add(r) {
		p.hand(ctx, b)
	}
}

// seal closes the open batch, if any, and hands it over.
func (p *pipeline) seal(ctx context.Context) {
	if b := p.batcher.Seal(); b != nil {
		p.hand(ctx, b)
	}
}

// hand gives a sealed batch to every delivery path. Their Write blocks only
// while their owner finishes a spill or fallback write: the back-pressure
// that reaches the listener as 503s.
func (p *pipeline) hand(ctx context.Context, b *buffer.Batch) {
	p.c.sealed.Add(1)
	orphan := len(p.sinks) == 0
	for _, d := range p.sinks {
		if err := d.Write(ctx, b); err != nil {
			orphan = true
		}
	}
	if orphan && p.fallback != nil {
		// A path that is closed (or a context that ended) cannot take it:
		// the batch goes to stdout rather than nowhere.
		p.c.orphaned.Add(1)
		if err := p.fallback.Write(context.WithoutCancel(ctx), b); err != nil {
			p.c.lost.Add(1)
		}
	}
}

func (p *pipeline) markDone(id string) {
	if id == "" {
		return
	}
	now := p.now()
	p.done[p.doneAt%len(p.done)] = doneMark{id: id, at: now}
	p.doneAt++
	if w, ok := p.waiters[id]; ok {
		w.at = now
		close(w.ch)
		delete(p.waiters, id)
	}
}

// await returns the runtimeDone signal for id. Only the pipeline closes it.
func (p *pipeline) await(id string) *runtimeDone {
	for _, d := range p.done {
		if d.id == id && id != "" {
			r := &runtimeDone{ch: make(chan struct{}), at: d.at}
			close(r.ch)
			return r
		}
	}
	if w, ok := p.waiters[id]; ok {
		return w
	}
	// Waiters whose runtimeDone never came (a crashed runtime) must not
	// pile up: the oldest are let go as done.
	if len(p.waiters) >= maxWaiters {
		for k, w := range p.waiters {
			w.at = p.now()
			close(w.ch)
			delete(p.waiters, k)
		}
	}
	w := &runtimeDone{ch: make(chan struct{})}
	p.waiters[id] = w
	return w
}

// droppedRecords reads droppedRecords from a platform.logsDropped record's
// fields. It runs once per such event, so encoding/json is fine.
func droppedRecords(fields json.RawMessage) int64 {
	var v struct {
		DroppedRecords int64 `json:"droppedRecords"`
	}
	if json.Unmarshal(fields, &v) != nil {
		return 0
	}
	return v.DroppedRecords
}
