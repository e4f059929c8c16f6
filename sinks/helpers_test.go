package sinks

import (
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluice-logs/sluice/buffer"
)

var testStart = time.Date(2026, 3, 7, 4, 5, 6, 0, time.UTC)

// compress returns s as one zstd frame, as a sealed batch holds it.
func compress(t testing.TB, s string) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll([]byte(s), nil)
}

// testBatch returns a batch of the given NDJSON rows.
func testBatch(t testing.TB, seq uint64, rows ...string) *buffer.Batch {
	t.Helper()
	var sb strings.Builder
	for _, r := range rows {
		sb.WriteString(r)
		sb.WriteByte('\n')
	}
	raw := sb.String()
	return &buffer.Batch{
		Seq:      seq,
		Start:    testStart,
		Data:     compress(t, raw),
		Ext:      ".json.zst",
		Records:  len(rows),
		RawBytes: len(raw),
	}
}

// row returns a flat row like the ones the batcher writes.
func row(msg string) string {
	return `{"time":"2026-03-07T04:05:06.000Z","type":"function","function":"f","version":"$LATEST","message":"` + msg + `"}`
}

func rows(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = row(strings.Repeat("x", i))
	}
	return out
}
