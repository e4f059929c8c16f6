package applog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestLines(t *testing.T) {
	now := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	a, b := New("req-1"), New("req-1")
	var all []byte
	jsonLines := 0
	for i := range 2000 {
		la, lb := a.Line(i, now, ""), b.Line(i, now, "")
		if !bytes.Equal(la, lb) {
			t.Fatalf("line %d differs between two generators of the same request:\n%s\n%s", i, la, lb)
		}
		if id := fmt.Sprintf("sample id=req-1-%d ", i); !bytes.Contains(la, []byte(id)) {
			t.Fatalf("line %d lacks %q: %s", i, id, la)
		}
		if json.Valid(la) {
			jsonLines++
		}
		all = append(append(all, la...), '\n')
	}
	if jsonLines < 1000 || jsonLines > 1600 {
		t.Errorf("%d of 2000 lines are JSON, want about 70%%", jsonLines)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	ratio := float64(len(all)) / float64(len(enc.EncodeAll(all, nil)))
	if ratio < 4 || ratio > 15 {
		t.Errorf("zstd ratio of the lines = %.1fx, want what real logs give (4..15x), not a repeated string's", ratio)
	}
	if l := New("req-2").Line(0, now, "ERROR"); !bytes.Contains(l, []byte("ERROR")) {
		t.Errorf("Line with level ERROR = %s, want it to carry ERROR", l)
	}
}

func TestDump(t *testing.T) {
	for _, n := range []int{200, 4096, 300_000} {
		d := Dump("req-9", n)
		if len(d) != n {
			t.Errorf("len(Dump(req-9, %d)) = %d", n, len(d))
		}
		if !bytes.HasPrefix(d, []byte("sample id=req-9-dump ")) {
			t.Errorf("Dump(req-9, %d) starts %q", n, d[:30])
		}
		if !bytes.Equal(d, Dump("req-9", n)) {
			t.Errorf("Dump(req-9, %d) is not reproducible", n)
		}
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	d := Dump("req-9", 300_000)
	if r := float64(len(d)) / float64(len(enc.EncodeAll(d, nil))); r > 15 {
		t.Errorf("zstd ratio of a dump = %.1fx, want under 15x", r)
	}
}
