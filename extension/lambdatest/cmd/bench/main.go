// Command bench is `make bench`: one table of what sluice costs, every
// figure beside a reference measured in the same run, so that the ratios
// hold on a busy machine.
//
//   - In process: the pipeline stage by stage (decode, stage/sample,
//     encode NDJSON, zstd) over a seeded corpus of telemetry bodies, next
//     to its ceilings: a raw byte scan of the same bodies and zstd alone on
//     the NDJSON the pipeline writes.
//   - The real binary under the local Lambda (extension/lambdatest), next
//     to nullext, a do-nothing extension built from the repository: init
//     (exec to the first /event/next, against a minimal API stub), RSS
//     after init and at peak, CPU per invocation and per GB of lines
//     (utime+stime of /proc/PID/stat), time added per invocation, shutdown,
//     at 1, 10 and 1,000 lines per invocation; binary and zip sizes per
//     architecture; the compression ratio.
//
// -short (or BENCH_SHORT=1) runs a smaller corpus and fewer invocations
// for CI. -quota runs the extensions under Lambda-sized CPU shares
// instead (see quota.go). The bench binary is also the function's runtime
// (-as-runtime), so it needs nothing but the repository and Go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-logs/sluice/sinks/s3test"
)

type options struct {
	short      bool
	seed       uint64
	sink       string // "s3" or "file"
	sluice     string // a prebuilt binary; empty: build it
	quota      bool
	quotaSecs  int
	asRuntime  bool
	env        []string // extra K=V for sluice
	profile    string
	corpusSize int
}

func main() {
	var o options
	flag.BoolVar(&o.short, "short", os.Getenv("BENCH_SHORT") == "1", "a quick run for CI (also BENCH_SHORT=1)")
	flag.Uint64Var(&o.seed, "seed", 1, "corpus seed")
	flag.StringVar(&o.sink, "sink", "s3", `sluice's sink: "s3" (versitygw over TLS) or "file" (a local directory)`)
	flag.StringVar(&o.sluice, "sluice", "", "the sluice binary to measure (default: build ./extension/cmd/sluice)")
	flag.BoolVar(&o.quota, "quota", false, "run under Lambda-sized CPU quotas (cgroup) instead of the table")
	flag.IntVar(&o.quotaSecs, "quota-seconds", 20, "seconds of logs per quota run")
	flag.StringVar(&o.profile, "profile", "", "write CPU and allocation profiles of sluice's init and of 1,000 lines per invocation under this directory, instead of the table")
	flag.Func("env", "K=V added to sluice's environment (repeatable), e.g. -env GOGC=50 to try a setting", func(kv string) error {
		if !strings.Contains(kv, "=") {
			return errors.New("want K=V")
		}
		o.env = append(o.env, kv)
		return nil
	})
	flag.BoolVar(&o.asRuntime, "as-runtime", false, "act as the function's runtime (used by the benchmark itself)")
	flag.IntVar(&o.corpusSize, "corpus", 0, "corpus lines (default 20000, 5000 with -short)")
	flag.Parse()
	if o.corpusSize == 0 {
		o.corpusSize = 20000
		if o.short {
			o.corpusSize = 5000
		}
	}
	if o.asRuntime {
		if err := runFunction(o.seed, o.corpusSize); err != nil {
			fmt.Fprintln(os.Stderr, "bench runtime:", err)
			os.Exit(1)
		}
		return
	}
	ctx := context.Background()
	var err error
	switch {
	case o.profile != "":
		err = runProfile(ctx, o, o.profile, os.Stdout)
	case o.quota:
		err = runQuota(ctx, o, os.Stdout)
	default:
		err = runTable(ctx, o, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// binaries are the executables a run needs, built for this machine.
type binaries struct {
	dir     string
	sluice  string // .../sluice
	null    string // .../nullext
	runtime []string
}

// moduleRoot is the repository's root (where go.mod is).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run bench from inside the sluice module")
	}
	return filepath.Dir(mod), nil
}

// build builds pkg for goarch the way the layer is built.
func build(root, pkg, goarch, out string) error {
	cmd := execGo(root, "build", "-trimpath", "-ldflags", "-s -w", "-tags", "lambda", "-o", out, pkg)
	cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for %s: %w\n%s", pkg, goarch, err, b)
	}
	return nil
}

