// Package buffer turns telemetry records into sealed, compressed batches:
// flat rows (NDJSON through zstd or gzip, or Parquet), sealed at a size, an
// age or an hour bound, with the memory held by unsent batches capped; and
// it levels, samples and redacts the lines on the way.
package buffer

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// Record is one telemetry event in the archive's flat row shape. The
// decoder fills it; the batch encoder writes it as one NDJSON row.
type Record struct {
	Time      time.Time // event time (UTC in the archive)
	Type      string    // "function", "platform.report", "sluice.malformed", ...
	RequestID string
	Level     string // upper case ("INFO", "ERROR"); empty when unknown
	Message   string // the log line, or the JSON record's message field
	// Escaped says that Message holds the line as the telemetry body held it:
	// the content of a JSON string between its quotes, escapes and all. The
	// decoder keeps that form when it is already what AppendRow would write
	// (valid UTF-8, no raw U+2028/U+2029, no \u escape of a lone surrogate),
	// which spares unquoting the line only to escape it again, the larger
	// part of the cost of a line. The zero value is plain text, so a Record
	// built anywhere else needs nothing; whoever reads the line as text
	// calls Text.
	Escaped   bool
	Status    string // platform.runtimeDone / platform.report: success|failure|error|timeout
	ErrorType string
	Metrics   *Metrics        // platform.report and init/runtime metrics; nil otherwise
	Fields    json.RawMessage // the record's other fields as one JSON value; nil when none
}

// Text returns the log line as text, decoding it when it is held Escaped.
// It allocates only for an escaped line that holds an escape.
func (r *Record) Text() string {
	if !r.Escaped || strings.IndexByte(r.Message, '\\') < 0 {
		return r.Message
	}
	b, _ := jsonscan.AppendUnquoted(make([]byte, 0, len(r.Message)), r.Message)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Metrics holds the numeric columns of platform.report (and the durations of
// platform.runtimeDone / platform.initReport). Zero means absent.
type Metrics struct {
	DurationMs        float64
	BilledDurationMs  float64
	InitDurationMs    float64
	RestoreDurationMs float64
	MemorySizeMB      int64
	MaxMemoryUsedMB   int64
	ProducedBytes     int64 // platform.runtimeDone metrics.producedBytes
}

// Batch is a sealed batch, compressed and ready for a sink. Batches of one
// execution environment are numbered from 1; Seq and Start make its object
// key, so a retried upload writes the same key.
type Batch struct {
	// Env is the execution environment that sealed the batch when it is not
	// the running one (a batch spilled to /tmp by an earlier process of the
	// same sandbox); empty means the sink's own. It keeps keys unique.
	Env      string
	Seq      uint64
	Start    time.Time // time of the batch's first record, UTC; picks the partition
	Data     []byte    // the encoded batch: compressed NDJSON or a Parquet file
	Ext      string    // file extension: ".json.zst", ".json.gz" or ".parquet"
	Records  int       // rows in the batch
	Lines    int       // rows of type "function" (the function's own log lines)
	RawBytes int       // uncompressed NDJSON bytes
}

// hashText folds the bytes of r's text into the FNV-1a hash h, decoding a
// line held Escaped as it goes: a sampling decision must not depend on the
// form the decoder chose, and this costs no allocation.
func hashText(h uint64, r *Record) uint64 {
	s := r.Message
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' || !r.Escaped {
			h = (h ^ uint64(c)) * fnvPrime
			i++
			continue
		}
		ch, n := jsonscan.DecodeEscape(s, i)
		if n == 0 {
			break // where Text ends too
		}
		var b [utf8.UTFMax]byte
		for _, c := range utf8.AppendRune(b[:0], ch) {
			h = (h ^ uint64(c)) * fnvPrime
		}
		i += n
	}
	return h
}
