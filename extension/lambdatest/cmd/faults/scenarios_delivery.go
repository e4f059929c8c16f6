package main

// Scenarios of the durable delivery path: telemetry that arrives while
// sluice shuts down, evictions to stdout that are slow while invocation
// deadlines pass, spill entries sluice cannot use, and a flood of POSTs
// against its listener.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest/faultproxy"
)

// extensionName is sluice's name on the platform: its executable's file
// name, as the Makefile builds it.
const extensionName = "sluice"

// lateTelemetryAtShutdown: the runtime logs from its SIGTERM handler, and
// telemetry keeps coming straight to sluice's listener while the platform
// runs the Shutdown phase, across the SHUTDOWN event and until sluice stops
// listening. Every line sluice answered 200 must be archived or in the
// fallback; a line it refused stays with the sender and must not be.
func lateTelemetryAtShutdown() scenario {
	const (
		sigtermLines = 2000
		lateSenders  = 3
		lateLines    = 10 // per body
	)
	return scenario{
		name: "late-telemetry-at-shutdown",
		vars: []string{"SAMPLE_SIGTERM_LINES=" + strconv.Itoa(sigtermLines)},
		run: func(r *run) error {
			if err := r.invokeN(5, steady); err != nil {
				return err
			}
			// The platform counts these among the function lines; this is
			// for the cross-check of lines found nowhere.
			r.ledger.wrote(written{RequestID: "sigterm", Lines: sigtermLines})
			pst, err := r.newPoster()
			if err != nil {
				return err
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Senders back to back, so that a POST is in flight at every
			// step of sluice's shutdown; once sluice has stopped listening
			// they slow down.
			for w := range lateSenders {
				wg.Go(func() {
					for k := 0; ; k++ {
						select {
						case <-stop:
							return
						default:
						}
						if pst.post(r.ctx, fmt.Sprintf("late%d.%d", w, k), lateLines, 0, 2*time.Second) == unsure && r.wait(5*time.Millisecond) != nil {
							return
						}
					}
				})
			}
			err = r.shutdown()
			close(stop)
			wg.Wait()
			if err != nil {
				return err
			}
			sum := pst.summary()
			at := r.out.sawShutdown()
			after := pst.ackedSince(at)
			r.note("posted during the Shutdown phase: %s; %d bodies answered 200 after sluice logged shutdown", sum, after)
			if at.IsZero() || after == 0 {
				return errors.New("no POST was answered 200 after sluice logged shutdown: the late path was not exercised")
			}
			return nil
		},
	}
}

// slowEvictionDeadline: a log storm against a slow sink, with a 1 MiB
// in-memory cap and no spill, so that held batches are evicted to stdout
// (8 MiB of rows each: slow) while uploads are cut by invocation deadlines
// and the pipeline's requests time out. Then the sink recovers. The
// sample's lines compress a hundredfold, so that it would take minutes of
// them to pass the cap: bodies of incompressible lines posted straight to
// the listener during the storm fill batches that stay large compressed.
func slowEvictionDeadline() scenario {
	const timeout = 1500 * time.Millisecond
	return scenario{
		name:    "slow-eviction-deadline",
		vars:    []string{"SLUICE_BUFFER_MAX_BYTES=1MiB", "SLUICE_SPILL_MAX_BYTES=0", "SLUICE_BATCH_MAX_BYTES=8MiB", "GODEBUG=gctrace=1"},
		timeout: timeout,
		// Longer than any window: every upload of the storm is cut.
		initial: latency(2 * time.Second),
		run: func(r *run) error {
			pst, err := r.newPoster()
			if err != nil {
				return err
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					// About 1 MiB of text that does not compress below half.
					pst.postNoise(r.ctx, fmt.Sprintf("noise.%d", k), 1000, 1000, 2*time.Second)
					if r.wait(150*time.Millisecond) != nil {
						return
					}
				}
			})
			atDeadline := 0
			for range 12 {
				// The function runs 70% of its timeout: an upload still
				// running at its end may hold it a quarter of that, which
				// reaches sluice's deadline margin.
				res, err := r.invoke(request{Lines: 5000, JSON: true, SleepMs: 1050})
				if err != nil {
					break
				}
				// sluice gives its window up 200 ms before the deadline.
				if timeout-(res.Duration+res.PostRuntime) < 300*time.Millisecond {
					atDeadline++
				}
			}
			close(stop)
			wg.Wait()
			if err != nil {
				return err
			}
			r.note("storm: %d invocations ended at sluice's deadline margin; posted %s", atDeadline, pst.summary())
			if atDeadline == 0 {
				return errors.New("no invocation reached its deadline: the storm did not exercise the deadline path")
			}
			if err := r.fault(faultproxy.Fault{}); err != nil {
				return err
			}
			return r.invokeN(10, steady)
		},
		check: func(r *run) (string, error) {
			evicted, err := totalsSum(r.out.totals(), "s3", "batches_evicted_memory")
			timeouts := r.statuses["timeout"]
			extra := fmt.Sprintf("batches_evicted_memory=%d timeouts=%d", evicted, timeouts)
			switch {
			case err != nil:
			case evicted == 0:
				err = errors.New("no batch was evicted from memory: the eviction path was not exercised")
			case timeouts > 0:
				// The function sleeps 70% of its timeout: only sluice can
				// have held the invocation past its deadline.
				err = fmt.Errorf("sluice made %d invocations time out", timeouts)
			}
			return extra, err
		},
	}
}