// execGo is the go command run in root for linux without cgo.
func execGo(root string, args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	return cmd
}

func prepare(o options, work string) (*binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	b := &binaries{dir: filepath.Join(work, "bin")}
	b.sluice = filepath.Join(b.dir, "sluice")
	b.null = filepath.Join(b.dir, "nullext")
	if o.sluice != "" {
		if err := copyFile(o.sluice, b.sluice); err != nil {
			return nil, err
		}
	} else if err := build(root, "./extension/cmd/sluice", runtime.GOARCH, b.sluice); err != nil {
		return nil, err
	}
	if err := build(root, "./extension/lambdatest/internal/nullext", runtime.GOARCH, b.null); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the bench binary: %w", err)
	}
	b.runtime = []string{self, "-as-runtime", fmt.Sprintf("-seed=%d", o.seed), fmt.Sprintf("-corpus=%d", o.corpusSize)}
	return b, nil
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// sinkSetup starts the sink sluice writes to and returns its environment
// per run and how to read back what a run archived.
func sinkSetup(ctx context.Context, o options, work string) (env func(run int) []string, archive func(run int) (*archived, error), stop func(), desc string, err error) {
	if o.sink == "s3" {
		if _, lerr := exec.LookPath("versitygw"); lerr != nil {
			fmt.Fprintln(os.Stderr, "bench: versitygw not found (make tools); using the file sink")
			o.sink = "file"
		}
	}
	switch o.sink {
	case "s3":
		srv, stopS3, err := s3test.Run(ctx, filepath.Join(work, "s3"))
		if err != nil {
			return nil, nil, nil, "", fmt.Errorf("start versitygw: %w", err)
		}
		env = func(run int) []string {
			return append(srv.Env(), fmt.Sprintf("SLUICE_SINK=s3://%s/run%d", srv.Bucket, run))
		}
		archive = func(run int) (*archived, error) {
			all, err := srv.ReadObjects()
			if err != nil {
				return nil, err
			}
			prefix := fmt.Sprintf("run%d/", run)
			maps.DeleteFunc(all, func(k string, _ []byte) bool { return !strings.HasPrefix(k, prefix) })
			return readArchive(all)
		}
		return env, archive, stopS3, "S3 (versitygw over TLS on this machine)", nil
	case "file":
		env = func(run int) []string {
			return []string{fmt.Sprintf("SLUICE_SINK=file://%s", filepath.Join(work, "archive", itoa(run)))}
		}
		archive = func(run int) (*archived, error) {
			objects := map[string][]byte{}
			dir := filepath.Join(work, "archive", itoa(run))
			err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(path)
				objects[path] = b
				return err
			})
			if err != nil {
				return nil, err
			}
			return readArchive(objects)
		}
		return env, archive, func() {}, "a local directory (file://)", nil
	}
	return nil, nil, nil, "", fmt.Errorf("-sink %q: want s3 or file", o.sink)
}

// nullBuffering is the reference extension's subscription: the largest
// batches with Lambda's shortest wait, 25 ms, which is what sluice
// subscribed with before its buffering was chosen from this benchmark and
// what an extension that must see an invocation's records before its end
// needs. sluice's own choice is measured against it.
const nullBuffering = `{"maxItems":10000,"maxBytes":1048576,"timeoutMs":25}`

