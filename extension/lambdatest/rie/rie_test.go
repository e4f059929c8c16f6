package rie

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// binaries built once for every test: the layer's extension and the
// project's sample function (aws-lambda-go, which runs
// AWS_LAMBDA_MAX_CONCURRENCY workers on Managed Instances).
var binaries struct {
	sluice, sample string
	err            error
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-rie-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binaries.sluice = filepath.Join(dir, "sluice")
	binaries.sample = filepath.Join(dir, "bootstrap")
	// Only when the emulator can run: a skipped test builds nothing.
	if Available() == nil {
		binaries.err = build(map[string]string{binaries.sluice: "../../cmd/sluice", binaries.sample: "../sample"})
	}
	return m.Run()
}

func build(out map[string]string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	for bin, pkg := range out {
		cmd := exec.Command(gobin, "build", "-trimpath", "-tags", "lambda", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return nil
}

// need skips the test where the emulator cannot run, or fails it when
// SLUICE_TEST_REQUIRE_RIE=1 (CI, which runs as root, sets it).
func need(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("SLUICE_TEST_REQUIRE_RIE") == "1" {
			t.Fatalf("SLUICE_TEST_REQUIRE_RIE=1 but the emulator cannot run: %v", err)
		}
		t.Skipf("skipped: %v (set SLUICE_TEST_REQUIRE_RIE=1 to make this a failure)", err)
	}
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
}

// shared returns a directory the emulator's uid 993 can read and write.
func shared(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sample's payload (see extension/lambdatest/sample).
type request struct {
	Lines   int  `json:"lines"`
	JSON    bool `json:"json"`
	SleepMs int  `json:"sleep_ms"`
}

// lines returns the exact lines sample writes for one invocation: even
// ones plain text, odd ones JSON objects. On Managed Instances the
// emulator sends every function line as a string record, JSON ones too.
func lines(id string, r request) []string {
	out := make([]string, r.Lines)
	for i := range out {
		if r.JSON && i%2 == 1 {
			b, _ := json.Marshal(map[string]any{"level": "INFO", "message": fmt.Sprintf("sample id=%s-%d", id, i), "seq": i, "requestId": id})
			out[i] = string(b)
		} else {
			out[i] = fmt.Sprintf("sample id=%s-%d level=INFO plain text line", id, i)
		}
	}
	return out
}

const (
	maxConcurrency = 4  // runtime workers of the Managed Instances environment
	invocations    = 16 // sent 8 at a time: up to 4 run at once, more wait
	clients        = 8
)

// Under AWS's own emulator in Managed Instances mode, with sluice as
// /opt/extensions/sluice: concurrent invocations write text and JSON lines,
// batches are uploaded as they age (no INVOKE event opens a window), SIGTERM
// ends the environment, and every line is in S3 exactly once.
func TestManagedInstances(t *testing.T) {
	need(t)
	start := time.Now()
	srv := s3test.Start(t)
	dir := shared(t)
	ca := filepath.Join(dir, "ca.pem")
	if err := copyFile(ca, srv.CAFile, 0o644); err != nil {
		t.Fatal(err)
	}
	// sluice creates its spill directory itself (as uid 993, mode 0700):
	// it refuses one another user owns.
	spill := filepath.Join(dir, "sluice-spill")
	listen, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(listen, ":")
	env := append(srv.Env(),
		"AWS_CA_BUNDLE="+ca, // readable by the emulator's uid 993
		"AWS_LAMBDA_FUNCTION_NAME=rie-mi",
		"SLUICE_SINK=s3://"+srv.Bucket+"/archive",
		"SLUICE_LISTEN_ADDR=sandbox.localdomain:"+port,
		"SLUICE_SPILL_DIR="+spill,
		"SLUICE_BATCH_MAX_AGE=1s",
		"SLUICE_BATCH_MIN_BYTES=0", // seal at the age bound, however small
	)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	e, err := Start(ctx, Options{Extension: binaries.sluice, Bootstrap: binaries.sample, MaxConcurrency: maxConcurrency, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer func() {
		if t.Failed() {
			t.Logf("emulator output:\n%s", tail(e.Output(), 8000))
		}
	}()

	req := request{Lines: 40, JSON: true, SleepMs: 200}
	payload, _ := json.Marshal(req)
	var (
		mu   sync.Mutex
		want = map[string]int{}
		wg   sync.WaitGroup
		jobs = make(chan int)
	)
	for range clients {
		wg.Go(func() {
			for range jobs {
				body, err := e.Invoke(ctx, payload)
				if err != nil {
					t.Error(err)
					continue
				}
				var resp struct {
					RequestID string `json:"requestId"`
				}
				if err := json.Unmarshal(body, &resp); err != nil || resp.RequestID == "" {
					t.Errorf("response %q: no requestId (%v)", body, err)
					continue
				}
				mu.Lock()
				for _, l := range lines(resp.RequestID, req) {
					want[l]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range invocations {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Delivery is eager: a batch sealed by its 1 s age is uploaded while
	// the environment lives, with no INVOKE event to open a window.
	if !eventually(ctx, func() bool { return len(srv.Objects(t)) > 0 }) {
		t.Error("no object uploaded before SIGTERM: delivery waited for SHUTDOWN")
	}
	before := len(srv.Objects(t))
	if err := e.Terminate(15 * time.Second); err != nil {
		t.Fatal(err)
	}

	got := map[string]int{}
	for key, data := range srv.Objects(t) {
		rows, err := buffer.DecodeBatch(data)
		if err != nil {
			t.Fatalf("object %s: %v", key, err)
		}
		for _, l := range rows {
			row, err := buffer.ParseRow(l)
			if err != nil {
				t.Fatalf("object %s: row %q: %v", key, l, err)
			}
			if row.Type == "function" && strings.Contains(row.Message, "sample id=") {
				got[row.Message]++
			}
		}
	}
	var missing, twice, unknown int
	for l, n := range want {
		switch g := got[l]; {
		case g == 0:
			missing++
		case g > n:
			twice++
		}
	}
	for l := range got {
		if want[l] == 0 {
			unknown++
		}
	}
	if missing+twice+unknown > 0 || len(want) != invocations*req.Lines {
		t.Errorf("archive: %d of %d lines missing, %d more than once, %d not written by the function (want %d lines)",
			missing, len(want), twice, unknown, invocations*req.Lines)
	}
	out := e.Output()
	if strings.Contains(out, "Extension.Crash") {
		t.Error("the emulator reports Extension.Crash")
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"extension":"sluice"`) && (strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`)) {
			t.Errorf("sluice complained: %s", l)
		}
	}
	if !strings.Contains(out, "managed_instances=true") && !strings.Contains(out, `"managed_instances":true`) {
		t.Error("sluice did not report the Managed Instances mode in its ready line")
	}
	t.Logf("%d invocations (%d workers, %d clients), %d lines archived exactly once, %d objects (%d before SIGTERM), %v",
		invocations, maxConcurrency, clients, len(want), len(srv.Objects(t)), before, time.Since(start).Round(time.Millisecond))
}

// In its default mode AWS's emulator answers the telemetry subscription
// with 202 Telemetry.NotSupported: the function still works, and sluice
// says plainly that telemetry is unavailable.
func TestDefaultModeTelemetryUnavailable(t *testing.T) {
	need(t)
	start := time.Now()
	dir := shared(t)
	listen, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(listen, ":")
	env := []string{
		"AWS_LAMBDA_FUNCTION_NAME=rie-default",
		"AWS_REGION=us-east-1",
		"SLUICE_SINK=file://" + dir,
		"SLUICE_LISTEN_ADDR=sandbox.localdomain:" + port,
		"SLUICE_SPILL_DIR=" + filepath.Join(dir, "sluice-spill"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Start(ctx, Options{Extension: binaries.sluice, Bootstrap: binaries.sample, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer func() {
		if t.Failed() {
			t.Logf("emulator output:\n%s", tail(e.Output(), 8000))
		}
	}()
	const n = 3
	var ids []string
	for range n {
		body, err := e.Invoke(ctx, []byte(`{"lines":5}`))
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			RequestID string `json:"requestId"`
			Lines     int    `json:"lines"`
		}
		if err := json.Unmarshal(body, &resp); err != nil || resp.Lines != 5 {
			t.Fatalf("response %q, want the function's answer (%v)", body, err)
		}
		ids = append(ids, resp.RequestID)
	}
	if err := e.Terminate(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	out := e.Output()
	if !strings.Contains(out, "telemetry is unavailable") {
		t.Error("sluice did not say that telemetry is unavailable")
	}
	for _, id := range ids {
		if !strings.Contains(out, fmt.Sprintf("sample id=%s-4", id)) {
			t.Errorf("the function's output of %s is missing", id)
		}
	}
	if strings.Contains(out, "Extension.Crash") || strings.Contains(out, "init failed") {
		t.Error("sluice failed the function's init")
	}
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, en := range entries {
		if en.Name() != "sluice-spill" { // made at init, empty
			files = append(files, en.Name())
		}
	}
	if len(files) != 0 {
		t.Errorf("sluice wrote %v without telemetry", files)
	}
	t.Logf("%d invocations, function answered each; %v", n, time.Since(start).Round(time.Millisecond))
}

// eventually polls cond until it holds or ctx ends.
func eventually(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		i += j + 1
	}
	return "...\n" + s[i:]
}
