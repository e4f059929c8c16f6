// Package extension is sluice's Lambda side: the Extensions API client, the
// configuration, and the run loop that ties the telemetry listener, the
// buffer and the sinks to the lifecycle of the execution environment.
package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// EventType is an event of the Extensions API.
type EventType string

// Event types of the Extensions API.
const (
	Invoke   EventType = "INVOKE"
	Shutdown EventType = "SHUTDOWN"
)

// Client speaks the Extensions API (2020-01-01) for one registered extension.
type Client struct {
	base string
	hc   *http.Client
	id   string
}

// Registration is what /register answers.
type Registration struct {
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
	AccountID       string `json:"accountId"`
}

// Event is an INVOKE or SHUTDOWN event from /event/next.
type Event struct {
	EventType          EventType `json:"eventType"`
	DeadlineMs         int64     `json:"deadlineMs"`
	RequestID          string    `json:"requestId"`
	InvokedFunctionArn string    `json:"invokedFunctionArn"`
	ShutdownReason     string    `json:"shutdownReason"`
}

// NewClient returns a client of the Extensions API at runtimeAPI
// (AWS_LAMBDA_RUNTIME_API). hc must have no timeout: /event/next blocks for
// as long as the environment is idle.
func NewClient(hc *http.Client, runtimeAPI string) *Client {
	return &Client{base: "http://" + runtimeAPI + "/2020-01-01/extension", hc: hc}
}

// Register registers the extension named name (the executable's file name)
// for events.
func (c *Client) Register(ctx context.Context, name string, events []EventType) (Registration, error) {
	body, _ := json.Marshal(map[string][]EventType{"events": events})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/register", bytes.NewReader(body))
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	req.Header.Set("Lambda-Extension-Name", name)
	req.Header.Set("Lambda-Extension-Accept-Feature", "accountId")
	req.Header.Set("Content-Type", "application/json")
	var reg Registration
	resp, err := c.do(req, &reg)
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	c.id = resp.Header.Get("Lambda-Extension-Identifier")
	if c.id == "" {
		return Registration{}, errors.New("register: no Lambda-Extension-Identifier in the answer")
	}
	return reg, nil
}

// ID is the Lambda-Extension-Identifier the platform assigned.
func (c *Client) ID() string { return c.id }

// Next blocks until the next event. It has no timeout of its own: the
// platform answers when there is an invocation or a shutdown.
func (c *Client) Next(ctx context.Context) (Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/event/next", nil)
	if err != nil {
		return Event{}, fmt.Errorf("event/next: %w", err)
	}
	req.Header.Set("Lambda-Extension-Identifier", c.id)
	var ev Event
	if _, err := c.do(req, &ev); err != nil {
		return Event{}, fmt.Errorf("event/next: %w", err)
	}
	return ev, nil
}

// InitError reports a failed initialisation; the platform then fails the
// function's init with errType and msg. The caller exits afterwards.
func (c *Client) InitError(ctx context.Context, errType, msg string) error {
	return c.reportError(ctx, "/init/error", errType, msg)
}

// ExitError reports an error before the extension exits.
func (c *Client) ExitError(ctx context.Context, errType, msg string) error {
	return c.reportError(ctx, "/exit/error", errType, msg)
}

func (c *Client) reportError(ctx context.Context, path, errType, msg string) error {
	body, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": errType})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(path, "/"), err)
	}
	req.Header.Set("Lambda-Extension-Identifier", c.id)
	req.Header.Set("Lambda-Extension-Function-Error-Type", errType)
	req.Header.Set("Content-Type", "application/json")
	if _, err := c.do(req, nil); err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(path, "/"), err)
	}
	return nil
}

// do sends req and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(req *http.Request, out any) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, truncate(body, 512))
	}
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("decode answer: %w", err)
		}
	}
	return resp, nil
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
