package extension

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
)

// telemetryBody builds one Telemetry API POST of n events shaped like a
// busy function's: invocations of 20 lines (text and JSON log records, some
// carrying an e-mail address or an IP, some at ERROR) between their
// platform.start and platform.runtimeDone/report.
func telemetryBody(n int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	inv := 0
	for i := 0; i < n; inv++ {
		id := fmt.Sprintf("8f5c%04x-1b2c-4d3e-9f40-%012x", inv, inv)
		ts := t0.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		event := func(typ, record string) {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"time":%q,"type":%q,"record":%s}`, ts, typ, record)
			i++
		}
		event("platform.start", fmt.Sprintf(`{"requestId":%q,"version":"$LATEST"}`, id))
		for j := 0; j < 20 && i < n; j++ {
			switch {
			case j%4 == 3:
				event("function", fmt.Sprintf(`{"timestamp":%q,"level":"INFO","requestId":%q,"message":"order %d shipped to customer","orderId":"o-%d","latencyMs":%d}`, ts, id, j, inv*20+j, j*7))
			case j == 7:
				event("function", fmt.Sprintf(`"%s\t%s\tINFO\tsigned in user%d@example.com from 203.0.113.%d"`, ts, id, inv, j))
			case inv%10 == 9 && j == 11:
				event("function", fmt.Sprintf(`"%s\t%s\tERROR\tpayment declined for order %d"`, ts, id, inv))
			default:
				event("function", fmt.Sprintf(`"%s\t%s\tINFO\tprocessed item %d of batch %d in %d ms"`, ts, id, j, inv, j*3))
			}
		}
		event("platform.runtimeDone", fmt.Sprintf(`{"requestId":%q,"status":"success","metrics":{"durationMs":12.5,"producedBytes":2048}}`, id))
		event("platform.report", fmt.Sprintf(`{"requestId":%q,"status":"success","metrics":{"durationMs":13.1,"billedDurationMs":14,"memorySizeMB":128,"maxMemoryUsedMB":61}}`, id))
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// BenchmarkPipeline is the extension's whole per-line CPU cost: decode a
// telemetry POST, level, sample, redact, encode the rows and compress them.
// "off" is the default configuration; "policy" samples at 0.1 with level
// filtering; "all" adds every redaction preset; "redact-keep-all" redacts
// with nothing sampled out. Compare them as ratios.
func BenchmarkPipeline(b *testing.B) {
	red, err := buffer.NewRedactor([]string{"all"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sampled := buffer.DefaultPolicy()
	sampled.SampleRate, sampled.MinLevel = 0.1, buffer.LevelDebug
	for _, bc := range []struct {
		name   string
		policy buffer.Policy
		red    *buffer.Redactor
	}{
		{"off", buffer.DefaultPolicy(), nil},
		{"policy", sampled, nil},
		{"all", sampled, red},
		// Worst case for redaction: every line kept, so every line scanned.
		{"redact-keep-all", buffer.DefaultPolicy(), red},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := telemetryBody(1000)
			var dec telemetry.Decoder
			batcher := buffer.NewBatcher(buffer.Meta{Function: "bench", Version: "1"}, buffer.Limits{MaxBytes: 8 << 20, MaxAge: time.Hour}, nil)
			stager := buffer.NewStager(bc.policy, bc.red)
			emit := func(r *buffer.Record) { batcher.Add(r) }
			now := time.Now()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				recs, _ := dec.Decode(body, now)
				for i := range recs {
					stager.Add(&recs[i], emit)
				}
			}
			batcher.Seal()
		})
	}
}
