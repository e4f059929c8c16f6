package extension

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// counters are the run's totals. They are written by the pipeline and the
// lifecycle loop and read at shutdown, hence atomic.
type counters struct {
	records       atomic.Int64 // telemetry records received
	lines         atomic.Int64 // function log lines added to batches (after sampling)
	platformSkip  atomic.Int64 // platform events not archived (SLUICE_PLATFORM)
	malformed     atomic.Int64 // sluice.malformed rows (bodies that did not parse)
	sealed        atomic.Int64 // batches sealed
	uploaded      atomic.Int64 // batches the sink accepted
	uploadedLines atomic.Int64
	rawBytes      atomic.Int64 // uncompressed NDJSON bytes uploaded
	storedBytes   atomic.Int64 // compressed bytes uploaded
	uploadErrors  atomic.Int64
	fallback      atomic.Int64 // batches written to the fallback
	fallbackLines atomic.Int64 // function lines among them
	evicted       atomic.Int64 // batches pushed out of memory by the buffer cap (then spilled or sent to the fallback)
	spilled       atomic.Int64 // batches written to the spill
	replayed      atomic.Int64 // spilled batches delivered later
	spillEvicted  atomic.Int64 // spilled batches pushed out by the spill cap (to the fallback)
	lostBatches   atomic.Int64 // batches neither delivered nor written to the fallback (logged at Error)
	// platformDropped sums platform.logsDropped droppedRecords: lines Lambda
	// dropped before sluice got them.
	platformDropped atomic.Int64
}

// maxWaiters bounds the invocations waiting for their runtimeDone.
const maxWaiters = 64

// pipeline owns the batcher and the queue of sealed batches. One goroutine
// runs it; others reach its state only through do, so there is no mutex.
type pipeline struct {
	in       <-chan []buffer.Record
	reqs     chan func()
	batcher  *buffer.Batcher
	queue    *buffer.Queue
	fallback func(*buffer.Batch) // takes batches evicted at the buffer cap
	c        *counters
	stager   *buffer.Stager
	platform PlatformFilter
	now      func() time.Time

	// The last sluice.stats row, for deltas.
	statsAt   time.Time
	lastStats statsSnapshot

	// runtimeDone bookkeeping for the per-invoke flush mode.
	done    [16]string // most recent requestIds whose runtime finished
	doneAt  int
	waiters map[string]chan struct{}
}

func newPipeline(in <-chan []buffer.Record, b *buffer.Batcher, q *buffer.Queue, fallback func(*buffer.Batch), c *counters) *pipeline {
	return &pipeline{
		in:       in,
		reqs:     make(chan func()),
		batcher:  b,
		queue:    q,
		fallback: fallback,
		c:        c,
		stager:   buffer.NewStager(buffer.DefaultPolicy(), nil),
		platform: PlatformFilter{all: true},
		now:      time.Now,
		statsAt:  time.Now(),
		waiters:  make(map[string]chan struct{}),
	}
}

// run processes records until ctx ends or in is closed.
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
		case recs, ok := <-p.in:
			if !ok {
				return
			}
			p.add(recs)
		case f := <-p.reqs:
			p.drain()
			f()
		case <-age.C:
			if p.batcher.Due() {
				p.seal()
			}
		case <-ctx.Done():
			return
		}
	}
}

// do runs f on the pipeline goroutine after every record already handed over
// by the listener has been added, so a flush sees all acknowledged telemetry.
func (p *pipeline) do(ctx context.Context, f func()) bool {
	done := make(chan struct{})
	select {
	case p.reqs <- func() { f(); close(done) }:
	case <-ctx.Done():
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// drain adds what is already queued on in, without waiting for more.
func (p *pipeline) drain() {
	for {
		select {
		case recs, ok := <-p.in:
			if !ok {
				return
			}
			p.add(recs)
		default:
			return
		}
	}
}

func (p *pipeline) add(recs []buffer.Record) {
	for i := range recs {
		r := &recs[i]
		switch r.Type {
		case "sluice.malformed":
			p.c.malformed.Add(1)
		case "platform.logsDropped":
			p.c.platformDropped.Add(droppedRecords(r.Fields))
		}
		p.c.records.Add(1)
		p.stager.Add(r, p.emit)
		// After the stager: a flush waiting for this runtimeDone must find
		// the invocation's kept lines already in the batch.
		if r.Type == "platform.runtimeDone" {
			p.markDone(r.RequestID)
		}
	}
	if now := p.now(); now.Sub(p.statsAt) >= statsInterval {
		p.writeStats(now)
	}
}

// emit takes a record the stager kept into the open batch.
func (p *pipeline) emit(r *buffer.Record) {
	if strings.HasPrefix(r.Type, "platform.") && !p.platform.Keep(r) {
		p.c.platformSkip.Add(1)
		return
	}
	if r.Type == "function" {
		p.c.lines.Add(1)
	}
	for _, b := range p.batcher.Add(r) {
		p.push(b)
	}
}

// finish decides every staged invocation and writes the last stats row, as
// at SHUTDOWN.
func (p *pipeline) finish() {
	p.stager.Flush(p.emit)
	p.writeStats(p.now())
}

// seal closes the open batch, if any, and queues it for upload.
func (p *pipeline) seal() {
	if b := p.batcher.Seal(); b != nil {
		p.push(b)
	}
}

func (p *pipeline) push(b *buffer.Batch) {
	p.c.sealed.Add(1)
	for _, old := range p.queue.Push(b) {
		p.c.evicted.Add(1)
		p.fallback(old)
	}
}

// take returns the oldest sealed batch, sealing the open one first when it is
// due or when force is set; nil when there is nothing to upload.
func (p *pipeline) take(ctx context.Context, force bool) *buffer.Batch {
	var b *buffer.Batch
	p.do(ctx, func() {
		if p.queue.Len() == 0 && (force || p.batcher.Due()) {
			p.seal()
		}
		b = p.queue.Pop()
	})
	return b
}

func (p *pipeline) markDone(id string) {
	if id == "" {
		return
	}
	p.done[p.doneAt%len(p.done)] = id
	p.doneAt++
	if ch, ok := p.waiters[id]; ok {
		close(ch)
		delete(p.waiters, id)
	}
}

// runtimeDone returns a channel closed once platform.runtimeDone for id has
// been seen.
func (p *pipeline) runtimeDone(ctx context.Context, id string) <-chan struct{} {
	ch := make(chan struct{})
	ok := p.do(ctx, func() {
		for _, d := range p.done {
			if d == id {
				close(ch)
				return
			}
		}
		if old, ok := p.waiters[id]; ok {
			close(old)
		}
		// Waiters whose runtimeDone never came (a crashed runtime, or
		// Managed Instances, which send none) must not pile up.
		if len(p.waiters) >= maxWaiters {
			for k, w := range p.waiters {
				close(w)
				delete(p.waiters, k)
			}
		}
		p.waiters[id] = ch
	})
	if !ok {
		close(ch)
	}
	return ch
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