// badSpillEntries: before sluice starts, its spill directory holds a valid
// batch an earlier process left, and four entries named like batches that
// it cannot use: a symlink, a FIFO, a truncated file and a file that
// vanishes before it is read. The sink is down at first, so that the spill
// fills to its small cap and eviction meets the bad entries, then it
// recovers. The valid batch is delivered, nothing from the bad ones is, the
// four are counted in spill_entries_bad, and no invocation is held up.
func badSpillEntries() scenario {
	var vanish string
	return scenario{
		name: "bad-spill-entries",
		// Small enough that the outage's batches push the planted ones out.
		vars:    []string{"SLUICE_SPILL_MAX_BYTES=24KiB"},
		initial: faultproxy.Fault{Kind: faultproxy.Down},
		setup: func(r *run) error {
			var err error
			vanish, err = plantSpill(r.spillDir, filepath.Dir(r.spillDir), r.ledger)
			return err
		},
		run: func(r *run) error {
			// sluice adopted the entry at Init; it goes before sluice reads it.
			if err := os.Remove(vanish); err != nil {
				return err
			}
			r.note("removed %s", filepath.Base(vanish))
			if err := r.invokeFor(6*time.Second, 200*time.Millisecond, steady); err != nil {
				return err
			}
			if err := r.fault(faultproxy.Fault{}); err != nil {
				return err
			}
			return r.invokeFor(3*time.Second, 200*time.Millisecond, steady)
		},
		check: func(r *run) (string, error) {
			bad, err := totalsSum(r.out.totals(), "s3", "spill_entries_bad")
			aside, _ := os.ReadDir(filepath.Join(r.spillDir, "bad"))
			extra := fmt.Sprintf("spill_entries_bad=%d moved_aside=%d invoke_max_ms=%d", bad, len(aside), r.durMax.Milliseconds())
			switch {
			case err != nil:
			case bad != 4:
				err = fmt.Errorf("spill_entries_bad=%d, want 4 (symlink, FIFO, truncated, vanished)", bad)
			case len(aside) != 3:
				err = fmt.Errorf("%d entries moved aside, want 3 (symlink, FIFO, truncated)", len(aside))
			case r.durMax > time.Second:
				err = fmt.Errorf("an invocation took %v: sluice spun on the spill", r.durMax)
			}
			return extra, err
		},
	}
}

