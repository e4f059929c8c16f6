package sinks

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

func TestFallbackWrite(t *testing.T) {
	tests := []struct {
		name string
		rows []string
		want []string
	}{
		{
			name: "rows",
			rows: []string{row("a"), row("b")},
			want: []string{
				`{"sluice":"fallback","time":"2026-03-07T04:05:06.000Z","type":"function","function":"f","version":"$LATEST","message":"a"}`,
				`{"sluice":"fallback","time":"2026-03-07T04:05:06.000Z","type":"function","function":"f","version":"$LATEST","message":"b"}`,
			},
		},
		{name: "empty batch", rows: nil, want: nil},
		{name: "empty object", rows: []string{"{}"}, want: []string{`{"sluice":"fallback"}`}},
		{name: "blank line skipped", rows: []string{"", row("a")}, want: []string{`{"sluice":"fallback",` + row("a")[1:]}},
		{name: "not an object", rows: []string{`plain "text"`}, want: []string{`{"sluice":"fallback","raw":"plain \"text\""}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			f := NewFallback(&out)
			if err := f.Write(t.Context(), testBatch(t, 1, tt.rows...)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got := lines(out.String())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("output mismatch (-want +got):\n%s", diff)
			}
			if n := f.Rows(); n != int64(len(tt.want)) {
				t.Errorf("Rows() = %d, want %d", n, len(tt.want))
			}
			checkJSON(t, got)
		})
	}
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		return []string{"missing final newline: " + s}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// checkJSON fails unless every line is a JSON object marked as fallback.
func checkJSON(t *testing.T, lines []string) {
	t.Helper()
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line %d is not JSON: %v", i, err)
			continue
		}
		if m["sluice"] != "fallback" {
			t.Errorf("line %d: sluice = %v, want fallback", i, m["sluice"])
		}
	}
}

// Many rows and batches: counts add up, every row arrives whole, and
// writes are gathered rather than one per row.
func TestFallbackCounts(t *testing.T) {
	var out countingWriter
	f := NewFallback(&out)
	total := 0
	for seq := uint64(1); seq <= 3; seq++ {
		rs := rows(1000)
		total += len(rs)
		if err := f.Write(t.Context(), testBatch(t, seq, rs...)); err != nil {
			t.Fatal(err)
		}
	}
	if f.Rows() != int64(total) {
		t.Errorf("Rows() = %d, want %d", f.Rows(), total)
	}
	got := lines(out.String())
	if len(got) != total {
		t.Fatalf("%d lines written, want %d", len(got), total)
	}
	checkJSON(t, got)
	if max := total / 10; out.writes > max {
		t.Errorf("%d writes for %d rows, want at most %d", out.writes, total, max)
	}
}

type countingWriter struct {
	bytes.Buffer
	writes  int
	largest int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.largest = max(w.largest, len(p))
	return w.Buffer.Write(p)
}

// A row far larger than the write buffer passes through whole, without
// copies of it piling up.
func TestFallbackHugeRow(t *testing.T) {
	const size = 16 << 20
	huge := row(strings.Repeat("y", size))
	b := testBatch(t, 1, row("before"), huge, row("after"))
	want := sha256.Sum256([]byte(`{"sluice":"fallback",` + row("before")[1:] + "\n" +
		`{"sluice":"fallback",` + huge[1:] + "\n" +
		`{"sluice":"fallback",` + row("after")[1:] + "\n"))

	// Hash the output instead of keeping it, so that the measured memory is
	// the fallback's own.
	h := sha256.New()
	f := NewFallback(h)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := f.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)

	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("output differs from the marked rows")
	}
	if f.Rows() != 3 {
		t.Errorf("Rows() = %d, want 3", f.Rows())
	}
	// The row streams through: the decoder's window and two chunk buffers
	// are all the memory a row may take, however long it is.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MiB for a %d MiB row", float64(alloc)/(1<<20), size>>20)
	if alloc > size/2 {
		t.Errorf("allocated %d MiB for a %d MiB row, want under %d", alloc>>20, size>>20, size/2>>20)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("stdout closed")
	}
	w.after--
	return len(p), nil
}

func TestFallbackWriterFails(t *testing.T) {
	f := NewFallback(&failWriter{})
	err := f.Write(t.Context(), testBatch(t, 7, rows(3)...))
	if err == nil || !strings.Contains(err.Error(), "stdout closed") || !strings.Contains(err.Error(), "batch 7") {
		t.Errorf("Write to a failing writer: err = %v, want one naming the batch and the cause", err)
	}
	if f.Rows() != 0 {
		t.Errorf("Rows() = %d after a failed write, want 0", f.Rows())
	}

	// A huge row fails the same way.
	f = NewFallback(&failWriter{after: 1})
	if err := f.Write(t.Context(), testBatch(t, 8, row(strings.Repeat("z", 200<<10)))); err == nil {
		t.Error("Write of a huge row to a failing writer succeeded")
	}
}

// A damaged batch is still not an error: its intact rows and a row that
// reports the damage are written.
func TestFallbackDamagedBatch(t *testing.T) {
	b := testBatch(t, 9, rows(5)...)
	b.Data = append(b.Data[:len(b.Data)-4:len(b.Data)-4], 0xde, 0xad, 0xbe, 0xef) // break the frame checksum
	var out bytes.Buffer
	f := NewFallback(&out)
	if err := f.Write(t.Context(), b); err != nil {
		t.Fatalf("Write of a damaged batch: %v", err)
	}
	got := lines(out.String())
	checkJSON(t, got)
	if len(got) == 0 {
		t.Fatal("nothing written for a damaged batch")
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(got[len(got)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last["type"] != "sluice.fallback_error" || last["seq"] != 9.0 || last["records"] != 5.0 {
		t.Errorf("last line = %v, want a sluice.fallback_error row for seq 9 with 5 records", last)
	}
	if f.Rows() != int64(len(got)-1) {
		t.Errorf("Rows() = %d, want %d (the intact rows)", f.Rows(), len(got)-1)
	}
}

// Concurrent batches do not interleave within a line. Run with -race.
func TestFallbackConcurrent(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	f := NewFallback(w)
	var wg sync.WaitGroup
	for i := range 4 {
		b := testBatch(t, uint64(i+1), rows(300)...)
		wg.Go(func() {
			if err := f.Write(t.Context(), b); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := lines(out.String())
	if len(got) != 1200 || f.Rows() != 1200 {
		t.Errorf("%d lines, Rows() = %d; want 1200", len(got), f.Rows())
	}
	checkJSON(t, got)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestFallbackClose(t *testing.T) {
	f := NewFallback(&bytes.Buffer{})
	for range 2 {
		if err := f.Close(t.Context()); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func BenchmarkFallback(b *testing.B) {
	batch := testBatch(b, 1, rows(2000)...)
	f := NewFallback(discard{})
	b.SetBytes(int64(batch.RawBytes))
	for b.Loop() {
		if err := f.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Rows around the read buffer's size, objects or not, with or without a
// final newline, come out whole and in order.
func TestFallbackRowSizes(t *testing.T) {
	obj := func(n int) string { // a row of exactly n bytes
		head := `{"time":"2026-03-07T04:05:06.000Z","message":"`
		return head + strings.Repeat("m", n-len(head)-2) + `"}`
	}
	rawRow := func(n int) string { return strings.Repeat("\"é\u2028\x01\xff", n/8+1)[:n] }
	wantRaw := func(s string) string {
		q, _ := json.Marshal(s)
		return `{"sluice":"fallback","raw":` + string(q) + `}`
	}
	for _, n := range []int{fallbackChunk - 100, fallbackChunk - 1, fallbackChunk, fallbackChunk + 1, 3*fallbackChunk + 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := []string{obj(n), row("a"), rawRow(n), obj(n)}
			want := []string{
				`{"sluice":"fallback",` + in[0][1:],
				`{"sluice":"fallback",` + in[1][1:],
				wantRaw(in[2]),
				`{"sluice":"fallback",` + in[3][1:],
			}
			for _, final := range []bool{true, false} {
				b := testBatch(t, 1, in...)
				if !final { // the last row without its newline
					b.Data = compress(t, strings.Join(in, "\n"))
				}
				var out bytes.Buffer
				f := NewFallback(&out)
				if err := f.Write(t.Context(), b); err != nil {
					t.Fatal(err)
				}
				got := lines(out.String())
				if len(got) != len(want) {
					t.Fatalf("final newline %v: %d lines, want %d", final, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("final newline %v: line %d differs: %d bytes, want %d", final, i, len(got[i]), len(want[i]))
					}
				}
				if f.Rows() != int64(len(want)) {
					t.Errorf("Rows() = %d, want %d", f.Rows(), len(want))
				}
			}
		})
	}
}

// A batch damaged in the middle of a long row: the cut row ends its line,
// the error row follows, and the writer is not blamed.
func TestFallbackDamagedHugeRow(t *testing.T) {
	b := testBatch(t, 3, row("a"), row(strings.Repeat("q", 1<<20)))
	b.Data = b.Data[:len(b.Data)*3/4] // truncated mid-frame
	var out bytes.Buffer
	f := NewFallback(&out)
	if err := f.Write(t.Context(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := lines(out.String())
	if len(got) < 2 || !strings.Contains(got[len(got)-1], `"type":"sluice.fallback_error"`) {
		t.Fatalf("want rows then an error row; got %d lines", len(got))
	}
	checkJSON(t, got[len(got)-1:])
}

// The escaper gives what encoding/json gives for the same string,
// wherever the input is cut.
func FuzzEscaper(f *testing.F) {
	for _, s := range []string{"", "plain", "é€😀", "\xff\xfe", "\xe2\x82", "a\u2028b\u2029", "\"\\\n\r\t\x00\x1f", "\xf0\x9f\x98"} {
		f.Add([]byte(s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut1, cut2 uint8) {
		want, _ := json.Marshal(string(in))
		var want2 string
		if err := json.Unmarshal(want, &want2); err != nil {
			t.Fatal(err)
		}
		i := min(int(cut1), len(in))
		j := min(i+int(cut2), len(in))
		var e escaper
		got := []byte{'"'}
		got = e.append(got, in[:i])
		got = e.append(got, in[i:j])
		got = e.append(got, in[j:])
		got = append(e.finish(got), '"')
		var got2 string
		if err := json.Unmarshal(got, &got2); err != nil {
			t.Fatalf("escaped %q is not a JSON string: %v", got, err)
		}
		if got2 != want2 {
			t.Errorf("escape(%q) cut at %d,%d = %q, want %q", in, i, j, got2, want2)
		}
	})
}

// Batches in every format reach stdout as the same NDJSON rows, and a
// damaged one of any format is reported, not fatal.
func TestFallbackFormats(t *testing.T) {
	meta := buffer.Meta{Function: "f", Version: "$LATEST"}
	recs := []buffer.Record{
		{Time: testStart, Type: "function", Message: "plain line"},
		{Time: testStart.Add(time.Millisecond), Type: "function", Level: "ERROR", RequestID: "r-1",
			Message: "with \"quotes\" and é", Fields: json.RawMessage(`{"orderId":42}`)},
		{Time: testStart.Add(2 * time.Millisecond), Type: "platform.report", RequestID: "r-1", Status: "success",
			Metrics: &buffer.Metrics{DurationMs: 12.5, BilledDurationMs: 13, MemorySizeMB: 128, MaxMemoryUsedMB: 70}},
		{Time: testStart.Add(3 * time.Millisecond), Type: "function", Message: strings.Repeat("long ", 40<<10)},
	}
	var want []string
	for i := range recs {
		row := strings.TrimSuffix(string(buffer.AppendRow(nil, meta, &recs[i])), "\n")
		want = append(want, `{"sluice":"fallback",`+row[1:])
	}
	formats := []buffer.Format{buffer.FormatNDJSONZstd, buffer.FormatNDJSONGzip}
	if buffer.ParquetBuilt {
		formats = append(formats, buffer.FormatParquet)
	}
	for _, format := range formats {
		t.Run(format.String(), func(t *testing.T) {
			bt := buffer.NewBatcher(meta, buffer.Limits{Format: format}, func() time.Time { return testStart })
			for i := range recs {
				if s := bt.Add(&recs[i]); len(s) > 0 {
					t.Fatalf("Add sealed %d batches", len(s))
				}
			}
			b := bt.Seal()
			var out bytes.Buffer
			f := NewFallback(&out)
			if err := f.Write(t.Context(), b); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if diff := cmp.Diff(want, lines(out.String())); diff != "" {
				t.Errorf("output mismatch (-want +got):\n%s", diff)
			}
			if f.Rows() != int64(len(want)) {
				t.Errorf("Rows() = %d, want %d", f.Rows(), len(want))
			}

			b.Data = b.Data[:len(b.Data)/2]
			out.Reset()
			if err := f.Write(t.Context(), b); err != nil {
				t.Fatalf("Write of a damaged batch: %v", err)
			}
			got := lines(out.String())
			if len(got) == 0 || !strings.Contains(got[len(got)-1], `"type":"sluice.fallback_error"`) {
				t.Fatalf("damaged batch: want an error row last; got %d lines", len(got))
			}
			checkJSON(t, got[len(got)-1:]) // a row cut by the damage may end its line unfinished
		})
	}
}
