package buffer

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestEncoderOptions(t *testing.T) {
	if _, err := zstd.NewWriter(nil, encoderOptions()...); err != nil {
		t.Fatalf("zstd.NewWriter(encoderOptions): %v", err)
	}
	if _, err := gzip.NewWriterLevel(nil, gzipLevel); err != nil {
		t.Fatalf("gzip.NewWriterLevel(%d): %v", gzipLevel, err)
	}
}

// formats are the formats every Batcher test runs in.
var formats = func() []Format {
	if ParquetBuilt {
		return []Format{FormatNDJSONZstd, FormatNDJSONGzip, FormatParquet}
	}
	return []Format{FormatNDJSONZstd, FormatNDJSONGzip}
}()

// fixedClock is a wall clock for tests that do not exercise age.
func fixedClock() time.Time { return testTime }

// textRecord returns a record of type typ at time at whose row is exactly
// size bytes (with the newline) under testMeta.
func textRecord(t *testing.T, typ string, size int, at time.Time) *Record {
	t.Helper()
	r := &Record{Time: at, Type: typ, RequestID: "r-1", Message: "x"}
	base := len(AppendRow(nil, testMeta, r)) - 1 // the row with an empty message
	if size < base {
		t.Fatalf("textRecord(%d): rows are at least %d bytes", size, base)
	}
	r.Message = strings.Repeat("x", size-base)
	if n := len(AppendRow(nil, testMeta, r)); n != size {
		t.Fatalf("textRecord(%d): row is %d bytes", size, n)
	}
	return r
}

// summary is the part of a Batch the tests compare.
type summary struct {
	Seq      uint64
	Start    time.Time
	Ext      string
	Records  int
	Lines    int
	RawBytes int
}

func summarize(bs []*Batch) []summary {
	var out []summary
	for _, b := range bs {
		out = append(out, summary{b.Seq, b.Start, b.Ext, b.Records, b.Lines, b.RawBytes})
	}
	return out
}

func TestBatcherAdd(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 22, 59, 59, 999_000_000, time.UTC)
	t1 := t0.Add(time.Millisecond) // the next hour
	tests := []struct {
		name     string
		maxBytes int
		adds     []add
		final    *summary // what Seal returns at the end
	}{
		{
			name:     "under the limit nothing seals",
			maxBytes: 1000,
			adds:     []add{{size: 300, at: t0}, {size: 300, at: t0}, {size: 300, at: t0}},
			final:    &summary{1, t0, Ext, 3, 3, 900},
		},
		{
			name:     "seals when the size is reached exactly",
			maxBytes: 1000,
			adds: []add{
				{size: 500, at: t0},
				{size: 500, at: t0, want: []summary{{1, t0, Ext, 2, 2, 1000}}},
				{size: 200, at: t0},
			},
			final: &summary{2, t0, Ext, 1, 1, 200},
		},
		{
			name:     "the row that crosses the limit goes in",
			maxBytes: 1000,
			adds: []add{
				{size: 900, at: t0},
				{size: 200, at: t0, want: []summary{{1, t0, Ext, 2, 2, 1100}}},
			},
		},
		{
			name:     "an hour change seals the open batch first",
			maxBytes: 1000,
			adds: []add{
				{size: 200, at: t0},
				{size: 200, at: t0},
				{size: 200, at: t1, want: []summary{{1, t0, Ext, 2, 2, 400}}},
				{size: 200, at: t1.Add(59 * time.Minute)},
			},
			final: &summary{2, t1, Ext, 2, 2, 400},
		},
		{
			name:     "a record of an earlier hour also seals",
			maxBytes: 1000,
			adds: []add{
				{size: 200, at: t1},
				{size: 200, at: t0, want: []summary{{1, t1, Ext, 1, 1, 200}}},
			},
			final: &summary{2, t0, Ext, 1, 1, 200},
		},
		{
			name:     "a giant record goes alone",
			maxBytes: 1000,
			adds: []add{
				{size: 300, at: t0},
				{size: 5000, at: t0, want: []summary{{1, t0, Ext, 1, 1, 300}, {2, t0, Ext, 1, 1, 5000}}},
				{size: 300, at: t0},
			},
			final: &summary{3, t0, Ext, 1, 1, 300},
		},
		{
			name:     "a giant first record seals at once",
			maxBytes: 1000,
			adds:     []add{{size: 1000, at: t0, want: []summary{{1, t0, Ext, 1, 1, 1000}}}},
		},
		{
			name:     "a giant record in a new hour seals twice",
			maxBytes: 1000,
			adds: []add{
				{size: 300, at: t0},
				{size: 3000, at: t1, want: []summary{{1, t0, Ext, 1, 1, 300}, {2, t1, Ext, 1, 1, 3000}}},
			},
		},
		{
			name:     "a giant row larger than a chunk",
			maxBytes: 1000,
			adds: []add{
				{size: 300, at: t0},
				{size: 3 * chunkSize, at: t0, want: []summary{{1, t0, Ext, 1, 1, 300}, {2, t0, Ext, 1, 1, 3 * chunkSize}}},
				{size: 300, at: t0},
			},
			final: &summary{3, t0, Ext, 1, 1, 300},
		},
		{
			name:     "only function rows are lines",
			maxBytes: 1000,
			adds: []add{
				{size: 200, at: t0, typ: "platform.start"},
				{size: 200, at: t0},
				{size: 200, at: t0, typ: "platform.report"},
				{size: 200, at: t0, typ: "sluice.malformed"},
				{size: 200, at: t0, want: []summary{{1, t0, Ext, 5, 2, 1000}}},
			},
		},
	}
	for _, f := range formats {
		for _, tt := range tests {
			t.Run(f.String()+"/"+tt.name, func(t *testing.T) {
				testBatcherAdd(t, f, tt.maxBytes, tt.adds, tt.final)
			})
		}
	}
}