// plantSpill fills dir with what an earlier process could have left: a
// valid batch (its lines must be delivered) and four entries named like
// batches that sluice must set aside and count. Lines in the bad entries
// are recorded as refused: delivering any is a fault. It returns the path
// of the entry the scenario removes once sluice has adopted it.
func plantSpill(dir, outside string, l *ledger) (vanish string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	old := time.Now().Add(-time.Hour)
	good := spillBatch("planted", 100, old)
	truncated := spillBatch("truncated", 100, old.Add(time.Second))
	vanished := spillBatch("vanished", 100, old.Add(2*time.Second))
	linked := spillBatch("symlinked", 100, old.Add(3*time.Second))
	l.postedBody(posted{Prefix: "planted", N: 100, Answer: acked})
	for _, p := range []string{"truncated", "vanished", "symlinked"} {
		l.postedBody(posted{Prefix: p, N: 100, Answer: refused})
	}
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(dir, name), data, 0o600)
	}
	if err := write(spillName(good, "planted", 1), good.Data); err != nil {
		return "", err
	}
	if err := write(spillName(truncated, "planted", 2), truncated.Data[:len(truncated.Data)/2]); err != nil {
		return "", err
	}
	vanish = filepath.Join(dir, spillName(vanished, "planted", 3))
	if err := os.WriteFile(vanish, vanished.Data, 0o600); err != nil {
		return "", err
	}
	// The symlink points at a valid batch outside the spill: following it
	// would upload lines that were never sent.
	target := filepath.Join(outside, "symlinked.json.zst")
	if err := os.WriteFile(target, linked.Data, 0o600); err != nil {
		return "", err
	}
	if err := os.Symlink(target, filepath.Join(dir, spillName(linked, "planted", 4))); err != nil {
		return "", err
	}
	// Reading a FIFO nobody writes to blocks forever.
	if err := syscall.Mkfifo(filepath.Join(dir, spillName(linked, "planted", 5)), 0o600); err != nil {
		return "", fmt.Errorf("mkfifo: %w", err)
	}
	return vanish, nil
}

// spillBatch seals n function lines "sample id=<prefix>-<i>" into a batch
// the way sluice does.
func spillBatch(prefix string, n int, at time.Time) *buffer.Batch {
	bt := buffer.NewBatcher(buffer.Meta{Function: "faults", Version: "$LATEST"}, buffer.Limits{}, func() time.Time { return at })
	for i := range n {
		bt.Add(&buffer.Record{Time: at, Type: "function", Level: "INFO",
			Message: fmt.Sprintf("sample id=%s-%d left in the spill by an earlier process", prefix, i)})
	}
	return bt.Seal()
}

// spillName is the name sluice gives a spilled batch (sinks/spill.go):
// <env>-<seq>-<start unix ms>-<records>-<lines>-<raw bytes><ext>.
func spillName(b *buffer.Batch, env string, seq int) string {
	return fmt.Sprintf("%s-%d-%d-%d-%d-%d%s", env, seq, b.Start.UnixMilli(), b.Records, b.Lines, b.RawBytes, b.Ext)
}

// A flood body: floodLines lines of floodPad bytes of text each, just under
// the 3 MiB sluice accepts in one POST.
const (
	floodLines = 2600
	floodPad   = 1000
)

