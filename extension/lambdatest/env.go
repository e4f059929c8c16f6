package lambdatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

type phase int

const (
	phaseInit phase = iota
	phaseIdle
	phaseInvoke
	phaseShutdown
	phaseDead
)

// env is one execution environment: its processes, registrations,
// subscriptions and the invocation in progress. Fields are guarded by
// Platform.mu unless noted.
type env struct {
	gen          int
	phase        phase
	start        time.Time
	dead         chan struct{} // closed at teardown
	tornDown     bool
	exts         []*extension
	byName       map[string]*extension
	byID         map[string]*extension
	rt           *proc
	rtOut        *lineReader
	readers      []*lineReader
	rtWaiting    bool
	rtReadyAt    time.Time
	rtInitErr    *ExtensionError
	rtWake       chan struct{} // capacity 1: a pending invocation is ready
	inv          *invocation   // the current (or last) invocation
	pendingInv   *invocation   // handed to the runtime at its next /next
	reqID        string        // request id that function lines are tagged with
	subs         []*subscriber
	backlog      []item // records of the Init phase, replayed to each new subscriber
	backlogDrops int64
	backlogBytes int64
	frozen       bool
	initDuration time.Duration
	invocations  int
	extLineStart int
	broken       string // reason to reset before the next invocation

	// Managed Instances: the invocations in flight by id, those not yet
	// handed to a runtime worker (oldest first), and drains one at a time.
	invs    map[string]*invocation
	queue   []*invocation
	active  int
	drainMu sync.Mutex
}

type extension struct {
	name       string
	path       string
	internal   bool // registered from inside the runtime process
	proc       *proc
	registered bool
	id         string
	invoke     bool
	shutdown   bool
	waiting    bool     // in /event/next
	pending    [][]byte // events not yet handed out
	wake       chan struct{}
	lastNext   time.Time
	initErr    *ExtensionError
}

type proc struct {
	name   string
	pid    int
	cmd    *exec.Cmd
	exited bool  // guarded by Platform.mu
	err    error // Wait's result, guarded by Platform.mu
	done   chan struct{}
}

type invocation struct {
	id          string
	traceID     string
	payload     []byte
	start       time.Time
	deadline    time.Time
	handedAt    time.Time
	respStart   time.Time
	respondedAt time.Time
	responded   bool
	status      string
	errorType   string
	response    []byte
}

func (e *env) procs() []*proc {
	var out []*proc
	for _, x := range e.exts {
		if x.proc != nil {
			out = append(out, x.proc)
		}
	}
	if e.rt != nil {
		out = append(out, e.rt)
	}
	return out
}

func (e *env) liveProcs() []*proc {
	var out []*proc
	for _, pr := range e.procs() {
		if !pr.exited {
			out = append(out, pr)
		}
	}
	return out
}

