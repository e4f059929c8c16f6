package buffer

import (
	"bytes"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Default batch bounds, used for zero Limits fields (and negative ones,
// except MinBytes). layer/cost derives MinBytes and MaxHold: with them a
// PUT carries enough log to cost under $0.01/GB wherever an environment
// logs more than about one line a second (README, "What sluice costs").
const (
	DefaultMaxBytes = 4 << 20
	DefaultMaxAge   = 60 * time.Second
	DefaultMinBytes = 2 << 20
	DefaultMaxHold  = time.Hour
)

const (
	// chunkSize is how many bytes of rows gather before they are handed to
	// the compressor: one Write per row would cost more than the row itself.
	chunkSize = 64 << 10
	// maxChunkCap bounds the row buffer kept between batches, so that one
	// giant record does not pin its size in memory for the process lifetime.
	maxChunkCap = 4 * chunkSize
	// windowSize is the zstd window. With the encoder's lower-memory mode
	// its history takes window + 128 KiB (384 KiB) instead of 2 MiB at a
	// 1 MiB window; on the benchmark corpus SpeedFastest compresses
	// slightly better with it (4.71x against 4.66x on 2-8 MiB batches, at
	// the same speed): log lines repeat what the last few hundred lines
	// said.
	windowSize = 256 << 10
)

// Limits bound the open batch. The zero value means the defaults.
type Limits struct {
	// MaxBytes seals the batch once its uncompressed NDJSON reaches this
	// many bytes (default 4 MiB). A batch exceeds it by at most one row.
	MaxBytes int
	// MaxAge seals the batch once this much wall-clock time has passed
	// since its first Add (default 60s), provided it holds MinBytes.
	MaxAge time.Duration
	// MinBytes is the smallest batch, in uncompressed NDJSON bytes, that age
	// alone seals at MaxAge (default 2 MiB; at most MaxBytes). A smaller
	// batch is not worth its PUT yet: it is held until it grows to MinBytes
	// or until MaxHold. Negative means no minimum: MaxAge seals any batch.
	MinBytes int
	// MaxHold bounds how long a batch under MinBytes is held (default 1h;
	// at least MaxAge). Hour boundaries and Seal still cut it short.
	MaxHold time.Duration
	// Format is how batches are encoded (default FormatNDJSONZstd).
	// MaxBytes counts NDJSON bytes whatever the format, so that a batch
	// holds the same rows in each.
	Format Format
}

// encoderOptions favours speed and little memory over ratio: the
// extension shares a small function's CPU and memory. There is no per-row
// flush; a batch is one zstd frame.
func encoderOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithWindowSize(windowSize),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true),
	}
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	switch {
	case l.MinBytes == 0:
		l.MinBytes = DefaultMinBytes
	case l.MinBytes < 0:
		l.MinBytes = 0
	}
	l.MinBytes = min(l.MinBytes, l.MaxBytes)
	if l.MaxHold <= 0 {
		l.MaxHold = DefaultMaxHold
	}
	l.MaxHold = max(l.MaxHold, l.MaxAge)
	if l.Format > FormatParquet || (l.Format == FormatParquet && !ParquetBuilt) {
		l.Format = FormatNDJSONZstd
	}
	return l
}

// Batcher encodes records into one open batch in its Limits' Format (NDJSON
// rows streamed through zstd or gzip, or a Parquet file), which it seals by
// size, by age (MaxAge once the batch holds MinBytes, MaxHold before) or at
// an hour boundary.
// It is owned by a single goroutine and does no I/O: the owner feeds it with
// Add, collects the batches Add seals, arms a timer with UntilNext and, when
// it fires and Due reports true, calls Seal:
//
//	for _, s := range b.Add(r) {
//		queue.Push(s)
//	}
//	...
//	if b.Due() { queue.Push(b.Seal()) }
//	...
//	if s := b.Seal(); s != nil { queue.Push(s) } // at shutdown
//
// A batch never spans two UTC hours of record time, because its first
// record's hour picks the S3 partition.
//
// Add seals by size itself and returns what it sealed, instead of only
// reporting that the batch is full: size, hour-boundary and giant-record
// seals then all reach the caller the same way, and none can be left behind
// inside the Batcher.
type Batcher struct {
	lim  Limits
	now  func() time.Time
	meta []byte // pre-encoded function and version keys
	enc  compressor
	pq   *pqWriter // instead of enc and chunk for FormatParquet

	chunk []byte // rows not yet written to enc; with pq, the row just added

	// The open batch; out is nil when none is open.
	out      *bytes.Buffer
	opened   time.Time // wall clock of the first Add
	start    time.Time // UTC time of the first record
	hour     time.Time // start truncated to the hour
	records  int
	lines    int
	raw      int
	seq      uint64
	sizeHint int // compressed size of the previous batch
}

