package main

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest/sample/applog"
	"github.com/sluice-logs/sluice/extension/telemetry"
)

// ratioSizes are the batch sizes (uncompressed NDJSON bytes) the ratio is
// measured at; between them it is interpolated on log size.
var ratioSizes = []int{16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20}

// measureCorpus runs realistic lines (applog, 10 lines per invocation,
// with a platform.report per invocation) through sluice's telemetry decoder
// and batcher, as the extension does with a function in the text log
// format, and measures bytes per row, the ratio by batch size, and CPU.
func measureCorpus(rawTarget int) (Corpus, error) {
	start := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	meta := buffer.Meta{Function: "orders-api-prod", Version: "42"}
	dec := telemetry.NewDecoder()
	var (
		bodies [][]byte
		seen   int
		lines  int
	)
	type event struct {
		Time   string `json:"time"`
		Type   string `json:"type"`
		Record any    `json:"record"`
	}
	at := start
	for inv := 0; seen < rawTarget; inv++ {
		id := fmt.Sprintf("%08x-5e1c-4b2a-9f00-%012x", inv*2654435761, inv)
		g := applog.New(id)
		var evs []event
		for i := range 10 {
			at = at.Add(3 * time.Millisecond)
			l := g.Line(i, at, "")
			seen += len(l)
			lines++
			evs = append(evs, event{at.Format(time.RFC3339Nano), "function", string(l)})
		}
		evs = append(evs, event{at.Format(time.RFC3339Nano), "platform.report", map[string]any{
			"requestId": id, "status": "success",
			"metrics": map[string]any{"durationMs": 31.4 + float64(inv%97), "billedDurationMs": 32 + inv%97, "memorySizeMB": 128, "maxMemoryUsedMB": 61 + inv%9},
		}})
		b, err := json.Marshal(evs)
		if err != nil {
			return Corpus{}, err
		}
		bodies = append(bodies, b)
	}

	// Decode and batch once to count bytes and CPU.
	var recs []buffer.Record
	cpu0 := cpuTime()
	b := buffer.NewBatcher(meta, buffer.Limits{MaxBytes: 8 << 20, MinBytes: -1}, nil)
	for _, body := range bodies {
		rs, bad := dec.Decode(body, at)
		if bad {
			return Corpus{}, fmt.Errorf("decode a corpus body: malformed")
		}
		for i := range rs {
			b.Add(&rs[i])
		}
		recs = append(recs, rs...)
	}
	b.Seal()
	cpu := cpuTime() - cpu0

	var c Corpus
	var rowBytes, reportBytes, reports int
	for i := range recs {
		n := len(buffer.AppendRow(nil, meta, &recs[i]))
		if recs[i].Type == "function" {
			rowBytes += n
		} else {
			reportBytes += n
			reports++
		}
	}
	c.LineBytes = float64(seen) / float64(lines)
	c.RowOverhead = float64(rowBytes-seen) / float64(lines)
	c.ReportRow = float64(reportBytes) / float64(reports)
	statsRow := buffer.Record{Time: at, Type: "sluice.stats", Fields: json.RawMessage(
		`{"interval_s":60.001,"lines_seen":612,"bytes_seen":187345,"lines_kept":612,"bytes_kept":187345,"lines_sampled_out":0,"bytes_sampled_out":0,` +
			`"lines_below_level":0,"bytes_below_level":0,"lines_over_cap":0,"bytes_over_cap":0,"invocations_decided_early":0,"invocations_partial":0,` +
			`"truncated_records":0,"malformed_bodies":0,"platform_dropped_records":0,"platform_events_skipped":0,"staged_lines":0,` +
			`"objects_written":1,"stored_bytes":412345,"upload_ms":48,"added_ms":0,"memory_mb":128,"arch":"x86_64"}`)}
	c.StatsRow = float64(len(buffer.AppendRow(nil, meta, &statsRow)))
	c.CPUPerGB = cpu.Seconds() / (float64(seen) / gib)

	// The ratio by batch size: fill batches of each size from the corpus.
	for _, size := range ratioSizes {
		bt := buffer.NewBatcher(meta, buffer.Limits{MaxBytes: size, MinBytes: -1}, nil)
		var raw, st int
		for i := range recs {
			for _, s := range bt.Add(&recs[i]) {
				raw += s.RawBytes
				st += len(s.Data)
			}
			if raw >= 8<<20 {
				break
			}
		}
		if raw == 0 {
			return Corpus{}, fmt.Errorf("corpus of %d bytes is too small to fill a %d-byte batch", seen, size)
		}
		c.RatioMeasured = append(c.RatioMeasured, RatioPoint{size, float64(raw) / float64(st)})
	}
	c.Ratio = interpolate(c.RatioMeasured)
	return c, nil
}

// interpolate returns the ratio at any batch size: linear in log size
// between measured points, flat beyond them.
func interpolate(pts []RatioPoint) func(int) float64 {
	return func(n int) float64 {
		if n <= pts[0].RawBytes {
			return pts[0].Ratio
		}
		for i := 1; i < len(pts); i++ {
			if n <= pts[i].RawBytes {
				a, b := pts[i-1], pts[i]
				f := (math.Log(float64(n)) - math.Log(float64(a.RawBytes))) / (math.Log(float64(b.RawBytes)) - math.Log(float64(a.RawBytes)))
				return a.Ratio + f*(b.Ratio-a.Ratio)
			}
		}
		return pts[len(pts)-1].Ratio
	}
}