// listenerFlood: while invocations run, 100 connections send a POST's
// headers announcing 3 MB and never the body, and waves of 64 concurrent
// POSTs of 3 MB of well-formed telemetry hit sluice's listener. Every line
// answered 200 must be delivered, none refused may be, and sluice's peak
// RSS must stay within its memory limit.
func listenerFlood() scenario {
	const (
		memoryLimitMB = 48 // SLUICE_MEMORY_LIMIT_MB's default
		conns         = 100
		waves         = 3
		perWave       = 64
	)
	return scenario{
		name: "listener-flood",
		rss:  true,
		// Batches twice the default size: the flood's acknowledged lines
		// are a few 8 MiB objects, not hundreds of 64 KiB ones, and the
		// larger open batch is the harder case for the memory limit.
		vars:    []string{fmt.Sprintf("SLUICE_MEMORY_LIMIT_MB=%d", memoryLimitMB), "SLUICE_BATCH_MAX_BYTES=8MiB"},
		timeout: 5 * time.Second,
		run: func(r *run) error {
			pst, err := r.newPoster()
			if err != nil {
				return err
			}
			// Invocations go on, back to back, while the flood runs.
			stop := make(chan struct{})
			invoked := make(chan error, 1)
			go func() { invoked <- r.invokeUntil(stop, 100*time.Millisecond, steady) }()

			hold, err := holdHeaders(r.ctx, pst.addr, conns, 3_000_000)
			if err == nil {
				r.note("%d connections sent headers only", conns)
				for w := range waves {
					if w == waves-1 {
						hold() // the last wave meets a listener free of them
						r.note("header-only connections closed")
					}
					var wg sync.WaitGroup
					for k := range perWave {
						wg.Go(func() {
							pst.post(r.ctx, fmt.Sprintf("flood%d.%d", w, k), floodLines, floodPad, 20*time.Second)
						})
					}
					wg.Wait()
					r.note("wave %d: %s; sluice's peak RSS so far %.1f MB", w+1, pst.summary(), r.peakRSSMB())
				}
			}
			// Invocations go on for a while: their delivery windows are
			// when sluice uploads what it acknowledged.
			if err == nil {
				err = r.wait(3 * time.Second)
			}
			close(stop)
			if ierr := <-invoked; err == nil {
				err = ierr
			}
			if err == nil && pst.count(acked) == 0 {
				err = errors.New("no flood POST was answered 200")
			}
			return err
		},
		check: func(r *run) (string, error) {
			if mb := float64(r.rssPeakKB) / 1024; mb > memoryLimitMB {
				return "", fmt.Errorf("peak RSS %.1f MB over SLUICE_MEMORY_LIMIT_MB=%d", mb, memoryLimitMB)
			}
			return "", nil
		},
	}
}

// peakRSSMB is the extension's peak RSS so far, in MB (0 when unknown).
func (r *run) peakRSSMB() float64 {
	kb, _ := vmHWM(r.p.PIDs()[extensionName])
	return float64(kb) / 1024
}

// invokeUntil invokes one invocation after another, period apart at
// most, until stop is closed.
func (r *run) invokeUntil(stop <-chan struct{}, period time.Duration, req request) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := r.invoke(req); err != nil {
			return err
		}
		if err := r.wait(period); err != nil {
			return err
		}
	}
}

// holdHeaders opens n connections to addr that each send a POST's headers
// announcing size bytes of body, and never the body. The returned func
// closes them.
func holdHeaders(ctx context.Context, addr string, n, size int) (func(), error) {
	var d net.Dialer
	conns := make([]net.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, size)
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("connect to the listener: %w", err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, head); err != nil {
			closeAll()
			return nil, fmt.Errorf("send headers to the listener: %w", err)
		}
	}
	return closeAll, nil
}

// poster sends telemetry bodies straight to sluice's listener and records
// each answer in the ledger.
type poster struct {
	r      *run
	url    string
	addr   string // host:port of url
	client *http.Client

	mu     sync.Mutex
	bodies map[answer]int
	lines  map[answer]int
	acks   []time.Time // when each acked body was answered
}

// newPoster finds sluice's listener from the subscription the platform
// recorded.
func (r *run) newPoster() (*poster, error) {
	dest := r.p.TelemetryDestinations()[extensionName]
	if dest == "" {
		return nil, fmt.Errorf("no telemetry subscription from %s", extensionName)
	}
	u, err := url.Parse(dest)
	if err != nil {
		return nil, fmt.Errorf("telemetry destination %q: %w", dest, err)
	}
	return &poster{
		r:      r,
		url:    dest,
		addr:   u.Host,
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}},
		bodies: map[answer]int{},
		lines:  map[answer]int{},
	}, nil
}