// NewBatcher returns a Batcher that writes meta into every row, seals at lim
// and reads the wall clock through now (time.Now outside tests; nil means
// time.Now).
func NewBatcher(meta Meta, lim Limits, now func() time.Time) *Batcher {
	if now == nil {
		now = time.Now
	}
	b := &Batcher{
		lim:  lim.withDefaults(),
		now:  now,
		meta: metaKeys(meta),
	}
	if b.lim.Format == FormatParquet {
		b.pq = newPQWriter(meta)
		b.chunk = make([]byte, 0, 4<<10)
	}
	// The compressor and the row buffer (~350 KiB) are made when the first
	// batch opens: an extension's init is billed, and a quiet function
	// may never log.
	return b
}

// Add appends r to the open batch, opening one if needed, and returns the
// batches this call sealed, oldest first (nil, most of the time):
//   - the open batch, when r belongs to another UTC hour than its first record;
//   - the open batch, when the row of r alone reaches MaxBytes: such a giant
//     record goes into a batch of its own;
//   - the batch holding r, when r made it reach MaxBytes.
//
// The returned batches belong to the caller; none is kept, so a caller that
// drops them loses them.
func (b *Batcher) Add(r *Record) []*Batch {
	var sealed []*Batch
	t := r.Time.UTC()
	if b.out != nil && !t.Truncate(time.Hour).Equal(b.hour) {
		sealed = append(sealed, b.seal())
	}
	if b.out == nil {
		b.open(t)
	}
	if b.pq != nil {
		return b.addParquet(r, t, sealed)
	}
	mark := len(b.chunk)
	b.chunk = appendRowMeta(b.chunk, b.meta, r)
	n := len(b.chunk) - mark
	if n >= b.lim.MaxBytes && b.records > 0 {
		row := b.chunk[mark:]
		b.chunk = b.chunk[:mark]
		sealed = append(sealed, b.seal())
		b.open(t)
		// row still points into the old array, which seal may have
		// dropped but cannot have overwritten; append copies safely even
		// when both share it.
		b.chunk = append(b.chunk, row...)
	}
	b.records++
	b.raw += n
	if r.Type == "function" {
		b.lines++
	}
	if len(b.chunk) >= chunkSize {
		b.flushChunk()
	}
	if b.raw >= b.lim.MaxBytes {
		sealed = append(sealed, b.seal())
	}
	return sealed
}

// addParquet is Add for FormatParquet. The NDJSON row is encoded only for
// its length, which is what MaxBytes and RawBytes count.
func (b *Batcher) addParquet(r *Record, t time.Time, sealed []*Batch) []*Batch {
	b.chunk = appendRowMeta(b.chunk[:0], b.meta, r)
	n := len(b.chunk)
	if cap(b.chunk) > maxChunkCap {
		b.chunk = make([]byte, 0, 4<<10)
	}
	if n >= b.lim.MaxBytes && b.records > 0 {
		sealed = append(sealed, b.seal())
		b.open(t)
	}
	b.pq.add(r, n)
	b.records++
	b.raw += n
	if r.Type == "function" {
		b.lines++
	}
	if b.raw >= b.lim.MaxBytes {
		sealed = append(sealed, b.seal())
	}
	return sealed
}

