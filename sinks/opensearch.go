package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sluice-logs/sluice/buffer"
)

// Defaults of OpenSearchOptions.
const (
	// DefaultBulkBytes bounds a _bulk body before compression. Domains on
	// small instance types refuse bodies over 10 MiB (413); half of that
	// leaves room and keeps one request's memory small.
	DefaultBulkBytes = 5 << 20
	// DefaultAttemptTimeout bounds one HTTP request, so that a hung
	// connection cannot use up the whole delivery budget.
	DefaultAttemptTimeout = 30 * time.Second
	defaultMinBackoff     = 100 * time.Millisecond
	defaultMaxBackoff     = 5 * time.Second
	// hurriedBackoff bounds the retry waits once the Durable closes.
	hurriedBackoff = 50 * time.Millisecond
)

// OpenSearchOptions configures an OpenSearch sink. Endpoint, Index and
// DeadLetter are required.
type OpenSearchOptions struct {
	// Endpoint is the cluster's base URL, https://HOST[:PORT] (http only
	// for local clusters, see ParseOpenSearchURL).
	Endpoint string
	// Index names the index (or data stream) of each batch from its UTC
	// start time; a batch never spans two UTC hours, so all its documents
	// go to one index.
	Index IndexPattern
	// Serverless is for OpenSearch Serverless collections, which refuse
	// client document ids: documents are sent without _id. A batch
	// written again after a Write that did not finish sends only the rows
	// no attempt of this sink saw indexed (see OpenSearch); a request cut
	// before its answer came, or a batch sent again by another process
	// (replayed from a spill), can still index some twice.
	Serverless bool
	// MinLevel skips rows whose level is below it (counted in
	// BelowLevel). Rows without a level (platform.* and sluice.* rows) are
	// always sent. The zero value, buffer.LevelTrace, sends everything.
	MinLevel buffer.Level
	// BulkBytes bounds each _bulk body before gzip (default
	// DefaultBulkBytes). A document larger than it is sent alone.
	BulkBytes int
	// Function and Env make document ids unique across functions and
	// execution environments sharing an index: a document's id is
	// FUNCTION.START-ENV-SEQ.ROW, from its batch (whose own Env wins when
	// set) and its row number, so a batch sent again never duplicates.
	Function string
	Env      string
	// Auth adds credentials to each request (SigV4 or basic); nil sends
	// none.
	Auth OpenSearchAuth
	// DeadLetter takes the rows OpenSearch refuses for good (a mapping
	// error, a malformed document): each as a row of type
	// "sluice.deadletter" carrying the original row and the reason.
	DeadLetter Sink
	// HTTPClient sends the requests; nil means a client with TLS verified
	// against the system roots and no timeout of its own (each attempt is
	// bounded by AttemptTimeout and ctx).
	HTTPClient *http.Client
	// AttemptTimeout bounds one request (default DefaultAttemptTimeout).
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a retry (defaults
	// 100ms and 5s); each wait is drawn at random up to an exponentially
	// growing cap (full jitter).
	MinBackoff, MaxBackoff time.Duration
	// Log receives a Warn per retry; nil discards.
	Log *slog.Logger
}

// OpenSearchAuth adds credentials to a request whose body is final.
type OpenSearchAuth interface {
	Authorize(r *http.Request) error
}

// OpenSearchStats are an OpenSearch sink's counters since it was made.
type OpenSearchStats struct {
	Indexed    int64 // documents created (201)
	Duplicates int64 // documents already there from an earlier attempt (409 on create)
	Retried    int64 // items sent again after a 429 or 5xx of their own
	// AlreadyIndexed counts rows not sent again because an earlier Write
	// of their batch saw them indexed (Serverless only: with ids, a row
	// sent again is a 409, counted in Duplicates).
	AlreadyIndexed int64
	DeadLettered   int64 // rows refused for good, handed to the dead-letter sink
	BelowLevel     int64 // rows skipped below MinLevel
	Requests       int64 // _bulk requests sent, retries included
	Splits         int64 // requests split in two after a 413
	WireBytes      int64 // compressed request bytes sent
	BulkBytes      int64 // uncompressed request bytes sent
}

// OpenSearch is a Sink that indexes the rows of each batch with _bulk
// create requests. It checks every item's result: items refused with 429
// or 5xx are sent again (alone, with backoff and jitter, until ctx ends),
// items refused for good go to the dead-letter sink, and a 409 on create is
// an earlier attempt's document. Write returns nil once every row is
// indexed or dead-lettered.
//
// Documents sent to a Serverless collection have no ids, so a second
// create of a row is a second document. The sink remembers which rows of
// a batch were indexed when a Write of it returns an error, and a later
// Write of the same batch (same Start, Env and Seq) skips them.
type OpenSearch struct {
	o      OpenSearchOptions
	bulk   string // the _bulk URL
	client *http.Client
	closed atomic.Bool
	done   indexedRows // Serverless only

	indexed, duplicates, retried, dead, below atomic.Int64
	requests, splits, wire, raw, already      atomic.Int64

	gz sync.Pool // *gzip.Writer
}

// NewOpenSearch returns a sink for o. It does no I/O.
func NewOpenSearch(o OpenSearchOptions) (*OpenSearch, error) {
	var errs []error
	if o.Endpoint == "" {
		errs = append(errs, errors.New("no endpoint"))
	}
	if o.Index.Pattern == "" {
		errs = append(errs, errors.New("no index"))
	}
	if o.DeadLetter == nil {
		errs = append(errs, errors.New("no dead-letter sink"))
	}
	if !o.MinLevel.Valid() {
		errs = append(errs, fmt.Errorf("min level %v is not a level", o.MinLevel))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("opensearch sink: %w", err)
	}
	if o.BulkBytes <= 0 {
		o.BulkBytes = DefaultBulkBytes
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = defaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(defaultMaxBackoff, o.MinBackoff)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Transport: newOpenSearchTransport()}
	}
	return &OpenSearch{o: o, bulk: trimSlash(o.Endpoint) + "/_bulk", client: client}, nil
}

