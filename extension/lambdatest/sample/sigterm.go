package main

import (
	"fmt"
	"os"
	"strconv"
)

// sigtermLinesVar asks the function to write that many lines from its
// SIGTERM handler, which runs when the platform shuts the environment down:
// "sample id=sigterm-<i> ...", so that a test can check that logs written
// while the environment shuts down are delivered too.
const sigtermLinesVar = "SAMPLE_SIGTERM_LINES"

// writeSIGTERMLines writes the lines sigtermLinesVar asks for, one write
// per line like handle.
func writeSIGTERMLines() {
	n, err := strconv.Atoi(os.Getenv(sigtermLinesVar))
	if err != nil || n <= 0 {
		return
	}
	for i := range n {
		_, _ = fmt.Fprintf(os.Stdout, "sample id=sigterm-%d written in the SIGTERM handler\n", i)
	}
}
