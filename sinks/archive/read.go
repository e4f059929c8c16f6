package archive

import (
	"bufio"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-logs/sluice/buffer"
)

// Defaults of the Reader's bounds.
const (
	DefaultParallel = 8
	DefaultMaxOpen  = 32
	DefaultPoll     = 5 * time.Second
	// followLookback is how far back Follow keeps listing: the current
	// hour's prefix and the previous one, where a batch sealed just after
	// the hour turned (or held open by a frozen environment) lands.
	followLookback = time.Hour
)

// Query selects the rows of a window.
type Query struct {
	Functions []string
	Start     time.Time // inclusive
	End       time.Time // exclusive; zero means no end (Follow)
}

// Line is one archived row handed to the caller.
type Line struct {
	Time   time.Time
	Row    []byte  // the row as archived, without its newline; valid until the callback returns
	Object *Object // the object it came from
}

// Counters report a Reader's progress; they may be read while it runs.
type Counters struct {
	Lists    atomic.Int64 // prefixes listed
	Objects  atomic.Int64 // objects found in them
	Fetched  atomic.Int64 // objects downloaded
	Bytes    atomic.Int64 // bytes downloaded
	Rows     atomic.Int64 // rows handed to the caller
	Skipped  atomic.Int64 // objects that could not be read, wholly or in part
	Overlaps atomic.Int64 // times MaxOpen held back an object that overlapped the merge
}

// Reader reads a window of an archive in time order.
//
// Memory is bounded whatever the window: objects are listed hour by hour,
// downloaded at most Parallel at a time and at most 2*Parallel ahead of the
// merge, and decoded as they are merged, at most MaxOpen at a time, each
// holding its compressed bytes and one decoder window. An object is opened
// only when the merge reaches its start time, so objects that follow each
// other in time are read one after the other. When more than MaxOpen
// objects overlap in time (many environments writing at once), the merge
// lets the next one wait for a free slot: memory stays bounded and the
// overlapping rows come out less strictly ordered (counted in Overlaps).
type Reader struct {
	Store    Store
	Prefix   string // the key prefix, the path of s3://BUCKET/PREFIX
	Parallel int    // concurrent LISTs and GETs; 0 means DefaultParallel
	MaxOpen  int    // objects decoded at once; 0 means DefaultMaxOpen
	Poll     time.Duration
	Now      func() time.Time // nil means time.Now
	// Warn receives what is skipped: an unreadable object, a damaged row,
	// a key that sluice did not write. nil drops them.
	Warn     func(error)
	Counters *Counters // nil means none are kept
}

func (r *Reader) parallel() int {
	if r.Parallel > 0 {
		return r.Parallel
	}
	return DefaultParallel
}

func (r *Reader) maxOpen() int {
	if r.MaxOpen > 0 {
		return r.MaxOpen
	}
	return DefaultMaxOpen
}

func (r *Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reader) warn(err error) {
	if r.Warn != nil {
		r.Warn(err)
	}
}

// Read hands emit the rows of q's window, in time order, then returns. It
// lists one prefix per function per hour of the window. An error of emit
// ends the read and is returned. Objects that cannot be read are reported
// to Warn and counted, not returned; errors that make the whole read
// pointless (denied access, no such bucket, no credentials: see Fatal)
// are returned.
func (r *Reader) Read(ctx context.Context, q Query, emit func(*Line) error) error {
	if q.End.IsZero() || !q.Start.Before(q.End) {
		return fmt.Errorf("read %s: window [%s, %s) is empty", r.Store, q.Start.Format(time.RFC3339), q.End.Format(time.RFC3339))
	}
	if len(q.Functions) == 0 {
		return errors.New("read: no function named")
	}
	hours := Hours(q.Start, q.End)
	return r.run(ctx, q, func(ctx context.Context, out chan<- *Object) error {
		for _, h := range hours {
			if err := r.listHour(ctx, q.Functions, h, nil, out); err != nil {
				return err
			}
		}
		return nil
	}, emit)
}

