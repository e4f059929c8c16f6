package sinks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/sluice-logs/sluice/buffer"
)

// Dir is a Sink that writes objects as files under a root directory, with
// the same keys as S3; it serves development and the local demo
// (file:///path). Like the S3 sink it never overwrites an object.
type Dir struct {
	root   string
	layout Layout
	closed atomic.Bool
}

// NewDir returns a sink writing under root; directories are created as
// needed.
func NewDir(root string, l Layout) *Dir {
	return &Dir{root: root, layout: l}
}

// Write stores b at root/KEY. A reader never sees a partial file: the data
// goes to a hidden temporary file in the same directory, is synced, and is
// then linked into place, which fails instead of replacing an existing file.
// An existing file means an earlier attempt stored the batch: success.
func (d *Dir) Write(ctx context.Context, b *buffer.Batch) error {
	key := d.layout.Key(b)
	if err := d.write(ctx, key, b.Data); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(d.root, filepath.FromSlash(key)), err)
	}
	return nil
}

func (d *Dir) write(ctx context.Context, key string, data []byte) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return errors.New("key leaves the root directory")
	}
	path := filepath.Join(d.root, filepath.FromSlash(key))
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The leading dot and the suffix keep globs such as *.json.zst from
	// picking up a file that is still being written.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the link, or on failure
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	// A hard link, unlike rename, fails when the target exists: two
	// writers of one key cannot replace each other's file.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(dir)
}

// syncDir makes the new directory entry durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close marks the sink closed; later writes fail. It is idempotent.
func (d *Dir) Close(context.Context) error {
	d.closed.Store(true)
	return nil
}