// newOpenSearchTransport is http.DefaultTransport's settings with TLS
// verified against the system roots (never skipped) and compressed
// responses left to the caller: _bulk answers are small.
func newOpenSearchTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = nil
	t.Proxy = nil // the function's HTTPS_PROXY would route logs through it
	return t
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// Stats returns the counters so far.
func (s *OpenSearch) Stats() OpenSearchStats {
	return OpenSearchStats{
		Indexed:        s.indexed.Load(),
		Duplicates:     s.duplicates.Load(),
		Retried:        s.retried.Load(),
		AlreadyIndexed: s.already.Load(),
		DeadLettered:   s.dead.Load(),
		BelowLevel:     s.below.Load(),
		Requests:       s.requests.Load(),
		Splits:         s.splits.Load(),
		WireBytes:      s.wire.Load(),
		BulkBytes:      s.raw.Load(),
	}
}

// Close marks the sink closed; later writes fail. It is idempotent. The
// dead-letter sink belongs to the caller and stays open.
func (s *OpenSearch) Close(context.Context) error {
	s.closed.Store(true)
	if t, ok := s.client.Transport.(*http.Transport); ok && s.o.HTTPClient == nil {
		t.CloseIdleConnections()
	}
	return nil
}

// ErrParquetToOpenSearch is returned for a Parquet batch: the OpenSearch
// sink indexes NDJSON rows and does not decode Parquet files.
var ErrParquetToOpenSearch = errors.New("the OpenSearch sink takes NDJSON batches (SLUICE_FORMAT=ndjson), not Parquet")

