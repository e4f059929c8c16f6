//go:build !lambda

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

var logsDay = time.Date(2026, 3, 7, 9, 0, 0, 0, time.UTC)

func logsAt(m, s int) time.Time {
	return logsDay.Add(time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

// writeArchive writes records of one environment through the Batcher and
// sink, as the extension does, one object per call.
func writeArchive(t *testing.T, sink sinks.Sink, function string, rs ...*buffer.Record) {
	t.Helper()
	b := buffer.NewBatcher(buffer.Meta{Function: function, Version: "$LATEST"}, buffer.Limits{}, nil)
	var batches []*buffer.Batch
	for _, r := range rs {
		batches = append(batches, b.Add(r)...)
	}
	if s := b.Seal(); s != nil {
		batches = append(batches, s)
	}
	for _, bt := range batches {
		if err := sink.Write(context.Background(), bt); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// demoArchive is two functions, two environments of the first, with lines
// of several levels, request ids and a report.
func demoArchive(t *testing.T, write func(function, env string) sinks.Sink) {
	t.Helper()
	line := func(m, s int, id, level, msg string) *buffer.Record {
		return &buffer.Record{Time: logsAt(m, s), Type: "function", RequestID: id, Level: level, Message: msg}
	}
	writeArchive(t, write("orders", "envA"), "orders",
		line(1, 0, "req-1", "INFO", "start order 1"),
		line(1, 2, "req-1", "ERROR", "payment failed: card declined"),
		&buffer.Record{Time: logsAt(1, 3), Type: "platform.report", RequestID: "req-1", Status: "error",
			Metrics: &buffer.Metrics{DurationMs: 12.5, BilledDurationMs: 13, MemorySizeMB: 128, MaxMemoryUsedMB: 40}},
		line(3, 0, "req-3", "DEBUG", "cache miss"),
	)
	writeArchive(t, write("orders", "envB"), "orders",
		line(2, 0, "req-2", "WARN", "slow downstream"),
		line(2, 1, "req-2", "INFO", "done order 2"),
	)
	writeArchive(t, write("billing", "envC"), "billing",
		line(1, 1, "req-9", "INFO", "invoice 9"),
	)
}

func dirArchive(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	demoArchive(t, func(fn, env string) sinks.Sink {
		return sinks.NewDir(root, sinks.Layout{Function: fn, Env: env})
	})
	return root
}

// runLogs runs logsMain with env as the environment it reads.
func runLogs(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = logsMain(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestLogsFilters(t *testing.T) {
	root := dirArchive(t)
	window := []string{"--start", "2026-03-07T09:00:00Z", "--end", "2026-03-07T10:00:00Z"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"all of one function", []string{"--function", "orders"}, []string{
			"2026-03-07T09:01:00.000Z INFO  req-1 start order 1",
			"2026-03-07T09:01:02.000Z ERROR req-1 payment failed: card declined",
			"2026-03-07T09:01:03.000Z -     req-1 REPORT status=error duration=12.5ms billed=13ms memory=128MB max_used=40MB",
			"2026-03-07T09:02:00.000Z WARN  req-2 slow downstream",
			"2026-03-07T09:02:01.000Z INFO  req-2 done order 2",
			"2026-03-07T09:03:00.000Z DEBUG req-3 cache miss",
		}},
		{"two functions, comma list", []string{"--function", "orders,billing", "--grep", "order 1|invoice"}, []string{
			"2026-03-07T09:01:00.000Z orders INFO  req-1 start order 1",
			"2026-03-07T09:01:01.000Z billing INFO  req-9 invoice 9",
		}},
		{"repeated --function", []string{"--function", "billing", "--function", "orders", "--request-id", "req-9"}, []string{
			"2026-03-07T09:01:01.000Z billing INFO  req-9 invoice 9",
		}},
		{"request id", []string{"--function", "orders", "--request-id", "req-2"}, []string{
			"2026-03-07T09:02:00.000Z WARN  req-2 slow downstream",
			"2026-03-07T09:02:01.000Z INFO  req-2 done order 2",
		}},
		{"level at or above, failed report counts as ERROR", []string{"--function", "orders", "--level", "warning"}, []string{
			"2026-03-07T09:01:02.000Z ERROR req-1 payment failed: card declined",
			"2026-03-07T09:01:03.000Z -     req-1 REPORT status=error duration=12.5ms billed=13ms memory=128MB max_used=40MB",
			"2026-03-07T09:02:00.000Z WARN  req-2 slow downstream",
		}},
		{"grep", []string{"--function", "orders", "--grep", `^(cache|slow)\b`}, []string{
			"2026-03-07T09:02:00.000Z WARN  req-2 slow downstream",
			"2026-03-07T09:03:00.000Z DEBUG req-3 cache miss",
		}},
		{"type", []string{"--function", "orders", "--type", "platform.report"}, []string{
			"2026-03-07T09:01:03.000Z -     req-1 REPORT status=error duration=12.5ms billed=13ms memory=128MB max_used=40MB",
		}},
		{"json is the archived row", []string{"--function", "orders", "--json", "--request-id", "req-3"}, []string{
			`{"time":"2026-03-07T09:03:00.000Z","type":"function","function":"orders","version":"$LATEST","request_id":"req-3","level":"DEBUG","message":"cache miss"}`,
		}},
		{"narrow window", []string{"--function", "orders", "--start", "2026-03-07T09:01:02Z", "--end", "2026-03-07T09:02:00Z"}, []string{
			"2026-03-07T09:01:02.000Z ERROR req-1 payment failed: card declined",
			"2026-03-07T09:01:03.000Z -     req-1 REPORT status=error duration=12.5ms billed=13ms memory=128MB max_used=40MB",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"file://" + root}, window...)
			args = append(args, tt.args...) // later --start/--end win
			code, stdout, stderr := runLogs(t, nil, args...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if diff := gocmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sluice logs %q mismatch (-want +got):\n%s", args, diff)
			}
		})
	}
}

// useS3 points the SDK's default chain at srv through the environment, as
// a person's shell would.
func useS3(t *testing.T, srv *s3test.Server) {
	t.Helper()
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
}

func TestLogsS3(t *testing.T) {
	srv := s3test.Start(t)
	client := srv.Client(t)
	demoArchive(t, func(fn, env string) sinks.Sink {
		return sinks.NewS3(client, sinks.S3Options{Bucket: srv.Bucket, Layout: sinks.Layout{Prefix: "logs", Function: fn, Env: env}})
	})
	useS3(t, srv)
	env := map[string]string{"SLUICE_SINK": "s3://" + srv.Bucket + "/logs", "AWS_REGION": srv.Region}
	window := []string{"--start", "2026-03-07 09:00", "--end", "2026-03-07T10:00:00Z"}
	t.Setenv("TZ", "UTC") // the local-time form above

	t.Run("SINK from SLUICE_SINK", func(t *testing.T) {
		code, stdout, stderr := runLogs(t, env, append(window, "--function", "orders", "--level", "error", "--type", "function")...)
		want := "2026-03-07T09:01:02.000Z ERROR req-1 payment failed: card declined\n"
		if code != exitOK || stdout != want {
			t.Errorf("exit %d, stdout %q, want 0, %q; stderr:\n%s", code, stdout, want, stderr)
		}
	})
	tests := []struct {
		name     string
		setenv   map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no such bucket", nil, []string{"s3://no-such-bucket/logs"}, exitFailed, `bucket "no-such-bucket" does not exist`},
		{"no credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, nil, exitFailed, "no AWS credentials"},
		{"unknown access key", map[string]string{"AWS_ACCESS_KEY_ID": "nobody"}, nil, exitFailed, "S3 rejected the credentials"},
		{"wrong secret", map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, nil, exitFailed, "S3 rejected the credentials"},
		{"window with no objects", nil, []string{"--start", "2026-03-06T09:00:00Z", "--end", "2026-03-06T11:00:00Z"}, exitOK,
			"no objects for orders between 2026-03-06T09:00:00Z and 2026-03-06T11:00:00Z in s3://sluice-test/logs (listed 2 hour partitions)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.setenv {
				t.Setenv(k, v)
			}
			args := append(append(append([]string{}, tt.args...), window...), "--function", "orders")
			if len(tt.args) > 0 && strings.HasPrefix(tt.args[0], "--") {
				args = append(append(append([]string{}, window...), tt.args...), "--function", "orders")
			}
			code, stdout, stderr := runLogs(t, env, args...)
			t.Logf("stderr: %s", stderr)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestLogsCorruptObject(t *testing.T) {
	root := dirArchive(t)
	bad := filepath.Join(root, "function=orders", "dt=2026-03-07", "hour=09", "20260307T090130Z-bad-00000001.json.zst")
	if err := os.WriteFile(bad, []byte("not zstd at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runLogs(t, nil, "file://"+root, "--function", "orders", "--start", "2026-03-07T09:00:00Z", "--end", "2026-03-07T10:00:00Z", "--type", "function")
	if code != exitPartial {
		t.Errorf("exit %d, want %d", code, exitPartial)
	}
	if n := strings.Count(stdout, "\n"); n != 5 {
		t.Errorf("%d lines printed, want the 5 of the intact objects:\n%s", n, stdout)
	}
	for _, want := range []string{"skipped function=orders/dt=2026-03-07/hour=09/20260307T090130Z-bad-00000001.json.zst", "1 objects could not be read"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}
}

func TestLogsUsage(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no sink", nil, []string{"--function", "f"}, "no SINK"},
		{"bad sink", nil, []string{"http://x", "--function", "f"}, `SINK "http://x"`},
		{"relative dir", nil, []string{"file://dir", "--function", "f"}, `SINK "file://dir"`},
		{"two sinks", nil, []string{"file:///a", "file:///b", "--function", "f"}, "one SINK only"},
		{"no function", map[string]string{"SLUICE_SINK": "file:///a"}, nil, "no --function"},
		{"since and start", nil, []string{"file:///a", "--function", "f", "--since", "1h", "--start", "1h"}, "--since and --start"},
		{"bad since", nil, []string{"file:///a", "--function", "f", "--since", "yesterday"}, `--since "yesterday"`},
		{"bad start", nil, []string{"file:///a", "--function", "f", "--start", "2026-13-01"}, `--start "2026-13-01"`},
		{"empty window", nil, []string{"file:///a", "--function", "f", "--start", "5m", "--end", "10m"}, "the window is empty"},
		{"end with follow", nil, []string{"file:///a", "--function", "f", "--follow", "--end", "now"}, "--follow has no end"},
		{"bad level", nil, []string{"file:///a", "--function", "f", "--level", "loud"}, `--level "loud"`},
		{"bad regex", nil, []string{"file:///a", "--function", "f", "--grep", "a("}, "--grep"},
		{"fast poll", nil, []string{"file:///a", "--function", "f", "--follow", "--poll", "1ms"}, "--poll 1ms"},
		{"unknown flag", nil, []string{"file:///a", "--function", "f", "--tail"}, "flag provided but not defined: -tail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runLogs(t, tt.env, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.wantErr) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, nothing, %q", code, stdout, stderr, exitUsage, tt.wantErr)
			}
		})
	}
}

// lineWriter is stdout that tells, line by line, what was written.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // an incomplete line waits for its end
			break
		}
		w.lines <- strings.TrimSuffix(line, "\n")
	}
	return len(p), nil
}

func TestLogsFollow(t *testing.T) {
	root := t.TempDir()
	sink := func(env string) sinks.Sink { return sinks.NewDir(root, sinks.Layout{Function: "f", Env: env}) }
	writeArchive(t, sink("e1"), "f", &buffer.Record{Time: time.Now().Add(-time.Minute), Type: "function", Message: "first"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{lines: make(chan string, 10)}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- logsMain(ctx, []string{"file://" + root, "--function", "f", "--follow", "--poll", "100ms", "--since", "5m", "--json"},
			out, &stderr, func(string) string { return "" })
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case l := <-out.lines:
			if !strings.Contains(l, `"message":"`+want+`"`) {
				t.Fatalf("line %s, want message %q", l, want)
			}
		case code := <-done:
			t.Fatalf("sluice logs --follow exited %d: %s", code, stderr.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("no line %q within 30s", want)
		}
	}
	expect("first")
	writeArchive(t, sink("e2"), "f", &buffer.Record{Time: time.Now(), Type: "function", Message: "second"})
	expect("second")
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d after cancel, want 0; stderr: %s", code, stderr.String())
	}
	close(out.lines)
	for l := range out.lines {
		t.Errorf("unexpected line %s", l)
	}
}

// TestLogsBinary runs the default build (go install's): "logs" dispatches
// to the command.
func TestLogsBinary(t *testing.T) {
	root := dirArchive(t)
	out, err := exec.Command(binaries.cli, "logs", "file://"+root, "--function", "billing",
		"--start", "2026-03-07T09:00:00Z", "--end", "2026-03-07T10:00:00Z").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice logs: %v\n%s", err, out)
	}
	if want := "2026-03-07T09:01:01.000Z INFO  req-9 invoice 9\n"; string(out) != want {
		t.Errorf("output %q, want %q", out, want)
	}
	out, err = exec.Command(binaries.cli, "logs", "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "sluice ") {
		t.Errorf("sluice logs --version = %q, %v; want \"sluice VERSION\"", out, err)
	}
}

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	now := time.Date(2026, 3, 7, 12, 30, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"15m", now.Add(-15 * time.Minute)},
		{"-2h", now.Add(-2 * time.Hour)},
		{"1d", now.Add(-24 * time.Hour)},
		{"1d6h", now.Add(-30 * time.Hour)},
		{"2026-03-07T09:30:00Z", time.Date(2026, 3, 7, 9, 30, 0, 0, time.UTC)},
		{"2026-03-07T09:30:00.5+02:00", time.Date(2026, 3, 7, 7, 30, 0, 5e8, time.UTC)},
		{"2026-03-07T09:30Z", time.Date(2026, 3, 7, 9, 30, 0, 0, time.UTC)},
		{"2026-03-07 09:30", time.Date(2026, 3, 7, 9, 30, 0, 0, loc)},
		{"2026-03-07T09:30:15", time.Date(2026, 3, 7, 9, 30, 15, 0, loc)},
		{"2026-03-07", time.Date(2026, 3, 7, 0, 0, 0, 0, loc)},
		{"09:30", time.Date(2026, 3, 7, 9, 30, 0, 0, loc)},
		{"23:30:05", time.Date(2026, 3, 7, 23, 30, 5, 0, loc)},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in, now, loc)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-02-30", "25:00", "-", "1x", "d", "99999d"} {
		if got, err := parseTime(in, now, loc); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"now", "15m", "1d6h", "2026-03-07T09:30:00Z", "2026-03-07 09:30", "09:30", "-1h30m"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 7, 12, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime(s, now, time.UTC)
		if err != nil {
			return
		}
		// A duration reaches back, never forward.
		if d, derr := parseDuration(s); derr == nil && (d < 0 || got.After(now)) {
			t.Fatalf("parseTime(%q) = %v after now %v (duration %v)", s, got, now, d)
		}
	})
}

