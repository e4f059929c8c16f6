//go:build parquet

package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// ParquetBuilt says whether this build can write Parquet (build tag
// "parquet"). parquet-go adds about 13 MB to the binary and 5 ms to every
// cold start, so the default layer leaves it out.
const ParquetBuilt = true

// pqRow is one archive row as a Parquet record: the columns AppendRow
// writes, with the same names and order, typed. What NDJSON leaves out (an
// empty string, a zero or non-finite metric) is NULL here, so that both
// formats read the same through their tables.
//
// time is INT64 TIMESTAMP(MILLIS, isAdjustedToUTC=true): an instant, which
// Athena reads into a timestamp column and DuckDB as TIMESTAMP WITH TIME
// ZONE. The columns few values repeat in are dictionary-encoded, the others
// PLAIN (delta encodings would save about 1%), in version 1 data pages: what
// every Parquet reader understands.
type pqRow struct {
	Time              int64   `parquet:"time,timestamp(millisecond:utc)"`
	Type              string  `parquet:"type,dict"`
	Function          string  `parquet:"function,dict"`
	Version           string  `parquet:"version,dict"`
	RequestID         string  `parquet:"request_id,optional"`
	Level             string  `parquet:"level,optional,dict"`
	Message           string  `parquet:"message,optional"`
	Status            string  `parquet:"status,optional,dict"`
	ErrorType         string  `parquet:"error_type,optional,dict"`
	DurationMs        float64 `parquet:"duration_ms,optional"`
	BilledDurationMs  float64 `parquet:"billed_duration_ms,optional"`
	InitDurationMs    float64 `parquet:"init_duration_ms,optional"`
	RestoreDurationMs float64 `parquet:"restore_duration_ms,optional"`
	MemorySizeMB      int64   `parquet:"memory_size_mb,optional"`
	MaxMemoryUsedMB   int64   `parquet:"max_memory_used_mb,optional"`
	ProducedBytes     int64   `parquet:"produced_bytes,optional"`
	Fields            []byte  `parquet:"fields,optional,string"`
}

const (
	// pqPageSize is the uncompressed size at which a column's values become
	// a compressed page. The open pages of all columns are what the writer
	// holds besides the file itself, so this bounds its memory; smaller
	// pages compress worse.
	pqPageSize = 256 << 10
	// pqRowGroupBytes starts a new row group once this many NDJSON-equivalent
	// bytes went into the current one: a default batch is one row group,
	// which suits readers best; larger batches get several, so that a reader
	// need not hold one huge group.
	pqRowGroupBytes = 32 << 20
	// pqDictMax bounds each dictionary-encoded column's dictionary; one that
	// outgrows it (error types that are all different, say) falls back to
	// PLAIN for the rest of the row group instead of growing without bound.
	pqDictMax = 256 << 10
	// pqBatchRows and pqArenaMax bound the rows add gathers before it hands
	// them to the writer: one Write per row would cost more than the row.
	pqBatchRows = 128
	pqArenaMax  = 64 << 10
	// pqReadRows is how many rows the decoder turns into NDJSON at a time.
	pqReadRows = 256
)

// pqWriter is a Batcher's Parquet encoder, reused for every batch.
//
// It hands the writer parquet.Rows whose values carry their definition
// levels, not pqRow structs: parquet-go v0.32.0 finds the NULLs of optional
// struct fields with a bitmap scan that, for some runs of NULLs and values
// within one Write, marks the NULLs after a value as empty strings and zeros
// (TestParquetNulls). Explicit levels leave it nothing to guess.
type pqWriter struct {
	w     *parquet.GenericWriter[pqRow]
	rows  []parquet.Row // rows not yet written; their byte arrays point into arena
	arena []byte        // the bytes of the pending rows' strings
	fn    []byte        // the function column, the same in every row
	ver   []byte
	group int // NDJSON-equivalent bytes in the open row group
	err   error
}

// pqColumns is the number of columns of pqRow; the columns are numbered in
// its field order.
const pqColumns = 17

func newPQWriter(meta Meta) *pqWriter {
	w := parquet.NewGenericWriter[pqRow](io.Discard,
		parquet.Compression(newPQCodec()),
		parquet.PageBufferSize(pqPageSize),
		parquet.DataPageVersion(1),
		parquet.DictionaryMaxBytes(pqDictMax),
		parquet.CreatedBy("sluice", "", ""),
		parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain),
	)
	return &pqWriter{
		w:    w,
		rows: make([]parquet.Row, 0, pqBatchRows),
		fn:   []byte(validString(meta.Function)),
		ver:  []byte(validString(meta.Version)),
	}
}

// reset starts a new file written to out.
func (p *pqWriter) reset(out io.Writer) {
	p.w.Reset(out)
	p.group = 0
	p.err = nil
}

