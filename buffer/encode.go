package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Meta holds the columns that are the same for every row a process writes.
type Meta struct {
	Function string // AWS_LAMBDA_FUNCTION_NAME
	Version  string // AWS_LAMBDA_FUNCTION_VERSION
}

// AppendRow appends r to dst as one NDJSON row: a flat JSON object followed by
// '\n'. Keys come in a fixed order (time, type, function, version, request_id,
// level, message, status, error_type, duration_ms, billed_duration_ms,
// init_duration_ms, restore_duration_ms, memory_size_mb, max_memory_used_mb,
// produced_bytes, fields). The first four are always written; the others are
// left out when empty or zero. Metrics that are NaN or infinite are left out
// too, as JSON cannot express them. Fields is written as a JSON string holding
// the raw JSON text, so Athena sees one string column whatever its shape.
//
// The message of a function or extension line is written even when it is
// empty: an empty line is a line, and Athena reads a missing key as NULL.
//
// Strings are escaped so that every row is valid JSON on a single line:
// control characters, U+2028 and U+2029 are escaped and each byte of invalid
// UTF-8 becomes U+FFFD. A message held Escaped is copied as it is, in one
// append: the decoder keeps that form only when it is such text already.
// Time is written in UTC with millisecond precision
// ("2026-11-30T22:09:38.123Z"); a time outside years 0-9999 is written in
// time.Format's extended form, which ParseRow rejects.
//
// AppendRow does not allocate when dst has room.
func AppendRow(dst []byte, meta Meta, r *Record) []byte {
	dst = appendHead(dst, r)
	dst = appendMeta(dst, meta)
	return appendTail(dst, r)
}

// metaKeys returns the function and version keys as AppendRow writes them,
// so that the Batcher escapes them once instead of once per row.
func metaKeys(meta Meta) []byte {
	return appendMeta(nil, meta)
}

func appendMeta(dst []byte, meta Meta) []byte {
	dst = append(dst, `,"function":`...)
	dst = appendString(dst, meta.Function)
	dst = append(dst, `,"version":`...)
	return appendString(dst, meta.Version)
}

// appendRowMeta is AppendRow with the meta keys already encoded by metaKeys.
func appendRowMeta(dst, meta []byte, r *Record) []byte {
	dst = appendHead(dst, r)
	dst = append(dst, meta...)
	return appendTail(dst, r)
}

func appendHead(dst []byte, r *Record) []byte {
	dst = append(dst, `{"time":"`...)
	dst = appendTime(dst, r.Time)
	dst = append(dst, `","type":`...)
	return appendString(dst, r.Type)
}

func appendTail(dst []byte, r *Record) []byte {
	dst = appendStringKey(dst, `,"request_id":`, r.RequestID)
	dst = appendStringKey(dst, `,"level":`, r.Level)
	if r.Message != "" || isLine(r.Type) {
		// A log line is never NULL in the archive, even when it is empty.
		if r.Escaped {
			dst = append(dst, `,"message":"`...)
			dst = append(dst, r.Message...)
			dst = append(dst, '"')
		} else {
			dst = append(dst, `,"message":`...)
			dst = appendString(dst, r.Message)
		}
	}
	dst = appendStringKey(dst, `,"status":`, r.Status)
	dst = appendStringKey(dst, `,"error_type":`, r.ErrorType)
	if m := r.Metrics; m != nil {
		dst = appendFloatKey(dst, `,"duration_ms":`, m.DurationMs)
		dst = appendFloatKey(dst, `,"billed_duration_ms":`, m.BilledDurationMs)
		dst = appendFloatKey(dst, `,"init_duration_ms":`, m.InitDurationMs)
		dst = appendFloatKey(dst, `,"restore_duration_ms":`, m.RestoreDurationMs)
		dst = appendIntKey(dst, `,"memory_size_mb":`, m.MemorySizeMB)
		dst = appendIntKey(dst, `,"max_memory_used_mb":`, m.MaxMemoryUsedMB)
		dst = appendIntKey(dst, `,"produced_bytes":`, m.ProducedBytes)
	}
	if len(r.Fields) > 0 {
		dst = append(dst, `,"fields":`...)
		dst = appendString(dst, []byte(r.Fields))
	}
	return append(dst, '}', '\n')
}

// isLine reports whether records of type typ are log lines, whose message
// is never absent.
func isLine(typ string) bool { return typ == "function" || typ == "extension" }

