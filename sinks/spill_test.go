package sinks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

// spillBatch is a real sealed batch (so that the spill's verification
// passes) of n rows, about size bytes compressed.
func spillBatch(t testing.TB, seq uint64, n int) *buffer.Batch {
	t.Helper()
	rs := make([]string, n)
	for i := range rs {
		rs[i] = row(strings.Repeat(string(rune('a'+seq%26)), 20+i))
	}
	b := testBatch(t, seq, rs...)
	b.Start = testStart.Add(time.Duration(seq) * time.Second)
	b.Lines = n
	return b
}

func spillNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestSpillRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSpill(dir, 1<<20, "enva")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if ev, err := s.Put(ctx, spillBatch(t, seq, 5)); err != nil || len(ev) > 0 {
			t.Fatalf("Put(%d) = %v, %v; want no eviction", seq, ev, err)
		}
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
	got, bad, err := s.Oldest(ctx)
	if err != nil || bad != 0 {
		t.Fatalf("Oldest: %d moved aside, %v", bad, err)
	}
	want := spillBatch(t, 1, 5)
	want.Env = "enva"
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
	s2, err := OpenSpill(dir, 1<<20, "envb")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Len() != 2 {
		t.Fatalf("adopted %d batches, want 2", s2.Len())
	}
	b, _, _ := s2.Oldest(ctx)
	if b.Env != "enva" || b.Seq != 2 || b.Lines != 5 || !b.Start.Equal(spillBatch(t, 2, 5).Start) {
		t.Errorf("adopted batch = env %q seq %d lines %d start %v", b.Env, b.Seq, b.Lines, b.Start)
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
	ctx := context.Background()
	one := int64(len(spillBatch(t, 1, 5).Data))
	s, err := OpenSpill(t.TempDir(), 2*one+one/2, "e")
	if err != nil {
		t.Fatal(err)
	}
	var evicted []uint64
	for seq := uint64(1); seq <= 5; seq++ {
		ev, err := s.Put(ctx, spillBatch(t, seq, 5))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ev {
			if len(b.Data) == 0 {
				t.Errorf("evicted batch %d has no data", b.Seq)
			}
			evicted = append(evicted, b.Seq)
		}
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, evicted); diff != "" {
		t.Errorf("evicted (-want +got):\n%s", diff)
	}
	if s.Bytes() > 2*one+one/2 {
		t.Errorf("spill holds %d bytes, over its cap of %d", s.Bytes(), 2*one+one/2)
	}
}

// Entries that cannot be loaded are moved aside and counted, once each;
// nothing spins on them and nothing blocks (defect: a symlink made the
// replay loop log ~50,000 errors a second, a FIFO blocked ReadFile).
func TestSpillBadEntries(t *testing.T) {
	ctx := context.Background()
	good := spillBatch(t, 9, 5)
	goodName := spillName(good, "e")
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // makes one bad entry named like seq 1
	}{
		{"symlink to a directory", func(t *testing.T, dir string) {
			os.Symlink("/etc", filepath.Join(dir, "e-1-1772856307000-5-5-700.json.zst"))
		}},
		{"symlink to a good file", func(t *testing.T, dir string) {
			other := t.TempDir()
			os.WriteFile(filepath.Join(other, "x"), good.Data, 0o600)
			os.Symlink(filepath.Join(other, "x"), filepath.Join(dir, spillName(&buffer.Batch{Seq: 1, Start: testStart, Records: good.Records, Lines: good.Lines, RawBytes: good.RawBytes, Ext: good.Ext}, "e")))
		}},
		{"directory", func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "e-1-1772856307000-5-5-700.json.zst"), 0o700)
		}},
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "e-1-1772856307000-5-5-700.json.zst"), 0o600); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
		{"truncated zstd", func(t *testing.T, dir string) {
			b := spillBatch(t, 1, 50)
			os.WriteFile(filepath.Join(dir, spillName(b, "e")), b.Data[:len(b.Data)/2], 0o600)
		}},
		{"rows do not match the name", func(t *testing.T, dir string) {
			b := spillBatch(t, 1, 50)
			b2 := *b
			b2.Records = 7
			os.WriteFile(filepath.Join(dir, spillName(&b2, "e")), b.Data, 0o600)
		}},
		{"unreadable", func(t *testing.T, dir string) {
			b := spillBatch(t, 1, 5)
			p := filepath.Join(dir, spillName(b, "e"))
			os.WriteFile(p, []byte("not zstd at all"), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			os.WriteFile(filepath.Join(dir, goodName), good.Data, 0o600)
			s, err := OpenSpill(dir, 1<<30, "e")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var got *buffer.Batch
			var bad int
			go func() {
				defer close(done)
				got, bad, err = s.Oldest(ctx)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Oldest blocked on a bad entry")
			}
			if err != nil || got == nil || got.Seq != 9 {
				t.Fatalf("Oldest = %v, %v; want the good batch 9 after the bad entry", got, err)
			}
			if s.Bad() != 1 {
				t.Errorf("Bad = %d, want 1 (moved aside: %d)", s.Bad(), bad)
			}
			if s.Len() != 1 {
				t.Errorf("Len = %d, want 1: the bad entry must not stay", s.Len())
			}
			s2, _ := OpenSpill(dir, 1<<30, "e")
			if s2.Len() != 1 {
				t.Errorf("a later process adopts %d entries (%v), want only the good one", s2.Len(), spillNames(t, dir))
			}
		})
	}
}