// add encodes r; raw is the length of its NDJSON row. r is not kept: the
// pending row holds copies of its strings.
func (p *pqWriter) add(r *Record, raw int) {
	if p.err != nil {
		return
	}
	var m Metrics
	if r.Metrics != nil {
		m = *r.Metrics
	}
	n := len(p.rows)
	if n < cap(p.rows) {
		p.rows = p.rows[:n+1]
	} else {
		p.rows = append(p.rows, make(parquet.Row, 0, pqColumns))
	}
	row := p.rows[n][:0]
	row = append(row,
		parquet.Int64Value(r.Time.UnixMilli()).Level(0, 0, 0),
		parquet.ByteArrayValue(p.str(r.Type)).Level(0, 0, 1),
		parquet.ByteArrayValue(p.fn).Level(0, 0, 2),
		parquet.ByteArrayValue(p.ver).Level(0, 0, 3),
		p.optString(r.RequestID, 4),
		p.optString(r.Level, 5),
		p.message(r, 6),
		p.optString(r.Status, 7),
		p.optString(r.ErrorType, 8),
		optDouble(m.DurationMs, 9),
		optDouble(m.BilledDurationMs, 10),
		optDouble(m.InitDurationMs, 11),
		optDouble(m.RestoreDurationMs, 12),
		optInt64(m.MemorySizeMB, 13),
		optInt64(m.MaxMemoryUsedMB, 14),
		optInt64(m.ProducedBytes, 15),
		p.optBytes(r.Fields, 16),
	)
	p.rows[n] = row
	p.group += raw
	if len(p.rows) == cap(p.rows) || len(p.arena) >= pqArenaMax {
		p.flushRows()
	}
	if p.group >= pqRowGroupBytes {
		p.flushRows()
		if err := p.w.Flush(); err != nil && p.err == nil {
			p.err = fmt.Errorf("flush parquet row group: %w", err)
		}
		p.group = 0
	}
}

// str copies s into the arena, as valid UTF-8.
func (p *pqWriter) str(s string) []byte {
	if !utf8.ValidString(s) {
		s = validString(s)
	}
	start := len(p.arena)
	p.arena = append(p.arena, s...)
	return p.arena[start:len(p.arena):len(p.arena)]
}

// optString is s in column col, NULL when empty, as AppendRow leaves it out.
func (p *pqWriter) optString(s string, col int) parquet.Value {
	if s == "" {
		return parquet.NullValue().Level(0, 0, col)
	}
	return parquet.ByteArrayValue(p.str(s)).Level(0, 1, col)
}

// message is the message column: as in AppendRow, a log line's message is
// an empty string rather than NULL when the line is empty.
//
// A message held Escaped is decoded straight into the arena: Parquet holds
// text, not JSON. The decoder leaves valid UTF-8 only.
func (p *pqWriter) message(r *Record, col int) parquet.Value {
	if r.Message == "" && isLine(r.Type) {
		return parquet.ByteArrayValue(nil).Level(0, 1, col)
	}
	if !r.Escaped {
		return p.optString(r.Message, col)
	}
	start := len(p.arena)
	p.arena, _ = jsonscan.AppendUnquoted(p.arena, r.Message)
	return parquet.ByteArrayValue(p.arena[start:len(p.arena):len(p.arena)]).Level(0, 1, col)
}

func (p *pqWriter) optBytes(b []byte, col int) parquet.Value {
	if len(b) == 0 {
		return parquet.NullValue().Level(0, 0, col)
	}
	if !utf8.Valid(b) {
		return parquet.ByteArrayValue(p.str(string(b))).Level(0, 1, col)
	}
	start := len(p.arena)
	p.arena = append(p.arena, b...)
	return parquet.ByteArrayValue(p.arena[start:len(p.arena):len(p.arena)]).Level(0, 1, col)
}

// optDouble is f in column col, NULL where AppendRow leaves it out: zero
// (-0 too), NaN or infinite.
func optDouble(f float64, col int) parquet.Value {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return parquet.NullValue().Level(0, 0, col)
	}
	return parquet.DoubleValue(f).Level(0, 1, col)
}

func optInt64(n int64, col int) parquet.Value {
	if n == 0 {
		return parquet.NullValue().Level(0, 0, col)
	}
	return parquet.Int64Value(n).Level(0, 1, col)
}

// flushRows hands the pending rows to the writer, which copies their values.
func (p *pqWriter) flushRows() {
	if len(p.rows) > 0 && p.err == nil {
		if _, err := p.w.WriteRows(p.rows); err != nil {
			p.err = fmt.Errorf("write parquet rows: %w", err)
		}
	}
	for _, row := range p.rows {
		clear(row) // drop the references into the arena, which may be let go
	}
	p.rows = p.rows[:0]
	p.arena = p.arena[:0]
	if cap(p.arena) > 4*pqArenaMax {
		p.arena = nil
	}
}

// close completes the file. Writes go to a bytes.Buffer, which cannot fail;
// an error here is a parquet-go bug, returned rather than hidden.
func (p *pqWriter) close() error {
	p.flushRows()
	err := p.w.Close()
	if p.err != nil {
		return p.err
	}
	if err != nil {
		return fmt.Errorf("close parquet file: %w", err)
	}
	return nil
}

