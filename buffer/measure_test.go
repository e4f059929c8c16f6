//go:build parquet

package buffer

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
)

// measureBytes is how much NDJSON TestMeasureFormats writes.
const measureBytes = 100 << 20

// TestMeasureFormats writes the same ~100 MB of benchCorpus logs (70% text
// lines, 25% JSON records, 5% platform.report) through a Batcher in each
// format, in default 8 MiB batches and in small 256 KiB ones, and reports
// what the format choice in layer/athena/README.md rests on: bytes stored,
// bytes a one-column query reads, the writer's CPU per GB and its peak live
// heap; then the codecs alone, which the gzip level was chosen by. It takes
// about 30 seconds, so it only runs with SLUICE_TEST_MEASURE=1:
//
//	SLUICE_TEST_MEASURE=1 go test -run TestMeasureFormats -v ./buffer
func TestMeasureFormats(t *testing.T) {
	if os.Getenv("SLUICE_TEST_MEASURE") == "" {
		t.Skip("set SLUICE_TEST_MEASURE=1 to measure the formats (about 30 seconds)")
	}
	recs := measureCorpus()
	raw := 0
	for i := range recs {
		raw += len(AppendRow(nil, testMeta, &recs[i]))
	}
	t.Logf("corpus: %d records, %.1f MB of NDJSON; GOMAXPROCS %d, %s/%s", len(recs), float64(raw)/1e6,
		runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	t.Logf("| format | batch | objects | stored MB | ratio | `level`-only query reads MB | CPU s/GB | ns/record | peak live heap MiB | allocated MB/GB |")
	t.Logf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	var cols map[string]float64
	for _, maxBytes := range []int{DefaultMaxBytes, 256 << 10} {
		for _, f := range formats {
			m := measureFormat(t, f, recs, maxBytes)
			col := m.stored
			if f == FormatParquet {
				col = int(m.col["level"])
				if maxBytes == DefaultMaxBytes {
					cols = m.col
				}
			}
			t.Logf("| %s | %d KiB | %d | %.2f | %.2fx | %.3f | %.2f | %.0f | %.1f | %.0f |", f, maxBytes>>10, m.objects, float64(m.stored)/1e6,
				float64(raw)/float64(m.stored), float64(col)/1e6, m.cpu.Seconds()/(float64(raw)/1e9),
				float64(m.cpu.Nanoseconds())/float64(len(recs)), float64(m.peak)/(1<<20), float64(m.alloc)/(float64(raw)/1e9)/1e6)
		}
	}
	var sb strings.Builder
	for _, c := range slices.Sorted(maps.Keys(cols)) {
		fmt.Fprintf(&sb, " %s %.3f;", c, cols[c]/1e6)
	}
	t.Logf("Parquet, 8 MiB batches, MB a query of one column reads (its chunks and the footers):%s", sb.String())
	measureCodecs(t, recs)
}

// measureCorpus returns benchCorpus records whose NDJSON rows add up to
// about measureBytes.
func measureCorpus() []Record {
	recs := benchCorpus(measureBytes / 150)
	raw := 0
	for i := range recs {
		raw += len(AppendRow(nil, testMeta, &recs[i]))
		if raw >= measureBytes {
			return recs[:i+1]
		}
	}
	return recs
}

type measured struct {
	objects int
	stored  int
	col     map[string]float64 // Parquet: bytes a query of that one column reads
	cpu     time.Duration      // user + system CPU of the writing pass
	peak    uint64             // live heap above the corpus, sampled
	alloc   uint64             // bytes allocated by the writing pass
}

func measureFormat(t *testing.T, f Format, recs []Record, maxBytes int) measured {
	t.Helper()
	var m measured
	var batches []*Batch
	// Pass 1: time. Nothing else runs; sealed batches are only kept.
	b := NewBatcher(testMeta, Limits{Format: f, MaxBytes: maxBytes}, fixedClock)
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime(t)
	for i := range recs {
		batches = append(batches, b.Add(&recs[i])...)
	}
	if s := b.Seal(); s != nil {
		batches = append(batches, s)
	}
	m.cpu = cpuTime(t) - cpu0
	runtime.ReadMemStats(&ms1)
	m.alloc = ms1.TotalAlloc - ms0.TotalAlloc
	for _, s := range batches {
		m.objects++
		m.stored += len(s.Data)
	}
	if f == FormatParquet {
		m.col = map[string]float64{}
		for _, s := range batches {
			for c, n := range parquetColumnReads(t, s.Data) {
				m.col[c] += float64(n)
			}
		}
	}
	batches = nil

	// Pass 2: memory, over the first three batches' worth of records (they
	// are all alike). The live heap is sampled after a collection every 500
	// records (about 180 KB of NDJSON, so 46 samples per 8 MiB batch);
	// sealed batches are dropped at once, as a sink would.
	b = NewBatcher(testMeta, Limits{Format: f, MaxBytes: maxBytes}, fixedClock)
	// Twice, so that what sync.Pools kept from pass 1 is gone.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	base := ms0.HeapAlloc
	for i, fed := 0, 0; i < len(recs) && fed < 3*maxBytes; i++ {
		b.Add(&recs[i])
		fed += len(AppendRow(nil, testMeta, &recs[i]))
		if i%500 == 499 {
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			m.peak = max(m.peak, ms1.HeapAlloc-min(base, ms1.HeapAlloc))
		}
	}
	b.Seal()
	return m
}

// parquetColumnReads returns, per column, the bytes a query that reads only
// that column fetches from one Parquet file: its column chunks plus the
// footer that locates them.
func parquetColumnReads(t *testing.T, data []byte) map[string]int64 {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	footer := int64(len(data)) - footerStart(t, data)
	out := map[string]int64{}
	paths := f.Schema().Columns() // the chunks of a row group are in this order
	for _, rg := range f.Metadata().RowGroups {
		for i, cc := range rg.Columns {
			out[strings.Join(paths[i], ".")] += cc.MetaData.TotalCompressedSize
		}
	}
	for c := range out {
		out[c] += footer
	}
	return out
}

// footerStart returns the offset of a Parquet file's footer: the thrift
// metadata, its length and the closing magic.
func footerStart(t *testing.T, data []byte) int64 {
	t.Helper()
	n := len(data)
	if n < 12 || string(data[n-4:]) != "PAR1" {
		t.Fatal("not a parquet file")
	}
	l := int64(data[n-8]) | int64(data[n-7])<<8 | int64(data[n-6])<<16 | int64(data[n-5])<<24
	return int64(n) - 8 - l
}

// measureCodecs reports the codecs on their own, on the corpus's NDJSON in
// 8 MiB objects: what the gzip level was chosen by.
func measureCodecs(t *testing.T, recs []Record) {
	t.Helper()
	var objs [][]byte
	var cur []byte
	raw := 0
	for i := range recs {
		cur = AppendRow(cur, testMeta, &recs[i])
		if len(cur) >= DefaultMaxBytes {
			objs = append(objs, cur)
			raw += len(cur)
			cur = nil
		}
	}
	objs = append(objs, cur)
	raw += len(cur)
	type codec struct {
		name string
		w    compressor
	}
	var codecs []codec
	for _, l := range []int{1, 2, 3, 5, 6, 9} {
		w, err := gzip.NewWriterLevel(nil, l)
		if err != nil {
			t.Fatal(err)
		}
		codecs = append(codecs, codec{fmt.Sprintf("gzip -%d", l), w})
	}
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithWindowSize(windowSize), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		codecs = append(codecs, codec{"zstd " + l.String(), w})
	}
	t.Logf("| codec (8 MiB objects) | ratio | MB/s | CPU s/GB |")
	t.Logf("| --- | --- | --- | --- |")
	var out bytes.Buffer
	for _, c := range codecs {
		n := 0
		cpu0 := cpuTime(t)
		for _, o := range objs {
			out.Reset()
			c.w.Reset(&out)
			if _, err := c.w.Write(o); err != nil {
				t.Fatal(err)
			}
			if err := c.w.Close(); err != nil {
				t.Fatal(err)
			}
			n += out.Len()
		}
		cpu := cpuTime(t) - cpu0
		t.Logf("| %s | %.2fx | %.0f | %.2f |", c.name, float64(raw)/float64(n), float64(raw)/1e6/cpu.Seconds(), cpu.Seconds()/(float64(raw)/1e9))
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
