package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// startManaged runs sluice on the project's emulator in Managed Instances
// mode (JSON log format, 4 runtime workers).
func startManaged(t *testing.T, vars ...string) *env {
	t.Helper()
	srv := s3test.Start(t)
	vars = append(append(srv.Env(),
		"SLUICE_SINK=s3://"+srv.Bucket+"/archive",
		"SLUICE_LISTEN_ADDR=127.0.0.1:0",
		"SLUICE_SPILL_DIR="+filepath.Join(t.TempDir(), "sluice-spill"),
	), vars...)
	p, err := lambdatest.Start(context.Background(), lambdatest.Config{
		Extensions:       []string{binaries.sluice},
		Runtime:          []string{binaries.sample},
		Env:              vars,
		FunctionName:     "e2e-mi",
		Timeout:          10 * time.Second,
		ManagedInstances: true,
		MaxConcurrency:   4,
	})
	if err != nil {
		t.Fatalf("start the platform: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{t: t, srv: srv, p: p, want: map[string]buffer.Row{}}
}

// invokeAll runs the payloads from clients goroutines and returns the
// results in the order of payloads.
func (e *env) invokeAll(clients int, payloads [][]byte) []*lambdatest.Result {
	e.t.Helper()
	out := make([]*lambdatest.Result, len(payloads))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range jobs {
				res, err := e.p.Invoke(context.Background(), payloads[i])
				if err != nil {
					e.t.Errorf("Invoke(%s): %v", payloads[i], err)
					continue
				}
				out[i] = res
			}
		})
	}
	for i := range payloads {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if e.t.Failed() {
		e.t.FailNow()
	}
	return out
}

// On Managed Instances sluice registers for SHUTDOWN only, uploads batches
// while invocations run (no INVOKE event), and archives every line of the
// interleaved invocations exactly once: JSON lines with their own
// requestId, plain lines (wrapped by the platform) without one.
func TestManagedInstancesE2E(t *testing.T) {
	e := startManaged(t, "SLUICE_BATCH_MAX_BYTES=64KiB", "SLUICE_BATCH_MAX_AGE=1s")
	const n, lines = 24, 30
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"lines":%d,"json":true,"sleep_ms":50}`, lines)
	}
	results := e.invokeAll(8, payloads)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	for len(e.srv.Objects(t)) == 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	tick.Stop()
	before := len(e.srv.Objects(t))
	if before == 0 {
		t.Error("nothing uploaded before SHUTDOWN: delivery is not eager")
	}
	e.shutdown()
	rows, keys := e.archive()
	got := map[string][]buffer.Row{}
	for _, r := range rows {
		if id, ok := sampleID(r.Message); ok && r.Type == "function" {
			got[id] = append(got[id], r)
		}
	}
	for _, res := range results {
		for i := range lines {
			key := fmt.Sprintf("%s-%d", res.RequestID, i)
			rs := got[key]
			if len(rs) != 1 {
				t.Errorf("line %s archived %d times, want once", key, len(rs))
				continue
			}
			wantID := ""
			if i%2 == 1 { // JSON lines carry their requestId
				wantID = res.RequestID
			}
			if rs[0].RequestID != wantID {
				t.Errorf("line %s: request_id %q, want %q", key, rs[0].RequestID, wantID)
			}
		}
	}
	if len(got) != n*lines {
		t.Errorf("%d distinct lines archived, want %d", len(got), n*lines)
	}
	if fb := e.fallbackRows(); len(fb) != 0 {
		t.Errorf("%d rows in the fallback with a healthy sink", len(fb))
	}
	t.Logf("%d invocations, %d lines, %d objects (%d before SHUTDOWN)", n, n*lines, len(keys), before)
}

// Tail sampling on Managed Instances decides on platform.report's status:
// at SLUICE_SAMPLE_RATE=0 failed invocations are kept whole and successful
// ones dropped, though they interleave.
func TestManagedInstancesSampling(t *testing.T) {
	e := startManaged(t, "SLUICE_SAMPLE_RATE=0")
	const n, lines = 16, 10
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"lines":%d,"json":true,"sleep_ms":30,"fail":%v}`, lines, i%4 == 0)
	}
	results := e.invokeAll(8, payloads)
	e.shutdown()
	rows, _ := e.archive()
	kept := map[string]int{}
	for _, r := range rows {
		if r.Type == "function" && r.RequestID != "" {
			kept[r.RequestID]++
		}
	}
	for i, res := range results {
		failed := i%4 == 0
		if want := map[bool]string{true: "error", false: "success"}[failed]; res.Status != want {
			t.Fatalf("%s: status %q, want %q", res.RequestID, res.Status, want)
		}
		want := 0
		if failed {
			want = lines / 2 // its JSON lines, which carry the requestId
		}
		if kept[res.RequestID] != want {
			t.Errorf("%s (failed %v): %d lines kept, want %d", res.RequestID, failed, kept[res.RequestID], want)
		}
	}
	var ready map[string]any
	for _, l := range e.p.ExtensionLines() {
		if strings.Contains(l, `"msg":"ready"`) && json.Unmarshal([]byte(l), &ready) == nil {
			break
		}
	}
	if ready["managed_instances"] != true || ready["flush"] != "eager" {
		t.Errorf("ready line %v: want managed_instances true and flush eager", ready)
	}
}
