package main

import (
	"flag"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
)

// statsRow is a sluice.stats row's fields that the summary uses: counts
// since the previous row of the same environment, so the archive's rows add
// up to its totals.
type statsRow struct {
	LinesSeen       int64            `json:"lines_seen"`
	BytesSeen       int64            `json:"bytes_seen"`
	LinesKept       int64            `json:"lines_kept"`
	BytesKept       int64            `json:"bytes_kept"`
	LinesSampledOut int64            `json:"lines_sampled_out"`
	BytesSampledOut int64            `json:"bytes_sampled_out"`
	LinesBelowLevel int64            `json:"lines_below_level"`
	BytesBelowLevel int64            `json:"bytes_below_level"`
	LinesOverCap    int64            `json:"lines_over_cap"`
	BytesOverCap    int64            `json:"bytes_over_cap"`
	Partial         int64            `json:"invocations_partial"`
	Redactions      map[string]int64 `json:"redactions"`
	ObjectsWritten  int64            `json:"objects_written"`
	StoredBytes     int64            `json:"stored_bytes"`
	UploadMs        float64          `json:"upload_ms"`
	AddedMs         float64          `json:"added_ms"`
	MemoryMB        int64            `json:"memory_mb"`
	Arch            string           `json:"arch"`
}

func (s *statsRow) add(f statsRow) {
	s.LinesSeen += f.LinesSeen
	s.BytesSeen += f.BytesSeen
	s.LinesKept += f.LinesKept
	s.BytesKept += f.BytesKept
	s.LinesSampledOut += f.LinesSampledOut
	s.BytesSampledOut += f.BytesSampledOut
	s.LinesBelowLevel += f.LinesBelowLevel
	s.BytesBelowLevel += f.BytesBelowLevel
	s.LinesOverCap += f.LinesOverCap
	s.BytesOverCap += f.BytesOverCap
	s.Partial += f.Partial
	for k, v := range f.Redactions {
		if s.Redactions == nil {
			s.Redactions = map[string]int64{}
		}
		s.Redactions[k] += v
	}
	s.ObjectsWritten += f.ObjectsWritten
	s.StoredBytes += f.StoredBytes
	s.UploadMs += f.UploadMs
	s.AddedMs += f.AddedMs
	s.MemoryMB = max(s.MemoryMB, f.MemoryMB)
	s.Arch = cmpOr(f.Arch, s.Arch)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// printStats shows what sampling, filtering and redaction did.
func printStats(a *archive) {
	s := a.stats
	fmt.Printf("\nsluice.stats (summed over the archive's rows):\n")
	fmt.Printf("  seen      %6d lines  %s\n", s.LinesSeen, size(int(s.BytesSeen)))
	fmt.Printf("  kept      %6d lines  %s\n", s.LinesKept, size(int(s.BytesKept)))
	fmt.Printf("  sampled out (SLUICE_SAMPLE_RATE)       %6d lines  %s\n", s.LinesSampledOut, size(int(s.BytesSampledOut)))
	fmt.Printf("  below SLUICE_MIN_LEVEL                 %6d lines  %s\n", s.LinesBelowLevel, size(int(s.BytesBelowLevel)))
	fmt.Printf("  over SLUICE_MAX_LINES_PER_INVOKE       %6d lines  %s\n", s.LinesOverCap, size(int(s.BytesOverCap)))
	if len(s.Redactions) == 0 {
		fmt.Printf("  redacted: nothing (SLUICE_REDACT unset or no match)\n")
	} else {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.Redactions)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, s.Redactions[k]))
		}
		fmt.Printf("  redacted: %s\n", strings.Join(parts, " "))
	}
	fmt.Printf("  dropped on purpose: %d lines (accounted, not lost)\n", a.dropped)
}

// prices are the unit prices of the savings figures; README lists their
// sources, and layer/athena/queries.sql's savings query uses the same.
type prices struct {
	cloudWatchGB   float64
	eventOverhead  int64
	putPer1000     float64
	storageGBMonth float64
	gbsX86, gbsArm float64 // Lambda $/GB-s
}

func (p *prices) gbSecond(arch string) float64 {
	if arch == "arm64" {
		return p.gbsArm
	}
	return p.gbsX86
}

func pricesFlags(fs *flag.FlagSet) *prices {
	p := &prices{}
	fs.Float64Var(&p.cloudWatchGB, "price-cloudwatch", 0.50, "CloudWatch Logs ingestion $/GB (Standard; 0.25 for Infrequent Access)")
	fs.Int64Var(&p.eventOverhead, "cloudwatch-event-overhead", 26, "bytes CloudWatch adds to each line it ingests")
	fs.Float64Var(&p.putPer1000, "price-put", 0.005, "S3 PUT $ per 1,000 requests")
	fs.Float64Var(&p.storageGBMonth, "price-storage", 0.023, "S3 Standard $/GB-month")
	fs.Float64Var(&p.gbsX86, "price-gbs-x86", 0.0000166667, "Lambda $/GB-s, x86_64")
	fs.Float64Var(&p.gbsArm, "price-gbs-arm", 0.0000133334, "Lambda $/GB-s, arm64")
	return p
}

const gib = 1 << 30

// printSavings prints the run's savings with the savings query's formula.
// Fields that the archive's sluice.stats rows do not carry yet are taken
// from what the demo measured.
func printSavings(a *archive, p *prices, measuredAddedMs float64) {
	s := a.stats
	src := "sluice.stats"
	if s.ObjectsWritten == 0 {
		s.ObjectsWritten, s.StoredBytes, s.AddedMs = int64(len(a.keys)), int64(a.stored), measuredAddedMs
		src = "the demo's measurements (objects, stored bytes, added ms: not in sluice.stats yet)"
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = 128
	}
	if s.Arch == "" {
		s.Arch = map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	}
	cw := float64(s.BytesSeen+p.eventOverhead*s.LinesSeen) / gib * p.cloudWatchGB
	put := float64(s.ObjectsWritten) * p.putPer1000 / 1000
	storage := float64(s.StoredBytes) / gib * p.storageGBMonth
	gbs := s.AddedMs / 1000 * float64(s.MemoryMB) / 1024
	lambda := gbs * p.gbSecond(s.Arch)
	net := cw - put - storage - lambda
	fmt.Printf("\nsavings (layer/athena/queries.sql's formula; from %s):\n", src)
	fmt.Printf("  GB seen %.6f, GB archived %.6f (%.1fx smaller)\n", float64(s.BytesSeen)/gib, float64(s.StoredBytes)/gib,
		float64(s.BytesSeen)/float64(max(s.StoredBytes, 1)))
	fmt.Printf("  CloudWatch cost avoided   $%.8f  (%d lines + %d B overhead each at $%.2f/GB)\n", cw, s.LinesSeen, p.eventOverhead, p.cloudWatchGB)
	fmt.Printf("  S3 PUTs                  -$%.8f  (%d objects)\n", put, s.ObjectsWritten)
	fmt.Printf("  S3 storage, one month    -$%.8f\n", storage)
	fmt.Printf("  Lambda duration added    -$%.8f  (%.1f ms at %d MB %s = %.6f GB-s)\n", lambda, s.AddedMs, s.MemoryMB, s.Arch, gbs)
	fmt.Printf("  net saving                $%.8f  (%.0f%% of the CloudWatch cost)\n", net, 100*net/max(cw, 1e-12))
}
