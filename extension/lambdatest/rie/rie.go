// Package rie runs AWS's Lambda runtime interface emulator (aws-lambda-rie)
// with an extension installed as /opt/extensions/NAME, for tests that must
// see the platform's own behaviour rather than the project's emulator
// (extension/lambdatest). The pinned version is the one the Makefile's
// tools target installs (Version).
//
// The emulator reads extensions from /opt/extensions only and resolves
// nothing itself, so Start runs it in a private mount namespace (unshare
// -m): directories of the test are bind-mounted on /opt and /var/task
// (created empty on this machine if absent), and a hosts file
// that maps sandbox.localdomain to 127.0.0.1 on /etc/hosts. Nothing outside
// that namespace changes. This needs root (the machines of the project and
// CI are) and util-linux's unshare; Available says what is missing.
//
// Behaviour to know (observed, see the project's platform notes): with
// AWS_LAMBDA_MAX_CONCURRENCY set it emulates Lambda Managed Instances
// (telemetry is real, schema 2025-01-29, SHUTDOWN-only registration, the
// runtime and extensions run as uid 993, function records are strings
// whatever the log format); otherwise the Telemetry API answers 202
// Telemetry.NotSupported. It refuses invocations with Runtime.Unavailable
// until a runtime worker asks for one (Invoke retries). On SIGTERM it gives
// the runtime 600 ms, flushes telemetry, sends SHUTDOWN and SIGKILLs the
// extensions 2 s later. One output line of 64 KiB or more stalls its log
// reader for good.
package rie

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Version is the aws-lambda-rie module version the Makefile installs.
const Version = "v0.0.0-20261030222936-bef5c4ba774d"

// Binary is the emulator's executable name.
const Binary = "aws-lambda-rie"

// Options describe one emulated function.
type Options struct {
	// Extension is the extension's executable; it is installed as
	// /opt/extensions/<its base name>.
	Extension string
	// Bootstrap is the function's executable.
	Bootstrap string
	// MaxConcurrency > 0 runs the emulator in Managed Instances mode with
	// that many runtime workers; 0 runs its default (on-demand) mode.
	MaxConcurrency int
	// Env is added to the emulator's environment, which it passes to the
	// runtime and the extensions.
	Env []string
}

// Emulator is a running aws-lambda-rie.
type Emulator struct {
	cmd    *exec.Cmd
	addr   string // the invocation endpoint's host:port
	dir    string
	done   chan struct{}
	waited error

	mu  sync.Mutex
	out bytes.Buffer // the emulator's stdout and stderr: function and extension output too
}

// Available reports why the emulator cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("aws-lambda-rie needs root here: /opt/extensions and /etc/hosts are bind-mounted in a private mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return errors.New("unshare (util-linux) not found: it gives the emulator a private mount namespace")
	}
	if _, err := findBinary(); err != nil {
		return err
	}
	return nil
}

// Start installs the extension, starts the emulator and returns once its
// invocation endpoint accepts connections. Close stops it.
func Start(ctx context.Context, o Options) (*Emulator, error) {
	bin, err := findBinary()
	if err != nil {
		return nil, err
	}
	// The runtime and extensions run as uid 993: everything they read must
	// be world-readable, directories included.
	dir, err := os.MkdirTemp("", "sluice-rie-")
	if err != nil {
		return nil, fmt.Errorf("start rie: %w", err)
	}
	e := &Emulator{dir: dir, done: make(chan struct{})}
	fail := func(err error) (*Emulator, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start rie: %w", err)
	}
	opt := filepath.Join(dir, "opt")
	if err := os.MkdirAll(filepath.Join(opt, "extensions"), 0o755); err != nil {
		return fail(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	ext := filepath.Join(opt, "extensions", filepath.Base(o.Extension))
	if err := copyFile(ext, o.Extension, 0o755); err != nil {
		return fail(err)
	}
	// Managed Instances mode runs /var/task/bootstrap or /opt/bootstrap
	// only, in /var/task, which must exist.
	task := filepath.Join(dir, "task")
	if err := os.Mkdir(task, 0o755); err != nil {
		return fail(err)
	}
	if err := copyFile(filepath.Join(task, "bootstrap"), o.Bootstrap, 0o755); err != nil {
		return fail(err)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost sandbox.localdomain\n::1 localhost\n"), 0o644); err != nil {
		return fail(err)
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return fail(err)
	}
	if e.addr, err = freeAddr(); err != nil {
		return fail(err)
	}
	// Mount points: empty directories, created on this machine if absent.
	for _, d := range []string{"/opt", "/var/task"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	// The bind mounts exist only in the new namespace, private by
	// unshare's default propagation; exec keeps the pid, so signals reach
	// the emulator itself.
	script := `mount --bind "$1" /opt && mount --bind "$2" /var/task && mount --bind "$3" /etc/hosts && shift 3 && exec "$@"`
	e.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		opt, task, hosts, bin,
		"--runtime-api-address", apiAddr,
		"--runtime-interface-emulator-address", e.addr,
		"/var/task/bootstrap")
	e.cmd.Dir = "/"
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "TZ=UTC"}
	if o.MaxConcurrency > 0 {
		env = append(env, "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(o.MaxConcurrency))
	}
	e.cmd.Env = append(env, o.Env...)
	w := &lockedWriter{mu: &e.mu, w: &e.out}
	e.cmd.Stdout, e.cmd.Stderr = w, w
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return fail(err)
	}
	go func() {
		e.waited = e.cmd.Wait()
		close(e.done)
	}()
	if err := e.awaitListening(ctx, 10*time.Second); err != nil {
		e.Close()
		return nil, fmt.Errorf("start rie: %w\n%s", err, e.Output())
	}
	return e, nil
}

func (e *Emulator) awaitListening(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", e.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("aws-lambda-rie exited: %v", e.waited)
		case <-ctx.Done():
			return fmt.Errorf("aws-lambda-rie not listening on %s: %w", e.addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Invoke runs one invocation and returns the function's response. The
// emulator refuses invocations (Runtime.Unavailable) until a runtime
// worker asks for one, which happens after Init: those are retried until
// ctx ends.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	url := "http://" + e.addr + "/2015-03-31/functions/function/invocations"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("invoke: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("invoke: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 6<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("invoke: read response: %w", err)
		}
		if resp.StatusCode == http.StatusOK {
			return body, nil
		}
		if !bytes.Contains(body, []byte("Runtime.Unavailable")) {
			return nil, fmt.Errorf("invoke: status %d: %s", resp.StatusCode, body)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("invoke: runtime still unavailable: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Terminate sends SIGTERM, as Lambda ends an environment, and waits up to
// limit for the emulator to exit (its shutdown takes about 3 s at most).
func (e *Emulator) Terminate(limit time.Duration) error {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-e.done:
		return nil
	case <-t.C:
		return fmt.Errorf("aws-lambda-rie still running %v after SIGTERM", limit)
	}
}

// Output is what the emulator wrote so far: its own log, and the
// function's and extensions' output, which it copies.
func (e *Emulator) Output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.String()
}

// Close kills the emulator if it still runs and removes its files.
func (e *Emulator) Close() {
	select {
	case <-e.done:
	default:
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	os.RemoveAll(e.dir)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func copyFile(dst, src string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// findBinary looks for aws-lambda-rie on PATH, in $GOBIN, then in
// GOPATH/bin, where "make tools" installs it.
func findBinary() (string, error) {
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: run \"make tools\" (it installs %s@%s)", Binary, Binary, Version)
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
