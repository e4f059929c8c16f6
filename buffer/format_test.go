//go:build parquet

package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/parquet-go/parquet-go"
)

func TestParseFormat(t *testing.T) {
	tests := []struct {
		format, compression string
		want                Format
		wantErr             string
	}{
		{"", "", FormatNDJSONZstd, ""},
		{"ndjson", "", FormatNDJSONZstd, ""},
		{"NDJSON", "zstd", FormatNDJSONZstd, ""},
		{"ndjson", "gzip", FormatNDJSONGzip, ""},
		{"", " GZIP ", FormatNDJSONGzip, ""},
		{"parquet", "", FormatParquet, ""},
		{"Parquet", "zstd", FormatParquet, ""},
		{"parquet", "gzip", 0, `"gzip" with format "parquet"`},
		{"json", "", 0, `format "json"`},
		{"ndjson", "snappy", 0, `compression "snappy"`},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.compression, func(t *testing.T) {
			got, err := ParseFormat(tt.format, tt.compression)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFormat(%q, %q) = %v, %v; want an error quoting %s", tt.format, tt.compression, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseFormat(%q, %q) = %v, %v; want %v", tt.format, tt.compression, got, err, tt.want)
			}
		})
	}
}

func TestFormatNames(t *testing.T) {
	tests := []struct {
		f         Format
		ext, name string
	}{
		{FormatNDJSONZstd, ".json.zst", "ndjson+zstd"},
		{FormatNDJSONGzip, ".json.gz", "ndjson+gzip"},
		{FormatParquet, ".parquet", "parquet"},
		{Format(99), ".json.zst", "ndjson+zstd"},
	}
	for _, tt := range tests {
		if tt.f.Ext() != tt.ext || tt.f.String() != tt.name {
			t.Errorf("Format(%d) = %q, %q; want %q, %q", tt.f, tt.f.Ext(), tt.f.String(), tt.ext, tt.name)
		}
	}
	var zero Limits
	if zero.Format != FormatNDJSONZstd || Ext != FormatNDJSONZstd.Ext() {
		t.Errorf("the zero Limits write %v (%s); want %v, the format of Ext", zero.Format, Ext, FormatNDJSONZstd)
	}
}

// sealOne writes recs into one batch of format f.
func sealOne(t testing.TB, f Format, recs []Record) *Batch {
	t.Helper()
	b := NewBatcher(testMeta, Limits{Format: f, MaxBytes: 1 << 30}, fixedClock)
	for i := range recs {
		if s := b.Add(&recs[i]); len(s) > 0 {
			t.Fatalf("Add(record %d) sealed %d batches", i, len(s))
		}
	}
	return b.Seal()
}

// Every format decodes to exactly the rows AppendRow writes, whatever the
// record holds: DecodeBatch is how the fallback, the spill and the tests
// read all three.
func TestFormatsDecodeToAppendRow(t *testing.T) {
	recs := []Record{
		{Time: testTime, Type: "function", Message: "plain"},
		{Time: testTime, Type: "", Message: ""}, // always-written keys stay, empty
		{Time: testTime, Type: "function", Message: "bad \xff utf-8 \xed\xa0\x80", Fields: []byte("{\"k\":\"\xfe\"}")},
		{Time: testTime, Type: "platform.report", Metrics: &Metrics{DurationMs: math.NaN(), BilledDurationMs: math.Inf(1), InitDurationMs: math.Copysign(0, -1), MemorySizeMB: -1}},
		{Time: testTime, Type: "platform.report", Metrics: &Metrics{}},
		{Time: testTime.Add(-59 * time.Minute), Type: "x", Message: "\u2028\u2029\x00\n", Level: "ERROR", Status: "s", ErrorType: "e", RequestID: "r"},
		{Time: time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC), Type: "before the epoch"},
	}
	var want []string
	for i := range recs {
		want = append(want, strings.TrimSuffix(string(AppendRow(nil, testMeta, &recs[i])), "\n"))
	}
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			// One batch per record: they span more than an hour.
			var got []string
			for i := range recs {
				bt := sealOne(t, f, recs[i:i+1])
				if DetectFormat(bt.Data) != f {
					t.Errorf("DetectFormat = %v, want %v", DetectFormat(bt.Data), f)
				}
				lines, err := DecodeBatch(bt.Data)
				if err != nil {
					t.Fatalf("DecodeBatch: %v", err)
				}
				for _, l := range lines {
					got = append(got, string(l))
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded rows differ from AppendRow's (-want +got):\n%s", diff)
			}
		})
	}
}

