package telemetry

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// EventType names the type of a telemetry event: the types Lambda sends,
// and EventUnknown. buffer.Record.Type stays a plain string, since the run
// loop's files compare and prefix-match it as one.
type EventType string

// The event types Lambda sends (telemetry-schema-reference), and the row
// type of an event that claimed a type reserved for sluice's own rows.
const (
	EventFunction              EventType = "function"
	EventExtension             EventType = "extension"
	EventInitStart             EventType = "platform.initStart"
	EventInitRuntimeDone       EventType = "platform.initRuntimeDone"
	EventInitReport            EventType = "platform.initReport"
	EventStart                 EventType = "platform.start"
	EventRuntimeDone           EventType = "platform.runtimeDone"
	EventReport                EventType = "platform.report"
	EventRestoreStart          EventType = "platform.restoreStart"
	EventRestoreRuntimeDone    EventType = "platform.restoreRuntimeDone"
	EventRestoreReport         EventType = "platform.restoreReport"
	EventTelemetrySubscription EventType = "platform.telemetrySubscription"
	EventLogsDropped           EventType = "platform.logsDropped"
	EventPlatformExtension     EventType = "platform.extension"
	EventUnknown               EventType = "unknown"
)

// TypeMalformed is the Type of the record that carries a POST body that is
// not a JSON array of telemetry events, so that no byte Lambda sent is lost.
const TypeMalformed = "sluice.malformed"

// Decoder turns the body of a Telemetry API POST into records. It keeps
// scratch space between calls, so reuse one per goroutine; the zero value is
// ready to use. Records never point into the body: the caller may reuse it.
type Decoder struct {
	stack   []byte            // open containers while scanning
	members []jsonscan.Member // members of the record being decoded
	metrics []jsonscan.Member // members of a platform record's metrics
	lastReq string            // the previous request id: consecutive records share it
	text    []byte            // unescaped string text before it becomes a string
}

// str is unquote with the decoder's scratch space, so that a string with
// escapes (most text log lines end in \n) costs one allocation, not two.
func (d *Decoder) str(raw []byte, fl jsonscan.Flags) string {
	if fl&jsonscan.Escape == 0 || len(raw) < 2 {
		return jsonscan.Unquote(raw, fl)
	}
	d.text, _ = jsonscan.AppendUnquoted(d.text[:0], raw[1:len(raw)-1])
	s := string(d.text)
	if cap(d.text) > 64<<10 {
		d.text = nil // do not keep one huge line's buffer for good
	}
	return s
}

// message sets r's message from the JSON string raw. It keeps the string's
// escaped content when that can go into the row as it is (see
// jsonscan.Verbatim and buffer.Record.Escaped): the row then costs one copy
// instead of an unquoting here and an escaping in the encoder. A string
// with neither escapes nor bytes >= 0x80 is the same in both forms and is
// kept escaped too, which spares the encoder its scan.
func (d *Decoder) message(r *buffer.Record, raw []byte, fl jsonscan.Flags) {
	if len(raw) >= 2 {
		if s := raw[1 : len(raw)-1]; jsonscan.Verbatim(s, fl) {
			r.Message, r.Escaped = string(s), true
			return
		}
	}
	r.Message = d.str(raw, fl)
}

// trim drops scratch space that a freak body grew (an object with half a
// million members, nesting 10,000 deep), so a pooled Decoder does not hold
// on to it.
func (d *Decoder) trim() {
	if cap(d.members) > 1024 {
		d.members = nil
	}
	if cap(d.metrics) > 64 {
		d.metrics = nil
	}
	if cap(d.stack) > 1024 {
		d.stack = nil
	}
}

// NewDecoder returns a Decoder. The zero value works as well.
func NewDecoder() *Decoder { return new(Decoder) }

// Decode decodes body, a JSON array of {time, type, record} events, into one
// record per event. It never fails and never panics: a body that is not such
// an array (Lambda cuts a record larger than maxBytes across two POSTs, and
// neither half parses) comes back as a single TypeMalformed record holding
// the whole body, with malformed set. now stands in for a missing or
// unreadable event time.
//
// An event must be an object with a string "type"; anything else in the
// array makes the whole body malformed. Within an event, a record of an
// unexpected shape is kept whole in Fields rather than rejected. Of
// duplicate keys the last one counts, as in encoding/json. Keys of an event
// other than time, type and record are ignored (Lambda sends none).
//
// What a POST cannot do: make a row of a type sluice writes itself (an
// event whose type starts with "sluice." becomes an EventUnknown row that
// keeps the type and record in Fields), or give a row a time before 2000 or
// more than a day after now (the row gets now and keeps the time it was
// given in Fields as original_time), which would land in a partition no
// reader finds.
func (d *Decoder) Decode(body []byte, now time.Time) (recs []buffer.Record, malformed bool) {
	recs, ok := d.decode(body, now)
	d.trim()
	if !ok {
		return []buffer.Record{malformedRecord(body, now)}, true
	}
	return recs, false
}

