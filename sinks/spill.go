package sinks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// Spill keeps sealed batches on local disk (/tmp in Lambda) while a sink
// cannot take them, so that an outage costs disk, not memory. Each batch is
// one complete file (written, synced, then renamed into place) whose name
// carries everything needed to upload it again under the same key:
//
//	<env>-<seq>-<start unix ms>-<records>-<lines>-<raw bytes><ext>
//
// The total size is capped; past the cap the oldest files are handed back to
// the caller for the fallback.
//
// An entry that cannot be loaded (not a regular file, unreadable, or whose
// contents do not decode to the rows its name announces) is moved aside into
// the "bad" subdirectory, counted, and never uploaded: a truncated object
// would break every Athena query over its partition.
//
// A Spill is owned by one goroutine (the Durable that delivers through it);
// it is not safe for concurrent use.
type Spill struct {
	dir string
	max int64
	env string // the running environment, for batches that carry none

	files []spillFile // oldest first
	bytes int64
	raw   int64 // the spilled batches' uncompressed bytes
	bad   int64 // entries moved aside
}

type spillFile struct {
	name string
	size int64
	b    buffer.Batch // without Data
}

// badDir is the subdirectory unloadable entries are moved into. It is never
// adopted and never emptied by sluice: what is there needs a person.
const badDir = "bad"

// knownExts are the only file extensions a spilled batch can have; they
// become the object key's extension.
var knownExts = []string{".json.zst", ".json.gz", ".parquet"}

// OpenSpill opens (creating it) the spill directory, adopting the complete
// files an earlier process of the same sandbox left behind and deleting its
// partial ones. Only regular files whose names parse are adopted; anything
// else that looks like a spill entry is moved aside.
func OpenSpill(dir string, maxBytes int64, env string) (*Spill, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill dir %s: %w", dir, err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("spill dir %s: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("spill dir %s: not a directory (a symlink is not accepted)", dir)
	}
	// sluice deletes and adopts files here: the directory must be its own,
	// not one the function or another user can write to.
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("spill dir %s: owned by uid %d, not by sluice's uid %d", dir, st.Uid, os.Geteuid())
	}
	if info.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("spill dir %s: writable by others (mode %v): want a directory of sluice's own", dir, info.Mode().Perm())
	}
	s := &Spill{dir: dir, max: maxBytes, env: env}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spill dir %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		b, ok := parseSpillName(name)
		if !ok {
			continue // not ours: leave it alone
		}
		// ReadDir reports the entry's own type (Lstat): a symlink, a
		// directory or a FIFO named like a batch is not adopted.
		if !e.Type().IsRegular() {
			s.moveAside(name)
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone since ReadDir
		}
		s.files = append(s.files, spillFile{name: name, size: info.Size(), b: b})
		s.bytes += info.Size()
		s.raw += int64(b.RawBytes)
	}
	slices.SortFunc(s.files, func(a, b spillFile) int {
		if c := a.b.Start.Compare(b.b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.b.Seq, b.b.Seq)
	})
	return s, nil
}

// Put writes b to disk. When that takes the spill over its cap, the oldest
// batches are removed from disk and returned, for the fallback; entries that
// cannot be loaded on the way are moved aside and eviction goes on. An error
// means b itself is not on disk (the caller keeps it); evicted is valid
// either way.
func (s *Spill) Put(ctx context.Context, b *buffer.Batch) (evicted []*buffer.Batch, err error) {
	if !slices.Contains(knownExts, b.Ext) {
		return nil, fmt.Errorf("spill batch %d: unknown extension %q", b.Seq, b.Ext)
	}
	name := spillName(b, s.env)
	tmp, err := os.CreateTemp(s.dir, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("spill batch %d: %w", b.Seq, err)
	}
	_, err = tmp.Write(b.Data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("spill batch %d: %w", b.Seq, err)
	}

	meta := *b
	meta.Data = nil
	if meta.Env == "" {
		meta.Env = s.env
	}
	s.files = append(s.files, spillFile{name: name, size: int64(len(b.Data)), b: meta})
	s.bytes += int64(len(b.Data))
	s.raw += int64(b.RawBytes)
	for s.bytes > s.max && len(s.files) > 1 && ctx.Err() == nil {
		old, err := s.load(0)
		s.remove(0)
		if err != nil {
			continue // moved aside by load
		}
		evicted = append(evicted, old)
	}
	return evicted, nil
}

// Oldest returns the oldest spilled batch that loads, or nil when the spill
// is empty. Entries that do not load are moved aside on the way; their
// number is returned so the caller can count and report them. The batch
// stays on disk until Remove.
func (s *Spill) Oldest(ctx context.Context) (b *buffer.Batch, movedAside int, err error) {
	for len(s.files) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, movedAside, err
		}
		b, err := s.load(0)
		if err == nil {
			return b, movedAside, nil
		}
		s.forget(0)
		movedAside++
	}
	return nil, movedAside, nil
}

