package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

// TestReadWindow writes four hours of two functions and reads 75 minutes
// of one: only that function's two hour prefixes are listed, only their
// objects fetched, and exactly the window's rows come out, in order.
func TestReadWindow(t *testing.T) {
	store, c, raw := s3Store(t)
	sink := s3Sink(raw, store.Bucket)
	lim := buffer.Limits{MaxBytes: 2 << 10} // a few rows per object
	var want []got
	start, end := at(9, 30, 0, 0), at(10, 45, 0, 0)
	perHour := map[int]int{}
	for _, fn := range []string{"orders", "billing"} {
		w := newWriter(t, sink, "logs", fn, "env1", lim)
		for h := 8; h < 12; h++ {
			for m := 0; m < 60; m += 5 {
				tm := at(h, m, 7, 0)
				msg := fmt.Sprintf("%s %02d:%02d %s", fn, h, m, strings.Repeat("x", 200))
				w.add(rec(tm, "req", "INFO", msg))
				if fn == "orders" && !tm.Before(start) && tm.Before(end) {
					want = append(want, got{tm, msg})
				}
			}
		}
		w.flush()
		if fn == "orders" {
			for _, k := range w.keys {
				o, err := ParseKey(k)
				if err != nil {
					t.Fatal(err)
				}
				perHour[o.Hour.Hour()]++
			}
		}
	}

	r := &Reader{Store: store, Prefix: "logs", Counters: &Counters{}}
	gotRows := readAll(t, r, Query{Functions: []string{"orders"}, Start: start, End: end})
	if diff := cmp.Diff(want, gotRows); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
	wantPrefixes := []string{
		"logs/function=orders/dt=2026-03-07/hour=09/",
		"logs/function=orders/dt=2026-03-07/hour=10/",
	}
	if diff := cmp.Diff(wantPrefixes, c.prefixes()); diff != "" {
		t.Errorf("listed prefixes mismatch (-want +got):\n%s", diff)
	}
	wantGets := int64(perHour[9] + perHour[10])
	if got := c.gets.Load(); got != wantGets {
		t.Errorf("GETs = %d, want %d (the objects of hours 09 and 10; 08: %d, 11: %d)", got, wantGets, perHour[8], perHour[11])
	}
	t.Logf("window %s..%s: %d LISTs, %d GETs, %d rows; objects per hour of the function: %v",
		start.Format("15:04"), end.Format("15:04"), c.lists.Load(), c.gets.Load(), len(gotRows), perHour)
}

// TestReadOrder merges the objects of three environments of two functions
// whose lines interleave in time, across an hour boundary, with a line
// that reached the writer late (earlier than lines already in its batch).
func TestReadOrder(t *testing.T) {
	for _, format := range formats() {
		t.Run(format.String(), func(t *testing.T) {
			store, _, raw := s3Store(t)
			sink := s3Sink(raw, store.Bucket)
			lim := buffer.Limits{MaxBytes: 1 << 10, Format: format}
			ws := []*writer{
				newWriter(t, sink, "", "a", "env1", lim),
				newWriter(t, sink, "", "a", "env2", lim),
				newWriter(t, sink, "", "b", "env3", lim),
			}
			var want []got
			base := at(9, 59, 0, 0)
			for i := range 150 {
				tm := base.Add(time.Duration(i) * 700 * time.Millisecond)
				msg := fmt.Sprintf("line %03d %s", i, strings.Repeat("y", 50))
				ws[i%3].add(rec(tm, fmt.Sprintf("req-%d", i%7), "INFO", msg))
				want = append(want, got{tm, msg})
			}
			for _, w := range ws {
				w.flush()
			}
			r := &Reader{Store: store, Parallel: 3, MaxOpen: 4, Counters: &Counters{}}
			q := Query{Functions: []string{"a", "b"}, Start: base, End: base.Add(time.Hour)}
			if diff := cmp.Diff(want, readAll(t, r, q)); diff != "" {
				t.Errorf("rows mismatch (-want +got):\n%s", diff)
			}
			if n := r.Counters.Overlaps.Load(); n != 0 {
				t.Errorf("Overlaps = %d, want 0 with three environments and MaxOpen 4", n)
			}
		})
	}
}

