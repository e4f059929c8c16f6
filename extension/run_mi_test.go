package extension

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

// refusingAPI is the Extensions API of a platform that refuses some
// registrations, as Managed Instances refuse INVOKE with a 403.
type refusingAPI struct {
	*fakeAPI
	refuse   func(events []EventType) bool
	mu       sync.Mutex
	attempts [][]EventType
}

func (f *refusingAPI) Register(ctx context.Context, name string, events []EventType) (Registration, error) {
	f.mu.Lock()
	f.attempts = append(f.attempts, slices.Clone(events))
	f.mu.Unlock()
	if f.refuse(events) {
		return Registration{}, fmt.Errorf("register: status 403: {\"errorType\":\"Extension.InvalidEventType\"}")
	}
	return f.fakeAPI.Register(ctx, name, events)
}

// managedInstances makes tr a Managed Instances environment whose sink
// deliveries are eager, as main builds them.
func managedInstances(tr *testRunner) {
	tr.r.Config.ManagedInstances = true
	eagerSinks(tr)
}

func eagerSinks(tr *testRunner) {
	tr.r.OpenSinks = func(context.Context, Registration) ([]Delivery, error) {
		return []Delivery{sinks.NewDurable(tr.sink, sinks.DurableOptions{
			Name: "mem", Fallback: tr.fallback, MaxHeld: tr.r.Config.BufferMaxBytes, Eager: tr.r.Eager(), Log: quiet,
		})}, nil
	}
}

func reportRec(id, status string) []buffer.Record {
	return []buffer.Record{{Time: time.Now().UTC(), Type: "platform.report", RequestID: id, Status: status,
		Metrics: &buffer.Metrics{DurationMs: 12.5}}}
}

// On Managed Instances sluice registers for SHUTDOWN only, and batches are
// uploaded as their age bound seals them, with no INVOKE to open a window:
// interleaved invocations, no runtimeDone, SHUTDOWN delivers the rest.
func TestRunnerManagedInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRunner(t, map[string]string{"SLUICE_BATCH_MAX_AGE": "5s", "SLUICE_BATCH_MIN_BYTES": "0"}, managedInstances)
		tr.start(t)
		if diff := cmp.Diff([]EventType{Shutdown}, tr.api.registered); diff != "" {
			t.Fatalf("registered events (-want +got):\n%s", diff)
		}
		var want []string
		a, b := lines("a", 4), lines("b", 4)
		for i := range a { // interleaved, as concurrent invocations arrive
			recs := []buffer.Record{a[i], b[i]}
			want = append(want, msgs(recs)...)
			tr.tel.posts <- recs
		}
		tr.tel.posts <- reportRec("a", "success")
		synctest.Wait()
		if n := len(tr.sink.messages()); n != 0 {
			t.Errorf("%d lines uploaded before the batch was due", n)
		}
		time.Sleep(6 * time.Second) // the batch ages out and is uploaded at once
		synctest.Wait()
		if got := len(tr.sink.messages()); got != 8 {
			t.Errorf("after the age bound the sink has %d lines without any INVOKE, want 8", got)
		}
		c := lines("c", 3)
		want = append(want, msgs(c)...)
		tr.tel.posts <- c
		tr.shutdown(t)
		everyLine(t, tr, want)
		if n := len(tr.fallback.messages()); n != 0 {
			t.Errorf("%d lines went to the fallback with a healthy sink", n)
		}
	})
}

// Tail sampling on Managed Instances decides on platform.report's status:
// a failed invocation is kept whole, a successful one sampled out, and a
// text line (no requestId) is not given to whichever invocation started
// last.
func TestRunnerManagedInstancesSampling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRunner(t, map[string]string{"SLUICE_SAMPLE_RATE": "0", "SLUICE_PLATFORM": "none"}, managedInstances)
		tr.start(t)
		start := func(id string) []buffer.Record {
			return []buffer.Record{{Time: time.Now().UTC(), Type: "platform.start", RequestID: id}}
		}
		ok, bad := lines("ok", 3), lines("bad", 3)
		tr.tel.posts <- start("ok")
		tr.tel.posts <- start("bad")
		tr.tel.posts <- []buffer.Record{ok[0], bad[0], ok[1], bad[1], ok[2], bad[2]}
		text := buffer.Record{Time: time.Now().UTC(), Type: "function", Message: "ERROR text line without a request id"}
		tr.tel.posts <- []buffer.Record{text}
		tr.tel.posts <- reportRec("bad", "error")
		tr.tel.posts <- reportRec("ok", "success")
		tr.shutdown(t)
		var got []string
		for _, r := range tr.sink.ofType("function") {
			got = append(got, r.RequestID+": "+r.Message)
		}
		want := []string{": ERROR text line without a request id", "bad: bad line 0", "bad: bad line 1", "bad: bad line 2"}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("archived lines (-want +got):\n%s", diff)
		}
	})
}