type add struct {
	size int       // row size in bytes
	at   time.Time // record time
	typ  string    // record type; "function" when empty
	want []summary // batches Add returns
}

// withExt sets the Ext of every summary to ext: the tables say Ext.
func withExt(ss []summary, ext string) []summary {
	out := slices.Clone(ss)
	for i := range out {
		out[i].Ext = ext
	}
	return out
}

func testBatcherAdd(t *testing.T, f Format, maxBytes int, adds []add, final *summary) {
	b := NewBatcher(testMeta, Limits{MaxBytes: maxBytes, Format: f}, fixedClock)
	var all []*Batch
	for i, a := range adds {
		typ := a.typ
		if typ == "" {
			typ = "function"
		}
		r := textRecord(t, typ, a.size, a.at)
		got := b.Add(r)
		if diff := cmp.Diff(withExt(a.want, f.Ext()), summarize(got)); diff != "" {
			t.Errorf("Add #%d (%d bytes) sealed mismatch (-want +got):\n%s", i, a.size, diff)
		}
		all = append(all, got...)
	}
	got := b.Seal()
	if got != nil {
		all = append(all, got)
	}
	var gotFinal, wantFinal *summary
	if got != nil {
		gotFinal = &summarize([]*Batch{got})[0]
	}
	if final != nil {
		wantFinal = &withExt([]summary{*final}, f.Ext())[0]
	}
	if diff := cmp.Diff(wantFinal, gotFinal); diff != "" {
		t.Errorf("final Seal mismatch (-want +got):\n%s", diff)
	}
	if s := b.Seal(); s != nil {
		t.Errorf("second Seal = batch %d, want nil", s.Seq)
	}
	for _, bt := range all {
		checkBatch(t, bt)
	}
}

// checkBatch decodes bt and checks its counters against its rows.
func checkBatch(t *testing.T, bt *Batch) {
	t.Helper()
	lines, err := DecodeBatch(bt.Data)
	if err != nil {
		t.Fatalf("batch %d: DecodeBatch: %v", bt.Seq, err)
	}
	raw, fn := 0, 0
	for _, l := range lines {
		raw += len(l) + 1
		row, err := ParseRow(l)
		if err != nil {
			t.Fatalf("batch %d: ParseRow: %v", bt.Seq, err)
		}
		if row.Type == "function" {
			fn++
		}
		if !row.Time.Truncate(time.Hour).Equal(bt.Start.Truncate(time.Hour)) {
			t.Errorf("batch %d starting %v holds a row of %v", bt.Seq, bt.Start, row.Time)
		}
	}
	if len(lines) != bt.Records || raw != bt.RawBytes || fn != bt.Lines {
		t.Errorf("batch %d says %d records, %d bytes, %d lines; holds %d, %d, %d",
			bt.Seq, bt.Records, bt.RawBytes, bt.Lines, len(lines), raw, fn)
	}
	f := DetectFormat(bt.Data)
	if f.Ext() != bt.Ext {
		t.Errorf("batch %d: Ext %q holds %s data", bt.Seq, bt.Ext, f)
	}
	if f != FormatNDJSONZstd {
		return
	}
	var h zstd.Header
	if err := h.Decode(bt.Data); err != nil {
		t.Fatalf("batch %d: zstd header: %v", bt.Seq, err)
	}
	if h.WindowSize > windowSize {
		t.Errorf("batch %d: zstd window %d, want at most %d", bt.Seq, h.WindowSize, windowSize)
	}
}

func TestBatcherSealByAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxAge = time.Minute
		// No minimum: this test is about age alone (TestBatcherHold
		// covers small batches).
		b := NewBatcher(testMeta, Limits{MaxAge: maxAge, MinBytes: -1}, time.Now)
		if d, ok := b.UntilNext(); ok {
			t.Fatalf("UntilNext before any Add = %v, true; want false", d)
		}
		if b.Due() {
			t.Fatal("Due before any Add = true")
		}
		b.Add(&Record{Time: time.Now(), Type: "function", Message: "first"})
		if d, ok := b.UntilNext(); !ok || d != maxAge {
			t.Fatalf("UntilNext after Add = %v, %v; want %v, true", d, ok, maxAge)
		}

		// The owner's loop: a timer armed from UntilNext.
		time.Sleep(20 * time.Second)
		b.Add(&Record{Time: time.Now(), Type: "function", Message: "second"})
		if d, ok := b.UntilNext(); !ok || d != maxAge-20*time.Second {
			t.Fatalf("UntilNext = %v, %v; want %v, true: age counts from the first Add", d, ok, maxAge-20*time.Second)
		}
		if b.Due() {
			t.Fatal("Due after 20s = true")
		}
		start := time.Now()
		d, _ := b.UntilNext()
		<-time.After(d)
		if !b.Due() {
			t.Fatalf("Due after %v = false", time.Since(start))
		}
		if d, ok := b.UntilNext(); !ok || d != 0 {
			t.Fatalf("UntilNext when due = %v, %v; want 0, true", d, ok)
		}
		got := b.Seal()
		if got == nil || got.Records != 2 || got.Seq != 1 {
			t.Fatalf("Seal = %+v, want batch 1 with 2 records", got)
		}
		if d, ok := b.UntilNext(); ok {
			t.Fatalf("UntilNext after Seal = %v, true; want false", d)
		}

		// The next batch's age starts at its own first Add.
		time.Sleep(5 * time.Minute)
		b.Add(&Record{Time: time.Now(), Type: "function"})
		if b.Due() {
			t.Error("Due right after the first Add of a new batch = true")
		}
		if d, ok := b.UntilNext(); !ok || d != maxAge {
			t.Errorf("UntilNext of the new batch = %v, %v; want %v, true", d, ok, maxAge)
		}
	})
}

