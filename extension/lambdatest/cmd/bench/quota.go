package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Lambda gives a function CPU in proportion to its memory: 1 vCPU at
// 1,769 MB. An extension competes with the function for it, so the quota
// mode gives each extension half of a small function's share.
var quotas = []struct {
	name  string
	quota int // microseconds per 100 ms period
}{
	{"0.036 vCPU (half of 128 MB)", 3600},
	{"0.145 vCPU (half of 512 MB)", 14500},
}

// rates are the log volumes of the quota mode, in bytes of lines per
// second.
var rates = []struct {
	name  string
	bytes int
}{
	{"300 KB/s", 300_000},
	{"3 MB/s", 3_000_000},
}

const cpuPeriod = 100000 // microseconds

// cgroup is a CPU-limited control group the extension joins at exec.
type cgroup struct {
	dir    string // where cgroup.procs is
	how    string // a sentence for the report
	remove func()
}

// newCgroup makes a child control group limited to quota microseconds of
// CPU per 100 ms: cgroup v2 (cpu.max) when the cpu controller is there,
// else v1 (cpu.cfs_quota_us). It fails with a reason when neither can be
// set up (not root, read-only /sys/fs/cgroup, no cpu controller).
func newCgroup(name string, quota int) (*cgroup, error) {
	var problems []string
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "cpu") {
		dir := filepath.Join("/sys/fs/cgroup", name)
		err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0o644)
		if err == nil {
			err = os.Mkdir(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, cpuPeriod), 0o644)
		}
		if err == nil {
			return &cgroup{dir: dir, how: fmt.Sprintf("cgroup v2: %s/cpu.max = \"%d %d\"", dir, quota, cpuPeriod),
				remove: func() { _ = os.Remove(dir) }}, nil
		}
		_ = os.Remove(dir)
		problems = append(problems, "cgroup v2: "+err.Error())
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
			continue
		}
		dir := filepath.Join(root, name)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), fmt.Appendf(nil, "%d", cpuPeriod), 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), fmt.Appendf(nil, "%d", quota), 0o644)
		}
		if err == nil {
			return &cgroup{dir: dir, how: fmt.Sprintf("cgroup v1: %s cpu.cfs_quota_us = %d, cpu.cfs_period_us = %d", dir, quota, cpuPeriod),
				remove: func() { _ = os.Remove(dir) }}, nil
		}
		_ = os.Remove(dir)
		problems = append(problems, "cgroup v1: "+err.Error())
	}
	if len(problems) == 0 {
		problems = append(problems, "no cgroup cpu controller under /sys/fs/cgroup")
	}
	return nil, errors.New(strings.Join(problems, "; "))
}

// wrapper writes an executable named like the extension that moves itself
// into cg and execs the extension: the extension's whole life, init
// included, runs under the quota (the shell's own start-up too, a fraction
// of a millisecond, the same for every extension).
func wrapper(dir string, cg *cgroup, bin string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(bin))
	script := fmt.Sprintf("#!/bin/sh\necho $$ > %s/cgroup.procs || exit 97\nexec %s \"$@\"\n", cg.dir, bin)
	return path, os.WriteFile(path, []byte(script), 0o755)
}

// runQuota is the -quota mode: both extensions under each quota at each
// log rate, and one row per combination.
func runQuota(ctx context.Context, o options, w io.Writer) error {
	work, err := os.MkdirTemp("", "sluice-bench-quota-")
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
	env := extEnv(work, sinkEnv, o.env)
	avgLine := c.bytes / len(c.lines)
	const pace = 100 * time.Millisecond // one 100 ms invocation after another
	invocations := max(o.quotaSecs*int(time.Second/pace), 1)

	var rows [][]string
	run := 2000
	for qi, q := range quotas {
		cg, err := newCgroup(fmt.Sprintf("sluice-bench-%d-%d", os.Getpid(), qi), q.quota)
		if err != nil {
			fmt.Fprintf(w, "quota mode skipped: cannot set up a CPU quota (%v); it needs root and a writable cgroup cpu controller\n", err)
			return nil
		}
		fmt.Fprintf(w, "%s: %s\n", q.name, cg.how)
		argv := map[string][]string{}
		for ext, bin := range map[string]string{"sluice": bins.sluice, "null": bins.null} {
			p, err := wrapper(filepath.Join(work, "quota", fmt.Sprint(qi)), cg, bin)
			if err != nil {
				cg.remove()
				return err
			}
			argv[ext] = []string{p}
		}
		reps := 5
		if o.short {
			reps = 2
		}
		in, err := initRuns(ctx, reps, argv, env, run)
		run += 2 * reps
		if err != nil {
			cg.remove()
			return err
		}
		setup := &emuSetup{runtime: bins.runtime, env: env, archive: archive, timeout: 10 * time.Second,
			quotaArg: func(ext string) []string { return argv[ext] }}
		for _, rate := range rates {
			perInvoke := max(rate.bytes*int(pace/time.Millisecond)/1000/avgLine, 1)
			for _, ext := range []string{"null", "sluice"} {
				run++
				r := runEmulator(ctx, setup, ext, run, perInvoke, invocations, int(pace/time.Millisecond), pace)
				if r.err != nil {
					cg.remove()
					return r.err
				}
				delivered := "-"
				if r.delivered >= 0 {
					delivered = fmt.Sprintf("%d/%d", r.delivered, r.emitted)
				}
				rows = append(rows, []string{q.name, rate.name, ext, delivered,
					fmt.Sprintf("%s / %s / %s", ms(mean(r.added)), ms(pct(r.added, 50)), ms(pct(r.added, 99))),
					ms(in[ext].init), ms(r.shutdown), fmt.Sprint(r.killed)})
			}
		}
		cg.remove()
	}
	fmt.Fprintln(w)
	printRows(w, []string{"quota", "logs", "extension", "lines archived/emitted", "added mean / p50 / p99", "init", "shutdown", "killed"}, rows)
	fmt.Fprintf(w, "\n%d invocations of 100 ms back to back per row (%d s of logs); lines of %d B on average; init against the API stub, median of the runs.\n",
		invocations, o.quotaSecs, avgLine)
	return nil
}

func printRows(w io.Writer, head []string, rows [][]string) {
	widths := make([]int, len(head))
	for _, r := range append([][]string{head}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range append([][]string{head}, rows...) {
		for i, c := range r {
			fmt.Fprintf(w, "%-*s  ", widths[i], c)
		}
		fmt.Fprintln(w)
	}
}