// post sends n lines "<prefix>-<i>", each message padded by pad bytes, as
// one body, and records the answer.
func (p *poster) post(ctx context.Context, prefix string, n, pad int, timeout time.Duration) answer {
	return p.postBody(ctx, prefix, n, linesBody(prefix, n, pad, time.Now()), timeout)
}

// postNoise is post with random hexadecimal padding, which compresses to
// about half.
func (p *poster) postNoise(ctx context.Context, prefix string, n, pad int, timeout time.Duration) answer {
	return p.postBody(ctx, prefix, n, noiseBody(prefix, n, pad, time.Now()), timeout)
}

func (p *poster) postBody(ctx context.Context, prefix string, n int, body []byte, timeout time.Duration) answer {
	a := p.send(ctx, body, timeout)
	p.r.ledger.postedBody(posted{Prefix: prefix, N: n, Answer: a})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bodies[a]++
	p.lines[a] += n
	if a == acked {
		p.acks = append(p.acks, time.Now())
	}
	return a
}

func (p *poster) send(ctx context.Context, body []byte, timeout time.Duration) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A reset environment has a new sluice on a new port.
	dest := p.url
	if d := p.r.p.TelemetryDestinations()[extensionName]; d != "" {
		dest = d
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest, bytes.NewReader(body))
	if err != nil {
		return unsure
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return unsure
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return answerOf(resp.StatusCode)
}

// answerOf classifies a status code.
func answerOf(code int) answer {
	if code/100 == 2 {
		return acked
	}
	return refused
}

func (p *poster) count(a answer) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bodies[a]
}

// ackedSince counts the bodies answered 200 at or after t.
func (p *poster) ackedSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.acks {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

func (p *poster) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%d bodies (%d lines) answered 200, %d (%d lines) refused, %d (%d lines) unanswered",
		p.bodies[acked], p.lines[acked], p.bodies[refused], p.lines[refused], p.bodies[unsure], p.lines[unsure])
}

// linesBody is a telemetry body of n function records in the JSON log
// format, "sample id=<prefix>-<i>" followed by pad bytes of text each.
func linesBody(prefix string, n, pad int, at time.Time) []byte {
	filler := make([]byte, pad)
	for i := range filler {
		filler[i] = byte('a' + i%26)
	}
	return telemetryBody(prefix, n, pad, at, func(dst []byte) []byte { return append(dst, filler...) })
}

// noiseBody is linesBody with random hexadecimal padding.
func noiseBody(prefix string, n, pad int, at time.Time) []byte {
	const hex = "0123456789abcdef"
	return telemetryBody(prefix, n, pad, at, func(dst []byte) []byte {
		for range pad {
			dst = append(dst, hex[rand.IntN(len(hex))])
		}
		return dst
	})
}

func telemetryBody(prefix string, n, pad int, at time.Time, fill func([]byte) []byte) []byte {
	ts := at.UTC().Format("2006-01-02T15:04:05.000Z")
	b := make([]byte, 0, n*(pad+160)+2)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"time":%q,"type":"function","record":{"timestamp":%q,"level":"INFO","requestId":%q,"message":"sample id=%s-%d `,
			ts, ts, prefix, prefix, i)
		b = fill(b)
		b = append(b, `"}}`...)
	}
	return append(b, ']')
}

// totalsSum adds up one counter over sluice's totals lines (one per
// process), found by its path in the JSON line: ("s3",
// "spill_entries_bad"). A counter missing from a line is an error, so that
// a renamed counter fails the scenario instead of reading as zero.
func totalsSum(lines []string, path ...string) (int64, error) {
	if len(lines) == 0 {
		return 0, errors.New("sluice logged no totals")
	}
	var sum int64
	for _, line := range lines {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			return 0, fmt.Errorf("totals line %.100q: %w", line, err)
		}
		for _, k := range path {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		n, ok := v.(float64)
		if !ok {
			return 0, fmt.Errorf("totals line %.100q has no number at %v", line, path)
		}
		sum += int64(n)
	}
	return sum, nil
}
