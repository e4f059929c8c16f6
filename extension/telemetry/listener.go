package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// Defaults of the Listener's settings.
const (
	// DefaultMaxBody admits the largest body Lambda sends with
	// DefaultBuffering: up to 2*maxBytes of events plus their metadata.
	DefaultMaxBody = 2*1048576 + 1<<20
	// DefaultSendTimeout bounds how long a POST waits for room in the
	// output channel before it is answered 503. It is kept well under the
	// time a sender gives a POST: a 503 makes Lambda send the batch again
	// later, while a POST that times out after sluice took it would arrive
	// twice.
	DefaultSendTimeout = 500 * time.Millisecond
	// DefaultMaxInFlight bounds the POSTs read and decoded at once. Lambda
	// keeps one batch in flight per subscriber; a second covers a retry
	// overlapping it. More means a sender that is not Lambda, and each may
	// hold up to MaxBody of body plus its decoded records.
	DefaultMaxInFlight = 2
	// DefaultMaxPendingBytes bounds the bytes of telemetry in the
	// listener: the bodies being read and decoded, and those of the POSTs
	// answered 200 whose records wait in the output channel. A flood of
	// the largest bodies holds two, not the slots' two plus as many as
	// the channel holds (which took the listener-flood scenario over its
	// memory limit); Lambda's own POSTs, up to 2 MiB, rarely meet it.
	DefaultMaxPendingBytes = 8 << 20
	// DefaultBodyTimeout bounds reading one body. A sender frozen with the
	// environment mid-body times out at thaw and Lambda sends the batch
	// again.
	DefaultBodyTimeout = 10 * time.Second
)

// sandboxHost is the name Lambda resolves inside the execution environment
// to the address extensions listen on.
const sandboxHost = "sandbox.localdomain"

// Listener is the HTTP endpoint Lambda POSTs telemetry batches to. Create it
// with Listen before subscribing (Lambda checks the destination), then run
// Serve. Set the exported fields, if at all, before Serve.
type Listener struct {
	// MaxBody is the largest body accepted, in bytes; a larger one is
	// answered 413. Zero means DefaultMaxBody. Lambda never sends more than
	// 2*maxBytes plus metadata, so set it from the subscription's buffering.
	MaxBody int64
	// SendTimeout bounds the wait for room in the output channel. Zero
	// means DefaultSendTimeout.
	SendTimeout time.Duration
	// MaxInFlight bounds the POSTs being read, decoded or handed over at
	// once; past it a POST is answered 503 before its body is read. Zero
	// means DefaultMaxInFlight.
	MaxInFlight int
	// MaxPendingBytes bounds the body bytes of the POSTs being read or
	// decoded and of those whose records wait in Serve's output channel
	// (its capacity bounds their number); past it a POST is answered 503
	// before its body is read, unless nothing is pending. Zero means
	// DefaultMaxPendingBytes.
	MaxPendingBytes int64
	// BodyTimeout bounds reading one body. Zero means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Logger receives counts and problems, never record contents (the
	// extension's own output may be subscribed to). Nil means slog.Default().
	Logger *slog.Logger

	ln   net.Listener
	host string // the host part of the listen address

	decoders sync.Pool     // *Decoder
	room     chan struct{} // signalled by Taken
	roomOnce sync.Once

	posts, records, malformed, bytes, oversized, busy, readErrors atomic.Int64
	lastPost                                                      atomic.Int64 // unix nanoseconds; 0 before the first POST
}

// Stats are the Listener's counters since Listen.
type Stats struct {
	Posts      int64 // POST requests received, retries included
	Records    int64 // records handed to the output channel
	Malformed  int64 // bodies handed over as one TypeMalformed record
	Bytes      int64 // body bytes read, retries included
	Oversized  int64 // bodies over MaxBody, answered 413 and not archived
	Busy       int64 // POSTs answered 503: too many in flight, or the output channel stayed full
	ReadErrors int64 // bodies that could not be read (connection lost, body timeout)
}

// Listen opens the TCP listener on addr, e.g. "sandbox.localdomain:4243" in
// Lambda or "127.0.0.1:0" in tests.
func Listen(addr string) (*Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen for telemetry on %q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for telemetry on %q: %w", addr, err)
	}
	return &Listener{ln: ln, host: host}, nil
}

