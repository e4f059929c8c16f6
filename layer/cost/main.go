// Command cost is sluice's cost model: what archiving a function's logs
// with sluice costs per GB, against CloudWatch Logs, at a given traffic shape
// and batch policy, and how fresh the archive is.
//
// It measures what must not be assumed (bytes per row, the compression
// ratio by batch size, CPU per GB) by running realistic lines through
// sluice's own decoder and batcher, then simulates environments: random
// invocations, uploads at the start of the next invocation (or after each
// one with -flush invoke), hour boundaries, idle shutdowns and recycling.
//
//	go run ./layer/cost                          # one shape, the defaults
//	go run ./layer/cost -lines 1 -envs 100 -memory 1024 -arch arm64
//	go run ./layer/cost -grid                    # README's table
//	go run ./layer/cost -prices prices.json      # other prices (JSON, see Prices)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cost:", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cost", flag.ContinueOnError)
	p := DefaultPrices()
	var s Shape
	var pol Policy
	var up Upload
	fs.Float64Var(&s.LinesPerSec, "lines", 10, "function log lines per second, per environment")
	fs.Float64Var(&s.LineBytes, "line-bytes", 0, "mean line size in bytes (0: the realistic corpus's own, measured)")
	fs.IntVar(&s.Envs, "envs", 10, "concurrent execution environments")
	fs.Float64Var(&s.InvokesPerSec, "invokes", 0, "invocations per second per environment (0: lines/10, within 1/min..5/s)")
	fs.DurationVar(&s.Duration, "duration", 100*time.Millisecond, "the function's own run per invocation")
	fs.DurationVar(&s.IdleShutdown, "idle-shutdown", 10*time.Minute, "an environment idle this long is shut down (its batch goes at SHUTDOWN)")
	fs.DurationVar(&s.Lifetime, "lifetime", 4*time.Hour, "environments are recycled after this long")
	fs.IntVar(&s.MemoryMB, "memory", 128, "function memory in MB")
	fs.StringVar(&s.Arch, "arch", "x86_64", "x86_64 or arm64")
	fs.IntVar(&pol.MaxBytes, "max-bytes", buffer.DefaultMaxBytes, "SLUICE_BATCH_MAX_BYTES")
	fs.IntVar(&pol.MinBytes, "min-bytes", buffer.DefaultMinBytes, "SLUICE_BATCH_MIN_BYTES (0: none)")
	fs.DurationVar(&pol.MaxAge, "max-age", buffer.DefaultMaxAge, "SLUICE_BATCH_MAX_AGE")
	fs.DurationVar(&pol.MaxHold, "max-hold", buffer.DefaultMaxHold, "SLUICE_BATCH_MAX_HOLD")
	flush := fs.String("flush", "background", "SLUICE_FLUSH: background or invoke")
	fs.DurationVar(&up.Base, "upload-latency", 40*time.Millisecond, "time per PUT from inside Lambda, besides the transfer")
	mbps := fs.Float64("upload-mbps", 40, "PUT throughput in MB/s")
	cpuFactor := fs.Float64("cpu-factor", 2, "how much slower a Lambda core is than this machine's")
	horizon := fs.Duration("horizon", 24*time.Hour, "simulated time per environment")
	pricesFile := fs.String("prices", "", "JSON file with prices (fields of Prices; missing ones keep their defaults)")
	retention := fs.Float64("retention-months", 1, "months of S3 Standard storage charged per GB")
	grid := fs.Bool("grid", false, "print the grid: 0.1..1000 lines/s x 1..1000 environments")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pricesFile != "" {
		b, err := os.ReadFile(*pricesFile)
		if err != nil {
			return fmt.Errorf("read prices: %w", err)
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("read prices %s: %w", *pricesFile, err)
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "retention-months" {
			p.RetentionMonths = *retention
		}
	})
	switch *flush {
	case "background":
	case "invoke":
		pol.Invoke = true
	default:
		return fmt.Errorf("-flush %q: want background or invoke", *flush)
	}
	if pol.MinBytes > pol.MaxBytes {
		pol.MinBytes = pol.MaxBytes
	}
	up.BytesPerMs = *mbps * 1e3
	c, err := measureCorpus(24 << 20)
	if err != nil {
		return err
	}
	m := Model{Prices: p, Policy: pol, Upload: up, Corpus: c, CPUFactor: *cpuFactor, Horizon: *horizon, Seed: 1}
	fmt.Fprintf(out, "corpus (measured): line %.0f B, row overhead %.0f B/line, ratio %s, CPU %.2f s/GB here (x%.1f on Lambda)\n",
		c.LineBytes, c.RowOverhead, ratios(c), c.CPUPerGB, *cpuFactor)
	fmt.Fprintf(out, "policy: max-bytes %d, min-bytes %d, max-age %v, max-hold %v, flush %s; prices: PUT $%g/1000, storage $%g/GB-month x %g, Lambda $%g/GB-s (%s)\n",
		pol.MaxBytes, pol.MinBytes, pol.MaxAge, pol.MaxHold, *flush, p.PutPer1000, p.StorageGBMonth, p.RetentionMonths, p.LambdaGBSecond[s.Arch], s.Arch)
	if !*grid {
		if err := s.Check(); err != nil {
			return err
		}
		r := m.Run(s)
		printOne(out, r)
		return nil
	}
	fmt.Fprintln(out)
	printGridHeader(out)
	for _, lines := range []float64{0.1, 1, 10, 100, 1000} {
		g := s
		g.LinesPerSec, g.Envs = lines, 1
		if err := g.Check(); err != nil {
			return err
		}
		// Environments batch alone: $/GB and freshness do not depend on
		// how many run, only the totals do.
		r := m.Run(g)
		for _, envs := range []int{1, 10, 100, 1000} {
			r2 := r
			r2.Shape.Envs = envs
			r2.GBSeenPerDay = r.GBSeenPerDay * float64(envs)
			r2.ObjectsPerDay = r.ObjectsPerDay * float64(envs)
			printGridRow(out, r2)
		}
	}
	return nil
}

