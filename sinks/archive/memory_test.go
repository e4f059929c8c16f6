package archive

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// logBody returns one batch of about rawBytes of NDJSON, written by the
// Batcher from varied log lines starting at start, one every step.
func logBody(t testing.TB, function string, start time.Time, step time.Duration, rawBytes int) *buffer.Batch {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(start.Unix())))
	b := buffer.NewBatcher(buffer.Meta{Function: function, Version: "$LATEST"}, buffer.Limits{MaxBytes: rawBytes + 1<<10}, nil)
	paths := []string{"/api/v1/orders", "/api/v1/items", "/health", "/api/v2/users/me", "/checkout"}
	levels := []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
	tm := start
	for n := 0; n < rawBytes; {
		r := &buffer.Record{
			Time:      tm,
			Type:      "function",
			RequestID: fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Int64N(1<<48)),
			Level:     levels[rng.IntN(len(levels))],
			Message: fmt.Sprintf("method=GET path=%s%d status=%d duration_ms=%d user=%d bytes=%d cache=%v",
				paths[rng.IntN(len(paths))], rng.IntN(100000), 200+rng.IntN(4)*100, rng.IntN(900), rng.IntN(1e6), rng.IntN(1<<20), rng.IntN(2) == 0),
		}
		n += len(buffer.AppendRow(nil, buffer.Meta{Function: function, Version: "$LATEST"}, r))
		if sealed := b.Add(r); len(sealed) > 0 {
			t.Fatalf("logBody: the batch sealed early")
		}
		tm = tm.Add(step)
	}
	return b.Seal()
}

// peakHeap samples the heap until stop is called and returns the highest
// live heap (after a collection) and the highest heap in use (garbage
// included) seen.
func peakHeap() (stop func() (live, inUse uint64)) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	done := make(chan struct{})
	result := make(chan [2]uint64)
	go func() {
		var peak [2]uint64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			peak[0] = max(peak[0], samples[0].Value.Uint64())
			peak[1] = max(peak[1], samples[1].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		p := <-result
		return p[0], p[1]
	}
}

// TestReadMemory reads a window of 1 GiB of rows from versitygw: 256
// objects of 4 MiB of NDJSON each. They are one object written by the
// Batcher and the S3 sink, linked under 255 more keys in versitygw's
// backend directory (cheap to make, read back through real GETs). All of
// them start in the same second, the worst case for the merge: every one
// overlaps every other. The heap must stay bounded by MaxOpen and the
// download lookahead, far below the window and below the sum of the
// compressed objects.
func TestReadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 1 GiB")
	}
	objects := 256
	if raceEnabled {
		objects = 16 // the race detector makes each row ~10x slower
	}
	const rawPerObject = 4 << 20
	srv := s3test.Start(t)
	raw := srv.Client(t)
	start := at(9, 0, 0, 0)
	body := logBody(t, "f", start, 2*time.Millisecond, rawPerObject)
	lay := sinks.Layout{Prefix: "logs", Function: "f", Env: "env0"}
	if err := sinks.NewS3(raw, sinks.S3Options{Bucket: srv.Bucket, Layout: lay}).Write(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(srv.Dir, srv.Bucket, filepath.FromSlash(lay.Key(body)))
	for i := 1; i < objects; i++ {
		l := lay
		l.Env = fmt.Sprintf("env%d", i)
		if err := os.Link(first, filepath.Join(srv.Dir, srv.Bucket, filepath.FromSlash(l.Key(body)))); err != nil {
			t.Fatal(err)
		}
	}
	// The links are served like the object they share a file with.
	probe := lay
	probe.Env = "env1"
	if _, err := raw.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(probe.Key(body))}); err != nil {
		t.Fatalf("head a linked object: %v", err)
	}

	c := &counting{c: raw}
	r := &Reader{Store: NewS3(c, srv.Bucket), Prefix: "logs", Parallel: 4, MaxOpen: 8, Counters: &Counters{}}
	runtime.GC()
	stop := peakHeap()
	began := time.Now()
	var rows, bytes int64
	err := r.Read(context.Background(), Query{Functions: []string{"f"}, Start: start, End: start.Add(time.Hour)}, func(l *Line) error {
		rows++
		bytes += int64(len(l.Row)) + 1
		return nil
	})
	took := time.Since(began)
	live, inUse := stop()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if want := int64(objects * body.Records); rows != want {
		t.Errorf("%d rows read, want %d", rows, want)
	}
	if want := int64(objects * body.RawBytes); bytes != want {
		t.Errorf("%d bytes of rows read, want %d", bytes, want)
	}
	if got := c.gets.Load(); got != int64(objects) {
		t.Errorf("%d GETs, want %d", got, objects)
	}
	compressed := uint64(objects * len(body.Data))
	t.Logf("%d objects, %d rows, %.0f MiB of rows (%.1f MiB compressed) in %v (%.0f rows/s, %.0f MiB/s); peak heap: live %.1f MiB, in use %.1f MiB; merge overlaps held back %d times",
		objects, rows, float64(bytes)/(1<<20), float64(compressed)/(1<<20), took.Round(time.Millisecond),
		float64(rows)/took.Seconds(), float64(bytes)/(1<<20)/took.Seconds(), float64(live)/(1<<20), float64(inUse)/(1<<20), r.Counters.Overlaps.Load())
	// MaxOpen + lookahead + in flight = 8 + 4 + 5 objects of ~1 MiB, with a
	// decoder window each for the open ones.
	const bound = 64 << 20
	if inUse > bound {
		t.Errorf("peak heap in use %.1f MiB, want at most %d MiB", float64(inUse)/(1<<20), bound>>20)
	}
	if !raceEnabled && inUse > compressed/2 {
		t.Errorf("peak heap %.1f MiB is more than half of all the objects (%.1f MiB): the reader holds them", float64(inUse)/(1<<20), float64(compressed)/(1<<20))
	}
}
