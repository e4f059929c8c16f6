package extension

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

// statsInterval is how often, at most, a sluice.stats row is written while
// telemetry flows; one more is written at SHUTDOWN.
const statsInterval = time.Minute

// statsSource reads the counters kept outside the pipeline: the listener's
// and the delivery paths'. Its functions are safe to call from the
// pipeline's goroutine (they load atomics).
type statsSource struct {
	listener func() telemetry.Stats
	// archive is the first sink's delivery path: objects, bytes and upload
	// time in the rows are its, since the savings report prices S3 PUTs.
	archive func() sinks.DurableStats
	// env describes the function for the cost columns.
	memoryMB int
	arch     string
}

// statsSnapshot is what a sluice.stats row counts, cumulated since start.
type statsSnapshot struct {
	stager          buffer.Stats
	malformed       int64
	platformDropped int64
	platformSkip    int64
	addedNanos      int64
	listener        telemetry.Stats
	archive         sinks.DurableStats
}

// statsFields are a sluice.stats row's fields: what happened since the
// previous row of the same environment, so summing the rows of an archive
// gives its totals.
type statsFields struct {
	IntervalS        float64          `json:"interval_s"`
	LinesSeen        int64            `json:"lines_seen"`
	BytesSeen        int64            `json:"bytes_seen"`
	LinesKept        int64            `json:"lines_kept"`
	BytesKept        int64            `json:"bytes_kept"`
	LinesSampledOut  int64            `json:"lines_sampled_out"`
	BytesSampledOut  int64            `json:"bytes_sampled_out"`
	LinesBelowLevel  int64            `json:"lines_below_level"`
	BytesBelowLevel  int64            `json:"bytes_below_level"`
	LinesOverCap     int64            `json:"lines_over_cap"`
	BytesOverCap     int64            `json:"bytes_over_cap"`
	DecidedEarly     int64            `json:"invocations_decided_early"`
	PartialKept      int64            `json:"invocations_partial"`
	Truncated        int64            `json:"truncated_records"`
	Redactions       map[string]int64 `json:"redactions,omitempty"`
	MalformedBodies  int64            `json:"malformed_bodies"`
	PlatformDropped  int64            `json:"platform_dropped_records"`
	PlatformSkipped  int64            `json:"platform_events_skipped"`
	StagedLinesAtEnd int              `json:"staged_lines"`

	// The listener's refusals: bodies over the limit (not archived; Lambda
	// keeps them), POSTs answered 503 (Lambda sends them again) and bodies
	// that could not be read (likewise).
	TelemetryOversized  int64 `json:"telemetry_oversized"`
	TelemetryBusy       int64 `json:"telemetry_busy"`
	TelemetryReadErrors int64 `json:"telemetry_read_errors"`

	// Delivery and cost, for the savings report: objects the archive sink
	// accepted, their stored bytes, the time spent uploading, batches
	// spilled and written to the fallback, and the invocation time sluice
	// added after the runtime finished.
	ObjectsWritten  int64  `json:"objects_written"`
	StoredBytes     int64  `json:"stored_bytes"`
	UploadMs        int64  `json:"upload_ms"`
	BatchesSpilled  int64  `json:"batches_spilled"`
	BatchesFallback int64  `json:"batches_fallback"`
	AddedMs         int64  `json:"added_ms"`
	MemoryMB        int    `json:"memory_mb,omitempty"`
	Arch            string `json:"arch"`
}

func (p *pipeline) snapshot() statsSnapshot {
	s := statsSnapshot{
		stager:          p.stager.Stats(),
		malformed:       p.c.malformed.Load(),
		platformDropped: p.c.platformDropped.Load(),
		platformSkip:    p.c.platformSkip.Load(),
		addedNanos:      p.c.addedNanos.Load(),
	}
	if p.stats.listener != nil {
		s.listener = p.stats.listener()
	}
	if p.stats.archive != nil {
		s.archive = p.stats.archive()
	}
	return s
}

