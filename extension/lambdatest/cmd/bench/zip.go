package main

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
)

// zipSize is the size of the layer zip of bin, packed as layer/mkzip does
// (extensions/<name>, deflate).
func zipSize(bin string) (int64, error) {
	src, err := os.Open(bin)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	var n countWriter
	zw := zip.NewWriter(&n)
	w, err := zw.Create("extensions/" + filepath.Base(bin))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, src); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