// BenchmarkLogsText is the command over 100 objects of the file:// sink
// (1,000 rows each), printing text: what a person waits for.
func BenchmarkLogsText(b *testing.B) {
	root := b.TempDir()
	start := logsDay
	lines := 0
	for i := range 100 {
		bt := buffer.NewBatcher(buffer.Meta{Function: "f", Version: "$LATEST"}, buffer.Limits{MaxBytes: 64 << 20}, nil)
		for j := range 1000 {
			bt.Add(&buffer.Record{Time: start.Add(time.Duration(i*1000+j) * 3 * time.Millisecond), Type: "function", RequestID: "8f2b6c1e-3a0d-4a57-9a52-5b0f1c9d7e21", Level: "INFO",
				Message: fmt.Sprintf("method=GET path=/api/v1/orders/%d status=200 duration_ms=%d", j, j%900)})
			lines++
		}
		if err := sinks.NewDir(root, sinks.Layout{Function: "f", Env: fmt.Sprintf("e%d", i%4)}).Write(context.Background(), bt.Seal()); err != nil {
			b.Fatal(err)
		}
	}
	args := []string{"file://" + root, "--function", "f", "--start", "2026-03-07T09:00:00Z", "--end", "2026-03-07T10:00:00Z"}
	for b.Loop() {
		if code := logsMain(context.Background(), args, io.Discard, io.Discard, func(string) string { return "" }); code != exitOK {
			b.Fatalf("exit %d", code)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
