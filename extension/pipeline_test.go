package extension

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// startPipeline runs a pipeline whose batches seal at every ~64 KiB of
// rows and whose queue holds at most queueCap compressed bytes.
func startPipeline(t *testing.T, queueCap int) (p *pipeline, in chan []buffer.Record, evicted *[]*buffer.Batch, c *counters) {
	t.Helper()
	in = make(chan []buffer.Record, 8)
	c = new(counters)
	evicted = new([]*buffer.Batch)
	p = newPipeline(in,
		buffer.NewBatcher(buffer.Meta{Function: "f", Version: "1"}, buffer.Limits{MaxBytes: 64 << 10, MaxAge: time.Hour}, nil),
		buffer.NewQueue(queueCap),
		func(b *buffer.Batch) { *evicted = append(*evicted, b) }, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, in, evicted, c
}

// incompressible makes lines that zstd cannot shrink much, so that the
// queue's cap on compressed bytes is reached quickly.
func incompressible(n, size int) []buffer.Record {
	recs := make([]buffer.Record, n)
	x := uint64(88172645463325252)
	for i := range recs {
		var sb strings.Builder
		for sb.Len() < size {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			fmt.Fprintf(&sb, "%016x", x)
		}
		recs[i] = buffer.Record{Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), Type: "function", Message: sb.String()}
	}
	return recs
}

// At the buffer cap the oldest sealed batches leave memory through the
// fallback; together with what is still queued they hold every line.
func TestPipelineBufferCap(t *testing.T) {
	const lines = 400
	p, in, evicted, c := startPipeline(t, 256<<10)
	in <- incompressible(lines, 4<<10) // ~1.6 MB of rows, ~1 MB compressed
	ctx := context.Background()

	var queued []*buffer.Batch
	for b := p.take(ctx, true); b != nil; b = p.take(ctx, true) {
		queued = append(queued, b)
	}
	if len(*evicted) == 0 {
		t.Fatalf("no batch evicted with %d bytes sealed against a 256 KiB cap", c.sealed.Load())
	}
	if got := c.evicted.Load(); got != int64(len(*evicted)) {
		t.Errorf("evicted counter = %d, want %d", got, len(*evicted))
	}
	total := 0
	seqs := map[uint64]bool{}
	held := 0
	for _, b := range queued {
		held += len(b.Data)
	}
	for _, b := range append(*evicted, queued...) {
		total += b.Lines
		if seqs[b.Seq] {
			t.Errorf("batch %d handed out twice", b.Seq)
		}
		seqs[b.Seq] = true
	}
	if total != lines {
		t.Errorf("evicted + queued batches hold %d lines, want %d", total, lines)
	}
	// The evicted ones are the oldest.
	for _, e := range *evicted {
		for _, q := range queued {
			if e.Seq > q.Seq {
				t.Errorf("evicted batch %d is newer than queued batch %d", e.Seq, q.Seq)
			}
		}
	}
	if held > 256<<10+70<<10 {
		t.Errorf("queue handed out %d bytes, more than the cap plus one batch", held)
	}
}

// take with force seals the open batch; without it, a batch that is neither
// full nor old stays open.
func TestPipelineTake(t *testing.T) {
	p, in, _, _ := startPipeline(t, 1<<20)
	in <- []buffer.Record{{Time: time.Now(), Type: "function", Message: "one"}}
	ctx := context.Background()
	if b := p.take(ctx, false); b != nil {
		t.Fatalf("take(force=false) = batch %d, want nil: nothing is due", b.Seq)
	}
	b := p.take(ctx, true)
	if b == nil || b.Lines != 1 {
		t.Fatalf("take(force=true) = %+v, want the open batch with 1 line", b)
	}
	if b := p.take(ctx, true); b != nil {
		t.Errorf("take after the last batch = batch %d, want nil", b.Seq)
	}
}

// The per-invoke flush waits for the invocation's runtimeDone, including
// one that arrived before the wait began.
func TestPipelineRuntimeDone(t *testing.T) {
	p, in, _, _ := startPipeline(t, 1<<20)
	ctx := context.Background()
	in <- []buffer.Record{{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "early"}}
	select {
	case <-p.runtimeDone(ctx, "early"):
	case <-time.After(5 * time.Second):
		t.Fatal("runtimeDone seen before the wait was not remembered")
	}
	ch := p.runtimeDone(ctx, "late")
	select {
	case <-ch:
		t.Fatal("runtimeDone(late) closed before its record arrived")
	default:
	}
	in <- []buffer.Record{{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "late"}}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("runtimeDone(late) not closed after its record arrived")
	}
}