// Write indexes the rows of b. It streams: rows are decoded, turned into
// documents and sent in bodies of at most BulkBytes, so besides the batch
// only one body and its pending items are in memory.
//
// It returns nil when every row is indexed (or was by an earlier attempt),
// skipped below MinLevel, or handed to the dead-letter sink. Otherwise the
// error says what is left; Retryable tells whether trying the batch again
// may help (ctx ended with items pending, 429, 5xx, network) or not (403,
// a damaged or Parquet batch).
func (s *OpenSearch) Write(ctx context.Context, b *buffer.Batch) (err error) {
	index := s.o.Index.Name(b.Start)
	op := fmt.Sprintf("bulk %s batch %d", index, b.Seq)
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if b.Ext == buffer.ExtParquet || buffer.DetectFormat(b.Data) == buffer.FormatParquet {
		return fmt.Errorf("%s: %w", op, ErrParquetToOpenSearch)
	}
	w := &bulkWrite{s: s, op: op, idBase: s.idBase(b)}
	if s.o.Serverless {
		// The rows an earlier Write saw indexed are this Write's until it
		// returns: kept again if it fails, forgotten once all are done.
		key := s.batchKey(b)
		w.done = s.done.take(key)
		defer func() {
			if err != nil {
				s.done.keep(key, w.done)
			}
		}()
	}
	w.action = appendAction(nil, index)
	row := -1
	for line, err := range buffer.Rows(b) {
		if err != nil {
			// What decoded before the damage is indexed; the batch as a
			// whole fails for good, so that the fallback writes it.
			if ferr := w.flush(ctx); ferr != nil {
				return ferr
			}
			// %v, not %w: the decoder's io.ErrUnexpectedEOF would read as
			// a network failure to Retryable, and damage does not heal.
			return fmt.Errorf("%s: damaged batch: %v", op, err)
		}
		row++
		if w.done.has(row) {
			s.already.Add(1)
			continue
		}
		if lvl, ok := rowLevel(line); ok && lvl < s.o.MinLevel {
			s.below.Add(1)
			continue
		}
		if len(w.buf) > 0 && len(w.buf)+len(w.action)+len(w.idBase)+len(line)+64 > s.o.BulkBytes {
			if err := w.flush(ctx); err != nil {
				return err
			}
		}
		w.add(row, line, b.Start)
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	return s.deadLetter(ctx, b, w.dead)
}

// idBase is the part of the document ids shared by a batch's rows.
func (s *OpenSearch) idBase(b *buffer.Batch) string {
	if s.o.Serverless {
		return ""
	}
	return s.batchKey(b)
}

// batchKey names a batch uniquely among the functions and execution
// environments sharing an index: FUNCTION.START-ENV-SEQ. (the ids' prefix).
func (s *OpenSearch) batchKey(b *buffer.Batch) string {
	env := s.o.Env
	if b.Env != "" {
		env = b.Env
	}
	return s.o.Function + "." + b.Start.UTC().Format("20060102T150405Z") + "-" + env + "-" + strconv.FormatUint(b.Seq, 10) + "."
}

// bulkItem is one document in a bulkWrite's buffer: buf[start:end] is its
// action line and source line, buf[src:end-1] the source.
type bulkItem struct {
	row             int
	start, src, end int
}

// deadItem is a row refused for good.
type deadItem struct {
	row    []byte // the original row, without its newline
	status int
	reason string
}

// bulkWrite is the state of one Write.
type bulkWrite struct {
	s      *OpenSearch
	op     string
	idBase string
	action []byte // the action line up to the id, see appendAction
	buf    []byte // action and source lines of the items not yet sent
	items  []bulkItem
	dead   []deadItem
	body   bytes.Buffer // the compressed body of one request
	done   rowSet       // rows seen indexed, Serverless only
}

// add appends the row as an item.
func (w *bulkWrite) add(row int, line []byte, start time.Time) {
	it := bulkItem{row: row, start: len(w.buf)}
	w.buf = appendItemAction(w.buf, w.action, w.idBase, row)
	it.src = len(w.buf)
	var ok bool
	w.buf, ok = appendDoc(w.buf, line, start)
	if !ok {
		w.buf = w.buf[:it.start]
		w.dead = append(w.dead, deadItem{row: bytes.Clone(line), status: 0, reason: "row is not a JSON object"})
		return
	}
	w.buf = append(w.buf, '\n')
	it.end = len(w.buf)
	w.items = append(w.items, it)
}

// flush sends the buffered items until each is indexed or dead, or ctx
// ends.
func (w *bulkWrite) flush(ctx context.Context) error {
	if len(w.items) == 0 {
		return nil
	}
	err := w.deliver(ctx, w.items)
	w.buf = w.buf[:0]
	w.items = w.items[:0]
	return err
}

// deliver sends items, resending those refused with 429 or 5xx, until
// each is indexed or dead. A whole request refused with 429 or 5xx, or
// lost on the network, is sent again; one refused with 413 is split in
// halves, each delivered alone.
func (w *bulkWrite) deliver(ctx context.Context, items []bulkItem) error {
	s := w.s
	for attempt := 0; ; attempt++ {
		res, err := w.send(ctx, items)
		var again []bulkItem
		switch {
		case err == nil:
			again = w.settle(items, res)
			if len(again) == 0 {
				return nil
			}
			s.retried.Add(int64(len(again)))
			err = &OpenSearchError{Op: w.op, Status: res.retryStatus, Reason: res.retryReason, Pending: len(again)}
			items = again
		case isStatus(err, http.StatusRequestEntityTooLarge):
			if len(items) == 1 {
				w.dead = append(w.dead, w.deadOf(items[0], http.StatusRequestEntityTooLarge, "document larger than the cluster accepts in one request (413)"))
				return nil
			}
			s.splits.Add(1)
			half := len(items) / 2
			if err := w.deliver(ctx, items[:half]); err != nil {
				return err
			}
			return w.deliver(ctx, items[half:])
		case !retryableAttempt(err):
			return err
		}
		wait := itemBackoff(attempt, s.o.MinBackoff, s.o.MaxBackoff)
		hurried := hurry(ctx)
		select {
		case <-hurried:
			// SHUTDOWN: the time left is short, retry soon.
			wait, hurried = min(wait, hurriedBackoff), nil
		default:
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			return fmt.Errorf("%w (no time left to retry: %w)", err, context.DeadlineExceeded)
		}
		s.o.Log.Warn("opensearch: retrying", "op", w.op, "items", len(items), "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		case <-hurried:
			t.Stop()
		case <-t.C:
		}
	}
}

// settle counts the results of items and returns those to send again.
func (w *bulkWrite) settle(items []bulkItem, res *bulkResult) []bulkItem {
	s := w.s
	var again []bulkItem
	for i, it := range items {
		r := res.items[i]
		switch {
		case r.Status == http.StatusCreated || r.Status == http.StatusOK:
			s.indexed.Add(1)
			if s.o.Serverless {
				w.done.add(it.row)
			}
		case r.Status == http.StatusConflict && !s.o.Serverless:
			s.duplicates.Add(1)
		case retryableStatus(r.Status):
			if res.retryStatus == 0 {
				res.retryStatus, res.retryReason = r.Status, r.reason()
			}
			again = append(again, it)
		default:
			w.dead = append(w.dead, w.deadOf(it, r.Status, r.reason()))
		}
	}
	return again
}

// deadOf returns the original row of it with why it was refused.
func (w *bulkWrite) deadOf(it bulkItem, status int, reason string) deadItem {
	return deadItem{row: originalRow(w.buf[it.src : it.end-1]), status: status, reason: reason}
}

// send makes one _bulk request of items. It returns the parsed answer of a
// 200, or an *OpenSearchError for any other status.
func (w *bulkWrite) send(ctx context.Context, items []bulkItem) (*bulkResult, error) {
	s := w.s
	raw := w.compress(items)
	ctx, cancel := context.WithTimeout(ctx, s.o.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.bulk, bytes.NewReader(w.body.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.op, err)
	}
	body := w.body.Bytes()
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	if s.o.Auth != nil {
		if err := s.o.Auth.Authorize(req); err != nil {
			return nil, fmt.Errorf("%s: authorize: %w", w.op, err)
		}
	}
	s.requests.Add(1)
	s.wire.Add(int64(len(body)))
	s.raw.Add(int64(raw))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.op, err)
	}
	defer resp.Body.Close()
	const maxAnswer = 64 << 20
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", w.op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &OpenSearchError{Op: w.op, Status: resp.StatusCode, Reason: answerReason(data), Pending: len(items)}
	}
	res, err := parseBulkResponse(data, len(items))
	if err != nil {
		// A 200 that does not account for every item says nothing about
		// any: treat it as a server error, to be retried.
		return nil, &OpenSearchError{Op: w.op, Status: http.StatusBadGateway, Reason: err.Error(), Pending: len(items)}
	}
	return res, nil
}

