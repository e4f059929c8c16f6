package extension

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
)

func testBatch(seq uint64, size int) *buffer.Batch {
	return &buffer.Batch{
		Seq:      seq,
		Start:    time.Date(2026, 11, 30, 12, 0, int(seq), 0, time.UTC),
		Data:     bytes.Repeat([]byte{byte(seq)}, size),
		Ext:      ".json.zst",
		Records:  int(seq) * 3,
		Lines:    int(seq) * 2,
		RawBytes: size * 7,
	}
}

func TestSpillRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpill(dir, 1<<20, "envA")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if ev, err := s.Put(testBatch(seq, 100)); err != nil || len(ev) > 0 {
			t.Fatalf("Put(%d) = %v, %v; want no eviction", seq, ev, err)
		}
	}
	if s.Len() != 3 || s.Bytes() != 300 {
		t.Errorf("Len, Bytes = %d, %d, want 3, 300", s.Len(), s.Bytes())
	}
	got, err := s.Oldest()
	if err != nil {
		t.Fatal(err)
	}
	want := testBatch(1, 100)
	want.Env = "envA"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Oldest (-want +got):\n%s", diff)
	}
	s.Remove(got)
	if s.Len() != 2 {
		t.Errorf("Len after Remove = %d, want 2", s.Len())
	}

	// A later process of the same sandbox adopts the files, keeps their
	// environment (so their keys do not change), and drops partial writes.
	os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not ours"), 0o600)
	s2, err := OpenSpill(dir, 1<<20, "envB")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Len() != 2 {
		t.Fatalf("adopted %d batches, want 2", s2.Len())
	}
	b, _ := s2.Oldest()
	if b.Env != "envA" || b.Seq != 2 || b.Lines != 4 || b.RawBytes != 700 || !b.Start.Equal(testBatch(2, 0).Start) {
		t.Errorf("adopted batch = env %q seq %d lines %d raw %d start %v", b.Env, b.Seq, b.Lines, b.RawBytes, b.Start)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-123")); !os.IsNotExist(err) {
		t.Errorf("partial spill file left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Errorf("a file that is not a spilled batch was touched: %v", err)
	}
}

// Past the cap the oldest batches come back out, for the fallback.
func TestSpillCap(t *testing.T) {
	s, err := OpenSpill(t.TempDir(), 250, "e")
	if err != nil {
		t.Fatal(err)
	}
	var evicted []uint64
	for seq := uint64(1); seq <= 5; seq++ {
		ev, err := s.Put(testBatch(seq, 100))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ev {
			if len(b.Data) != 100 {
				t.Errorf("evicted batch %d has %d bytes, want its data", b.Seq, len(b.Data))
			}
			evicted = append(evicted, b.Seq)
		}
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, evicted); diff != "" {
		t.Errorf("evicted (-want +got):\n%s", diff)
	}
	if s.Bytes() > 250 {
		t.Errorf("spill holds %d bytes, over its cap of 250", s.Bytes())
	}
}

func TestBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	var b backoff
	if !b.ready(now) {
		t.Fatal("a fresh backoff is not ready")
	}
	prevCeiling := time.Duration(0)
	for i := 1; i <= 10; i++ {
		d := b.fail(now, true)
		ceiling := min(backoffBase<<(i-1), backoffMax)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("failure %d: wait %v, want within [%v, %v]", i, d, ceiling/2, ceiling)
		}
		if ceiling < prevCeiling {
			t.Errorf("failure %d: ceiling shrank", i)
		}
		prevCeiling = ceiling
		if b.ready(now) || !b.ready(now.Add(d)) {
			t.Errorf("failure %d: ready before or not after the wait", i)
		}
	}
	if d := b.fail(now, false); d != permanentBackoff || !b.permanent {
		t.Errorf("permanent failure: wait %v permanent %v, want %v true", d, b.permanent, permanentBackoff)
	}
}

func TestHint(t *testing.T) {
	for _, tt := range []struct{ err, want string }{
		{"put s3://b/k: api error AccessDenied: Access Denied", "s3:PutObject"},
		{"put s3://b/k: api error NoSuchBucket: nope", "does not exist"},
		{"put s3://b/k: api error InvalidAccessKeyId", "credentials"},
	} {
		if got := hint(fmt.Errorf("%s", tt.err)); !bytes.Contains([]byte(got), []byte(tt.want)) {
			t.Errorf("hint(%q) = %q, want it to mention %q", tt.err, got, tt.want)
		}
	}
}
