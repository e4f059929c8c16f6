package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/sluice-logs/sluice/buffer"
)

func TestSplitSeq(t *testing.T) {
	for _, tc := range []struct {
		key    string
		prefix string
		i      int
		ok     bool
	}{
		{"3f2a-11e0-b-0", "3f2a-11e0-b", 0, true},
		{"req-19999", "req", 19999, true},
		{"req-big", "", 0, false},
		{"req-", "", 0, false},
		{"-5", "", 0, false},
		{"req-+5", "", 0, false},
		{"req--5", "req-", 5, true},
		{"malformed:[{\"time\"", "", 0, false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			prefix, i, ok := splitSeq(tc.key)
			if prefix != tc.prefix || i != tc.i || ok != tc.ok {
				t.Errorf("splitSeq(%q) = %q, %d, %v; want %q, %d, %v", tc.key, prefix, i, ok, tc.prefix, tc.i, tc.ok)
			}
		})
	}
}

func TestTally(t *testing.T) {
	ta := newTally()
	for _, k := range []string{"r-0", "r-2", "r-2", "s-1", "r-big", "t=x sample init", "r-big"} {
		ta.add(k)
	}
	got := map[string]int{}
	ta.each(func(k string, n int) { got[k] = n })
	want := map[string]int{"r-0": 1, "r-2": 2, "s-1": 1, "r-big": 2, "t=x sample init": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("each (-want +got):\n%s", diff)
	}
	for k, n := range map[string]int{"r-1": 0, "r-2": 2, "r-9": 0, "q-0": 0, "r-big": 2} {
		if c := ta.count(k); c != n {
			t.Errorf("count(%q) = %d, want %d", k, c, n)
		}
	}
}

func TestSampleID(t *testing.T) {
	for _, tc := range []struct{ msg, id string }{
		{"sample id=abc-1 level=INFO plain text line", "abc-1"},
		{`{"level":"INFO","message":"sample id=abc-2","requestId":"abc"}`, "abc-2"},
		{"sample id=abc-big abcdefgh", "abc-big"},
		{"sample init", ""},
	} {
		if id, _ := sampleID(tc.msg); id != tc.id {
			t.Errorf("sampleID(%q) = %q, want %q", tc.msg, id, tc.id)
		}
	}
}

// batch encodes rows the way sluice stores an object: zstd NDJSON.
func batch(t *testing.T, rows ...buffer.Row) []byte {
	t.Helper()
	var nd bytes.Buffer
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		nd.Write(b)
		nd.WriteByte('\n')
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(nd.Bytes(), nil)
}

func fallbackLine(t *testing.T, r buffer.Row) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(fallbackPrefix), b[1:]...)
}

