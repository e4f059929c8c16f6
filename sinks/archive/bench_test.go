package archive

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// BenchmarkRead100 reads a window of 100 objects from versitygw over TLS:
// 1 MiB of NDJSON each (about 4,000 rows), written by the Batcher and the
// S3 sink, four environments taking turns. It reports the time to the
// first line and the lines per second of the whole window.
func BenchmarkRead100(b *testing.B) {
	srv := s3test.Start(b)
	raw := srv.Client(b)
	start := at(9, 0, 0, 0)
	var rowsPerWindow int
	for i := range 100 {
		body := logBody(b, "f", start.Add(time.Duration(i)*8*time.Second), 2*time.Millisecond, 1<<20)
		body.Seq = uint64(i/4 + 1)
		lay := sinks.Layout{Prefix: "logs", Function: "f", Env: fmt.Sprintf("env%d", i%4)}
		if err := sinks.NewS3(raw, sinks.S3Options{Bucket: srv.Bucket, Layout: lay}).Write(context.Background(), body); err != nil {
			b.Fatal(err)
		}
		rowsPerWindow += body.Records
	}
	r := &Reader{Store: NewS3(raw, srv.Bucket), Prefix: "logs"}
	q := Query{Functions: []string{"f"}, Start: start, End: start.Add(time.Hour)}
	var first, total time.Duration
	var rows int
	for b.Loop() {
		began := time.Now()
		n := 0
		err := r.Read(context.Background(), q, func(*Line) error {
			if n == 0 {
				first += time.Since(began)
			}
			n++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(began)
		if n != rowsPerWindow {
			b.Fatalf("%d rows, want %d", n, rowsPerWindow)
		}
		rows += n
	}
	b.ReportMetric(first.Seconds()*1000/float64(b.N), "ms/first-line")
	b.ReportMetric(float64(rows)/total.Seconds(), "lines/s")
	b.ReportMetric(float64(rowsPerWindow), "lines/window")
}
