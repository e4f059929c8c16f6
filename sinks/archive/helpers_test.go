package archive

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// day is the date the tests' archives are written on.
var day = time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)

// at returns day at h:m:s.ms.
func at(h, m, s, ms int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(s)*time.Second + time.Duration(ms)*time.Millisecond)
}

// counting is the S3 client with its LIST and GET calls counted.
type counting struct {
	c     *s3.Client
	lists atomic.Int64
	gets  atomic.Int64
	mu    sync.Mutex
	pref  []string // prefixes listed, in call order
}

func (c *counting) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c.lists.Add(1)
	c.mu.Lock()
	c.pref = append(c.pref, *in.Prefix)
	c.mu.Unlock()
	return c.c.ListObjectsV2(ctx, in, opts...)
}

func (c *counting) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.gets.Add(1)
	return c.c.GetObject(ctx, in, opts...)
}

func (c *counting) prefixes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.pref...)
}

// s3Store starts versitygw and returns a store over its bucket, through a
// counting client, and the raw client for writing.
func s3Store(t testing.TB) (*S3, *counting, *s3.Client) {
	t.Helper()
	srv := s3test.Start(t)
	raw := srv.Client(t)
	c := &counting{c: raw}
	return NewS3(c, srv.Bucket), c, raw
}

// writer writes records as one environment of one function does: through
// sluice's own Batcher into a sink.
type writer struct {
	t    testing.TB
	b    *buffer.Batcher
	sink sinks.Sink
	keys []string
	lay  sinks.Layout
}

func newWriter(t testing.TB, sink func(sinks.Layout) sinks.Sink, prefix, function, env string, lim buffer.Limits) *writer {
	lay := sinks.Layout{Prefix: prefix, Function: function, Env: env}
	return &writer{
		t:    t,
		b:    buffer.NewBatcher(buffer.Meta{Function: function, Version: "$LATEST"}, lim, nil),
		sink: sink(lay),
		lay:  lay,
	}
}

// add appends records; batches the Batcher seals are written at once.
func (w *writer) add(rs ...*buffer.Record) {
	w.t.Helper()
	for _, r := range rs {
		for _, b := range w.b.Add(r) {
			w.write(b)
		}
	}
}

// flush seals and writes the open batch.
func (w *writer) flush() {
	w.t.Helper()
	if b := w.b.Seal(); b != nil {
		w.write(b)
	}
}

func (w *writer) write(b *buffer.Batch) {
	w.t.Helper()
	if err := w.sink.Write(context.Background(), b); err != nil {
		w.t.Fatalf("write batch %d: %v", b.Seq, err)
	}
	w.keys = append(w.keys, w.lay.Key(b))
}

func s3Sink(c *s3.Client, bucket string) func(sinks.Layout) sinks.Sink {
	return func(l sinks.Layout) sinks.Sink {
		return sinks.NewS3(c, sinks.S3Options{Bucket: bucket, Layout: l})
	}
}

func dirSink(root string) func(sinks.Layout) sinks.Sink {
	return func(l sinks.Layout) sinks.Sink { return sinks.NewDir(root, l) }
}

// rec is a function log line.
func rec(t time.Time, reqID, level, msg string) *buffer.Record {
	return &buffer.Record{Time: t, Type: "function", RequestID: reqID, Level: level, Message: msg}
}

// collect reads q and returns each row's time and message, in the order
// read.
type got struct {
	Time time.Time
	Msg  string
}

func readAll(t testing.TB, r *Reader, q Query) []got {
	t.Helper()
	var out []got
	err := r.Read(context.Background(), q, func(l *Line) error {
		row, err := buffer.ParseRow(l.Row)
		if err != nil {
			return fmt.Errorf("row from %s: %w", l.Object.Key, err)
		}
		if !row.Time.Equal(l.Time) {
			return fmt.Errorf("Line.Time = %v, row time %v", l.Time, row.Time)
		}
		out = append(out, got{row.Time, row.Message})
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

// formats are the formats the batcher of this build writes.
func formats() []buffer.Format {
	fs := []buffer.Format{buffer.FormatNDJSONZstd, buffer.FormatNDJSONGzip}
	if buffer.ParquetBuilt {
		fs = append(fs, buffer.FormatParquet)
	}
	return fs
}
