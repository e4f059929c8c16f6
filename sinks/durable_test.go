package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

var quietLog = slog.New(slog.DiscardHandler)

// fakeSink records what it accepted; fail decides each attempt's outcome
// and delay how long it takes (honouring ctx, as the SDK does).
type fakeSink struct {
	mu       sync.Mutex
	accepted []uint64
	attempts int
	fail     func(attempt int, b *buffer.Batch) error
	delay    time.Duration
	slowDown time.Duration // an extra delay that ignores ctx (a slow writer)
	// waitHurry makes each Write wait an hour, as in a retry wait of its
	// own, until its upload is hurried (see hurry).
	waitHurry bool
}

func (f *fakeSink) Write(ctx context.Context, b *buffer.Batch) error {
	f.mu.Lock()
	f.attempts++
	n := f.attempts
	fail, delay, slow, waitHurry := f.fail, f.delay, f.slowDown, f.waitHurry
	f.mu.Unlock()
	if slow > 0 {
		time.Sleep(slow)
	}
	if waitHurry {
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		select {
		case <-t.C:
		case <-hurry(ctx):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(n, b); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepted = append(f.accepted, b.Seq)
	return nil
}

func (f *fakeSink) Close(context.Context) error { return nil }

// tries returns how many Writes the sink was given.
func (f *fakeSink) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

func (f *fakeSink) got() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.accepted)
}

var (
	errRetryable = errors.New("503 slow down")
	errRefused   = errors.New("403 access denied")
)

func classify(err error) bool {
	return errors.Is(err, errRetryable) || errors.Is(err, context.DeadlineExceeded)
}

type harness struct {
	d        *Durable
	primary  *fakeSink
	fallback *fakeSink
	spill    *Spill
	cancel   context.CancelFunc
}

func newHarness(t *testing.T, spill bool, o DurableOptions) *harness {
	t.Helper()
	h := &harness{primary: &fakeSink{}, fallback: &fakeSink{}}
	if spill {
		s, err := OpenSpill(t.TempDir(), 1<<30, "e")
		if err != nil {
			t.Fatal(err)
		}
		h.spill = s
		o.Spill = s
	}
	o.Fallback = h.fallback
	o.Retryable = classify
	o.Log = quietLog
	h.d = NewDurable(h.primary, o)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go h.d.Run(ctx)
	return h
}

func (h *harness) write(t *testing.T, seqs ...uint64) {
	t.Helper()
	for _, s := range seqs {
		if err := h.d.Write(context.Background(), spillBatch(t, s, 3)); err != nil {
			t.Fatalf("Write(%d) = %v", s, err)
		}
	}
}

func (h *harness) deliver(d time.Duration) DeliverResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return h.d.Deliver(ctx, nil)
}

// every checks that each written batch ended in exactly one place.
func every(t *testing.T, h *harness, n uint64) {
	t.Helper()
	seen := map[uint64]string{}
	for _, s := range h.primary.got() {
		if w, dup := seen[s]; dup {
			t.Errorf("batch %d in the sink and in %s", s, w)
		}
		seen[s] = "sink"
	}
	for _, s := range h.fallback.got() {
		if w, dup := seen[s]; dup {
			t.Errorf("batch %d in the fallback and in %s", s, w)
		}
		seen[s] = "fallback"
	}
	for s := uint64(1); s <= n; s++ {
		if _, ok := seen[s]; !ok {
			t.Errorf("batch %d is nowhere: lost (sink %v, fallback %v)", s, h.primary.got(), h.fallback.got())
		}
	}
}

func TestDurableDeliversInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{})
		h.write(t, 1, 2, 3)
		if r := h.deliver(time.Second); r.Uploaded != 3 || r.Waiting != 0 || r.Failing {
			t.Errorf("Deliver = %+v, want 3 uploaded, none waiting", r)
		}
		if diff := cmp.Diff([]uint64{1, 2, 3}, h.primary.got()); diff != "" {
			t.Errorf("sink got (-want +got):\n%s", diff)
		}
		if err := h.d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := h.d.Stats()
		if st.Uploaded != 3 || st.UploadedLines != 9 || st.Fallback != 0 {
			t.Errorf("Stats = %+v", st)
		}
	})
}

