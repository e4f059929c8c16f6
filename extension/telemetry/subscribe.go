// Package telemetry is the Lambda Telemetry API side of sluice: it
// subscribes the extension to the function's telemetry, serves the HTTP
// endpoint Lambda POSTs batches to, and decodes those batches into
// buffer.Records.
package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// SchemaVersion is the Telemetry API schema sluice asks for. It is the one
// AWS recommends and the only one Lambda Managed Instances accept; it is
// backward compatible with 2022-12-13, which the decoder also reads.
const SchemaVersion = "2025-01-29"

// ErrNotSupported is returned (wrapped) by Subscribe when the Telemetry API
// answers 202, as local emulators do with errorType Telemetry.NotSupported:
// the call "succeeds" but nothing will ever be delivered. Callers treat it
// as "not subscribed", not as success.
var ErrNotSupported = errors.New("telemetry api not supported")

// Buffering is how Lambda batches events before it POSTs them.
type Buffering struct {
	MaxItems  int // events per batch, 1,000..10,000
	MaxBytes  int // bytes per batch, 262,144..1,048,576
	TimeoutMs int // how long Lambda waits to fill a batch, 25..30,000
}

// DefaultBuffering returns the buffering sluice subscribes with. All three
// values are set explicitly because AWS's documented defaults disagree with
// each other.
func DefaultBuffering() Buffering {
	return Buffering{
		// The maximum: a log storm arrives in the fewest POSTs, and each POST
		// costs a request, a decode and a channel send.
		MaxItems: 10000,
		// The maximum: a long line (300 KB lines exist; telemetry does not
		// cap them at 256 KB) fits in one batch whole instead of being cut
		// across two POSTs, where neither half parses.
		MaxBytes: 1048576,
		// Chosen with `make bench` (100 ms invocations logging as they run):
		// at Lambda's minimum, 25 ms, an invocation arrives in ~3.3 POSTs
		// and each costs ~0.3 ms of CPU, so at 10 lines per invocation
		// sluice used 1.5x the CPU of an extension that does nothing; at
		// 100 ms it is ~1 POST and 0.75x, with the same peak memory.
		// Longer waits save little more (250 ms: 0.66x) and grow the POSTs,
		// so the peak memory (+4 MB at 1,000 lines per invocation). The
		// cost is latency: an invocation's platform.runtimeDone, which
		// decides its sampling, comes up to 100 ms later (or at the next
		// thaw); batches are sealed by size and age, not by it.
		// SLUICE_FLUSH=invoke waits for runtimeDone and uses
		// InvokeBuffering instead.
		TimeoutMs: 100,
	}
}

// InvokeBuffering is the buffering for SLUICE_FLUSH=invoke, where the
// extension waits for each invocation's platform.runtimeDone before it
// calls /event/next: Lambda's shortest wait, 25 ms, because every
// millisecond of it is added to every invocation's billed duration.
func InvokeBuffering() Buffering {
	b := DefaultBuffering()
	b.TimeoutMs = 25
	return b
}

// Subscription is the body of the subscribe call.
type Subscription struct {
	SchemaVersion string    // empty means SchemaVersion
	Types         []string  // "platform", "function", "extension"
	Buffering     Buffering // the zero value means DefaultBuffering()
	URI           string    // where Lambda POSTs, e.g. Listener.URI()
}

type subscribeBody struct {
	SchemaVersion string      `json:"schemaVersion"`
	Destination   destination `json:"destination"`
	Types         []string    `json:"types"`
	Buffering     buffering   `json:"buffering"`
}

type destination struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

type buffering struct {
	MaxItems  int `json:"maxItems"`
	MaxBytes  int `json:"maxBytes"`
	TimeoutMs int `json:"timeoutMs"`
}

// maxErrorBody caps how much of an error answer is read and quoted.
const maxErrorBody = 512

// Subscribe subscribes the extension to telemetry: PUT
// http://{runtimeAPI}/2022-07-01/telemetry. It must be called during init,
// after the listener at s.URI is accepting connections. A nil hc means
// http.DefaultClient.
//
// A 202 answer returns an error wrapping ErrNotSupported; any status other
// than 200 and 202 returns an error quoting the status and the start of the
// body.
func Subscribe(ctx context.Context, hc *http.Client, runtimeAPI, extensionID string, s Subscription) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	b := s.Buffering
	if b == (Buffering{}) {
		b = DefaultBuffering()
	}
	v := s.SchemaVersion
	if v == "" {
		v = SchemaVersion
	}
	body, err := json.Marshal(subscribeBody{
		SchemaVersion: v,
		Destination:   destination{Protocol: "HTTP", URI: s.URI},
		Types:         s.Types,
		Buffering:     buffering(b),
	})
	if err != nil {
		return fmt.Errorf("subscribe telemetry: %w", err)
	}
	endpoint := "http://" + runtimeAPI + "/2022-07-01/telemetry"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("subscribe telemetry %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Extension-Identifier", extensionID)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("subscribe telemetry %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusAccepted:
		var e struct {
			ErrorType    string `json:"errorType"`
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(answer, &e) // the 202 itself is the signal; the body only explains it
		msg := e.ErrorMessage
		if msg == "" {
			msg = truncate(answer)
		}
		if e.ErrorType != "" {
			msg = e.ErrorType + ": " + msg
		}
		return fmt.Errorf("subscribe telemetry %s: 202 %s: %w", endpoint, msg, ErrNotSupported)
	}
	if err != nil {
		return fmt.Errorf("subscribe telemetry %s: status %d, reading body: %w", endpoint, resp.StatusCode, err)
	}
	return fmt.Errorf("subscribe telemetry %s: status %d: %q", endpoint, resp.StatusCode, truncate(answer))
}

// truncate returns at most maxErrorBody bytes of b as text, marking a cut.
func truncate(b []byte) string {
	if len(b) > maxErrorBody {
		return string(b[:maxErrorBody]) + "..."
	}
	return string(b)
}
