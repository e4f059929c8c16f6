// Command mkzip packs an extension binary into a Lambda layer zip, as
// extensions/<name> with mode 0755. The zip depends only on the binary's
// bytes and the name: entries in a fixed order, a fixed timestamp and fixed
// modes (whatever the file's own), no comment, so that `make layer` in two
// clones of the same commit gives byte-identical zips.
//
//	go run ./layer/mkzip -o layer/dist/sluice-arm64.zip -name sluice layer/build/arm64/sluice
package main

import (
	"archive/zip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

func main() {
	out := flag.String("o", "", "zip file to write")
	name := flag.String("name", "sluice", "extension name (file name under extensions/)")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkzip -o OUT.zip [-name NAME] BINARY")
		os.Exit(2)
	}
	if err := pack(*out, *name, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}

func pack(out, name, bin string) error {
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkzip-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())

	zw := zip.NewWriter(tmp)
	modified := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, dir := range []string{"extensions/"} {
		h := &zip.FileHeader{Name: dir, Method: zip.Store, Modified: modified}
		h.SetMode(os.ModeDir | 0o755)
		if _, err := zw.CreateHeader(h); err != nil {
			return err
		}
	}
	h := &zip.FileHeader{Name: "extensions/" + name, Method: zip.Deflate, Modified: modified}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("pack %s: %w", bin, err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; a release artifact is world-readable.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