// A retryable failure backs the sink off: the batch and those written
// meanwhile go to the spill, and a later window replays them oldest first.
func TestDurableRetryThenReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{})
		h.primary.fail = func(n int, _ *buffer.Batch) error {
			if n <= 1 {
				return errRetryable
			}
			return nil
		}
		h.write(t, 1, 2)
		r := h.deliver(time.Second)
		if !r.Failing || r.Uploaded != 0 || r.Waiting != 2 {
			t.Errorf("Deliver during failure = %+v, want failing with 2 waiting", r)
		}
		if h.spill.Len() != 2 {
			t.Errorf("spill holds %d batches while backing off, want 2", h.spill.Len())
		}
		h.write(t, 3) // while backing off: straight to disk
		if h.spill.Len() != 3 {
			t.Errorf("spill holds %d batches, want 3", h.spill.Len())
		}
		if r := h.deliver(time.Second); r.Uploaded != 0 || !r.Failing {
			t.Errorf("Deliver while backing off = %+v, want nothing tried", r)
		}
		time.Sleep(BackoffBase) // the first backoff is at most BackoffBase
		if r := h.deliver(time.Second); r.Uploaded != 3 {
			t.Errorf("Deliver after the backoff = %+v, want 3 uploaded", r)
		}
		if diff := cmp.Diff([]uint64{1, 2, 3}, h.primary.got()); diff != "" {
			t.Errorf("replay order (-want +got):\n%s", diff)
		}
		st := h.d.Stats()
		if st.UploadErrors != 1 || st.Spilled != 3 || st.Replayed != 3 || st.SpilledPending != 0 {
			t.Errorf("Stats = %+v", st)
		}
		h.d.Close(context.Background())
		every(t, h, 3)
	})
}

// A permanent refusal is probed every PermanentBackoff; Close does not try
// it again and hands everything to the fallback, oldest first.
func TestDurablePermanentThenClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{})
		h.primary.fail = func(int, *buffer.Batch) error { return errRefused }
		h.write(t, 1, 2, 3)
		h.deliver(time.Second)
		time.Sleep(time.Minute)
		h.deliver(time.Second)
		if h.primary.attempts != 1 {
			t.Errorf("%d attempts within a minute of a permanent refusal, want 1", h.primary.attempts)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := h.d.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if h.primary.attempts != 1 {
			t.Errorf("Close tried a permanently refused sink again (%d attempts)", h.primary.attempts)
		}
		if diff := cmp.Diff([]uint64{1, 2, 3}, h.fallback.got()); diff != "" {
			t.Errorf("fallback (-want +got):\n%s", diff)
		}
		every(t, h, 3)
	})
}

// At the memory cap the oldest batches leave memory: to the spill, or to
// the fallback without one.
func TestDurableMemoryCap(t *testing.T) {
	for _, spill := range []bool{true, false} {
		t.Run(fmt.Sprint("spill=", spill), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				one := len(spillBatch(t, 1, 3).Data)
				h := newHarness(t, spill, DurableOptions{MaxHeld: 2*one + one/2})
				h.write(t, 1, 2, 3, 4)
				st := h.d.Stats()
				if st.EvictedMemory != 2 || st.Held != 2 {
					t.Errorf("Stats = %+v, want 2 evicted and 2 held", st)
				}
				if spill && st.Spilled != 2 {
					t.Errorf("spilled %d, want 2", st.Spilled)
				}
				if !spill && st.Fallback != 2 {
					t.Errorf("fallback %d, want 2", st.Fallback)
				}
				h.deliver(time.Second)
				h.d.Close(context.Background())
				every(t, h, 4)
			})
		})
	}
}

// An upload its window leaves running goes on (in Lambda, into the next
// invocation): Deliver returns at its deadline, the batch is delivered
// once, the next window waits for it before starting another, and the sink
// is not blamed.
func TestDurableWindowEndsMidUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{})
		h.primary.delay = 500 * time.Millisecond
		h.write(t, 1, 2)
		start := time.Now()
		r := h.deliver(200 * time.Millisecond)
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Errorf("Deliver took %v, past its 200ms window", took)
		}
		if r.Uploaded != 0 || r.Failing {
			t.Errorf("Deliver = %+v, want nothing uploaded yet and the sink not failing", r)
		}
		synctest.Wait()
		if got := h.primary.got(); len(got) != 0 {
			t.Fatalf("sink has %v at 200ms, want the upload still running", got)
		}
		// The next window takes up the running upload, then starts the
		// next one: 1 lands at 500ms, 2 at 1s.
		r = h.deliver(2 * time.Second)
		if took := time.Since(start); took < time.Second || took > 1100*time.Millisecond {
			t.Errorf("second window ended at %v, want at 1s: after 1's upload and then 2's", took)
		}
		if diff := cmp.Diff([]uint64{1, 2}, h.primary.got()); diff != "" {
			t.Errorf("sink (-want +got):\n%s", diff)
		}
		if st := h.d.Stats(); st.UploadErrors != 0 || st.Uploaded != 2 {
			t.Errorf("stats = %+v, want 2 uploaded and no error", st)
		}
		h.d.Close(context.Background())
		every(t, h, 2)
	})
}

