package lambdatest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	hdrExtName       = "Lambda-Extension-Name"
	hdrExtID         = "Lambda-Extension-Identifier"
	hdrExtErrorType  = "Lambda-Extension-Function-Error-Type"
	hdrAcceptFeature = "Lambda-Extension-Accept-Feature"
	hdrRTErrorType   = "Lambda-Runtime-Function-Error-Type"
)

func (p *Platform) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", p.handleRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", p.handleEventNext)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", p.handleExtensionError("init"))
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", p.handleExtensionError("exit"))
	mux.HandleFunc("PUT /2022-07-01/telemetry", p.handleSubscribe)
	mux.HandleFunc("PUT /2022-07-01/telemetry/{$}", p.handleSubscribe)
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", p.handleRuntimeNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", p.handleRuntimeResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", p.handleRuntimeError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", p.handleRuntimeInitError)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %s is not emulated", r.Method, r.URL.Path))
	})
	return mux
}

func writeError(w http.ResponseWriter, code int, typ, msg string) {
	writeJSON(w, code, map[string]string{"errorMessage": msg, "errorType": typ})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s body: %w", r.URL.Path, err)
	}
	return b, nil
}

// errorDoc reads a Lambda error document {errorMessage, errorType}; a body
// that is not one is taken as the message.
func errorDoc(body []byte) (msg, typ string) {
	var doc struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal(body, &doc) == nil && (doc.ErrorMessage != "" || doc.ErrorType != "") {
		return doc.ErrorMessage, doc.ErrorType
	}
	return strings.TrimSpace(string(body)), ""
}

// extensionLocked finds the extension of the current environment that an
// identifier names.
func (p *Platform) extensionLocked(id string) (*env, *extension) {
	e := p.env
	if e == nil || id == "" {
		return nil, nil
	}
	x := e.byID[id]
	if x == nil {
		return nil, nil
	}
	return e, x
}