func appendStringKey(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, key...)
	return appendString(dst, s)
}

func appendFloatKey(dst []byte, key string, f float64) []byte {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return dst
	}
	dst = append(dst, key...)
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

func appendIntKey(dst []byte, key string, n int64) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, key...)
	return strconv.AppendInt(dst, n, 10)
}

// appendTime writes t as RFC 3339 in UTC with exactly three fractional
// digits. It is written by hand because it runs for every row and
// time.AppendFormat costs several times more.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / int(time.Millisecond)
	dst = append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a quoted JSON string. Runs of bytes that need no
// escaping are copied in one append, which keeps plain log lines cheap.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip eight plain ASCII bytes at a time: most log text has nothing
		// to escape. Once a word fails, the byte loop below takes at least
		// those eight bytes, so text dense with quotes (JSON in fields) does
		// not pay for a failed check per byte.
		for i+8 <= len(s) && !needsEscape(load64(s, i)) {
			i += 8
		}
		for end := min(i+8, len(s)); i < end; {
			c := s[i]
			if c < utf8.RuneSelf {
				i++
				if c >= 0x20 && c != '"' && c != '\\' {
					continue
				}
				dst = append(dst, s[start:i-1]...)
				switch c {
				case '"', '\\':
					dst = append(dst, '\\', c)
				case '\n':
					dst = append(dst, '\\', 'n')
				case '\r':
					dst = append(dst, '\\', 'r')
				case '\t':
					dst = append(dst, '\\', 't')
				default:
					dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				}
				start = i
				continue
			}
			r, size := decodeRune(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\ufffd"...)
			case r == '\u2028' || r == '\u2029':
				// Valid JSON, but JavaScript readers take them for line ends.
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			default:
				i += size
				continue
			}
			i += size
			start = i
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// load64 reads the eight bytes of s at i as a little-endian word; the
// compiler merges the byte loads into one.
func load64[S string | []byte](s S, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// needsEscape reports whether any of the eight bytes in w is a control
// character, '"', '\\' or not ASCII. False positives are fine (the byte loop
// decides); false negatives are not.
func needsEscape(w uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	ctl := (w - 0x20*ones) & ^w // high bit set for bytes < 0x20 (or >= 0x80)
	q := w ^ '"'*ones
	quote := (q - ones) & ^q
	bs := w ^ '\\'*ones
	back := (bs - ones) & ^bs
	return (ctl|quote|back|w)&highs != 0
}

// decodeRune decodes the first rune of s, a string or a byte slice, without
// converting (and so allocating) either into the other.
func decodeRune[S string | []byte](s S) (rune, int) {
	var b [utf8.UTFMax]byte
	n := copy(b[:], s)
	return utf8.DecodeRune(b[:n])
}

// Row is one archive row as read back from NDJSON: the columns AppendRow
// writes, with the same names. Absent columns are zero.
type Row struct {
	Time              time.Time `json:"time"`
	Type              string    `json:"type"`
	Function          string    `json:"function"`
	Version           string    `json:"version"`
	RequestID         string    `json:"request_id,omitempty"`
	Level             string    `json:"level,omitempty"`
	Message           string    `json:"message,omitempty"`
	Status            string    `json:"status,omitempty"`
	ErrorType         string    `json:"error_type,omitempty"`
	DurationMs        float64   `json:"duration_ms,omitempty"`
	BilledDurationMs  float64   `json:"billed_duration_ms,omitempty"`
	InitDurationMs    float64   `json:"init_duration_ms,omitempty"`
	RestoreDurationMs float64   `json:"restore_duration_ms,omitempty"`
	MemorySizeMB      int64     `json:"memory_size_mb,omitempty"`
	MaxMemoryUsedMB   int64     `json:"max_memory_used_mb,omitempty"`
	ProducedBytes     int64     `json:"produced_bytes,omitempty"`
	Fields            string    `json:"fields,omitempty"` // raw JSON text of the record's other fields
}

// ParseRow decodes one NDJSON row written by AppendRow; a trailing newline is
// allowed. It is strict, so it also checks what the encoder writes: an
// unknown key, a wrongly typed value or data after the object is an error.
// It is meant for tests and the fallback, not the hot path.
func ParseRow(line []byte) (Row, error) {
	var row Row
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&row); err != nil {
		return Row{}, fmt.Errorf("parse row: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Row{}, errors.New("parse row: data after the object")
	}
	return row, nil
}