// extEnv is the environment of an extension in run: sluice gets its sink
// and spill directory, nullext its buffering.
func extEnv(work string, sinkEnv func(int) []string, extra []string) func(ext string, run int) []string {
	return func(ext string, run int) []string {
		if ext == "null" {
			return []string{"NULLEXT_BUFFERING=" + nullBuffering}
		}
		env := append(sinkEnv(run),
			"SLUICE_LISTEN_ADDR=127.0.0.1:0",
			"SLUICE_SPILL_DIR="+filepath.Join(work, "sluice-spill-"+itoa(run)),
		)
		return append(env, extra...)
	}
}

// lambdaEnv is what Lambda gives every extension, for the init stub.
func lambdaEnv() []string {
	return []string{
		"AWS_LAMBDA_FUNCTION_NAME=bench", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128", "AWS_REGION=us-east-1",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand", "AWS_LAMBDA_LOG_FORMAT=JSON",
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
}

// initRuns measures init reps times per extension, alternating so that
// both see the same machine, and returns the medians.
func initRuns(ctx context.Context, reps int, argv map[string][]string, env func(ext string, run int) []string, run int) (map[string]*initResult, error) {
	all := map[string][]*initResult{}
	for i := range reps {
		for _, ext := range []string{"null", "sluice"} {
			r, err := measureInit(ctx, ext, argv[ext], append(lambdaEnv(), env(ext, run+i)...))
			if err != nil {
				return nil, err
			}
			all[ext] = append(all[ext], r)
		}
	}
	med := map[string]*initResult{}
	for ext, rs := range all {
		m := &initResult{}
		pick := func(f func(*initResult) time.Duration) time.Duration {
			ds := make([]time.Duration, len(rs))
			for i, r := range rs {
				ds[i] = f(r)
			}
			return pct(ds, 50)
		}
		m.init = pick(func(r *initResult) time.Duration { return r.init })
		m.initCPU = pick(func(r *initResult) time.Duration { return r.initCPU })
		m.shutdown = pick(func(r *initResult) time.Duration { return r.shutdown })
		m.rssKB = int64(pick(func(r *initResult) time.Duration { return time.Duration(r.rssKB) }))
		m.anonKB = int64(pick(func(r *initResult) time.Duration { return time.Duration(r.anonKB) }))
		med[ext] = m
	}
	return med, nil
}

// header prints the machine and the corpus.
func header(w io.Writer, o options, c *corpus, sink string) {
	load, _ := os.ReadFile("/proc/loadavg")
	kinds := slices.Sorted(maps.Keys(c.kinds))
	var mix []string
	for _, k := range kinds {
		mix = append(mix, fmt.Sprintf("%s %.1f%%", k, 100*float64(c.kinds[k])/float64(len(c.lines))))
	}
	mode := "full"
	if o.short {
		mode = "short"
	}
	fmt.Fprintf(w, "sluice bench (%s): %s, %d cores, %s/%s, %s, load %s\n", mode, cpuModel(), runtime.NumCPU(),
		runtime.GOOS, runtime.GOARCH, runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(w, "corpus: seed %d, %d lines, %.1f MB (%s); sink: %s\n\n", o.seed, len(c.lines),
		float64(c.bytes)/1e6, strings.Join(mix, ", "), sink)
}

// row is one line of the table.
type row struct {
	measure, sluice, ref, ratio, goal, met string
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tsluice\treference\tratio\tgoal\tmet")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.measure, r.sluice, r.ref, r.ratio, r.goal, r.met)
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
func mb(kb int64) string        { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// perGB is CPU seconds per GB of log lines.
func perGB(cpu time.Duration, bytes int64) float64 {
	if bytes == 0 {
		return 0
	}
	return cpu.Seconds() / (float64(bytes) / 1e9)
}

// fnMs is how long each invocation of the benchmark's function lasts.
const fnMs = 100

func runTable(ctx context.Context, o options, w io.Writer) error {
	started := time.Now()
	work, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bins, err := prepare(o, work)
	if err != nil {
		return err
	}
	c := newCorpus(o.seed, o.corpusSize)
	sinkEnv, archive, stop, sinkDesc, err := sinkSetup(ctx, o, work)
	if err != nil {
		return err
	}
	defer stop()
	header(w, o, c, sinkDesc)

	var rows []row
	// In process.
	budget := 300 * time.Millisecond
	if o.short {
		budget = 50 * time.Millisecond
	}
	pr, err := runPipeline(c, budget)
	if err != nil {
		return err
	}
	zs := pr.zstd.cpu
	line := func(s stage) string {
		ns := float64(s.cpu) / float64(pr.lines)
		return fmt.Sprintf("%.0f ns/line, %.0f MB/s, %.1f allocs", ns, float64(pr.lineBytes)/s.cpu.Seconds()/1e6, s.allocs)
	}
	for i, s := range pr.stages {
		r := row{measure: "in-process: " + s.name, sluice: line(s), ref: fmt.Sprintf("zstd %.0f ns/line", float64(zs)/float64(pr.lines)),
			ratio: ratio(float64(s.cpu), float64(zs))}
		if i == 4 {
			r.goal, r.met = "<= 1.5x; 0-2 allocs", yes(float64(s.cpu) <= 1.5*float64(zs) && s.allocs <= 2)
		}
		rows = append(rows, r)
	}
	rows = append(rows, row{measure: "in-process: " + pr.zstd.name, sluice: line(pr.zstd),
		ref: fmt.Sprintf("%.2f s/GB of lines", perGB(zs, int64(pr.lineBytes)))})
	rows = append(rows, row{measure: "compression: NDJSON / zstd (in process)", sluice: fmt.Sprintf("%.2f", float64(pr.ndjson)/float64(pr.compressed)),
		ref: fmt.Sprintf("%.1f MB lines -> %.1f MB NDJSON -> %.2f MB", float64(pr.lineBytes)/1e6, float64(pr.ndjson)/1e6, float64(pr.compressed)/1e6)})

	// Init against the stub.
	argv := map[string][]string{"sluice": {bins.sluice}, "null": {bins.null}}
	env := extEnv(work, sinkEnv, o.env)
	// The median of the starts is kept: with 3 the short run's figure
	// followed whatever else ran (CI read +3.1 and +3.3 ms where full runs
	// read +1.2 to +2.0); 15 cost about a second.
	reps := 40
	if o.short {
		reps = 15
	}
	in, err := initRuns(ctx, reps, argv, env, 1000)
	if err != nil {
		return err
	}
	s, n := in["sluice"], in["null"]
	rows = append(rows,
		row{"init: exec to first /event/next (median)", ms(s.init), ms(n.init), ratio(float64(s.init), float64(n.init)),
			"<= null + 2 ms", yes(s.init <= n.init+2*time.Millisecond)},
		row{"init: CPU used", ms(s.initCPU), ms(n.initCPU), ratio(float64(s.initCPU), float64(n.initCPU)), "", ""},
		row{"RSS after init", mb(s.rssKB), mb(n.rssKB), ratio(float64(s.rssKB), float64(n.rssKB)), "<= null + 2 MB", yes(s.rssKB <= n.rssKB+2048)},
		row{"  of which anonymous (heap, stacks) / file (binary)", mb(s.anonKB) + " / " + mb(s.rssKB-s.anonKB), mb(n.anonKB) + " / " + mb(n.rssKB-n.anonKB), "", "", ""},
		row{"shutdown when idle (SHUTDOWN to exit)", ms(s.shutdown), ms(n.shutdown), ratio(float64(s.shutdown), float64(n.shutdown)), "", ""},
	)

	// Under the local Lambda.
	setup := &emuSetup{runtime: bins.runtime, env: env, archive: archive, timeout: 10 * time.Second,
		quotaArg: func(ext string) []string { return argv[ext] }}
	// Each invocation lasts 100 ms and logs as it goes: telemetry then
	// arrives in several POSTs per invocation, as in Lambda.
	type load struct{ lines, invocations int }
	loads := []load{{1, 100}, {10, 100}, {1000, 60}}
	if o.short {
		loads = []load{{1, 15}, {10, 15}, {1000, 5}}
	}
	runs := map[string]map[int]*runResult{"sluice": {}, "null": {}}
	for i, l := range loads {
		for _, ext := range []string{"null", "sluice"} {
			r := runEmulator(ctx, setup, ext, i, l.lines, l.invocations, fnMs, 0)
			if r.err != nil {
				return r.err
			}
			if ext == "sluice" && r.delivered != r.emitted {
				return fmt.Errorf("%d lines per invocation: sluice archived %d of %d lines", l.lines, r.delivered, r.emitted)
			}
			runs[ext][l.lines] = r
		}
	}
	// SLUICE_FLUSH=invoke waits for the invocation's platform.runtimeDone
	// before /event/next: the time it adds is the telemetry buffering's
	// latency.
	inv := *setup
	inv.env = func(ext string, run int) []string { return append(env(ext, run), "SLUICE_FLUSH=invoke") }
	flushLoad := loads[1]
	fi := runEmulator(ctx, &inv, "sluice", len(loads), flushLoad.lines, flushLoad.invocations, fnMs, 0)
	if fi.err != nil {
		return fi.err
	}
	if fi.delivered != fi.emitted {
		return fmt.Errorf("SLUICE_FLUSH=invoke: sluice archived %d of %d lines", fi.delivered, fi.emitted)
	}
	for _, l := range loads {
		s, n := runs["sluice"][l.lines], runs["null"][l.lines]
		r := row{measure: fmt.Sprintf("peak RSS at %d lines/invoke", l.lines), sluice: mb(s.hwmKB), ref: mb(n.hwmKB), ratio: ratio(float64(s.hwmKB), float64(n.hwmKB))}
		if l.lines == 1000 {
			r.goal, r.met = "<= 20 MB", yes(s.hwmKB <= 20<<10)
		}
		rows = append(rows, r)
	}
	for _, l := range loads {
		s, n := runs["sluice"][l.lines], runs["null"][l.lines]
		sc, nc := s.cpu/time.Duration(l.invocations), n.cpu/time.Duration(l.invocations)
		r := row{measure: fmt.Sprintf("CPU per invocation at %d lines", l.lines), sluice: ms(sc), ref: ms(nc), ratio: ratio(float64(sc), float64(nc))}
		if l.lines == 10 {
			r.goal, r.met = "<= null", yes(sc <= nc)
		}
		rows = append(rows, r)
	}
	big := loads[len(loads)-1]
	s1k, n1k := runs["sluice"][big.lines], runs["null"][big.lines]
	sg, ng, zg := perGB(s1k.cpu, s1k.lineBytes), perGB(n1k.cpu, n1k.lineBytes), perGB(zs, int64(pr.lineBytes))
	rows = append(rows,
		row{"  check: utime+stime of /proc/PID/stat", fmt.Sprintf("%.2f s", perGB(s1k.ticks, s1k.lineBytes)), fmt.Sprintf("%.2f s", perGB(n1k.ticks, n1k.lineBytes)), "", "", ""},
		row{fmt.Sprintf("CPU per GB of lines at %d lines/invoke", big.lines), fmt.Sprintf("%.2f s", sg), fmt.Sprintf("%.2f s", ng), ratio(sg, ng), "", ""},
		row{"  the same, against zstd alone on its NDJSON", fmt.Sprintf("%.2f s", sg), fmt.Sprintf("zstd %.2f s", zg), ratio(sg, zg), "<= 1.5x", yes(sg <= 1.5*zg)},
	)
	for _, l := range loads {
		s, n := runs["sluice"][l.lines], runs["null"][l.lines]
		rows = append(rows, row{measure: fmt.Sprintf("added per invoke at %d lines p50 / p99", l.lines),
			sluice: ms(pct(s.added, 50)) + " / " + ms(pct(s.added, 99)), ref: ms(pct(n.added, 50)) + " / " + ms(pct(n.added, 99)),
			ratio: ratio(float64(pct(s.added, 99)), float64(pct(n.added, 99)))})
	}
	fn := runs["null"][flushLoad.lines]
	rows = append(rows, row{measure: fmt.Sprintf("added per invoke at %d lines, SLUICE_FLUSH=invoke", flushLoad.lines),
		sluice: ms(pct(fi.added, 50)) + " / " + ms(pct(fi.added, 99)), ref: ms(pct(fn.added, 50)) + " / " + ms(pct(fn.added, 99)),
		ratio: ratio(float64(pct(fi.added, 99)), float64(pct(fn.added, 99)))})
	for _, l := range loads {
		s, n := runs["sluice"][l.lines], runs["null"][l.lines]
		rows = append(rows, row{measure: fmt.Sprintf("telemetry POSTs per invocation at %d lines", l.lines),
			sluice: fmt.Sprintf("%.2f", float64(s.posts)/float64(l.invocations)), ref: fmt.Sprintf("%.2f", float64(n.posts)/float64(l.invocations))})
	}
	rows = append(rows,
		row{fmt.Sprintf("shutdown after %d lines/invoke (platform)", big.lines), ms(s1k.shutdown), ms(n1k.shutdown), ratio(float64(s1k.shutdown), float64(n1k.shutdown)), "", ""},
		row{"lines archived / emitted (all runs)", fmt.Sprint(sumDelivered(runs["sluice"])), fmt.Sprint(sumEmitted(runs["sluice"])), "", "all", yes(sumDelivered(runs["sluice"]) == sumEmitted(runs["sluice"]))},
		row{"compression: archive NDJSON / stored", fmt.Sprintf("%.2f", float64(s1k.raw)/float64(max(s1k.stored, 1))),
			fmt.Sprintf("%.1f MB -> %.2f MB", float64(s1k.raw)/1e6, float64(s1k.stored)/1e6), "", "", ""},
	)

	// Sizes.
	archs := []string{"amd64", "arm64"}
	if o.short {
		archs = []string{runtime.GOARCH}
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, arch := range archs {
		sb, sz, err := sizes(root, "./extension/cmd/sluice", arch, work)
		if err != nil {
			return err
		}
		nb, nz, err := sizes(root, "./extension/lambdatest/internal/nullext", arch, work)
		if err != nil {
			return err
		}
		rows = append(rows,
			row{"binary " + arch, mb(sb >> 10), mb(nb >> 10), ratio(float64(sb), float64(nb)), "", ""},
			row{"layer zip " + arch, mb(sz >> 10), mb(nz >> 10), ratio(float64(sz), float64(nz)), "<= 5 MB", yes(sz <= 5<<20)},
		)
	}
	printTable(w, rows)
	fmt.Fprintf(w, "\nreferences: in-process rows against zstd alone on the same NDJSON (%s); the others against nullext, a do-nothing extension, in the same run.\n",
		"SpeedFastest, 256 KiB window, lower-memory mode, as the batcher")
	fmt.Fprintf(w, "CPU is the extension's threads' /proc/PID/task/*/schedstat (ns) from after init to before SHUTDOWN (utime+stime ticks as a check); each invocation lasts %d ms. Took %s.\n",
		fnMs, time.Since(started).Round(time.Second))
	return nil
}

func sumDelivered(m map[int]*runResult) (n int64) {
	for _, r := range m {
		n += r.delivered
	}
	return n
}

func sumEmitted(m map[int]*runResult) (n int64) {
	for _, r := range m {
		n += r.emitted
	}
	return n
}

// sizes builds pkg for arch and zips it as the layer does (deflate).
func sizes(root, pkg, arch, work string) (bin, zipped int64, err error) {
	out := filepath.Join(work, "size", arch, filepath.Base(pkg))
	if err := build(root, pkg, arch, out); err != nil {
		return 0, 0, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, 0, err
	}
	z, err := zipSize(out)
	return fi.Size(), z, err
}