func (p *Platform) handleRegister(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(hdrExtName)
	raw, err := readBody(r, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
		return
	}
	var body struct {
		Events []string `json:"events"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", fmt.Sprintf("decode register body: %v", err))
		return
	}
	var invoke, shutdown bool
	for _, ev := range body.Events {
		switch ev {
		case "INVOKE":
			if p.cfg.ManagedInstances {
				writeError(w, http.StatusForbidden, "Extension.InvalidEventType", "INVOKE: Lambda Managed Instances accept SHUTDOWN only")
				return
			}
			invoke = true
		case "SHUTDOWN":
			shutdown = true
		default:
			writeError(w, http.StatusBadRequest, "Extension.InvalidEventType", fmt.Sprintf("event %q: want INVOKE or SHUTDOWN", ev))
			return
		}
	}
	p.mu.Lock()
	e := p.env
	if e == nil || e.phase != phaseInit {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Extension.InvalidRegistration", "extensions register during the Init phase only")
		return
	}
	if name == "" {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Extension.InvalidExtensionName", "missing "+hdrExtName+" header")
		return
	}
	x := e.byName[name]
	if x == nil {
		if e.rt == nil {
			p.mu.Unlock()
			writeError(w, http.StatusForbidden, "Extension.InvalidExtensionName",
				fmt.Sprintf("no extension executable is named %q: the name must be the executable's file name", name))
			return
		}
		// The runtime has started: this is an internal extension, a
		// thread of the runtime process.
		x = &extension{name: name, internal: true, wake: make(chan struct{}, 1)}
		e.exts = append(e.exts, x)
		e.byName[name] = x
	}
	if x.registered {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Extension.AlreadyRegistered", fmt.Sprintf("extension %q is already registered", name))
		return
	}
	x.registered, x.id, x.invoke, x.shutdown = true, newID(), invoke, shutdown
	e.byID[x.id] = x
	events := body.Events
	if events == nil {
		events = []string{}
	}
	p.emitPlatformLocked(e, time.Now(), "platform.extension", map[string]any{"name": name, "state": "Ready", "events": events})
	p.bumpLocked()
	p.mu.Unlock()

	resp := map[string]string{
		"functionName":    p.cfg.FunctionName,
		"functionVersion": p.cfg.FunctionVersion,
		"handler":         p.cfg.Handler,
	}
	for _, f := range r.Header.Values(hdrAcceptFeature) {
		for _, v := range strings.Split(f, ",") {
			if strings.TrimSpace(v) == "accountId" {
				resp["accountId"] = p.cfg.AccountID
			}
		}
	}
	w.Header().Set(hdrExtID, x.id)
	writeJSON(w, http.StatusOK, resp)
}

func (p *Platform) handleEventNext(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	e, x := p.extensionLocked(r.Header.Get(hdrExtID))
	if x == nil {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Extension.UnknownExtensionIdentifier", "unknown "+hdrExtID)
		return
	}
	x.waiting = true
	x.lastNext = time.Now()
	p.bumpLocked()
	for len(x.pending) == 0 {
		p.mu.Unlock()
		select {
		case <-x.wake:
		case <-r.Context().Done():
			p.mu.Lock()
			x.waiting = false
			p.bumpLocked()
			p.mu.Unlock()
			return
		case <-e.dead:
			return
		case <-p.closed:
			return
		}
		p.mu.Lock()
	}
	ev := x.pending[0]
	x.pending = x.pending[1:]
	x.waiting = false
	p.bumpLocked()
	p.mu.Unlock()
	w.Header().Set("Lambda-Extension-Event-Identifier", newID())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(ev)
}

func (p *Platform) handleExtensionError(phase string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := readBody(r, 1<<20)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
			return
		}
		msg, bodyType := errorDoc(raw)
		typ := r.Header.Get(hdrExtErrorType)
		if typ == "" {
			typ = bodyType
		}
		p.mu.Lock()
		_, x := p.extensionLocked(r.Header.Get(hdrExtID))
		if x == nil {
			p.mu.Unlock()
			writeError(w, http.StatusForbidden, "Extension.UnknownExtensionIdentifier", "unknown "+hdrExtID)
			return
		}
		ee := ExtensionError{Extension: x.name, Phase: phase, ErrorType: typ, Message: msg}
		p.extErrors = append(p.extErrors, ee)
		if phase == "init" {
			x.initErr = &ee
		}
		p.bumpLocked()
		p.mu.Unlock()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
	}
}

func (p *Platform) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(r, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
		return
	}
	p.mu.Lock()
	e, x := p.extensionLocked(r.Header.Get(hdrExtID))
	if x == nil {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Extension.UnknownExtensionIdentifier", "unknown "+hdrExtID)
		return
	}
	if e.phase != phaseInit {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Telemetry.SubscriptionOutsideInit", "subscribe to the Telemetry API during the Init phase only")
		return
	}
	p.mu.Unlock()
	sub, err := parseSubscription(raw)
	if err == nil && p.cfg.ManagedInstances && sub.schema != managedSchema {
		err = fmt.Errorf("schemaVersion %q: Lambda Managed Instances want %s", sub.schema, managedSchema)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return
	}
	p.mu.Lock()
	if e.phase != phaseInit {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Telemetry.SubscriptionOutsideInit", "subscribe to the Telemetry API during the Init phase only")
		return
	}
	var old *subscriber
	for i, s := range e.subs {
		if s.ext == x.name {
			old = s
			e.subs = append(e.subs[:i], e.subs[i+1:]...)
			break
		}
	}
	s := p.newSubscriber(x.name, sub)
	for _, it := range e.backlog {
		if sub.types[it.cat] {
			s.enqueue(it)
		}
	}
	if e.backlogDrops > 0 {
		s.addDrops(e.backlogDrops, e.backlogBytes)
	}
	e.subs = append(e.subs, s)
	go s.run()
	p.emitPlatformLocked(e, time.Now(), "platform.telemetrySubscription", map[string]any{
		"name": x.name, "state": "Subscribed", "types": sub.typeList,
	})
	p.mu.Unlock()
	if old != nil {
		old.stop()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`"OK"`))
}

func (p *Platform) handleRuntimeNext(w http.ResponseWriter, r *http.Request) {
	if p.cfg.ManagedInstances {
		p.handleRuntimeNextManaged(w, r)
		return
	}
	p.mu.Lock()
	e := p.env
	if e == nil || e.phase == phaseDead || e.phase == phaseShutdown {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Runtime.Unavailable", "the environment is shutting down")
		return
	}
	e.rtWaiting = true
	if e.rtReadyAt.IsZero() {
		e.rtReadyAt = time.Now()
	}
	p.bumpLocked()
	for e.pendingInv == nil {
		p.mu.Unlock()
		select {
		case <-e.rtWake:
		case <-r.Context().Done():
			p.mu.Lock()
			e.rtWaiting = false
			p.bumpLocked()
			p.mu.Unlock()
			return
		case <-e.dead:
			return
		case <-p.closed:
			return
		}
		p.mu.Lock()
	}
	inv := e.pendingInv
	e.pendingInv = nil
	e.rtWaiting = false
	p.handLocked(w, inv)
}

// handLocked answers a runtime's /invocation/next with inv. p.mu must be
// held; it is released before the answer is written.
func (p *Platform) handLocked(w http.ResponseWriter, inv *invocation) {
	inv.handedAt = time.Now()
	p.bumpLocked()
	arn := p.functionARN()
	p.mu.Unlock()
	h := w.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(inv.deadline.UnixMilli()))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", arn)
	h.Set("Lambda-Runtime-Trace-Id", inv.traceID)
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(inv.payload)
}

// currentInvocation finds the invocation a runtime call names.
func (p *Platform) currentInvocationLocked(id string) *invocation {
	e := p.env
	if p.cfg.ManagedInstances {
		if e == nil || e.phase != phaseInvoke {
			return nil
		}
		if inv := e.invs[id]; inv != nil && !inv.responded {
			return inv
		}
		return nil
	}
	if e == nil || e.inv == nil || e.inv.id != id || e.inv.responded || e.phase != phaseInvoke {
		return nil
	}
	return e.inv
}

func (p *Platform) handleRuntimeResponse(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	id := r.PathValue("id")
	p.mu.Lock()
	inv := p.currentInvocationLocked(id)
	p.mu.Unlock()
	if inv == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", fmt.Sprintf("no invocation %q in progress", id))
		return
	}
	body, err := readBody(r, maxPayload+1)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
		return
	}
	// aws-lambda-go reports an error while streaming the body in trailers.
	trailerType := r.Trailer.Get(hdrRTErrorType)
	p.mu.Lock()
	if p.currentInvocationLocked(id) != inv {
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "InvalidRequestID", fmt.Sprintf("no invocation %q in progress", id))
		return
	}
	inv.responded, inv.respStart, inv.respondedAt = true, arrived, time.Now()
	code := http.StatusAccepted
	switch {
	case len(body) > maxPayload:
		inv.status, inv.errorType = "error", "Function.ResponseSizeTooLarge"
		code = http.StatusRequestEntityTooLarge
	case trailerType != "":
		inv.status, inv.errorType, inv.response = "error", trailerType, body
	default:
		inv.status, inv.response = "success", body
	}
	p.bumpLocked()
	p.mu.Unlock()
	if code != http.StatusAccepted {
		writeError(w, code, "Function.ResponseSizeTooLarge", fmt.Sprintf("response exceeds %d bytes", maxPayload))
		return
	}
	writeJSON(w, code, map[string]string{"status": "OK"})
}

func (p *Platform) handleRuntimeError(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	id := r.PathValue("id")
	p.mu.Lock()
	inv := p.currentInvocationLocked(id)
	p.mu.Unlock()
	if inv == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", fmt.Sprintf("no invocation %q in progress", id))
		return
	}
	body, err := readBody(r, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
		return
	}
	_, bodyType := errorDoc(body)
	typ := r.Header.Get(hdrRTErrorType)
	if typ == "" {
		typ = bodyType
	}
	if typ == "" {
		typ = "Unhandled"
	}
	p.mu.Lock()
	if p.currentInvocationLocked(id) != inv {
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "InvalidRequestID", fmt.Sprintf("no invocation %q in progress", id))
		return
	}
	inv.responded, inv.respStart, inv.respondedAt = true, arrived, time.Now()
	inv.status, inv.errorType, inv.response = "error", typ, body
	p.bumpLocked()
	p.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
}

func (p *Platform) handleRuntimeInitError(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestFormat", err.Error())
		return
	}
	msg, bodyType := errorDoc(body)
	typ := r.Header.Get(hdrRTErrorType)
	if typ == "" {
		typ = bodyType
	}
	if typ == "" {
		typ = "Runtime.Unknown"
	}
	p.mu.Lock()
	e := p.env
	if e == nil || e.phase != phaseInit {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "InvalidStateTransition", "init/error outside the Init phase")
		return
	}
	ee := ExtensionError{Extension: "runtime", Phase: "init", ErrorType: typ, Message: msg}
	e.rtInitErr = &ee
	p.extErrors = append(p.extErrors, ee)
	p.bumpLocked()
	p.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
}
