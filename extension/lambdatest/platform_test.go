package lambdatest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLifecycle(t *testing.T) {
	var extOut bytes.Buffer
	h := startPlatform(t, Config{
		ExtensionOutput: &extOut,
		Env:             []string{"TESTEXT_TYPES=platform,function,extension"},
	}, "testext")
	res := h.invoke(`{"lines":3}`)
	if res.Status != "success" || res.ErrorType != "" {
		t.Errorf("Invoke status = %q/%q, want success", res.Status, res.ErrorType)
	}
	var resp struct {
		RequestID string `json:"requestId"`
		Lines     int    `json:"lines"`
	}
	if err := json.Unmarshal(res.Response, &resp); err != nil || resp.RequestID != res.RequestID || resp.Lines != 3 {
		t.Errorf("Invoke response = %s (%v), want requestId %s and 3 lines", res.Response, err, res.RequestID)
	}
	sd := h.shutdown()
	if len(sd.Killed) != 0 {
		t.Errorf("Shutdown killed %v, want none", sd.Killed)
	}

	l := h.log("testext")
	evs := l.telemetry(t)
	var types []string
	for _, e := range evs {
		if strings.HasPrefix(e.Type, "platform.") && !slices.Contains(types, e.Type) {
			types = append(types, e.Type)
		}
	}
	want := []string{"platform.initStart", "platform.extension", "platform.telemetrySubscription",
		"platform.initRuntimeDone", "platform.initReport", "platform.start", "platform.runtimeDone", "platform.report"}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("platform event types in order of first arrival (-want +got):\n%s", diff)
	}
	report := decodePlatform(t, ofType(evs, "platform.initReport")[0])
	initMs, _ := report.Metrics["durationMs"].(float64)
	if report.Status != "success" || report.Phase != "init" || initMs <= 0 {
		t.Errorf("initReport = %+v, want success, phase init, durationMs > 0", report)
	}
	t.Logf("init (extension registered + subscribed, runtime at next): %.2f ms", initMs)
	for _, name := range []string{"platform.start", "platform.runtimeDone", "platform.report"} {
		if got := forRequest(t, evs, name, res.RequestID); len(got) != 1 {
			t.Errorf("%s for %s: %d events, want 1", name, res.RequestID, len(got))
		}
	}
	rep := forRequest(t, evs, "platform.report", res.RequestID)[0]
	for _, k := range []string{"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"} {
		if v, _ := rep.Metrics[k].(float64); v <= 0 {
			t.Errorf("platform.report metrics.%s = %v, want > 0", k, rep.Metrics[k])
		}
	}
	// "sample init" is written before the extension subscribes: the Init
	// backlog must still reach it.
	var lines []string
	for _, e := range ofType(evs, "function") {
		lines = append(lines, lineText(t, e.Record))
	}
	if !slices.Contains(lines, "sample init") || !slices.Contains(lines, "sample SIGTERM") {
		t.Errorf("function lines %q lack the init line or the SIGTERM line", lines)
	}
	if got := sampleIDs(t, evs, res.RequestID); len(got) != 3 {
		t.Errorf("function lines of the invocation: %v, want 3", got)
	}

	if len(l.Registers) != 1 {
		t.Fatalf("registrations: %d, want 1", len(l.Registers))
	}
	wantReg := map[string]any{"functionName": "sample", "functionVersion": "$LATEST", "handler": "bootstrap", "accountId": "123456789012"}
	if diff := cmp.Diff(wantReg, l.Registers[0]["body"]); diff != "" {
		t.Errorf("register response body (-want +got):\n%s", diff)
	}
	env := envOf(l.Starts[0])
	for k, v := range map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          h.p.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME":        "sample",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_REGION":                      "us-east-1",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
	} {
		if env[k] != v {
			t.Errorf("extension env %s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"_HANDLER", "AWS_LAMBDA_LOG_GROUP_NAME", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_FORMAT"} {
		if v, ok := env[k]; ok {
			t.Errorf("extension env has %s=%q, want it hidden", k, v)
		}
	}

	if len(l.Events) != 2 {
		t.Fatalf("extension events: %v, want INVOKE and SHUTDOWN", l.Events)
	}
	inv, shut := l.Events[0], l.Events[1]
	tracing, _ := inv["tracing"].(map[string]any)
	if inv["eventType"] != "INVOKE" || inv["requestId"] != res.RequestID ||
		inv["invokedFunctionArn"] != "arn:aws:lambda:us-east-1:123456789012:function:sample" ||
		tracing["type"] != "X-Amzn-Trace-Id" || !strings.HasPrefix(fmt.Sprint(tracing["value"]), "Root=1-") {
		t.Errorf("INVOKE event = %v", inv)
	}
	if dl, _ := inv["deadlineMs"].(float64); dl < float64(time.Now().Add(-time.Minute).UnixMilli()) {
		t.Errorf("INVOKE deadlineMs = %v, want epoch milliseconds", inv["deadlineMs"])
	}
	if shut["eventType"] != "SHUTDOWN" || shut["shutdownReason"] != "spindown" {
		t.Errorf("SHUTDOWN event = %v", shut)
	}
	ext := h.p.ExtensionLines()
	for _, w := range []string{"testext testext ready", "testext testext stderr line", "testext testext shutdown spindown"} {
		if !slices.Contains(ext, w) {
			t.Errorf("ExtensionLines() = %q, want %q in it", ext, w)
		}
	}
	var extRecords []string
	for _, e := range ofType(evs, "extension") {
		extRecords = append(extRecords, lineText(t, e.Record))
	}
	if !slices.Contains(extRecords, "testext testext ready") || !slices.Contains(extRecords, "testext testext stderr line") {
		t.Errorf("extension records %q lack the extension's stdout and stderr lines", extRecords)
	}
	if !strings.Contains(extOut.String(), "testext testext ready\n") {
		t.Errorf("ExtensionOutput = %q, want the extension's lines", extOut.String())
	}
	st := h.p.Stats()
	if st.Inits != 1 || st.Invocations != 1 || st.RecordsDropped != 0 || st.FunctionLines < 5 {
		t.Errorf("Stats() = %+v", st)
	}
	if _, err := h.p.Invoke(t.Context(), []byte(`{}`)); err == nil {
		t.Error("Invoke after Shutdown succeeded, want an error")
	}
}

func TestInvokeStatus(t *testing.T) {
	tests := []struct {
		name      string
		payload   string
		status    string
		errorType string
		reset     bool // the environment is replaced: SHUTDOWN, then a fresh Init
	}{
		{"success", `{"lines":1}`, "success", "", false},
		{"error", `{"lines":1,"fail":true}`, "error", "SampleError", false},
		{"crash", `{"lines":1,"exit":3}`, "failure", "Runtime.ExitError", true},
		{"timeout", `{"lines":1,"sleep_ms":5000}`, "timeout", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startPlatform(t, Config{Timeout: 400 * time.Millisecond}, "testext")
			res := h.invoke(tt.payload)
			if res.Status != tt.status || res.ErrorType != tt.errorType {
				t.Errorf("Invoke(%s) = %q/%q, want %q/%q", tt.payload, res.Status, res.ErrorType, tt.status, tt.errorType)
			}
			if tt.status == "error" && !bytes.Contains(res.Response, []byte("sample failure requested")) {
				t.Errorf("error response = %s, want the function's error document", res.Response)
			}
			if tt.status == "timeout" && res.Duration < 400*time.Millisecond {
				t.Errorf("timeout after %v, want >= 400ms", res.Duration)
			}
			next := h.invoke(`{"lines":2}`)
			if next.Status != "success" {
				t.Errorf("next Invoke status = %q (%s), want success", next.Status, next.ErrorType)
			}
			if got := next.Init > 0; got != tt.reset {
				t.Errorf("next Invoke ran Init = %v (%v), want %v", got, next.Init, tt.reset)
			}
			h.shutdown()
			wantInits := int64(1)
			if tt.reset {
				wantInits = 2
			}
			if st := h.p.Stats(); st.Inits != wantInits {
				t.Errorf("Stats().Inits = %d, want %d", st.Inits, wantInits)
			}

			l := h.log("testext")
			evs := l.telemetry(t)
			for _, typ := range []string{"platform.runtimeDone", "platform.report"} {
				got := forRequest(t, evs, typ, res.RequestID)
				if len(got) != 1 || got[0].Status != tt.status || got[0].ErrorType != tt.errorType {
					t.Errorf("%s of the first invocation = %+v, want one with %q/%q", typ, got, tt.status, tt.errorType)
				}
			}
			var reasons []string
			for _, ev := range l.Events {
				if ev["eventType"] == "SHUTDOWN" {
					reasons = append(reasons, fmt.Sprint(ev["shutdownReason"]))
				}
			}
			want := []string{"spindown"}
			if tt.reset {
				want = []string{tt.status, "spindown"}
			}
			if diff := cmp.Diff(want, reasons); diff != "" {
				t.Errorf("SHUTDOWN reasons (-want +got):\n%s", diff)
			}
			// The lines written before the end are delivered in both environments.
			if got := sampleIDs(t, evs, res.RequestID); got["0"] != 1 {
				t.Errorf("first invocation's line: %v, want it once", got)
			}
		})
	}
}