// malformedRecord keeps body verbatim when it is text, which is what a cut
// record is, and base64 otherwise, so the archive stays valid UTF-8 JSON.
func malformedRecord(body []byte, now time.Time) buffer.Record {
	r := buffer.Record{Time: now, Type: TypeMalformed}
	if utf8.Valid(body) {
		r.Message = string(body)
		r.Fields = strconv.AppendInt([]byte(`{"bytes":`), int64(len(body)), 10)
	} else {
		r.Message = base64.StdEncoding.EncodeToString(body)
		r.Fields = strconv.AppendInt([]byte(`{"encoding":"base64","bytes":`), int64(len(body)), 10)
	}
	r.Fields = append(r.Fields, '}')
	return r
}

// rawEvent holds the spans of one event's values; an empty jsonscan.Span is absent.
type rawEvent struct {
	typ, time, rec       jsonscan.Span
	typFl, timeFl, recFl jsonscan.Flags
}

func (d *Decoder) decode(body []byte, now time.Time) ([]buffer.Record, bool) {
	i := jsonscan.SkipSpace(body, 0)
	if jsonscan.At(body, i) != '[' {
		return nil, false
	}
	i = jsonscan.SkipSpace(body, i+1)
	var recs []buffer.Record
	if jsonscan.At(body, i) == ']' {
		return recs, jsonscan.SkipSpace(body, i+1) == len(body)
	}
	recs = make([]buffer.Record, 0, estimateEvents(body))
	for {
		if jsonscan.At(body, i) != '{' {
			return nil, false
		}
		var ev rawEvent
		i = jsonscan.SkipSpace(body, i+1)
		if jsonscan.At(body, i) != '}' {
			for {
				if jsonscan.At(body, i) != '"' {
					return nil, false
				}
				k, kfl, ok := jsonscan.SkipString(body, i)
				if !ok {
					return nil, false
				}
				key := body[i:k]
				i = jsonscan.SkipSpace(body, k)
				if jsonscan.At(body, i) != ':' {
					return nil, false
				}
				i = jsonscan.SkipSpace(body, i+1)
				v := jsonscan.Span{Start: i}
				var vfl jsonscan.Flags
				if v.End, vfl, ok, d.stack = jsonscan.SkipValue(body, i, 2, d.stack); !ok {
					return nil, false
				}
				switch kindOf(key, kfl) {
				case kTime:
					ev.time, ev.timeFl = v, vfl
				case kType:
					ev.typ, ev.typFl = v, vfl
				case kRecord:
					ev.rec, ev.recFl = v, vfl
				}
				i = jsonscan.SkipSpace(body, v.End)
				if jsonscan.At(body, i) == ',' {
					i = jsonscan.SkipSpace(body, i+1)
					continue
				}
				if jsonscan.At(body, i) != '}' {
					return nil, false
				}
				break
			}
		}
		i = jsonscan.SkipSpace(body, i+1)
		rec, ok := d.event(body, &ev, now)
		if !ok {
			return nil, false
		}
		if len(recs) == cap(recs) {
			// Extrapolate from the events so far, so the slice is grown
			// about once and is not left twice as large as needed.
			grown := make([]buffer.Record, len(recs), len(recs)+len(recs)*(len(body)-i)/i+8)
			copy(grown, recs)
			recs = grown
		}
		recs = append(recs, rec)
		switch jsonscan.At(body, i) {
		case ',':
			i = jsonscan.SkipSpace(body, i+1)
		case ']':
			return recs, jsonscan.SkipSpace(body, i+1) == len(body)
		default:
			return nil, false
		}
	}
}

// estimateEvents guesses the number of events from the body's size.
// Counting them exactly cost a tenth of the decode. Guessing low costs one
// regrowth, extrapolated from the events decoded so far; guessing high
// holds Records nobody fills until the POST is processed: at 256 bytes per
// event the benchmark's 600-byte events (a 450-byte line and its envelope)
// allocated 2.4 times the records they needed, a third of all the bytes
// the process allocated.
func estimateEvents(body []byte) int {
	return len(body)/512 + 1
}