func ratios(c Corpus) string {
	s := ""
	for i, p := range c.RatioMeasured {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.1fx@%s", p.Ratio, size(float64(p.RawBytes)))
	}
	return s
}

func printOne(out io.Writer, r Result) {
	s := r.Shape
	fmt.Fprintf(out, "shape: %g lines/s x %.0f B per environment, %d environments, %.3g invocations/s each (%v), %d MB %s\n",
		s.LinesPerSec, r.lineBytes(), s.Envs, s.invokes(), s.Duration, s.MemoryMB, s.Arch)
	fmt.Fprintf(out, "volume: %.3g GB/day of lines, %.0f objects/day of %s\n", r.GBSeenPerDay, r.ObjectsPerDay, size(r.MeanObject))
	fmt.Fprintf(out, "per GB: %.0f PUTs, %.3f GB stored, %.2f CPU-s, %.2f ms added per invocation\n", r.PutsPerGB, r.StoredPerGB, r.CPUPerGB, r.AddedMsPerInv)
	fmt.Fprintf(out, "$/GB: PUT %.4f + storage %.4f + Lambda %.4f = %.4f; CloudWatch Standard %.3f, Infrequent Access %.3f\n",
		r.PutCost, r.StorageCost, r.LambdaCost, r.Total, r.CloudWatchStd, r.CloudWatchIA)
	fmt.Fprintf(out, "$/day: sluice %.4f, CloudWatch Standard %.4f\n", r.Total*r.GBSeenPerDay, r.CloudWatchStd*r.GBSeenPerDay)
	fmt.Fprintf(out, "freshness (line written -> object readable): p50 %s, p99 %s\n", dur(r.FreshP50), dur(r.FreshP99))
	fmt.Fprintf(out, "seals: size %d, age %d, hold %d, hour %d, invoke %d, shutdown %d (%d invocations, %d shutdowns)\n",
		r.SealsBySize, r.SealsByAge, r.SealsByHold, r.SealsByHour, r.SealsAtInvoke, r.SealsAtShutdwn, r.Invocations, r.Shutdowns)
}

func (r Result) lineBytes() float64 { return r.Shape.LineBytes }

func printGridHeader(out io.Writer) {
	fmt.Fprintln(out, "| lines/s/env | envs | GB/day | objects/day | object | PUT $/GB | storage $/GB | Lambda $/GB | **total $/GB** | CloudWatch $/GB | fresh p50 | fresh p99 |")
	fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
}

func printGridRow(out io.Writer, r Result) {
	mark := ""
	if r.Total > 0.01 {
		mark = " ✗"
	}
	fmt.Fprintf(out, "| %g | %d | %.3g | %.0f | %s | %.4f | %.4f | %.4f | **%.4f**%s | %.3f | %s | %s |\n",
		r.Shape.LinesPerSec, r.Shape.Envs, r.GBSeenPerDay, r.ObjectsPerDay, size(r.MeanObject),
		r.PutCost, r.StorageCost, r.LambdaCost, r.Total, mark, r.CloudWatchStd, dur(r.FreshP50), dur(r.FreshP99))
}

func size(n float64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%.1f min", d.Minutes())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
