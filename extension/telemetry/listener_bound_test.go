package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// waitFor polls cond (the server's own counters) for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Connections that announce a large body and then send nothing must not
// make the listener reserve the announced size (defect: 100 such
// connections held 302 MiB).
func TestListenerHeaderOnlyConnectionsHoldNoMemory(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Logger = quiet
	out := make(chan []buffer.Record) // never read
	serve(t, l, out)
	before := heapInUse()

	const conns = 100
	addr := strings.TrimPrefix(l.URI(), "http://")
	addr = strings.Replace(addr, sandboxHost, "127.0.0.1", 1)
	var cs []net.Conn
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 3<<20)
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	waitFor(t, "every connection's headers", func() bool { return l.Stats().Posts >= conns })
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %.1f MiB for %d header-only connections", float64(grew)/(1<<20), conns)
	if grew > 16<<20 {
		t.Errorf("heap grew by %.1f MiB for %d header-only connections, want at most 16 MiB", float64(grew)/(1<<20), conns)
	}
}

// At most maxInFlight POSTs are read and decoded at once; the others are
// answered 503 at once, so memory does not grow with the number of
// concurrent senders (defect: 64 concurrent 3 MiB POSTs reached 479 MiB).
func TestListenerConcurrentLargePosts(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Logger = quiet
	l.SendTimeout = 2 * time.Second
	out := make(chan []buffer.Record) // never read: every admitted POST waits
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Serve(ctx, out) }()
	defer func() { cancel(); <-errc }()

	body := bytes.Repeat([]byte(`[{"time":"2026-11-30T12:00:00Z","type":"function","record":"`+strings.Repeat("x", 1000)+`"}`), 1)
	var big bytes.Buffer
	big.WriteByte('[')
	for i := 0; big.Len() < 3<<20-2000; i++ {
		if i > 0 {
			big.WriteByte(',')
		}
		big.Write(body[1 : len(body)-1])
		big.WriteByte('}')
	}
	big.WriteByte(']')
	before := heapInUse()

	const posts = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	fast := 0
	var peak uint64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			peak = max(peak, m.HeapInuse)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for range posts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := http.Post(l.URI(), "application/json", bytes.NewReader(big.Bytes()))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable && time.Since(start) < time.Second {
				fast++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	grew := int64(peak) - int64(before)
	t.Logf("answers %v, %d refused at once; heap peak grew by %.1f MiB", codes, fast, float64(grew)/(1<<20))
	if fast < posts-maxInFlightForTest {
		t.Errorf("%d of %d POSTs were refused at once, want at least %d (only %d may be in flight)", fast, posts, posts-maxInFlightForTest, maxInFlightForTest)
	}
	if grew > 64<<20 {
		t.Errorf("heap peak grew by %.1f MiB for %d concurrent 3 MiB POSTs, want at most 64 MiB", float64(grew)/(1<<20), posts)
	}
}

const maxInFlightForTest = DefaultMaxInFlight