func TestLogFormats(t *testing.T) {
	for _, format := range []string{"Text", "JSON"} {
		t.Run(format, func(t *testing.T) {
			h := startPlatform(t, Config{LogFormat: format}, "testext")
			const n = 40
			res := h.invoke(fmt.Sprintf(`{"lines":%d,"json":true}`, n))
			errRes := h.invoke(`{"lines":4,"level":"ERROR"}`) // stderr
			h.shutdown()
			evs := h.log("testext").telemetry(t)

			for _, r := range []struct {
				id string
				n  int
			}{{res.RequestID, n}, {errRes.RequestID, 4}} {
				got := sampleIDs(t, evs, r.id)
				want := map[string]int{}
				for i := range r.n {
					want[fmt.Sprint(i)] = 1
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("lines of %s, by id (-want +got):\n%s", r.id, diff)
				}
			}

			// Every line written before the response precedes runtimeDone.
			seen, done := 0, false
			for _, e := range evs {
				if e.Type == "platform.runtimeDone" && decodePlatform(t, e).RequestID == res.RequestID {
					done = true
				}
				if e.Type == "function" && strings.Contains(lineText(t, e.Record), "sample id="+res.RequestID) {
					if done {
						t.Fatalf("function line %s after its runtimeDone", e.Record)
					}
					seen++
				}
			}
			if seen != n || !done {
				t.Errorf("saw %d lines then runtimeDone=%v, want %d lines then runtimeDone", seen, done, n)
			}

			for _, e := range ofType(evs, "function") {
				text := lineText(t, e.Record)
				if !strings.Contains(text, "sample id="+res.RequestID) {
					continue
				}
				isJSONLine := strings.HasPrefix(text, "sample id=") && !strings.Contains(text, "plain")
				switch format {
				case "Text":
					var s string
					if err := json.Unmarshal(e.Record, &s); err != nil {
						t.Errorf("Text record %s is not a JSON string", e.Record)
					}
				case "JSON":
					var m map[string]any
					if err := json.Unmarshal(e.Record, &m); err != nil {
						t.Fatalf("JSON record %s is not an object", e.Record)
					}
					if isJSONLine {
						if _, ok := m["seq"]; !ok {
							t.Errorf("JSON line delivered as %s, want the function's object (with seq)", e.Record)
						}
					} else if m["level"] != "INFO" || m["requestId"] != res.RequestID || m["timestamp"] == nil {
						t.Errorf("plain line in JSON format = %s, want {timestamp, level INFO, requestId, message}", e.Record)
					}
				}
			}
		})
	}
}