// Follow is Read with no end: it reads from q.Start to now, then polls
// every Poll for objects it has not read yet and hands emit their rows
// (merged by time among themselves) until ctx ends, when it returns
// ctx.Err(). It never hands over an object twice. Each poll lists the
// current hour's prefix and the previous hour's of every function, page by
// page: at most 2 LISTs per function per poll when an hour fits in a page
// (1,000 objects), whatever the window.
func (r *Reader) Follow(ctx context.Context, q Query, emit func(*Line) error) error {
	if len(q.Functions) == 0 {
		return errors.New("follow: no function named")
	}
	q.End = time.Time{}
	poll := r.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	seen := map[time.Time]map[string]bool{} // hour -> keys already read
	fresh := func(o *Object) bool {
		keys := seen[o.Hour]
		if keys == nil {
			keys = map[string]bool{}
			seen[o.Hour] = keys
		}
		if keys[o.Key] {
			return false
		}
		keys[o.Key] = true
		return true
	}
	first := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		now := r.now()
		from := now.Add(-followLookback)
		if first || from.Before(q.Start) {
			from = q.Start
		}
		first = false
		hours := Hours(from, now.Add(time.Nanosecond))
		// Keys of hours no longer listed can never come back.
		for h := range seen {
			if len(hours) > 0 && h.Before(hours[0]) {
				delete(seen, h)
			}
		}
		err := r.run(ctx, q, func(ctx context.Context, out chan<- *Object) error {
			for _, h := range hours {
				if err := r.listHour(ctx, q.Functions, h, fresh, out); err != nil {
					return err
				}
			}
			return nil
		}, emit)
		if err != nil {
			return err
		}
		timer.Reset(poll)
	}
}

