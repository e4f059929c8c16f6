package extension

import (
	"encoding/json"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// statsInterval is how often, at most, a sluice.stats row is written while
// telemetry flows; one more is written at SHUTDOWN.
const statsInterval = time.Minute

// statsSnapshot is what a sluice.stats row counts, cumulated since start.
type statsSnapshot struct {
	stager          buffer.Stats
	malformed       int64
	platformDropped int64
	platformSkip    int64
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
}

func (p *pipeline) snapshot() statsSnapshot {
	return statsSnapshot{
		stager:          p.stager.Stats(),
		malformed:       p.c.malformed.Load(),
		platformDropped: p.c.platformDropped.Load(),
		platformSkip:    p.c.platformSkip.Load(),
	}
}

// writeStats appends a sluice.stats row with the counts since the last one,
// unless nothing happened.
func (p *pipeline) writeStats(now time.Time) {
	cur := p.snapshot()
	prev := p.lastStats
	a, b := cur.stager, prev.stager
	f := statsFields{
		IntervalS:        now.Sub(p.statsAt).Seconds(),
		LinesSeen:        a.Seen.Lines - b.Seen.Lines,
		BytesSeen:        a.Seen.Bytes - b.Seen.Bytes,
		LinesKept:        a.Kept.Lines - b.Kept.Lines,
		BytesKept:        a.Kept.Bytes - b.Kept.Bytes,
		LinesSampledOut:  a.SampledOut.Lines - b.SampledOut.Lines,
		BytesSampledOut:  a.SampledOut.Bytes - b.SampledOut.Bytes,
		LinesBelowLevel:  a.BelowLevel.Lines - b.BelowLevel.Lines,
		BytesBelowLevel:  a.BelowLevel.Bytes - b.BelowLevel.Bytes,
		LinesOverCap:     a.OverCap.Lines - b.OverCap.Lines,
		BytesOverCap:     a.OverCap.Bytes - b.OverCap.Bytes,
		DecidedEarly:     a.DecidedEarly - b.DecidedEarly,
		PartialKept:      a.PartialKept - b.PartialKept,
		Truncated:        a.Truncated - b.Truncated,
		MalformedBodies:  cur.malformed - prev.malformed,
		PlatformDropped:  cur.platformDropped - prev.platformDropped,
		PlatformSkipped:  cur.platformSkip - prev.platformSkip,
		StagedLinesAtEnd: a.StagedLines,
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
	if f.LinesSeen == 0 && f.DecidedEarly == 0 && f.PartialKept == 0 && f.Truncated == 0 && f.Redactions == nil &&
		f.MalformedBodies == 0 && f.PlatformDropped == 0 && f.PlatformSkipped == 0 && cur.stager.Kept == prev.stager.Kept &&
		cur.stager.SampledOut == prev.stager.SampledOut {
		return // nothing to report
	}
	p.lastStats = cur
	fields, err := json.Marshal(f)
	if err != nil {
		return // cannot happen: plain numbers
	}
	p.emit(&buffer.Record{Time: now.UTC(), Type: "sluice.stats", Fields: fields})
}
