package sinks

import (
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

func TestLayoutKey(t *testing.T) {
	start := time.Date(2026, 3, 7, 4, 5, 6, 789e6, time.UTC)
	tests := []struct {
		name   string
		layout Layout
		batch  buffer.Batch
		want   string
	}{
		{
			name:   "no prefix",
			layout: Layout{Function: "my-func_1", Env: "e1"},
			batch:  buffer.Batch{Seq: 1, Start: start, Ext: ".json.zst"},
			want:   "function=my-func_1/dt=2026-03-07/hour=04/20260307T040506Z-e1-00000001.json.zst",
		},
		{
			name:   "prefix",
			layout: Layout{Prefix: "logs", Function: "f", Env: "e"},
			batch:  buffer.Batch{Seq: 42, Start: start, Ext: ".json.zst"},
			want:   "logs/function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000042.json.zst",
		},
		{
			name:   "batch of an earlier environment keeps its env",
			layout: Layout{Prefix: "logs", Function: "f", Env: "now"},
			batch:  buffer.Batch{Env: "before", Seq: 42, Start: start, Ext: ".json.zst"},
			want:   "logs/function=f/dt=2026-03-07/hour=04/20260307T040506Z-before-00000042.json.zst",
		},
		{
			name:   "prefix slashes trimmed",
			layout: Layout{Prefix: "/a/b//", Function: "f", Env: "e"},
			batch:  buffer.Batch{Seq: 3, Start: start, Ext: ".json.zst"},
			want:   "a/b/function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000003.json.zst",
		},
		{
			name:   "slash-only prefix is no prefix",
			layout: Layout{Prefix: "/", Function: "f", Env: "e"},
			batch:  buffer.Batch{Seq: 3, Start: start, Ext: ".json.zst"},
			want:   "function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000003.json.zst",
		},
		{
			name:   "start converted to UTC",
			layout: Layout{Function: "f", Env: "e"},
			// 23:30 on the 31st in UTC-5 is 04:30 on the 1st in UTC.
			batch: buffer.Batch{Seq: 7, Start: time.Date(2025, 12, 31, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)), Ext: ".json.zst"},
			want:  "function=f/dt=2026-01-01/hour=04/20260101T043000Z-e-00000007.json.zst",
		},
		{
			name:   "midnight hour zero-padded",
			layout: Layout{Function: "f", Env: "e"},
			batch:  buffer.Batch{Seq: 0, Start: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Ext: ".json.gz"},
			want:   "function=f/dt=2026-01-02/hour=00/20260102T000000Z-e-00000000.json.gz",
		},
		{
			name:   "seq wider than the padding",
			layout: Layout{Function: "f", Env: "e"},
			batch:  buffer.Batch{Seq: 123456789, Start: start, Ext: ".json.zst"},
			want:   "function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-123456789.json.zst",
		},
		{
			name:   "unsafe bytes escaped",
			layout: Layout{Function: "a/b=c d%", Env: "../x"},
			batch:  buffer.Batch{Seq: 1, Start: start, Ext: ".json.zst"},
			want:   "function=a%2Fb%3Dc%20d%25/dt=2026-03-07/hour=04/20260307T040506Z-..%2Fx-00000001.json.zst",
		},
		{
			name:   "non-ASCII escaped byte by byte",
			layout: Layout{Function: "é", Env: "e"},
			batch:  buffer.Batch{Seq: 1, Start: start, Ext: ".json.zst"},
			want:   "function=%C3%A9/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.json.zst",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.layout.Key(&tt.batch); got != tt.want {
				t.Errorf("Key() = %q, want %q", got, tt.want)
			}
		})
	}
}

// An environment's keys sort in the order its batches were written.
func TestLayoutKeySorts(t *testing.T) {
	l := Layout{Prefix: "p", Function: "f", Env: "env"}
	start := time.Date(2026, 3, 7, 4, 5, 6, 0, time.UTC)
	var keys []string
	for seq := uint64(1); seq <= 120; seq++ {
		keys = append(keys, l.Key(&buffer.Batch{Seq: seq, Start: start, Ext: ".json.zst"}))
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	if diff := cmp.Diff(keys, sorted); diff != "" {
		t.Errorf("keys do not sort by seq (-written +sorted):\n%s", diff)
	}
}
