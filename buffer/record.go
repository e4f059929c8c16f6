// Package buffer turns telemetry records into sealed, compressed batches:
// flat rows (NDJSON through zstd or gzip, or Parquet), sealed at a size, an
// age or an hour bound, with the memory held by unsent batches capped; and
// it levels, samples and redacts the lines on the way.
package buffer

import (
	"encoding/json"
	"time"
)

// Record is one telemetry event in the archive's flat row shape. The
// decoder fills it; the batch encoder writes it as one NDJSON row.
type Record struct {
	Time      time.Time // event time (UTC in the archive)
	Type      string    // "function", "platform.report", "sluice.malformed", ...
	RequestID string
	Level     string // upper case ("INFO", "ERROR"); empty when unknown
	Message   string // the log line, or the JSON record's message field
	Status    string // platform.runtimeDone / platform.report: success|failure|error|timeout
	ErrorType string
	Metrics   *Metrics        // platform.report and init/runtime metrics; nil otherwise
	Fields    json.RawMessage // the record's other fields as one JSON value; nil when none
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