func TestBigLines(t *testing.T) {
	var out bytes.Buffer
	h := startPlatform(t, Config{RuntimeOutput: &out}, "testext")
	sizes := []int{300 << 10, 1 << 20}
	var ids []string
	for _, size := range sizes {
		ids = append(ids, h.invoke(fmt.Sprintf(`{"big":%d}`, size)).RequestID)
	}
	h.shutdown()
	evs := h.log("testext").telemetry(t)
	for i, size := range sizes {
		want := bigLine(ids[i], size)
		var found int
		for _, e := range ofType(evs, "function") {
			if s := lineText(t, e.Record); strings.HasPrefix(s, "sample id="+ids[i]+"-big") {
				found++
				if s != want {
					t.Errorf("line of %d bytes arrived as %d bytes (first difference at %d)", size, len(s), firstDiff(s, want))
				}
			}
		}
		if found != 1 {
			t.Errorf("line of %d bytes arrived %d times, want once", size, found)
		}
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("RuntimeOutput lacks the line of %d bytes", size)
		}
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestFreeze(t *testing.T) {
	for _, noFreeze := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoFreeze=%v", noFreeze), func(t *testing.T) {
			h := startPlatform(t, Config{NoFreeze: noFreeze}, "testext")
			check := func(when string) {
				t.Helper()
				pids := h.p.PIDs()
				if len(pids) != 2 {
					t.Fatalf("PIDs() = %v, want testext and runtime", pids)
				}
				for name, pid := range pids {
					stopped := procState(pid) == 'T'
					if stopped == noFreeze {
						t.Errorf("%s: %s (pid %d) state %c, stopped = %v, want %v", when, name, pid, procState(pid), stopped, !noFreeze)
					}
				}
			}
			check("after Start")
			for i := range 3 {
				if res := h.invoke(`{"lines":5}`); res.Status != "success" {
					t.Fatalf("Invoke %d status %q", i, res.Status)
				}
				check(fmt.Sprintf("after Invoke %d", i))
			}
			h.shutdown()
			if got := len(h.log("testext").Events); got != 4 {
				t.Errorf("extension got %d events, want 3 INVOKE and SHUTDOWN", got)
			}
		})
	}
}

