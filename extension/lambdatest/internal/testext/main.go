// Command testext is a minimal external Lambda extension for lambdatest's
// own tests (standard library only). It registers, subscribes to the
// Telemetry API on 127.0.0.1:0, records everything it sends and receives as
// JSON lines in $TESTEXT_DIR/<name>.jsonl and exits on SHUTDOWN.
//
// Its behaviour comes from environment variables, TESTEXT_<NAME>_<KEY>
// first (NAME upper case, '-' as '_'), then TESTEXT_<KEY>:
//
//	DIR              where to write <name>.jsonl (required)
//	NAME             name to register with (default: the executable's file name)
//	EVENTS           events to register for (default INVOKE,SHUTDOWN)
//	TYPES            telemetry types (default platform,function; "none": no subscription)
//	SCHEMA           schemaVersion (default 2025-01-29)
//	BUFFERING        buffering object (default {"maxItems":1000,"maxBytes":262144,"timeoutMs":25})
//	PROBES           JSON array of subscription bodies to PUT first; answers are recorded
//	HANG_POSTS       N: leave the first N telemetry POSTs unanswered
//	FAIL_POSTS       N: answer the next N telemetry POSTs with 500
//	IGNORE_SHUTDOWN  1: stay alive after SHUTDOWN
//	INIT_ERROR       report this message through /extension/init/error, then exit
//	EXIT_AT          "register": exit with status 3 right after registering
//	WAIT_DONE        1: after INVOKE, wait for its platform.runtimeDone before next
//	SLEEP_MS         work this long after each INVOKE before next
//	EXIT_ERROR       on SHUTDOWN, report this message through /extension/exit/error
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "testext: %v\n", err)
		os.Exit(1)
	}
}

type ext struct {
	name string
	api  string

	logMu sync.Mutex
	log   *os.File

	mu    sync.Mutex
	posts int
	done  map[string]chan struct{} // requestId -> closed at its runtimeDone
}

func (x *ext) setting(key string) string {
	n := strings.ToUpper(strings.ReplaceAll(x.name, "-", "_"))
	if v, ok := os.LookupEnv("TESTEXT_" + n + "_" + key); ok {
		return v
	}
	return os.Getenv("TESTEXT_" + key)
}

func (x *ext) number(key string) int {
	n, _ := strconv.Atoi(x.setting(key))
	return n
}

// record appends one JSON line to the log in one write, so a SIGKILL never
// leaves half a line.
func (x *ext) record(v map[string]any) {
	b, _ := json.Marshal(v)
	x.logMu.Lock()
	defer x.logMu.Unlock()
	_, _ = x.log.Write(append(b, '\n'))
}

func (x *ext) doneChan(id string) chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	ch, ok := x.done[id]
	if !ok {
		ch = make(chan struct{})
		x.done[id] = ch
	}
	return ch
}