// The Parquet file has the columns, types and order the Athena DDL in
// layer/athena declares: the column names are AppendRow's keys.
func TestParquetSchema(t *testing.T) {
	bt := sealOne(t, FormatParquet, []Record{{Time: testTime, Type: "function"}})
	f, err := parquet.OpenFile(bytes.NewReader(bt.Data), int64(len(bt.Data)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range f.Schema().Fields() {
		opt := ""
		if c.Optional() {
			opt = " optional"
		}
		lt := ""
		if l := c.Type().LogicalType(); l != nil {
			lt = " " + l.String()
		}
		got = append(got, fmt.Sprintf("%s %s%s%s", c.Name(), c.Type().Kind(), lt, opt))
	}
	want := []string{
		"time INT64 TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)",
		"type BYTE_ARRAY STRING",
		"function BYTE_ARRAY STRING",
		"version BYTE_ARRAY STRING",
		"request_id BYTE_ARRAY STRING optional",
		"level BYTE_ARRAY STRING optional",
		"message BYTE_ARRAY STRING optional",
		"status BYTE_ARRAY STRING optional",
		"error_type BYTE_ARRAY STRING optional",
		"duration_ms DOUBLE optional",
		"billed_duration_ms DOUBLE optional",
		"init_duration_ms DOUBLE optional",
		"restore_duration_ms DOUBLE optional",
		"memory_size_mb INT64 INT(64,true) optional",
		"max_memory_used_mb INT64 INT(64,true) optional",
		"produced_bytes INT64 INT(64,true) optional",
		"fields BYTE_ARRAY STRING optional",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parquet schema (-want +got):\n%s", diff)
	}
	if cc := f.Metadata().RowGroups[0].Columns[0].MetaData.Codec; cc.String() != "ZSTD" {
		t.Errorf("codec = %v, want ZSTD", cc)
	}
}

// A Parquet batch far larger than a row group keeps the writer's own memory
// (the heap besides the file it is writing) bounded: open pages, one row
// group's compressed pages and the encoders, not the batch.
func TestParquetMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 80 MB")
	}
	recs := benchCorpus(10000)
	for i := range recs {
		recs[i].Time = testTime // one hour, so the batch only seals by size
	}
	const batch = 80 << 20 // 2.5 row groups
	b := NewBatcher(testMeta, Limits{Format: FormatParquet, MaxBytes: batch}, fixedClock)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak, peakAt uint64
	var sealed *Batch
	for i := 0; sealed == nil; i++ {
		if s := b.Add(&recs[i%len(recs)]); len(s) > 0 {
			sealed = s[0]
			break
		}
		if i%4000 == 3999 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			own := ms.HeapAlloc - min(base, ms.HeapAlloc) - uint64(b.out.Cap())
			if own > peak {
				peak, peakAt = own, uint64(b.raw)
			}
		}
	}
	t.Logf("batch of %d MiB NDJSON: %.1f MiB Parquet; the writer's own heap peaked at %.1f MiB after %d MiB",
		sealed.RawBytes>>20, float64(len(sealed.Data))/(1<<20), float64(peak)/(1<<20), peakAt>>20)
	if peak > 24<<20 {
		t.Errorf("writer holds %d MiB besides the file, want it bounded by pages and one row group (under 24 MiB)", peak>>20)
	}
	f, err := parquet.OpenFile(bytes.NewReader(sealed.Data), int64(len(sealed.Data)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); n < 3 {
		t.Errorf("%d row groups in an %d MiB batch, want one per %d MiB", n, batch>>20, pqRowGroupBytes>>20)
	}
	if f.NumRows() != int64(sealed.Records) {
		t.Errorf("file has %d rows, batch says %d", f.NumRows(), sealed.Records)
	}
}

func TestDecodeBatchGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, "a\nbb\n")
	zw.Close()
	// A second member, as concatenated gzip files have.
	zw.Reset(&buf)
	io.WriteString(zw, "ccc\n")
	zw.Close()
	got, err := DecodeBatch(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var gotS []string
	for _, l := range got {
		gotS = append(gotS, string(l))
	}
	if diff := cmp.Diff([]string{"a", "bb", "ccc"}, gotS); diff != "" {
		t.Errorf("DecodeBatch mismatch (-want +got):\n%s", diff)
	}
}

