package telemetry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-logs/sluice/buffer"
)

var quiet = slog.New(slog.DiscardHandler)

// serve starts l.Serve and stops it when the test ends, checking that it
// returned nil.
func serve(t *testing.T, l *Listener, out chan<- []buffer.Record) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Serve(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	})
}

func post(t *testing.T, url string, body io.Reader) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// ignoreTime compares records without their Time, which is "now" for a
// malformed body.
var ignoreTime = cmpopts.IgnoreFields(buffer.Record{}, "Time")

func TestListenerDelivers(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Logger = quiet
	out := make(chan []buffer.Record, 10)
	serve(t, l, out)
	start := time.Now()

	good := golden(t, "platform-2025-01-29.json")
	half := golden(t, "split-1.json")
	want, _ := NewDecoder().Decode(good, time.Now())
	tests := []struct {
		path string
		body []byte
		want []buffer.Record
	}{
		{path: "/", body: good, want: want},
		{path: "/telemetry/any/path", body: good, want: want},
		{path: "/", body: half, want: []buffer.Record{{Type: TypeMalformed, Message: string(half),
			Fields: raw(`{"bytes":` + strconv.Itoa(len(half)) + `}`)}}},
	}
	for _, tt := range tests {
		resp := post(t, l.URI()+tt.path, bytes.NewReader(tt.body))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s = %d, want 200", tt.path, resp.StatusCode)
		}
		// The answer comes after the send, so the records are there now.
		select {
		case got := <-out:
			if diff := cmp.Diff(tt.want, got, ignoreTime); diff != "" {
				t.Errorf("POST %s records (-want +got):\n%s", tt.path, diff)
			}
		default:
			t.Fatalf("POST %s answered 200 before its records were sent", tt.path)
		}
	}

	// An empty batch is answered without a send.
	if resp := post(t, l.URI(), strings.NewReader("[]")); resp.StatusCode != http.StatusOK {
		t.Errorf("POST [] = %d, want 200", resp.StatusCode)
	}
	if len(out) != 0 {
		t.Errorf("POST [] sent %d batches, want none", len(out))
	}
	resp, err := http.Get(l.URI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d, want 405", resp.StatusCode)
	}

	wantStats := Stats{Posts: 4, Records: int64(2*len(want) + 1), Malformed: 1, Bytes: int64(2*len(good) + len(half) + 2)}
	if diff := cmp.Diff(wantStats, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if lp := l.LastPost(); lp.Before(start) || lp.After(time.Now()) {
		t.Errorf("LastPost = %v, want between %v and now", lp, start)
	}
}

func TestListenerOversized(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Logger = quiet
	l.MaxBody = 100
	out := make(chan []buffer.Record, 1)
	serve(t, l, out)

	body := `[{"type":"function","record":"` + strings.Repeat("x", 100) + `"}]`
	// With Content-Length, and chunked, so the limit holds while reading too.
	for _, r := range []io.Reader{strings.NewReader(body), io.MultiReader(strings.NewReader(body))} {
		if resp := post(t, l.URI(), r); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST of %d bytes over a limit of 100 = %d, want 413", len(body), resp.StatusCode)
		}
	}
	// At the limit exactly is fine.
	atLimit := `[{"type":"function","record":"` + strings.Repeat("x", 100-33) + `"}]`
	if resp := post(t, l.URI(), strings.NewReader(atLimit)); resp.StatusCode != http.StatusOK {
		t.Errorf("POST of %d bytes at the limit = %d, want 200", len(atLimit), resp.StatusCode)
	}
	if s := l.Stats(); s.Oversized != 2 || s.Records != 1 {
		t.Errorf("Stats = %+v, want Oversized 2, Records 1", s)
	}
	if len(out) != 1 {
		t.Errorf("%d batches sent, want the one at the limit", len(out))
	}
}

func TestListenerBusy(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Logger = quiet
	l.SendTimeout = 20 * time.Millisecond
	out := make(chan []buffer.Record) // nobody reads
	serve(t, l, out)

	resp := post(t, l.URI(), bytes.NewReader(golden(t, "function-text.json")))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST with the output full = %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if s := l.Stats(); s.Busy != 1 || s.Records != 0 {
		t.Errorf("Stats = %+v, want Busy 1, Records 0", s)
	}
}

// TestHandlerWaitsForRoom checks the bound on the wait for a full output
// channel with a fake clock: the POST waits, succeeds if room appears
// within DefaultSendTimeout, and is answered 503 at the bound otherwise.
func TestHandlerWaitsForRoom(t *testing.T) {
	body := golden(t, "function-text.json")
	tests := []struct {
		name       string
		roomAfter  time.Duration // when the consumer takes a batch; 0: never
		wantStatus int
	}{
		{name: "room appears in time", roomAfter: DefaultSendTimeout - 5*queuePoll, wantStatus: http.StatusOK},
		{name: "no room", wantStatus: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := &Listener{Logger: quiet}
				out := make(chan []buffer.Record, 1)
				out <- nil // full
				h := l.handler(out)
				rec := httptest.NewRecorder()
				done := make(chan struct{})
				start := time.Now()
				var took time.Duration
				go func() {
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
					took = time.Since(start)
					close(done)
				}()
				synctest.Wait()
				select {
				case <-done:
					t.Fatalf("handler answered %d with the output full, want it to wait", rec.Code)
				default:
				}
				if tt.roomAfter > 0 {
					time.Sleep(tt.roomAfter) // the fake clock: no real wait
					<-out
				}
				<-done
				if rec.Code != tt.wantStatus {
					t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
				}
				if tt.roomAfter == 0 && took != DefaultSendTimeout {
					t.Errorf("answered 503 after %v, want %v", took, DefaultSendTimeout)
				}
			})
		})
	}
}