// UntilNext returns how long until the open batch is old enough to seal; zero
// when it already is. ok is false when no batch is open, and then there is
// nothing to wait for. For a batch under MinBytes that is MaxHold; the
// owner asks again after each Add, which may bring it forward to MaxAge.
func (b *Batcher) UntilNext() (d time.Duration, ok bool) {
	if b.out == nil {
		return 0, false
	}
	return max(b.holdLimit()-b.now().Sub(b.opened), 0), true
}

// Due reports whether the open batch is old enough to be sealed: MaxAge
// once it holds MinBytes, else MaxHold. A batch full by size never waits
// for this: Add seals it.
func (b *Batcher) Due() bool {
	return b.out != nil && b.now().Sub(b.opened) >= b.holdLimit()
}

// holdLimit is the age at which the open batch becomes due. A PUT costs
// what CloudWatch charges to ingest about 10 KB, so a small batch sealed
// every MaxAge would cost more per GB than the service it replaces: below
// MinBytes, age alone waits for the longer bound.
func (b *Batcher) holdLimit() time.Duration {
	if b.raw >= b.lim.MinBytes {
		return b.lim.MaxAge
	}
	return b.lim.MaxHold
}

// Seal closes the open batch and returns it, whatever its size or age; nil
// when no batch is open, so an empty batch is never produced.
func (b *Batcher) Seal() *Batch {
	if b.out == nil {
		return nil
	}
	return b.seal()
}

// Len reports the open batch's records, uncompressed (NDJSON) bytes and
// compressed bytes so far. The compressed count lags: the compressor holds up
// to a block and the Batcher up to a chunk of rows before they reach it; a
// Parquet file counts only its complete row groups.
func (b *Batcher) Len() (records, rawBytes, compressedBytes int) {
	if b.out == nil {
		return 0, 0, 0
	}
	return b.records, b.raw, b.out.Len()
}

func (b *Batcher) open(t time.Time) {
	hint := min(max(b.sizeHint+b.sizeHint/16, 4<<10), b.lim.MaxBytes)
	b.out = bytes.NewBuffer(make([]byte, 0, hint))
	switch {
	case b.pq != nil:
		b.pq.reset(b.out)
	case b.enc == nil:
		b.enc = newCompressor(b.lim.Format)
		b.chunk = make([]byte, 0, chunkSize+chunkSize/4)
		fallthrough
	default:
		b.enc.Reset(b.out)
	}
	b.opened = b.now()
	b.start = t
	b.hour = t.Truncate(time.Hour)
}

// flushChunk hands the buffered rows to the compressor. Writes go to a
// bytes.Buffer, which cannot fail, so neither can the encoder.
func (b *Batcher) flushChunk() {
	if len(b.chunk) > 0 {
		_, _ = b.enc.Write(b.chunk)
		b.chunk = b.chunk[:0]
	}
	if cap(b.chunk) > maxChunkCap {
		b.chunk = make([]byte, 0, chunkSize+chunkSize/4)
	}
}

func (b *Batcher) seal() *Batch {
	if b.pq != nil {
		// Nothing the writer is given can fail it: every value fits its
		// column and the output is memory. An error would be a parquet-go
		// bug; the batch's decoders then report the file as damaged.
		_ = b.pq.close()
	} else {
		b.flushChunk()
		_ = b.enc.Close() // cannot fail, see flushChunk
	}
	data := b.out.Bytes()
	// The queue caps memory by len(Data); a buffer that grew by doubling
	// could hold nearly twice that, so give back the slack when it is large.
	if cap(data)-len(data) > len(data)/8 {
		data = append(make([]byte, 0, len(data)), data...)
	}
	b.seq++
	batch := &Batch{
		Seq:      b.seq,
		Start:    b.start,
		Data:     data,
		Ext:      b.lim.Format.Ext(),
		Records:  b.records,
		Lines:    b.lines,
		RawBytes: b.raw,
	}
	b.sizeHint = len(data)
	b.out = nil
	b.records, b.lines, b.raw = 0, 0, 0
	return batch
}