// initFailureLocked reports why the Init phase cannot succeed, if it cannot.
func (e *env) initFailureLocked() *InitError {
	for _, x := range e.exts {
		if x.initErr != nil {
			return &InitError{Source: x.name, ErrorType: x.initErr.ErrorType, Message: x.initErr.Message}
		}
	}
	for _, x := range e.exts {
		if x.proc != nil && x.proc.exited {
			return &InitError{Source: x.name, ErrorType: "Extension.ExitError", Message: fmt.Sprintf("exited during init: %v", exitText(x.proc.err))}
		}
	}
	if e.rtInitErr != nil {
		return &InitError{Source: "runtime", ErrorType: e.rtInitErr.ErrorType, Message: e.rtInitErr.Message}
	}
	if e.rt != nil && e.rt.exited {
		return &InitError{Source: "runtime", ErrorType: "Runtime.ExitError", Message: fmt.Sprintf("exited during init: %v", exitText(e.rt.err))}
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// initEnv runs an Init phase and makes the new environment current.
func (p *Platform) initEnv(ctx context.Context) (*env, error) {
	start := time.Now()
	deadline := start.Add(p.cfg.InitTimeout)
	e := &env{
		phase:  phaseInit,
		start:  start,
		dead:   make(chan struct{}),
		rtWake: make(chan struct{}, 1),
		byName: map[string]*extension{},
		byID:   map[string]*extension{},
		invs:   map[string]*invocation{},
	}
	p.mu.Lock()
	p.gen++
	e.gen = p.gen
	e.extLineStart = len(p.extLines)
	p.env = e
	p.emitPlatformLocked(e, start, "platform.initStart", map[string]any{
		"initializationType": p.initType(),
		"phase":              "init",
		"functionName":       p.cfg.FunctionName,
		"functionVersion":    p.cfg.FunctionVersion,
	})
	for _, path := range p.cfg.Extensions {
		x := &extension{name: filepath.Base(path), path: path, wake: make(chan struct{}, 1)}
		e.exts = append(e.exts, x)
		e.byName[x.name] = x
	}
	exts := slices.Clone(e.exts)
	p.mu.Unlock()
	p.stats.inits.Add(1)

	// Extension init: every extension starts at once and must register.
	for _, x := range exts {
		err := p.startProc(e, x.name, []string{x.path}, p.childEnv(false, ""), false, func(pr *proc, _ *lineReader) { x.proc = pr })
		if err != nil {
			return nil, p.failInit(e, &InitError{Source: x.name, ErrorType: "Extension.LaunchError", Message: err.Error()})
		}
	}
	var failure *InitError
	err := p.await(ctx, deadline, func() bool {
		if failure = e.initFailureLocked(); failure != nil {
			return true
		}
		for _, x := range e.exts {
			if !x.registered {
				return false
			}
		}
		return true
	})
	if failure == nil && err != nil {
		failure = p.waitFailure(e, err, "extensions to register")
	}
	if failure != nil {
		return nil, p.failInit(e, failure)
	}

	// Runtime init: the runtime starts once the extensions are registered.
	err = p.startProc(e, "runtime", p.cfg.Runtime, p.childEnv(true, p.cfg.Runtime[0]), true, func(pr *proc, lr *lineReader) {
		e.rt = pr
		e.rtOut = lr
	})
	if err != nil {
		return nil, p.failInit(e, &InitError{Source: "runtime", ErrorType: "Runtime.InvalidEntrypoint", Message: err.Error()})
	}
	err = p.await(ctx, deadline, func() bool {
		if failure = e.initFailureLocked(); failure != nil {
			return true
		}
		if e.rtReadyAt.IsZero() {
			return false
		}
		for _, x := range e.exts {
			if !x.waiting || len(x.pending) > 0 {
				return false
			}
		}
		return true
	})
	if failure == nil && err != nil {
		failure = p.waitFailure(e, err, "the runtime and extensions to call next")
	}
	if failure != nil {
		return nil, p.failInit(e, failure)
	}
	p.mu.Lock()
	now := time.Now()
	e.initDuration = now.Sub(start)
	p.emitPlatformLocked(e, e.rtReadyAt, "platform.initRuntimeDone", map[string]any{
		"initializationType": p.initType(),
		"phase":              "init",
		"status":             "success",
	})
	p.emitPlatformLocked(e, now, "platform.initReport", map[string]any{
		"initializationType": p.initType(),
		"phase":              "init",
		"status":             "success",
		"metrics":            map[string]any{"durationMs": ms(e.initDuration)},
	})
	e.phase = phaseIdle
	e.backlog = nil
	p.bumpLocked()
	p.mu.Unlock()
	return e, nil
}

// waitFailure turns a failed wait of the Init phase into an InitError.
func (p *Platform) waitFailure(e *env, err error, what string) *InitError {
	if !errors.Is(err, errTimeout) {
		return &InitError{Source: "platform", ErrorType: "Sandbox.Failure", Message: fmt.Sprintf("waiting for %s: %v", what, err)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var late []string
	for _, x := range e.exts {
		if !x.registered || !x.waiting {
			late = append(late, x.name)
		}
	}
	if e.rtReadyAt.IsZero() && e.rt != nil {
		late = append(late, "runtime")
	}
	return &InitError{
		Source:    strings.Join(late, ","),
		ErrorType: "Sandbox.Timedout",
		Message:   fmt.Sprintf("waited %v for %s", p.cfg.InitTimeout, what),
	}
}

// failInit reports a failed Init phase and kills the environment.
func (p *Platform) failInit(e *env, f *InitError) error {
	status := "error"
	if f.ErrorType == "Sandbox.Timedout" {
		status = "timeout"
	}
	p.mu.Lock()
	now := time.Now()
	for _, typ := range []string{"platform.initRuntimeDone", "platform.initReport"} {
		rec := map[string]any{"initializationType": p.initType(), "phase": "init", "status": status, "errorType": f.ErrorType}
		if typ == "platform.initReport" {
			rec["metrics"] = map[string]any{"durationMs": ms(now.Sub(e.start))}
		}
		p.emitPlatformLocked(e, now, typ, rec)
	}
	p.mu.Unlock()
	p.teardown(e)
	p.mu.Lock()
	if e.extLineStart <= len(p.extLines) {
		f.Output = slices.Clone(p.extLines[e.extLineStart:])
	}
	p.mu.Unlock()
	return f
}

// invoke runs one invocation in e (Init done, not frozen or frozen).
func (p *Platform) invoke(ctx context.Context, e *env, payload []byte, res *Result) (*Result, error) {
	p.thaw(e)
	inv := &invocation{id: newID(), traceID: newTraceID(), payload: payload}
	p.mu.Lock()
	if e.phase != phaseIdle {
		p.mu.Unlock()
		return nil, errors.New("invoke: environment is not idle")
	}
	e.phase = phaseInvoke
	e.invocations++
	first := e.invocations == 1
	inv.start = time.Now()
	inv.deadline = inv.start.Add(p.cfg.Timeout)
	e.inv, e.pendingInv, e.reqID = inv, inv, inv.id
	ev, _ := json.Marshal(map[string]any{
		"eventType":          "INVOKE",
		"deadlineMs":         inv.deadline.UnixMilli(),
		"requestId":          inv.id,
		"invokedFunctionArn": p.functionARN(),
		"tracing":            map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.traceID},
	})
	for _, x := range e.exts {
		if x.invoke {
			x.pending = append(x.pending, ev)
			signal(x.wake)
		}
	}
	p.emitPlatformLocked(e, inv.start, "platform.start", map[string]any{
		"requestId": inv.id,
		"version":   p.cfg.FunctionVersion,
		"tracing":   map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.traceID},
	})
	signal(e.rtWake)
	p.bumpLocked()
	p.mu.Unlock()
	p.stats.invocations.Add(1)
	res.RequestID = inv.id

	err := p.await(ctx, inv.deadline, func() bool { return inv.responded || e.rt.exited })
	p.mu.Lock()
	// An answer that comes after the deadline is a timeout all the same.
	late := inv.responded && inv.respondedAt.After(inv.deadline)
	responded := inv.responded && !late
	p.mu.Unlock()
	if late {
		err = errTimeout
	}
	if !responded {
		if err != nil && !errors.Is(err, errTimeout) {
			p.killRuntime(e)
			p.reset(e, "failure")
			return nil, fmt.Errorf("invoke %s: %w", inv.id, err)
		}
		status, errType, reason := "timeout", "", "timeout"
		if err == nil {
			status, errType, reason = "failure", "Runtime.ExitError", "failure"
		}
		mem := p.maxMemoryMB(e)
		p.killRuntime(e)
		e.rtOut.drain(time.Second)
		end := time.Now()
		dur := end.Sub(inv.start)
		p.mu.Lock()
		p.emitPlatformLocked(e, end, "platform.runtimeDone", runtimeDoneRecord(inv, status, errType, dur, nil))
		p.emitPlatformLocked(e, end, "platform.report", p.reportRecord(e, inv, status, errType, dur, mem, first))
		e.phase = phaseIdle
		p.mu.Unlock()
		res.Status, res.ErrorType, res.Duration = status, errType, dur
		p.reset(e, reason)
		return res, nil
	}

	// The runtime answered: everything it wrote before must be queued
	// before platform.runtimeDone.
	e.rtOut.drain(time.Second)
	p.mu.Lock()
	dur := inv.respondedAt.Sub(inv.start)
	status, errType := inv.status, inv.errorType
	p.emitPlatformLocked(e, inv.respondedAt, "platform.runtimeDone", runtimeDoneRecord(inv, status, errType, dur, inv.response))
	p.mu.Unlock()
	res.Response, res.Duration = inv.response, dur

	var crashed string
	err = p.await(ctx, inv.deadline, func() bool {
		for _, x := range e.exts {
			if !x.invoke {
				continue
			}
			if x.proc != nil && x.proc.exited {
				crashed = x.name
				return true
			}
			if !x.waiting || len(x.pending) > 0 {
				return false
			}
		}
		return e.rtWaiting || e.rt.exited
	})
	end := time.Now()
	reason := ""
	switch {
	case crashed != "":
		status, errType, reason = "failure", "Extension.Crash", "failure"
	case errors.Is(err, errTimeout):
		status, errType, reason = "timeout", "", "timeout"
	case err != nil:
		p.reset(e, "failure")
		return nil, fmt.Errorf("invoke %s: %w", inv.id, err)
	}
	mem := p.maxMemoryMB(e)
	p.mu.Lock()
	last := inv.respondedAt
	for _, x := range e.exts {
		if x.invoke && x.lastNext.After(last) {
			last = x.lastNext
		}
	}
	if reason == "timeout" {
		last = end
	}
	post := last.Sub(inv.respondedAt)
	p.emitPlatformLocked(e, end, "platform.report", p.reportRecord(e, inv, status, errType, dur+post, mem, first))
	e.phase = phaseIdle
	if e.rt.exited && reason == "" {
		e.broken = "failure"
	}
	p.mu.Unlock()
	res.Status, res.ErrorType, res.PostRuntime = status, errType, post
	if reason != "" {
		p.reset(e, reason)
	} else {
		p.freeze(e)
	}
	return res, nil
}

func runtimeDoneRecord(inv *invocation, status, errType string, dur time.Duration, response []byte) map[string]any {
	rec := map[string]any{
		"requestId": inv.id,
		"status":    status,
		"metrics":   map[string]any{"durationMs": ms(dur), "producedBytes": len(response)},
		"tracing":   map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.traceID},
	}
	if errType != "" {
		rec["errorType"] = errType
	}
	if !inv.respStart.IsZero() {
		rec["spans"] = []map[string]any{
			{"name": "responseLatency", "start": inv.start.UTC().Format(timeLayout), "durationMs": ms(inv.respStart.Sub(inv.start))},
			{"name": "responseDuration", "start": inv.respStart.UTC().Format(timeLayout), "durationMs": ms(inv.respondedAt.Sub(inv.respStart))},
		}
	}
	return rec
}

func (p *Platform) reportRecord(e *env, inv *invocation, status, errType string, dur time.Duration, memMB int64, first bool) map[string]any {
	metrics := map[string]any{
		"durationMs":       ms(dur),
		"billedDurationMs": int64(math.Ceil(float64(dur) / float64(time.Millisecond))),
		"memorySizeMB":     p.cfg.MemoryMB,
		"maxMemoryUsedMB":  memMB,
	}
	if first {
		metrics["initDurationMs"] = ms(e.initDuration)
	}
	rec := map[string]any{
		"requestId": inv.id,
		"status":    status,
		"metrics":   metrics,
		"tracing":   map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.traceID},
	}
	if errType != "" {
		rec["errorType"] = errType
	}
	return rec
}

