package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAppendUnescaped(t *testing.T) {
	tests := []struct {
		in, want string
		pos      []int32
	}{
		{`a\nb`, "a\nb", []int32{0, 1, 3}},
		{`\/x`, "/x", []int32{0, 2}},
		{`\u00e9!`, "é!", []int32{0, 0, 6}},
		{`\ud83d\ude00`, "😀", []int32{0, 0, 0, 0}},
		{`\x\u12`, `\x\u12`, []int32{0, 1, 2, 3, 4, 5}},
		{`end\`, `end\`, []int32{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		out, pos, _ := AppendUnescaped(nil, nil, tt.in)
		if string(out) != tt.want {
			t.Errorf("AppendUnescaped(%q) = %q, want %q", tt.in, out, tt.want)
		}
		if diff := cmp.Diff(tt.pos, pos); diff != "" {
			t.Errorf("AppendUnescaped(%q) positions (-want +got):\n%s", tt.in, diff)
		}
	}
}

// FuzzUnquote holds the unquoter to encoding/json on every string it
// accepts, and the lenient decoder to its position map.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`a\nb`, `\ud800x`, `\ud83d\ude00`, "\xff", `\u00E9\/\"\\\b\f\r\t`, `\q`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want string
		if json.Unmarshal([]byte(`"`+s+`"`), &want) == nil {
			got, ok := AppendUnquoted(nil, s)
			if !ok || string(got) != want {
				t.Fatalf("AppendUnquoted(%q) = %q, %v; encoding/json %q", s, got, ok, want)
			}
			if u := Unquote([]byte(`"`+s+`"`), Escape); u != want {
				t.Fatalf("Unquote(%q) = %q; encoding/json %q", s, u, want)
			}
		}
		out, pos, decoded := AppendUnescaped(nil, nil, s)
		if len(pos) != len(out) {
			t.Fatalf("AppendUnescaped(%q): %d positions for %d bytes", s, len(pos), len(out))
		}
		for i := 1; i < len(pos); i++ {
			if pos[i] < pos[i-1] || int(pos[i]) >= len(s) {
				t.Fatalf("AppendUnescaped(%q): positions %v out of order", s, pos)
			}
		}
		if !strings.Contains(s, `\`) && (decoded || string(out) != s) {
			t.Fatalf("AppendUnescaped(%q) = %q, %v, want it unchanged", s, out, decoded)
		}
	})
}