// listHour lists hour's prefix of every function, in parallel, and sends
// the objects that keep accepts (all when nil) to out, ordered by start.
func (r *Reader) listHour(ctx context.Context, functions []string, hour time.Time, keep func(*Object) bool, out chan<- *Object) error {
	lists := make([][]Entry, len(functions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.parallel())
	for i, fn := range functions {
		g.Go(func() error {
			es, err := r.Store.List(gctx, HourPrefix(r.Prefix, fn, hour))
			lists[i] = es
			if r.Counters != nil {
				r.Counters.Lists.Add(1)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var objs []*Object
	for _, es := range lists {
		for _, e := range es {
			o, err := ParseKey(e.Key)
			if err != nil {
				r.warn(fmt.Errorf("ignored: %w", err))
				continue
			}
			o.Size = e.Size
			if keep == nil || keep(&o) {
				objs = append(objs, &o)
			}
		}
	}
	slices.SortFunc(objs, func(a, b *Object) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Key, b.Key))
	})
	if r.Counters != nil {
		r.Counters.Objects.Add(int64(len(objs)))
	}
	for _, o := range objs {
		select {
		case out <- o:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// fetch is one object's download.
type fetch struct {
	obj  *Object
	done chan struct{} // closed when data or err is set
	data []byte
	err  error
}

// run lists with list, downloads what it lists ahead of the merge, and
// merges.
func (r *Reader) run(ctx context.Context, q Query, list func(context.Context, chan<- *Object) error, emit func(*Line) error) error {
	g, ctx := errgroup.WithContext(ctx)
	objs := make(chan *Object, 64)
	fetches := make(chan *fetch, r.parallel())
	g.Go(func() error {
		defer close(objs)
		return list(ctx, objs)
	})
	g.Go(func() error {
		defer close(fetches)
		return r.download(ctx, objs, fetches)
	})
	g.Go(func() error {
		err := r.merge(ctx, q, fetches, emit)
		if err != nil {
			return err
		}
		// Drain, so that download and list end; nothing is left to read
		// unless an error ended them, and g.Wait returns it.
		for range fetches {
		}
		return nil
	})
	return g.Wait()
}

// download starts the GETs of objs in order, at most Parallel at once, and
// passes each to out as it starts; out's capacity bounds how far downloads
// run ahead of the merge.
func (r *Reader) download(ctx context.Context, objs <-chan *Object, out chan<- *fetch) error {
	sem := make(chan struct{}, r.parallel())
	var wg sync.WaitGroup
	defer wg.Wait()
	for o := range objs {
		f := &fetch{obj: o, done: make(chan struct{})}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer close(f.done)
			defer func() { <-sem }()
			f.data, f.err = r.Store.Get(ctx, o.Key)
			if f.err == nil && r.Counters != nil {
				r.Counters.Fetched.Add(1)
				r.Counters.Bytes.Add(int64(len(f.data)))
			}
		})
		select {
		case out <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stream is an open object in the merge.
type stream struct {
	obj  *Object
	rc   io.ReadCloser // the object's NDJSON, decoded as it is read
	br   *bufio.Reader
	long []byte // assembles a row longer than br's buffer
	line []byte
	t    time.Time
	ord  int // open order: ties keep object order
	rows int // rows read so far
	bad  bool
}

type streams []*stream

func (h streams) Len() int { return len(h) }
func (h streams) Less(i, j int) bool {
	if c := h[i].t.Compare(h[j].t); c != 0 {
		return c < 0
	}
	return h[i].ord < h[j].ord
}
func (h streams) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *streams) Push(x any)   { *h = append(*h, x.(*stream)) }
func (h *streams) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// merge is a k-way merge by row time over the fetches, which come ordered
// by their objects' start. An object is opened once the merge reaches its
// start: its first row is at that second, so nothing it holds can be due
// earlier, except rows that arrived late at the writer, which come out
// where their object's order puts them.
func (r *Reader) merge(ctx context.Context, q Query, fetches <-chan *fetch, emit func(*Line) error) error {
	var h streams
	defer func() {
		for _, s := range h {
			s.stop()
		}
	}()
	maxOpen := r.maxOpen()
	var next *fetch
	pull := func() error {
		select {
		case f, ok := <-fetches:
			if !ok {
				f = nil
			}
			next = f
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := pull(); err != nil {
		return err
	}
	ord := 0
	held := false // MaxOpen holds back an overlapping object now
	var line Line
	for {
		for next != nil && (len(h) == 0 || (len(h) < maxOpen && !next.obj.Start.After(h[0].t))) {
			select {
			case <-next.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if s := r.open(next, ord); s != nil {
				ord++
				if r.advance(s, q) {
					heap.Push(&h, s)
				} else {
					s.stop()
				}
			} else if err := next.err; err != nil && Fatal(err) {
				return err
			}
			next.data = nil
			if err := pull(); err != nil {
				return err
			}
		}
		if len(h) == 0 {
			return nil
		}
		if over := next != nil && !next.obj.Start.After(h[0].t); over && !held && r.Counters != nil {
			r.Counters.Overlaps.Add(1)
			held = true
		} else if !over {
			held = false
		}
		s := h[0]
		line = Line{Time: s.t, Row: s.line, Object: s.obj}
		if err := emit(&line); err != nil {
			return err
		}
		if r.Counters != nil {
			r.Counters.Rows.Add(1)
		}
		if r.advance(s, q) {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
			s.stop()
		}
	}
}

// open starts decoding f's object, or reports why it cannot and returns nil.
func (r *Reader) open(f *fetch, ord int) *stream {
	if f.err != nil {
		if !Fatal(f.err) {
			r.skip(f.obj, f.err)
		}
		return nil
	}
	rc, err := buffer.NewReader(f.data)
	if err != nil {
		r.skip(f.obj, err)
		return nil
	}
	return &stream{obj: f.obj, rc: rc, br: bufio.NewReaderSize(rc, streamBuffer), ord: ord}
}

// streamBuffer is each open object's read buffer; longer rows are
// assembled in the stream's own slice.
const streamBuffer = 32 << 10

// stop releases the decoder.
func (s *stream) stop() {
	s.rc.Close()
	s.long = nil
}

// next returns the next row, without its newline; it is valid until the
// following call. io.EOF ends the object.
func (s *stream) next() ([]byte, error) {
	s.long = s.long[:0]
	for {
		line, err := s.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			s.long = append(s.long, line...)
			continue
		}
		if len(s.long) > 0 {
			s.long = append(s.long, line...)
			line = s.long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			return line[:n-1], nil
		}
		if len(line) > 0 {
			return line, nil // a last row without its newline
		}
		return nil, io.EOF
	}
}

func (r *Reader) skip(o *Object, err error) {
	if r.Counters != nil {
		r.Counters.Skipped.Add(1)
	}
	r.warn(fmt.Errorf("skipped %s: %w", o.Key, err))
}

// advance moves s to its next row inside the window; false at the end of
// the object or at damage, which is reported.
func (r *Reader) advance(s *stream, q Query) bool {
	for {
		line, err := s.next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			if !s.bad {
				s.bad = true
				if s.rows > 0 {
					err = fmt.Errorf("after %d rows: %w", s.rows, err)
				}
				r.skip(s.obj, err)
			}
			return false
		}
		s.rows++
		t, ok := RowTime(line)
		if !ok {
			t, ok = slowRowTime(line)
		}
		if !ok {
			if !s.bad {
				s.bad = true
				r.skip(s.obj, fmt.Errorf("row %d: no time: %.80q", s.rows, line))
			}
			continue
		}
		if t.Before(q.Start) || (!q.End.IsZero() && !t.Before(q.End)) {
			continue
		}
		s.line, s.t = line, t
		return true
	}
}

// slowRowTime reads the time of a row that is JSON but not in AppendRow's
// exact form.
func slowRowTime(line []byte) (time.Time, bool) {
	var v struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(line, &v) != nil || v.Time.IsZero() {
		return time.Time{}, false
	}
	return v.Time, true
}