func (p *Platform) killRuntime(e *env) {
	p.mu.Lock()
	rt := e.rt
	alive := rt != nil && !rt.exited
	p.mu.Unlock()
	if alive {
		_ = syscall.Kill(-rt.pid, syscall.SIGKILL)
		waitDone(rt.done, time.Second)
	}
}

func (p *Platform) maxMemoryMB(e *env) int64 {
	p.mu.Lock()
	rt := e.rt
	alive := rt != nil && !rt.exited
	p.mu.Unlock()
	if !alive {
		return 0
	}
	return vmHWMMB(rt.pid)
}

// reset shuts an environment down after a timeout or a crash, as Lambda
// does; the next Invoke runs a fresh Init.
func (p *Platform) reset(e *env, reason string) {
	p.stats.resets.Add(1)
	p.shutdownEnv(context.Background(), e, reason)
}

// shutdownEnv runs the Shutdown phase of e and returns the extensions that
// had to be SIGKILLed at the deadline.
func (p *Platform) shutdownEnv(ctx context.Context, e *env, reason string) []string {
	if reason == "" {
		reason = "spindown"
	}
	p.mu.Lock()
	if e.phase == phaseDead {
		p.mu.Unlock()
		return nil
	}
	e.phase = phaseShutdown
	rt := e.rt
	alive := rt != nil && !rt.exited
	p.mu.Unlock()
	p.thaw(e)

	if alive {
		_ = syscall.Kill(-rt.pid, syscall.SIGTERM)
		if !waitDone(rt.done, runtimeTermGrace) {
			_ = syscall.Kill(-rt.pid, syscall.SIGKILL)
			waitDone(rt.done, time.Second)
		}
	}
	if e.rtOut != nil {
		e.rtOut.drain(500 * time.Millisecond)
	}

	// Flush what is queued, except to subscribers whose process is gone.
	p.mu.Lock()
	var subs []*subscriber
	for _, s := range e.subs {
		// An internal extension died with the runtime.
		if x := e.byName[s.ext]; x == nil || (!x.internal && !x.proc.exited) {
			subs = append(subs, s)
		}
	}
	p.mu.Unlock()
	flushBy := time.Now().Add(p.cfg.ShutdownTimeout / 2)
	for _, s := range subs {
		s.startFlush()
	}
	for _, s := range subs {
		s.waitFlushed(ctx, flushBy)
	}

	deadline := time.Now().Add(p.cfg.ShutdownTimeout)
	ev, _ := json.Marshal(map[string]any{
		"eventType":      "SHUTDOWN",
		"shutdownReason": reason,
		"deadlineMs":     deadline.UnixMilli(),
	})
	p.mu.Lock()
	for _, x := range e.exts {
		if x.shutdown && x.proc != nil && !x.proc.exited {
			x.pending = append(x.pending, ev)
			signal(x.wake)
		}
	}
	p.bumpLocked()
	p.mu.Unlock()
	_ = p.await(ctx, deadline, func() bool {
		for _, x := range e.exts {
			if x.shutdown && x.proc != nil && !x.proc.exited {
				return false
			}
		}
		return true
	})
	p.mu.Lock()
	var killed []string
	for _, x := range e.exts {
		if x.shutdown && x.proc != nil && !x.proc.exited {
			killed = append(killed, x.name)
		}
	}
	p.mu.Unlock()
	p.stats.killed.Add(int64(len(killed)))
	p.teardown(e)
	return killed
}

