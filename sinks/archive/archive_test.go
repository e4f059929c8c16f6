package archive

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
)

func TestParseKeyRoundTrip(t *testing.T) {
	start := at(4, 5, 6, 789)
	tests := []struct {
		name   string
		layout sinks.Layout
		batch  buffer.Batch
	}{
		{"plain", sinks.Layout{Function: "orders-api", Env: "a1b2c3d4e5f6"}, buffer.Batch{Seq: 1, Start: start, Ext: buffer.ExtNDJSONZstd}},
		{"prefix", sinks.Layout{Prefix: "logs/lambda", Function: "f", Env: "e"}, buffer.Batch{Seq: 123456789, Start: start, Ext: buffer.ExtNDJSONGzip}},
		{"escaped names, env with dashes", sinks.Layout{Function: "a/b c%", Env: "x-y-z/1"}, buffer.Batch{Seq: 7, Start: start, Ext: buffer.ExtParquet}},
		{"spilled batch keeps its env", sinks.Layout{Function: "f", Env: "now"}, buffer.Batch{Env: "before", Seq: 2, Start: start, Ext: buffer.ExtNDJSONZstd}},
		{"function=x in the prefix", sinks.Layout{Prefix: "function=x/dt=1/hour=2", Function: "f", Env: "e"}, buffer.Batch{Seq: 2, Start: start, Ext: buffer.ExtNDJSONZstd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.layout.Key(&tt.batch)
			got, err := ParseKey(key)
			if err != nil {
				t.Fatalf("ParseKey(%q): %v", key, err)
			}
			env := tt.layout.Env
			if tt.batch.Env != "" {
				env = tt.batch.Env
			}
			want := Object{
				Key:      key,
				Function: tt.layout.Function,
				Hour:     at(4, 0, 0, 0),
				Start:    at(4, 5, 6, 0),
				Env:      env,
				Seq:      tt.batch.Seq,
				Ext:      tt.batch.Ext,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseKey(%q) mismatch (-want +got):\n%s", key, diff)
			}
			if p := HourPrefix(tt.layout.Prefix, tt.layout.Function, start); !strings.HasPrefix(key, p) || strings.Contains(key[len(p):], "/") {
				t.Errorf("HourPrefix = %q, not the directory of %q", p, key)
			}
		})
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, key := range []string{
		"",
		"function=f/dt=2026-03-07/hour=04",
		"function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.json",
		"function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.csv",
		"function=f/dt=2026-03-07/hour=04/20260307T050506Z-e-00000001.json.zst", // start outside the hour
		"function=f/dt=2026-03-07/hour=4/20260307T040506Z-e-00000001.json.zst",
		"function=f/dt=2026-3-07/hour=04/20260307T040506Z-e-00000001.json.zst",
		"function=f/dt=2026-03-07/hour=24/20260307T040506Z-e-00000001.json.zst",
		"fn=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.json.zst",
		"function=f%4/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.json.zst",
		"function=f/dt=2026-03-07/hour=04/20260307T040506Z-00000001.json.zst",
		"function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-1.json.zst",
		"function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-0000000x.json.zst",
		"function=f/dt=2026-03-07/hour=04/.20260307T040506Z-e-00000001.json.zst.123.tmp",
	} {
		if o, err := ParseKey(key); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", key, o)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("logs/function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-00000001.json.zst")
	f.Add("function=a%2Fb/dt=2026-03-07/hour=04/20260307T040506Z-x-y%20-00000042.parquet")
	f.Add("function=f/dt=2026-03-07/hour=04/20260307T040506Z-e-1.json.gz")
	f.Fuzz(func(t *testing.T, key string) {
		o, err := ParseKey(key)
		if err != nil {
			return
		}
		// What parses is what the writer would name that way: same
		// partition, and a key the layout writes back identically when the
		// prefix, names and sequence are in their canonical form.
		if !o.Start.Truncate(time.Hour).Equal(o.Hour) {
			t.Fatalf("ParseKey(%q): start %v outside hour %v", key, o.Start, o.Hour)
		}
		prefix := ""
		if i := strings.LastIndex(key, "/function="); i >= 0 {
			prefix = key[:i]
		}
		l := sinks.Layout{Prefix: prefix, Function: o.Function, Env: o.Env}
		again := l.Key(&buffer.Batch{Seq: o.Seq, Start: o.Start, Ext: o.Ext})
		if again == key {
			return
		}
		o2, err := ParseKey(again)
		if err != nil {
			t.Fatalf("ParseKey(%q) ok, but its rewrite %q fails: %v", key, again, err)
		}
		o.Key, o2.Key = "", ""
		if diff := cmp.Diff(o, o2); diff != "" && strings.Trim(prefix, "/") == prefix {
			t.Fatalf("ParseKey(%q) and ParseKey(%q) differ:\n%s", key, again, diff)
		}
	})
}

func TestHours(t *testing.T) {
	tests := []struct {
		name       string
		start, end time.Time
		want       []time.Time
	}{
		{"inside one hour", at(9, 10, 0, 0), at(9, 20, 0, 0), []time.Time{at(9, 0, 0, 0)}},
		{"ends on the hour", at(9, 10, 0, 0), at(10, 0, 0, 0), []time.Time{at(9, 0, 0, 0)}},
		{"ends just after", at(9, 10, 0, 0), at(10, 0, 0, 1), []time.Time{at(9, 0, 0, 0), at(10, 0, 0, 0)}},
		{"across midnight", at(23, 30, 0, 0), at(24, 30, 0, 0), []time.Time{at(23, 0, 0, 0), at(24, 0, 0, 0)}},
		{"local times", at(9, 10, 0, 0).In(time.FixedZone("X", 5400)), at(10, 10, 0, 0).In(time.FixedZone("X", 5400)), []time.Time{at(9, 0, 0, 0), at(10, 0, 0, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Hours(tt.start, tt.end)); diff != "" {
				t.Errorf("Hours(%v, %v) mismatch (-want +got):\n%s", tt.start, tt.end, diff)
			}
		})
	}
}

func TestRowTime(t *testing.T) {
	row := func(ts string) []byte { return []byte(`{"time":"` + ts + `","type":"function"}`) }
	tests := []struct {
		row    []byte
		want   time.Time
		wantOK bool
	}{
		{row("2026-03-07T04:05:06.789Z"), at(4, 5, 6, 789), true},
		{buffer.AppendRow(nil, buffer.Meta{}, &buffer.Record{Time: at(23, 59, 59, 999)}), at(23, 59, 59, 999), true},
		{row("2026-02-30T04:05:06.789Z"), time.Time{}, false},
		{row("2026-13-07T04:05:06.789Z"), time.Time{}, false},
		{row("2026-03-07T24:05:06.789Z"), time.Time{}, false},
		{row("2026-03-07T04:05:06Z"), time.Time{}, false},
		{row("2026-03-07T04:05:06.789+01:00"), time.Time{}, false},
		{row("2026-03-07T04:05:06.7a9Z"), time.Time{}, false},
		{[]byte(`{"type":"function","time":"2026-03-07T04:05:06.789Z"}`), time.Time{}, false},
		{[]byte(`{"time":"2026-03-07T04:05:06.789Z`), time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := RowTime(tt.row)
		if ok != tt.wantOK || !got.Equal(tt.want) {
			t.Errorf("RowTime(%s) = %v, %v, want %v, %v", tt.row, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzRowTime checks the hand-written parser against time.Parse.
func FuzzRowTime(f *testing.F) {
	f.Add([]byte(`{"time":"2026-03-07T04:05:06.789Z","type":"x"}`))
	f.Add([]byte(`{"time":"0000-01-01T00:00:00.000Z"}`))
	f.Add([]byte(`{"time":"2024-02-29T23:59:59.999Z"}`))
	f.Fuzz(func(t *testing.T, row []byte) {
		got, ok := RowTime(row)
		if !ok {
			return
		}
		ts := string(row[9:33])
		want, err := time.Parse("2006-01-02T15:04:05.000Z", ts)
		if err != nil {
			t.Fatalf("RowTime(%q) = %v, but time.Parse fails: %v", row, got, err)
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("RowTime(%q) = %v, time.Parse = %v", row, got, want)
		}
	})
}