// A spilled file that vanished does not stop eviction, and Put does not
// fail for it (defect: Put returned early after writing the new file, the
// caller also sent the batch to stdout, and the spill grew past its cap).
func TestSpillVanishedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	one := int64(len(spillBatch(t, 1, 5).Data))
	limit := 2*one + one/2
	s, _ := OpenSpill(dir, limit, "e")
	s.Put(ctx, spillBatch(t, 1, 5))
	s.Put(ctx, spillBatch(t, 2, 5))
	os.Remove(filepath.Join(dir, spillName(spillBatch(t, 1, 5), "e")))
	for seq := uint64(3); seq <= 6; seq++ {
		if _, err := s.Put(ctx, spillBatch(t, seq, 5)); err != nil {
			t.Errorf("Put(%d) = %v; the batch is on disk and must not go to the fallback too", seq, err)
		}
		if s.Bytes() > limit {
			t.Errorf("after Put(%d) the spill holds %d bytes, cap %d", seq, s.Bytes(), limit)
		}
	}
}

// Only known extensions are adopted or written: the suffix becomes the
// object key's extension.
func TestSpillUnknownExtension(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "e-9-1764504000000-3-2-700.exe"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "e-9-1764504000000-3-2-700.json.zst.sh"), []byte("x"), 0o600)
	s, err := OpenSpill(dir, 1<<20, "e")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Errorf("adopted %d files with unknown extensions", s.Len())
	}
	b := spillBatch(t, 1, 3)
	b.Ext = ".sh"
	if _, err := s.Put(context.Background(), b); err == nil {
		t.Error("Put of a batch with extension .sh succeeded")
	}
}

func TestSpillDirSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "spill")
	os.Symlink(dir, link)
	if _, err := OpenSpill(link, 1<<20, "e"); err == nil {
		t.Error("OpenSpill followed a symlinked directory")
	}
}

// A directory others can write to is not adopted: sluice deletes and
// uploads what it finds there.
func TestSpillDirNotOwn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if _, err := OpenSpill(dir, 1<<20, "e"); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("OpenSpill of a world-writable directory = %v, want a refusal", err)
	}
}

func FuzzParseSpillName(f *testing.F) {
	for _, s := range []string{"e-1-1764504000000-3-2-700.json.zst", "a-0-0-0-0-0.parquet", "e-1-2-3-4-5.json.gz.x", "../x-1-2-3-4-5.json.gz", "e--1-2-3-4-5.json.gz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		b, ok := parseSpillName(name)
		if !ok {
			return
		}
		if strings.ContainsAny(b.Env, "/.-") || b.Env == "" {
			t.Fatalf("parseSpillName(%q) accepted env %q", name, b.Env)
		}
		if got := spillName(&b, ""); got != name && !strings.HasPrefix(name, b.Env+"-") {
			t.Fatalf("spillName(parseSpillName(%q)) = %q", name, got)
		}
	})
}