// URI is the destination to subscribe with: "http://HOST:PORT", where HOST
// is the listen host, or sandbox.localdomain when the listener is on all
// interfaces, and PORT is the port actually bound (for ":0").
func (l *Listener) URI() string {
	host := l.host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = sandboxHost
	}
	port := "0"
	if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Close releases the socket of a Listener that will not Serve (the
// subscription was refused). A Listener that serves closes it itself.
func (l *Listener) Close() error { return l.ln.Close() }

// Stats returns a snapshot of the counters.
func (l *Listener) Stats() Stats {
	return Stats{
		Posts:      l.posts.Load(),
		Records:    l.records.Load(),
		Malformed:  l.malformed.Load(),
		Bytes:      l.bytes.Load(),
		Oversized:  l.oversized.Load(),
		Busy:       l.busy.Load(),
		ReadErrors: l.readErrors.Load(),
	}
}

// LastPost is when a POST last arrived or was answered, or the zero time
// before the first. At shutdown, "no POST for N ms" is the sign that Lambda
// has delivered what it had.
func (l *Listener) LastPost() time.Time {
	n := l.lastPost.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Serve answers POSTs until ctx ends, sending each batch's records to out.
// Then it stops accepting, waits for the POSTs in flight (at most
// SendTimeout plus a grace period) and closes the listener. It returns nil
// after a shutdown caused by ctx, or the error that stopped the server.
// Serve may be called once.
func (l *Listener) Serve(ctx context.Context, out chan<- []buffer.Record) error {
	h := l.handler(out)
	srv := &http.Server{
		Handler: h,
		// Generous, not tight: the environment can be frozen between a
		// connection's accept and its headers, and a frozen sender is not a
		// slow client.
		ReadHeaderTimeout: time.Minute,
		// Idle keep-alive connections cost a goroutine and buffers each.
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve telemetry on %s: %w", l.ln.Addr(), err)
	case <-ctx.Done():
	}
	// From here on new POSTs are refused; the ones in flight finish and
	// hand their records over, which the caller keeps reading until Serve
	// returns.
	h.closing.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.sendTimeout+500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("shut down telemetry listener: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve telemetry on %s: %w", l.ln.Addr(), err)
	}
	return nil
}

// handler is the request handler with the settings resolved once, so that
// requests never read the exported fields.
type handler struct {
	l           *Listener
	out         chan<- []buffer.Record
	maxBody     int64
	sendTimeout time.Duration
	bodyTimeout time.Duration
	// slots holds one body buffer per POST that may be in flight: taking
	// one is taking a slot. A buffer stays with its slot between POSTs
	// instead of living in a sync.Pool, which every GC empties: refilling
	// it cost a reallocation of every body (12% of the bytes allocated at
	// 1,000 lines per invocation).
	slots   slots
	pending pending
	closing atomic.Bool
	log     *slog.Logger
}

func (l *Listener) handler(out chan<- []buffer.Record) *handler {
	h := &handler{l: l, out: out, maxBody: l.MaxBody, sendTimeout: l.SendTimeout, bodyTimeout: l.BodyTimeout, log: l.Logger}
	n := l.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	for range n {
		h.slots.put(new(body))
	}
	if h.bodyTimeout <= 0 {
		h.bodyTimeout = DefaultBodyTimeout
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.sendTimeout <= 0 {
		h.sendTimeout = DefaultSendTimeout
	}
	h.pending.max = l.MaxPendingBytes
	if h.pending.max <= 0 {
		h.pending.max = DefaultMaxPendingBytes
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// ServeHTTP answers a POST on any path: emulators post to "/" whatever path
// the subscribed URI had.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	l := h.l
	l.posts.Add(1)
	l.lastPost.Store(time.Now().UnixNano())
	defer func() { l.lastPost.Store(time.Now().UnixNano()) }()

	// An oversized body is refused, not archived. That is not a silent
	// loss: Lambda never sends more than 2*maxBytes plus metadata, so it
	// means a misconfigured limit or a sender that is not Lambda, and it is
	// counted (Stats.Oversized, in the totals and sluice.stats rows) and
	// logged at Error.
	if r.ContentLength > h.maxBody {
		h.tooLarge(w, r.ContentLength)
		return
	}
	// Memory is bounded by the POSTs in flight, not by the senders: a slot
	// is taken before a byte of body is read, and without one the answer is
	// an immediate 503 (Lambda retries later).
	if h.closing.Load() {
		h.refuse(w, "shutting down")
		return
	}
	b := h.slots.take()
	if b == nil {
		h.refuse(w, "too many telemetry POSTs in flight")
		return
	}
	held := true // the body, until the records own copies of it
	defer func() {
		if held {
			b.release()
		}
		h.slots.put(b)
	}()
	// So are the bytes: the body's, from now until its records are taken.
	charge := r.ContentLength
	if charge < 0 {
		charge = h.maxBody // chunked: the most it may be
	}
	if !h.admit(charge) {
		h.refuse(w, "too much telemetry in flight")
		return
	}
	queued := false
	defer func() {
		if !queued {
			h.pending.release(charge)
		}
	}()
	n, ok := h.readBody(w, r, b)
	if !ok {
		return
	}

	d, _ := l.decoders.Get().(*Decoder)
	if d == nil {
		d = new(Decoder)
	}
	recs, malformed := d.Decode(b.buf, time.Now())
	l.decoders.Put(d)
	// The records own copies of what they hold: the body's buffer is let
	// go of before the wait for room downstream, so a POST that waits holds
	// its records only.
	b.release()
	held = false

	if len(recs) > 0 && !h.send(r.Context(), recs, charge, &queued) {
		// Lambda retries a failed POST later, so the batch is delayed, not
		// lost; if the consumer stays behind, Lambda drops records itself
		// and says so in a platform.logsDropped event, which is archived.
		h.log.Warn("telemetry output full; answered 503 so Lambda retries the batch",
			"records", len(recs), "bytes", n, "waited", h.sendTimeout)
		h.refuse(w, "busy")
		return
	}
	l.records.Add(int64(len(recs)))
	if malformed {
		l.malformed.Add(1)
		h.log.Warn("telemetry POST body is not a JSON array of events; archived whole as "+TypeMalformed, "bytes", n)
	}
	w.WriteHeader(http.StatusOK)
}

// slots is a stack of free body buffers. Last in, first out: Lambda sends
// one POST at a time, so the buffer the last POST grew serves the next
// one and the others stay empty (a queue would grow every buffer in turn:
// ~1 MB more heap at 1,000 lines per invocation).
type slots struct {
	mu   sync.Mutex
	free []*body
}

// take returns a free buffer, or nil when every slot is taken.
func (s *slots) take() *body {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 {
		return nil
	}
	b := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return b
}

func (s *slots) put(b *body) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, b)
}

// body is a slot's body buffer.
type body struct{ buf []byte }

// Bounds of a body buffer's growth and of what a slot keeps between POSTs.
const (
	// minBodyGrow is the first allocation and the smallest growth step, so a
	// large body is read in few reads and few copies.
	minBodyGrow = 64 << 10
	// keepBodyCap is what a slot's buffer may keep between POSTs whatever
	// the last body was: a few times a typical POST (100 ms of a function
	// logging 3 MB/s). Beyond it the buffer is kept only while bodies fill
	// half of it, so one burst does not pin its size for good.
	keepBodyCap = 1 << 20
)

// release drops the body, and the buffer too when the body used less than
// half of a buffer larger than keepBodyCap.
func (b *body) release() {
	if cap(b.buf) > keepBodyCap && 2*len(b.buf) < cap(b.buf) {
		b.buf = nil
		return
	}
	b.buf = b.buf[:0]
}

// readBody reads the body within bodyTimeout into the slot's buffer, which
// grows with the bytes that arrive, never more than twice ahead of them: a
// sender that announces a large body and sends nothing holds nothing. With
// a Content-Length the last growth stops at it, so a 1.1 MiB body takes
// 1.1 MiB, not the 2 MiB of doubling. When it fails it has answered the
// request.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, b *body) (int64, bool) {
	l := h.l
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.bodyTimeout))
	limit := h.maxBody + 1 // one byte more tells a body over the limit
	if r.ContentLength >= 0 {
		limit = min(limit, r.ContentLength+1) // +1 sees the EOF in the same read
	}
	buf := b.buf[:0]
	var err error
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				if limit <= h.maxBody {
					// The sender sends more than it announced: read on up
					// to the limit, which net/http would refuse anyway.
					limit = h.maxBody + 1
				} else {
					break
				}
			}
			grown := make([]byte, len(buf), min(max(2*cap(buf), minBodyGrow), int(limit)))
			copy(grown, buf)
			buf = grown
		}
		var m int
		m, err = r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			break
		}
	}
	b.buf = buf
	n := int64(len(buf))
	l.bytes.Add(n)
	if err != nil && err != io.EOF {
		l.readErrors.Add(1)
		h.log.Warn("telemetry POST body unreadable; Lambda retries it", "bytes", n, "err", err)
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return n, false
	}
	if n > h.maxBody {
		h.tooLarge(w, n)
		return n, false
	}
	return n, true
}

