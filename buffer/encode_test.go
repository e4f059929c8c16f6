package buffer

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var testMeta = Meta{Function: "orders-api", Version: "$LATEST"}

var testTime = time.Date(2026, 11, 30, 22, 9, 38, 123456789, time.UTC)

func TestAppendRowColumns(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
		rec  Record
		want string
	}{
		{
			name: "empty record keeps the first four keys",
			meta: testMeta,
			rec:  Record{},
			want: `{"time":"0001-01-01T00:00:00.000Z","type":"","function":"orders-api","version":"$LATEST"}`,
		},
		{
			name: "text line",
			meta: testMeta,
			rec:  Record{Time: testTime, Type: "function", RequestID: "r-1", Message: "hello"},
			want: `{"time":"2026-11-30T22:09:38.123Z","type":"function","function":"orders-api","version":"$LATEST","request_id":"r-1","message":"hello"}`,
		},
		{
			name: "json record with fields",
			meta: testMeta,
			rec: Record{Time: testTime, Type: "function", RequestID: "r-1", Level: "ERROR", Message: "boom",
				Fields: json.RawMessage(`{"a":1,"b":"x\"y"}`)},
			want: `{"time":"2026-11-30T22:09:38.123Z","type":"function","function":"orders-api","version":"$LATEST","request_id":"r-1","level":"ERROR","message":"boom","fields":"{\"a\":1,\"b\":\"x\\\"y\"}"}`,
		},
		{
			name: "platform.report with every column",
			meta: testMeta,
			rec: Record{Time: testTime, Type: "platform.report", RequestID: "r-1", Status: "timeout", ErrorType: "Sandbox.Timedout",
				Metrics: &Metrics{DurationMs: 3000.12, BilledDurationMs: 3001, InitDurationMs: 180.5, RestoreDurationMs: 0.25,
					MemorySizeMB: 128, MaxMemoryUsedMB: 77, ProducedBytes: -1}},
			want: `{"time":"2026-11-30T22:09:38.123Z","type":"platform.report","function":"orders-api","version":"$LATEST","request_id":"r-1","status":"timeout","error_type":"Sandbox.Timedout",` +
				`"duration_ms":3000.12,"billed_duration_ms":3001,"init_duration_ms":180.5,"restore_duration_ms":0.25,"memory_size_mb":128,"max_memory_used_mb":77,"produced_bytes":-1}`,
		},
		{
			name: "zero, NaN and infinite metrics are left out; large floats have no exponent",
			meta: testMeta,
			rec: Record{Time: testTime, Type: "platform.report",
				Metrics: &Metrics{DurationMs: math.NaN(), BilledDurationMs: math.Inf(1), InitDurationMs: 1e21, RestoreDurationMs: 1e-7}},
			want: `{"time":"2026-11-30T22:09:38.123Z","type":"platform.report","function":"orders-api","version":"$LATEST","init_duration_ms":1000000000000000000000,"restore_duration_ms":0.0000001}`,
		},
		{
			name: "meta is escaped",
			meta: Meta{Function: `a"b`, Version: "1\n"},
			rec:  Record{Time: testTime, Type: "function"},
			want: `{"time":"2026-11-30T22:09:38.123Z","type":"function","function":"a\"b","version":"1\n","message":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendRow(nil, tt.meta, &tt.rec))
			if diff := cmp.Diff(tt.want+"\n", got); diff != "" {
				t.Errorf("AppendRow mismatch (-want +got):\n%s", diff)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("AppendRow = %q, not valid JSON", got)
			}
		})
	}
}

func TestAppendRowEscaping(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"plain ASCII <>&", `"plain ASCII <>&"`},
		{"", `""`},
		{`quote " backslash \`, `"quote \" backslash \\"`},
		{"nl\ncr\rtab\t", `"nl\ncr\rtab\t"`},
		{"\x00\x01\x08\x0c\x1f", `"\u0000\u0001\u0008\u000c\u001f"`},
		{"del \x7f stays", "\"del \x7f stays\""},
		{"line\u2028para\u2029end", `"line\u2028para\u2029end"`},
		{"valid é 日本 🙂", `"valid é 日本 🙂"`},
		{"bad \xff byte", "\"bad \ufffd byte\""},
		{"truncated \xe6\x97", "\"truncated \ufffd\ufffd\""},
		{"surrogate \xed\xa0\x80", "\"surrogate \ufffd\ufffd\ufffd\""},
		{"\xc0\x80 overlong", "\"\ufffd\ufffd overlong\""},
		{"end \xf0", "\"end \ufffd\""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := string(appendString(nil, tt.in))
			if got != tt.want {
				t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if gotB := string(appendString(nil, []byte(tt.in))); gotB != tt.want {
				t.Errorf("appendString([]byte(%q)) = %s, want %s", tt.in, gotB, tt.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", got, err)
			}
			if want := string([]rune(tt.in)); back != want {
				t.Errorf("decoded %q, want %q", back, want)
			}
		})
	}
}

func TestAppendTime(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"truncates to milliseconds", time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.UTC), "2026-01-02T03:04:05.999Z"},
		{"pads fields", time.Date(7, 1, 2, 3, 4, 5, 6_000_000, time.UTC), "0007-01-02T03:04:05.006Z"},
		{"converts to UTC", time.Date(2026, 12, 31, 23, 30, 0, 0, time.FixedZone("X", -90*60)), "2027-01-01T01:00:00.000Z"},
		{"zero time", time.Time{}, "0001-01-01T00:00:00.000Z"},
		{"last year in range", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), "9999-12-31T23:59:59.000Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendTime(nil, tt.in))
			if got != tt.want {
				t.Errorf("appendTime(%v) = %s, want %s", tt.in, got, tt.want)
			}
			if std := tt.in.UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != std {
				t.Errorf("appendTime(%v) = %s, time.Format gives %s", tt.in, got, std)
			}
		})
	}
}

func TestAppendRowAllocs(t *testing.T) {
	recs := []Record{
		{Time: testTime, Type: "function", RequestID: "r-1", Message: "plain \"text\" \xff line\u2028"},
		{Time: testTime, Type: "function", Level: "INFO", Message: "m", Fields: json.RawMessage(`{"k":"v"}`)},
		{Time: testTime, Type: "platform.report", Status: "success", Metrics: &Metrics{DurationMs: 1.5, MemorySizeMB: 128}},
	}
	buf := make([]byte, 0, 4096)
	for i := range recs {
		allocs := testing.AllocsPerRun(100, func() {
			buf = AppendRow(buf[:0], testMeta, &recs[i])
		})
		if allocs != 0 {
			t.Errorf("AppendRow(record %d) allocates %v times, want 0", i, allocs)
		}
	}
}

func TestParseRowErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
	}{
		{"unknown key", `{"time":"2026-11-30T22:09:38.123Z","type":"function","function":"f","version":"1","extra":1}`},
		{"data after the object", `{"time":"2026-11-30T22:09:38.123Z","type":"function","function":"f","version":"1"} {}`},
		{"wrong type", `{"time":"2026-11-30T22:09:38.123Z","type":1,"function":"f","version":"1"}`},
		{"bad time", `{"time":"yesterday","type":"function","function":"f","version":"1"}`},
		{"truncated", `{"time":"2026-11-30T22:09:38.123Z","type":"func`},
		{"empty", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if row, err := ParseRow([]byte(tt.line)); err == nil {
				t.Errorf("ParseRow(%s) = %+v, want an error", tt.line, row)
			}
		})
	}
}

