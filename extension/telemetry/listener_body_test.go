package telemetry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-logs/sluice/buffer"
)

// A slot's buffer is as large as the body Content-Length announces (not
// the next power of two), is reused by the next POST of that size without
// growing, and a burst larger than keepBodyCap is not kept once bodies are
// small again.
func TestReadBodySlotBuffer(t *testing.T) {
	h := (&Listener{}).handler(make(chan []buffer.Record))
	b := new(body)
	read := func(payload []byte, announce bool) int64 {
		t.Helper()
		var rd io.Reader = bytes.NewReader(payload)
		if !announce {
			rd = io.MultiReader(rd) // hides the length: a chunked body
		}
		req := httptest.NewRequest(http.MethodPost, "/", rd)
		if !announce && req.ContentLength != -1 {
			req.ContentLength = -1
		}
		w := httptest.NewRecorder()
		n, ok := h.readBody(w, req, b)
		if !ok || n != int64(len(payload)) || !bytes.Equal(b.buf, payload) {
			t.Fatalf("readBody(%d bytes, announced %v) = %d, %v (status %d), want the whole body", len(payload), announce, n, ok, w.Code)
		}
		return n
	}

	big := []byte(strings.Repeat("x", 1100<<10)) // over 1 MiB: doubling would give 2 MiB
	read(big, true)
	if got, want := cap(b.buf), len(big)+1; got != want {
		t.Errorf("buffer for a %d-byte body announced by Content-Length: cap %d, want %d", len(big), got, want)
	}
	b.release()
	first := &b.buf[:1][0]
	read(big, true)
	if &b.buf[0] != first {
		t.Error("a second body of the same size reallocated the slot's buffer")
	}
	b.release()
	if cap(b.buf) == 0 {
		t.Fatal("release dropped a buffer its body filled")
	}

	read([]byte(`[]`), true)
	b.release()
	if cap(b.buf) != 0 {
		t.Errorf("after a 2-byte body the slot keeps a %d-byte buffer, want it dropped (over keepBodyCap and under half used)", cap(b.buf))
	}

	read(big, false)
	if got := cap(b.buf); got < len(big) || got > 2*len(big) {
		t.Errorf("chunked body of %d bytes: cap %d, want at most twice the body", len(big), got)
	}
}

// A body over the limit is refused however it is sent, and counted.
func TestReadBodyOverLimit(t *testing.T) {
	for _, announce := range []bool{true, false} {
		l := &Listener{MaxBody: 1000}
		h := l.handler(make(chan []buffer.Record))
		req := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(strings.Repeat("y", 1001))))
		if announce {
			req.ContentLength = 1001
		} else {
			req.ContentLength = -1
		}
		w := httptest.NewRecorder()
		if _, ok := h.readBody(w, req, new(body)); ok || w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("announced %v: readBody of 1001 bytes over a 1000 limit: ok %v, status %d, want refused with 413", announce, ok, w.Code)
		}
		if got := l.Stats().Oversized; got != 1 {
			t.Errorf("announced %v: Oversized = %d, want 1", announce, got)
		}
	}
}

// POSTs one after another reuse one slot's buffer: the others stay empty
// (a queue of slots grew every buffer in turn).
func TestSequentialPostsGrowOneBuffer(t *testing.T) {
	out := make(chan []buffer.Record, 8)
	h := (&Listener{MaxInFlight: 2}).handler(out)
	line := `{"time":"2026-12-07T10:00:00.000Z","type":"function","record":"` + strings.Repeat("x", 1000) + `"}`
	payload := "[" + strings.Repeat(line+",", 99) + line + "]"
	for i := range 4 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(payload)))
		if w.Code != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, w.Code)
		}
		<-out
	}
	grown := 0
	for _, b := range h.slots.free {
		if cap(b.buf) > 0 {
			grown++
		}
	}
	if grown != 1 || len(h.slots.free) != 2 {
		t.Errorf("after 4 sequential POSTs %d of %d slot buffers hold memory, want 1 of 2", grown, len(h.slots.free))
	}
}
