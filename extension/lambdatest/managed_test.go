package lambdatest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Managed Instances: concurrent invocations through several runtime
// workers, a SHUTDOWN-only extension, no runtimeDone, reports with
// durationMs and status only, and lines keyed by their own requestId.
func TestManagedInstances(t *testing.T) {
	h := startPlatform(t, Config{ManagedInstances: true, MaxConcurrency: 4, Timeout: 10 * time.Second,
		Env: []string{"TESTEXT_EVENTS=SHUTDOWN"}}, "testext")
	const n, lines = 8, 6
	payload := fmt.Sprintf(`{"lines":%d,"json":true,"sleep_ms":300}`, lines)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done []*Result
	)
	for range n {
		wg.Go(func() {
			res, err := h.p.Invoke(t.Context(), []byte(payload))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			done = append(done, res)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	h.shutdown()
	l := h.log("testext")
	evs := l.telemetry(t)

	if got := ofType(evs, "platform.runtimeDone"); len(got) != 0 {
		t.Errorf("%d platform.runtimeDone records, want none", len(got))
	}
	var events []string
	for _, ev := range l.Events {
		events = append(events, fmt.Sprint(ev["eventType"]))
	}
	if diff := cmp.Diff([]string{"SHUTDOWN"}, events); diff != "" {
		t.Errorf("events to the extension (-want +got):\n%s", diff)
	}
	env := envOf(l.Starts[0])
	if env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "lambda-managed-instances" || env["AWS_LAMBDA_MAX_CONCURRENCY"] != "4" {
		t.Errorf("extension environment: AWS_LAMBDA_INITIALIZATION_TYPE=%q AWS_LAMBDA_MAX_CONCURRENCY=%q",
			env["AWS_LAMBDA_INITIALIZATION_TYPE"], env["AWS_LAMBDA_MAX_CONCURRENCY"])
	}

	type span struct{ start, end time.Time }
	spans := map[string]*span{}
	for _, ev := range evs {
		at, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			t.Fatalf("event time %q: %v", ev.Time, err)
		}
		switch ev.Type {
		case "platform.start":
			spans[decodePlatform(t, ev).RequestID] = &span{start: at}
		case "platform.report":
			var rec map[string]any
			if err := json.Unmarshal(ev.Record, &rec); err != nil {
				t.Fatal(err)
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range rec {
					if !yield(k) {
						return
					}
				}
			})
			metrics, _ := rec["metrics"].(map[string]any)
			if !slices.Equal(keys, []string{"metrics", "requestId", "status"}) || len(metrics) != 1 || metrics["durationMs"] == nil {
				t.Errorf("platform.report %s: want requestId, status and metrics.durationMs only", ev.Record)
			}
			if s := spans[decodePlatform(t, ev).RequestID]; s != nil {
				s.end = at
			}
		}
	}
	// Invocations overlapped: some instant lies inside two of them.
	var edges []struct {
		at time.Time
		d  int
	}
	for _, s := range spans {
		edges = append(edges, struct {
			at time.Time
			d  int
		}{s.start, 1}, struct {
			at time.Time
			d  int
		}{s.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].d < edges[j].d
		}
		return edges[i].at.Before(edges[j].at)
	})
	most, cur := 0, 0
	for _, e := range edges {
		cur += e.d
		most = max(most, cur)
	}
	if most < 2 || most > 4 {
		t.Errorf("at most %d invocations ran at once, want 2 to MaxConcurrency (4)", most)
	}

	for _, res := range done {
		if res.Status != "success" {
			t.Errorf("%s: status %q, want success", res.RequestID, res.Status)
		}
		ids := sampleIDs(t, evs, res.RequestID)
		for i := range lines {
			if ids[fmt.Sprint(i)] != 1 {
				t.Errorf("%s line %d delivered %d times, want once", res.RequestID, i, ids[fmt.Sprint(i)])
			}
		}
	}
	// JSON lines carry their own requestId; plain lines wrapped by the
	// platform carry none: it cannot know whose they are.
	for _, ev := range ofType(evs, "function") {
		var rec struct {
			RequestID string `json:"requestId"`
			Message   string `json:"message"`
			Seq       *int   `json:"seq"`
		}
		if json.Unmarshal(ev.Record, &rec) != nil {
			t.Errorf("function record %s is not a JSON object", ev.Record)
			continue
		}
		if (rec.Seq != nil) != (rec.RequestID != "") {
			t.Errorf("function record %s: requestId %q", ev.Record, rec.RequestID)
		}
	}
	t.Logf("%d invocations, at most %d at once", n, most)
}

// What Managed Instances refuse: INVOKE at registration (403), a schema
// other than 2025-01-29 (400).
func TestManagedInstancesRefusals(t *testing.T) {
	tests := []struct {
		name, env  string
		kind       string // which call is refused
		wantStatus float64
	}{
		{name: "INVOKE", env: "TESTEXT_EVENTS=INVOKE,SHUTDOWN", kind: "register", wantStatus: 403},
		{name: "old schema", env: "TESTEXT_SCHEMA=2022-12-13", kind: "subscribe", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Start(t.Context(), Config{ManagedInstances: true, Runtime: []string{bin("bootstrap")},
				Extensions: []string{bin("testext")}, Env: []string{"TESTEXT_EVENTS=SHUTDOWN", tt.env, "TESTEXT_DIR=" + dir}})
			var ie *InitError
			if !errors.As(err, &ie) {
				t.Fatalf("Start = %v, want an InitError (testext exits when refused)", err)
			}
			h := &harness{t: t, dir: dir}
			l := h.log("testext")
			calls := l.Registers
			if tt.kind == "subscribe" {
				calls = l.Subscribe
			}
			if len(calls) == 0 || calls[0]["status"] != tt.wantStatus {
				t.Errorf("%s answers %v, want status %v", tt.kind, calls, tt.wantStatus)
			}
		})
	}
}
