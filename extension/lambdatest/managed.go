package lambdatest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// managedSchema is the only Telemetry API schema Managed Instances accept.
const managedSchema = "2025-01-29"

// initType is AWS_LAMBDA_INITIALIZATION_TYPE and the initializationType of
// the platform.init* records.
func (p *Platform) initType() string {
	if p.cfg.ManagedInstances {
		return "lambda-managed-instances"
	}
	return "on-demand"
}

// invokeManaged runs one invocation of a Managed Instances environment,
// concurrently with others (at most MaxConcurrency; more wait): it queues the payload for the next runtime
// worker that asks, waits for the response (or the timeout), and emits
// platform.report with durationMs and status only. No INVOKE event goes
// to extensions (they cannot register for it), no platform.runtimeDone is
// sent, nothing is frozen. A timed-out invocation does not reset the
// environment; a runtime that exits breaks it (later calls fail: this
// emulator does not re-initialise Managed Instances environments).
func (p *Platform) invokeManaged(ctx context.Context, payload []byte) (*Result, error) {
	p.opMu.RLock()
	defer p.opMu.RUnlock()
	if err := p.usable(); err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("invoke: payload of %d bytes exceeds Lambda's %d", len(payload), maxPayload)
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("invoke: waiting for a free slot: %w", ctx.Err())
	case <-p.closed:
		return nil, fmt.Errorf("invoke: %w", errClosed)
	}
	inv := &invocation{id: newID(), traceID: newTraceID(), payload: payload, start: time.Now()}
	inv.deadline = inv.start.Add(p.cfg.Timeout)
	p.mu.Lock()
	e := p.env
	if e == nil || e.broken != "" || e.rt == nil || e.rt.exited || (e.phase != phaseIdle && e.phase != phaseInvoke) {
		p.mu.Unlock()
		return nil, errors.New("invoke: the environment is not running")
	}
	e.phase = phaseInvoke
	e.active++
	e.invocations++
	e.invs[inv.id] = inv
	e.queue = append(e.queue, inv)
	p.emitPlatformLocked(e, inv.start, "platform.start", map[string]any{
		"requestId": inv.id,
		"version":   p.cfg.FunctionVersion,
		"tracing":   map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.traceID},
	})
	p.bumpLocked()
	p.mu.Unlock()
	p.stats.invocations.Add(1)

	err := p.await(ctx, inv.deadline, func() bool { return inv.responded || e.rt.exited })
	p.mu.Lock()
	responded := inv.responded && !inv.respondedAt.After(inv.deadline)
	var status, errType string
	switch {
	case responded:
		status, errType = inv.status, inv.errorType
	case inv.responded || errors.Is(err, errTimeout):
		status = "timeout"
	case err == nil: // the runtime exited
		status, errType = "failure", "Runtime.ExitError"
		e.broken = "failure"
	}
	p.mu.Unlock()
	if responded {
		// Everything the runtime wrote before its response is queued
		// before the report. Concurrent drains would take each other's
		// markers: one at a time.
		e.drainMu.Lock()
		e.rtOut.drain(time.Second)
		e.drainMu.Unlock()
	}
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(e.invs, inv.id) // a late answer now gets 400
	if i := slices.Index(e.queue, inv); i >= 0 {
		e.queue = slices.Delete(e.queue, i, i+1)
	}
	e.active--
	if e.active == 0 && e.phase == phaseInvoke {
		e.phase = phaseIdle
	}
	p.bumpLocked()
	if status == "" {
		return nil, fmt.Errorf("invoke %s: %w", inv.id, err)
	}
	dur := end.Sub(inv.start)
	if responded {
		dur = inv.respondedAt.Sub(inv.start)
	}
	p.emitPlatformLocked(e, end, "platform.report", map[string]any{
		"requestId": inv.id,
		"status":    status,
		"metrics":   map[string]any{"durationMs": ms(dur)},
	})
	return &Result{RequestID: inv.id, Status: status, ErrorType: errType, Response: inv.response, Duration: dur}, nil
}

// handleRuntimeNextManaged hands the oldest queued invocation to whichever
// runtime worker asks; several wait at once.
func (p *Platform) handleRuntimeNextManaged(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	e := p.env
	if e == nil || e.phase == phaseDead || e.phase == phaseShutdown {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Runtime.Unavailable", "the environment is shutting down")
		return
	}
	if e.rtReadyAt.IsZero() {
		e.rtReadyAt = time.Now()
		p.bumpLocked()
	}
	for len(e.queue) == 0 {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		case <-e.dead:
			return
		case <-p.closed:
			return
		}
		p.mu.Lock()
	}
	inv := e.queue[0]
	e.queue = e.queue[1:]
	p.handLocked(w, inv)
}