// compress gzips the items into w.body and returns their size before
// compression.
func (w *bulkWrite) compress(items []bulkItem) int {
	w.body.Reset()
	zw, _ := w.s.gz.Get().(*gzip.Writer)
	if zw == nil {
		// BestSpeed: the request is compressed on the function's CPU, and
		// level 1 already shrinks log documents several times.
		zw, _ = gzip.NewWriterLevel(&w.body, gzip.BestSpeed)
	} else {
		zw.Reset(&w.body)
	}
	n := 0
	// Writes to a bytes.Buffer cannot fail, so neither can the gzip writer.
	if len(items) > 0 && items[0].start == 0 && items[len(items)-1].end == len(w.buf) && contiguous(items) {
		_, _ = zw.Write(w.buf)
		n = len(w.buf)
	} else {
		for _, it := range items {
			_, _ = zw.Write(w.buf[it.start:it.end])
			n += it.end - it.start
		}
	}
	_ = zw.Close()
	zw.Reset(nil)
	w.s.gz.Put(zw)
	return n
}

func contiguous(items []bulkItem) bool {
	for i := 1; i < len(items); i++ {
		if items[i].start != items[i-1].end {
			return false
		}
	}
	return true
}

// OpenSearchError is a _bulk request refused as a whole (Status is the
// HTTP status), or items still refused with Status when the retries ran
// out of time. Its HTTPStatusCode makes Retryable treat 429 and 5xx as
// retryable and other statuses as permanent.
type OpenSearchError struct {
	Op      string
	Status  int
	Reason  string
	Pending int // documents not indexed
}