// TestReadLateRow: a row that reaches the writer after later rows of the
// same hour sits in an object whose <start> is after it, and is still in
// the window.
func TestReadLateRow(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, dirSink(root), "", "f", "env1", buffer.Limits{})
	w.add(rec(at(9, 20, 0, 0), "r1", "INFO", "on time"), rec(at(9, 10, 0, 0), "r0", "INFO", "late"))
	w.flush()
	r := &Reader{Store: &Dir{Root: root}}
	gotRows := readAll(t, r, Query{Functions: []string{"f"}, Start: at(9, 5, 0, 0), End: at(9, 15, 0, 0)})
	if diff := cmp.Diff([]got{{at(9, 10, 0, 0), "late"}}, gotRows); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
}

// TestReadCorrupt: an object that is not zstd and one cut short are
// skipped with a message naming them; the rest is read.
func TestReadCorrupt(t *testing.T) {
	store, _, raw := s3Store(t)
	w := newWriter(t, s3Sink(raw, store.Bucket), "", "f", "env1", buffer.Limits{MaxBytes: 4 << 10})
	var want []got
	for i := range 60 {
		tm := at(9, 0, i, 0)
		msg := fmt.Sprintf("line %d %s", i, strings.Repeat("z", 200))
		w.add(rec(tm, "r", "INFO", msg))
		want = append(want, got{tm, msg})
	}
	w.flush()
	if len(w.keys) < 3 {
		t.Fatalf("%d objects, want at least 3", len(w.keys))
	}
	ctx := context.Background()
	put := func(key string, body []byte) {
		t.Helper()
		_, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(store.Bucket), Key: aws.String(key), Body: strings.NewReader(string(body))})
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	garbage := "function=f/dt=2026-03-07/hour=09/20260307T090030Z-bad-00000001.json.zst"
	put(garbage, []byte("this is not zstd"))
	// A copy of a real object, cut in half: its first rows may be read
	// before the damage shows.
	full, err := store.Get(ctx, w.keys[1])
	if err != nil {
		t.Fatal(err)
	}
	cut := "function=f/dt=2026-03-07/hour=09/20260307T090040Z-cut-00000001.json.zst"
	put(cut, full[:len(full)/2])
	put("function=f/dt=2026-03-07/hour=09/README.txt", []byte("not a batch"))

	var mu sync.Mutex
	var warnings []string
	r := &Reader{Store: store, Counters: &Counters{}, Warn: func(err error) {
		mu.Lock()
		warnings = append(warnings, err.Error())
		mu.Unlock()
	}}
	var gotRows []got
	err = r.Read(ctx, Query{Functions: []string{"f"}, Start: at(9, 0, 0, 0), End: at(10, 0, 0, 0)}, func(l *Line) error {
		row, err := buffer.ParseRow(l.Row)
		if err != nil {
			return err
		}
		if l.Object.Key != cut {
			gotRows = append(gotRows, got{row.Time, row.Message})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if diff := cmp.Diff(want, gotRows); diff != "" {
		t.Errorf("rows of the intact objects mismatch (-want +got):\n%s", diff)
	}
	if n := r.Counters.Skipped.Load(); n != 2 {
		t.Errorf("Skipped = %d, want 2", n)
	}
	for _, key := range []string{garbage, cut, "README.txt"} {
		if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, key) }) {
			t.Errorf("no warning names %s; warnings: %q", key, warnings)
		}
	}
	t.Logf("warnings: %q", warnings)
}