// An upload left running by its window that outlives UploadTimeout (in
// Lambda: frozen with the environment) is not the sink's fault: the batch
// is kept, the sink not backed off.
func TestDurableDetachedUploadTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{UploadTimeout: time.Second})
		h.primary.delay = time.Hour
		h.write(t, 1)
		h.deliver(100 * time.Millisecond)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		st := h.d.Stats()
		if st.UploadErrors != 0 || st.Held != 1 {
			t.Errorf("after the upload timed out past its window: stats %+v, want the batch held and no upload error", st)
		}
		h.primary.mu.Lock()
		h.primary.delay = 0
		h.primary.mu.Unlock()
		if r := h.deliver(time.Second); r.Uploaded != 1 || r.Failing {
			t.Errorf("next Deliver = %+v, want the kept batch uploaded at once (no backoff)", r)
		}
		h.d.Close(context.Background())
		every(t, h, 1)
	})
}

// Close lets an upload an earlier window left running finish: its answer
// may be on its way (in Lambda, already in the socket when SHUTDOWN thaws
// the environment), and a request cut in flight has its batch sent again,
// which a Serverless collection indexes twice (found by the OpenSearch
// end-to-end test: the first _bulk into a new index outlived its window,
// Close cut it and 192 documents were indexed twice). And it tells the
// upload to hurry: a retry wait of the sink's own ends at once, so
// SHUTDOWN's budget goes to the retry.
func TestDurableCloseLetsLeftRunningUploadFinish(t *testing.T) {
	for _, tt := range []struct {
		name      string
		delay     time.Duration // the upload's own time
		waitHurry bool          // it sits in a retry wait of an hour unless hurried
		want      time.Duration // Close's
	}{
		{name: "answer on its way", delay: 500 * time.Millisecond, want: 400 * time.Millisecond},
		{name: "in a retry wait", waitHurry: true, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, false, DurableOptions{})
				h.primary.delay, h.primary.waitHurry = tt.delay, tt.waitHurry
				h.write(t, 1)
				h.deliver(100 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				start := time.Now()
				if err := h.d.Close(ctx); err != nil {
					t.Errorf("Close = %v", err)
				}
				if took := time.Since(start); took != tt.want {
					t.Errorf("Close took %v, want %v", took, tt.want)
				}
				if diff := cmp.Diff([]uint64{1}, h.primary.got()); diff != "" {
					t.Errorf("sink (-want +got):\n%s", diff)
				}
				if n := h.primary.tries(); n != 1 {
					t.Errorf("the sink was written %d times, want once", n)
				}
				every(t, h, 1)
			})
		})
	}
}

// An upload a window left running that is still unanswered halfway to
// Close's deadline (less the fallback's time) most likely sits on a
// connection that died while the environment was frozen: Close starts it
// again, fresh.
func TestDurableCloseRestartsLeftRunningUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{})
		h.primary.delay = time.Hour // the first attempt hangs
		h.write(t, 1)
		h.deliver(100 * time.Millisecond)
		h.primary.mu.Lock()
		h.primary.delay = 0
		h.primary.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := h.d.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
		if diff := cmp.Diff([]uint64{1}, h.primary.got()); diff != "" {
			t.Errorf("sink (-want +got):\n%s", diff)
		}
		every(t, h, 1)
	})
}

// Close bounds an upload an earlier window left running by its own
// deadline: the batch goes to the fallback in time, exactly once.
func TestDurableCloseCutsLeftRunningUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{})
		h.primary.delay = time.Hour
		h.write(t, 1, 2)
		h.deliver(100 * time.Millisecond)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := h.d.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
		if took := time.Since(start); took > 300*time.Millisecond {
			t.Errorf("Close took %v with a 300ms deadline and an upload hanging", took)
		}
		if diff := cmp.Diff([]uint64{1, 2}, h.fallback.got()); diff != "" {
			t.Errorf("fallback (-want +got):\n%s", diff)
		}
		every(t, h, 2)
	})
}

