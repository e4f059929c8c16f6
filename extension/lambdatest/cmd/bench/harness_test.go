package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The test binary doubles as the benchmark's function, as the bench
// binary does with -as-runtime.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_TEST_RUNTIME") == "1" {
		if err := runFunction(1, 2000); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarness runs the do-nothing extension through both measures of the
// table: init against the stub, and invocations under the local Lambda.
func TestHarness(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	null := filepath.Join(t.TempDir(), "nullext")
	if err := build(root, "./extension/lambdatest/internal/nullext", runtime.GOARCH, null); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	in, err := measureInit(ctx, "null", []string{null}, append(lambdaEnv(), "NULLEXT_BUFFERING="+nullBuffering))
	if err != nil {
		t.Fatalf("measureInit: %v", err)
	}
	if in.init <= 0 || in.rssKB <= 0 || in.shutdown < 0 {
		t.Errorf("measureInit = %+v, want a positive init and RSS and a clean shutdown", in)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	setup := &emuSetup{
		runtime: []string{self},
		env: func(string, int) []string {
			return []string{"BENCH_TEST_RUNTIME=1", "NULLEXT_BUFFERING=" + nullBuffering}
		},
		quotaArg: func(string) []string { return []string{null} },
		timeout:  5 * time.Second,
	}
	const lines, invocations = 10, 3
	r := runEmulator(ctx, setup, "null", 0, lines, invocations, 20, 0)
	if r.err != nil {
		t.Fatalf("runEmulator: %v", r.err)
	}
	if r.emitted != lines*invocations || r.lineBytes == 0 || len(r.added) != invocations {
		t.Errorf("runEmulator: emitted %d lines (%d bytes) in %d invocations, want %d lines in %d",
			r.emitted, r.lineBytes, len(r.added), lines*invocations, invocations)
	}
	if r.cpu <= 0 || r.rssKB <= 0 || r.hwmKB < r.rssKB || r.posts == 0 || r.killed {
		t.Errorf("runEmulator = cpu %v, rss %d kB, peak %d kB, %d posts, killed %v; want CPU, memory and POSTs measured, not killed",
			r.cpu, r.rssKB, r.hwmKB, r.posts, r.killed)
	}
}

func TestPct(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, tt := range []struct {
		p    int
		want time.Duration
	}{{50, 3}, {99, 5}, {100, 5}, {1, 1}} {
		if got := pct(ds, tt.p); got != tt.want {
			t.Errorf("pct(%v, %d) = %v, want %v", ds, tt.p, got, tt.want)
		}
	}
	if got := pct(nil, 50); got != 0 {
		t.Errorf("pct(nil, 50) = %v, want 0", got)
	}
}