// TestBatcherHold checks the rule that keeps PUTs worth their price: age
// alone seals a batch at MaxAge only once it holds MinBytes; a smaller one
// is held until MaxHold, or until it grows to MinBytes (then MaxAge from
// its first Add applies again). The clock is synctest's.
func TestBatcherHold(t *testing.T) {
	const (
		maxAge   = time.Minute
		maxHold  = 15 * time.Minute
		minBytes = 4 << 10
		rowSize  = 1 << 10
	)
	type step struct {
		wait      time.Duration // then
		add       int           // rows of rowSize bytes added
		short     bool          // and one row of rowSize-1 bytes
		wantDue   bool
		wantUntil time.Duration
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"a tiny batch is held past MaxAge until MaxHold", []step{
			{add: 1, wantUntil: maxHold},
			{wait: maxAge, wantUntil: maxHold - maxAge},
			{wait: maxHold - maxAge - time.Second, wantUntil: time.Second},
			{wait: time.Second, wantDue: true},
		}},
		{"a batch reaching MinBytes late is due at once", []step{
			{add: 1, wantUntil: maxHold},
			{wait: 5 * time.Minute, add: 3, wantDue: true},
		}},
		{"a batch reaching MinBytes early waits for MaxAge", []step{
			{add: 2, wantUntil: maxHold},
			{wait: 10 * time.Second, add: 2, wantUntil: maxAge - 10*time.Second},
			{wait: maxAge - 10*time.Second, wantDue: true},
		}},
		{"one byte short of MinBytes is still held", []step{
			{add: 3, short: true, wantUntil: maxHold},
			{wait: maxAge, wantUntil: maxHold - maxAge},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := NewBatcher(testMeta, Limits{MaxAge: maxAge, MaxHold: maxHold, MinBytes: minBytes}, time.Now)
				start := time.Now()
				for i, s := range c.steps {
					time.Sleep(s.wait)
					for range s.add {
						// Records keep the first one's time: no hour boundary.
						if sealed := b.Add(textRecord(t, "function", rowSize, testTime)); sealed != nil {
							t.Fatalf("step %d: Add sealed %d batches, want none", i, len(sealed))
						}
					}
					if s.short {
						b.Add(textRecord(t, "function", rowSize-1, testTime))
					}
					at := time.Since(start)
					if got := b.Due(); got != s.wantDue {
						t.Fatalf("step %d (%v in): Due = %v, want %v", i, at, got, s.wantDue)
					}
					want := s.wantUntil
					if s.wantDue {
						want = 0
					}
					if d, ok := b.UntilNext(); !ok || d != want {
						t.Fatalf("step %d (%v in): UntilNext = %v, %v; want %v, true", i, at, d, ok, want)
					}
				}
			})
		})
	}
}

func TestBatcherLen(t *testing.T) {
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) { testBatcherLen(t, f) })
	}
}

func testBatcherLen(t *testing.T, f Format) {
	b := NewBatcher(testMeta, Limits{Format: f}, fixedClock)
	if r, raw, c := b.Len(); r != 0 || raw != 0 || c != 0 {
		t.Errorf("Len of a new Batcher = %d, %d, %d; want zeros", r, raw, c)
	}
	r := textRecord(t, "function", 500, testTime)
	for range 300 { // more than a chunk, so some reached the compressor
		b.Add(r)
	}
	recs, raw, comp := b.Len()
	switch {
	case f == FormatParquet:
		// The row group is still open: nothing is written yet.
		if recs != 300 || raw != 300*500 || comp != 0 {
			t.Errorf("Len = %d, %d, %d; want 300, %d, 0", recs, raw, comp, 300*500)
		}
	case recs != 300 || raw != 300*500 || comp <= 0 || comp >= raw:
		t.Errorf("Len = %d, %d, %d; want 300, %d, and 0 < compressed < raw", recs, raw, comp, 300*500)
	}
	bt := b.Seal()
	if bt.RawBytes != raw || len(bt.Data) < comp {
		t.Errorf("Seal gave %d raw, %d compressed after Len said %d, %d", bt.RawBytes, len(bt.Data), raw, comp)
	}
	if r, raw, c := b.Len(); r != 0 || raw != 0 || c != 0 {
		t.Errorf("Len after Seal = %d, %d, %d; want zeros", r, raw, c)
	}
}

func TestBatcherDefaults(t *testing.T) {
	b := NewBatcher(testMeta, Limits{MaxBytes: -1}, fixedClock)
	want := Limits{MaxBytes: DefaultMaxBytes, MaxAge: DefaultMaxAge, MinBytes: DefaultMinBytes, MaxHold: DefaultMaxHold}
	if b.lim != want {
		t.Errorf("limits = %+v, want the defaults %+v", b.lim, want)
	}
	for _, c := range []struct {
		name string
		in   Limits
		want Limits
	}{
		{"no minimum", Limits{MinBytes: -1}, Limits{MinBytes: 0, MaxHold: DefaultMaxHold}},
		{"minimum above the size bound", Limits{MaxBytes: 1 << 20, MinBytes: 4 << 20}, Limits{MinBytes: 1 << 20, MaxHold: DefaultMaxHold}},
		{"hold shorter than the age bound", Limits{MaxAge: 10 * time.Minute, MaxHold: time.Minute}, Limits{MinBytes: DefaultMinBytes, MaxHold: 10 * time.Minute}},
		{"explicit", Limits{MinBytes: 512 << 10, MaxHold: 15 * time.Minute}, Limits{MinBytes: 512 << 10, MaxHold: 15 * time.Minute}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := NewBatcher(testMeta, c.in, fixedClock).lim
			if got.MinBytes != c.want.MinBytes || got.MaxHold != c.want.MaxHold {
				t.Errorf("Limits%+v: MinBytes, MaxHold = %d, %v; want %d, %v", c.in, got.MinBytes, got.MaxHold, c.want.MinBytes, c.want.MaxHold)
			}
		})
	}
	if b := NewBatcher(testMeta, Limits{Format: 200}, fixedClock); b.lim.Format != FormatNDJSONZstd {
		t.Errorf("unknown format became %v, want %v", b.lim.Format, FormatNDJSONZstd)
	}
}