// TestReadDir reads the directory of the file:// sink, the layout make run
// writes locally.
func TestReadDir(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, dirSink(root), "", "f", "env1", buffer.Limits{MaxBytes: 1 << 10})
	var want []got
	for i := range 40 {
		tm := at(9, 58, 0, 0).Add(time.Duration(i) * 7 * time.Second)
		msg := fmt.Sprintf("line %d %s", i, strings.Repeat("d", 100))
		w.add(rec(tm, "r", "INFO", msg))
		want = append(want, got{tm, msg})
	}
	w.flush()
	// An upload in progress, as sinks.Dir leaves it for a moment.
	hour := filepath.Join(root, "function=f", "dt=2026-03-07", "hour=09")
	if err := os.WriteFile(filepath.Join(hour, ".x.json.zst.1.tmp"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Reader{Store: &Dir{Root: root}, Counters: &Counters{}, Warn: func(err error) { t.Errorf("warning: %v", err) }}
	if diff := cmp.Diff(want, readAll(t, r, Query{Functions: []string{"f"}, Start: at(9, 0, 0, 0), End: at(11, 0, 0, 0)})); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
	if got, want := r.Counters.Fetched.Load(), int64(len(w.keys)); got != want {
		t.Errorf("Fetched = %d, want %d", got, want)
	}
}

// TestReadErrors: problems shared by every object end the read with an
// error Classify recognises.
func TestReadErrors(t *testing.T) {
	store, _, raw := s3Store(t)
	q := Query{Functions: []string{"f"}, Start: at(9, 0, 0, 0), End: at(10, 0, 0, 0)}
	noop := func(*Line) error { return nil }

	r := &Reader{Store: NewS3(raw, "no-such-bucket")}
	if err := r.Read(context.Background(), q, noop); Classify(err) != ProblemNoSuchBucket {
		t.Errorf("Read(missing bucket) = %v (problem %d), want ProblemNoSuchBucket", err, Classify(err))
	}

	denied := &S3{Bucket: store.Bucket, Lister: raw, Getter: getFunc(func(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
		return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"}
	})}
	w := newWriter(t, s3Sink(raw, store.Bucket), "", "f", "env1", buffer.Limits{})
	w.add(rec(at(9, 1, 0, 0), "r", "INFO", "x"))
	w.flush()
	r = &Reader{Store: denied}
	if err := r.Read(context.Background(), q, noop); Classify(err) != ProblemAccessDenied {
		t.Errorf("Read(GET denied) = %v, want ProblemAccessDenied", err)
	}

	// The emit callback's error ends the read and comes back as is.
	stop := errors.New("stop")
	r = &Reader{Store: store}
	if err := r.Read(context.Background(), q, func(*Line) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Read(emit fails) = %v, want %v", err, stop)
	}
}

type getFunc func(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)

func (f getFunc) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return f(ctx, in, opts...)
}

// TestFollow starts Follow on an archive with one object, waits for its
// lines, writes a second object and waits for those: each line comes once,
// however many polls pass.
func TestFollow(t *testing.T) {
	store, c, raw := s3Store(t)
	sink := s3Sink(raw, store.Bucket)
	now := time.Now().UTC()
	w1 := newWriter(t, sink, "", "f", "env1", buffer.Limits{})
	w1.add(rec(now.Add(-2*time.Minute), "r1", "INFO", "before"))
	w1.flush()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := make(chan string, 100)
	r := &Reader{Store: store, Poll: 20 * time.Millisecond, Counters: &Counters{}}
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(ctx, Query{Functions: []string{"f"}, Start: now.Add(-10 * time.Minute)}, func(l *Line) error {
			row, err := buffer.ParseRow(l.Row)
			if err != nil {
				return err
			}
			lines <- row.Message
			return nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("line %q, want %q", got, want)
			}
		case err := <-done:
			t.Fatalf("Follow ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no line %q within 30s", want)
		}
	}
	expect("before")
	w2 := newWriter(t, sink, "", "f", "env2", buffer.Limits{})
	w2.add(rec(time.Now().UTC(), "r2", "INFO", "after"))
	w2.flush()
	expect("after")
	// Let at least three more polls pass: nothing may come again.
	lists := r.Counters.Lists.Load()
	for r.Counters.Lists.Load() < lists+6 {
		select {
		case l := <-lines:
			t.Fatalf("line %q printed again", l)
		case err := <-done:
			t.Fatalf("Follow ended: %v", err)
		case <-time.After(10 * time.Millisecond): // re-check the poll count
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow = %v, want context.Canceled", err)
	}
	select {
	case l := <-lines:
		t.Errorf("line %q printed again", l)
	default:
	}
	if perPoll := len(Hours(time.Now().Add(-followLookback), time.Now().Add(time.Nanosecond))); perPoll > 2 {
		t.Errorf("a poll lists %d hours, want at most 2", perPoll)
	}
	t.Logf("%d LISTs, %d GETs", c.lists.Load(), c.gets.Load())
}
