package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/sinks"
)

func TestLinesBody(t *testing.T) {
	at := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	body := linesBody("flood0.63", 3, 10, at)
	var evs []struct {
		Time   string `json:"time"`
		Type   string `json:"type"`
		Record struct {
			Message string `json:"message"`
		} `json:"record"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		t.Fatalf("linesBody is not a JSON array of events: %v: %s", err, body)
	}
	var ids []string
	for _, e := range evs {
		if e.Type != "function" || e.Time != "2026-11-30T22:00:00.000Z" {
			t.Errorf("event type %q at %q, want function at 2026-11-30T22:00:00.000Z", e.Type, e.Time)
		}
		id, _ := sampleID(e.Record.Message)
		ids = append(ids, id)
	}
	if diff := cmp.Diff([]string{"flood0.63-0", "flood0.63-1", "flood0.63-2"}, ids); diff != "" {
		t.Errorf("line ids (-want +got):\n%s", diff)
	}
}

// The flood's bodies must stay under sluice's largest accepted body
// (2*maxBytes+1 MiB) or they measure the 413 path instead.
func TestFloodBodySize(t *testing.T) {
	const maxBody = 3 << 20
	n := len(linesBody("flood9.63", floodLines, floodPad, time.Now()))
	if n > maxBody || n < maxBody*9/10 {
		t.Errorf("a flood body is %d bytes, want just under %d", n, maxBody)
	}
}

func TestTotalsSum(t *testing.T) {
	line := func(bad int) string {
		return fmt.Sprintf(`{"level":"INFO","msg":"totals","lines":3,"s3":{"spill_entries_bad":%d}}`, bad)
	}
	for _, tc := range []struct {
		name    string
		lines   []string
		path    []string
		want    int64
		wantErr bool
	}{
		{"one process", []string{line(4)}, []string{"s3", "spill_entries_bad"}, 4, false},
		{"two processes", []string{line(1), line(2)}, []string{"s3", "spill_entries_bad"}, 3, false},
		{"top level", []string{line(0)}, []string{"lines"}, 3, false},
		{"renamed counter", []string{line(1)}, []string{"s3", "bad_entries"}, 0, true},
		{"not JSON", []string{"level=INFO msg=totals"}, []string{"lines"}, 0, true},
		{"no totals", nil, []string{"lines"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := totalsSum(tc.lines, tc.path...)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("totalsSum(%v) = %d, %v; want %d, error %v", tc.path, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestAnswerOf(t *testing.T) {
	for code, want := range map[int]answer{200: acked, 202: acked, 503: refused, 413: refused, 400: refused} {
		if got := answerOf(code); got != want {
			t.Errorf("answerOf(%d) = %v, want %v", code, got, want)
		}
	}
}

// The planted entries must look like spilled batches to sluice's own
// spill: the three regular files are adopted, the symlink and the FIFO
// set aside at once, and the valid batch is the oldest that loads.
func TestPlantSpill(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "spill")
	l := newLedger(&expect{})
	vanish, err := plantSpill(dir, work, l)
	if err != nil {
		t.Fatalf("plantSpill: %v", err)
	}
	if _, err := os.Stat(vanish); err != nil {
		t.Errorf("the entry to remove: %v", err)
	}
	s, err := sinks.OpenSpill(dir, 1<<20, "running")
	if err != nil {
		t.Fatalf("OpenSpill: %v", err)
	}
	if s.Len() != 3 || s.Bad() != 2 {
		t.Errorf("OpenSpill adopted %d entries and set %d aside, want 3 and 2", s.Len(), s.Bad())
	}
	b, aside, err := s.Oldest(t.Context())
	if err != nil || b == nil {
		t.Fatalf("Oldest = %v, %v", b, err)
	}
	if b.Env != "planted" || b.Lines != 100 || aside != 0 {
		t.Errorf("Oldest = env %q, %d lines, %d set aside; want the planted batch of 100 lines first", b.Env, b.Lines, aside)
	}
	want := []posted{
		{Prefix: "planted", N: 100, Answer: acked},
		{Prefix: "truncated", N: 100, Answer: refused},
		{Prefix: "vanished", N: 100, Answer: refused},
		{Prefix: "symlinked", N: 100, Answer: refused},
	}
	if diff := cmp.Diff(want, l.exp.bodies); diff != "" {
		t.Errorf("ledger bodies (-want +got):\n%s", diff)
	}
}

func TestOutputScannerSawShutdown(t *testing.T) {
	s := &outputScanner{ledger: newLedger(&expect{})}
	if _, err := s.Write([]byte(`{"level":"INFO","msg":"ready"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if !s.sawShutdown().IsZero() {
		t.Error("sawShutdown set before sluice logged shutdown")
	}
	before := time.Now()
	if _, err := s.Write([]byte(`{"level":"INFO","msg":"shutdown","reason":"spindown"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if at := s.sawShutdown(); at.Before(before) {
		t.Errorf("sawShutdown = %v, want at or after %v", at, before)
	}
}