// pqCodec is Parquet's ZSTD codec with one encoder that its writer keeps.
// parquet-go's own codec pools encoders in a sync.Pool, with zstd's default
// 8 MiB window: every garbage collection empties the pool, and the next page
// allocates a new 8 MiB history. Pages are at most about pqPageSize, so a
// window of that size loses nothing.
type pqCodec struct {
	enc *zstd.Encoder
}

func newPQCodec() *pqCodec {
	// The options are constants, so NewWriter cannot fail (TestEncoderOptions
	// checks).
	enc, _ := zstd.NewWriter(nil, pqEncoderOptions()...)
	return &pqCodec{enc: enc}
}

func pqEncoderOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithWindowSize(pqPageSize),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false), // pages carry their own CRC
	}
}

func (c *pqCodec) String() string { return "ZSTD" }

func (c *pqCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

// Encode is safe for concurrent use, as the interface asks: EncodeAll is.
func (c *pqCodec) Encode(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// Decode is part of the interface; a writer does not call it.
func (c *pqCodec) Decode(dst, src []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxDecodeWindow))
	if err != nil {
		return nil, fmt.Errorf("decode parquet page: %w", err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("decode parquet page: %w", err)
	}
	return out, nil
}

// validString returns s with each byte of invalid UTF-8 replaced by U+FFFD,
// as AppendRow does: Parquet strings must be UTF-8, and both formats then
// hold the same text. Valid input, the usual case, is returned as is.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string([]rune(s)) // the conversion replaces byte by byte
}

// recordOf turns a row read back from Parquet into the Record that AppendRow
// writes as the row NDJSON would have held.
func recordOf(row *pqRow) (Record, Meta) {
	r := Record{
		Time:      time.UnixMilli(row.Time).UTC(),
		Type:      row.Type,
		RequestID: row.RequestID,
		Level:     row.Level,
		Message:   row.Message,
		Status:    row.Status,
		ErrorType: row.ErrorType,
	}
	m := Metrics{
		DurationMs:        row.DurationMs,
		BilledDurationMs:  row.BilledDurationMs,
		InitDurationMs:    row.InitDurationMs,
		RestoreDurationMs: row.RestoreDurationMs,
		MemorySizeMB:      row.MemorySizeMB,
		MaxMemoryUsedMB:   row.MaxMemoryUsedMB,
		ProducedBytes:     row.ProducedBytes,
	}
	if m != (Metrics{}) {
		r.Metrics = &m
	}
	if len(row.Fields) > 0 {
		r.Fields = row.Fields
	}
	return r, Meta{Function: row.Function, Version: row.Version}
}

// parquetNDJSON reads a Parquet batch as the NDJSON text its rows would
// have been written as.
type parquetNDJSON struct {
	r    *parquet.GenericReader[pqRow]
	rows []pqRow
	buf  []byte // NDJSON not yet read
	off  int
	err  error // sticky: io.EOF at the end
}

func newParquetNDJSON(data []byte) (rc io.ReadCloser, err error) {
	// parquet-go trusts the footer it reads; a damaged file (a spilled
	// batch, say) must be an error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			rc, err = nil, fmt.Errorf("open parquet batch: damaged file: %v", p)
		}
	}()
	// parquet-go allocates the footer length the file claims before it
	// checks it against the file.
	if n := len(data); n < 12 || int64(binary.LittleEndian.Uint32(data[n-8:])) > int64(n-12) {
		return nil, errors.New("open parquet batch: damaged file: footer length out of range")
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("open parquet batch: %w", err)
	}
	return &parquetNDJSON{r: parquet.NewGenericReader[pqRow](f), rows: make([]pqRow, pqReadRows)}, nil
}

func (p *parquetNDJSON) Read(b []byte) (int, error) {
	for p.off == len(p.buf) {
		if p.err != nil {
			return 0, p.err
		}
		p.fill()
	}
	n := copy(b, p.buf[p.off:])
	p.off += n
	return n, nil
}

// fill decodes the next rows into buf.
func (p *parquetNDJSON) fill() {
	defer func() {
		if r := recover(); r != nil {
			p.err = fmt.Errorf("read parquet batch: damaged file: %v", r)
		}
	}()
	if cap(p.buf) > maxChunkCap {
		p.buf = nil // a giant row grew it; do not keep that memory
	}
	n, err := p.r.Read(p.rows)
	p.buf, p.off = p.buf[:0], 0
	for i := range n {
		rec, meta := recordOf(&p.rows[i])
		p.buf = AppendRow(p.buf, meta, &rec)
	}
	switch {
	case errors.Is(err, io.EOF):
		p.err = io.EOF
	case err != nil:
		p.err = fmt.Errorf("read parquet batch: %w", err)
	case n == 0:
		p.err = io.ErrNoProgress
	}
}

func (p *parquetNDJSON) Close() error { return p.r.Close() }
