// Command osfetch fetches the jars of the tests' OpenSearch node and
// compiles its launcher into the cache (see package ostest), so that the
// tests start the node without downloading; with -start it also starts a
// node once and reports how long that took.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sluice-logs/sluice/sinks/ostest"
)

func main() {
	start := flag.Bool("start", false, "also start a node once and report how long it took")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	begin := time.Now()
	if _, err := ostest.Fetch(ctx); err != nil {
		// make test depends on this target: without Java the OpenSearch
		// tests skip, unless they are required to run.
		if errors.Is(err, ostest.ErrNoJava) && os.Getenv(ostest.RequireEnv) != "1" {
			fmt.Fprintf(os.Stderr, "osfetch: %v; the OpenSearch tests will be skipped (%s=1 fails instead)\n", err, ostest.RequireEnv)
			return
		}
		fmt.Fprintln(os.Stderr, "osfetch:", err)
		os.Exit(1)
	}
	dir, _ := ostest.CacheDir()
	fmt.Printf("opensearch %s jars and launcher ready in %s (%v)\n", ostest.Version, dir, time.Since(begin).Round(time.Millisecond))
	if !*start {
		return
	}
	home, err := os.MkdirTemp("", "osfetch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "osfetch:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(home)
	n, err := ostest.Run(ctx, home)
	if err != nil {
		fmt.Fprintln(os.Stderr, "osfetch:", err)
		os.Exit(1)
	}
	fmt.Printf("node started (green) in %v at %s\n", n.Started.Round(time.Millisecond), n.URL)
	n.Stop()
}
