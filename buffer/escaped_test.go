package buffer

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// escapeMin is the escaped form of s as AppendRow writes it, without the
// quotes: what a runtime's JSON encoder sends. s must be valid UTF-8.
func escapeMin(s string) string {
	b := appendString(nil, s)
	return string(b[1 : len(b)-1])
}

// escapeAll escapes every ASCII byte of s as \u00XX (alternating the case
// of the hex digits) and '/' as \/, so that every byte of a prefix that
// DetectLevel reads is behind an escape and prefixes end inside escapes.
// s must be valid UTF-8.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/':
			b.WriteString(`\/`)
		case c < utf8.RuneSelf && i%2 == 0:
			b.WriteString(`\u00` + string(hexDigits[c>>4]) + string(hexDigits[c&0xf]))
		case c < utf8.RuneSelf:
			b.WriteString(`\u00` + strings.ToUpper(string(hexDigits[c>>4])+string(hexDigits[c&0xf])))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escapedForms are the ways a test holds the text s Escaped.
var escapedForms = []struct {
	name   string
	escape func(string) string
}{{"min", escapeMin}, {"all", escapeAll}}

// escapedLevelCases add to detectCases what is peculiar to the escaped
// form: the prefix ends, the scratch buffer's end, a space or a brace
// that is itself an escape.
var escapedLevelCases = []struct {
	name string
	msg  string
	want Level
}{
	{"level at the prefix end", strings.Repeat("a=1 ", 62) + "level=error", LevelInfo},
	{"level just inside the prefix", strings.Repeat("a=1 ", 61) + "level=error", LevelError},
	{"rune cut at the prefix end", strings.Repeat("a=1 ", 63) + "xyzé level=error", LevelInfo},
	{"many leading spaces", strings.Repeat(" ", 300) + "\t\n[WARN] x", LevelWarn},
	{"leading spaces then json", strings.Repeat("\n", 300) + `{"level":"error"}`, LevelError},
	{"json level past the scratch", `{"msg":"` + strings.Repeat("é", 1500) + `","level":"warn"}`, LevelWarn},
	{"json level inside the scratch, long tail", `{"level":"debug","msg":"` + strings.Repeat("x", 5000) + `"}`, LevelDebug},
	{"json number level at the scratch end", `{"msg":"` + strings.Repeat("x", levelScratch-19) + `","level":50000}`, LevelInfo},
	{"json number level across the scratch end", `{"msg":"` + strings.Repeat("x", levelScratch-20) + `","level":50000}`, LevelInfo},
	{"json number level before the scratch end", `{"msg":"` + strings.Repeat("x", levelScratch-26) + `","level":50}`, LevelError},
	{"json no level, long", `{"msg":"` + strings.Repeat("x", 9000) + `","n":1}`, LevelInfo},
	{"json past 64 KiB", `{"msg":"` + strings.Repeat("x", levelJSONScan) + `","level":"error"}`, LevelInfo},
	{"json cut inside its first key", `{"` + strings.Repeat("k", levelScratch) + `":1,"level":"warn"}`, LevelWarn},
	{"line separator", "\u2028[ERROR] x", LevelInfo},
	{"escaped quote in text", `[ERROR] "quoted" \ back`, LevelError},
}

// TestDetectLevelEscaped holds DetectLevel to the same level for a line
// held Escaped as for its text, over the level table and the cases of the
// escaped form.
func TestDetectLevelEscaped(t *testing.T) {
	var recs []Record
	var names []string
	for _, tt := range detectCases {
		recs, names = append(recs, tt.r), append(names, tt.name)
	}
	for _, tt := range escapedLevelCases {
		recs, names = append(recs, Record{Message: tt.msg}), append(names, tt.name)
		r := Record{Message: tt.msg}
		if got := DetectLevel(&r); got != tt.want {
			t.Errorf("%s: DetectLevel(text) = %v, want %v", tt.name, got, tt.want)
		}
	}
	for i, text := range recs {
		for _, f := range escapedForms {
			t.Run(names[i]+"/"+f.name, func(t *testing.T) {
				esc := text
				esc.Message, esc.Escaped = f.escape(text.Message), true
				if got := esc.Text(); got != text.Message {
					t.Fatalf("Text() = %q, want %q", got, text.Message)
				}
				want := DetectLevel(&text)
				if got := DetectLevel(&esc); got != want {
					t.Errorf("DetectLevel(escaped %.80q) = %v, text gives %v", esc.Message, got, want)
				}
			})
		}
	}
}

// TestDetectLevelEscapedDoesNotAllocate: the stack scratch holds the
// prefix of every line but a JSON object longer than it.
func TestDetectLevelEscapedDoesNotAllocate(t *testing.T) {
	msgs := []string{`{"level":"debug","msg":"` + strings.Repeat("x", 5000) + `"}`}
	for _, tt := range detectCases {
		msgs = append(msgs, tt.r.Message)
	}
	for _, msg := range msgs {
		for _, f := range escapedForms {
			r := Record{Message: f.escape(msg), Escaped: true}
			if n := testing.AllocsPerRun(20, func() { DetectLevel(&r) }); n != 0 {
				t.Errorf("DetectLevel(escaped %s %.60q) allocates %v times", f.name, r.Message, n)
			}
		}
	}
}

