package telemetry

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// TestDecodeContains holds the decoder to what a POST must not be able to
// do: make rows of the types sluice itself writes, or times whose
// partitions no reader finds.
func TestDecodeContains(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []buffer.Record
	}{
		{name: "sluice.stats is reserved",
			body: `[{"time":"2026-11-30T22:09:38.123Z","type":"sluice.stats","record":{"lines_seen":1000000}}]`,
			want: []buffer.Record{{Time: ts("2026-11-30T22:09:38.123Z"), Type: "unknown", Fields: raw(`{"type":"sluice.stats","record":{"lines_seen":1000000}}`)}}},
		{name: "sluice.malformed is reserved",
			body: `[{"time":"2026-11-30T22:09:38.123Z","type":"sluice.malformed","record":"x"}]`,
			want: []buffer.Record{{Time: ts("2026-11-30T22:09:38.123Z"), Type: "unknown", Fields: raw(`{"type":"sluice.malformed","record":"x"}`)}}},
		{name: "escaped sluice type is reserved",
			body: `[{"type":"sluice\u002etruncated"}]`,
			want: []buffer.Record{{Time: now, Type: "unknown", Fields: raw(`{"type":"sluice.truncated"}`)}}},
		{name: "far future time",
			body: `[{"time":"9999-12-31T23:59:59.999-23:59","type":"function","record":"late"}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "late", Fields: raw(`{"original_time":"9999-12-31T23:59:59.999-23:59"}`)}}},
		{name: "year zero",
			body: `[{"time":"0000-01-01T00:00:00+23:59","type":"platform.start","record":{"requestId":"r","version":"$LATEST"}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.start", RequestID: "r", Fields: raw(`{"original_time":"0000-01-01T00:00:00+23:59","version":"$LATEST"}`)}}},
		{name: "json timestamp fallback far past",
			body: `[{"type":"function","record":{"timestamp":"1969-07-20T20:17:40Z","message":"m","k":1}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "m", Fields: raw(`{"original_time":"1969-07-20T20:17:40Z","k":1}`)}}},
		{name: "level keys read in the one pass",
			body: `[{"type":"function","record":{"severity":"warning","message":"a"}},{"type":"function","record":{"level":50,"msg":"b"}},{"type":"function","record":{"Lvl":"x","levelname":"DEBUG"}}]`,
			want: []buffer.Record{
				{Time: now, Type: "function", Message: "a", Level: "WARN", Fields: raw(`{"severity":"warning"}`)},
				{Time: now, Type: "function", Level: "ERROR", Fields: raw(`{"level":50,"msg":"b"}`)},
				{Time: now, Type: "function", Level: "DEBUG", Fields: raw(`{"Lvl":"x","levelname":"DEBUG"}`)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			got, malformed := d.Decode([]byte(tt.body), now)
			if malformed {
				t.Fatalf("Decode(%s) malformed", tt.body)
			}
			if diff := cmp.Diff(tt.want, got, fieldsAsValues, asText); diff != "" {
				t.Errorf("Decode(%s) (-want +got):\n%s", tt.body, diff)
			}
			for _, r := range got {
				row := buffer.AppendRow(nil, buffer.Meta{Function: "f"}, &r)
				if _, err := buffer.ParseRow(row); err != nil {
					t.Errorf("row %s does not read back: %v", row, err)
				}
			}
			ref, _ := refDecode([]byte(tt.body), now)
			if diff := cmp.Diff(tt.want, ref, fieldsAsValues); diff != "" {
				t.Errorf("reference (-want +got):\n%s", diff)
			}
		})
	}
}

// containCases are bodies from the review, fuzz seeds too: a record Lambda
// cut across two POSTs, holding secrets behind escapes; reserved types;
// extreme times.
var containCases = []string{
	`[{"time":"2026-11-30T22:09:38.123Z","type":"function","record":"dump:\nAKIAIOSFODNN7EXAMPLE\n\tBearer abcdef0123456789abcdef\n4111111111111111\n10.0.0.1\nsecret \"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY\"`,
	`\n4111111111111111\n10.0.0.1\"}\n","requestId":"8476a536-e9f4-11e8-9739-2dfe598c3fcd"}]`,
	`[{"time":"2026-11-30T22:09:38.123Z","type":"sluice.stats","record":{"lines_seen":1000000}}]`,
	`[{"time":"9999-12-31T23:59:59.999-23:59","type":"function","record":"late"}]`,
	`[{"time":"0000-01-01T00:00:00+23:59","type":"function","record":"early"}]`,
}

// plants are a value of each redaction preset and of the key rule, with
// what of it must not survive.
var plants = []struct{ text, secret string }{
	{"AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
	{"secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
	{"IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD", "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"},
	{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
	{"Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"},
	{"jane.doe@example.com", "jane.doe@example.com"},
	{"4111111111111111", "4111111111111111"},
	{"192.168.10.20", "192.168.10.20"},
	{"2001:db8::1", "2001:db8::1"},
	{"password=pw-7Qx9ZtR2", "pw-7Qx9ZtR2"},
}

// checkPlanted makes telemetry bodies around text: a text line and a JSON
// line holding a planted secret, whole or cut (a malformed row, base64
// when it is not UTF-8), decodes them and redacts them with red
// (SLUICE_REDACT=all and the default keys), and fails if the secret
// survives in any row.
func checkPlanted(t *testing.T, red *buffer.Redactor, text []byte) {
	t.Helper()
	p := plants[len(text)%len(plants)]
	for _, sep := range []string{" | ", "\n\t"} {
		val := string(text) + sep + p.text + sep
		q, _ := json.Marshal(val)
		body := `[{"time":"2026-11-30T22:09:38.123Z","type":"function","record":` + string(q) + `},` +
			`{"time":"2026-11-30T22:09:38.124Z","type":"function","record":{"message":` + string(q) + `,"k":[` + string(q) + `],"password":"pw-7Qx9ZtR2"}}]`
		for _, b := range []string{body, body[:len(text)%len(body)], "\xff" + body[:len(body)/2]} {
			recs, _ := NewDecoder().Decode([]byte(b), now)
			for i := range recs {
				rec := recs[i]
				red.RedactRecord(&rec)
				msg := rec.Message
				if strings.Contains(string(rec.Fields), `"base64"`) {
					if d, err := base64.StdEncoding.DecodeString(msg); err == nil {
						msg = string(d)
					}
				}
				for _, s := range []string{msg, string(rec.Fields)} {
					if survives(s, sep, p.text) || p.secret == "pw-7Qx9ZtR2" && !strings.Contains(string(text), p.secret) && strings.Contains(s, `"password":"pw-7Qx9ZtR2"`) {
						t.Fatalf("body of %d bytes (%.200q...): row of type %s keeps %q", len(b), b, rec.Type, p.text)
					}
				}
			}
		}
	}
}

// survives reports whether sep+secret+sep is in s, or in s with its escapes
// decoded up to four times.
func survives(s, sep, secret string) bool {
	want := sep + secret + sep
	for range 4 {
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