func (e *OpenSearchError) Error() string {
	msg := fmt.Sprintf("%s: %d %s: %d documents not indexed", e.Op, e.Status, http.StatusText(e.Status), e.Pending)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// HTTPStatusCode returns e.Status.
func (e *OpenSearchError) HTTPStatusCode() int { return e.Status }

func isStatus(err error, status int) bool {
	var oe *OpenSearchError
	return errors.As(err, &oe) && oe.Status == status
}

func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryableAttempt reports whether a failed request may be sent again
// within this Write: a 429 or 5xx answer, or a network failure other than
// ctx ending.
func retryableAttempt(err error) bool {
	var oe *OpenSearchError
	if errors.As(err, &oe) {
		return retryableStatus(oe.Status)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The attempt's own timeout also lands here; so does ctx's end,
		// after which the wait below returns at once.
		return !errors.Is(err, context.Canceled)
	}
	return Retryable(err)
}

// itemBackoff returns the wait before retry number attempt+1: a random
// duration up to min(max, min*2^attempt), at least min/2.
func itemBackoff(attempt int, lo, hi time.Duration) time.Duration {
	ceil := hi
	if attempt < 30 {
		ceil = min(hi, lo<<attempt)
	}
	return lo/2 + rand.N(ceil-lo/2+1)
}
