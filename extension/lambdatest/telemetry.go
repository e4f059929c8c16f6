package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Telemetry API buffering limits and defaults (telemetry-api.html).
const (
	minMaxItems, maxMaxItems, defMaxItems    = 1000, 10000, 1000
	minMaxBytes, maxMaxBytes, defMaxBytes    = 262144, 1048576, 262144
	minTimeoutMs, maxTimeoutMs, defTimeoutMs = 25, 30000, 1000
	dropReason                               = "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
)

var errSubscriberStopped = errors.New("subscriber stopped")

// item is one record waiting for delivery, or a raw body from PostTelemetry.
type item struct {
	cat       string // "platform", "function" or "extension"; "" for raw
	data      []byte // the encoded {time, type, record}
	at        time.Time
	droppable bool
	raw       []byte
	done      chan error // raw only
}

// subscription is a validated Telemetry API subscription.
type subscription struct {
	url      string
	schema   string
	types    map[string]bool
	typeList []string
	maxItems int
	maxBytes int
	timeout  time.Duration
}

// parseSubscription validates a PUT /2022-07-01/telemetry body the way the
// Telemetry API does; every problem is reported.
func parseSubscription(body []byte) (*subscription, error) {
	var req struct {
		SchemaVersion string `json:"schemaVersion"`
		Destination   *struct {
			Protocol string `json:"protocol"`
			URI      string `json:"URI"`
		} `json:"destination"`
		Types     []string `json:"types"`
		Buffering *struct {
			MaxItems  *int `json:"maxItems"`
			MaxBytes  *int `json:"maxBytes"`
			TimeoutMs *int `json:"timeoutMs"`
		} `json:"buffering"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode subscription: %w", err)
	}
	var errs []error
	switch req.SchemaVersion {
	case "2022-12-13", "2025-01-29":
	default:
		errs = append(errs, fmt.Errorf("schemaVersion %q: want 2022-12-13 or 2025-01-29", req.SchemaVersion))
	}
	s := &subscription{schema: req.SchemaVersion, types: map[string]bool{}, maxItems: defMaxItems, maxBytes: defMaxBytes, timeout: defTimeoutMs * time.Millisecond}
	if len(req.Types) == 0 {
		errs = append(errs, errors.New("types: want one or more of platform, function, extension"))
	}
	for _, t := range req.Types {
		switch t {
		case "platform", "function", "extension":
			if !s.types[t] {
				s.typeList = append(s.typeList, t)
			}
			s.types[t] = true
		default:
			errs = append(errs, fmt.Errorf("types: %q is not platform, function or extension", t))
		}
	}
	if d := req.Destination; d == nil {
		errs = append(errs, errors.New("destination: missing"))
	} else if d.Protocol != "HTTP" {
		errs = append(errs, fmt.Errorf("destination.protocol %q: want HTTP (TCP is not emulated)", d.Protocol))
	} else if u, err := destinationURL(d.URI); err != nil {
		errs = append(errs, err)
	} else {
		s.url = u
	}
	if b := req.Buffering; b != nil {
		check := func(name string, v *int, lo, hi int, dst *int) {
			if v == nil {
				return
			}
			if *v < lo || *v > hi {
				errs = append(errs, fmt.Errorf("buffering.%s %d: want %d..%d", name, *v, lo, hi))
				return
			}
			*dst = *v
		}
		check("maxItems", b.MaxItems, minMaxItems, maxMaxItems, &s.maxItems)
		check("maxBytes", b.MaxBytes, minMaxBytes, maxMaxBytes, &s.maxBytes)
		ms := defTimeoutMs
		check("timeoutMs", b.TimeoutMs, minTimeoutMs, maxTimeoutMs, &ms)
		s.timeout = time.Duration(ms) * time.Millisecond
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// destinationURL maps a subscriber URI to the address to POST to:
// sandbox.localdomain is the sandbox itself, 127.0.0.1 here. Other hosts
// are refused so the emulator never sends logs off the machine.
func destinationURL(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("destination.URI %q: %w", uri, err)
	}
	if u.Scheme != "http" || u.Port() == "" {
		return "", fmt.Errorf("destination.URI %q: want http://sandbox.localdomain:PORT[/path]", uri)
	}
	switch host := u.Hostname(); host {
	case "sandbox.localdomain", "sandbox", "localhost":
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	default:
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("destination.URI %q: host must be sandbox.localdomain (or loopback)", uri)
		}
	}
	return u.String(), nil
}

// subscriber owns the queue of one telemetry subscription and the
// goroutine that batches and POSTs it. Lock order: Platform.mu, then s.mu;
// the dispatcher never takes Platform.mu.
type subscriber struct {
	p   *Platform
	ext string
	sub *subscription

	quit chan struct{} // closed by stop
	done chan struct{}

	mu         sync.Mutex
	changed    chan struct{}
	q          []item
	qBytes     int
	dropRecs   int64 // dropped, not yet reported in platform.logsDropped
	dropBytes  int64
	paused     bool // the environment is frozen
	flushing   bool // send without waiting for timeoutMs
	stopped    bool
	busy       bool // a batch is taken and not yet delivered or given up
	posting    bool // an HTTP request is in flight
	cancelPost context.CancelFunc
}

func (p *Platform) newSubscriber(ext string, sub *subscription) *subscriber {
	return &subscriber{p: p, ext: ext, sub: sub, quit: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
}

func (s *subscriber) bumpLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitLocked releases s.mu until something changes, extra fires or the
// subscriber stops.
func (s *subscriber) waitLocked(extra <-chan time.Time) {
	ch := s.changed
	s.mu.Unlock()
	select {
	case <-ch:
	case <-extra:
	case <-s.quit:
	}
	s.mu.Lock()
}

// enqueue adds a record, or drops it when the queue is full. It never blocks.
func (s *subscriber) enqueue(it item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		if it.done != nil {
			it.done <- errSubscriberStopped
		}
		return
	}
	if it.droppable && (len(s.q) >= s.p.cfg.MaxQueuedRecords || s.qBytes+len(it.data) > s.p.cfg.MaxQueuedBytes) {
		s.dropRecs++
		s.dropBytes += int64(len(it.data))
		s.p.stats.dropped.Add(1)
		return
	}
	s.reportDropsLocked()
	s.pushLocked(it)
}

// addDrops counts records this subscriber lost before it subscribed (the
// Init backlog was full).
func (s *subscriber) addDrops(n, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropRecs += n
	s.dropBytes += bytes
	s.p.stats.dropped.Add(n)
	s.reportDropsLocked()
}

func (s *subscriber) pushLocked(it item) {
	s.q = append(s.q, it)
	s.qBytes += len(it.data)
	if it.cat != "" {
		s.p.stats.queued.Add(1)
	}
	s.bumpLocked()
}

// reportDropsLocked queues platform.logsDropped for the records dropped
// since the last report. It is not droppable itself.
func (s *subscriber) reportDropsLocked() {
	if s.dropRecs == 0 {
		return
	}
	now := time.Now()
	rec, _ := json.Marshal(map[string]any{"reason": dropReason, "droppedRecords": s.dropRecs, "droppedBytes": s.dropBytes})
	s.p.stats.dropsReported.Add(s.dropRecs)
	s.dropRecs, s.dropBytes = 0, 0
	s.pushLocked(item{cat: "platform", data: encodeEvent(now, "platform.logsDropped", rec), at: now})
}

// run is the dispatcher: it batches by maxItems, maxBytes and timeoutMs
// and POSTs each batch until it is accepted or the subscriber stops.
func (s *subscriber) run() {
	defer close(s.done)
	for {
		batch, ok := s.next()
		if !ok {
			return
		}
		if batch[0].raw != nil {
			err := s.postOnce(batch[0].raw)
			batch[0].done <- err
		} else {
			s.send(batch)
		}
		s.mu.Lock()
		s.busy = false
		s.bumpLocked()
		s.mu.Unlock()
	}
}

// next waits for the next batch to send.
func (s *subscriber) next() ([]item, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stopped {
			return nil, false
		}
		var due <-chan time.Time
		if len(s.q) > 0 && !s.paused {
			if s.q[0].raw != nil {
				s.busy = true
				return s.takeLocked(1), true
			}
			wait := time.Until(s.q[0].at.Add(s.sub.timeout))
			if s.flushing || len(s.q) >= s.sub.maxItems || s.qBytes >= s.sub.maxBytes || wait <= 0 {
				s.busy = true
				batch := s.takeBatchLocked()
				s.reportDropsLocked()
				return batch, true
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		s.waitLocked(due)
	}
}

// takeBatchLocked takes up to maxItems records of at most maxBytes in all
// (at least one record, however large), stopping before a raw body.
func (s *subscriber) takeBatchLocked() []item {
	n, size := 0, 0
	for n < len(s.q) && n < s.sub.maxItems {
		it := s.q[n]
		if it.raw != nil || (n > 0 && size+len(it.data) > s.sub.maxBytes) {
			break
		}
		size += len(it.data)
		n++
	}
	return s.takeLocked(n)
}

func (s *subscriber) takeLocked(n int) []item {
	batch := slices.Clone(s.q[:n])
	for _, it := range batch {
		s.qBytes -= len(it.data)
	}
	clear(s.q[:n])
	s.q = s.q[n:]
	if len(s.q) == 0 {
		s.q = nil
	}
	s.bumpLocked()
	return batch
}

// send POSTs one batch, retrying with backoff until it is accepted.
func (s *subscriber) send(batch []item) {
	size := 2 + len(batch)
	for _, it := range batch {
		size += len(it.data)
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, it := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it.data...)
	}
	body = append(body, ']')
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.p.stats.postRetries.Add(1)
		}
		err := s.postOnce(body)
		if err == nil {
			s.p.stats.delivered.Add(int64(len(batch)))
			return
		}
		if errors.Is(err, errSubscriberStopped) {
			s.p.stats.undelivered.Add(int64(len(batch)))
			return
		}
		t := time.NewTimer(min(25*time.Millisecond<<min(attempt, 6), time.Second))
		select {
		case <-t.C:
		case <-s.quit:
			t.Stop()
		}
	}
}

// postOnce makes one POST once the environment is thawed.
func (s *subscriber) postOnce(body []byte) error {
	s.mu.Lock()
	for s.paused && !s.stopped {
		s.waitLocked(nil)
	}
	if s.stopped {
		s.mu.Unlock()
		return errSubscriberStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.p.cfg.PostTimeout)
	s.posting, s.cancelPost = true, cancel
	s.mu.Unlock()

	err := s.post(ctx, body)

	s.mu.Lock()
	cancel()
	s.posting, s.cancelPost = false, nil
	s.bumpLocked()
	s.mu.Unlock()
	return err
}

func (s *subscriber) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sub.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post telemetry to %s: %w", s.sub.url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.p.stats.posts.Add(1)
	resp, err := s.p.client.Do(req)
	if err != nil {
		return fmt.Errorf("post telemetry to %s: %w", s.sub.url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post telemetry to %s: status %d", s.sub.url, resp.StatusCode)
	}
	return nil
}

func (s *subscriber) setPaused(paused bool) {
	s.mu.Lock()
	s.paused = paused
	s.bumpLocked()
	s.mu.Unlock()
}

// waitNotPosting waits until no POST is in flight, up to the deadline.
func (s *subscriber) waitNotPosting(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.posting {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			return false
		}
		s.mu.Lock()
	}
	return true
}

// cancelInflight aborts the POST in flight; its batch is sent again after thaw.
func (s *subscriber) cancelInflight() {
	s.mu.Lock()
	if s.cancelPost != nil {
		s.cancelPost()
	}
	s.mu.Unlock()
}

func (s *subscriber) startFlush() {
	s.mu.Lock()
	s.flushing = true
	s.reportDropsLocked()
	s.bumpLocked()
	s.mu.Unlock()
}

// waitFlushed waits until the queue is delivered, up to the deadline.
func (s *subscriber) waitFlushed(ctx context.Context, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.stopped && (len(s.q) > 0 || s.busy) {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			return
		case <-ctx.Done():
			s.mu.Lock()
			return
		case <-s.p.closed:
			s.mu.Lock()
			return
		}
		s.mu.Lock()
	}
}

// stop ends the dispatcher; what is still queued is counted as undelivered.
func (s *subscriber) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopped = true
	left := s.q
	s.q = nil
	if s.cancelPost != nil {
		s.cancelPost()
	}
	close(s.quit)
	s.bumpLocked()
	s.mu.Unlock()
	<-s.done
	for _, it := range left {
		if it.done != nil {
			it.done <- errSubscriberStopped
		} else {
			s.p.stats.undelivered.Add(1)
		}
	}
}

// emitLocked hands a record to the subscribers of its category (and to the
// Init backlog). p.mu must be held.
func (p *Platform) emitLocked(e *env, it item) {
	if e.phase == phaseDead {
		return
	}
	if e.phase == phaseInit {
		if !it.droppable || len(e.backlog) < p.cfg.MaxQueuedRecords {
			e.backlog = append(e.backlog, it)
		} else {
			e.backlogDrops++
			e.backlogBytes += int64(len(it.data))
		}
	}
	for _, s := range e.subs {
		if s.sub.types[it.cat] {
			s.enqueue(it)
		}
	}
}

// emitPlatformLocked emits a platform.* event. p.mu must be held.
func (p *Platform) emitPlatformLocked(e *env, t time.Time, typ string, rec any) {
	b, _ := json.Marshal(rec) // maps of strings, numbers and slices always encode
	p.emitLocked(e, item{cat: "platform", data: encodeEvent(t, typ, b), at: time.Now()})
}
