package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest"
)

// runResult is one environment's life under the local Lambda: init, n
// invocations of lines each, shutdown.
type runResult struct {
	ext          string
	lines        int // per invocation
	invocations  int
	platformInit time.Duration // the Init phase, runtime included
	rssKB        int64         // after init
	hwmKB        int64         // peak, before shutdown
	cpu          time.Duration // the threads' schedstat from after init to before shutdown
	ticks        time.Duration // utime+stime of /proc/PID/stat over the same span
	added        []time.Duration
	shutdown     time.Duration
	killed       bool
	lineBytes    int64 // what the function wrote, newlines excluded
	emitted      int64 // function lines the platform produced
	delivered    int64 // function rows in the archive; -1 when not counted
	posts        int64
	retries      int64 // telemetry POSTs sent again (a failed or frozen POST)
	raw, stored  int64 // archived NDJSON and object bytes
	err          error
}

// emuSetup is what every run shares.
type emuSetup struct {
	runtime  []string // the function's bootstrap command line
	env      func(ext string, run int) []string
	archive  func(run int) (*archived, error) // what run archived; nil: not counted
	quotaArg func(ext string) []string        // argv running ext (maybe through a wrapper)
	timeout  time.Duration
	noFreeze bool
	// beforeShutdown, when not nil, runs with the extension's pid after
	// the last invocation.
	beforeShutdown func(pid int) error
}

// runEmulator runs one environment with one extension.
func runEmulator(ctx context.Context, s *emuSetup, ext string, run, lines, invocations int, fnMs int, pace time.Duration) *runResult {
	r := &runResult{ext: ext, lines: lines, invocations: invocations, delivered: -1}
	start := time.Now()
	argv := s.quotaArg(ext)
	p, err := lambdatest.Start(ctx, lambdatest.Config{
		Extensions:   argv,
		Runtime:      s.runtime,
		Env:          s.env(ext, run),
		FunctionName: "bench",
		LogFormat:    "JSON",
		Timeout:      s.timeout,
		NoFreeze:     s.noFreeze,
	})
	if err != nil {
		r.err = fmt.Errorf("%s: start: %w", ext, err)
		return r
	}
	defer p.Close()
	r.platformInit = time.Since(start)
	name := filepath.Base(argv[0])
	pid := p.PIDs()[name]
	if pid == 0 {
		r.err = fmt.Errorf("%s: no pid", ext)
		return r
	}
	r.rssKB, _, _ = memKB(pid)
	tick0, _ := procCPU(pid)
	cpu0, err := schedCPU(pid)
	if err != nil {
		r.err = err
		return r
	}
	payload := fmt.Appendf(nil, `{"lines":%d,"ms":%d}`, lines, fnMs)
	next := time.Now()
	for i := range invocations {
		if pace > 0 {
			// A steady rate of logs: invocation i starts at i*pace, or at
			// once when the previous one ran late.
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				<-t.C
			}
			next = next.Add(pace)
		}
		res, err := p.Invoke(ctx, payload)
		if err != nil {
			r.err = fmt.Errorf("%s: invoke %d: %w", ext, i, err)
			return r
		}
		if res.Status != "success" {
			r.err = fmt.Errorf("%s: invoke %d: %s %s", ext, i, res.Status, res.ErrorType)
			return r
		}
		var out struct {
			Bytes int64 `json:"bytes"`
		}
		_ = json.Unmarshal(res.Response, &out)
		r.lineBytes += out.Bytes
		r.added = append(r.added, res.PostRuntime)
	}
	cpu1, err := schedCPU(pid)
	if err != nil {
		r.err = err
		return r
	}
	r.cpu = cpu1 - cpu0
	r.ticks, _ = procCPU(pid)
	r.ticks -= tick0
	_, r.hwmKB, _ = memKB(pid)
	if s.beforeShutdown != nil {
		if err := s.beforeShutdown(pid); err != nil {
			r.err = err
			return r
		}
	}
	sd, err := p.Shutdown(ctx, "spindown")
	if err != nil {
		r.err = fmt.Errorf("%s: shutdown: %w", ext, err)
		return r
	}
	r.shutdown = sd.Duration
	r.killed = len(sd.Killed) > 0
	st := p.Stats()
	r.emitted = st.FunctionLines
	r.posts = st.Posts
	r.retries = st.PostRetries
	if s.archive != nil && ext == "sluice" {
		a, err := s.archive(run)
		if err != nil {
			r.err = err
			return r
		}
		r.delivered, r.raw, r.stored = a.rows, a.raw, a.stored
	}
	return r
}

// archived is what one run left in the archive.
type archived struct {
	rows        int64 // function rows
	raw, stored int64 // NDJSON bytes, object bytes
}

// readArchive counts the function rows in archived objects.
func readArchive(objects map[string][]byte) (*archived, error) {
	a := &archived{}
	for k, data := range objects {
		a.stored += int64(len(data))
		rows, err := buffer.DecodeBatch(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		for _, line := range rows {
			a.raw += int64(len(line)) + 1
			row, err := buffer.ParseRow(line)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", k, err)
			}
			if row.Type == "function" {
				a.rows++
			}
		}
	}
	return a, nil
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
