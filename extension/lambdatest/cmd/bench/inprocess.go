package main

import (
	"bytes"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
)

// stage is one in-process measure: the CPU of one pass over the corpus's
// telemetry bodies and the heap allocations it made per line.
type stage struct {
	name   string
	cpu    time.Duration // per pass
	allocs float64       // per line
}

// pipelineResult is the in-process part of the table.
type pipelineResult struct {
	stages     []stage
	zstd       stage // zstd alone on the pipeline's NDJSON
	lines      int
	lineBytes  int
	bodyBytes  int
	ndjson     int
	compressed int
}

// processCPU is the CPU time (user + system) this process has used; it
// counts the garbage collector's threads too, which is the point.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs pass until it has used budget of CPU, three times, and
// keeps the cheapest round's CPU per pass: other work on a busy machine
// only ever adds. Allocations come from one extra pass.
func measure(budget time.Duration, lines int, pass func()) (time.Duration, float64) {
	pass() // warm caches and pools
	best := time.Duration(1<<63 - 1)
	for range 3 {
		runtime.GC()
		start := processCPU()
		n := 0
		for processCPU()-start < budget || n == 0 {
			pass()
			n++
		}
		best = min(best, (processCPU()-start)/time.Duration(n))
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	pass()
	runtime.ReadMemStats(&m1)
	return best, float64(m1.Mallocs-m0.Mallocs) / float64(lines)
}

// zstdOptions are buffer's batch encoder options (buffer/batch.go,
// encoderOptions): the reference must compress the way sluice does.
func zstdOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithWindowSize(256 << 10),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true),
	}
}

// runPipeline measures the pipeline stage by stage, cumulatively (each
// stage includes the ones above it, as in the extension), next to its
// ceilings: a raw byte scan of the same bodies and zstd alone on the
// NDJSON the pipeline writes.
func runPipeline(c *corpus, budget time.Duration) (*pipelineResult, error) {
	bodies := c.bodies(100, 1<<20)
	r := &pipelineResult{lines: len(c.lines), lineBytes: c.bytes}
	for _, b := range bodies {
		r.bodyBytes += len(b)
	}
	now := time.Unix(corpusT0, 0)
	meta := buffer.Meta{Function: "bench", Version: "$LATEST"}
	redactor, err := buffer.NewRedactor([]string{"all"}, nil)
	if err != nil {
		return nil, fmt.Errorf("redactor: %w", err)
	}
	sampled := buffer.DefaultPolicy()
	sampled.SampleRate, sampled.KeepLevel = 0.1, buffer.LevelError

	dec := telemetry.NewDecoder()
	var row []byte
	var ndjson bytes.Buffer
	batcher := buffer.NewBatcher(meta, buffer.Limits{MaxBytes: buffer.DefaultMaxBytes, MaxAge: 24 * time.Hour}, func() time.Time { return now })
	full := func(p buffer.Policy, red *buffer.Redactor) func() {
		return func() {
			st := buffer.NewStager(p, red)
			emit := func(rec *buffer.Record) { batcher.Add(rec) }
			for _, b := range bodies {
				recs, _ := dec.Decode(b, now)
				for i := range recs {
					st.Add(&recs[i], emit)
				}
			}
			batcher.Seal()
		}
	}
	quote := []byte{'"'}
	passes := []struct {
		name string
		pass func()
	}{
		{"raw byte scan of the bodies (ceiling)", func() {
			n := 0
			for _, b := range bodies {
				n += bytes.Count(b, quote)
			}
			if n == 0 {
				panic("empty corpus")
			}
		}},
		{"decode", func() {
			for _, b := range bodies {
				dec.Decode(b, now)
			}
		}},
		{"+ stage/sample (rate 1)", func() {
			st := buffer.NewStager(buffer.DefaultPolicy(), nil)
			emit := func(*buffer.Record) {}
			for _, b := range bodies {
				recs, _ := dec.Decode(b, now)
				for i := range recs {
					st.Add(&recs[i], emit)
				}
			}
		}},
		{"+ encode NDJSON", func() {
			st := buffer.NewStager(buffer.DefaultPolicy(), nil)
			emit := func(rec *buffer.Record) { row = buffer.AppendRow(row[:0], meta, rec) }
			for _, b := range bodies {
				recs, _ := dec.Decode(b, now)
				for i := range recs {
					st.Add(&recs[i], emit)
				}
			}
		}},
		{"+ zstd: the whole pipeline", full(buffer.DefaultPolicy(), nil)},
		{"whole pipeline, redact=all, sample 0.1", full(sampled, redactor)},
	}
	for _, p := range passes {
		cpu, allocs := measure(budget, r.lines, p.pass)
		r.stages = append(r.stages, stage{name: p.name, cpu: cpu, allocs: allocs})
	}

	// The NDJSON the pipeline writes, then zstd alone on it, in batches of
	// the same size and through the same 64 KiB writes as the batcher.
	st := buffer.NewStager(buffer.DefaultPolicy(), nil)
	for _, b := range bodies {
		recs, _ := dec.Decode(b, now)
		for i := range recs {
			st.Add(&recs[i], func(rec *buffer.Record) {
				ndjson.Write(buffer.AppendRow(row[:0], meta, rec))
			})
		}
	}
	r.ndjson = ndjson.Len()
	enc, err := zstd.NewWriter(nil, zstdOptions()...)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	var dst bytes.Buffer
	compress := func() int {
		total := 0
		data := ndjson.Bytes()
		for len(data) > 0 {
			batch := data[:min(len(data), buffer.DefaultMaxBytes)]
			data = data[len(batch):]
			dst.Reset()
			enc.Reset(&dst)
			for len(batch) > 0 {
				n := min(len(batch), 64<<10)
				_, _ = enc.Write(batch[:n])
				batch = batch[n:]
			}
			_ = enc.Close()
			total += dst.Len()
		}
		return total
	}
	r.compressed = compress()
	cpu, allocs := measure(budget, r.lines, func() { compress() })
	r.zstd = stage{name: "zstd alone on the same NDJSON (reference)", cpu: cpu, allocs: allocs}
	return r, nil
}