// Known keys. One enumeration serves every object the decoder looks into;
// each caller cares about its own subset.
const (
	kOther uint8 = iota
	kTime
	kType
	kRecord
	kTimestamp
	kLevel
	kRequestID
	kMessage
	kStatus
	kErrorType
	kMetrics
	kReason
	kDurationMs
	kBilledDurationMs
	kInitDurationMs
	kRestoreDurationMs
	kMemorySizeMB
	kMaxMemoryUsedMB
	kProducedBytes
	nKinds
)

func kindOf(rawKey []byte, fl jsonscan.Flags) uint8 {
	if len(rawKey) < 2 {
		return kOther
	}
	if fl&jsonscan.Escape != 0 {
		return kindOfName(jsonscan.Unquote(rawKey, fl))
	}
	return kindOfName(rawKey[1 : len(rawKey)-1])
}

func kindOfName[T string | []byte](name T) uint8 {
	switch string(name) {
	case "time":
		return kTime
	case "type":
		return kType
	case "record":
		return kRecord
	case "timestamp":
		return kTimestamp
	case "level":
		return kLevel
	case "requestId":
		return kRequestID
	case "message":
		return kMessage
	case "status":
		return kStatus
	case "errorType":
		return kErrorType
	case "metrics":
		return kMetrics
	case "reason":
		return kReason
	case "durationMs":
		return kDurationMs
	case "billedDurationMs":
		return kBilledDurationMs
	case "initDurationMs":
		return kInitDurationMs
	case "restoreDurationMs":
		return kRestoreDurationMs
	case "memorySizeMB":
		return kMemorySizeMB
	case "maxMemoryUsedMB":
		return kMaxMemoryUsedMB
	case "producedBytes":
		return kProducedBytes
	}
	return kOther
}

// event builds the record of one scanned event.
func (d *Decoder) event(body []byte, ev *rawEvent, now time.Time) (buffer.Record, bool) {
	var r buffer.Record
	if ev.typ.Absent() || body[ev.typ.Start] != '"' {
		return r, false
	}
	r.Type = eventType(ev.typ.Of(body), ev.typFl)
	t, timeOK := stringTime(body, ev.time, ev.timeFl)
	traw := body // where the time's JSON string is
	tspan := ev.time
	var rec []byte
	if !ev.rec.Absent() {
		rec = ev.rec.Of(body)
	}
	isLog := r.Type == string(EventFunction) || r.Type == string(EventExtension)
	switch {
	case strings.HasPrefix(r.Type, reservedPrefix):
		r.Fields = reservedFields(r.Type, rec, ev.recFl)
		r.Type = string(EventUnknown)
	case rec == nil:
	case isLog && rec[0] == '"':
		d.message(&r, rec, ev.recFl)
	case isLog && rec[0] == '{':
		ts, tsFl := d.logRecord(&r, rec, ev.recFl)
		if !timeOK {
			t, timeOK = stringTime(rec, ts, tsFl)
			traw, tspan = rec, ts
		}
	case strings.HasPrefix(r.Type, "platform.") && rec[0] == '{':
		d.platformRecord(&r, rec, ev.recFl)
	default:
		r.Fields = jsonscan.AppendCompact(make([]byte, 0, len(rec)), rec, ev.recFl)
	}
	switch {
	case !timeOK:
		r.Time = now
	case t.Unix() < minTimeUnix || t.After(now.Add(maxTimeAhead)):
		// A partition of year 10000 or -1 breaks every reader, and one
		// outside the projection's range is never read: the row goes to
		// the arrival time and keeps the time it claimed.
		r.Time = now
		r.Fields = withOriginalTime(r.Fields, tspan.Of(traw))
	default:
		r.Time = t
	}
	return r, true
}

// reservedPrefix starts the types of the rows sluice writes itself
// (sluice.stats, sluice.malformed, sluice.truncated): a POST cannot make
// one, or it could fake the counters. Such an event is archived as an
// EventUnknown row whose Fields hold the type it claimed and its record.
const reservedPrefix = "sluice."

func reservedFields(typ string, rec []byte, fl jsonscan.Flags) json.RawMessage {
	q, _ := json.Marshal(typ) // a string always marshals
	out := append([]byte(`{"type":`), q...)
	if rec != nil {
		out = append(out, `,"record":`...)
		out = jsonscan.AppendCompact(out, rec, fl)
	}
	return append(out, '}')
}