// TestAppendRowEscaped: a row written from the escaped form reads back as
// the row written from the text.
func TestAppendRowEscaped(t *testing.T) {
	tests := []struct{ name, esc string }{
		{"plain", `GET /orders 200`},
		{"escapes", `a\nb\tc\"d\\e\/f\b\f\r`},
		{"unicode escapes", `\u00e9\u00C9\u0000\u001f\u007f\u2028\u2029`},
		{"surrogate pair", `\ud83d\ude00 and \uD83D\uDE00`},
		{"raw utf-8", "héllo 😀 日本"},
		{"crlf", `line\r\n`},
		{"empty", ``},
		{"html", `\u003cscript\u003e`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want string
			if err := json.Unmarshal([]byte(`"`+tt.esc+`"`), &want); err != nil {
				t.Fatalf("bad case: %v", err)
			}
			esc := Record{Time: testTime, Type: "function", Message: tt.esc, Escaped: true}
			if got := esc.Text(); got != want {
				t.Fatalf("Text() = %q, want %q", got, want)
			}
			text := esc
			text.Message, text.Escaped = want, false
			gotRow, err := ParseRow(AppendRow(nil, testMeta, &esc))
			if err != nil {
				t.Fatal(err)
			}
			wantRow, err := ParseRow(AppendRow(nil, testMeta, &text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantRow, gotRow); diff != "" {
				t.Errorf("row from the escaped form (-text +escaped):\n%s", diff)
			}
			if n := testing.AllocsPerRun(10, func() { AppendRow(make([]byte, 0, 512), testMeta, &esc) }); n > 1 {
				t.Errorf("AppendRow(escaped) allocates %v times", n)
			}
		})
	}
}

// TestRedactRecordEscaped: a line held Escaped is redacted as its text (an
// escape does not hide a secret) and keeps its form when nothing matched.
func TestRedactRecordEscaped(t *testing.T) {
	red := mustRedactor(t, []string{"all"})
	tests := []struct {
		name, esc   string
		wantChanged bool
	}{
		{"key behind escapes", escapeAll("key " + testAccessKey + " end"), true},
		{"jwt after a newline escape", `token:\n` + testJWT, true},
		{"nothing to redact", `order 42\n`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := Record{Type: "function", Message: tt.esc, Escaped: true}
			text := Record{Type: "function", Message: rec.Text()}
			wantChanged := red.RedactRecord(&text)
			changed := red.RedactRecord(&rec)
			if changed != tt.wantChanged || changed != wantChanged {
				t.Fatalf("RedactRecord(escaped) = %v, text form %v, want %v", changed, wantChanged, tt.wantChanged)
			}
			if got := rec.Text(); got != text.Message {
				t.Errorf("RedactRecord(escaped) text = %q, want %q", got, text.Message)
			}
			if !changed && (rec.Message != tt.esc || !rec.Escaped) {
				t.Errorf("unchanged line lost its escaped form: %q, Escaped %v", rec.Message, rec.Escaped)
			}
		})
	}
}

// TestSampleLineEscaped: the sampling hash reads the text, so a line is
// kept or dropped whichever form it is held in.
func TestSampleLineEscaped(t *testing.T) {
	for _, tt := range detectCases {
		for _, f := range escapedForms {
			text := Record{Time: testTime, Message: tt.r.Message}
			esc := Record{Time: testTime, Message: f.escape(tt.r.Message), Escaped: true}
			if a, b := hashText(fnvOffset, &text), hashText(fnvOffset, &esc); a != b {
				t.Errorf("hashText(escaped %s %.60q) = %x, text %x", f.name, esc.Message, b, a)
			}
			for _, rate := range []float64{0.1, 0.5, 0.9} {
				if a, b := sampleLine(&text, rate), sampleLine(&esc, rate); a != b {
					t.Errorf("sampleLine(escaped %.60q, %v) = %v, text %v", esc.Message, rate, b, a)
				}
			}
		}
	}
}

// FuzzDetectLevelEscaped holds DetectLevel and the sampling hash to the
// same answer for any line held Escaped as for its text.
func FuzzDetectLevelEscaped(f *testing.F) {
	for _, tt := range detectCases {
		f.Add(tt.r.Message, false)
	}
	for _, tt := range escapedLevelCases {
		f.Add(tt.msg, true)
	}
	f.Fuzz(func(t *testing.T, msg string, all bool) {
		if !utf8.ValidString(msg) {
			msg = strings.ToValidUTF8(msg, "\uFFFD")
		}
		text := Record{Message: msg}
		esc := Record{Message: escapeMin(msg), Escaped: true}
		if all {
			esc.Message = escapeAll(msg)
		}
		if got := esc.Text(); got != msg {
			t.Fatalf("Text(%q) = %q, want %q", esc.Message, got, msg)
		}
		if a, b := DetectLevel(&text), DetectLevel(&esc); a != b {
			t.Fatalf("DetectLevel(escaped %q) = %v, text %q gives %v", esc.Message, b, msg, a)
		}
		if a, b := hashText(fnvOffset, &text), hashText(fnvOffset, &esc); a != b {
			t.Fatalf("hashText(escaped %q) = %x, text %x", esc.Message, b, a)
		}
	})
}