// writeStats appends a sluice.stats row with the counts since the last one,
// unless nothing happened.
func (p *pipeline) writeStats(ctx context.Context, now time.Time) {
	cur := p.snapshot()
	prev := p.lastStats
	a, b := cur.stager, prev.stager
	la, lb := cur.listener, prev.listener
	da, db := cur.archive, prev.archive
	f := statsFields{
		IntervalS:           now.Sub(p.statsAt).Seconds(),
		LinesSeen:           a.Seen.Lines - b.Seen.Lines,
		BytesSeen:           a.Seen.Bytes - b.Seen.Bytes,
		LinesKept:           a.Kept.Lines - b.Kept.Lines,
		BytesKept:           a.Kept.Bytes - b.Kept.Bytes,
		LinesSampledOut:     a.SampledOut.Lines - b.SampledOut.Lines,
		BytesSampledOut:     a.SampledOut.Bytes - b.SampledOut.Bytes,
		LinesBelowLevel:     a.BelowLevel.Lines - b.BelowLevel.Lines,
		BytesBelowLevel:     a.BelowLevel.Bytes - b.BelowLevel.Bytes,
		LinesOverCap:        a.OverCap.Lines - b.OverCap.Lines,
		BytesOverCap:        a.OverCap.Bytes - b.OverCap.Bytes,
		DecidedEarly:        a.DecidedEarly - b.DecidedEarly,
		PartialKept:         a.PartialKept - b.PartialKept,
		Truncated:           a.Truncated - b.Truncated,
		MalformedBodies:     cur.malformed - prev.malformed,
		PlatformDropped:     cur.platformDropped - prev.platformDropped,
		PlatformSkipped:     cur.platformSkip - prev.platformSkip,
		StagedLinesAtEnd:    a.StagedLines,
		TelemetryOversized:  la.Oversized - lb.Oversized,
		TelemetryBusy:       la.Busy - lb.Busy,
		TelemetryReadErrors: la.ReadErrors - lb.ReadErrors,
		ObjectsWritten:      da.Uploaded - db.Uploaded,
		StoredBytes:         da.StoredBytes - db.StoredBytes,
		UploadMs:            (da.UploadTime - db.UploadTime).Milliseconds(),
		BatchesSpilled:      da.Spilled - db.Spilled,
		BatchesFallback:     da.Fallback - db.Fallback,
		AddedMs:             time.Duration(cur.addedNanos - prev.addedNanos).Milliseconds(),
		MemoryMB:            p.stats.memoryMB,
		Arch:                p.stats.arch,
	}
	before := map[string]int64{}
	for _, rc := range b.Redactions {
		before[rc.Rule] = rc.Count
	}
	for _, rc := range a.Redactions {
		if d := rc.Count - before[rc.Rule]; d > 0 {
			if f.Redactions == nil {
				f.Redactions = map[string]int64{}
			}
			f.Redactions[rc.Rule] = d
		}
	}
	p.statsAt = now
	if f.empty() && cur.stager.Kept == prev.stager.Kept && cur.stager.SampledOut == prev.stager.SampledOut {
		return // nothing to report
	}
	p.lastStats = cur
	fields, err := json.Marshal(f)
	if err != nil {
		return // cannot happen: plain numbers
	}
	p.emit(ctx, &buffer.Record{Time: now.UTC(), Type: "sluice.stats", Fields: fields})
}

// empty reports whether the row would count nothing.
func (f statsFields) empty() bool {
	counts := []int64{f.LinesSeen, f.BytesSeen, f.LinesKept, f.BytesKept, f.LinesSampledOut, f.BytesSampledOut,
		f.LinesBelowLevel, f.BytesBelowLevel, f.LinesOverCap, f.BytesOverCap, f.DecidedEarly, f.PartialKept,
		f.Truncated, f.MalformedBodies, f.PlatformDropped, f.PlatformSkipped,
		f.TelemetryOversized, f.TelemetryBusy, f.TelemetryReadErrors,
		f.ObjectsWritten, f.StoredBytes, f.UploadMs, f.BatchesSpilled, f.BatchesFallback, f.AddedMs}
	for _, n := range counts {
		if n != 0 {
			return false
		}
	}
	return len(f.Redactions) == 0
}

// lambdaArch names GOARCH as Lambda's architectures do.
func lambdaArch() string {
	if runtime.GOARCH == "amd64" {
		return "x86_64"
	}
	return runtime.GOARCH
}

// functionMemoryMB is the function's configured memory, 0 when unknown.
func functionMemoryMB(getenv func(string) string) int {
	n, _ := strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	return n
}