func TestParseSubscription(t *testing.T) {
	valid := func(edit func(m map[string]any)) string {
		m := map[string]any{
			"schemaVersion": "2025-01-29",
			"destination":   map[string]any{"protocol": "HTTP", "URI": "http://sandbox.localdomain:8080/logs"},
			"types":         []string{"platform", "function"},
			"buffering":     map[string]any{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
		}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	buf := func(k string, v any) func(map[string]any) {
		return func(m map[string]any) { m["buffering"].(map[string]any)[k] = v }
	}
	tests := []struct {
		name    string
		body    string
		wantErr string // substring; "" means valid
		url     string
	}{
		{"valid", valid(func(map[string]any) {}), "", "http://127.0.0.1:8080/logs"},
		{"old schema", valid(func(m map[string]any) { m["schemaVersion"] = "2022-12-13" }), "", ""},
		{"no buffering", valid(func(m map[string]any) { delete(m, "buffering") }), "", ""},
		{"bad schema", valid(func(m map[string]any) { m["schemaVersion"] = "2022-07-01" }), "schemaVersion", ""},
		{"no schema", valid(func(m map[string]any) { delete(m, "schemaVersion") }), "schemaVersion", ""},
		{"bad type", valid(func(m map[string]any) { m["types"] = []string{"platform", "logs"} }), `"logs"`, ""},
		{"no types", valid(func(m map[string]any) { m["types"] = []string{} }), "types", ""},
		{"maxItems low", valid(buf("maxItems", 999)), "maxItems", ""},
		{"maxItems high", valid(buf("maxItems", 10001)), "maxItems", ""},
		{"maxBytes low", valid(buf("maxBytes", 262143)), "maxBytes", ""},
		{"maxBytes high", valid(buf("maxBytes", 1048577)), "maxBytes", ""},
		{"timeoutMs low", valid(buf("timeoutMs", 24)), "timeoutMs", ""},
		{"timeoutMs high", valid(buf("timeoutMs", 30001)), "timeoutMs", ""},
		{"TCP", valid(func(m map[string]any) { m["destination"].(map[string]any)["protocol"] = "TCP" }), "protocol", ""},
		{"remote host", valid(func(m map[string]any) { m["destination"].(map[string]any)["URI"] = "http://example.com:80/" }), "sandbox.localdomain", ""},
		{"no destination", valid(func(m map[string]any) { delete(m, "destination") }), "destination", ""},
		{"not JSON", `{"schemaVersion":`, "decode", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSubscription([]byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseSubscription(%s) = %v, want success", tt.body, err)
				}
				if tt.url != "" && s.url != tt.url {
					t.Errorf("url = %q, want %q", s.url, tt.url)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseSubscription(%s) = %v, want an error about %s", tt.body, err, tt.wantErr)
			}
		})
	}
}

func TestSubscriptionValidationOverHTTP(t *testing.T) {
	probes := `[
		{"schemaVersion":"2025-01-29","destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1/"},"types":["platform"],"buffering":{"maxItems":1}},
		{"schemaVersion":"2021-01-01","destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1/"},"types":["platform"]},
		{"schemaVersion":"2025-01-29","destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1/"},"types":["bogus"]}
	]`
	h := startPlatform(t, Config{Env: []string{"TESTEXT_PROBES=" + probes}}, "testext")
	h.shutdown()
	l := h.log("testext")
	if len(l.Probes) != 3 {
		t.Fatalf("probes answered: %d, want 3", len(l.Probes))
	}
	for i, p := range l.Probes {
		var doc struct{ ErrorType string }
		_ = json.Unmarshal([]byte(fmt.Sprint(p["body"])), &doc)
		if p["status"] != float64(400) || doc.ErrorType != "ValidationError" {
			t.Errorf("probe %d answered %v %v, want 400 ValidationError", i, p["status"], p["body"])
		}
	}
	if len(l.Subscribe) != 1 || l.Subscribe[0]["status"] != float64(200) {
		t.Errorf("valid subscription answered %v, want 200", l.Subscribe)
	}
}

func TestLogsDropped(t *testing.T) {
	h := startPlatform(t, Config{
		MaxQueuedRecords: 100,
		PostTimeout:      100 * time.Millisecond,
		Env:              []string{"TESTEXT_HANG_POSTS=3"},
	}, "testext")
	res := h.invoke(`{"lines":2000}`)
	h.shutdown()
	st := h.p.Stats()
	l := h.log("testext")
	evs := l.telemetry(t)
	var reported int64
	for _, e := range ofType(evs, "platform.logsDropped") {
		r := decodePlatform(t, e)
		if r.Reason == "" || r.Dropped <= 0 {
			t.Errorf("logsDropped record %s", e.Record)
		}
		reported += r.Dropped
	}
	if st.RecordsDropped == 0 || reported != st.RecordsDropped || st.DropsReported != st.RecordsDropped {
		t.Errorf("dropped %d, reported in Stats %d, received in logsDropped %d: want equal and > 0", st.RecordsDropped, st.DropsReported, reported)
	}
	ids := sampleIDs(t, evs, res.RequestID)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("line %s arrived %d times", id, n)
		}
	}
	received := int64(len(ofType(evs, "function")))
	if received+st.RecordsDropped != st.FunctionLines {
		t.Errorf("received %d + dropped %d function records, produced %d", received, st.RecordsDropped, st.FunctionLines)
	}
	var hung int
	for _, p := range l.Posts {
		if p.Status == 0 {
			hung++
		}
	}
	if hung != 3 || st.PostRetries < 3 {
		t.Errorf("hung POSTs %d, retries %d: want 3 and >= 3", hung, st.PostRetries)
	}
	t.Logf("dropped %d of %d function records", st.RecordsDropped, st.FunctionLines)
}

