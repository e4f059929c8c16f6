package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPackReproducible packs the same bytes from two files that differ in
// everything but their content (directory, name, mode, time): the zips
// must be identical, and hold extensions/<name> at 0755 with the fixed time.
func TestPackReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := bytes.Repeat([]byte("\x7fELF sluice binary "), 4096)
	a := filepath.Join(dir, "a", "sluice")
	b := filepath.Join(dir, "b", "other-name")
	for i, p := range []string{a, b} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bin, os.FileMode(0o700+i*0o55)); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2030+i, 5, 6, 7, 8, 9, 0, time.UTC)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	za, zb := filepath.Join(dir, "a.zip"), filepath.Join(dir, "b.zip")
	if err := pack(za, "sluice", a); err != nil {
		t.Fatalf("pack a: %v", err)
	}
	if err := pack(zb, "sluice", b); err != nil {
		t.Fatalf("pack b: %v", err)
	}
	da, _ := os.ReadFile(za)
	db, _ := os.ReadFile(zb)
	if !bytes.Equal(da, db) {
		t.Fatalf("zips of the same binary differ (%d and %d bytes)", len(da), len(db))
	}
	if fi, err := os.Stat(za); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("zip file mode = %v, %v; want 0644", fi.Mode(), err)
	}

	zr, err := zip.NewReader(bytes.NewReader(da), int64(len(da)))
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Name string
		Mode os.FileMode
		Time time.Time
	}
	var got []entry
	for _, f := range zr.File {
		got = append(got, entry{f.Name, f.Mode(), f.Modified.UTC()})
		if f.Name == "extensions/sluice" {
			rc, _ := f.Open()
			content, _ := io.ReadAll(rc)
			if !bytes.Equal(content, bin) {
				t.Errorf("extensions/sluice holds %d bytes, want the binary's %d", len(content), len(bin))
			}
		}
	}
	fixed := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []entry{{"extensions/", os.ModeDir | 0o755, fixed}, {"extensions/sluice", 0o755, fixed}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("zip entries (-want +got):\n%s", d)
	}
}