// A platform that refuses INVOKE without saying it is Managed Instances:
// sluice registers again for SHUTDOWN only and delivers eagerly.
func TestRunnerRegistrationRefusedInvoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		api := &refusingAPI{fakeAPI: newFakeAPI(), refuse: func(ev []EventType) bool { return slices.Contains(ev, Invoke) }}
		tr := newTestRunner(t, map[string]string{"SLUICE_BATCH_MAX_AGE": "1s", "SLUICE_BATCH_MIN_BYTES": "0"}, func(tr *testRunner) {
			tr.api = api.fakeAPI
			tr.r.API = api
			tr.r.Log = slog.New(slog.NewTextHandler(&logs, nil))
			eagerSinks(tr)
		})
		tr.start(t)
		if diff := cmp.Diff([][]EventType{{Invoke, Shutdown}, {Shutdown}}, api.attempts); diff != "" {
			t.Errorf("registrations (-want +got):\n%s", diff)
		}
		if !tr.r.Eager() {
			t.Error("Eager() = false after INVOKE was refused")
		}
		l := lines("r1", 5)
		tr.tel.posts <- l
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(tr.sink.messages()); n != 5 {
			t.Errorf("sink has %d lines after the age bound, want 5", n)
		}
		tr.shutdown(t)
		if !strings.Contains(logs.String(), "refused the registration") {
			t.Errorf("no error line says the registration was refused:\n%s", logs.String())
		}
	})
}

// Refused registrations and subscriptions never fail init: sluice is a
// no-op that serves /event/next until SHUTDOWN. Only when no registration
// is accepted at all does Init fail.
func TestRunnerStepsAside(t *testing.T) {
	refused := errors.New("subscribe telemetry: status 400: ValidationError")
	tests := []struct {
		name       string
		refuse     func([]EventType) bool
		subscribe  error
		wantInit   bool // Init returns an error
		wantEvents []EventType
		wantLog    string
	}{
		{name: "subscription refused", refuse: func([]EventType) bool { return false }, subscribe: refused,
			wantEvents: []EventType{Invoke, Shutdown}, wantLog: "refused the subscription"},
		{name: "only no events accepted", refuse: func(ev []EventType) bool { return len(ev) > 0 },
			wantEvents: []EventType{}, wantLog: "refused every registration with events"},
		{name: "nothing accepted", refuse: func([]EventType) bool { return true }, wantInit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				api := &refusingAPI{fakeAPI: newFakeAPI(), refuse: tt.refuse}
				tr := newTestRunner(t, nil, func(tr *testRunner) {
					tr.api = api.fakeAPI
					tr.r.API = api
					tr.r.Log = slog.New(slog.NewTextHandler(&logs, nil))
					tr.r.Subscribe = func(context.Context, string) error { return tt.subscribe }
				})
				err := tr.r.Init(context.Background())
				if (err != nil) != tt.wantInit {
					t.Fatalf("Init = %v, want error %v", err, tt.wantInit)
				}
				if len(tr.api.initErrors) != 0 {
					t.Errorf("reported init errors %q, want none", tr.api.initErrors)
				}
				if tt.wantInit {
					return
				}
				if diff := cmp.Diff(tt.wantEvents, tr.r.events); diff != "" {
					t.Errorf("registered events (-want +got):\n%s", diff)
				}
				if !strings.Contains(logs.String(), tt.wantLog) || !strings.Contains(logs.String(), "level=ERROR") {
					t.Errorf("log lacks an error line with %q:\n%s", tt.wantLog, logs.String())
				}
				ctx, cancel := context.WithCancel(context.Background())
				go func() { tr.done <- tr.r.Run(ctx) }()
				synctest.Wait()
				if tr.api.calls() != 1 {
					t.Fatalf("the no-op extension called /event/next %d times, want 1", tr.api.calls())
				}
				if slices.Contains(tt.wantEvents, Invoke) {
					tr.invoke(t, "r1", time.Second)
				}
				if slices.Contains(tt.wantEvents, Shutdown) {
					tr.shutdown(t)
				} else {
					cancel() // SIGTERM: the only way such an extension ends
					if err := <-tr.done; err != nil {
						t.Errorf("Run = %v", err)
					}
				}
				cancel()
			})
		})
	}
}
