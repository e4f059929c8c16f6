// Command nullext is the do-nothing reference extension of the benchmark
// (extension/lambdatest/cmd/bench): what any external extension that
// receives telemetry costs at the least, built from the same toolchain and
// flags as sluice. It registers for INVOKE and SHUTDOWN, subscribes to
// platform and function telemetry with the same buffering as sluice,
// answers every POST 200 after reading its body, calls /event/next at once
// after each INVOKE and exits on SHUTDOWN. Standard library only, so its
// figures are the floor of a Go extension, not of a dependency.
//
// NULLEXT_BUFFERING overrides the buffering object (JSON, e.g.
// {"maxItems":10000,"maxBytes":1048576,"timeoutMs":25}).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// defaultBuffering is sluice's subscription (telemetry.DefaultBuffering);
// the benchmark passes the current value through NULLEXT_BUFFERING.
const defaultBuffering = `{"maxItems":10000,"maxBytes":1048576,"timeoutMs":25}`

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nullext: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return fmt.Errorf("AWS_LAMBDA_RUNTIME_API is not set")
	}
	base := "http://" + api
	hc := &http.Client{}

	req, err := http.NewRequest(http.MethodPost, base+"/2020-01-01/extension/register", bytes.NewReader([]byte(`{"events":["INVOKE","SHUTDOWN"]}`)))
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	req.Header.Set("Lambda-Extension-Name", filepath.Base(os.Args[0]))
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register: status %d", resp.StatusCode)
	}
	id := resp.Header.Get("Lambda-Extension-Identifier")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		}))
	}()

	buffering := os.Getenv("NULLEXT_BUFFERING")
	if buffering == "" {
		buffering = defaultBuffering
	}
	if !json.Valid([]byte(buffering)) {
		return fmt.Errorf("NULLEXT_BUFFERING=%q: want a JSON object", buffering)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	sub := `{"schemaVersion":"2025-01-29","destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:` +
		strconv.Itoa(port) + `"},"types":["platform","function"],"buffering":` + buffering + `}`
	req, err = http.NewRequest(http.MethodPut, base+"/2022-07-01/telemetry", bytes.NewReader([]byte(sub)))
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	req.Header.Set("Lambda-Extension-Identifier", id)
	req.Header.Set("Content-Type", "application/json")
	resp, err = hc.Do(req)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("subscribe: status %d", resp.StatusCode)
	}

	var ev struct {
		EventType string `json:"eventType"`
	}
	for {
		req, err := http.NewRequest(http.MethodGet, base+"/2020-01-01/extension/event/next", nil)
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("next: status %d", resp.StatusCode)
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			return fmt.Errorf("next: %w", err)
		}
		if ev.EventType == "SHUTDOWN" {
			return nil
		}
	}
}