// TestBatcherRoundTrip feeds random records through several batches, so the
// encoder is reused, rows cross chunk and block boundaries and seals come
// from size, hour and Seal, and checks every row comes back in order.
func TestBatcherRoundTrip(t *testing.T) {
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) { testBatcherRoundTrip(t, f) })
	}
}

func testBatcherRoundTrip(t *testing.T, f Format) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := NewBatcher(testMeta, Limits{MaxBytes: 300 << 10, Format: f}, fixedClock)
	var want []Row
	var batches []*Batch
	at := testTime
	for i := range 5000 {
		r := randRecord(rng)
		r.Time = at
		at = at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		if i%1000 == 999 {
			r.Message = strings.Repeat("giant ", 60<<10)
		}
		want = append(want, wantRow(testMeta, &r))
		batches = append(batches, b.Add(&r)...)
		if i%1700 == 0 {
			if s := b.Seal(); s != nil {
				batches = append(batches, s)
			}
		}
	}
	if s := b.Seal(); s != nil {
		batches = append(batches, s)
	}
	var got []Row
	for i, bt := range batches {
		if bt.Seq != uint64(i+1) {
			t.Errorf("batch %d has Seq %d, want %d", i, bt.Seq, i+1)
		}
		checkBatch(t, bt)
		lines, err := DecodeBatch(bt.Data)
		if err != nil {
			t.Fatalf("DecodeBatch(batch %d): %v", bt.Seq, err)
		}
		for _, l := range lines {
			row, err := ParseRow(l)
			if err != nil {
				t.Fatalf("ParseRow: %v", err)
			}
			got = append(got, row)
		}
	}
	if len(batches) < 10 {
		t.Errorf("got %d batches; the test wants size, hour and giant seals", len(batches))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestBatcherAddAllocs(t *testing.T) {
	b := NewBatcher(testMeta, Limits{MaxBytes: 1 << 30}, fixedClock)
	r := textRecord(t, "function", 300, testTime)
	b.Add(r) // open the batch
	allocs := testing.AllocsPerRun(10000, func() { b.Add(r) })
	// Only the compressed output buffer grows, now and then.
	if allocs > 0.01 {
		t.Errorf("Add allocates %v times per record, want ~0", allocs)
	}
}

func TestBatcherCompressedSlack(t *testing.T) {
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) { testBatcherCompressedSlack(t, f) })
	}
}

func testBatcherCompressedSlack(t *testing.T, f Format) {
	b := NewBatcher(testMeta, Limits{MaxBytes: 1 << 20, Format: f}, fixedClock)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 10 {
		r := randRecord(rng)
		r.Time = testTime
		var bt *Batch
		for bt == nil {
			if s := b.Add(&r); len(s) > 0 {
				bt = s[0]
			}
			r.Message = fmt.Sprint(rng.Uint64())
		}
		if slack := cap(bt.Data) - len(bt.Data); slack > len(bt.Data)/8 {
			t.Errorf("batch %d: Data holds %d bytes with %d spare", i, len(bt.Data), slack)
		}
	}
}

// NewBatcher leaves the compressor and row buffer to the first batch: an
// extension's init is billed and counted in its resident size.
func TestNewBatcherIsSmall(t *testing.T) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b := NewBatcher(Meta{Function: "f", Version: "1"}, Limits{}, nil)
	runtime.ReadMemStats(&m1)
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 16<<10 {
		t.Errorf("NewBatcher allocated %d bytes, want under 16 KiB until the first Add", got)
	}
	if sealed := b.Add(&Record{Time: time.Now(), Type: "function", Message: "x"}); len(sealed) != 0 {
		t.Fatalf("Add sealed %d batches", len(sealed))
	}
	if s := b.Seal(); s == nil || s.Records != 1 {
		t.Fatalf("Seal = %+v, want the one record", s)
	}
}
