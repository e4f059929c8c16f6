package main

// End-to-end tests: the real sluice binary under the local Lambda platform
// (extension/lambdatest), with the sample function (aws-lambda-go) as the
// runtime, archiving to a real S3 server (versitygw over TLS).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

var binaries struct{ sluice, cli, sample string }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer stopOpenSearch() // opensearch_e2e_test.go
	// The extension is named after its file, as under /opt/extensions.
	binaries.sluice = filepath.Join(dir, "sluice")
	binaries.sample = filepath.Join(dir, "bootstrap")
	// go test runs with the go command's directory first in PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binaries.cli = filepath.Join(dir, "sluice-cli")
	// The extension is built as the layer builds it (-tags lambda); the
	// default build, with `sluice logs`, is what go install gives a person.
	for _, b := range []struct{ out, pkg, tags string }{
		{binaries.sluice, ".", "lambda"},
		{binaries.cli, ".", ""},
		{binaries.sample, "../../lambdatest/sample", ""},
	} {
		cmd := exec.Command(gobin, "build", "-trimpath", "-tags", b.tags, "-o", b.out, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// env is one function with sluice, archiving to its own S3 server.
type env struct {
	t   *testing.T
	srv *s3test.Server
	p   *lambdatest.Platform
	// want maps every line the function wrote ("<requestId>-<i>") to the
	// row sluice must archive for it.
	want map[string]buffer.Row
}

type options struct {
	logFormat string
	timeout   time.Duration // per invocation; default 10 s
	vars      []string      // SLUICE_* and other variables for the extension
}

func start(t *testing.T, o options) *env {
	t.Helper()
	srv := s3test.Start(t)
	vars := append(srv.Env(),
		"SLUICE_SINK=s3://"+srv.Bucket+"/archive",
		"SLUICE_LISTEN_ADDR=127.0.0.1:0",
		"SLUICE_SPILL_DIR="+filepath.Join(t.TempDir(), "sluice-spill"),
	)
	p, err := lambdatest.Start(context.Background(), lambdatest.Config{
		Extensions:   []string{binaries.sluice},
		Runtime:      []string{binaries.sample},
		Env:          append(vars, o.vars...),
		FunctionName: "e2e",
		LogFormat:    o.logFormat,
		Timeout:      cmp.Or(o.timeout, 10*time.Second),
	})
	if err != nil {
		t.Fatalf("start the platform: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{t: t, srv: srv, p: p, want: map[string]buffer.Row{}}
}

// request is the sample function's payload.
type request struct {
	Lines int    `json:"lines,omitempty"`
	JSON  bool   `json:"json,omitempty"`
	Big   int    `json:"big,omitempty"`
	Fail  bool   `json:"fail,omitempty"`
	Level string `json:"level,omitempty"`
	// SleepMs makes the invocation last this long after its lines.
	SleepMs int `json:"sleep_ms,omitempty"`
}

// invoke runs one invocation and records the rows its lines must become.
func (e *env) invoke(req request, jsonFormat bool) *lambdatest.Result {
	e.t.Helper()
	payload, _ := json.Marshal(req)
	res, err := e.p.Invoke(context.Background(), payload)
	if err != nil {
		e.t.Fatalf("Invoke(%s): %v", payload, err)
	}
	level := cmpOr(req.Level, "INFO")
	id := res.RequestID
	for i := range req.Lines {
		key := fmt.Sprintf("%s-%d", id, i)
		// Text-format lines carry no requestId: sluice attributes them to
		// the running invocation and reads their level from the text.
		row := buffer.Row{Type: "function", Function: "e2e", Version: "$LATEST", RequestID: id, Level: level}
		switch {
		case req.JSON && i%2 == 1 && jsonFormat:
			row.Message = "sample id=" + key
			row.Fields = fmt.Sprintf(`{"seq":%d}`, i)
		case req.JSON && i%2 == 1:
			row.Message = fmt.Sprintf(`{"level":%q,"message":"sample id=%s","requestId":%q,"seq":%d}`, level, key, id, i)
		case jsonFormat:
			// Lambda wraps a plain line as {"level":"INFO",...}; the JSON
			// level is what sluice reads.
			row.Level = "INFO"
			row.Message = fmt.Sprintf("sample id=%s level=%s plain text line", key, level)
		default:
			// "level=" in the middle of a line that is not logfmt is not
			// taken as a level: unknown is INFO, as in Lambda.
			row.Level = "INFO"
			row.Message = fmt.Sprintf("sample id=%s level=%s plain text line", key, level)
		}
		e.want[key] = row
	}
	if req.Big > 0 {
		row := buffer.Row{Type: "function", Function: "e2e", Version: "$LATEST", Message: bigLine(id, req.Big), RequestID: id, Level: "INFO"}
		e.want[id+"-big"] = row
	}
	return res
}

// bigLine is the sample function's long line (see sample/main.go).
func bigLine(id string, n int) string {
	b := []byte(fmt.Sprintf("sample id=%s-big ", id))
	for i := 0; len(b) < n; i++ {
		b = append(b, byte('a'+i%26))
	}
	return string(b[:n])
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// archive reads every object back and returns its rows.
func (e *env) archive() (rows []buffer.Row, keys []string) {
	e.t.Helper()
	objects := e.srv.Objects(e.t)
	for k, data := range objects {
		keys = append(keys, k)
		lines, err := buffer.DecodeBatch(data)
		if err != nil {
			e.t.Fatalf("object %s: %v", k, err)
		}
		for _, l := range lines {
			row, err := buffer.ParseRow(l)
			if err != nil {
				e.t.Fatalf("object %s: row %q: %v", k, l, err)
			}
			rows = append(rows, row)
		}
	}
	return rows, keys
}

// fallbackRows are the rows sluice wrote to stdout instead of the archive.
func (e *env) fallbackRows() []buffer.Row {
	e.t.Helper()
	var rows []buffer.Row
	for _, l := range e.p.ExtensionLines() {
		rest, ok := strings.CutPrefix(l, `{"sluice":"fallback",`)
		if !ok {
			continue
		}
		row, err := buffer.ParseRow([]byte("{" + rest))
		if err != nil {
			e.t.Fatalf("fallback row %q: %v", l, err)
		}
		rows = append(rows, row)
	}
	return rows
}

// checkExactlyOnce asserts that rows hold every line the function wrote
// once, intact, and nothing else of type function.
func (e *env) checkExactlyOnce(rows []buffer.Row) {
	e.t.Helper()
	got := map[string]int{}
	for _, r := range rows {
		if r.Type != "function" {
			continue
		}
		id, ok := sampleID(r.Message)
		if !ok {
			continue // the sample's init line
		}
		got[id]++
		want, ok := e.want[id]
		if !ok {
			e.t.Errorf("archived a line nobody wrote: %.120q", r.Message)
			continue
		}
		r.Time = time.Time{}
		if diff := gocmp.Diff(want, r); diff != "" && got[id] == 1 {
			e.t.Errorf("line %s (-want +got):\n%.2000s", id, diff)
		}
	}
	missing, dup := 0, 0
	for id := range e.want {
		switch n := got[id]; {
		case n == 0:
			missing++
			if missing <= 3 {
				e.t.Errorf("line %s was not archived", id)
			}
		case n > 1:
			dup++
			if dup <= 3 {
				e.t.Errorf("line %s archived %d times", id, n)
			}
		}
	}
	if missing+dup > 0 {
		e.t.Errorf("%d of %d lines missing, %d duplicated", missing, len(e.want), dup)
	}
}

func sampleID(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, "sample id=")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(rest, " ")
	id, _, _ = strings.Cut(id, `"`)
	return id, true
}

func (e *env) shutdown() *lambdatest.ShutdownResult {
	e.t.Helper()
	sd, err := e.p.Shutdown(context.Background(), "spindown")
	if err != nil {
		e.t.Fatalf("Shutdown: %v", err)
	}
	if len(sd.Killed) > 0 {
		e.t.Errorf("extensions killed at the shutdown deadline: %v; output:\n%s", sd.Killed, strings.Join(e.p.ExtensionLines(), "\n"))
	}
	return sd
}

// Many invocations with small batches: objects are uploaded while the
// function runs, the environment is frozen between invocations, and what is
// left is delivered at SHUTDOWN.
func TestManyInvocations(t *testing.T) {
	for _, format := range []string{"Text", "JSON"} {
		t.Run(format, func(t *testing.T) {
			e := start(t, options{logFormat: format, vars: []string{"SLUICE_BATCH_MAX_BYTES=64KiB"}})
			isJSON := format == "JSON"
			statuses := map[string]int{}
			for i := range 30 {
				// 30 ms per invocation: the telemetry buffering (100 ms) then
				// delivers records while the invocations run, as in Lambda,
				// where functions rarely finish in a millisecond.
				req := request{Lines: 50 + i, JSON: true, SleepMs: 30}
				switch i {
				case 7:
					req.Fail = true
				case 11:
					req.Big = 300_000
				case 19:
					req.Level = "ERROR"
				}
				statuses[e.invoke(req, isJSON).Status]++
			}
			if want := map[string]int{"success": 29, "error": 1}; !gocmp.Equal(want, statuses) {
				t.Errorf("statuses = %v, want %v", statuses, want)
			}
			// Objects written before SHUTDOWN prove uploads happen during invocations.
			if _, keys := e.archive(); len(keys) < 3 {
				t.Errorf("%d objects before SHUTDOWN, want uploads during invocations", len(keys))
			}
			e.shutdown()
			rows, keys := e.archive()
			e.checkExactlyOnce(rows)
			if fb := e.fallbackRows(); len(fb) > 0 {
				t.Errorf("%d rows went to the fallback with a healthy sink", len(fb))
			}
			checkStats(t, rows, e.p.Stats().FunctionLines)
			reports := 0
			for _, r := range rows {
				if r.Type == "platform.report" {
					reports++
					if r.BilledDurationMs <= 0 || r.MemorySizeMB != 128 {
						t.Errorf("platform.report row without metrics: %+v", r)
					}
				}
			}
			if reports != 30 {
				t.Errorf("%d platform.report rows, want 30", reports)
			}
			for _, k := range keys {
				if !strings.HasPrefix(k, "archive/function=e2e/dt=") || !strings.HasSuffix(k, ".json.zst") {
					t.Errorf("object key %q does not follow the layout", k)
				}
			}
		})
	}
}

// With the default batch bounds nothing is due during a short run: all of
// it is pending when SHUTDOWN comes, and must be delivered then.
func TestShutdownDeliversPending(t *testing.T) {
	e := start(t, options{})
	for range 5 {
		e.invoke(request{Lines: 200, JSON: true}, false)
	}
	if _, keys := e.archive(); len(keys) != 0 {
		t.Fatalf("%d objects before SHUTDOWN, want none with the default bounds", len(keys))
	}
	sd := e.shutdown()
	rows, keys := e.archive()
	e.checkExactlyOnce(rows)
	if len(keys) != 1 {
		t.Errorf("%d objects, want 1", len(keys))
	}
	t.Logf("shutdown took %v", sd.Duration)
}

// SLUICE_FLUSH=invoke: each invocation's lines are archived before the
// environment goes idle.
func TestFlushInvoke(t *testing.T) {
	e := start(t, options{vars: []string{"SLUICE_FLUSH=invoke"}})
	for i := range 3 {
		e.invoke(request{Lines: 10}, false)
		rows, _ := e.archive()
		lines := 0
		for _, r := range rows {
			if r.Type == "function" {
				if _, ok := sampleID(r.Message); ok {
					lines++
				}
			}
		}
		if want := 10 * (i + 1); lines != want {
			t.Errorf("after invocation %d: %d lines archived, want %d", i+1, lines, want)
		}
	}
	e.shutdown()
	rows, _ := e.archive()
	e.checkExactlyOnce(rows)
}

// A telemetry body that does not parse is archived whole, not dropped.
func TestMalformedBody(t *testing.T) {
	e := start(t, options{})
	e.invoke(request{Lines: 3}, false)
	body := `[{"time":"2026-11-30T22:00:00.000Z","type":"function","record":"half a rec`
	if err := e.p.PostTelemetry(context.Background(), []byte(body)); err != nil {
		t.Fatalf("PostTelemetry: %v", err)
	}
	e.invoke(request{Lines: 3}, false)
	e.shutdown()
	rows, _ := e.archive()
	e.checkExactlyOnce(rows)
	var found []string
	for _, r := range rows {
		if r.Type == "sluice.malformed" {
			found = append(found, r.Message)
		}
	}
	if len(found) != 1 || found[0] != body {
		t.Errorf("sluice.malformed rows = %q, want [%q]", found, body)
	}
}

// A bad configuration fails the function's init with a message naming the
// variable.
func TestBadConfig(t *testing.T) {
	_, err := lambdatest.Start(context.Background(), lambdatest.Config{
		Extensions: []string{binaries.sluice},
		Runtime:    []string{binaries.sample},
		Env:        []string{"SLUICE_SINK=s3://bucket", "SLUICE_BATCH_MAX_AGE=forever", "SLUICE_LISTEN_ADDR=127.0.0.1:0"},
	})
	var ie *lambdatest.InitError
	if !errors.As(err, &ie) {
		t.Fatalf("Start = %v, want an *InitError", err)
	}
	if ie.ErrorType != "Extension.ConfigInvalid" || !strings.Contains(ie.Message, `SLUICE_BATCH_MAX_AGE="forever"`) {
		t.Errorf("init error = %s %q, want Extension.ConfigInvalid naming SLUICE_BATCH_MAX_AGE", ie.ErrorType, ie.Message)
	}
}

// When the sink cannot take anything, every line still comes out: on
// stdout, marked as fallback, at SHUTDOWN.
func TestSinkDownFallback(t *testing.T) {
	e := start(t, options{vars: []string{"SLUICE_SINK=s3://no-such-bucket/archive", "SLUICE_BATCH_MAX_BYTES=64KiB"}})
	for range 10 {
		e.invoke(request{Lines: 100, JSON: true}, false)
	}
	e.shutdown()
	if _, keys := e.archive(); len(keys) != 0 {
		t.Errorf("%d objects in the archive bucket, want none", len(keys))
	}
	e.checkExactlyOnce(e.fallbackRows())
}

// checkStats asserts that the sluice.stats rows account for every line the
// function wrote: seen = emitted, and seen = kept + dropped by reason.
func checkStats(t *testing.T, rows []buffer.Row, emitted int64) {
	t.Helper()
	var sum struct {
		Seen, Kept, SampledOut, BelowLevel, OverCap int64
	}
	n := 0
	for _, r := range rows {
		if r.Type != "sluice.stats" {
			continue
		}
		n++
		var f struct {
			LinesSeen       int64 `json:"lines_seen"`
			LinesKept       int64 `json:"lines_kept"`
			LinesSampledOut int64 `json:"lines_sampled_out"`
			LinesBelowLevel int64 `json:"lines_below_level"`
			LinesOverCap    int64 `json:"lines_over_cap"`
		}
		if err := json.Unmarshal([]byte(r.Fields), &f); err != nil {
			t.Fatalf("sluice.stats fields %q: %v", r.Fields, err)
		}
		sum.Seen += f.LinesSeen
		sum.Kept += f.LinesKept
		sum.SampledOut += f.LinesSampledOut
		sum.BelowLevel += f.LinesBelowLevel
		sum.OverCap += f.LinesOverCap
	}
	if n == 0 {
		t.Fatal("no sluice.stats row in the archive")
	}
	if sum.Seen != emitted {
		t.Errorf("sluice.stats lines_seen sum to %d, want the %d lines emitted", sum.Seen, emitted)
	}
	if d := sum.Kept + sum.SampledOut + sum.BelowLevel + sum.OverCap; d != sum.Seen {
		t.Errorf("sluice.stats: kept %d + dropped %d = %d, want seen %d", sum.Kept, d-sum.Kept, d, sum.Seen)
	}
}

// Tail sampling end to end: 10,000 invocations, 5% failing, 1% timing out,
// some logging at ERROR, at SLUICE_SAMPLE_RATE=0.1. Every line of a failed,
// timed-out or ERROR-logging invocation is archived; about 10% of the
// others are kept, each whole; sluice.stats accounts for every line.
func TestSampling(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 invocations")
	}
	e := start(t, options{timeout: 300 * time.Millisecond, vars: []string{"SLUICE_SAMPLE_RATE=0.1"}})
	const n = 10_000
	type inv struct {
		lines   int
		special bool // failed, timed out or logged ERROR: must be kept whole
	}
	invs := map[string]inv{}
	var timeouts int
	for i := range n {
		req := request{Lines: 3}
		special := true
		switch {
		case i%20 == 3:
			req.Fail = true
		case i%100 == 7:
			req.Level = "ERROR"
			req.JSON = true // the JSON line carries the level
		default:
			special = false
		}
		payload, _ := json.Marshal(req)
		if i%100 == 11 {
			// A timeout: the sample sleeps past a short deadline.
			payload = []byte(`{"lines":3,"sleep_ms":400}`)
			special = true
		}
		res, err := e.p.Invoke(context.Background(), payload)
		if err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
		if res.Status == "timeout" {
			timeouts++
		}
		invs[res.RequestID] = inv{lines: req.Lines, special: special}
	}
	e.shutdown()
	rows, _ := e.archive()

	kept := map[string]int{}
	for _, r := range rows {
		if r.Type == "function" && strings.Contains(r.Message, "sample id=") {
			kept[r.RequestID]++
		}
	}
	var ordinary, ordinaryKept int
	for id, v := range invs {
		switch got := kept[id]; {
		case v.special && got != v.lines:
			t.Errorf("invocation %s (failed, timed out or ERROR): %d of %d lines archived", id, got, v.lines)
		case !v.special:
			ordinary++
			if got > 0 {
				ordinaryKept++
				if got != v.lines {
					t.Errorf("sampled invocation %s kept partially: %d of %d lines", id, got, v.lines)
				}
			}
		}
	}
	share := float64(ordinaryKept) / float64(ordinary)
	t.Logf("%d invocations, %d timeouts; ordinary kept: %d of %d (%.2f%%)", n, timeouts, ordinaryKept, ordinary, 100*share)
	if share < 0.085 || share > 0.115 {
		t.Errorf("kept %.2f%% of ordinary invocations, want 10%% +/- 1.5 points", 100*share)
	}
	checkStats(t, rows, e.p.Stats().FunctionLines)
}
