package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// initResult is one extension start against the init stub.
type initResult struct {
	init     time.Duration // exec to the first /event/next
	initCPU  time.Duration // CPU used by then
	rssKB    int64         // VmRSS at the first /event/next
	anonKB   int64         // its anonymous part (heap, stacks); the rest is the binary's pages
	shutdown time.Duration // SHUTDOWN handed out to process exit, idle
}

// measureInit starts one extension against a minimal Extensions and
// Telemetry API served here (register, subscribe, next) and measures its
// init from exec to the first /event/next: the platform's own work and
// the function's runtime stay out of the figure. argv[0] may be a wrapper
// that execs the extension (the CPU quota mode does). The extension is
// then given SHUTDOWN and its exit is timed.
func measureInit(ctx context.Context, name string, argv, env []string) (*initResult, error) {
	return measureInitHook(ctx, name, argv, env, nil)
}

// measureInitHook is measureInit, calling afterInit (when not nil) with
// the extension's pid once init is measured, before SHUTDOWN.
func measureInitHook(ctx context.Context, name string, argv, env []string, afterInit func(pid int) error) (*initResult, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("init stub: %w", err)
	}
	var (
		mu       sync.Mutex
		firstAt  time.Time
		initErr  string
		ready    = make(chan struct{})
		shutdown = make(chan struct{})
		done     = make(chan struct{})
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Lambda-Extension-Identifier", "bench-"+name)
		_, _ = io.WriteString(w, `{"functionName":"bench","functionVersion":"$LATEST","handler":"bootstrap"}`)
	})
	mux.HandleFunc("PUT /2022-07-01/telemetry", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "OK")
	})
	mux.HandleFunc("POST /2020-01-01/extension/init/error", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		initErr = string(b)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /2020-01-01/extension/event/next", func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		mu.Lock()
		first := firstAt.IsZero()
		if first {
			firstAt = at
		}
		mu.Unlock()
		if !first {
			<-done
			return
		}
		close(ready)
		select {
		case <-shutdown:
		case <-done:
			return
		}
		fmt.Fprintf(w, `{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":%d}`, time.Now().Add(2*time.Second).UnixMilli())
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		close(done)
		_ = srv.Close()
	}()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ()[:0:0], env...), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	res := &initResult{}
	select {
	case <-ready:
	case err := <-exited:
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("%s exited during init (%v): %s", name, err, initErr)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New(name + ": init took more than 30 s")
	}
	mu.Lock()
	res.init = firstAt.Sub(start)
	mu.Unlock()
	pid := cmd.Process.Pid
	res.initCPU, _ = schedCPU(pid)
	if m, err := status(pid); err == nil {
		res.rssKB, res.anonKB = m["VmRSS"], m["RssAnon"]
	}
	if afterInit != nil {
		if err := afterInit(pid); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return nil, err
		}
	}
	sdStart := time.Now()
	close(shutdown)
	select {
	case <-exited:
		res.shutdown = time.Since(sdStart)
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		res.shutdown = -1
	}
	return res, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
