package main

import (
	"bytes"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// measured is the realistic corpus, measured once for the tests.
var measured = sync.OnceValues(func() (Corpus, error) { return measureCorpus(10 << 20) })

func defaultModel(t *testing.T) Model {
	t.Helper()
	c, err := measured()
	if err != nil {
		t.Fatalf("measureCorpus: %v", err)
	}
	// CPU is what this machine measured without the race detector (which
	// slows the batcher tenfold): the claims must not depend on how the
	// test binary was built.
	c.CPUPerGB = 12.6
	return Model{
		Prices:    DefaultPrices(),
		Policy:    Policy{MaxBytes: buffer.DefaultMaxBytes, MinBytes: buffer.DefaultMinBytes, MaxAge: buffer.DefaultMaxAge, MaxHold: buffer.DefaultMaxHold},
		Upload:    Upload{Base: 40 * time.Millisecond, BytesPerMs: 40e3},
		Corpus:    c,
		CPUFactor: 2,
		Horizon:   24 * time.Hour,
		Seed:      1,
	}
}

func shape(lines float64) Shape {
	return Shape{LinesPerSec: lines, Envs: 1, Duration: 100 * time.Millisecond, IdleShutdown: 10 * time.Minute,
		Lifetime: 4 * time.Hour, MemoryMB: 128, Arch: "x86_64"}
}

// TestCorpusRatio checks the measured corpus looks like real logs: a ratio
// near 8-10x on full batches (a repeated string gives 40x), worse on tiny
// ones.
func TestCorpusRatio(t *testing.T) {
	c, err := measured()
	if err != nil {
		t.Fatal(err)
	}
	full := c.Ratio(8 << 20)
	if full < 6 || full > 12 {
		t.Errorf("ratio of an 8 MiB batch = %.1fx, want 6..12x for realistic logs", full)
	}
	if small := c.Ratio(16 << 10); small >= full {
		t.Errorf("ratio of a 16 KiB batch = %.1fx, want below the 8 MiB batch's %.1fx", small, full)
	}
	if c.LineBytes < 200 || c.LineBytes > 600 || c.RowOverhead <= 0 {
		t.Errorf("line %.0f B, row overhead %.0f B: want a 200-600 B line and a positive overhead", c.LineBytes, c.RowOverhead)
	}
}

// TestDefaultsMeetTarget is the claim in README: with the default policy
// sluice costs at most $0.01/GB from 1 line/s per environment up, and the
// one place it cannot, 0.1 lines/s, is above it because of the hourly
// partition (one PUT per environment-hour), not the policy.
func TestDefaultsMeetTarget(t *testing.T) {
	m := defaultModel(t)
	for _, lines := range []float64{0.1, 1, 10, 100, 1000} {
		r := m.Run(shape(lines))
		within := r.Total <= 0.01
		if want := lines >= 1; within != want {
			t.Errorf("%g lines/s: total $%.4f/GB, within $0.01 = %v, want %v", lines, r.Total, within, want)
		}
		if r.Total >= r.CloudWatchIA/4 {
			t.Errorf("%g lines/s: total $%.4f/GB, want well under CloudWatch IA's $%.3f", lines, r.Total, r.CloudWatchIA)
		}
		if lines <= 1 && r.SealsByHour+r.SealsByHold+r.SealsAtShutdwn < r.SealsByAge {
			t.Errorf("%g lines/s: seals by hour %d, hold %d, shutdown %d, age %d: want small batches held, not sealed by age",
				lines, r.SealsByHour, r.SealsByHold, r.SealsAtShutdwn, r.SealsByAge)
		}
	}
}

// TestHoldingPays shows why the minimum exists: sealing every MaxAge
// whatever the size (the old policy) costs more than $0.01/GB at 10
// lines/s; holding to 2 MiB brings it under.
func TestHoldingPays(t *testing.T) {
	m := defaultModel(t)
	m.Policy.MinBytes = 0
	old := m.Run(shape(10))
	m.Policy.MinBytes = buffer.DefaultMinBytes
	cur := m.Run(shape(10))
	if old.Total <= 0.01 || cur.Total > 0.01 {
		t.Errorf("10 lines/s: $%.4f/GB sealing every minute, $%.4f/GB holding to 2 MiB; want above and within $0.01", old.Total, cur.Total)
	}
	if cur.FreshP99 <= old.FreshP99 || cur.FreshP99 > 15*time.Minute {
		t.Errorf("p99 freshness %v holding, %v not: want holding to cost freshness, within 15 min", cur.FreshP99, old.FreshP99)
	}
}

// TestAccounting checks the simulation's arithmetic against a corpus with
// round numbers: 1,000-byte lines, no row overhead, ratio 10, no extra rows.
func TestAccounting(t *testing.T) {
	c := Corpus{LineBytes: 1000, CPUPerGB: 0, Ratio: func(int) float64 { return 10 }}
	m := Model{
		Prices:  DefaultPrices(),
		Policy:  Policy{MaxBytes: 1 << 20, MinBytes: 0, MaxAge: time.Hour, MaxHold: time.Hour},
		Upload:  Upload{Base: 10 * time.Millisecond, BytesPerMs: 1e6},
		Corpus:  c,
		Horizon: 24 * time.Hour, CPUFactor: 1, Seed: 3,
	}
	s := shape(100) // 100 kB/s: a 1 MiB batch every ~10 s, by size
	s.Lifetime = 48 * time.Hour
	r := m.Run(s)
	gb := 100 * 1000 * 86400 / float64(gib)
	wantPuts := gb * gib / (1 << 20)
	if math.Abs(r.PutsPerGB*gb-wantPuts)/wantPuts > 0.02 {
		t.Errorf("PUTs in a day = %.0f, want about %.0f (one per MiB)", r.PutsPerGB*gb, wantPuts)
	}
	if math.Abs(r.StoredPerGB-0.1) > 0.001 {
		t.Errorf("stored per GB = %.4f, want 0.1 at ratio 10", r.StoredPerGB)
	}
	if want := 0.5 * (1000 + 26) / 1000; math.Abs(r.CloudWatchStd-want) > 1e-9 {
		t.Errorf("CloudWatch Standard = $%.4f/GB, want $%.4f (26 bytes per event)", r.CloudWatchStd, want)
	}
	if r.SealsBySize < r.Invocations/1000 || r.SealsByAge != 0 {
		t.Errorf("seals: size %d, age %d; want size seals only", r.SealsBySize, r.SealsByAge)
	}
	// A 1 MiB batch fills in ~10.5 s: lines wait half of that on average.
	if r.FreshP50 < 3*time.Second || r.FreshP50 > 8*time.Second {
		t.Errorf("p50 freshness = %v, want about 5 s", r.FreshP50)
	}
}

// TestIdleEnvironment: an environment invoked about twice an hour is shut
// down after each burst; its lines are readable only at SHUTDOWN, an idle
// period after they were written.
func TestIdleEnvironment(t *testing.T) {
	m := defaultModel(t)
	s := shape(0.01)
	s.InvokesPerSec = 1.0 / 1800
	r := m.Run(s)
	if r.Shutdowns < r.Invocations*3/4 {
		t.Errorf("%d shutdowns for %d invocations, want most invocations followed by a shutdown", r.Shutdowns, r.Invocations)
	}
	if r.FreshP50 < 10*time.Minute || r.FreshP50 > 11*time.Minute {
		t.Errorf("p50 freshness = %v, want the 10 min idle shutdown", r.FreshP50)
	}
}

// TestInvokeFlushCost: SLUICE_FLUSH=invoke pays one PUT per invocation,
// which at 10 lines per invocation costs more than CloudWatch.
func TestInvokeFlushCost(t *testing.T) {
	m := defaultModel(t)
	m.Policy.Invoke = true
	r := m.Run(shape(10))
	if r.SealsAtInvoke < r.Invocations-1 || r.Total < r.CloudWatchStd {
		t.Errorf("invoke flush: %d seals for %d invocations, $%.3f/GB; want one per invocation, above CloudWatch's $%.3f",
			r.SealsAtInvoke, r.Invocations, r.Total, r.CloudWatchStd)
	}
	if r.FreshP99 > time.Second || r.AddedMsPerInv < 40 {
		t.Errorf("invoke flush: p99 %v, %.1f ms added per invocation; want under 1 s and the upload time added", r.FreshP99, r.AddedMsPerInv)
	}
}

func TestShapeCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Shape)
		want string
	}{
		{"ok", func(*Shape) {}, ""},
		{"no lines", func(s *Shape) { s.LinesPerSec = 0 }, "lines per second"},
		{"no environments", func(s *Shape) { s.Envs = 0 }, "environments"},
		{"memory", func(s *Shape) { s.MemoryMB = 64 }, "memory 64 MB"},
		{"arch", func(s *Shape) { s.Arch = "amd64" }, `architecture "amd64"`},
		{"overlapping invocations", func(s *Shape) { s.InvokesPerSec = 20 }, "do not fit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := shape(1)
			c.edit(&s)
			err := s.Check()
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Check() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestInterpolate(t *testing.T) {
	f := interpolate([]RatioPoint{{1 << 10, 2}, {4 << 10, 6}})
	for _, c := range []struct {
		n    int
		want float64
	}{{100, 2}, {1 << 10, 2}, {2 << 10, 4}, {4 << 10, 6}, {1 << 20, 6}} {
		if got := f(c.n); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("ratio(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

func TestCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-lines", "5", "-envs", "3", "-arch", "arm64", "-memory", "512", "-horizon", "6h"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"5 lines/s", "3 environments", "512 MB arm64", "$/GB: PUT", "freshness", "Lambda $1.33334e-05/GB-s (arm64)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run([]string{"-flush", "sometimes"}, &out); err == nil || !strings.Contains(err.Error(), "-flush") {
		t.Errorf("run -flush sometimes = %v, want an error naming -flush", err)
	}
}
