package extension

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// Spill keeps sealed batches on local disk (/tmp in Lambda) while the sink
// cannot take them, so that an outage costs disk, not memory. Each batch is
// one complete file (written, synced, then renamed into place) whose name
// carries everything needed to upload it again under the same key:
//
//	<env>-<seq>-<start unix ms>-<records>-<lines>-<raw bytes><ext>
//
// The total size is capped; past the cap the oldest files are handed back to
// the caller for the fallback. Spill is safe for concurrent use: the pipeline
// spills batches evicted at the memory cap while the run loop replays.
type Spill struct {
	dir string
	max int64
	env string // the running environment, for batches that carry none

	mu    sync.Mutex
	files []spillFile // oldest first
	bytes int64
}

type spillFile struct {
	name string
	size int64
	b    buffer.Batch // without Data
}

// OpenSpill opens (creating it) the spill directory, adopting the complete
// files an earlier process of the same sandbox left behind and deleting its
// partial ones.
func OpenSpill(dir string, maxBytes int64, env string) (*Spill, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill dir %s: %w", dir, err)
	}
	s := &Spill{dir: dir, max: maxBytes, env: env}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spill dir %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		b, ok := parseSpillName(e.Name())
		info, err := e.Info()
		if !ok || err != nil {
			continue // not ours: leave it alone
		}
		s.files = append(s.files, spillFile{name: e.Name(), size: info.Size(), b: b})
		s.bytes += info.Size()
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
// batches are removed from disk and returned, for the fallback.
func (s *Spill) Put(b *buffer.Batch) (evicted []*buffer.Batch, err error) {
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

	s.mu.Lock()
	defer s.mu.Unlock()
	meta := *b
	meta.Data = nil
	if meta.Env == "" {
		meta.Env = s.env
	}
	s.files = append(s.files, spillFile{name: name, size: int64(len(b.Data)), b: meta})
	s.bytes += int64(len(b.Data))
	for s.bytes > s.max && len(s.files) > 1 {
		old, err := s.loadLocked(0)
		if err != nil {
			return evicted, err
		}
		s.removeLocked(0)
		evicted = append(evicted, old)
	}
	return evicted, nil
}

// Oldest returns the oldest spilled batch, or nil when the spill is empty.
// It stays on disk until Remove.
func (s *Spill) Oldest() (*buffer.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.files) == 0 {
		return nil, nil
	}
	b, err := s.loadLocked(0)
	if errors.Is(err, fs.ErrNotExist) {
		// Gone from under us (someone cleaned /tmp): forget it, loudly.
		s.removeLocked(0)
		return nil, err
	}
	return b, err
}

// Remove deletes the spilled copy of b once the sink has it.
func (s *Spill) Remove(b *buffer.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.files {
		if f.b.Seq == b.Seq && f.b.Env == b.Env {
			s.removeLocked(i)
			return
		}
	}
}

// Len and Bytes say how much is spilled.
func (s *Spill) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// Bytes is the total size of the spilled files.
func (s *Spill) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

func (s *Spill) loadLocked(i int) (*buffer.Batch, error) {
	f := s.files[i]
	data, err := os.ReadFile(filepath.Join(s.dir, f.name))
	if err != nil {
		return nil, fmt.Errorf("read spilled batch %s: %w", f.name, err)
	}
	b := f.b
	b.Data = data
	return &b, nil
}

func (s *Spill) removeLocked(i int) {
	f := s.files[i]
	os.Remove(filepath.Join(s.dir, f.name))
	s.bytes -= f.size
	s.files = slices.Delete(s.files, i, i+1)
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
	parts := strings.Split(name, "-")
	if len(parts) != 6 || ext == "" || parts[0] == "" {
		return buffer.Batch{}, false
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