func TestPostRetries(t *testing.T) {
	h := startPlatform(t, Config{Env: []string{"TESTEXT_FAIL_POSTS=3"}}, "testext")
	res := h.invoke(`{"lines":50}`)
	h.shutdown()
	st := h.p.Stats()
	l := h.log("testext")
	var failed int
	for _, p := range l.Posts {
		if p.Status == 500 {
			failed++
		}
	}
	if failed != 3 || st.PostRetries != 3 {
		t.Errorf("POSTs answered 500: %d, PostRetries %d, want 3 and 3", failed, st.PostRetries)
	}
	want := map[string]int{}
	for i := range 50 {
		want[fmt.Sprint(i)] = 1
	}
	if diff := cmp.Diff(want, sampleIDs(t, l.telemetry(t), res.RequestID)); diff != "" {
		t.Errorf("lines by id after retries (-want +got):\n%s", diff)
	}
	if st.RecordsDropped != 0 || st.RecordsUndelivered != 0 || st.RecordsDelivered != st.RecordsQueued {
		t.Errorf("Stats() = %+v, want every queued record delivered", st)
	}
}

func TestShutdownKillsAtDeadline(t *testing.T) {
	h := startPlatform(t, Config{
		ShutdownTimeout: 300 * time.Millisecond,
		Env:             []string{"TESTEXT_STUBBORN_IGNORE_SHUTDOWN=1", "TESTEXT_TESTEXT_EXIT_ERROR=3 batches lost"},
	}, "testext", "stubborn")
	h.invoke(`{"lines":1}`)
	res := h.shutdown()
	if diff := cmp.Diff([]string{"stubborn"}, res.Killed); diff != "" {
		t.Errorf("Killed (-want +got):\n%s", diff)
	}
	if res.Duration < 300*time.Millisecond || res.Duration > 2*time.Second {
		t.Errorf("Shutdown took %v, want the 300ms deadline and little more", res.Duration)
	}
	for _, name := range []string{"testext", "stubborn"} {
		if got := h.log(name).Exits; len(got) != 1 || got[0] != "spindown" {
			t.Errorf("%s saw SHUTDOWN reasons %v, want [spindown]", name, got)
		}
	}
	wantErrs := []ExtensionError{{Extension: "testext", Phase: "exit", ErrorType: "Extension.FlushFailed", Message: "3 batches lost"}}
	if diff := cmp.Diff(wantErrs, h.p.ExtensionErrors()); diff != "" {
		t.Errorf("ExtensionErrors() (-want +got):\n%s", diff)
	}
	if st := h.p.Stats(); st.ExtensionsKilled != 1 {
		t.Errorf("Stats().ExtensionsKilled = %d, want 1", st.ExtensionsKilled)
	}
	if pids := h.p.PIDs(); len(pids) != 0 {
		t.Errorf("PIDs() after Shutdown = %v, want none", pids)
	}
}

