package sinks

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

// files returns the files under root, relative path to content, hidden
// ones included.
func files(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(root, path)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDirWrite(t *testing.T) {
	root := t.TempDir()
	l := Layout{Prefix: "logs", Function: "fn", Env: "e"}
	d := NewDir(root, l)
	b1, b2 := testBatch(t, 1, rows(3)...), testBatch(t, 2, rows(7)...)
	for _, b := range []*buffer.Batch{b1, b2} {
		if err := d.Write(t.Context(), b); err != nil {
			t.Fatalf("Write(seq %d): %v", b.Seq, err)
		}
	}
	want := map[string][]byte{l.Key(b1): b1.Data, l.Key(b2): b2.Data}
	if diff := cmp.Diff(want, files(t, root)); diff != "" {
		t.Errorf("files mismatch (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(root, l.Key(b1)))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o644 {
		t.Errorf("file mode = %v, want 0644", perm)
	}
}

// A second write of a key succeeds and keeps the first file, as S3's
// conditional put does; nothing temporary is left behind.
func TestDirNoOverwrite(t *testing.T) {
	root := t.TempDir()
	l := Layout{Function: "fn", Env: "e"}
	d := NewDir(root, l)
	first := testBatch(t, 1, rows(3)...)
	if err := d.Write(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	second := testBatch(t, 1, rows(9)...)
	if err := d.Write(t.Context(), second); err != nil {
		t.Fatalf("second Write of seq 1: %v", err)
	}
	want := map[string][]byte{l.Key(first): first.Data}
	if diff := cmp.Diff(want, files(t, root)); diff != "" {
		t.Errorf("files mismatch (-want +got):\n%s", diff)
	}
}

// Concurrent writers of one key: all succeed, exactly one file wins whole,
// and no temporary file remains. Run with -race.
func TestDirConcurrentSameKey(t *testing.T) {
	root := t.TempDir()
	l := Layout{Function: "fn", Env: "e"}
	d := NewDir(root, l)
	const writers = 8
	datas := make([][]byte, writers)
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		b := testBatch(t, 1, rows(10+i)...)
		datas[i] = b.Data
		wg.Go(func() { errs[i] = d.Write(t.Context(), b) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got := files(t, root)
	if len(got) != 1 {
		t.Fatalf("%d files after concurrent writes, want 1: %v", len(got), keysOf(got))
	}
	content := got[l.Key(testBatch(t, 1))]
	if !containsBytes(datas, content) {
		t.Errorf("stored file (%d bytes) is none of the written batches", len(content))
	}
}

func TestDirErrors(t *testing.T) {
	t.Run("key leaves root", func(t *testing.T) {
		root := t.TempDir()
		d := NewDir(filepath.Join(root, "sub"), Layout{Prefix: "../../escape", Function: "fn", Env: "e"})
		err := d.Write(t.Context(), testBatch(t, 1, row("a")))
		if err == nil {
			t.Fatal("Write outside the root succeeded")
		}
		if got := files(t, root); len(got) != 0 {
			t.Errorf("files written: %v", keysOf(got))
		}
	})
	t.Run("root is a file", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(root, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := NewDir(root, Layout{Function: "fn", Env: "e"}).Write(t.Context(), testBatch(t, 1, row("a")))
		if err == nil || !strings.HasPrefix(err.Error(), "write "+root) {
			t.Errorf("Write under a file: err = %v, want one naming the path", err)
		}
	})
	t.Run("after close", func(t *testing.T) {
		root := t.TempDir()
		d := NewDir(root, Layout{Function: "fn", Env: "e"})
		for range 2 {
			if err := d.Close(t.Context()); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := d.Write(t.Context(), testBatch(t, 1, row("a"))); !errors.Is(err, ErrClosed) {
			t.Errorf("Write after Close: err = %v, want ErrClosed", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		root := t.TempDir()
		if err := NewDir(root, Layout{Function: "fn", Env: "e"}).Write(ctx, testBatch(t, 1, row("a"))); !errors.Is(err, context.Canceled) {
			t.Errorf("Write with a canceled ctx: err = %v, want context.Canceled", err)
		}
	})
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}
