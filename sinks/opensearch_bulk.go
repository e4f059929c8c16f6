package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// appendAction appends the start of a create action for index:
// {"create":{"_index":"INDEX" (appendItemAction ends it).
func appendAction(dst []byte, index string) []byte {
	dst = append(dst, `{"create":{"_index":`...)
	return appendJSONString(dst, index)
}

// appendItemAction appends the action line of row: the common start, the
// id (idBase followed by the row number) unless idBase is empty, and the
// newline.
func appendItemAction(dst, action []byte, idBase string, row int) []byte {
	dst = append(dst, action...)
	if idBase != "" {
		dst = append(dst, `,"_id":`...)
		dst = appendJSONString(dst, idBase+strconv.Itoa(row))
	}
	return append(dst, "}}\n"...)
}

// timestampKey starts every document: Dashboards, data streams and
// Serverless time-series collections need @timestamp.
const timestampKey = `{"@timestamp":"`

// appendDoc appends the document of an archive row: the row with
// "@timestamp" (its "time", or start when the row has none) as first key.
// ok is false when the row is not a JSON object; nothing is appended then.
// The row is otherwise copied as is: it is the encoder's own flat object.
func appendDoc(dst, row []byte, start time.Time) (_ []byte, ok bool) {
	row = bytes.TrimSpace(row)
	if len(row) < 2 || row[0] != '{' || row[len(row)-1] != '}' {
		return dst, false
	}
	dst = append(dst, timestampKey...)
	if ts, ok := rowTime(row); ok {
		dst = append(dst, ts...)
	} else {
		dst = start.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	dst = append(dst, '"')
	rest := row[1:]
	if len(bytes.TrimSpace(rest)) > 1 { // not just "}"
		dst = append(dst, ',')
	}
	return append(dst, rest...), true
}

// rowTime returns the value of the "time" key that starts every archive
// row, when it is a plain string.
func rowTime(row []byte) ([]byte, bool) {
	const key = `{"time":"`
	if !bytes.HasPrefix(row, []byte(key)) {
		return nil, false
	}
	v := row[len(key):]
	end := bytes.IndexByte(v, '"')
	if end <= 0 || end > 64 || bytes.IndexByte(v[:end], '\\') >= 0 {
		return nil, false
	}
	return v[:end], true
}

// originalRow returns the row a document was made from (see appendDoc).
func originalRow(doc []byte) []byte {
	rest, ok := bytes.CutPrefix(doc, []byte(timestampKey))
	if !ok {
		return bytes.Clone(doc)
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return bytes.Clone(doc)
	}
	rest = rest[end+1:]
	rest = bytes.TrimPrefix(rest, []byte(","))
	return append([]byte{'{'}, rest...)
}

// rowLevel returns the level of an archive row. An unescaped `,"level":"`
// cannot occur inside a JSON string, so the first one is the key; rows are
// the encoder's, whose level values are the canonical names.
func rowLevel(row []byte) (buffer.Level, bool) {
	const key = `,"level":"`
	i := bytes.Index(row, []byte(key))
	if i < 0 {
		return 0, false
	}
	v := row[i+len(key):]
	end := bytes.IndexByte(v, '"')
	if end < 0 {
		return 0, false
	}
	v = v[:end]
	switch string(v) { // no allocation: the compiler compares in place
	case "TRACE":
		return buffer.LevelTrace, true
	case "DEBUG":
		return buffer.LevelDebug, true
	case "INFO":
		return buffer.LevelInfo, true
	case "WARN":
		return buffer.LevelWarn, true
	case "ERROR":
		return buffer.LevelError, true
	case "FATAL":
		return buffer.LevelFatal, true
	}
	return buffer.ParseLevelName(string(v))
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// bulkResult is the answer to a _bulk request: one result per item, in
// the order sent.
type bulkResult struct {
	items []bulkItemResult
	// The status and reason of the first item to send again, for the
	// error returned if time runs out.
	retryStatus int
	retryReason string
}

// bulkItemResult is one item's result.
type bulkItemResult struct {
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

// reason returns the item's error as "type: reason (caused by type:
// reason)", or its raw text when it has another shape.
func (r bulkItemResult) reason() string {
	if len(r.Error) == 0 {
		return "status " + strconv.Itoa(r.Status)
	}
	return errorReason(r.Error)
}

type osErrorBody struct {
	Type     string       `json:"type"`
	Reason   string       `json:"reason"`
	CausedBy *osErrorBody `json:"caused_by"`
}

func errorReason(raw json.RawMessage) string {
	var e osErrorBody
	if err := json.Unmarshal(raw, &e); err != nil || (e.Type == "" && e.Reason == "") {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return clip(s)
		}
		return clip(string(raw))
	}
	msg := e.Type + ": " + e.Reason
	if c := e.CausedBy; c != nil && (c.Type != "" || c.Reason != "") {
		msg += " (caused by " + c.Type + ": " + c.Reason + ")"
	}
	return clip(msg)
}

// clip bounds a reason taken from an answer; a rune cut at the end is
// dropped.
func clip(s string) string {
	const limit = 1024
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "..."
}

// parseBulkResponse decodes the body of a 200 answer to a _bulk request of
// n items. Each item's result is under its action's name (create here,
// but any is accepted). An answer with another number of items is an
// error: it cannot be matched to what was sent.
func parseBulkResponse(data []byte, n int) (*bulkResult, error) {
	var ans struct {
		Errors *bool `json:"errors"`
		Items  []struct {
			Create *bulkItemResult `json:"create"`
			Index  *bulkItemResult `json:"index"`
			Update *bulkItemResult `json:"update"`
			Delete *bulkItemResult `json:"delete"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("parse bulk answer: %w", err)
	}
	if ans.Errors == nil {
		return nil, errors.New("parse bulk answer: no errors key")
	}
	if len(ans.Items) != n {
		return nil, fmt.Errorf("parse bulk answer: %d items for %d sent", len(ans.Items), n)
	}
	res := &bulkResult{items: make([]bulkItemResult, n)}
	for i, it := range ans.Items {
		var r *bulkItemResult
		for _, c := range []*bulkItemResult{it.Create, it.Index, it.Update, it.Delete} {
			if c != nil {
				r = c
				break
			}
		}
		if r == nil || r.Status < 100 || r.Status > 599 {
			return nil, fmt.Errorf("parse bulk answer: item %d has no status", i)
		}
		res.items[i] = *r
	}
	return res, nil
}

// answerReason extracts the reason of a refused request from its body:
// OpenSearch's {"error":{...}}, the AWS front end's {"Message":"..."}, or
// the start of the text.
func answerReason(data []byte) string {
	var ans struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"Message"`
		Msg     string          `json:"message"`
	}
	if json.Unmarshal(data, &ans) == nil {
		switch {
		case len(ans.Error) > 0:
			return errorReason(ans.Error)
		case ans.Message != "":
			return clip(ans.Message)
		case ans.Msg != "":
			return clip(ans.Msg)
		}
	}
	return clip(strings.TrimSpace(string(data)))
}

// DeadLetterType is the row type of a document OpenSearch refused for good.
// Its fields hold the original row ("row"), the item's HTTP status and
// the reason; its message is the reason.
const DeadLetterType = "sluice.deadletter"

// deadLetter writes the dead items of batch b to the dead-letter sink as
// one batch (more if they are many), numbered after b so that writing it
// again stores it once.
func (s *OpenSearch) deadLetter(ctx context.Context, b *buffer.Batch, dead []deadItem) error {
	if len(dead) == 0 {
		return nil
	}
	meta := buffer.Meta{Function: s.o.Function}
	if r, err := buffer.ParseRow(dead[0].row); err == nil {
		meta = buffer.Meta{Function: r.Function, Version: r.Version}
	}
	bt := buffer.NewBatcher(meta, buffer.Limits{MaxBytes: 64 << 20, MaxAge: time.Hour}, func() time.Time { return b.Start })
	var out []*buffer.Batch
	for _, d := range dead {
		rec := deadRecord(b, d)
		out = append(out, bt.Add(rec)...)
	}
	if last := bt.Seal(); last != nil {
		out = append(out, last)
	}
	env := s.o.Env
	if b.Env != "" {
		env = b.Env
	}
	for i, db := range out {
		db.Env = env + "-deadletter"
		if i > 0 {
			db.Env += "-" + strconv.Itoa(i)
		}
		db.Seq = b.Seq
		if err := s.o.DeadLetter.Write(ctx, db); err != nil {
			return fmt.Errorf("dead-letter %d rows of batch %d: %w", len(dead), b.Seq, err)
		}
	}
	s.dead.Add(int64(len(dead)))
	return nil
}

// deadRecord makes the dead-letter row of d.
func deadRecord(b *buffer.Batch, d deadItem) *buffer.Record {
	rec := &buffer.Record{Time: b.Start, Type: DeadLetterType, Message: d.reason}
	if r, err := buffer.ParseRow(d.row); err == nil {
		rec.Time, rec.RequestID, rec.Level = r.Time, r.RequestID, r.Level
	}
	fields := []byte(`{"status":`)
	fields = strconv.AppendInt(fields, int64(d.status), 10)
	fields = append(fields, `,"reason":`...)
	fields = appendJSONString(fields, d.reason)
	fields = append(fields, `,"row":`...)
	if json.Valid(d.row) {
		fields = append(fields, d.row...)
	} else {
		fields = appendJSONString(fields, strings.ToValidUTF8(string(d.row), "\ufffd"))
	}
	rec.Fields = append(fields, '}')
	return rec
}

// rowSet is a set of a batch's row numbers.
type rowSet []uint64

func (r rowSet) has(row int) bool {
	return row/64 < len(r) && r[row/64]&(1<<(row%64)) != 0
}

func (r *rowSet) add(row int) {
	for row/64 >= len(*r) {
		*r = append(*r, 0)
	}
	(*r)[row/64] |= 1 << (row % 64)
}

// maxUnfinished bounds how many batches' indexed rows an OpenSearch sink
// keeps: a batch whose Writes failed until the Durable gave it up to the
// fallback is never written again, and the oldest such go first. Each
// costs a bit per row (under 8 KiB for 64K rows).
const maxUnfinished = 64

// indexedRows holds, per batch key, the rows of unfinished batches that
// were indexed.
type indexedRows struct {
	mu    sync.Mutex
	rows  map[string]rowSet
	order []string // keys, oldest first
}

// take removes and returns the rows kept for key (nil if none).
func (x *indexedRows) take(key string) rowSet {
	x.mu.Lock()
	defer x.mu.Unlock()
	r, ok := x.rows[key]
	if !ok {
		return nil
	}
	delete(x.rows, key)
	x.order = slices.DeleteFunc(x.order, func(k string) bool { return k == key })
	return r
}

// keep stores r for key, forgetting the oldest batch when there are more
// than maxUnfinished.
func (x *indexedRows) keep(key string, r rowSet) {
	if len(r) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rows == nil {
		x.rows = make(map[string]rowSet)
	}
	if _, ok := x.rows[key]; !ok {
		x.order = append(x.order, key)
	}
	x.rows[key] = r
	if len(x.order) > maxUnfinished {
		delete(x.rows, x.order[0])
		x.order = x.order[1:]
	}
}