func TestPostTelemetry(t *testing.T) {
	h := startPlatform(t, Config{}, "testext", "second")
	body := []byte(`[{"time":"2026-01-01T00:00:00.000Z","type":"function","record":"cut in the mid`)
	if err := h.p.PostTelemetry(t.Context(), body); err != nil {
		t.Fatalf("PostTelemetry: %v", err)
	}
	for name, pid := range h.p.PIDs() {
		if procState(pid) != 'T' {
			t.Errorf("%s not frozen again after PostTelemetry", name)
		}
	}
	h.shutdown()
	for _, name := range []string{"testext", "second"} {
		var n int
		for _, p := range h.log(name).Posts {
			if bytes.Equal(p.Body, body) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s received the raw body %d times, want once", name, n)
		}
	}
}

func TestInitFailures(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		source    string
		errorType string
		message   string
	}{
		{"init error", Config{Env: []string{"TESTEXT_INIT_ERROR=EXAMPLE_BUCKET is not set"}}, "testext", "Extension.ConfigInvalid", "EXAMPLE_BUCKET is not set"},
		{"exit during init", Config{Env: []string{"TESTEXT_EXIT_AT=register"}}, "testext", "Extension.ExitError", "exit status 3"},
		{"wrong name", Config{Env: []string{"TESTEXT_NAME=other"}}, "testext", "Extension.ExitError", "exit status 1"},
		{"no runtime", Config{Runtime: []string{"/nonexistent/bootstrap"}}, "runtime", "Runtime.InvalidEntrypoint", "nonexistent"},
		{"runtime crash", Config{Runtime: []string{"/bin/false"}}, "runtime", "Runtime.ExitError", "exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Runtime == nil {
				cfg.Runtime = []string{bin("bootstrap")}
			}
			cfg.Extensions = []string{bin("testext")}
			cfg.Env = append(cfg.Env, "TESTEXT_DIR="+t.TempDir())
			p, err := Start(t.Context(), cfg)
			if err == nil {
				_ = p.Close()
				t.Fatal("Start succeeded, want an init failure")
			}
			var ie *InitError
			if !errors.As(err, &ie) {
				t.Fatalf("Start error %v is not an *InitError", err)
			}
			if ie.Source != tt.source || ie.ErrorType != tt.errorType || !strings.Contains(ie.Message, tt.message) {
				t.Errorf("InitError = %+v, want %s/%s with %q", ie, tt.source, tt.errorType, tt.message)
			}
			if tt.name == "wrong name" && !strings.Contains(strings.Join(ie.Output, "\n"), "Extension.InvalidExtensionName") {
				t.Errorf("InitError.Output = %q, want the extension's report of the refused name", ie.Output)
			}
		})
	}
}

