package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// loaderPackages are what the SDK's configuration loader brings in, and
// the extension must not link: each one's package initialisation runs at
// every cold start.
var loaderPackages = []string{
	"github.com/aws/aws-sdk-go-v2/config",
	"github.com/aws/aws-sdk-go-v2/service/sts",
	"github.com/aws/aws-sdk-go-v2/service/sso",
	"github.com/aws/aws-sdk-go-v2/service/ssooidc",
	"github.com/aws/aws-sdk-go-v2/service/signin",
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds",
}

// TestLambdaBuildLeavesOutLoader checks that the layer's build (-tags
// lambda) links none of the loader's packages, and that the default build
// (go install's, with `sluice logs`) still does, so that the check sees
// them when they are there.
func TestLambdaBuildLeavesOutLoader(t *testing.T) {
	tests := []struct {
		tags       string
		wantLoader bool
	}{
		{tags: "lambda", wantLoader: false},
		{tags: "lambda,parquet", wantLoader: false},
		{tags: "", wantLoader: true},
	}
	for _, tt := range tests {
		t.Run("tags="+tt.tags, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-tags", tt.tags, ".").Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("go list -deps -tags %q: %v\n%s", tt.tags, err, ee.Stderr)
				}
				t.Fatalf("go list -deps -tags %q: %v", tt.tags, err)
			}
			deps := strings.Fields(string(out))
			for _, p := range loaderPackages {
				if got := slices.Contains(deps, p); got != tt.wantLoader {
					t.Errorf("go list -deps -tags %q lists %s = %v, want %v", tt.tags, p, got, tt.wantLoader)
				}
			}
		})
	}
}

// TestLambdaBuildLogs checks what `sluice logs` says in the layer's build:
// where to get the full command, with the usage exit status.
func TestLambdaBuildLogs(t *testing.T) {
	cmd := exec.Command(binaries.sluice, "logs", "--function", "billing")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("sluice logs in the lambda build: %v, want exit status 2", err)
	}
	const want = "go install github.com/sluice-logs/sluice/extension/cmd/sluice@latest"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q, want it to name %q", stderr.String(), want)
	}
}
