package buffer

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	testAccessKey = "AKIAIOSFODNN7EXAMPLE"
	testSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testJWT       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

func mustRedactor(t testing.TB, presets []string, patterns ...string) *Redactor {
	t.Helper()
	r, err := NewRedactor(presets, patterns)
	if err != nil {
		t.Fatalf("NewRedactor(%q, %q): %v", presets, patterns, err)
	}
	return r
}

func TestNewRedactor(t *testing.T) {
	tests := []struct {
		name     string
		presets  []string
		patterns []string
		rules    []string
		errs     []string // substrings the error must hold; nil for success
	}{
		{name: "none", rules: nil},
		{name: "all", presets: []string{"all"}, rules: []string{"aws", "jwt", "bearer", "email", "card", "ip"}},
		{name: "order and case", presets: []string{" IP", "email ", "", "email"}, patterns: []string{`x\d+`}, rules: []string{"email", "ip", "pattern1"}},
		{name: "patterns named by position", patterns: []string{`a+`, `b+`}, rules: []string{"pattern1", "pattern2"}},
		{name: "unknown preset", presets: []string{"aws", "phone"}, errs: []string{`unknown preset "phone"`, "known: aws, jwt, bearer, email, card, ip, all"}},
		{name: "bad pattern", patterns: []string{`ok`, `a(`}, errs: []string{`pattern 2: missing closing )`}},
		{name: "empty match", patterns: []string{`\d*`}, errs: []string{`pattern 1: matches the empty string`}},
		{name: "all errors at once", presets: []string{"x"}, patterns: []string{`[`}, errs: []string{`preset "x"`, `pattern 1: missing closing ]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRedactor(tt.presets, tt.patterns)
			if tt.errs != nil {
				if err == nil {
					t.Fatalf("NewRedactor(%q, %q) = nil error, want one", tt.presets, tt.patterns)
				}
				for _, want := range tt.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("NewRedactor error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("NewRedactor: %v", err)
			}
			if diff := cmp.Diff(tt.rules, r.Rules()); diff != "" {
				t.Errorf("Rules() (-want +got):\n%s", diff)
			}
			if r.Enabled() != (len(tt.rules) > 0) {
				t.Errorf("Enabled() = %v with rules %q", r.Enabled(), tt.rules)
			}
		})
	}
}

// redactCases run with every preset on; want == in means no match.
var redactCases = []struct {
	name, in, want string
}{
	// aws
	{"access key", "key=" + testAccessKey + " ok", "key=[REDACTED:aws] ok"},
	{"session key", "ASIAY34FZKBOKMUTVV7A", "[REDACTED:aws]"},
	{"access key in word", "XAKIAIOSFODNN7EXAMPLE", "XAKIAIOSFODNN7EXAMPLE"},
	{"access key too long", testAccessKey + "X", testAccessKey + "X"},
	{"access key lower", "AKIAiosfodnn7example", "AKIAiosfodnn7example"},
	{"secret with context", "AWS_SECRET_ACCESS_KEY=" + testSecretKey, "AWS_SECRET_ACCESS_KEY=[REDACTED:aws]"},
	{"secret json-ish", `"SecretAccessKey": "` + testSecretKey + `"`, `"SecretAccessKey": "[REDACTED:aws]"`},
	{"secret without context", "sha " + testSecretKey, "sha " + testSecretKey},
	{"secret context too far", "secret" + strings.Repeat(" ", 100) + testSecretKey, "secret" + strings.Repeat(" ", 100) + testSecretKey},
	{"secret 41 chars", "secret=" + testSecretKey + "A", "secret=" + testSecretKey + "A"},
	{"secret padded base64", "secret=" + testSecretKey + "=", "secret=" + testSecretKey + "="},
	{"secret hex digest", "secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709"},
	// jwt and bearer
	{"jwt", "token " + testJWT + " end", "token [REDACTED:jwt] end"},
	{"jwt unsigned", "t=eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "t=[REDACTED:jwt]"},
	{"jwt prefix only", "eyJhbGciOiJub25lIn0 alone", "eyJhbGciOiJub25lIn0 alone"},
	{"bearer jwt", "Authorization: Bearer " + testJWT, "Authorization: Bearer [REDACTED:jwt]"},
	{"bearer opaque", "authorization: bearer 8f14e45fceea167a5a36dedd4bea2543", "authorization: bearer [REDACTED:bearer]"},
	{"bearer upper", "BEARER abc.def-ghi~jkl", "BEARER [REDACTED:bearer]"},
	{"bearer padded", "Bearer dGhpcyBpcyBhIHRva2Vu==;", "Bearer [REDACTED:bearer];"},
	{"bearer words", "the bearer authentication failed", "the bearer authentication failed"},
	{"bearer realm", `WWW-Authenticate: Bearer realm="api"`, `WWW-Authenticate: Bearer realm="api"`},
	{"bearer no space", "Bearer:xyz123456789", "Bearer:xyz123456789"},
	{"bearer in word", "forbearer 8f14e45fceea167a", "forbearer 8f14e45fceea167a"},
	// email
	{"email", "sent to jane.doe+tag@mail.example.co.uk.", "sent to [REDACTED:email]."},
	{"email quoted", `"user_1@example.com"`, `"[REDACTED:email]"`},
	{"email npm scope", "@aws-sdk/client-s3@3.1.0", "@aws-sdk/client-s3@3.1.0"},
	{"email no tld", "user@localhost", "user@localhost"},
	{"email numeric tld", "pkg@1.2.3", "pkg@1.2.3"},
	{"email double dot", "a@b..com", "a@b..com"},
	// card
	{"visa", "card 4111111111111111 ok", "card [REDACTED:card] ok"},
	{"visa spaces", "4111 1111 1111 1111", "[REDACTED:card]"},
	{"mastercard dashes", "cc=5555-5555-5555-4444;", "cc=[REDACTED:card];"},
	{"amex", "378282246310005", "[REDACTED:card]"},
	{"amex grouped", "3782 822463 10005", "[REDACTED:card]"},
	{"discover", "6011111111111117", "[REDACTED:card]"},
	{"visa 13", "4222222222222", "[REDACTED:card]"},
	{"card then number", "4111 1111 1111 1111 2024", "[REDACTED:card] 2024"},
	{"number then card", "12 4111 1111 1111 1111", "12 [REDACTED:card]"},
	{"luhn invalid", "4111111111111112", "4111111111111112"},
	{"epoch ms", "1704067200000", "1704067200000"},
	{"epoch ns", "1704067200000000000", "1704067200000000000"},
	{"too long", "41111111111111111111", "41111111111111111111"},
	{"card in word", "x4111111111111111", "x4111111111111111"},
	{"card decimal", "4111111111111111.5", "4111111111111111.5"},
	{"uuid digits", "12345678-1234-1234-1234-123456789012", "12345678-1234-1234-1234-123456789012"},
	{"uuid", "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"},
	{"timestamp", "2024-01-01T00:00:00.000Z 2024-01-01 12:00:00,123", "2024-01-01T00:00:00.000Z 2024-01-01 12:00:00,123"},
	{"odd grouping", "411 1111 1111 1111 11", "411 1111 1111 1111 11"},
	// ip
	{"ipv4", "from 192.168.1.20:443 ok", "from [REDACTED:ip]:443 ok"},
	{"ipv4 sentence", "host is 10.0.0.1.", "host is [REDACTED:ip]."},
	{"ipv4 x-forwarded", "203.0.113.7, 198.51.100.2", "[REDACTED:ip], [REDACTED:ip]"},
	{"version 5 parts", "1.2.3.4.5", "1.2.3.4.5"},
	{"version v", "v1.2.3.4", "v1.2.3.4"},
	{"octet too big", "256.1.1.1", "256.1.1.1"},
	{"leading zero", "01.2.3.4", "01.2.3.4"},
	{"three parts", "1.2.3", "1.2.3"},
	{"ipv6", "client 2001:db8::8a2e:370:7334 said", "client [REDACTED:ip] said"},
	{"ipv6 full", "2001:0db8:0000:0000:0000:ff00:0042:8329", "[REDACTED:ip]"},
	{"ipv6 loopback", "[::1]:8080", "[[REDACTED:ip]]:8080"},
	{"ipv6 mapped", "::ffff:192.0.2.128 x", "[REDACTED:ip] x"},
	{"ipv6 link local colon", "addr fe80::1: up", "addr [REDACTED:ip]: up"},
	{"time", "12:30:45.123", "12:30:45.123"},
	{"mac", "00:1a:2b:3c:4d:5e", "00:1a:2b:3c:4d:5e"},
	{"cpp scope", "std::vector Foo::Bar", "std::vector Foo::Bar"},
	{"double colon alone", "a :: b", "a :: b"},
	// mixed and plain
	{"several", "a@b.io 10.1.2.3 4111111111111111", "[REDACTED:email] [REDACTED:ip] [REDACTED:card]"},
	{"plain", "processing order 42 in 12.5 ms", "processing order 42 in 12.5 ms"},
	{"empty", "", ""},
}

func TestRedact(t *testing.T) {
	r := mustRedactor(t, []string{"all"})
	for _, tt := range redactCases {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := r.Redact(tt.in)
			if got != tt.want || changed != (tt.want != tt.in) {
				t.Errorf("Redact(%q) = %q, %v, want %q", tt.in, got, changed, tt.want)
			}
		})
	}
}

func TestRedactOnlySelectedPresets(t *testing.T) {
	r := mustRedactor(t, []string{"email"})
	in := "a@b.io 10.1.2.3 4111111111111111 " + testAccessKey
	want := "[REDACTED:email] 10.1.2.3 4111111111111111 " + testAccessKey
	if got, _ := r.Redact(in); got != want {
		t.Errorf("Redact(%q) = %q, want %q", in, got, want)
	}
}

func TestRedactPatterns(t *testing.T) {
	r := mustRedactor(t, []string{"email"}, `ssn-\d{3}`, `(?i)password=\S+`, `x+`)
	tests := []struct{ in, want string }{
		{"ssn-123 and PASSWORD=hunter2 here", "[REDACTED:pattern1] and [REDACTED:pattern2] here"},
		{"xxx@example.com", "[REDACTED:email]"}, // on the same start the longer match names the marker
		{"password=a@b.io", "[REDACTED:pattern2]"},
		{"nothing", "nothing"},
	}
	for _, tt := range tests {
		if got, _ := r.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	want := []RuleCount{{"email", 1}, {"pattern1", 1}, {"pattern2", 2}, {"pattern3", 0}}
	if diff := cmp.Diff(want, r.Counts()); diff != "" {
		t.Errorf("Counts() (-want +got):\n%s", diff)
	}
}

func TestRedactJSON(t *testing.T) {
	r := mustRedactor(t, []string{"all"}, `hunter\d`)
	tests := []struct{ name, in, want string }{
		{"value", `{"to":"a@b.io","n":1}`, `{"to":"[REDACTED:email]","n":1}`},
		{"key", `{"a@b.io":true}`, `{"[REDACTED:email]":true}`},
		{"nested", `{"a":[{"ip":"10.0.0.1"}],"b":null}`, `{"a":[{"ip":"[REDACTED:ip]"}],"b":null}`},
		{"escape before match", `{"m":"line\nuser@example.com"}`, `{"m":"line\n[REDACTED:email]"}`},
		{"escaped slash in secret", `{"aws_secret_access_key":"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY"}`, `{"aws_secret_access_key":"[REDACTED:aws]"}`},
		{"secret by key", `{"SecretAccessKey": "` + testSecretKey + `"}`, `{"SecretAccessKey": "[REDACTED:aws]"}`},
		{"unicode escape", `{"m":"\u0061@b.io \u00e9"}`, `{"m":"[REDACTED:email] é"}`},
		{"quote kept escaped", `{"m":"say \"hi\" to a@b.io"}`, `{"m":"say \"hi\" to [REDACTED:email]"}`},
		{"card number", `{"pan":4111111111111111,"x":-4111111111111111}`, `{"pan":"[REDACTED:card]","x":"[REDACTED:card]"}`},
		{"pattern", `{"p":"hunter2"}`, `{"p":"[REDACTED:pattern1]"}`},
		{"untouched", `{"n":1.5e3,"ok":false,"s":"plain"}`, `{"n":1.5e3,"ok":false,"s":"plain"}`},
		{"not json", `key=a@b.io`, `key=[REDACTED:email]`},
		{"bad escape falls back to text", `{"m":"\x a@b.io"}`, `{"m":"\x [REDACTED:email]"}`},
		{"unterminated", `{"m":"a@b.io`, `{"m":"[REDACTED:email]`},
		{"unterminated escaped", `{"m":"\t a@b.io`, `{"m":"\t [REDACTED:email]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got, changed := r.RedactJSON(in)
			if string(got) != tt.want || changed != (tt.want != tt.in) {
				t.Errorf("RedactJSON(%s) = %s, %v, want %s", tt.in, got, changed, tt.want)
			}
			if string(in) != tt.in {
				t.Errorf("RedactJSON modified its input to %s", in)
			}
			if json.Valid([]byte(tt.in)) && !json.Valid(got) {
				t.Errorf("RedactJSON(%s) = %s, not valid JSON", tt.in, got)
			}
		})
	}
}

func TestRedactRecord(t *testing.T) {
	r := mustRedactor(t, []string{"email", "ip"})
	fields := json.RawMessage(`{"client":"10.0.0.1"}`)
	rec := Record{Message: "mail a@b.io", Fields: fields, RequestID: "a@b.io"}
	if !r.RedactRecord(&rec) {
		t.Fatal("RedactRecord = false")
	}
	want := Record{Message: "mail [REDACTED:email]", Fields: json.RawMessage(`{"client":"[REDACTED:ip]"}`), RequestID: "a@b.io"}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if string(fields) != `{"client":"10.0.0.1"}` {
		t.Errorf("the old Fields were modified: %s", fields)
	}
	wantCounts := []RuleCount{{"email", 1}, {"ip", 1}}
	if diff := cmp.Diff(wantCounts, r.Counts()); diff != "" {
		t.Errorf("Counts() (-want +got):\n%s", diff)
	}
	var none *Redactor
	if none.RedactRecord(&rec) || none.Counts() != nil || none.Enabled() {
		t.Error("a nil Redactor did something")
	}
	if s, ok := none.Redact("a@b.io"); ok || s != "a@b.io" {
		t.Errorf("nil Redact = %q, %v", s, ok)
	}
}

func TestRedactFallbackDoesNotDoubleCount(t *testing.T) {
	r := mustRedactor(t, []string{"email"})
	// The first string is redacted before the bad token sends the whole
	// value to the text path; its match must be counted once.
	got, _ := r.RedactJSON([]byte(`["a@b.io", bad c@d.io]`))
	if want := `["[REDACTED:email]", bad [REDACTED:email]]`; string(got) != want {
		t.Errorf("RedactJSON = %s, want %s", got, want)
	}
	if c := r.Counts()[0].Count; c != 2 {
		t.Errorf("email count = %d, want 2", c)
	}
}

func TestRedactDoesNotAllocateWithoutMatch(t *testing.T) {
	// No pattern: regexp keeps its matchers in a sync.Pool, which the race
	// detector empties at random.
	r := mustRedactor(t, []string{"all"})
	for _, rec := range benchCorpus(200) {
		if rec.Type != "function" {
			continue
		}
		if n := testing.AllocsPerRun(5, func() { r.Redact(rec.Message) }); n != 0 {
			t.Errorf("Redact(%q) allocates %v times", rec.Message, n)
		}
		if n := testing.AllocsPerRun(5, func() { r.RedactJSON(rec.Fields) }); n != 0 {
			t.Errorf("RedactJSON(%s) allocates %v times", rec.Fields, n)
		}
	}
}

// FuzzRedact holds Redact to its promise with SLUICE_REDACT=all and the
// default keys: a value of every preset and of the key rule, put between
// separators (plain, or \n and \t, which escaped text carries as escapes)
// in any text, never survives, in a text line, in the same line logged as
// escaped JSON text, or in a JSON record's fields.
func FuzzRedact(f *testing.F) {
	for i, tt := range redactCases {
		f.Add(tt.in, "", uint8(i))
	}
	for i, tt := range bypassCases {
		f.Add(tt.in, tt.want, uint8(i))
	}
	f.Add("x", "y", uint8(0))
	r := mustRedactorKeys(f, []string{"all"}, DefaultRedactKeys())
	f.Fuzz(func(t *testing.T, before, after string, which uint8) {
		p := plants[int(which)%len(plants)]
		for _, sep := range plantSeps {
			val := before + sep + p.text + sep + after
			mustNotSurvive(t, r, &Record{Type: "function", Message: val}, sep, p.text)
			esc, _ := json.Marshal(val)
			mustNotSurvive(t, r, &Record{Type: "function", Message: "body=" + string(esc)}, sep, p.text)
			fields, _ := json.Marshal(map[string]any{"k": val, "n": []string{val}})
			mustNotSurvive(t, r, &Record{Type: "function", Fields: fields}, sep, p.text)
		}
		// Plain text in JSON stays valid JSON.
		raw, err := json.Marshal(map[string]string{"k": before, after: "v"})
		if err != nil {
			t.Fatal(err)
		}
		if out, _ := r.RedactJSON(raw); !json.Valid(out) {
			t.Fatalf("RedactJSON(%s) = %s, not valid JSON", raw, out)
		}
	})
}

// FuzzRedactJSON: any input is left unmodified and valid JSON stays valid;
// a planted value in a member next to the input, whether that input is
// JSON or not, does not survive.
func FuzzRedactJSON(f *testing.F) {
	for _, s := range []string{`{"a":"b@c.io","n":4111111111111111}`, `["10.0.0.1",1,true,null]`, `{"m":"\u00e9\n\ud83d\ude00 a@b.io"}`, `"\ud800 x@y.io"`, `{}`,
		`{"password":"hunter2","nested":{"Token":"abc"}}`, `{"pass\u0077ord":1}`, `{"a":"` + issueDump} {
		f.Add([]byte(s))
	}
	for _, tt := range bypassCases {
		f.Add([]byte(tt.in))
	}
	r := mustRedactor(f, []string{"all"}, `[0-9]{3}`)
	all := mustRedactorKeys(f, []string{"all"}, DefaultRedactKeys())
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := string(in)
		out, _ := r.RedactJSON(in)
		if string(in) != orig {
			t.Fatal("RedactJSON modified its input")
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("RedactJSON(%s) = %s, not valid JSON", in, out)
		}
		p := plants[len(in)%len(plants)]
		for _, sep := range plantSeps {
			q, _ := json.Marshal(sep + p.text + sep)
			fields := []byte(`{"x":` + orig + `,"k":` + string(q) + `}`)
			mustNotSurvive(t, all, &Record{Type: "function", Fields: fields}, sep, p.text)
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	recs := benchCorpus(2000)
	total := 0
	for i := range recs {
		total += len(recs[i].Message) + len(recs[i].Fields)
	}
	for _, bc := range []struct {
		name string
		keys []string
	}{{"all", nil}, {"all+keys", DefaultRedactKeys()}} {
		b.Run(bc.name, func(b *testing.B) {
			r := mustRedactorKeys(b, []string{"all"}, bc.keys)
			b.SetBytes(int64(total / len(recs)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Redact(recs[i].Message)
				r.RedactJSON(recs[i].Fields)
				if i++; i == len(recs) {
					i = 0
				}
			}
		})
	}
}

// FuzzNumericFeatures checks the prefilter of the card and ip scanners: it
// may let through text they find nothing in, never text they match.
func FuzzNumericFeatures(f *testing.F) {
	for _, tt := range redactCases {
		f.Add(tt.in)
	}
	f.Add("x 4111-1111-1111-1111 y 1.2.3.4 z ::1")
	const all = fCard | fIPv4 | fIPv6
	f.Fuzz(func(t *testing.T, s string) {
		for pad := range 8 { // every alignment
			p := strings.Repeat("_", pad) + s
			var need feature
			if len(scanCard(nil, p, 0)) > 0 {
				need |= fCard
			}
			if len(scanIPv4(nil, p, 0)) > 0 {
				need |= fIPv4
			}
			if len(scanIPv6(nil, p, 0)) > 0 {
				need |= fIPv6
			}
			if got := numericFeatures(p, all); need&^got != 0 {
				t.Fatalf("numericFeatures(%q) = %b, misses %b", p, got, need&^got)
			}
		}
	})
}
