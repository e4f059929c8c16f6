package buffer

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

func TestRedactKeys(t *testing.T) {
	r, err := NewRedactor(nil, nil, "password", "Access-Token", "authorization", "cookie")
	if err != nil {
		t.Fatal(err)
	}
	text := []struct{ in, want string }{
		{`password=hunter2 user=bob`, `password=[REDACTED:key] user=bob`},
		{`PASSWORD = "hunter 2" ok`, `PASSWORD = "[REDACTED:key]" ok`},
		{`access_token=abc&x=1`, `access_token=[REDACTED:key]&x=1`},
		{`accessToken: abc def` + "\nnext", `accessToken: [REDACTED:key]` + "\nnext"},
		{`Authorization: Basic dXNlcjpwYXNz`, `Authorization: [REDACTED:key]`},
		{`{"cookie": {"a":"b"}} tail`, `{"cookie": [REDACTED:key]} tail`},
		{`passwords=2 mypassword=x password==y`, `passwords=2 mypassword=x password==y`},
		{`req={\"password\":\"hunter2\"}`, `req={\"password\":\"[REDACTED:key]\"}`},
		{`password='it''s'`, `password='[REDACTED:key]''s'`},
	}
	for _, tt := range text {
		if got, _ := r.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
	js := []struct{ in, want string }{
		{`{"password":"hunter2","n":{"deep":[{"Password":42}]}}`, `{"password":"[REDACTED:key]","n":{"deep":[{"Password":"[REDACTED:key]"}]}}`},
		{`{"cookie":{"a":["b"]},"ok":1}`, `{"cookie":"[REDACTED:key]","ok":1}`},
		{`{"password":null,"access-token":true}`, `{"password":null,"access-token":true}`},
		{`{"pass\u0077ord" : "x"}`, `{"pass\u0077ord" : "[REDACTED:key]"}`},
		{`["password","hunter2"]`, `["password","hunter2"]`},
		{`{"password":"cut off`, `{"password":"[REDACTED:key]"`},
	}
	for _, tt := range js {
		if got, _ := r.RedactJSON([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("RedactJSON(%s)\n = %s\nwant %s", tt.in, got, tt.want)
		}
	}
}

// plants are a value of each preset and of the key rule, with what of it
// must not survive.
var plants = []struct{ text, secret string }{
	{testAccessKey, testAccessKey},
	{"secret " + testSecretKey, testSecretKey},
	{"IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD", "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"},
	{testJWT, testJWT},
	{"Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"},
	{"jane.doe@example.com", "jane.doe@example.com"},
	{"john.doe%40example.com", "john.doe%40example.com"},
	{"4111111111111111", "4111111111111111"},
	{"4111  1111  1111  1111", "4111  1111  1111  1111"},
	{"192.168.10.20", "192.168.10.20"},
	{"fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"},
	{"password=pw-7Qx9ZtR2", "pw-7Qx9ZtR2"},
}

// plantSeps are what a planted value is put between: a plain separator,
// and control characters that JSON escapes (\n, \t), which a malformed
// body or escaped text carries as escapes.
var plantSeps = []string{" | ", "\n\t"}

// survives reports whether sep+secret+sep is in s, or in s with its escapes
// decoded once, twice or three times.
func survives(s, sep, secret string) bool {
	want := sep + secret + sep
	for range maxEscapeDepth + 1 {
		if strings.Contains(s, want) {
			return true
		}
		dec, _, decoded := jsonscan.AppendUnescaped(nil, nil, s)
		if !decoded {
			return false
		}
		s = string(dec)
	}
	return strings.Contains(s, want)
}

// mustNotSurvive redacts rec with r and fails if a planted secret is left
// in any of its columns, a base64 malformed body decoded.
func mustNotSurvive(t *testing.T, r *Redactor, rec *Record, sep, secret string) {
	t.Helper()
	in := *rec
	r.RedactRecord(rec)
	msg := rec.Message
	if rec.Type == typeMalformed && strings.Contains(string(rec.Fields), `"base64"`) {
		if b, err := base64.StdEncoding.DecodeString(msg); err == nil {
			msg = string(b)
		}
	}
	if survives(msg, sep, secret) || survives(string(rec.Fields), sep, secret) {
		t.Fatalf("RedactRecord(%+v) = %+v: %q survives", in, *rec, secret)
	}
}

func mustRedactorKeys(t testing.TB, presets, keys []string) *Redactor {
	t.Helper()
	r, err := NewRedactor(presets, nil, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