// The window of event times taken as they are. Lambda runs since 2014, and
// a clock more than a day ahead of the arrival time is not Lambda's.
const (
	minTimeUnix  = 946684800 // 2000-01-01T00:00:00Z
	maxTimeAhead = 24 * time.Hour
)

// withOriginalTime adds the original_time member, the raw JSON string of a
// time out of the window, first in the object fields; fields of another
// shape move under "record".
func withOriginalTime(fields json.RawMessage, raw []byte) json.RawMessage {
	out := make([]byte, 0, len(fields)+len(raw)+32)
	out = append(out, `{"original_time":`...)
	out = append(out, raw...)
	switch {
	case len(fields) == 0:
	case fields[0] == '{' && len(fields) > 2:
		out = append(out, ',')
		out = append(out, fields[1:len(fields)-1]...)
	case fields[0] == '{':
	default:
		out = append(out, `,"record":`...)
		out = append(out, fields...)
	}
	return append(out, '}')
}

// eventType interns the types Lambda sends so that a record costs no
// allocation for its type.
func eventType(raw []byte, fl jsonscan.Flags) string {
	if fl&jsonscan.Escape == 0 {
		// A switch on the converted bytes does not allocate.
		switch string(raw[1 : len(raw)-1]) {
		case string(EventFunction):
			return string(EventFunction)
		case string(EventExtension):
			return string(EventExtension)
		case string(EventInitStart):
			return string(EventInitStart)
		case string(EventInitRuntimeDone):
			return string(EventInitRuntimeDone)
		case string(EventInitReport):
			return string(EventInitReport)
		case string(EventStart):
			return string(EventStart)
		case string(EventRuntimeDone):
			return string(EventRuntimeDone)
		case string(EventReport):
			return string(EventReport)
		case string(EventRestoreStart):
			return string(EventRestoreStart)
		case string(EventRestoreRuntimeDone):
			return string(EventRestoreRuntimeDone)
		case string(EventRestoreReport):
			return string(EventRestoreReport)
		case string(EventTelemetrySubscription):
			return string(EventTelemetrySubscription)
		case string(EventLogsDropped):
			return string(EventLogsDropped)
		case string(EventPlatformExtension):
			return string(EventPlatformExtension)
		}
	}
	return jsonscan.Unquote(raw, fl)
}

// stringTime parses the JSON string at s in b as an RFC 3339 time.
func stringTime(b []byte, s jsonscan.Span, fl jsonscan.Flags) (time.Time, bool) {
	if s.Absent() || b[s.Start] != '"' || s.End-s.Start < 2 {
		return time.Time{}, false
	}
	raw := s.Of(b)
	if fl&(jsonscan.Escape|jsonscan.High) == 0 {
		if t, ok := parseTimeUTC(raw[1 : len(raw)-1]); ok {
			return t, true
		}
	}
	t, err := time.Parse(time.RFC3339Nano, jsonscan.Unquote(raw, fl))
	return t, err == nil
}