// ServeHTTP receives telemetry batches.
func (x *ext) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	x.mu.Lock()
	x.posts++
	n := x.posts
	x.mu.Unlock()
	hang := x.number("HANG_POSTS")
	switch {
	case n <= hang:
		<-r.Context().Done()
		x.record(map[string]any{"kind": "post", "status": 0, "body": body})
		return
	case n <= hang+x.number("FAIL_POSTS"):
		x.record(map[string]any{"kind": "post", "status": 500, "body": body})
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	x.record(map[string]any{"kind": "post", "status": 200, "body": body})
	var events []struct {
		Type   string          `json:"type"`
		Record json.RawMessage `json:"record"`
	}
	if json.Unmarshal(body, &events) == nil {
		for _, ev := range events {
			var rec struct {
				RequestID string `json:"requestId"`
			}
			if ev.Type == "platform.runtimeDone" && json.Unmarshal(ev.Record, &rec) == nil {
				ch := x.doneChan(rec.RequestID)
				x.mu.Lock()
				select {
				case <-ch:
				default:
					close(ch)
				}
				x.mu.Unlock()
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (x *ext) call(method, path string, hdr map[string]string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, x.api+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func run() error {
	x := &ext{name: filepath.Base(os.Args[0]), api: "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API"), done: map[string]chan struct{}{}}
	dir := x.setting("DIR")
	if dir == "" {
		return errors.New("TESTEXT_DIR is not set")
	}
	f, err := os.OpenFile(filepath.Join(dir, x.name+".jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	x.log = f
	x.record(map[string]any{"kind": "start", "pid": os.Getpid(), "env": os.Environ()})
	fmt.Printf("testext %s starting\n", x.name)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, x) }()

	regName := x.setting("NAME")
	if regName == "" {
		regName = x.name
	}
	events := x.setting("EVENTS")
	if events == "" {
		events = "INVOKE,SHUTDOWN"
	}
	var evList []string
	if events != "none" {
		evList = strings.Split(events, ",")
	}
	regBody, _ := json.Marshal(map[string]any{"events": evList})
	status, hdr, body, err := x.call(http.MethodPost, "/2020-01-01/extension/register",
		map[string]string{"Lambda-Extension-Name": regName, "Lambda-Extension-Accept-Feature": "accountId"}, regBody)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	id := hdr.Get("Lambda-Extension-Identifier")
	x.record(map[string]any{"kind": "register", "status": status, "id": id, "body": json.RawMessage(nonEmptyJSON(body))})
	if status != http.StatusOK {
		return fmt.Errorf("register: status %d: %s", status, body)
	}
	idHdr := map[string]string{"Lambda-Extension-Identifier": id}
	if x.setting("EXIT_AT") == "register" {
		fmt.Fprintf(os.Stderr, "testext %s exiting after register\n", x.name)
		os.Exit(3)
	}
	if msg := x.setting("INIT_ERROR"); msg != "" {
		fmt.Fprintf(os.Stderr, "testext %s init error: %s\n", x.name, msg)
		doc, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": "Extension.ConfigInvalid"})
		_, _, _, _ = x.call(http.MethodPost, "/2020-01-01/extension/init/error",
			map[string]string{"Lambda-Extension-Identifier": id, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}, doc)
		os.Exit(1)
	}
	if probes := x.setting("PROBES"); probes != "" {
		var list []json.RawMessage
		if err := json.Unmarshal([]byte(probes), &list); err != nil {
			return fmt.Errorf("TESTEXT_PROBES: %w", err)
		}
		for _, p := range list {
			status, _, body, err := x.call(http.MethodPut, "/2022-07-01/telemetry", idHdr, p)
			if err != nil {
				return fmt.Errorf("probe: %w", err)
			}
			x.record(map[string]any{"kind": "probe", "status": status, "body": string(body)})
		}
	}
	if types := x.setting("TYPES"); types != "none" {
		if types == "" {
			types = "platform,function"
		}
		schema := x.setting("SCHEMA")
		if schema == "" {
			schema = "2025-01-29"
		}
		buffering := x.setting("BUFFERING")
		if buffering == "" {
			buffering = `{"maxItems":1000,"maxBytes":262144,"timeoutMs":25}`
		}
		port := ln.Addr().(*net.TCPAddr).Port
		sub, _ := json.Marshal(map[string]any{
			"schemaVersion": schema,
			"destination":   map[string]string{"protocol": "HTTP", "URI": fmt.Sprintf("http://sandbox.localdomain:%d/telemetry", port)},
			"types":         strings.Split(types, ","),
			"buffering":     json.RawMessage(buffering),
		})
		status, _, body, err := x.call(http.MethodPut, "/2022-07-01/telemetry", idHdr, sub)
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		x.record(map[string]any{"kind": "subscribe", "status": status, "body": string(body)})
		if status != http.StatusOK {
			return fmt.Errorf("subscribe: status %d: %s", status, body)
		}
	}
	fmt.Printf("testext %s ready\n", x.name)
	fmt.Fprintf(os.Stderr, "testext %s stderr line\n", x.name)

	for {
		status, _, body, err := x.call(http.MethodGet, "/2020-01-01/extension/event/next", idHdr, nil)
		if err != nil {
			return fmt.Errorf("next: %w", err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("next: status %d: %s", status, body)
		}
		x.record(map[string]any{"kind": "event", "event": json.RawMessage(body)})
		var ev struct {
			EventType      string `json:"eventType"`
			RequestID      string `json:"requestId"`
			DeadlineMs     int64  `json:"deadlineMs"`
			ShutdownReason string `json:"shutdownReason"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		switch ev.EventType {
		case "INVOKE":
			fmt.Printf("testext %s invoke %s\n", x.name, ev.RequestID)
			if x.setting("WAIT_DONE") == "1" {
				t := time.NewTimer(time.Until(time.UnixMilli(ev.DeadlineMs)))
				select {
				case <-x.doneChan(ev.RequestID):
				case <-t.C:
				}
				t.Stop()
			}
			if n := x.number("SLEEP_MS"); n > 0 {
				time.Sleep(time.Duration(n) * time.Millisecond)
			}
		case "SHUTDOWN":
			fmt.Printf("testext %s shutdown %s\n", x.name, ev.ShutdownReason)
			x.record(map[string]any{"kind": "exit", "reason": ev.ShutdownReason})
			if msg := x.setting("EXIT_ERROR"); msg != "" {
				doc, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": "Extension.FlushFailed"})
				_, _, _, _ = x.call(http.MethodPost, "/2020-01-01/extension/exit/error",
					map[string]string{"Lambda-Extension-Identifier": id, "Lambda-Extension-Function-Error-Type": "Extension.FlushFailed"}, doc)
			}
			if x.setting("IGNORE_SHUTDOWN") == "1" {
				select {}
			}
			return nil
		}
	}
}

func nonEmptyJSON(b []byte) []byte {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}