// Deliver returns by its deadline even while Run writes a large evicted
// batch to a slow fallback (found by make faults: the function timed out).
func TestDurableDeliverDeadlineDuringEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		one := len(spillBatch(t, 1, 3).Data)
		h := newHarness(t, false, DurableOptions{MaxHeld: one})
		h.fallback.slowDown = time.Second
		h.primary.delay = 300 * time.Millisecond
		h.write(t, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// The window's upload is cut at 100ms and its batch comes back
			// while 2 is held: putting 1 back evicts 2 to the slow fallback.
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			h.d.Deliver(ctx, nil)
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("Deliver took %v with a 100ms window", took)
			}
		}()
		time.Sleep(10 * time.Millisecond)
		h.write(t, 2)
		<-done
		h.primary.mu.Lock()
		h.primary.delay = 0
		h.primary.mu.Unlock()
		h.d.Close(context.Background())
		every(t, h, 2)
	})
}

// Once stop is closed no new upload starts after the window's first.
func TestDurableStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{})
		h.primary.delay = 10 * time.Millisecond
		h.write(t, 1, 2, 3)
		stop := make(chan struct{})
		close(stop)
		r := h.d.Deliver(context.Background(), stop)
		if r.Uploaded != 1 || r.Waiting != 2 {
			t.Errorf("Deliver with stop closed = %+v, want 1 uploaded and 2 waiting", r)
		}
		h.d.Close(context.Background())
		every(t, h, 3)
	})
}

// A window whose time runs out while the path is busy writing to a slow
// fallback (eviction at the memory cap) hands every batch somewhere
// (defect: a timed-out request ran later, popped a batch nobody delivered,
// and a second close of a channel panicked).
func TestDurableSlowEvictionRace(t *testing.T) {
	for trial := range 10 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				one := len(spillBatch(t, 1, 3).Data)
				h := newHarness(t, false, DurableOptions{MaxHeld: one})
				h.fallback.slowDown = 200 * time.Millisecond
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					h.write(t, 1, 2, 3, 4, 5)
				}()
				for range 3 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+trial*30)*time.Millisecond)
					h.d.Deliver(ctx, nil)
					cancel()
				}
				wg.Wait()
				h.d.Close(context.Background())
				every(t, h, 5)
			})
		})
	}
}

// Close finishes within its context even when the sink hangs, and the rest
// goes to the fallback.
func TestDurableCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{})
		h.primary.delay = time.Hour
		h.write(t, 1, 2)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		h.d.Close(ctx)
		if took := time.Since(start); took > 300*time.Millisecond {
			t.Errorf("Close took %v with a 300ms budget", took)
		}
		every(t, h, 2)
		if err := h.d.Write(context.Background(), spillBatch(t, 3, 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Write after Close = %v, want ErrClosed", err)
		}
	})
}

// Close stops uploading while what waits can still reach the fallback
// before its deadline (defect: 33 batches behind a slow sink took 290 ms to
// write, the margin was 300 ms, and sluice was SIGKILLed with 25,246 lines
// unwritten). With 8 batches of 1 MiB at 8 MiB/s and 300 ms uploads, a
// 1.5 s Close has time for about three.
func TestDurableCloseKeepsFallbackTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{FallbackRate: 8 << 20, MaxHeld: 1 << 30})
		h.primary.delay = 300 * time.Millisecond
		for seq := uint64(1); seq <= 8; seq++ {
			b := spillBatch(t, seq, 3)
			b.RawBytes = 1 << 20 // as the fallback would print it
			if err := h.d.Write(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		h.d.Close(ctx)
		took := time.Since(start)
		uploaded := len(h.primary.got())
		if uploaded < 1 || uploaded > 4 {
			t.Errorf("Close uploaded %d batches, want 1..4: it must stop in time for the fallback", uploaded)
		}
		// What was left needs (8-uploaded) x 125 ms of fallback time.
		if left := time.Duration(8-uploaded) * 125 * time.Millisecond; took > 1500*time.Millisecond-left {
			t.Errorf("Close uploaded until %v, leaving less than the %v the fallback needs", took, left)
		}
		every(t, h, 8)
		if st := h.d.Stats(); st.UploadErrors != 0 {
			t.Errorf("UploadErrors = %d: stopping for the fallback is not the sink's failure", st.UploadErrors)
		}
	})
}