func TestLedger(t *testing.T) {
	at := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	fn := func(msg string) buffer.Row {
		return buffer.Row{Time: at, Type: "function", Function: "f", Version: "$LATEST", Message: msg}
	}
	line := func(id string) buffer.Row { return fn("sample id=" + id + " level=INFO plain text line") }
	big := bigLine("r", 100)
	for _, tc := range []struct {
		name          string
		exp           expect
		functionLines int64
		archived      [][]buffer.Row // objects
		fallback      []buffer.Row
		want          counts
	}{
		{
			name:          "all archived once",
			exp:           expect{written: []written{{RequestID: "r", Lines: 3}}},
			functionLines: 4,
			archived:      [][]buffer.Row{{line("r-0"), line("r-1")}, {line("r-2"), fn("sample init"), {Time: at, Type: "platform.report"}}},
			want:          counts{Emitted: 4, Archived: 4},
		},
		{
			name:          "lost and missing",
			exp:           expect{written: []written{{RequestID: "r", Lines: 3}}},
			functionLines: 3,
			archived:      [][]buffer.Row{{line("r-0")}},
			want:          counts{Emitted: 3, Archived: 1, Lost: 2, Missing: 2, MissingKeys: []string{"r-1", "r-2"}},
		},
		{
			name:          "fallback only and in both",
			exp:           expect{written: []written{{RequestID: "r", Lines: 3}}},
			functionLines: 3,
			archived:      [][]buffer.Row{{line("r-0")}},
			fallback:      []buffer.Row{line("r-0"), line("r-1"), line("r-2")},
			want:          counts{Emitted: 3, Archived: 1, Fallback: 2, Duplicates: 1},
		},
		{
			name:          "duplicates in the archive, and of a line without id",
			exp:           expect{written: []written{{RequestID: "r", Lines: 1}}},
			functionLines: 2,
			archived:      [][]buffer.Row{{line("r-0"), fn("sample init")}, {line("r-0"), fn("sample init")}},
			want:          counts{Emitted: 2, Archived: 2, Duplicates: 2},
		},
		{
			name:          "an altered long line is not delivered",
			exp:           expect{written: []written{{RequestID: "r", Lines: 0, Big: 100}}, bigSize: 100},
			functionLines: 1,
			archived:      [][]buffer.Row{{fn(big[:99])}},
			want:          counts{Emitted: 1, Lost: 1, Missing: 1, MissingKeys: []string{"r-big"}},
		},
		{
			name:          "an intact long line",
			exp:           expect{written: []written{{RequestID: "r", Lines: 0, Big: 100}}, bigSize: 100},
			functionLines: 1,
			archived:      [][]buffer.Row{{fn(big)}},
			want:          counts{Emitted: 1, Archived: 1},
		},
		{
			name: "posted records and malformed halves",
			exp: expect{
				injected:  []string{"dup-0"},
				malformed: []string{`[{"time":"x","rec`, `ord":"y"}]`},
			},
			archived: [][]buffer.Row{{
				line("dup-0"), line("dup-0"),
				{Time: at, Type: typeMalformed, Message: `[{"time":"x","rec`},
				{Time: at, Type: typeMalformed, Message: "nobody posted this"},
			}},
			fallback: []buffer.Row{{Time: at, Type: typeMalformed, Message: `ord":"y"}]`}},
			want:     counts{Emitted: 3, Archived: 2, Fallback: 1, Duplicates: 1},
		},
		{
			name: "bodies posted straight to the listener",
			exp: expect{bodies: []posted{
				{Prefix: "a", N: 2, Answer: acked},
				{Prefix: "r", N: 2, Answer: refused},
				{Prefix: "u", N: 3, Answer: unsure},
			}},
			archived: [][]buffer.Row{{line("a-0"), line("a-1"), line("u-0"), line("r-1")}},
			fallback: []buffer.Row{line("u-1")},
			// u-2 and r-0 stayed with the sender; r-1 should have too.
			want: counts{Emitted: 5, Archived: 4, Fallback: 1, Refused: 1},
		},
		{
			name:     "an acknowledged line lost",
			exp:      expect{bodies: []posted{{Prefix: "a", N: 2, Answer: acked}}},
			archived: [][]buffer.Row{{line("a-0")}},
			want:     counts{Emitted: 2, Archived: 1, Lost: 1, Missing: 1, MissingKeys: []string{"a-1"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := tc.exp
			l := newLedger(&exp)
			for i, rows := range tc.archived {
				if err := l.addObject("o"+string(rune('0'+i)), batch(t, rows...)); err != nil {
					t.Fatalf("addObject: %v", err)
				}
			}
			for _, r := range tc.fallback {
				l.addOutputLine(fallbackLine(t, r))
			}
			l.addOutputLine([]byte(`{"time":"x","level":"INFO","msg":"totals"}`))
			if diff := cmp.Diff(tc.want, l.result(tc.functionLines)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLedgerBadFallbackRow(t *testing.T) {
	l := newLedger(&expect{})
	l.addOutputLine([]byte(fallbackPrefix + `"time":"2026-11-30T22:00:00Z","type":"func`)) // cut by a SIGKILL
	if l.badRows != 1 {
		t.Errorf("badRows = %d, want 1", l.badRows)
	}
}

func TestOutputScanner(t *testing.T) {
	exp := &expect{written: []written{{RequestID: "r", Lines: 2}}}
	l := newLedger(exp)
	s := &outputScanner{ledger: l}
	row, _ := json.Marshal(buffer.Row{Type: "function", Function: "f", Version: "1", Message: "sample id=r-1 x"})
	// The platform writes a line, then its newline, in two calls; a kill
	// can leave the last line without one.
	for _, p := range []string{
		`{"level":"ERROR","msg":"batch not delivered"}`, "\n",
		fallbackPrefix + string(row[1:]), "\n",
		`{"level":"INFO","msg":"totals","lines":2}`, "\n",
		`{"level":"WARN","msg":"cut sh`,
	} {
		if _, err := s.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	s.flush()
	if s.n != 4 || s.errors != 1 || s.warns != 1 || s.fallback != 1 || len(s.totals()) != 1 {
		t.Errorf("scanner saw %d lines, %d errors, %d warns, %d fallback, totals %q; want 4, 1, 1, 1 and one totals line",
			s.n, s.errors, s.warns, s.fallback, s.totals())
	}
	if got := l.result(2); got.Fallback != 1 || got.Lost != 1 {
		t.Errorf("result = %+v, want 1 fallback line and 1 lost", got)
	}
}

func TestEnvironment(t *testing.T) {
	env := dedupEnv([]string{"A=1", "B=2", "A=3", "C=4", "B="})
	if diff := cmp.Diff([]string{"A=3", "B=", "C=4"}, env); diff != "" {
		t.Errorf("dedupEnv (-want +got):\n%s", diff)
	}
}
