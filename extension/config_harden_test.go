package extension

import (
	"strings"
	"testing"

	"github.com/sluice-logs/sluice/buffer"
)

// TestLoadRefuses holds Load to the settings a review found accepted: each
// value must fail init with an error that names the right variable.
func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string // substrings of the error
	}{
		{"prefix with ..", map[string]string{"SLUICE_SINK": "s3://bucket/logs/../x"}, []string{`SLUICE_SINK="s3://bucket/logs/../x"`, "prefix"}},
		{"prefix with //", map[string]string{"SLUICE_SINK": "s3://bucket/logs//x"}, []string{`SLUICE_SINK="s3://bucket/logs//x"`, "empty segment"}},
		{"prefix with a space", map[string]string{"SLUICE_SINK": "s3://bucket/my logs"}, []string{`SLUICE_SINK="s3://bucket/my logs"`, "prefix"}},
		{"prefix with escapes", map[string]string{"SLUICE_SINK": "s3://bucket/logs/%2e%2e/x"}, []string{`SLUICE_SINK=`, "prefix"}},
		{"prefix with a fake partition", map[string]string{"SLUICE_SINK": "s3://bucket/logs/function=evil/dt=2026-01-01"}, []string{`SLUICE_SINK=`, `"function="`}},
		{"prefix too long", map[string]string{"SLUICE_SINK": "s3://bucket/" + strings.Repeat("a", 1100)}, []string{`SLUICE_SINK=`, "1024"}},
		{"userinfo", map[string]string{"SLUICE_SINK": "s3://AKIAIOSFODNN7EXAMPLE:secret@bucket/logs"}, []string{`SLUICE_SINK="s3://***@bucket/logs"`, "credentials"}},
		{"bucket like an ip", map[string]string{"SLUICE_SINK": "s3://192.168.1.1/logs"}, []string{`bucket "192.168.1.1"`}},
		{"bucket with ..", map[string]string{"SLUICE_SINK": "s3://my..bucket/logs"}, []string{`bucket "my..bucket"`}},
		{"bucket xn--", map[string]string{"SLUICE_SINK": "s3://xn--bucket/logs"}, []string{`bucket "xn--bucket"`}},
		{"kms control character", map[string]string{"SLUICE_S3_KMS_KEY_ID": "alias/logs\x00"}, []string{`SLUICE_S3_KMS_KEY_ID="alias/logs\x00"`}},
		{"kms not a key", map[string]string{"SLUICE_S3_KMS_KEY_ID": "my key"}, []string{`SLUICE_S3_KMS_KEY_ID="my key"`}},
		{"spill dir root", map[string]string{"SLUICE_SPILL_DIR": "/"}, []string{`SLUICE_SPILL_DIR="/"`, "/tmp"}},
		{"spill dir escapes tmp", map[string]string{"SLUICE_SPILL_DIR": "/tmp/../etc"}, []string{`SLUICE_SPILL_DIR="/tmp/../etc"`}},
		{"spill dir is tmp", map[string]string{"SLUICE_SPILL_DIR": "/tmp"}, []string{`SLUICE_SPILL_DIR="/tmp"`}},
		{"spill dir is tmp/", map[string]string{"SLUICE_SPILL_DIR": "/tmp/"}, []string{`SLUICE_SPILL_DIR="/tmp/"`}},
		{"batch over memory", map[string]string{"SLUICE_BATCH_MAX_BYTES": "256MiB", "SLUICE_MEMORY_LIMIT_MB": "16", "SLUICE_BUFFER_MAX_BYTES": "4MiB"},
			[]string{"SLUICE_BATCH_MAX_BYTES=256MiB", "SLUICE_MEMORY_LIMIT_MB=16"}},
		{"both redaction settings bad", map[string]string{"SLUICE_REDACT": "phone", "SLUICE_REDACT_PATTERNS": "a("},
			[]string{`SLUICE_REDACT="phone": unknown preset`, `SLUICE_REDACT_PATTERNS="a(": pattern 1`}},
		{"secret in a pattern list", map[string]string{"SLUICE_REDACT_PATTERNS": `["ok","sk_live_4eC39HqLyjWDarjtT1zdp7dc("]`},
			[]string{`SLUICE_REDACT_PATTERNS=`, "pattern 2"}},
		{"bad key name", map[string]string{"SLUICE_REDACT_KEYS": "password,a b"}, []string{`SLUICE_REDACT_KEYS="password,a b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"SLUICE_SINK": "s3://bucket"}
			for k, v := range tt.vars {
				vars[k] = v
			}
			_, err := Load(env(vars))
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want one", tt.vars)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%q) error = %q, want it to contain %q", tt.vars, err, w)
				}
			}
			for _, secret := range []string{"AKIAIOSFODNN7EXAMPLE", ":secret@", "4eC39HqLyjWDarjtT1zdp7dc"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Load(%q) error = %q, quotes the secret %q", tt.vars, err, secret)
				}
			}
		})
	}
}

// TestLoadAccepts checks values that must keep working next to the new
// checks.
func TestLoadAccepts(t *testing.T) {
	for _, vars := range []map[string]string{
		{"SLUICE_SINK": "s3://my-logs/lambda/prod_2026/app.v1"},
		{"SLUICE_SINK": "s3://my-logs/env=prod"},
		{"SLUICE_S3_KMS_KEY_ID": "1234abcd-12ab-34cd-56ef-1234567890ab"},
		{"SLUICE_S3_KMS_KEY_ID": "mrk-1234abcd12ab34cd56ef1234567890ab"},
		{"SLUICE_S3_KMS_KEY_ID": "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
		{"SLUICE_S3_KMS_KEY_ID": "alias/aws/s3"},
		{"SLUICE_S3_KMS_KEY_ID": "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/Example_Alias-1"},
		{"SLUICE_SPILL_DIR": "/tmp/sluice-spill-2"},
		{"SLUICE_REDACT_PATTERNS": "[0-9]{16}"},
	} {
		vars["SLUICE_SINK"] = cmpOr(vars["SLUICE_SINK"], "s3://bucket")
		if _, err := Load(env(vars)); err != nil {
			t.Errorf("Load(%q): %v", vars, err)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestLoadRedactKeys redacts by field name: JSON fields at any depth and
// key=value or key: value text, the names case-insensitive.
func TestLoadRedactKeys(t *testing.T) {
	tests := []struct {
		name              string
		vars              map[string]string
		msg, fields       string
		wantMsg, wantFlds string
	}{
		{"listed keys", map[string]string{"SLUICE_REDACT_KEYS": "password,token"},
			`login password=hunter2 token: abc123`, `{"user":"bob","password":"hunter2","nested":{"Token":"abc"}}`,
			`login password=[REDACTED:key] token: [REDACTED:key]`, `{"user":"bob","password":"[REDACTED:key]","nested":{"Token":"[REDACTED:key]"}}`},
		{"defaults with a preset", map[string]string{"SLUICE_REDACT": "email"},
			`Cookie: session=abc; theme=dark`, `{"password":"hunter2","headers":{"Authorization":"Basic dXNlcjpwYXNz"}}`,
			`Cookie: [REDACTED:key]`, `{"password":"[REDACTED:key]","headers":{"Authorization":"[REDACTED:key]"}}`},
		{"keys off", map[string]string{"SLUICE_REDACT": "email", "SLUICE_REDACT_KEYS": "none"},
			`password=hunter2`, `{"password":"hunter2"}`,
			`password=hunter2`, `{"password":"hunter2"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.vars["SLUICE_SINK"] = "s3://bucket"
			c, err := Load(env(tt.vars))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			rec := buffer.Record{Type: "function", Message: tt.msg, Fields: []byte(tt.fields)}
			c.Redactor.RedactRecord(&rec)
			if rec.Message != tt.wantMsg || string(rec.Fields) != tt.wantFlds {
				t.Errorf("RedactRecord(%q, %s)\n = %q, %s\nwant %q, %s", tt.msg, tt.fields, rec.Message, rec.Fields, tt.wantMsg, tt.wantFlds)
			}
		})
	}
}