// Damaged batches of every format are errors, never a crash, and the rows
// before the damage still come out.
func TestDecodeDamaged(t *testing.T) {
	recs := benchCorpus(3000)
	for i := range recs {
		recs[i].Time = testTime
	}
	for _, f := range formats {
		good := sealOne(t, f, recs).Data
		flipped := bytes.Clone(good)
		for i := len(flipped) / 3; i < len(flipped)*2/3; i += 97 {
			flipped[i] ^= 0x5a
		}
		footer := bytes.Clone(good)
		for i := len(footer) - 200; i < len(footer)-8; i++ {
			footer[i] = 0xff
		}
		for name, data := range map[string][]byte{
			"truncated": good[:len(good)/2],
			"flipped":   flipped,
			"footer":    footer,
			"magic":     good[:8],
		} {
			t.Run(f.String()+"/"+name, func(t *testing.T) {
				n := 0
				var errs []error
				for line, err := range rows(data, "decode") {
					if err != nil {
						errs = append(errs, err)
						continue
					}
					if _, perr := ParseRow(line); perr != nil && f == FormatParquet {
						t.Errorf("a Parquet row decoded from a damaged file is not a row: %v", perr)
					}
					n++
				}
				if len(errs) != 1 && !(f == FormatParquet && name == "flipped" && len(errs) == 0) {
					t.Errorf("%d rows and errors %v; want exactly one error", n, errs)
				}
			})
		}
	}
}

func BenchmarkRows(b *testing.B) {
	recs := benchCorpus(30000)
	for i := range recs {
		recs[i].Time = testTime
	}
	for _, f := range formats {
		bt := sealOne(b, f, recs)
		b.Run(f.String(), func(b *testing.B) {
			b.SetBytes(int64(bt.RawBytes))
			b.ReportAllocs()
			for b.Loop() {
				for _, err := range Rows(bt) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// FuzzDecodeBatch feeds damaged NDJSON batches to the decoder, which reads
// spilled files back: an error is fine, a crash is not. Parquet is left out:
// parquet-go allocates whatever length a damaged file's metadata claims (up
// to gigabytes, a fatal out-of-memory), which only the footer length is
// checked against; TestDecodeDamaged covers the damage a spilled Parquet
// batch can plausibly suffer.
func FuzzDecodeBatch(f *testing.F) {
	recs := benchCorpus(40)
	for i := range recs {
		recs[i].Time = testTime
	}
	for _, format := range []Format{FormatNDJSONZstd, FormatNDJSONGzip} {
		f.Add(sealOne(f, format, recs).Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if DetectFormat(data) == FormatParquet {
			t.Skip("see above")
		}
		for line, err := range rows(data, "fuzz") {
			if err == nil && bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q holds a newline", line)
			}
		}
	})
}

// A Parquet column is NULL exactly where AppendRow leaves the key out, for
// any mix of present and absent values in a row group: Athena's count(),
// IS NULL and the aggregates in queries.sql depend on it.
func TestParquetNulls(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	// Each stretch of rows leaves values out at its own rate: real columns
	// are mostly NULL (error_type) or mostly not (message), and runs of
	// either are what a NULL scan can get wrong.
	absent := func(i int) bool {
		rate := []int{2, 50, 98}[i/500%3]
		return rng.IntN(100) < rate
	}
	var recs []Record
	for i := range 4500 {
		r := randRecord(rng)
		r.Time = testTime
		for _, s := range []*string{&r.RequestID, &r.Level, &r.Message, &r.Status, &r.ErrorType} {
			if absent(i) {
				*s = ""
			}
		}
		if absent(i) {
			r.Fields = nil
		}
		if absent(i) {
			r.Metrics = nil
		}
		if m := r.Metrics; m != nil {
			for _, f := range []*float64{&m.DurationMs, &m.BilledDurationMs, &m.InitDurationMs, &m.RestoreDurationMs} {
				if absent(i) {
					*f = []float64{0, math.NaN(), math.Inf(-1)}[rng.IntN(3)]
				}
			}
			for _, n := range []*int64{&m.MemorySizeMB, &m.MaxMemoryUsedMB, &m.ProducedBytes} {
				if absent(i) {
					*n = 0
				}
			}
		}
		recs = append(recs, r)
	}
	bt := sealOne(t, FormatParquet, recs)
	f, err := parquet.OpenFile(bytes.NewReader(bt.Data), int64(len(bt.Data)))
	if err != nil {
		t.Fatal(err)
	}
	names := f.Schema().Columns()
	rows := make([]parquet.Row, len(recs)+1)
	n, err := parquet.NewReader(f).ReadRows(rows)
	if n != len(recs) || (err != nil && !errors.Is(err, io.EOF)) {
		t.Fatalf("read %d rows, %v; want %d", n, err, len(recs))
	}
	for i, row := range rows[:n] {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(AppendRow(nil, testMeta, &recs[i]), &keys); err != nil {
			t.Fatal(err)
		}
		for _, v := range row {
			name := names[v.Column()][0]
			if _, written := keys[name]; written == v.IsNull() {
				t.Fatalf("row %d: column %s NULL = %v, but NDJSON writes the key: %v", i, name, v.IsNull(), written)
			}
		}
	}
}