// parseTimeUTC parses the shape Lambda sends, "2006-01-02T15:04:05.000Z",
// without allocating. It accepts a strict subset of what time.Parse accepts
// with RFC3339Nano, with the same result; anything else goes to time.Parse.
func parseTimeUTC(b []byte) (time.Time, bool) {
	if len(b) < 20 || len(b) > 30 || b[len(b)-1] != 'Z' ||
		b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, month, day := digits(b[0:4]), digits(b[5:7]), digits(b[8:10])
	hour, minute, sec := digits(b[11:13]), digits(b[14:16]), digits(b[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		if nsec = digits(frac[1:]); nsec < 0 {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// digits parses b as a decimal number of at most 9 digits, or returns -1.
func digits(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// dropped marks a member that does not go to Fields: its value was moved to
// a column, or a later member with the same key supersedes it.
const dropped = 0xff

// classify sets the kind of each member that is one of wanted and marks
// all but the last of each such key as dropped. It returns the index of the
// last member of each kind, or -1.
func classify(obj []byte, ms []jsonscan.Member, wanted ...uint8) (last [nKinds]int) {
	for k := range last {
		last[k] = -1
	}
	for i := range ms {
		m := &ms[i]
		k := kindOf(m.Key.Of(obj), m.KeyFl)
		m.Kind = kOther
		for _, w := range wanted {
			if k == w {
				m.Kind = k
				last[k] = i
			}
		}
	}
	for i := range ms {
		if k := ms[i].Kind; k != kOther && last[k] != i {
			ms[i].Kind = dropped
		}
	}
	return last
}

// logRecord fills r from a JSON-format log line {timestamp, level,
// requestId, message, ...}. It returns the jsonscan.Span of a string timestamp, the
// fallback for a missing event time.
func (d *Decoder) logRecord(r *buffer.Record, rec []byte, fl jsonscan.Flags) (ts jsonscan.Span, tsFl jsonscan.Flags) {
	ms, ok := d.scanMembers(rec)
	if !ok {
		r.Fields = jsonscan.AppendCompact(make([]byte, 0, len(rec)), rec, fl)
		return jsonscan.Span{}, 0
	}
	classify(rec, ms, kTimestamp, kLevel, kRequestID, kMessage)
	for i := range ms {
		m := &ms[i]
		isString := rec[m.Val.Start] == '"'
		switch {
		case m.Kind == kMessage && isString:
			d.message(r, m.Val.Of(rec), m.ValFl)
		case m.Kind == kMessage:
			// A structured message is kept as its JSON text.
			r.Message = string(jsonscan.AppendCompact(nil, m.Val.Of(rec), m.ValFl))
		case m.Kind == kLevel && isString:
			r.Level = level(m.Val.Of(rec), m.ValFl)
		case m.Kind == kRequestID && isString:
			r.RequestID = d.requestID(m.Val.Of(rec), m.ValFl)
		case m.Kind == kTimestamp && isString:
			ts, tsFl = m.Val, m.ValFl
		default:
			if m.Kind != dropped {
				m.Kind = kOther // not the expected type: keep it in Fields
			}
			continue
		}
		m.Kind = dropped
	}
	if r.Level == "" {
		r.Level = otherLevel(rec, ms)
	}
	r.Fields = fields(rec, ms)
	return ts, tsFl
}

// otherLevel reads the level of a JSON log line from the first member left
// in Fields that names one (severity, lvl, levelname, a numeric level, ...;
// see buffer.IsLevelKey) and holds a level, so that level detection need
// not scan Fields again. The member stays in Fields.
func otherLevel(rec []byte, ms []jsonscan.Member) string {
	for i := range ms {
		m := &ms[i]
		if m.Kind != kOther {
			continue
		}
		key := m.Key.Of(rec)
		if m.KeyFl&jsonscan.Escape != 0 {
			key = []byte(jsonscan.Unquote(key, m.KeyFl))
		} else {
			key = key[1 : len(key)-1]
		}
		if !buffer.IsLevelKey(key) {
			continue
		}
		v := m.Val.Of(rec)
		switch {
		case v[0] == '"' && m.ValFl&(jsonscan.Escape|jsonscan.High) == 0:
			v = v[1 : len(v)-1]
		case v[0] == '"':
			v = []byte(jsonscan.Unquote(v, m.ValFl))
		case !isDigit(v[0]):
			continue
		}
		if l, ok := buffer.LineLevel(v); ok {
			return l.String()
		}
	}
	return ""
}

// platformRecord fills r from the record object of a platform.* event.
func (d *Decoder) platformRecord(r *buffer.Record, rec []byte, fl jsonscan.Flags) {
	ms, ok := d.scanMembers(rec)
	if !ok {
		r.Fields = jsonscan.AppendCompact(make([]byte, 0, len(rec)), rec, fl)
		return
	}
	classify(rec, ms, kRequestID, kStatus, kErrorType, kMetrics, kReason)
	for i := range ms {
		m := &ms[i]
		isString := rec[m.Val.Start] == '"'
		switch {
		case m.Kind == kRequestID && isString:
			r.RequestID = d.requestID(m.Val.Of(rec), m.ValFl)
		case m.Kind == kStatus && isString:
			r.Status = status(m.Val.Of(rec), m.ValFl)
		case m.Kind == kErrorType && isString:
			r.ErrorType = d.str(m.Val.Of(rec), m.ValFl)
		case m.Kind == kMetrics && rec[m.Val.Start] == '{':
			var whole bool
			r.Metrics, whole = d.parseMetrics(m.Val.Of(rec))
			if !whole {
				m.Kind = kOther // something in it has no column: keep it all
				continue
			}
		case m.Kind == kReason:
			// The reason stays in Fields; for logsDropped it is also the
			// message, the one line a reader needs.
			if isString && r.Type == "platform.logsDropped" {
				d.message(r, m.Val.Of(rec), m.ValFl)
			}
			m.Kind = kOther
			continue
		default:
			if m.Kind != dropped {
				m.Kind = kOther
			}
			continue
		}
		m.Kind = dropped
	}
	if (r.Type == "platform.runtimeDone" || r.Type == "platform.report") && r.Status != "" && r.Status != "success" {
		r.Level = "ERROR"
	}
	r.Fields = fields(rec, ms)
}

// scanMembers lists the members of the object rec into the decoder's scratch
// space.
func (d *Decoder) scanMembers(rec []byte) ([]jsonscan.Member, bool) {
	var ok bool
	d.members, d.stack, ok = jsonscan.Members(rec, d.members[:0], d.stack)
	return d.members, ok
}

// parseMetrics reads a metrics object. whole reports whether every member
// went to a column; m is nil when none did.
func (d *Decoder) parseMetrics(obj []byte) (m *buffer.Metrics, whole bool) {
	var ok bool
	d.metrics, d.stack, ok = jsonscan.Members(obj, d.metrics[:0], d.stack)
	if !ok {
		return nil, false
	}
	ms := d.metrics
	classify(obj, ms, kDurationMs, kBilledDurationMs, kInitDurationMs, kRestoreDurationMs,
		kMemorySizeMB, kMaxMemoryUsedMB, kProducedBytes)
	whole = true
	var v buffer.Metrics
	found := false
	for _, mb := range ms {
		if mb.Kind == dropped {
			continue
		}
		f, ok := metricValue(mb.Val.Of(obj))
		if mb.Kind == kOther || !ok {
			whole = false
			continue
		}
		found = true
		switch mb.Kind {
		case kDurationMs:
			v.DurationMs = f
		case kBilledDurationMs:
			v.BilledDurationMs = f
		case kInitDurationMs:
			v.InitDurationMs = f
		case kRestoreDurationMs:
			v.RestoreDurationMs = f
		case kMemorySizeMB:
			v.MemorySizeMB = int64(f)
		case kMaxMemoryUsedMB:
			v.MaxMemoryUsedMB = int64(f)
		case kProducedBytes:
			v.ProducedBytes = int64(f)
		}
	}
	if found {
		m = &v
	}
	return m, whole
}

// metricValue reads a JSON number that fits the columns: finite and, for
// the integer columns, within int64 (checked for all, for simplicity: no
// metric comes near 2^63).
func metricValue(raw []byte) (float64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && !isDigit(raw[0])) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f >= 1<<63 || f < -(1<<63) {
		return 0, false
	}
	return f, true
}

// fields re-encodes the members of obj that are still kOther as one compact
// object, or returns nil when none are.
func fields(obj []byte, ms []jsonscan.Member) json.RawMessage {
	n := 1
	for _, m := range ms {
		if m.Kind == kOther {
			n += m.Key.End - m.Key.Start + 1 + m.Val.End - m.Val.Start + 1
		}
	}
	if n == 1 {
		return nil
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for _, m := range ms {
		if m.Kind != kOther {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, m.Key.Of(obj)...)
		out = append(out, ':')
		out = jsonscan.AppendCompact(out, m.Val.Of(obj), m.ValFl)
	}
	return append(out, '}')
}

// requestID returns the id as a string, reusing the previous one when equal:
// the lines of an invocation arrive together.
func (d *Decoder) requestID(raw []byte, fl jsonscan.Flags) string {
	if fl&(jsonscan.Escape|jsonscan.High) == 0 && string(raw[1:len(raw)-1]) == d.lastReq {
		return d.lastReq
	}
	d.lastReq = d.str(raw, fl)
	return d.lastReq
}

// level upper-cases a log level, interning the usual ones.
func level(raw []byte, fl jsonscan.Flags) string {
	if fl&(jsonscan.Escape|jsonscan.High) == 0 {
		s := raw[1 : len(raw)-1]
		for _, l := range knownLevels {
			if equalFoldASCII(s, l) {
				return l
			}
		}
	}
	return strings.ToUpper(jsonscan.Unquote(raw, fl))
}

// equalFoldASCII reports whether b equals the upper-case ASCII word upper,
// ignoring case.
func equalFoldASCII(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

var knownLevels = [...]string{"INFO", "DEBUG", "WARN", "ERROR", "TRACE", "FATAL", "WARNING", "CRITICAL"}

// status interns the documented status values.
func status(raw []byte, fl jsonscan.Flags) string {
	if fl&jsonscan.Escape == 0 {
		switch string(raw[1 : len(raw)-1]) {
		case "success":
			return "success"
		case "failure":
			return "failure"
		case "error":
			return "error"
		case "timeout":
			return "timeout"
		}
	}
	return jsonscan.Unquote(raw, fl)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