// send hands recs to the output channel, and reports in queued whether
// they wait there with their charge (a buffered channel). When the channel
// is full it waits for room, but no longer than sendTimeout and the
// request's life: Lambda must get an answer quickly (a slow answer stalls
// its delivery), and a 503 makes it retry the batch later instead.
func (h *handler) send(ctx context.Context, recs []buffer.Record, charge int64, queued *bool) bool {
	if cap(h.out) == 0 {
		return h.sendUnbuffered(ctx, recs)
	}
	if h.trySend(recs, charge) {
		*queued = true
		return true
	}
	t := time.NewTimer(h.sendTimeout)
	defer t.Stop()
	// A POST waiting for room looks again when the caller says it took a
	// POST's records (Taken), and every queuePoll for a caller that does
	// not say (only under back-pressure; at most MaxInFlight POSTs wait).
	tick := time.NewTicker(queuePoll)
	defer tick.Stop()
	room := h.l.roomSignal()
	for {
		select {
		case <-room:
		case <-tick.C:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
		if h.trySend(recs, charge) {
			*queued = true
			h.l.Taken() // the other POST waiting may fit too
			return true
		}
	}
}

// queuePoll is how often a POST waiting for room in the output channel
// looks again when the caller does not call Taken.
const queuePoll = 2 * time.Millisecond

// Taken tells the listener that the caller took a POST's records from
// Serve's output channel: a POST waiting for room looks again at once,
// as it would if it were blocked on the channel itself.
func (l *Listener) Taken() {
	select {
	case l.roomSignal() <- struct{}{}:
	default:
	}
}

func (l *Listener) roomSignal() chan struct{} {
	l.roomOnce.Do(func() { l.room = make(chan struct{}, 1) })
	return l.room
}

// pending accounts for the bytes of telemetry in the listener: bodies
// admitted and not yet queued, and the charges of the POSTs in the output
// channel, oldest first. Only trySend sends, under mu, so the POSTs the
// caller has taken are the oldest, as many as the channel holds fewer
// than were sent.
type pending struct {
	mu      sync.Mutex
	charges []int64
	bytes   int64
	max     int64
}

// reconcile drops the charges of the POSTs the caller took from out.
// The caller holds mu.
func (p *pending) reconcile(inChannel int) {
	for taken := len(p.charges) - inChannel; taken > 0; taken-- {
		p.bytes -= p.charges[0]
		p.charges = p.charges[1:]
	}
}

func (p *pending) release(n int64) {
	p.mu.Lock()
	p.bytes -= n
	p.mu.Unlock()
}

// admit counts n bytes of body about to be read if they fit: always when
// nothing is pending.
func (h *handler) admit(n int64) bool {
	p := &h.pending
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reconcile(len(h.out))
	if p.bytes > 0 && p.bytes+n > p.max {
		return false
	}
	p.bytes += n
	return true
}

// trySend sends recs, admitted with charge, if the output channel has
// room, and reports whether it did; the charge then stays until the caller
// takes them.
func (h *handler) trySend(recs []buffer.Record, charge int64) bool {
	p := &h.pending
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reconcile(len(h.out))
	if len(h.out) == cap(h.out) {
		return false
	}
	h.out <- recs // there is room, and only trySend sends: it cannot block
	p.charges = append(p.charges, charge)
	return true
}

// sendUnbuffered hands recs to a caller reading an unbuffered channel,
// waiting as send does.
func (h *handler) sendUnbuffered(ctx context.Context, recs []buffer.Record) bool {
	t := time.NewTimer(h.sendTimeout)
	defer t.Stop()
	select {
	case h.out <- recs:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// refuse answers 503 so that Lambda sends the batch again later.
func (h *handler) refuse(w http.ResponseWriter, why string) {
	h.l.busy.Add(1)
	w.Header().Set("Retry-After", "1")
	http.Error(w, why, http.StatusServiceUnavailable)
}

func (h *handler) tooLarge(w http.ResponseWriter, n int64) {
	h.l.oversized.Add(1)
	h.log.Error("telemetry POST body over the limit; refused with 413 and not archived",
		"bytes_at_least", n, "limit", h.maxBody)
	http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
}