func TestExtensionWaitsForRuntimeDone(t *testing.T) {
	// Like sluice's per-invoke flush: the extension reads the invocation's
	// platform.runtimeDone before it calls next, so telemetry must flow
	// while the invocation is still open.
	h := startPlatform(t, Config{Env: []string{"TESTEXT_WAIT_DONE=1", "TESTEXT_SLEEP_MS=20"}}, "testext")
	for range 3 {
		res := h.invoke(`{"lines":10}`)
		if res.Status != "success" || res.PostRuntime < 20*time.Millisecond || res.PostRuntime > time.Second {
			t.Errorf("Invoke = %s after %v + %v post-runtime, want success with 20ms..1s post-runtime", res.Status, res.Duration, res.PostRuntime)
		}
	}
	h.shutdown()
}

func TestPostRuntimeTimeout(t *testing.T) {
	// Extension work after the response counts against the timeout.
	h := startPlatform(t, Config{Timeout: 300 * time.Millisecond, Env: []string{"TESTEXT_SLEEP_MS=600"}}, "testext")
	res := h.invoke(`{"lines":1}`)
	if res.Status != "timeout" || len(res.Response) == 0 || res.PostRuntime < 250*time.Millisecond {
		t.Errorf("Invoke = %s, response %q, post-runtime %v: want timeout after the response, ~300ms post-runtime", res.Status, res.Response, res.PostRuntime)
	}
	h.shutdown()
	var reasons []string
	for _, ev := range h.log("testext").Events {
		if ev["eventType"] == "SHUTDOWN" {
			reasons = append(reasons, fmt.Sprint(ev["shutdownReason"]))
		}
	}
	if diff := cmp.Diff([]string{"timeout"}, reasons); diff != "" {
		t.Errorf("SHUTDOWN reasons (-want +got):\n%s", diff)
	}
}

func TestExtensionCrashDuringInvoke(t *testing.T) {
	h := startPlatform(t, Config{}, "testext")
	h.p.Signal(syscall.SIGKILL)
	res := h.invoke(`{"lines":1}`)
	if res.Status != "failure" || res.ErrorType != "Extension.Crash" {
		t.Errorf("Invoke with a dead extension = %s/%s, want failure/Extension.Crash", res.Status, res.ErrorType)
	}
	if res := h.invoke(`{"lines":1}`); res.Status != "success" || res.Init == 0 {
		t.Errorf("next Invoke = %s (init %v), want success after a fresh Init", res.Status, res.Init)
	}
	h.shutdown()
}

func TestCloseIsIdempotent(t *testing.T) {
	h := startPlatform(t, Config{}, "testext")
	pids := h.p.PIDs()
	for range 2 {
		if err := h.p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s (pid %d) still alive after Close", name, pid)
		}
	}
	if _, err := h.p.Invoke(t.Context(), nil); err == nil {
		t.Error("Invoke after Close succeeded")
	}
}

func TestNoGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, end := range []string{"shutdown", "timeout then close", "close"} {
		h := startPlatform(t, Config{Timeout: 200 * time.Millisecond}, "testext")
		switch end {
		case "shutdown":
			h.invoke(`{"lines":3}`)
			h.shutdown()
		case "timeout then close":
			h.invoke(`{"sleep_ms":1000}`)
		}
		if err := h.p.Close(); err != nil {
			t.Fatalf("%s: Close: %v", end, err)
		}
	}
	// Goroutines that saw their end may still be returning: poll, bounded.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

func BenchmarkInvoke(b *testing.B) {
	for _, noFreeze := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoFreeze=%v", noFreeze), func(b *testing.B) {
			cfg := Config{
				Runtime:    []string{bin("bootstrap")},
				Extensions: []string{bin("testext")},
				Env:        []string{"TESTEXT_DIR=" + b.TempDir()},
				NoFreeze:   noFreeze,
			}
			p, err := Start(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			var runtime time.Duration
			for b.Loop() {
				res, err := p.Invoke(b.Context(), []byte(`{"lines":1}`))
				if err != nil || res.Status != "success" {
					b.Fatalf("Invoke: %v %v", res, err)
				}
				runtime += res.Duration
			}
			b.ReportMetric(float64(runtime.Microseconds())/float64(b.N), "runtime-µs/op")
		})
	}
}

func BenchmarkInit(b *testing.B) {
	cfg := Config{
		Runtime:    []string{bin("bootstrap")},
		Extensions: []string{bin("testext")},
		Env:        []string{"TESTEXT_DIR=" + b.TempDir()},
		NoFreeze:   true,
	}
	for b.Loop() {
		p, err := Start(b.Context(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Close()
	}
}

func TestTelemetryDestinations(t *testing.T) {
	h := startPlatform(t, Config{NoFreeze: true}, "testext", "second")
	dests := h.p.TelemetryDestinations()
	if len(dests) != 2 {
		t.Fatalf("TelemetryDestinations() = %v, want testext and second", dests)
	}
	for name, u := range dests {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("destination of %s = %q, want http://127.0.0.1:PORT", name, u)
		}
	}
	// A body posted straight to one destination reaches that extension
	// only, outside the platform's dispatch.
	body := []byte(`[{"time":"2026-01-01T00:00:00.000Z","type":"function","record":"posted directly"}]`)
	resp, err := http.Post(dests["testext"], "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST to %s: %v", dests["testext"], err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST to testext answered %d, want 200", resp.StatusCode)
	}
	h.shutdown()
	if d := h.p.TelemetryDestinations(); len(d) != 0 {
		t.Errorf("TelemetryDestinations() after Shutdown = %v, want none", d)
	}
	for name, want := range map[string]int{"testext": 1, "second": 0} {
		n := 0
		for _, p := range h.log(name).Posts {
			if bytes.Equal(p.Body, body) {
				n++
			}
		}
		if n != want {
			t.Errorf("%s received the body posted directly %d times, want %d", name, n, want)
		}
	}
}

// The sample writes SAMPLE_SIGTERM_LINES lines in its SIGTERM handler; the
// platform delivers them, as function records, before SHUTDOWN.
func TestSIGTERMLines(t *testing.T) {
	h := startPlatform(t, Config{Env: []string{"SAMPLE_SIGTERM_LINES=3"}}, "testext")
	h.invoke(`{"lines":1}`)
	h.shutdown()
	evs := h.log("testext").telemetry(t)
	want := map[string]int{"0": 1, "1": 1, "2": 1}
	if diff := cmp.Diff(want, sampleIDs(t, evs, "sigterm")); diff != "" {
		t.Errorf("lines written in the SIGTERM handler, by number (-want +got):\n%s", diff)
	}
	if st := h.p.Stats(); st.FunctionLines != 1+1+3+1 { // init, the invocation, the handler, "sample SIGTERM"
		t.Errorf("Stats().FunctionLines = %d, want 6", st.FunctionLines)
	}
}
