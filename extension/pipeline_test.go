package extension

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// startPipeline runs a pipeline whose batches seal at every ~64 KiB of
// rows and go to one delivery path writing to sink.
func startPipeline(t *testing.T, sink *memSink) (p *pipeline, in chan []buffer.Record, d *sinks.Durable) {
	t.Helper()
	in = make(chan []buffer.Record, 8)
	d = sinks.NewDurable(sink, sinks.DurableOptions{Fallback: &memSink{}, Log: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	go d.Run(ctx)
	p = newPipeline(in,
		buffer.NewBatcher(buffer.Meta{Function: "f", Version: "1"}, buffer.Limits{MaxBytes: 64 << 10, MaxAge: time.Hour}, nil),
		[]Delivery{d}, &memSink{}, new(counters))
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-d.Done() })
	return p, in, d
}

// incompressible makes lines that zstd cannot shrink much.
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

// Seal hands the open batch to the delivery path; a batch that is neither
// full nor old stays open until then.
func TestPipelineSeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{}
		p, in, d := startPipeline(t, sink)
		in <- []buffer.Record{{Time: time.Now(), Type: "function", Message: "one"}}
		ctx := context.Background()
		synctest.Wait()
		if r := d.Deliver(ctx, nil); r.Uploaded != 0 {
			t.Fatalf("Deliver before Seal = %+v, want nothing: the batch is open", r)
		}
		if !p.Seal(ctx) {
			t.Fatal("Seal refused")
		}
		if r := d.Deliver(ctx, nil); r.Uploaded != 1 {
			t.Fatalf("Deliver after Seal = %+v, want the batch", r)
		}
		if got := sink.messages(); len(got) != 1 || got[0] != "one" {
			t.Errorf("sink got %q, want [one]", got)
		}
	})
}

// The age bound seals by itself.
func TestPipelineAgeSeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{}
		_, in, d := startPipeline(t, sink)
		in <- []buffer.Record{{Time: time.Now(), Type: "function", Message: "old"}}
		time.Sleep(time.Hour + time.Second)
		synctest.Wait()
		if r := d.Deliver(context.Background(), nil); r.Uploaded != 1 {
			t.Errorf("Deliver after the age bound = %+v, want the sealed batch", r)
		}
	})
}

// The per-invoke flush waits for the invocation's runtimeDone, including
// one that arrived before the wait began.
func TestPipelineRuntimeDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, in, _ := startPipeline(t, &memSink{})
		ctx := context.Background()
		in <- []buffer.Record{{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "early"}}
		synctest.Wait()
		if !isClosed(p.AwaitRuntimeDone(ctx, "early").Done()) {
			t.Fatal("runtimeDone seen before the wait was not remembered")
		}
		late := p.AwaitRuntimeDone(ctx, "late")
		if isClosed(late.Done()) {
			t.Fatal("runtimeDone(late) closed before its record arrived")
		}
		in <- []buffer.Record{{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "late"}}
		synctest.Wait()
		if !isClosed(late.Done()) {
			t.Fatal("runtimeDone(late) not closed after its record arrived")
		}
	})
}

// A wait whose caller gave up is still closed once, by the pipeline alone
// (defect: the caller closed it too and the pipeline's later close
// panicked).
func TestPipelineAbandonedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, in, _ := startPipeline(t, &memSink{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if r := p.AwaitRuntimeDone(ctx, "gone"); r != nil {
			t.Errorf("AwaitRuntimeDone with an ended context = %v, want nil", r)
		}
		again := p.AwaitRuntimeDone(context.Background(), "gone")
		in <- []buffer.Record{{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "gone"}}
		synctest.Wait()
		if !isClosed(again.Done()) {
			t.Error("the wait was not closed")
		}
	})
}

// blockingDelivery takes batches only once release is closed.
type blockingDelivery struct {
	release chan struct{}
	got     atomic.Int32
}

func (b *blockingDelivery) Name() string        { return "blocking" }
func (b *blockingDelivery) Run(context.Context) {}
func (b *blockingDelivery) Write(ctx context.Context, _ *buffer.Batch) error {
	select {
	case <-b.release:
		b.got.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (b *blockingDelivery) Deliver(context.Context, <-chan struct{}) sinks.DeliverResult {
	return sinks.DeliverResult{}
}
func (b *blockingDelivery) Close(context.Context) error { return nil }
func (b *blockingDelivery) Stats() sinks.DurableStats   { return sinks.DurableStats{} }

// The run loop learns of a POST's runtimeDone before the POST's lines are
// encoded and handed over (found by the CPU-quota benchmark: on 0.036 vCPU
// compressing the POST first held the invocation tens of ms longer).
func TestPipelineRuntimeDoneBeforeLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := make(chan []buffer.Record, 1)
		del := &blockingDelivery{release: make(chan struct{})}
		p := newPipeline(in,
			buffer.NewBatcher(buffer.Meta{Function: "f", Version: "1"}, buffer.Limits{MaxBytes: 64 << 10, MaxAge: time.Hour}, nil),
			[]Delivery{del}, &memSink{}, new(counters))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.run(ctx)
		done := p.AwaitRuntimeDone(ctx, "r")
		// Enough lines to seal a batch mid-POST: handing it over blocks.
		post := append(incompressible(200, 1024), buffer.Record{Time: time.Now(), Type: "platform.runtimeDone", RequestID: "r"})
		in <- post
		synctest.Wait()
		if !isClosed(done.Done()) {
			t.Error("runtimeDone(r) not signalled while the POST's lines were still being handed over")
		}
		close(del.release)
		synctest.Wait()
		if del.got.Load() == 0 {
			t.Error("no batch was handed over after release")
		}
	})
}