// wantRow is what ParseRow must return for a row AppendRow wrote from r.
func wantRow(meta Meta, r *Record) Row {
	row := Row{
		Time:      r.Time.UTC().Truncate(time.Millisecond),
		Type:      validUTF8(r.Type),
		Function:  validUTF8(meta.Function),
		Version:   validUTF8(meta.Version),
		RequestID: validUTF8(r.RequestID),
		Level:     validUTF8(r.Level),
		Message:   validUTF8(r.Message),
		Status:    validUTF8(r.Status),
		ErrorType: validUTF8(r.ErrorType),
		Fields:    validUTF8(string(r.Fields)),
	}
	if m := r.Metrics; m != nil {
		row.DurationMs = finite(m.DurationMs)
		row.BilledDurationMs = finite(m.BilledDurationMs)
		row.InitDurationMs = finite(m.InitDurationMs)
		row.RestoreDurationMs = finite(m.RestoreDurationMs)
		row.MemorySizeMB = m.MemorySizeMB
		row.MaxMemoryUsedMB = m.MaxMemoryUsedMB
		row.ProducedBytes = m.ProducedBytes
	}
	return row
}

// validUTF8 replaces each invalid byte with U+FFFD, as the encoder does.
func validUTF8(s string) string { return string([]rune(s)) }

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// randString mixes the characters the escaper treats differently.
func randString(rng *rand.Rand, n int) string {
	pieces := []string{"a", "Z", "0", " ", `"`, `\`, "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "é", "日", "🙂",
		"\u2028", "\u2029", "\xff", "\xe6\x97", "\xed\xa0\x80", "{", "}", ":", ","}
	var sb strings.Builder
	for range rng.IntN(n + 1) {
		sb.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return sb.String()
}

func randRecord(rng *rand.Rand) Record {
	r := Record{
		Time:      time.UnixMilli(rng.Int64N(253402300799999)).Add(time.Duration(rng.IntN(1e6))),
		Type:      randString(rng, 3),
		RequestID: randString(rng, 5),
		Level:     randString(rng, 2),
		Message:   randString(rng, 40),
		Status:    randString(rng, 2),
		ErrorType: randString(rng, 2),
		Fields:    json.RawMessage(randString(rng, 10)),
	}
	if rng.IntN(2) == 0 {
		r.Metrics = &Metrics{
			DurationMs:        rng.NormFloat64() * 1e3,
			BilledDurationMs:  float64(rng.IntN(3)),
			InitDurationMs:    rng.ExpFloat64() * 1e-3,
			RestoreDurationMs: math.Ldexp(rng.Float64(), rng.IntN(2000)-1000),
			MemorySizeMB:      rng.Int64N(3) - 1,
			MaxMemoryUsedMB:   rng.Int64(),
			ProducedBytes:     -rng.Int64(),
		}
	}
	return r
}

func TestRowRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 2000 {
		r := randRecord(rng)
		buf = AppendRow(buf[:0], testMeta, &r)
		line := string(buf)
		if strings.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("record %d: row %q is not exactly one line", i, line)
		}
		got, err := ParseRow(buf)
		if err != nil {
			t.Fatalf("record %d: ParseRow(%s): %v", i, line, err)
		}
		if diff := cmp.Diff(wantRow(testMeta, &r), got); diff != "" {
			t.Fatalf("record %d: round trip mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func FuzzAppendRow(f *testing.F) {
	f.Add("function", "r-1", "INFO", "hello", "", "", []byte(`{"a":1}`), "fn", "$LATEST", int64(1780000000123), 12.5, int64(128))
	f.Add("platform.report", "\xff", "\u2028", "a\x00b\"c\\", "timeout", "Sandbox.Timedout", []byte("\xed\xa0\x80"), "f\n", "", int64(0), math.Inf(-1), int64(-1))
	f.Fuzz(func(t *testing.T, typ, reqID, level, msg, status, errType string, fields []byte, fn, ver string, ms int64, dur float64, mem int64) {
		// Keep the time within the years RFC 3339 can express.
		const span = 253402300800000 // milliseconds from 1970 to the year 10000
		ms %= span
		if ms < -62135596800000 { // before year 1
			ms += span
		}
		r := Record{
			Time: time.UnixMilli(ms), Type: typ, RequestID: reqID, Level: level, Message: msg,
			Status: status, ErrorType: errType, Fields: fields,
			Metrics: &Metrics{DurationMs: dur, BilledDurationMs: -dur, MemorySizeMB: mem, ProducedBytes: -mem},
		}
		meta := Meta{Function: fn, Version: ver}
		line := AppendRow(nil, meta, &r)
		if !json.Valid(line) {
			t.Fatalf("AppendRow = %q, not valid JSON", line)
		}
		if i := strings.IndexByte(string(line), '\n'); i != len(line)-1 {
			t.Fatalf("AppendRow = %q, newline at %d", line, i)
		}
		got, err := ParseRow(line)
		if err != nil {
			t.Fatalf("ParseRow(%q): %v", line, err)
		}
		if diff := cmp.Diff(wantRow(meta, &r), got); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
		if got, want := string(appendString(nil, msg)), refString(msg); got != want {
			t.Fatalf("appendString(%q) = %s, want %s", msg, got, want)
		}
	})
}

// refString is a plain per-rune version of appendString's rules, to check
// the word-at-a-time fast path against.
func refString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			sb.WriteRune(utf8.RuneError)
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
		i += size
	}
	sb.WriteByte('"')
	return sb.String()
}

// TestAppendStringPositions puts each special character at every offset of
// the eight-byte words the fast path reads, and near the string's end.
func TestAppendStringPositions(t *testing.T) {
	specials := []string{`"`, `\`, "\n", "\x00", "\x1f", "\x7f", "\x80", "\xff", "é", "日", "🙂", "\u2028", "\u2029", "\xe2\x80", "\xf0\x9f"}
	pad := strings.Repeat("abcdefgh", 3)
	for _, sp := range specials {
		for at := 0; at <= len(pad); at++ {
			for _, tail := range []int{0, 1, 7, 8, 9} {
				in := pad[:at] + sp + pad[:tail]
				if got, want := string(appendString(nil, in)), refString(in); got != want {
					t.Errorf("appendString(%q) = %s, want %s", in, got, want)
				}
				if got, want := string(appendString(nil, []byte(in))), refString(in); got != want {
					t.Errorf("appendString([]byte(%q)) = %s, want %s", in, got, want)
				}
			}
		}
	}
}

// TestAppendRowEmptyMessage: a function line that is empty is still a line;
// its message is "" in the archive, never NULL.
func TestAppendRowEmptyMessage(t *testing.T) {
	for _, typ := range []string{"function", "extension"} {
		r := Record{Time: time.Date(2026, 11, 30, 22, 9, 38, 0, time.UTC), Type: typ}
		row := string(AppendRow(nil, Meta{Function: "f", Version: "1"}, &r))
		want := `{"time":"2026-11-30T22:09:38.000Z","type":"` + typ + `","function":"f","version":"1","message":""}` + "\n"
		if row != want {
			t.Errorf("AppendRow(empty %s line) = %s, want %s", typ, row, want)
		}
	}
}
