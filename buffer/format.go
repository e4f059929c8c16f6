package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Format is how a Batcher encodes and compresses its batches. The zero value
// is FormatNDJSONZstd, and NewBatcher treats any value other than the
// constants below as it too (ParseFormat is where bad settings are caught).
type Format uint8

const (
	// FormatNDJSONZstd is flat NDJSON rows in one zstd frame (".json.zst"),
	// the default: the cheapest to write, see layer/athena/README.md.
	FormatNDJSONZstd Format = iota
	// FormatNDJSONGzip is the same rows in one gzip member (".json.gz"), for
	// readers that lack zstd.
	FormatNDJSONGzip
	// FormatParquet is one Parquet file (".parquet") with typed columns,
	// zstd-compressed pages, so that a query reads only the columns it uses.
	FormatParquet
)

// Extensions of each format's batches; Athena takes the codec of a text file
// from it.
const (
	ExtNDJSONZstd = ".json.zst"
	ExtNDJSONGzip = ".json.gz"
	ExtParquet    = ".parquet"
)

// Ext is the file extension of batches in the default format.
const Ext = ExtNDJSONZstd

// Ext returns the file extension of f's batches.
func (f Format) Ext() string {
	switch f {
	case FormatNDJSONGzip:
		return ExtNDJSONGzip
	case FormatParquet:
		return ExtParquet
	}
	return ExtNDJSONZstd
}

// String returns "ndjson+zstd", "ndjson+gzip" or "parquet".
func (f Format) String() string {
	switch f {
	case FormatNDJSONGzip:
		return "ndjson+gzip"
	case FormatParquet:
		return "parquet"
	}
	return "ndjson+zstd"
}

// ParseFormat returns the Format named by the values of SLUICE_FORMAT
// ("ndjson" or "parquet"; empty means "ndjson") and SLUICE_COMPRESSION
// ("zstd" or "gzip"; empty means "zstd"). Case is ignored. Parquet pages are
// always zstd: "parquet" with "gzip" is an error, so that a setting is never
// silently ignored.
func ParseFormat(format, compression string) (Format, error) {
	c := strings.ToLower(strings.TrimSpace(compression))
	if c != "" && c != "zstd" && c != "gzip" {
		return 0, fmt.Errorf("parse format: compression %q: want zstd or gzip", compression)
	}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "ndjson":
		if c == "gzip" {
			return FormatNDJSONGzip, nil
		}
		return FormatNDJSONZstd, nil
	case "parquet":
		if c == "gzip" {
			return 0, fmt.Errorf("parse format: compression %q with format %q: Parquet pages are always zstd", compression, format)
		}
		if !ParquetBuilt {
			return 0, fmt.Errorf("parse format: format %q: %w", format, errNoParquet)
		}
		return FormatParquet, nil
	}
	return 0, fmt.Errorf("parse format: format %q: want ndjson or parquet", format)
}

// gzipLevel is the gzip level of FormatNDJSONGzip, chosen by
// TestMeasureFormats: on 8 MiB objects of the benchmark corpus level 1
// compresses 6.9x at about 1.9 CPU-s/GB, the default level 6 8.5x at 3.6.
// The writer runs on the function's own CPU, and gzip is the format for
// readers without zstd, not the small one: zstd at its fastest level gives
// 8.0x for about 2.3.
const gzipLevel = gzip.BestSpeed

// compressor is a streaming compressor that a Batcher reuses for every
// batch: zstd.Encoder and gzip.Writer.
type compressor interface {
	io.WriteCloser
	Reset(w io.Writer)
}

// newCompressor returns the compressor of an NDJSON format. The options are
// constants, so neither constructor can fail (TestEncoderOptions checks).
func newCompressor(f Format) compressor {
	if f == FormatNDJSONGzip {
		w, _ := gzip.NewWriterLevel(nil, gzipLevel)
		return w
	}
	// Concurrency 1 compresses synchronously on the caller's goroutine, so
	// the Batcher starts no goroutines and needs no Close.
	enc, _ := zstd.NewWriter(nil, encoderOptions()...)
	return enc
}

// DetectFormat returns the format of sealed batch data, by its magic bytes:
// 1f 8b for gzip, "PAR1" for Parquet. Anything else is reported as
// FormatNDJSONZstd (28 b5 2f fd), whose decoder then rejects what is not
// zstd.
func DetectFormat(data []byte) Format {
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		return FormatNDJSONGzip
	case bytes.HasPrefix(data, []byte("PAR1")):
		return FormatParquet
	}
	return FormatNDJSONZstd
}

// NewReader returns the NDJSON text of sealed batch data in any format,
// detected by DetectFormat: every row AppendRow would write, each ending
// in '\n'. It streams: a compressed batch is decompressed as it is read,
// and a Parquet batch is turned into rows a few hundred at a time, so that
// besides data only a window of the decoder is in memory. The caller must
// Close it. Errors in damaged data surface from Read.
func NewReader(data []byte) (io.ReadCloser, error) {
	switch DetectFormat(data) {
	case FormatNDJSONGzip:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("open gzip batch: %w", err)
		}
		return zr, nil
	case FormatParquet:
		return newParquetNDJSON(data)
	}
	dec, err := zstd.NewReader(bytes.NewReader(data),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxDecodeWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("open zstd batch: %w", err)
	}
	return zstdReadCloser{dec}, nil
}

// zstdReadCloser adapts zstd.Decoder, whose Close returns nothing.
type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error {
	z.Decoder.Close()
	return nil
}

// errNoParquet is the answer of a build without Parquet support.
var errNoParquet = errors.New("this build of sluice has no Parquet support: use the sluice-parquet layer (built with -tags parquet)")
