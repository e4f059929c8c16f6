package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/extension/telemetry"
)

func TestCorpusIsSeeded(t *testing.T) {
	a, b, c := newCorpus(1, 3000), newCorpus(1, 3000), newCorpus(2, 3000)
	if diff := cmp.Diff(a.lines, b.lines); diff != "" {
		t.Errorf("newCorpus(1) twice differs (-first +second):\n%s", diff)
	}
	if cmp.Equal(a.lines, c.lines) {
		t.Error("newCorpus(1) and newCorpus(2) are equal, want different lines")
	}
}

func TestCorpusMix(t *testing.T) {
	c := newCorpus(1, 20000)
	if len(c.lines) != 20000 {
		t.Fatalf("len(lines) = %d, want 20000", len(c.lines))
	}
	for _, kind := range []string{"plain", "lambda-text", "json", "stack-json", "stack-text", "big"} {
		if c.kinds[kind] == 0 {
			t.Errorf("no %s lines in %v", kind, c.kinds)
		}
	}
	big := 0
	for _, l := range c.lines {
		if len(l) >= 10_000 {
			big++
			if len(l) > 110_000 {
				t.Errorf("a line of %d bytes, want at most ~100 KB", len(l))
			}
		}
	}
	if big == 0 {
		t.Error("no line of 10 KB or more")
	}
}

// TestBodiesDecode checks that every line of the corpus reaches the
// decoder as one function record, in both log formats, with the platform
// events around each invocation.
func TestBodiesDecode(t *testing.T) {
	c := newCorpus(3, 2500)
	const perInvoke = 100
	bodies := c.bodies(perInvoke, 1<<20)
	dec := telemetry.NewDecoder()
	counts := map[string]int{}
	for i, b := range bodies {
		if len(b) > 1<<20+110_000 {
			t.Errorf("body %d is %d bytes, want at most maxBytes plus one line", i, len(b))
		}
		recs, malformed := dec.Decode(b, time.Now())
		if malformed {
			t.Fatalf("body %d does not decode", i)
		}
		for _, r := range recs {
			counts[r.Type]++
		}
	}
	invocations := (len(c.lines) + perInvoke - 1) / perInvoke
	want := map[string]int{"function": len(c.lines), "platform.start": invocations,
		"platform.runtimeDone": invocations, "platform.report": invocations}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("decoded record types (-want +got):\n%s", diff)
	}
}