// Remove deletes the spilled copy of b once the sink has it.
func (s *Spill) Remove(b *buffer.Batch) {
	for i, f := range s.files {
		if f.b.Seq == b.Seq && f.b.Env == b.Env {
			s.remove(i)
			return
		}
	}
}

// Len is the number of spilled batches.
func (s *Spill) Len() int { return len(s.files) }

// Bytes is the total size of the spilled files.
func (s *Spill) Bytes() int64 { return s.bytes }

// RawBytes is the spilled batches' uncompressed NDJSON size, what writing
// them to the fallback would print.
func (s *Spill) RawBytes() int64 { return s.raw }

// Bad is the number of entries moved aside since OpenSpill.
func (s *Spill) Bad() int64 { return s.bad }

// ErrBadSpill marks a spilled entry that cannot be delivered as it is.
var ErrBadSpill = errors.New("spilled batch unusable")

// load reads and verifies entry i. An entry that fails is moved aside (its
// bookkeeping stays for the caller to drop).
func (s *Spill) load(i int) (*buffer.Batch, error) {
	f := s.files[i]
	data, err := readRegular(filepath.Join(s.dir, f.name), f.size)
	if err == nil {
		err = verify(&f.b, data)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.moveAside(f.name)
		} else {
			s.bad++ // vanished: counted like one moved aside
		}
		return nil, fmt.Errorf("load spilled batch %s: %w", f.name, err)
	}
	b := f.b
	b.Data = data
	return &b, nil
}

// readRegular reads a regular file without following a symlink and without
// blocking on a FIFO; it refuses anything much larger than expected.
func readRegular(path string, expected int64) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file (%s)", path, ErrBadSpill, info.Mode().Type())
	}
	if info.Size() > max(expected, 0)+(64<<20) {
		return nil, fmt.Errorf("%s: %w: %d bytes", path, ErrBadSpill, info.Size())
	}
	data := make([]byte, info.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// verify checks that data decodes whole to the rows b announces, so that a
// truncated or damaged file is never uploaded as an object.
func verify(b *buffer.Batch, data []byte) error {
	if got := buffer.DetectFormat(data).Ext(); got != b.Ext {
		return fmt.Errorf("%w: contents are %s, name says %s", ErrBadSpill, got, b.Ext)
	}
	rows, raw := 0, 0
	for line, err := range buffer.Rows(&buffer.Batch{Seq: b.Seq, Data: data}) {
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSpill, err)
		}
		rows++
		raw += len(line) + 1
	}
	if rows != b.Records || raw != b.RawBytes {
		return fmt.Errorf("%w: %d rows of %d bytes, name says %d rows of %d bytes", ErrBadSpill, rows, raw, b.Records, b.RawBytes)
	}
	return nil
}

func (s *Spill) moveAside(name string) {
	s.bad++
	bad := filepath.Join(s.dir, badDir)
	if err := os.Mkdir(bad, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		os.Remove(filepath.Join(s.dir, name))
		return
	}
	if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(bad, name)); err != nil {
		// Could not move it (e.g. a directory with that name is there):
		// remove the entry rather than meet it again.
		os.RemoveAll(filepath.Join(s.dir, name))
	}
}

// forget drops entry i's bookkeeping; its file was moved aside or is gone.
func (s *Spill) forget(i int) {
	s.bytes -= s.files[i].size
	s.raw -= int64(s.files[i].b.RawBytes)
	s.files = slices.Delete(s.files, i, i+1)
}

func (s *Spill) remove(i int) {
	os.Remove(filepath.Join(s.dir, s.files[i].name))
	s.forget(i)
}

func spillName(b *buffer.Batch, env string) string {
	if b.Env != "" {
		env = b.Env
	}
	return fmt.Sprintf("%s-%d-%d-%d-%d-%d%s", env, b.Seq, b.Start.UnixMilli(), b.Records, b.Lines, b.RawBytes, b.Ext)
}

func parseSpillName(name string) (buffer.Batch, bool) {
	ext := ""
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name, ext = name[:i], name[i:]
	}
	if !slices.Contains(knownExts, ext) {
		return buffer.Batch{}, false
	}
	parts := strings.Split(name, "-")
	if len(parts) != 6 || parts[0] == "" {
		return buffer.Batch{}, false
	}
	for i := 0; i < len(parts[0]); i++ {
		if c := parts[0][i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return buffer.Batch{}, false
		}
	}
	var n [5]int64
	for i, p := range parts[1:] {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return buffer.Batch{}, false
		}
		n[i] = v
	}
	return buffer.Batch{
		Env:      parts[0],
		Seq:      uint64(n[0]),
		Start:    time.UnixMilli(n[1]).UTC(),
		Records:  int(n[2]),
		Lines:    int(n[3]),
		RawBytes: int(n[4]),
		Ext:      ext,
	}, true
}
