package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeTelemetryAPI answers the subscribe call with status and body and
// records what it was sent.
type fakeTelemetryAPI struct {
	status int
	body   string

	method, path, extID, contentType string
	sent                             map[string]any
}

func (f *fakeTelemetryAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.method, f.path = r.Method, r.URL.Path
	f.extID, f.contentType = r.Header.Get("Lambda-Extension-Identifier"), r.Header.Get("Content-Type")
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &f.sent)
	w.WriteHeader(f.status)
	_, _ = io.WriteString(w, f.body)
}

func TestSubscribe(t *testing.T) {
	long := strings.Repeat("e", 2000)
	tests := []struct {
		name         string
		status       int
		body         string
		sub          Subscription
		wantSent     map[string]any
		wantErr      error  // matched with errors.Is; nil with wantErrText "" means success
		wantErrText  string // a substring of the error
		wantNotInErr string
	}{
		{
			name: "ok", status: 200, body: `"OK"`,
			sub: Subscription{Types: []string{"platform", "function"}, URI: "http://sandbox.localdomain:4243"},
			wantSent: map[string]any{
				"schemaVersion": "2025-01-29",
				"destination":   map[string]any{"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"},
				"types":         []any{"platform", "function"},
				"buffering":     map[string]any{"maxItems": 10000.0, "maxBytes": 1048576.0, "timeoutMs": 100.0},
			},
		},
		{
			name: "explicit schema and buffering", status: 200,
			sub: Subscription{SchemaVersion: "2022-12-13", Types: []string{"function"}, URI: "http://h:1",
				Buffering: Buffering{MaxItems: 1000, MaxBytes: 262144, TimeoutMs: 1000}},
			wantSent: map[string]any{
				"schemaVersion": "2022-12-13",
				"destination":   map[string]any{"protocol": "HTTP", "URI": "http://h:1"},
				"types":         []any{"function"},
				"buffering":     map[string]any{"maxItems": 1000.0, "maxBytes": 262144.0, "timeoutMs": 1000.0},
			},
		},
		{
			name: "emulator: 202 not supported", status: 202,
			body:    `{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}`,
			wantErr: ErrNotSupported, wantErrText: "Telemetry.NotSupported: Telemetry API is not supported",
		},
		{name: "any 202 is not supported", status: 202, body: `accepted`, wantErr: ErrNotSupported, wantErrText: "202 accepted"},
		{
			name: "validation error", status: 400,
			body:        `{"errorType":"ValidationError","errorMessage":"URI port is not provided; types should not be empty"}`,
			wantErrText: `status 400: "{\"errorType\":\"ValidationError\"`,
		},
		{
			name: "long error body is truncated", status: 500, body: long,
			wantErrText: strings.Repeat("e", maxErrorBody) + `..."`, wantNotInErr: strings.Repeat("e", maxErrorBody+1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeTelemetryAPI{status: tt.status, body: tt.body}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			runtimeAPI := strings.TrimPrefix(srv.URL, "http://")

			err := Subscribe(context.Background(), srv.Client(), runtimeAPI, "ext-123", tt.sub)

			if tt.wantErr == nil && tt.wantErrText == "" {
				if err != nil {
					t.Fatalf("Subscribe = %v, want nil", err)
				}
			} else {
				if err == nil {
					t.Fatalf("Subscribe = nil, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Subscribe = %v, want it to wrap %v", err, tt.wantErr)
				}
				if tt.wantErr == nil && errors.Is(err, ErrNotSupported) {
					t.Errorf("Subscribe = %v wraps ErrNotSupported, want a plain failure", err)
				}
				if !strings.Contains(err.Error(), tt.wantErrText) {
					t.Errorf("Subscribe = %q, want it to contain %q", err, tt.wantErrText)
				}
				if tt.wantNotInErr != "" && strings.Contains(err.Error(), tt.wantNotInErr) {
					t.Errorf("Subscribe error holds the whole body (%d bytes)", len(err.Error()))
				}
			}
			if fake.method != http.MethodPut || fake.path != "/2022-07-01/telemetry" {
				t.Errorf("request = %s %s, want PUT /2022-07-01/telemetry", fake.method, fake.path)
			}
			if fake.extID != "ext-123" {
				t.Errorf("Lambda-Extension-Identifier = %q, want %q", fake.extID, "ext-123")
			}
			if fake.contentType != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", fake.contentType)
			}
			if tt.wantSent != nil {
				if diff := cmp.Diff(tt.wantSent, fake.sent); diff != "" {
					t.Errorf("body sent (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestSubscribeTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	runtimeAPI := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens any more

	if err := Subscribe(context.Background(), nil, runtimeAPI, "ext", Subscription{}); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("Subscribe to a closed port = %v, want a connection error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	live := httptest.NewServer(&fakeTelemetryAPI{status: 200})
	defer live.Close()
	err := Subscribe(ctx, live.Client(), strings.TrimPrefix(live.URL, "http://"), "ext", Subscription{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a canceled context = %v, want context.Canceled", err)
	}
}

func TestDefaultBuffering(t *testing.T) {
	// The values must stay inside what Lambda accepts, or the subscription
	// fails with a ValidationError at init.
	b := DefaultBuffering()
	if b.MaxItems < 1000 || b.MaxItems > 10000 || b.MaxBytes < 262144 || b.MaxBytes > 1048576 || b.TimeoutMs < 25 || b.TimeoutMs > 30000 {
		t.Errorf("DefaultBuffering() = %+v, outside Lambda's limits", b)
	}
	if DefaultMaxBody < 2*int64(b.MaxBytes) {
		t.Errorf("DefaultMaxBody = %d, below the 2*MaxBytes = %d Lambda may send", DefaultMaxBody, 2*b.MaxBytes)
	}
}
