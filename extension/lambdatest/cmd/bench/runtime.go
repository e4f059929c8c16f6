package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// runFunction is the benchmark's function: the bench binary run as the
// Lambda runtime (bootstrap). Each invocation's payload {"lines": N, "ms":
// D} writes the next N lines of the corpus to stdout, cycling, spread over
// D milliseconds in slices of 10 ms (a function that logs as it works, so
// telemetry arrives in several POSTs as it does in Lambda), and answers
// {"lines": N, "bytes": B} with the bytes written (newlines excluded).
// Standard library only, so its own cost stays small next to the
// extensions'.
func runFunction(seed uint64, size int) error {
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return fmt.Errorf("AWS_LAMBDA_RUNTIME_API is not set")
	}
	c := newCorpus(seed, size)
	base := "http://" + api + "/2018-06-01/runtime/invocation/"
	out := bufio.NewWriterSize(os.Stdout, 256<<10)
	next := 0
	for {
		resp, err := http.Get(base + "next")
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		payload, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var in struct {
			Lines int `json:"lines"`
			Ms    int `json:"ms"`
		}
		if err := json.Unmarshal(payload, &in); err != nil {
			return fmt.Errorf("payload %q: %w", payload, err)
		}
		written := 0
		slices := max(in.Ms/10, 1)
		start := time.Now()
		for s := range slices {
			if s > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(s) * 10 * time.Millisecond)))
			}
			for range in.Lines*(s+1)/slices - in.Lines*s/slices {
				line := c.lines[next]
				next = (next + 1) % len(c.lines)
				written += len(line)
				_, _ = out.WriteString(line)
				_ = out.WriteByte('\n')
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("write lines: %w", err)
			}
		}
		time.Sleep(time.Until(start.Add(time.Duration(in.Ms) * time.Millisecond)))
		answer := fmt.Appendf(nil, `{"lines":%d,"bytes":%d}`, in.Lines, written)
		resp, err = http.Post(base+id+"/response", "application/json", bytes.NewReader(answer))
		if err != nil {
			return fmt.Errorf("response: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
