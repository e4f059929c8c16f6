// Command sample is the function that lambdatest's platform runs in tests
// and in the local demo: a Go bootstrap on github.com/aws/aws-lambda-go, so
// AWS's own runtime client drives the Runtime API.
//
// Its payload, all fields optional:
//
//	{"lines": N, "json": bool, "app": bool, "big": BYTES, "dump": BYTES, "fail": bool, "sleep_ms": N, "level": "ERROR", "exit": CODE}
//
// It writes N lines, each carrying "sample id=<requestId>-<i>" so a test can
// check that every line arrives exactly once and intact. With json, odd
// lines are JSON objects {"level", "message", "seq", "requestId"}, even lines
// plain text. With app, lines are instead those of a real service
// (applog: JSON records with request metadata, framework text lines, order
// objects), which compress like real logs. Lines go to stdout, or to stderr
// when level is ERROR. big adds one line of exactly BYTES bytes (see
// bigLine); dump adds one of a request dump, a realistic JSON document of
// exactly BYTES bytes (applog.Dump). Then it sleeps sleep_ms,
// exits with CODE when exit is set (a crash), and returns an error of type
// SampleError when fail is true.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/sluice-logs/sluice/extension/lambdatest/sample/applog"
)

type request struct {
	Lines   int    `json:"lines"`
	JSON    bool   `json:"json"`
	App     bool   `json:"app"`
	Big     int    `json:"big"`
	Dump    int    `json:"dump"`
	Fail    bool   `json:"fail"`
	SleepMs int    `json:"sleep_ms"`
	Level   string `json:"level"`
	Exit    *int   `json:"exit"`
}

type response struct {
	RequestID string `json:"requestId"`
	Lines     int    `json:"lines"`
}

// SampleError is the error the function returns when asked to fail; its
// name is the errorType Lambda reports.
type SampleError struct{ RequestID string }

func (e *SampleError) Error() string { return "sample failure requested by " + e.RequestID }

// bigLine is the line of n bytes written for "big": a prefix naming the
// request, then the alphabet repeated. Tests rebuild it to compare.
func bigLine(requestID string, n int) []byte {
	b := []byte(fmt.Sprintf("sample id=%s-big ", requestID))
	for i := 0; len(b) < n; i++ {
		b = append(b, byte('a'+i%26))
	}
	return b[:max(n, 0)]
}

func handle(ctx context.Context, req request) (*response, error) {
	var id string
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		id = lc.AwsRequestID
	}
	level := req.Level
	if level == "" {
		level = "INFO"
	}
	var out io.Writer = os.Stdout
	if level == "ERROR" {
		out = os.Stderr
	}
	var app *applog.Gen
	if req.App {
		app = applog.New(id)
	}
	for i := range req.Lines {
		// One write per line: a line is never interleaved with another.
		var line []byte
		if app != nil {
			lvl := req.Level
			if lvl == "INFO" {
				lvl = "" // a real service's mix; ERROR only when asked
			}
			line = app.Line(i, time.Now(), lvl)
		} else if req.JSON && i%2 == 1 {
			line, _ = json.Marshal(map[string]any{
				"level":     level,
				"message":   fmt.Sprintf("sample id=%s-%d", id, i),
				"seq":       i,
				"requestId": id,
			})
		} else {
			line = fmt.Appendf(nil, "sample id=%s-%d level=%s plain text line", id, i, level)
		}
		_, _ = out.Write(append(line, '\n'))
	}
	if req.Big > 0 {
		_, _ = out.Write(append(bigLine(id, req.Big), '\n'))
	}
	if req.Dump > 0 {
		_, _ = out.Write(append(applog.Dump(id, req.Dump), '\n'))
	}
	if req.SleepMs > 0 {
		// Deliberately deaf to ctx: a sleep past the deadline must time out.
		time.Sleep(time.Duration(req.SleepMs) * time.Millisecond)
	}
	if req.Exit != nil {
		os.Exit(*req.Exit)
	}
	if req.Fail {
		return nil, &SampleError{RequestID: id}
	}
	return &response{RequestID: id, Lines: req.Lines}, nil
}

func main() {
	fmt.Println("sample init")
	lambda.StartWithOptions(handle, lambda.WithEnableSIGTERM(func() {
		writeSIGTERMLines()
		fmt.Println("sample SIGTERM")
		os.Exit(0)
	}))
}
