package main

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Prices are the unit prices the model charges. They are inputs (flags or
// a JSON file); README lists their sources.
type Prices struct {
	PutPer1000      float64            `json:"s3_put_per_1000"`     // S3 Standard PUT
	StorageGBMonth  float64            `json:"s3_storage_gb_month"` // S3 Standard storage
	LambdaGBSecond  map[string]float64 `json:"lambda_gb_second"`    // by architecture
	CloudWatchStd   float64            `json:"cloudwatch_standard_gb"`
	CloudWatchIA    float64            `json:"cloudwatch_infrequent_access_gb"`
	EventOverhead   int                `json:"cloudwatch_event_overhead_bytes"` // added to each line CloudWatch ingests
	RetentionMonths float64            `json:"retention_months"`                // storage months charged per GB
}

// DefaultPrices are us-east-1 list prices (see README, "What sluice costs").
func DefaultPrices() Prices {
	return Prices{
		PutPer1000:      0.005,
		StorageGBMonth:  0.023,
		LambdaGBSecond:  map[string]float64{"x86_64": 0.0000166667, "arm64": 0.0000133334},
		CloudWatchStd:   0.50,
		CloudWatchIA:    0.25,
		EventOverhead:   26,
		RetentionMonths: 1,
	}
}

// Shape is one environment's traffic. Invocations arrive at random
// (exponential gaps); an environment idle for IdleShutdown, or alive for
// Lifetime, is shut down and the next invocation starts a new one.
type Shape struct {
	LinesPerSec   float64       // function log lines per second, per environment
	LineBytes     float64       // mean line size; 0 means the corpus's own
	Envs          int           // concurrent environments
	InvokesPerSec float64       // per environment; 0 means LinesPerSec/10 within [1/min, 5/s]
	Duration      time.Duration // the function's own run per invocation
	IdleShutdown  time.Duration
	Lifetime      time.Duration
	MemoryMB      int
	Arch          string // x86_64 or arm64
}

func (s Shape) invokes() float64 {
	if s.InvokesPerSec > 0 {
		return s.InvokesPerSec
	}
	return min(max(s.LinesPerSec/10, 1.0/60), 5)
}

// Policy is the batch sealing policy and the flush mode (buffer.Limits and
// SLUICE_FLUSH).
type Policy struct {
	MaxBytes int
	MinBytes int // 0: none
	MaxAge   time.Duration
	MaxHold  time.Duration
	Invoke   bool // SLUICE_FLUSH=invoke: seal and upload after every invocation
}

// Upload is how long a PUT takes from inside Lambda.
type Upload struct {
	Base       time.Duration // per request
	BytesPerMs float64       // throughput
}

func (u Upload) took(n int) time.Duration {
	return u.Base + time.Duration(float64(n)/u.BytesPerMs*float64(time.Millisecond))
}

// Corpus is what was measured on realistic lines with sluice's own decoder
// and batcher (see measure.go).
type Corpus struct {
	LineBytes     float64           // mean line bytes (what CloudWatch would ingest, before its overhead)
	RowOverhead   float64           // NDJSON bytes per line beyond the line itself
	ReportRow     float64           // NDJSON bytes of a platform.report row
	StatsRow      float64           // NDJSON bytes of a sluice.stats row
	CPUPerGB      float64           // decode + batch CPU seconds per GB of lines, on this machine
	Ratio         func(int) float64 // raw/stored of a batch of that many raw bytes
	RatioMeasured []RatioPoint
}

// RatioPoint is one measured batch size.
type RatioPoint struct {
	RawBytes int
	Ratio    float64
}

// Model holds everything but the shape.
type Model struct {
	Prices    Prices
	Policy    Policy
	Upload    Upload
	Corpus    Corpus
	CPUFactor float64       // how much slower a Lambda core is than this machine's
	Horizon   time.Duration // simulated time per environment
	Seed      uint64
}

// Result is the model's answer for one shape, per GB of lines seen.
type Result struct {
	Shape          Shape
	GBSeenPerDay   float64 // all environments
	ObjectsPerDay  float64 // all environments
	MeanObject     float64 // stored bytes
	PutsPerGB      float64
	StoredPerGB    float64 // GB stored per GB seen
	CPUPerGB       float64 // extension CPU seconds on Lambda
	AddedMsPerInv  float64 // billed duration added per invocation (uploads past the function's end)
	PutCost        float64 // $/GB
	StorageCost    float64 // $/GB, for Prices.RetentionMonths
	LambdaCost     float64 // $/GB: CPU taken from the function and upload time past its end
	Total          float64 // $/GB
	CloudWatchStd  float64 // $/GB of lines, with the per-event overhead
	CloudWatchIA   float64
	FreshP50       time.Duration // line written -> its object readable
	FreshP99       time.Duration
	Invocations    int
	Shutdowns      int
	SealsBySize    int
	SealsByAge     int
	SealsByHold    int
	SealsByHour    int
	SealsAtInvoke  int
	SealsAtShutdwn int
}

// vCPUMB is the memory at which a function gets one full vCPU; below it the
// share is proportional, so a CPU-second of extension work costs the
// function 1769/memory seconds of its own time.
const vCPUMB = 1769

type pending struct {
	at    time.Duration // when the lines were written
	lines float64
}

type batch struct {
	opened time.Duration
	hour   int64
	raw    float64
	lines  []pending
}

type sealed struct {
	raw, stored float64
	lines       []pending
}

// Run simulates one environment slot for Horizon and scales to the shape.
func (m Model) Run(s Shape) Result {
	rng := rand.New(rand.NewPCG(m.Seed, uint64(s.LinesPerSec*1000)))
	lineBytes := cmp.Or(s.LineBytes, m.Corpus.LineBytes)
	rowBytes := lineBytes + m.Corpus.RowOverhead
	inv := s.invokes()
	perInv := s.LinesPerSec / inv
	// Text logs keep the hour of the time they were written; start mid-hour
	// so the first batch is not aligned.
	var (
		res      = Result{Shape: s}
		open     *batch
		queue    []sealed
		delays   []pending // delay, weight
		puts     int
		stored   float64
		seen     float64
		lines    float64
		added    time.Duration
		envStart time.Duration = -1
		last     time.Duration
		stats    time.Duration
	)
	res.Shape.LineBytes = lineBytes
	const origin = 17 * time.Minute
	seal := func(reason *int) {
		if open == nil {
			return
		}
		st := open.raw / m.Corpus.Ratio(int(open.raw))
		queue = append(queue, sealed{raw: open.raw, stored: st, lines: open.lines})
		open = nil
		*reason++
	}
	deliver := func(at time.Duration, b sealed) time.Duration {
		end := at + m.Upload.took(int(b.stored))
		puts++
		stored += b.stored
		for _, p := range b.lines {
			delays = append(delays, pending{at: end - p.at, lines: p.lines})
		}
		return end
	}
	add := func(at time.Duration, raw, n float64) {
		h := int64((origin + at) / time.Hour)
		if open != nil && open.hour != h {
			seal(&res.SealsByHour)
		}
		if open == nil {
			open = &batch{opened: at, hour: h}
		}
		open.raw += raw
		if n > 0 {
			open.lines = append(open.lines, pending{at: at, lines: n})
		}
		if open.raw >= float64(m.Policy.MaxBytes) {
			seal(&res.SealsBySize)
		}
	}
	due := func(at time.Duration) (bool, *int) {
		if open == nil {
			return false, nil
		}
		age := at - open.opened
		if open.raw >= float64(m.Policy.MinBytes) {
			return age >= m.Policy.MaxAge, &res.SealsByAge
		}
		return age >= max(m.Policy.MaxHold, m.Policy.MaxAge), &res.SealsByHold
	}
	shutdown := func(at time.Duration) {
		seal(&res.SealsAtShutdwn)
		for _, b := range queue {
			at = deliver(at, b) // SHUTDOWN is not billed
		}
		queue = nil
		envStart = -1
		res.Shutdowns++
	}
	t := time.Duration(0)
	for {
		t += time.Duration(rng.ExpFloat64() / inv * float64(time.Second))
		if envStart >= 0 && (t-last > s.IdleShutdown || t-envStart > s.Lifetime) {
			shutdown(min(last+s.IdleShutdown, envStart+s.Lifetime))
		}
		if t > m.Horizon {
			break
		}
		if envStart < 0 {
			envStart, stats = t, t
		}
		res.Invocations++
		last = t
		end := t + s.Duration
		n := math.Floor(perInv)
		if rng.Float64() < perInv-n {
			n++
		}
		if m.Policy.Invoke {
			add(t+s.Duration/2, n*rowBytes+m.Corpus.ReportRow, n)
			seal(&res.SealsAtInvoke)
			at := end
			for _, b := range queue {
				at = deliver(at, b)
			}
			queue = nil
			added += at - end
		} else {
			if ok, reason := due(t); ok {
				seal(reason)
			}
			at := t
			for len(queue) > 0 && at < end {
				at = deliver(at, queue[0])
				queue = queue[1:]
			}
			added += max(at-end, 0)
			add(t+s.Duration/2, n*rowBytes, n)
			add(end, m.Corpus.ReportRow, 0)
		}
		if t-stats >= time.Minute {
			add(t, m.Corpus.StatsRow, 0)
			stats = t
		}
		seen += n * lineBytes
		lines += n
		last = end
	}
	if envStart >= 0 {
		shutdown(last + s.IdleShutdown)
	}

	gb := seen / gib
	days := m.Horizon.Hours() / 24
	cpu := m.Corpus.CPUPerGB * m.CPUFactor * gb
	mem := float64(s.MemoryMB) / 1024
	gbs := added.Seconds()*mem + cpu*vCPUMB/float64(max(s.MemoryMB, 1))*mem
	price := m.Prices.LambdaGBSecond[s.Arch]
	res.GBSeenPerDay = gb / days * float64(s.Envs)
	res.ObjectsPerDay = float64(puts) / days * float64(s.Envs)
	res.MeanObject = stored / float64(max(puts, 1))
	res.PutsPerGB = float64(puts) / gb
	res.StoredPerGB = stored / gib / gb
	res.CPUPerGB = cpu / gb
	res.AddedMsPerInv = float64(added.Milliseconds()) / float64(max(res.Invocations, 1))
	res.PutCost = res.PutsPerGB * m.Prices.PutPer1000 / 1000
	res.StorageCost = res.StoredPerGB * m.Prices.StorageGBMonth * m.Prices.RetentionMonths
	res.LambdaCost = gbs * price / gb
	res.Total = res.PutCost + res.StorageCost + res.LambdaCost
	cw := (seen + lines*float64(m.Prices.EventOverhead)) / gib / gb
	res.CloudWatchStd = cw * m.Prices.CloudWatchStd
	res.CloudWatchIA = cw * m.Prices.CloudWatchIA
	res.FreshP50, res.FreshP99 = percentile(delays, 0.50), percentile(delays, 0.99)
	return res
}

// percentile returns the weighted q-quantile of the delays.
func percentile(d []pending, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.SortFunc(d, func(a, b pending) int { return cmp.Compare(a.at, b.at) })
	total := 0.0
	for _, p := range d {
		total += p.lines
	}
	acc := 0.0
	for _, p := range d {
		acc += p.lines
		if acc >= q*total {
			return p.at
		}
	}
	return d[len(d)-1].at
}

// Check reports a shape or policy the model cannot run.
func (s Shape) Check() error {
	switch {
	case s.LinesPerSec <= 0:
		return fmt.Errorf("lines per second %v: want > 0", s.LinesPerSec)
	case s.Envs < 1:
		return fmt.Errorf("environments %d: want >= 1", s.Envs)
	case s.MemoryMB < 128 || s.MemoryMB > 10240:
		return fmt.Errorf("memory %d MB: want 128..10240", s.MemoryMB)
	case s.Arch != "x86_64" && s.Arch != "arm64":
		return fmt.Errorf("architecture %q: want x86_64 or arm64", s.Arch)
	case s.InvokesPerSec > 0 && s.Duration > 0 && s.InvokesPerSec*s.Duration.Seconds() > 1:
		return fmt.Errorf("%v invocations/s of %v each do not fit one environment", s.InvokesPerSec, s.Duration)
	}
	return nil
}

// gib is the GB of AWS prices.
const gib = 1 << 30
