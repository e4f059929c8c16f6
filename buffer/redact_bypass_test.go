package buffer

import (
	"encoding/base64"
	"strings"
	"testing"
)

// The strings below were reproduced against sluice with SLUICE_REDACT=all:
// each one came out with a secret in it, or a harmless value redacted.

// issueDump is the record of a body that Lambda cut in two: escapes such as
// \n, \t and \/ stand between the secrets and the word boundaries the rules
// look for.
const issueDump = `"record":"dump:\nAKIAIOSFODNN7EXAMPLE\n\tBearer abcdef0123456789abcdef\n4111111111111111\n10.0.0.1\nsecret \"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY\"`

const issueDumpRedacted = `"record":"dump:\n[REDACTED:aws]\n\tBearer [REDACTED:bearer]\n[REDACTED:card]\n[REDACTED:ip]\nsecret \"[REDACTED:aws]\"`

var bypassCases = []struct {
	name, in, want string
}{
	// Escaped text in text lines.
	{"dump in a text line", issueDump, issueDumpRedacted},
	{"slash-escaped secret key", `"SecretAccessKey":"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY"`, `"SecretAccessKey":"[REDACTED:aws]"`},
	{"slash-escaped bearer", `Bearer abc\/def0123456789xyzXYZ`, `Bearer [REDACTED:bearer]`},
	{"bearer cut at an escape", `Authorization: Bearer abcdefghij0123456789\/ABCDEFGHIJ0123456789abcdefghi`, `Authorization: Bearer [REDACTED:bearer]`},
	{"key after newline escape", `{\"msg\":\"login\nAKIAIOSFODNN7EXAMPLE\"}`, `{\"msg\":\"login\n[REDACTED:aws]\"}`},
	{"jwt with unicode escapes", `token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\u002eeyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ\u002eSflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`, `token=[REDACTED:jwt]`},
	{"double-escaped json", `req="{\\\"k\\\":\\\"AKIAIOSFODNN7EXAMPLE\\\"}"`, `req="{\\\"k\\\":\\\"[REDACTED:aws]\\\"}"`},
	// Misses.
	{"url-encoded email", `email=john.doe%40example.com`, `email=[REDACTED:email]`},
	{"punycode email", `user@xn--e1afmkfd.xn--p1ai`, `[REDACTED:email]`},
	{"card with double spaces", `4111  1111  1111  1111`, `[REDACTED:card]`},
	{"session token", `AWS_SESSION_TOKEN=IQoJb3JpZ2luX2Vj...`, `AWS_SESSION_TOKEN=[REDACTED:aws]...`},
	// False positives.
	{"retina image name", `logo@2x.png`, `logo@2x.png`},
	{"four-part version", `release 2.1.0.7`, `release 2.1.0.7`},
	{"order id", `order id 5105105105105100`, `order id 5105105105105100`},
	// What the false-positive rules must not let through.
	{"card after the word card", `card 5105105105105100`, `card [REDACTED:card]`},
	{"ip after from", `from 2.1.0.7`, `from [REDACTED:ip]`},
	{"email with a digit label", `ops@2xmail.com`, `[REDACTED:email]`},
}

func TestRedactBypass(t *testing.T) {
	r := mustRedactor(t, []string{"all"})
	for _, tt := range bypassCases {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := r.Redact(tt.in)
			if got != tt.want || changed != (tt.want != tt.in) {
				t.Errorf("Redact(%q)\n = %q, %v\nwant %q", tt.in, got, changed, tt.want)
			}
		})
	}
}

// TestRedactMalformedBody redacts the sluice.malformed row of a cut body:
// both halves of one record cut across two POSTs, and a body that is not
// UTF-8 (kept as base64).
func TestRedactMalformedBody(t *testing.T) {
	head := `[{"time":"2026-11-30T22:09:38.123Z","type":"function",`
	tail := `\n4111111111111111\n10.0.0.1\"}\n","requestId":"8476a536-e9f4-11e8-9739-2dfe598c3fcd"}]`
	tests := []struct {
		name, body, want string
	}{
		{"first half", head + issueDump, head + issueDumpRedacted},
		{"second half", tail, `\n[REDACTED:card]\n[REDACTED:ip]\"}\n","requestId":"8476a536-e9f4-11e8-9739-2dfe598c3fcd"}]`},
		{"cut inside an escape", head + `"record":"AKIAIOSFODNN7EXAMPLE\u00`, head + `"record":"[REDACTED:aws]\u00`},
	}
	r := mustRedactor(t, []string{"all"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := Record{Type: "sluice.malformed", Message: tt.body, Fields: []byte(`{"bytes":1}`)}
			r.RedactRecord(&rec)
			if rec.Message != tt.want {
				t.Errorf("RedactRecord(sluice.malformed %q)\n message = %q\n want      %q", tt.body, rec.Message, tt.want)
			}
		})
	}
	t.Run("base64", func(t *testing.T) {
		body := "\xff\xfe" + head + `"record":"key AKIAIOSFODNN7EXAMPLE"`
		rec := Record{Type: "sluice.malformed", Message: base64.StdEncoding.EncodeToString([]byte(body)),
			Fields: []byte(`{"encoding":"base64","bytes":1}`)}
		r.RedactRecord(&rec)
		dec, err := base64.StdEncoding.DecodeString(rec.Message)
		if err != nil {
			t.Fatalf("redacted message %q is not base64: %v", rec.Message, err)
		}
		if strings.Contains(string(dec), testAccessKey) {
			t.Errorf("RedactRecord(base64 body) decodes to %q, still holding the key", dec)
		}
	})
	t.Run("base64 that does not decode", func(t *testing.T) {
		rec := Record{Type: "sluice.malformed", Message: "!!" + testAccessKey[:10], Fields: []byte(`{"encoding":"base64","bytes":1}`)}
		if !r.RedactRecord(&rec) || rec.Message != "[REDACTED:undecodable]" {
			t.Errorf("RedactRecord(bad base64) message = %q, want it masked", rec.Message)
		}
	})
}
