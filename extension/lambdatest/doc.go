// Package lambdatest is a local Lambda platform: an emulator of the
// on-demand AWS Lambda execution environment that runs real processes. It
// serves the Runtime API (2018-06-01), the Extensions API (2020-01-01) and
// the Telemetry API (2022-07-01) on 127.0.0.1 at a random port, starts the
// function's bootstrap and the external extensions as real executables, and
// drives them through Init, Invoke and Shutdown the way Lambda does. Go
// tests use it in-process; `make run` uses it as its engine.
//
// AWS's runtime interface emulator cannot combine INVOKE events with real
// telemetry; this one does, so an extension's whole life can be tested:
// registration, subscription, INVOKE events, telemetry batches, freezes
// between invocations, SHUTDOWN and the SIGKILL at the deadline.
//
// # What it emulates
//
//   - Init: extensions start together and must register (the
//     Lambda-Extension-Name must be the executable's file name); the runtime
//     starts once they have; Init ends when the runtime and every extension
//     wait on next, bounded by Config.InitTimeout (10 s). /extension/init/error,
//     /runtime/init/error or a process exiting makes Start fail with an
//     *InitError carrying the message and the extensions' output. Internal
//     extensions (registered from inside the runtime, as aws-lambda-go does
//     for WithEnableSIGTERM) are accepted while the runtime initialises.
//   - Environment: AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME,
//     _VERSION, _MEMORY_SIZE, AWS_REGION, AWS_LAMBDA_INITIALIZATION_TYPE
//     (on-demand), AWS_LAMBDA_LOG_FORMAT (JSON), TZ, PATH and HOME, then
//     Config.Env. _HANDLER, LAMBDA_TASK_ROOT and the log group and stream
//     names go to the runtime only, as in Lambda.
//   - Invoke: INVOKE (deadlineMs, requestId, invokedFunctionArn, tracing) to
//     the extensions registered for it, the payload to the runtime with the
//     Lambda-Runtime-* headers, the response or error document back, and the
//     invocation ends only when the runtime and every extension are back in
//     next: extension work after the response is PostRuntime and counts
//     against the timeout. A timeout SIGKILLs the runtime; a timeout or a
//     crash resets the environment (SHUTDOWN with reason "timeout" or
//     "failure") and the next Invoke runs a fresh Init.
//   - Freeze: between invocations every process group gets SIGSTOP and
//     telemetry dispatch pauses (Config.NoFreeze turns this off); a POST
//     still in flight at the freeze is cancelled and sent again after thaw.
//   - Telemetry: subscriptions during Init only, validated like Lambda
//     (schema 2022-12-13 or 2025-01-29, types, buffering ranges: 400
//     ValidationError otherwise). Records since the start of Init are
//     replayed to each subscriber. Each subscriber has its own queue and
//     dispatcher: batches by maxItems, maxBytes and timeoutMs, POSTs a JSON
//     array of {time, type, record} to the destination (sandbox.localdomain
//     is 127.0.0.1), retries failed POSTs with backoff (so a batch can arrive
//     twice, as in Lambda), and drops function and extension records beyond
//     Config.MaxQueuedRecords, reporting them in platform.logsDropped.
//     Events: platform.initStart, initRuntimeDone, initReport, extension,
//     telemetrySubscription, start, runtimeDone (metrics, spans), report
//     (durationMs, billedDurationMs, memorySizeMB, maxMemoryUsedMB from the
//     runtime's VmHWM, initDurationMs on the first invocation), logsDropped.
//   - Logs: the runtime's stdout and stderr share one pipe (their lines keep
//     their order) and become function records; the extensions' output
//     becomes extension records and is kept for ExtensionLines. Lines split
//     on \n, a trailing \r is dropped, invalid UTF-8 becomes U+FFFD, there is
//     no 256 KB cap (lines over 64 MiB are split to bound memory). In JSON
//     format a line that is a JSON object is sent as that object; any other
//     line is wrapped as {timestamp, level: INFO, requestId, message}. Every
//     line the runtime wrote before its response is queued before that
//     invocation's platform.runtimeDone: the platform writes a marker into
//     the runtime's pipe behind those bytes and waits until the reader
//     reaches it.
//   - Shutdown: SIGTERM to the runtime, SIGKILL 300 ms later; a bounded
//     flush of queued telemetry; SHUTDOWN with deadlineMs
//     (Config.ShutdownTimeout, 2 s); SIGKILL for extensions still alive at
//     the deadline, reported in ShutdownResult.Killed.
//   - Managed Instances (Config.ManagedInstances): Invoke runs concurrently,
//     up to Config.MaxConcurrency at once, each invocation handed to
//     whichever runtime worker asks (AWS_LAMBDA_MAX_CONCURRENCY tells the
//     runtime how many to run); AWS_LAMBDA_INITIALIZATION_TYPE is
//     lambda-managed-instances; registering for INVOKE is refused with 403
//     Extension.InvalidEventType and a subscription with any schema but
//     2025-01-29 with 400; no platform.runtimeDone; platform.report carries
//     requestId, status and metrics.durationMs only; nothing is frozen;
//     plain lines wrapped in JSON format carry no requestId (the platform
//     cannot tell whose they are). A timeout does not reset the
//     environment; a runtime that exits breaks it for good.
//
// # What it does not emulate
//
// SnapStart and provisioned concurrency; re-initialising a broken Managed
// Instances environment; the TCP telemetry protocol; the Logs API
// (2020-08-15); response streaming (a streamed body is read whole); the
// splitting of records larger than maxBytes across POSTs (PostTelemetry
// delivers any raw body, malformed ones included, to test that path, and
// TelemetryDestinations gives the subscribers' addresses for POSTs made at
// any phase, Shutdown included);
// X-Ray; memory limits (MemoryMB is reported, not enforced); the
// /opt/extensions layout (extensions are given as paths) and the
// read-only file system; platform.restore* and platform.initStart's
// runtimeVersion. Platform events are never dropped. Processes run as the
// calling user on this machine, Linux only for freezing and memory figures.
package lambdatest