// A sink faster than the fallback keeps uploading at Close: dumping the
// backlog to stdout would take longer than sending it (found by make faults:
// a healthy S3 sink with 20 MB waiting at SHUTDOWN sent all of it to
// stdout).
func TestDurableCloseFastSinkUploads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, false, DurableOptions{FallbackRate: 8 << 20, MaxHeld: 1 << 30})
		h.primary.delay = 10 * time.Millisecond // 100 MiB/s of 1 MiB batches
		for seq := uint64(1); seq <= 20; seq++ {
			b := spillBatch(t, seq, 3)
			b.RawBytes = 1 << 20
			if err := h.d.Write(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		h.d.Close(ctx)
		if n := len(h.primary.got()); n != 20 {
			t.Errorf("Close uploaded %d of 20 batches to a fast sink, want all (the fallback would need 2.5 s)", n)
		}
		every(t, h, 20)
	})
}

// Bad spill entries are moved aside during a window and delivery goes on
// (defect: one unreadable entry made the replay loop spin for ever).
func TestDurableBadSpillEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		os.Symlink("/etc", filepath.Join(dir, "e-1-1772856307000-5-5-700.json.zst"))
		syscall.Mkfifo(filepath.Join(dir, "e-2-1772856307001-5-5-700.json.zst"), 0o600)
		trunc := spillBatch(t, 3, 40)
		os.WriteFile(filepath.Join(dir, spillName(trunc, "e")), trunc.Data[:len(trunc.Data)/3], 0o600)
		good := spillBatch(t, 4, 3)
		os.WriteFile(filepath.Join(dir, spillName(good, "e")), good.Data, 0o600)
		s, err := OpenSpill(dir, 1<<30, "e")
		if err != nil {
			t.Fatal(err)
		}
		primary, fallback := &fakeSink{}, &fakeSink{}
		d := NewDurable(primary, DurableOptions{Spill: s, Fallback: fallback, Log: quietLog})
		go d.Run(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r := d.Deliver(ctx, nil)
		if r.Uploaded != 1 || r.Waiting != 0 {
			t.Errorf("Deliver = %+v, want the good batch uploaded and nothing waiting", r)
		}
		if st := d.Stats(); st.BadSpill != 3 {
			t.Errorf("BadSpill = %d, want 3 (symlink, FIFO, truncated)", st.BadSpill)
		}
		if diff := cmp.Diff([]uint64{4}, primary.got()); diff != "" {
			t.Errorf("uploaded (-want +got):\n%s", diff)
		}
		d.Close(context.Background())
	})
}

// An eager path uploads without windows and retries after its backoff by
// itself.
func TestDurableEager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{Eager: true})
		h.primary.fail = func(n int, _ *buffer.Batch) error {
			if n == 1 {
				return errRetryable
			}
			return nil
		}
		h.write(t, 1, 2)
		time.Sleep(BackoffBase + time.Millisecond)
		synctest.Wait()
		if diff := cmp.Diff([]uint64{1, 2}, h.primary.got()); diff != "" {
			t.Errorf("eager uploads (-want +got):\n%s", diff)
		}
		h.d.Close(context.Background())
		every(t, h, 2)
	})
}

// Ending Run's context hands everything waiting to the fallback.
func TestDurableRunContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, true, DurableOptions{})
		h.write(t, 1, 2)
		h.cancel()
		<-h.d.Done()
		every(t, h, 2)
		if err := h.d.Close(context.Background()); err != nil {
			t.Errorf("Close after Run ended = %v", err)
		}
	})
}

func TestBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	var b backoff
	prevCeiling := time.Duration(0)
	for i := 1; i <= 10; i++ {
		d := b.fail(now, true)
		ceiling := min(BackoffBase<<(i-1), BackoffMax)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("failure %d: wait %v, want within [%v, %v]", i, d, ceiling/2, ceiling)
		}
		if ceiling < prevCeiling {
			t.Errorf("failure %d: ceiling shrank", i)
		}
		prevCeiling = ceiling
		if !now.Add(d).Equal(b.until) {
			t.Errorf("failure %d: until %v, want now+%v", i, b.until, d)
		}
	}
	if d := b.fail(now, false); d != PermanentBackoff || !b.permanent {
		t.Errorf("permanent failure: wait %v permanent %v, want %v true", d, b.permanent, PermanentBackoff)
	}
}
