package telemetry

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
)

// TestDecodeContains holds the decoder to what a POST must not be able to
// do: make rows of the types sluice itself writes, or times whose
// partitions no reader finds.
func TestDecodeContains(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []buffer.Record
	}{
		{name: "sluice.stats is reserved",
			body: `[{"time":"2026-11-30T22:09:38.123Z","type":"sluice.stats","record":{"lines_seen":1000000}}]`,
			want: []buffer.Record{{Time: ts("2026-11-30T22:09:38.123Z"), Type: "unknown", Fields: raw(`{"type":"sluice.stats","record":{"lines_seen":1000000}}`)}}},
		{name: "sluice.malformed is reserved",
			body: `[{"time":"2026-11-30T22:09:38.123Z","type":"sluice.malformed","record":"x"}]`,
			want: []buffer.Record{{Time: ts("2026-11-30T22:09:38.123Z"), Type: "unknown", Fields: raw(`{"type":"sluice.malformed","record":"x"}`)}}},
		{name: "escaped sluice type is reserved",
			body: `[{"type":"sluice\u002etruncated"}]`,
			want: []buffer.Record{{Time: now, Type: "unknown", Fields: raw(`{"type":"sluice.truncated"}`)}}},
		{name: "far future time",
			body: `[{"time":"9999-12-31T23:59:59.999-23:59","type":"function","record":"late"}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "late", Fields: raw(`{"original_time":"9999-12-31T23:59:59.999-23:59"}`)}}},
		{name: "year zero",
			body: `[{"time":"0000-01-01T00:00:00+23:59","type":"platform.start","record":{"requestId":"r","version":"$LATEST"}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.start", RequestID: "r", Fields: raw(`{"original_time":"0000-01-01T00:00:00+23:59","version":"$LATEST"}`)}}},
		{name: "json timestamp fallback far past",
			body: `[{"type":"function","record":{"timestamp":"1969-07-20T20:17:40Z","message":"m","k":1}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "m", Fields: raw(`{"original_time":"1969-07-20T20:17:40Z","k":1}`)}}},
		{name: "level keys read in the one pass",
			body: `[{"type":"function","record":{"severity":"warning","message":"a"}},{"type":"function","record":{"level":50,"msg":"b"}},{"type":"function","record":{"Lvl":"x","levelname":"DEBUG"}}]`,
			want: []buffer.Record{
				{Time: now, Type: "function", Message: "a", Level: "WARN", Fields: raw(`{"severity":"warning"}`)},
				{Time: now, Type: "function", Level: "ERROR", Fields: raw(`{"level":50,"msg":"b"}`)},
				{Time: now, Type: "function", Level: "DEBUG", Fields: raw(`{"Lvl":"x","levelname":"DEBUG"}`)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			got, malformed := d.Decode([]byte(tt.body), now)
			if malformed {
				t.Fatalf("Decode(%s) malformed", tt.body)
			}
			if diff := cmp.Diff(tt.want, got, fieldsAsValues); diff != "" {
				t.Errorf("Decode(%s) (-want +got):\n%s", tt.body, diff)
			}
			for _, r := range got {
				row := buffer.AppendRow(nil, buffer.Meta{Function: "f"}, &r)
				if _, err := buffer.ParseRow(row); err != nil {
					t.Errorf("row %s does not read back: %v", row, err)
				}
			}
			ref, _ := refDecode([]byte(tt.body), now)
			if diff := cmp.Diff(tt.want, ref, fieldsAsValues); diff != "" {
				t.Errorf("reference (-want +got):\n%s", diff)
			}
		})
	}
}
