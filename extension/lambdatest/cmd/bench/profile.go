package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"strconv"
	"syscall"
	"time"
)

// profileHook is compiled into package main of sluice through `go build
// -overlay` in -profile mode only (the repository's code is unchanged):
// with BENCHPROF_DIR set it profiles CPU at 250 Hz from main's init and,
// on SIGUSR1, writes the CPU and allocation profiles of the process.
const profileHook = `package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
)

func init() {
	dir := os.Getenv("BENCHPROF_DIR")
	if dir == "" {
		return
	}
	runtime.MemProfileRate = 4096
	runtime.SetCPUProfileRate(250)
	pid := strconv.Itoa(os.Getpid())
	f, err := os.Create(filepath.Join(dir, "cpu-"+pid+".pprof"))
	if err != nil {
		return
	}
	_ = pprof.StartCPUProfile(f)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		<-ch
		pprof.StopCPUProfile()
		f.Close()
		h, err := os.Create(filepath.Join(dir, "allocs-"+pid+".pprof"))
		if err == nil {
			_ = pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
		_ = os.WriteFile(filepath.Join(dir, "done-"+pid), nil, 0o644)
	}()
}
`

// buildProfiled builds sluice with profileHook added to its package main.
func buildProfiled(root, work string) (string, error) {
	hook := filepath.Join(work, "profilehook.go")
	if err := os.WriteFile(hook, []byte(profileHook), 0o644); err != nil {
		return "", err
	}
	overlay := filepath.Join(work, "overlay.json")
	target := filepath.Join(root, "extension", "cmd", "sluice", "zz_benchprofile.go")
	if err := os.WriteFile(overlay, fmt.Appendf(nil, `{"Replace":{%q:%q}}`, target, hook), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(work, "prof", "sluice")
	cmd := execGo(root, "build", "-overlay", overlay, "-trimpath", "-tags", "lambda", "-o", out, "./extension/cmd/sluice")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build profiled sluice: %w\n%s", err, b)
	}
	return out, nil
}

// dumpProfile asks a profiled sluice for its profiles and waits for them.
func dumpProfile(pid int, dir string) error {
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	done := filepath.Join(dir, "done-"+strconv.Itoa(pid))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(done); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("no profile from %d", pid)
		}
	}
}

// runProfile is the -profile mode: CPU and allocation profiles of sluice's
// init (merged over many starts) and of a run at 1,000 lines per
// invocation, written under dir/init and dir/run.
func runProfile(ctx context.Context, o options, dir string, w io.Writer) error {
	work, err := os.MkdirTemp("", "sluice-bench-prof-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	bins, err := prepare(o, work)
	if err != nil {
		return err
	}
	prof, err := buildProfiled(root, work)
	if err != nil {
		return err
	}
	sinkEnv, archive, stop, _, err := sinkSetup(ctx, o, work)
	if err != nil {
		return err
	}
	defer stop()
	env := extEnv(work, sinkEnv, o.env)
	initDir, runDir := filepath.Join(dir, "init"), filepath.Join(dir, "run")
	for _, d := range []string{initDir, runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for i := range 30 {
		_, err := measureInitHook(ctx, "sluice", []string{prof}, append(lambdaEnv(), append(env("sluice", 3000+i), "BENCHPROF_DIR="+initDir)...),
			func(pid int) error { return dumpProfile(pid, initDir) })
		if err != nil {
			return err
		}
	}
	setup := &emuSetup{runtime: bins.runtime, archive: archive, timeout: 10 * time.Second, noFreeze: true,
		env:      func(ext string, run int) []string { return append(env(ext, run), "BENCHPROF_DIR="+runDir) },
		quotaArg: func(string) []string { return []string{prof} },
		beforeShutdown: func(pid int) error {
			return dumpProfile(pid, runDir)
		}}
	r := runEmulator(ctx, setup, "sluice", 3100, 1000, 400, fnMs, 0)
	if r.err != nil {
		return r.err
	}
	fmt.Fprintf(w, "run: %d invocations of %d lines, sluice's CPU %v (schedstat), %v (utime+stime)\n", r.invocations, r.lines, r.cpu, r.ticks)
	fmt.Fprintf(w, "profiles written; read them with\n  go tool pprof -top %s/init/cpu-*.pprof\n  go tool pprof -top -sample_index=alloc_space %s/init/allocs-*.pprof\n  go tool pprof -top %s/run/cpu-*.pprof\n", dir, dir, dir)

	return nil
}
