package buffer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var (
	benchWords = strings.Fields(`order orders customer payment processed received invalid retry cache hit miss
		user session token request response upstream timeout latency queue message batch item items
		inventory shipping warehouse price discount checkout cart product sku region eu-west-1 us-east-1
		success failure started finished validated rejected accepted pending stored loaded`)
	benchLevels = []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
)

// benchCorpus returns n records in the mix the benchmarks are about: 70%
// plain text lines of ~120 bytes, 25% JSON log records with ~300 bytes of
// other fields, 5% platform.report, grouped by invocation as Lambda sends
// them. Content varies like real logs: fixed templates, changing ids and
// numbers.
func benchCorpus(n int) []Record {
	rng := rand.New(rand.NewPCG(7, 8))
	words := func(k int) string {
		w := make([]string, k)
		for i := range w {
			w[i] = benchWords[rng.IntN(len(benchWords))]
		}
		return strings.Join(w, " ")
	}
	reqID := func() string {
		return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
			rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
	}
	at := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	id := reqID()
	recs := make([]Record, 0, n)
	for len(recs) < n {
		at = at.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
		r := Record{Time: at, RequestID: id, Type: "function"}
		switch p := rng.IntN(100); {
		case p < 70:
			r.Message = fmt.Sprintf("%s\t%s\tINFO\t%s %d in %.1f ms (%s)",
				at.Format("2006-01-02T15:04:05.000Z"), id, words(4), rng.IntN(100000), rng.Float64()*200, words(2))
		case p < 95:
			r.Level = benchLevels[rng.IntN(len(benchLevels))]
			r.Message = words(6)
			r.Fields = json.RawMessage(fmt.Sprintf(
				`{"logger":"app.%s","orderId":"o-%d","customerId":"c-%x","path":"/api/v1/%s/%d","method":"POST","statusCode":%d,`+
					`"latencyMs":%.2f,"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0","traceId":"1-%08x-%012x","items":%d}`,
				benchWords[rng.IntN(len(benchWords))], rng.IntN(1e7), rng.Uint32(), benchWords[rng.IntN(len(benchWords))],
				rng.IntN(1e5), []int{200, 200, 201, 404, 500}[rng.IntN(5)], rng.Float64()*500, rng.Uint32(), rng.Uint64()&0xffffffffffff, rng.IntN(20)))
		default:
			r.Type = "platform.report"
			r.Status = "success"
			d := float64(rng.IntN(300000)) / 100
			r.Metrics = &Metrics{DurationMs: d, BilledDurationMs: float64(int(d) + 1), MemorySizeMB: 128, MaxMemoryUsedMB: int64(60 + rng.IntN(40))}
			id = reqID() // the next invocation
		}
		recs = append(recs, r)
	}
	return recs
}

func BenchmarkAppendRow(b *testing.B) {
	recs := benchCorpus(2000)
	kinds := map[string][]Record{}
	for _, r := range recs {
		k := "text"
		switch {
		case r.Type == "platform.report":
			k = "report"
		case r.Fields != nil:
			k = "json"
		}
		kinds[k] = append(kinds[k], r)
	}
	kinds["mix"] = recs
	for _, name := range []string{"text", "json", "report", "mix"} {
		rs := kinds[name]
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			total := 0
			for i := range rs {
				total += len(AppendRow(buf[:0], testMeta, &rs[i]))
			}
			b.SetBytes(int64(total / len(rs)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				buf = AppendRow(buf[:0], testMeta, &rs[i])
				if i++; i == len(rs) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkBatcher measures the whole per-record cost of the hot path: row
// encoding, compression and sealing. One op is one record.
func BenchmarkBatcher(b *testing.B) {
	// Larger than a batch so that repeats cannot inflate the ratio.
	recs := benchCorpus(60000)
	total := 0
	for i := range recs {
		total += len(AppendRow(nil, testMeta, &recs[i]))
	}
	for _, f := range formats {
		for _, maxBytes := range []int{1 << 20, DefaultMaxBytes} {
			b.Run(fmt.Sprintf("%s/max=%dMiB", f, maxBytes>>20), func(b *testing.B) {
				benchBatcher(b, recs, total, f, maxBytes)
			})
		}
	}
}

func benchBatcher(b *testing.B, recs []Record, total int, f Format, maxBytes int) {
	bt := NewBatcher(testMeta, Limits{MaxBytes: maxBytes, Format: f}, fixedClock)
	b.SetBytes(int64(total / len(recs)))
	b.ReportAllocs()
	var raw, comp, batches int
	i := 0
	for b.Loop() {
		for _, s := range bt.Add(&recs[i]) {
			raw += s.RawBytes
			comp += len(s.Data)
			batches++
		}
		if i++; i == len(recs) {
			i = 0
		}
	}
	if s := bt.Seal(); s != nil {
		raw += s.RawBytes
		comp += len(s.Data)
		batches++
	}
	b.ReportMetric(float64(raw)/float64(comp), "ratio")
	b.ReportMetric(float64(batches), "batches")
}
