package layer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeAWS is a stand-in for the aws CLI: it appends its arguments, one per
// line and a blank line after each call, to $AWS_CALLS, and answers
// publish-layer-version with the JSON the real CLI prints (pretty, one
// field per line) for a version numbered after the call count.
const fakeAWS = `#!/bin/sh
for a in "$@"; do printf '%s\n' "$a" >> "$AWS_CALLS"; done
echo >> "$AWS_CALLS"
n=$(grep -c '^$' "$AWS_CALLS")
case "$2" in
publish-layer-version)
	region=us-east-1
	while [ $# -gt 0 ]; do [ "$1" = --region ] && region=$2; shift; done
	cat <<JSON
{
    "Content": {
        "Location": "https://awslambda-us-east-1-layers.s3.us-east-1.amazonaws.com/snapshots/x",
        "CodeSha256": "abc=",
        "CodeSize": 5000000
    },
    "LayerArn": "arn:aws:lambda:$region:123456789012:layer:sluice",
    "LayerVersionArn": "arn:aws:lambda:$region:123456789012:layer:sluice:$n",
    "Description": "whatever",
    "CreatedDate": "2026-12-07T10:00:00.000+0000",
    "Version": $n,
    "CompatibleArchitectures": [
        "arm64"
    ]
}
JSON
	;;
add-layer-version-permission)
	echo '{"Statement": "{}", "RevisionId": "r1"}'
	;;
*)
	echo "unexpected call: $*" >&2; exit 1
	;;
esac
`

type publishRun struct {
	out   string
	calls [][]string
	err   error
}

func publish(t *testing.T, args ...string) publishRun {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	dist := filepath.Join(dir, "dist")
	for _, d := range []string{bin, dist} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "aws"), []byte(fakeAWS), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sluice-x86_64.zip", "sluice-arm64.zip"} {
		if err := os.WriteFile(filepath.Join(dist, f), []byte("zip"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dist, "VERSION"), []byte("v1.2.3-4-gabcdef0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "calls")
	cmd := exec.Command("sh", append([]string{"publish.sh", "-d", dist}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "AWS_CALLS="+calls)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = &exitError{err, stderr.String()}
	}
	r := publishRun{out: string(out), err: err}
	b, _ := os.ReadFile(calls)
	for c := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n\n"), "\n\n") {
		if c != "" {
			r.calls = append(r.calls, strings.Split(c, "\n"))
		}
	}
	for _, c := range r.calls {
		for i, a := range c {
			c[i] = strings.ReplaceAll(a, dist, "DIST")
		}
	}
	return r
}

type exitError struct {
	err    error
	stderr string
}

func (e *exitError) Error() string { return e.err.Error() + ": " + e.stderr }

func publishCall(arch, region string, extra ...string) []string {
	c := []string{"lambda", "publish-layer-version", "--output", "json",
		"--layer-name", "sluice-" + arch,
		"--description", "sluice v1.2.3-4-gabcdef0 (" + arch + "): Lambda logs to S3 via the Telemetry API",
		"--license-info", "see https://github.com/sluice-logs/sluice",
		"--compatible-architectures", arch,
		"--zip-file", "fileb://DIST/sluice-" + arch + ".zip"}
	c = append(c, extra...)
	if region != "" {
		c = append(c, "--region", region)
	}
	return c
}

func TestPublish(t *testing.T) {
	t.Run("both architectures, default region", func(t *testing.T) {
		r := publish(t)
		if r.err != nil {
			t.Fatal(r.err)
		}
		want := [][]string{publishCall("x86_64", ""), publishCall("arm64", "")}
		if d := cmp.Diff(want, r.calls); d != "" {
			t.Errorf("aws calls (-want +got):\n%s", d)
		}
		wantOut := "x86_64 default arn:aws:lambda:us-east-1:123456789012:layer:sluice:1\n" +
			"arm64 default arn:aws:lambda:us-east-1:123456789012:layer:sluice:2\n"
		if r.out != wantOut {
			t.Errorf("output = %q, want %q", r.out, wantOut)
		}
	})
	t.Run("two regions, shared with an account, runtimes", func(t *testing.T) {
		r := publish(t, "-r", "eu-west-1", "-r", "us-east-2", "-a", "210987654321", "-A", "arm64", "-R", "provided.al2023 python3.13")
		if r.err != nil {
			t.Fatal(r.err)
		}
		perm := func(region, version string) []string {
			return []string{"lambda", "add-layer-version-permission", "--output", "json",
				"--layer-name", "sluice-arm64", "--version-number", version, "--action", "lambda:GetLayerVersion",
				"--statement-id", "account-210987654321", "--principal", "210987654321", "--region", region}
		}
		rt := []string{"--compatible-runtimes", "provided.al2023", "python3.13"}
		want := [][]string{
			publishCall("arm64", "eu-west-1", rt...), perm("eu-west-1", "1"),
			publishCall("arm64", "us-east-2", rt...), perm("us-east-2", "3"),
		}
		if d := cmp.Diff(want, r.calls); d != "" {
			t.Errorf("aws calls (-want +got):\n%s", d)
		}
		wantOut := "arm64 eu-west-1 arn:aws:lambda:eu-west-1:123456789012:layer:sluice:1\n" +
			"arm64 us-east-2 arn:aws:lambda:us-east-2:123456789012:layer:sluice:3\n"
		if r.out != wantOut {
			t.Errorf("output = %q, want %q", r.out, wantOut)
		}
	})
	t.Run("shared with an organisation", func(t *testing.T) {
		r := publish(t, "-o", "o-abc123", "-A", "x86_64")
		if r.err != nil {
			t.Fatal(r.err)
		}
		want := []string{"lambda", "add-layer-version-permission", "--output", "json",
			"--layer-name", "sluice-x86_64", "--version-number", "1", "--action", "lambda:GetLayerVersion",
			"--statement-id", "org-o-abc123", "--principal", "*", "--organization-id", "o-abc123"}
		if len(r.calls) != 2 || !cmp.Equal(want, r.calls[1]) {
			t.Errorf("aws calls = %q, want the publish then %q", r.calls, want)
		}
	})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"account and organisation", []string{"-a", "1", "-o", "o-1"}, "exclude each other"},
		{"missing zip", []string{"-n", "sluice-parquet"}, "sluice-parquet-x86_64.zip missing"},
		{"stray argument", []string{"extra"}, "usage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := publish(t, c.args...)
			if r.err == nil || !strings.Contains(strings.ToLower(r.err.Error()), c.want) {
				t.Errorf("publish %q: err = %v, want one containing %q", c.args, r.err, c.want)
			}
			if len(r.calls) != 0 {
				t.Errorf("publish %q called aws %d times, want none", c.args, len(r.calls))
			}
		})
	}
}
