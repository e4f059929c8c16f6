package telemetry

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

// TestDecodePassthrough checks which form Decode keeps a message in: the
// escaped content when a row can carry it as it is, the text otherwise.
func TestDecodePassthrough(t *testing.T) {
	tests := []struct {
		name, record string
		escaped      bool
		message      string
	}{
		{"plain", `"GET /orders 200"`, true, `GET /orders 200`},
		{"newline", `"done\n"`, true, `done\n`},
		{"crlf and tab", `"a\tb\r\n"`, true, `a\tb\r\n`},
		{"solidus and html", `"\/a \u003cb\u003e \u0000"`, true, `\/a \u003cb\u003e \u0000`},
		{"escaped line separator", `"a\u2028b"`, true, `a\u2028b`},
		{"surrogate pair", `"\ud83d\ude00"`, true, `\ud83d\ude00`},
		{"raw utf-8", `"héllo 😀"`, true, `héllo 😀`},
		{"lone surrogate", `"a\ud800b"`, false, "a\uFFFDb"},
		{"lone low surrogate", `"\udc00\n"`, false, "\uFFFD\n"},
		{"invalid utf-8", "\"caf\xe9\"", false, "caf\uFFFD"},
		{"raw line separator", "\"a\u2028b\"", false, "a\u2028b"},
		{"json message", `{"level":"INFO","message":"x\ty"}`, true, `x\ty`},
		{"json message lone surrogate", `{"message":"\ud800"}`, false, "\uFFFD"},
		{"json structured message", `{"message":{"a":"\n"}}`, false, `{"a":"\n"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(`[{"time":"2022-10-12T00:00:15.064Z","type":"function","record":` + tt.record + `}]`)
			recs, malformed := NewDecoder().Decode(body, now)
			if malformed || len(recs) != 1 {
				t.Fatalf("Decode(%s) = %d records, malformed %v", body, len(recs), malformed)
			}
			if r := recs[0]; r.Escaped != tt.escaped || r.Message != tt.message {
				t.Errorf("Decode(%s) message %q, Escaped %v; want %q, %v", tt.record, r.Message, r.Escaped, tt.message, tt.escaped)
			}
		})
	}
}

// passthroughSeeds are bodies for what the escaped form must get right.
var passthroughSeeds = []string{
	`[{"type":"function","record":"a\ud800b"}]`,
	`[{"type":"function","record":"\udc00\ud800\udc00\ud800"}]`,
	`[{"type":"function","record":"\u2028 \u2029"}]`,
	"[{\"type\":\"function\",\"record\":\"raw \u2028 \u2029\"}]",
	"[{\"type\":\"function\",\"record\":\"bad \xff\xfe \xe2\x80\"}]",
	`[{"type":"function","record":"\/\/ \u0000 \b\f"}]`,
	`[{"type":"function","record":"line\r\n"}]`,
	`[{"type":"function","record":"` + strings.Repeat(`1 `, 127) + `\u00e9 ERROR x"}]`,
	`[{"type":"function","record":"` + strings.Repeat(`x`, 255) + `\n[ERROR]"}]`,
	`[{"type":"function","record":"{\"level\":\"error\",\"msg\":\"x\"}"}]`,
	`[{"type":"function","record":"  {\"level\":50,\"msg\":\"\\u00e9\"}\n"}]`,
	`[{"type":"extension","record":{"message":"x\ty\u2028","level":"warn"}}]`,
	`[{"type":"platform.logsDropped","record":{"reason":"a\nb","droppedRecords":1}}]`,
}

// FuzzPassthrough: for any body, the row written from a message held
// escaped reads back as exactly the row written from its text (the path
// before the escaped form existed), and is one line of valid UTF-8 JSON
// with no raw U+2028/U+2029.
func FuzzPassthrough(f *testing.F) {
	addGoldenSeeds(f, false)
	for _, s := range append(passthroughSeeds, containCases...) {
		f.Add([]byte(s))
	}
	meta := buffer.Meta{Function: "f", Version: "1"}
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, _ := NewDecoder().Decode(body, now)
		for i := range recs {
			r := &recs[i]
			text := *r
			text.Message, text.Escaped = r.Text(), false
			if r.Escaped {
				var want string
				if err := json.Unmarshal([]byte(`"`+r.Message+`"`), &want); err != nil || want != text.Message {
					t.Fatalf("escaped message %q: encoding/json reads %q, %v; Text %q", r.Message, want, err, text.Message)
				}
			}
			row := buffer.AppendRow(nil, meta, r)
			if bytes.IndexByte(row, '\n') != len(row)-1 || !utf8.Valid(row) ||
				bytes.Contains(row, []byte("\u2028")) || bytes.Contains(row, []byte("\u2029")) {
				t.Fatalf("row %q is not one line of valid UTF-8 without U+2028/U+2029", row)
			}
			got, err := buffer.ParseRow(row)
			if err != nil {
				t.Fatalf("ParseRow(%q): %v", row, err)
			}
			want, err := buffer.ParseRow(buffer.AppendRow(nil, meta, &text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("row from the escaped form (-text +escaped):\n%s", diff)
			}
			if a, b := buffer.DetectLevel(r), buffer.DetectLevel(&text); a != b {
				t.Fatalf("DetectLevel(escaped %q) = %v, text gives %v", r.Message, a, b)
			}
		}
	})
}