// The bytes of telemetry in the listener are bounded besides the POSTs:
// a flood of the largest bodies holds two, not the slots' two plus the
// channel's four (the listener-flood scenario's live heap reached 33 MB,
// and its RSS 48.3 MB, over SLUICE_MEMORY_LIMIT_MB). A POST over the bound
// is refused at once, before its body is read.
func TestListenerPendingBytes(t *testing.T) {
	line := `{"time":"2026-12-07T10:00:00.000Z","type":"function","record":"` + strings.Repeat("x", 1000) + `"}`
	payload := "[" + strings.Repeat(line+",", 999) + line + "]" // ~1 MB
	synctest.Test(t, func(t *testing.T) {
		l := &Listener{Logger: quiet, MaxPendingBytes: int64(len(payload)) * 3 / 2}
		out := make(chan []buffer.Record, 4) // nobody reads yet
		h := l.handler(out)
		post := func() int {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(payload)))
			return w.Code
		}
		start := time.Now()
		// The first fits whatever its size, the second not the bytes left
		// (though the channel has room for 3 more).
		if codes := []int{post(), post(), post()}; !slices.Equal(codes, []int{200, 503, 503}) {
			t.Errorf("POSTs of %d bytes with %d bytes pending allowed answered %v, want [200 503 503]", len(payload), l.MaxPendingBytes, codes)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the POSTs over the bound were answered after %v, want at once", d)
		}
		<-out
		if code := post(); code != http.StatusOK {
			t.Errorf("POST after the queue was taken: %d, want 200", code)
		}
		if len(out) != 1 || h.pending.bytes != int64(len(payload)) {
			t.Errorf("%d POSTs queued, %d bytes pending, want 1 and %d", len(out), h.pending.bytes, len(payload))
		}
	})
}

// Taken lets a POST waiting for room in at once: with only its poll, each
// waiting POST's answer came up to 2 ms late, and the log-storm scenario
// lost 5 of 2,000,002 lines, twice, to Lambda's buffer overflowing
// meanwhile.
func TestListenerTakenWakes(t *testing.T) {
	body := golden(t, "function-text.json")
	synctest.Test(t, func(t *testing.T) {
		l := &Listener{Logger: quiet}
		out := make(chan []buffer.Record, 1)
		out <- nil // full
		h := l.handler(out)
		done := make(chan int)
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
			done <- w.Code
		}()
		time.Sleep(queuePoll / 2) // between two looks
		synctest.Wait()
		start := time.Now()
		<-out
		l.Taken()
		synctest.Wait()
		select {
		case code := <-done:
			if code != http.StatusOK || time.Since(start) != 0 {
				t.Errorf("answered %d after %v, want 200 at once", code, time.Since(start))
			}
		default:
			t.Error("the POST still waits after Taken, want it queued at once")
			<-done
		}
	})
}

func TestListenerURI(t *testing.T) {
	tests := []struct {
		addr     string
		wantHost string
	}{
		{addr: "127.0.0.1:0", wantHost: "127.0.0.1"},
		{addr: "localhost:0", wantHost: "localhost"},
		{addr: ":0", wantHost: "sandbox.localdomain"},
		{addr: "0.0.0.0:0", wantHost: "sandbox.localdomain"},
		{addr: "[::]:0", wantHost: "sandbox.localdomain"},
		{addr: "[::1]:0", wantHost: "[::1]"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			l, err := Listen(tt.addr)
			if err != nil {
				if strings.Contains(tt.addr, "::") {
					t.Skipf("no IPv6 here: %v", err)
				}
				t.Fatal(err)
			}
			defer l.ln.Close()
			port := l.ln.Addr().(*net.TCPAddr).Port
			want := "http://" + tt.wantHost + ":" + strconv.Itoa(port)
			if got := l.URI(); got != want || port == 0 {
				t.Errorf("Listen(%q).URI() = %q, want %q", tt.addr, got, want)
			}
		})
	}
	if _, err := Listen("no-port"); err == nil {
		t.Errorf(`Listen("no-port") = nil error, want one`)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Serve(ctx, make(chan []buffer.Record, 1)) }()
	if resp := post(t, l.URI(), strings.NewReader("[]")); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST = %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := c.Post(l.URI(), "application/json", strings.NewReader("[]")); err == nil {
		resp.Body.Close()
		t.Errorf("POST after shutdown succeeded, want the listener closed")
	}
}
