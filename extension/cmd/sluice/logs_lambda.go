//go:build lambda

package main

import (
	"context"
	"fmt"
	"io"
)

// logsMain stands in for `sluice logs` in the layer's binary (built with
// -tags lambda), which leaves the command out: it needs the SDK's full
// configuration loader, whose packages would cost every cold start of the
// extension about 1 ms and 2 MB.
func logsMain(_ context.Context, _ []string, _, stderr io.Writer, _ func(string) string) int {
	fmt.Fprint(stderr, `sluice logs: this sluice is the Lambda layer's build, without the logs command.
Install the full command with:
  go install github.com/sluice-logs/sluice/extension/cmd/sluice@latest
`)
	return 2 // bad usage, as in the full command
}