// teardown kills what is left of e and stops its goroutines. Idempotent.
func (p *Platform) teardown(e *env) {
	p.mu.Lock()
	if e.tornDown {
		p.mu.Unlock()
		return
	}
	e.tornDown = true
	e.phase = phaseDead
	procs := e.liveProcs()
	subs := slices.Clone(e.subs)
	readers := slices.Clone(e.readers)
	if p.env == e {
		p.env = nil
	}
	close(e.dead)
	p.bumpLocked()
	p.mu.Unlock()

	for _, pr := range procs {
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
	for _, pr := range procs {
		waitDone(pr.done, 2*time.Second)
	}
	for _, s := range subs {
		s.stop()
	}
	for _, lr := range readers {
		lr.finish(500 * time.Millisecond)
	}
}

// freeze stops the environment between invocations: telemetry dispatch
// pauses first (a POST to a stopped process would hang), then every process
// group gets SIGSTOP.
func (p *Platform) freeze(e *env) {
	if p.cfg.NoFreeze {
		return
	}
	p.mu.Lock()
	if e.frozen || e.phase == phaseDead {
		p.mu.Unlock()
		return
	}
	e.frozen = true
	subs := slices.Clone(e.subs)
	procs := e.liveProcs()
	p.mu.Unlock()
	for _, s := range subs {
		s.setPaused(true)
	}
	by := time.Now().Add(250 * time.Millisecond)
	for _, s := range subs {
		if !s.waitNotPosting(by) {
			s.cancelInflight()
		}
	}
	for _, pr := range procs {
		_ = syscall.Kill(-pr.pid, syscall.SIGSTOP)
	}
	by = time.Now().Add(200 * time.Millisecond)
	for _, pr := range procs {
		waitStopped(pr.pid, by)
	}
}

// thaw resumes a frozen environment: SIGCONT, then telemetry dispatch.
func (p *Platform) thaw(e *env) {
	p.mu.Lock()
	if !e.frozen {
		p.mu.Unlock()
		return
	}
	e.frozen = false
	subs := slices.Clone(e.subs)
	procs := e.liveProcs()
	p.mu.Unlock()
	for _, pr := range procs {
		_ = syscall.Kill(-pr.pid, syscall.SIGCONT)
	}
	for _, s := range subs {
		s.setPaused(false)
	}
}

// startProc starts one process of e with its stdout and stderr on one pipe
// (so their lines keep their order) read by a lineReader. attach runs under
// p.mu before anything can observe the process.
func (p *Platform) startProc(e *env, name string, argv, environ []string, runtime bool, attach func(*proc, *lineReader)) error {
	r, w, err := pipe()
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	lr := &lineReader{r: r, marks: make(chan uint64, 16), done: make(chan struct{})}
	if runtime {
		// The platform keeps a write end to put drain markers behind
		// what the runtime wrote.
		lr.w = w
		lr.nonce = []byte(p.nonce)
		lr.emit = func(line []byte) { p.functionLine(e, line) }
	} else {
		_ = w.Close()
		lr.emit = func(line []byte) { p.extensionLine(e, name, line) }
	}
	p.mu.Lock()
	attach(pr, lr)
	e.readers = append(e.readers, lr)
	p.mu.Unlock()
	go lr.run()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		pr.exited, pr.err = true, err
		p.bumpLocked()
		p.mu.Unlock()
		close(pr.done)
	}()
	return nil
}

// signal makes a capacity-1 wake channel ready without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func waitDone(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
