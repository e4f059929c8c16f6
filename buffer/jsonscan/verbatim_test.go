package jsonscan

import (
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func TestVerbatim(t *testing.T) {
	tests := []struct {
		content string
		want    bool
	}{
		{`plain`, true},
		{`a\nb\/c\u003c\b\u0000`, true},
		{`\u2028 escaped`, true},
		{"raw \u2028", false},
		{"raw \u2029", false},
		{"\xe2\x80", false},                // invalid UTF-8
		{"caf\xe9", false},                 // Latin-1
		{"héllo 😀", true},                  // valid UTF-8
		{`\ud83d\ude00`, true},             // a pair
		{`\uD83D\uDE00`, true},             // a pair, upper case
		{`\ud83d`, false},                  // lone high
		{`\ude00x`, false},                 // lone low
		{`\ud83d\u0041`, false},            // high, then no low
		{`\ud83d\ud83d\ude00`, false},      // high, then a pair
		{`\\ud83d`, true},                  // an escaped backslash, then text
		{`\\\ud83d`, false},                // an escaped backslash, then a lone high
		{`\uDBFF\uDFFF\ud800\udc00`, true}, // the ends of the range
	}
	for _, tt := range tests {
		raw := []byte(`"` + tt.content + `"`)
		end, fl, ok := SkipString(raw, 0)
		if !ok || end != len(raw) {
			t.Fatalf("SkipString(%q) = %d, %v: bad case", raw, end, ok)
		}
		if got := Verbatim(raw[1:end-1], fl); got != tt.want {
			t.Errorf("Verbatim(%q, %b) = %v, want %v", tt.content, fl, got, tt.want)
		}
	}
}

// FuzzVerbatim holds Verbatim to a plain reading of its definition, code
// unit by code unit, on every string the scanner accepts.
func FuzzVerbatim(f *testing.F) {
	for _, s := range []string{`a`, `\ud83d\ude00`, `\ud83d`, "\u2028", "\xff", `\\ud800`, `\u00e9\/`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		raw := []byte(`"` + content + `"`)
		end, fl, ok := SkipString(raw, 0)
		if !ok || end != len(raw) {
			return
		}
		want := utf8.ValidString(content)
		for _, r := range content {
			if r == '\u2028' || r == '\u2029' {
				want = false
			}
		}
		var units []rune // the \u escapes, -1 between runs of them
		for i := 0; i < len(content); i++ {
			if content[i] != '\\' {
				units = append(units, -1)
				continue
			}
			if content[i+1] == 'u' {
				units = append(units, hex4(content, i+2))
				i += 5
			} else {
				units = append(units, -1)
				i++
			}
		}
		for i := 0; i < len(units); i++ {
			switch u := units[i]; {
			case u >= 0xd800 && u < 0xdc00 && i+1 < len(units) && utf16.IsSurrogate(units[i+1]) && units[i+1] >= 0xdc00:
				i++
			case utf16.IsSurrogate(u):
				want = false
			}
		}
		if got := Verbatim(raw[1:end-1], fl); got != want {
			t.Fatalf("Verbatim(%q, %b) = %v, want %v", content, fl, got, want)
		}
	})
}
