package main

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-logs/sluice/extension/lambdatest/faultproxy"
)

var (
	slowDown     = faultproxy.Fault{Kind: faultproxy.Status, Code: 503, S3Code: "SlowDown", Message: "Please reduce your request rate."}
	accessDenied = faultproxy.Fault{Kind: faultproxy.Status, Code: 403, S3Code: "AccessDenied", Message: "Access Denied"}
)

func latency(d time.Duration) faultproxy.Fault {
	return faultproxy.Fault{Kind: faultproxy.Latency, Delay: d}
}

// scenarios are run in this order. Each keeps to a few seconds except the
// outage (about 36 s), the log storm (about 30 s) and the slow evictions
// (about 20 s). The delivery path's own scenarios are in
// scenarios_delivery.go.
func scenarios() []scenario {
	return []scenario{
		{
			// The control: a healthy sink must archive everything once.
			name: "none",
			run:  func(r *run) error { return r.invokeN(10, steady) },
		},
		{
			name: "sink-down-30s",
			run: func(r *run) error {
				if err := r.invokeFor(2*time.Second, 200*time.Millisecond, steady); err != nil {
					return err
				}
				if err := r.fault(faultproxy.Fault{Kind: faultproxy.Down}); err != nil {
					return err
				}
				if err := r.invokeFor(30*time.Second, 200*time.Millisecond, steady); err != nil {
					return err
				}
				if err := r.fault(faultproxy.Fault{}); err != nil {
					return err
				}
				return r.invokeFor(3*time.Second, 200*time.Millisecond, steady)
			},
		},
		{
			name: "slowdown-storm",
			run: func(r *run) error {
				if err := r.invokeN(2, steady); err != nil {
					return err
				}
				storm := slowDown
				storm.Percent = 80
				if err := r.fault(storm); err != nil {
					return err
				}
				if err := r.invokeFor(6*time.Second, 200*time.Millisecond, steady); err != nil {
					return err
				}
				if err := r.fault(faultproxy.Fault{}); err != nil {
					return err
				}
				return r.invokeFor(2*time.Second, 200*time.Millisecond, steady)
			},
		},
		{
			// Permanent: every line must come out of the fallback.
			name:    "access-denied",
			initial: accessDenied,
			run:     func(r *run) error { return r.invokeN(10, steady) },
		},
		{
			name:    "latency-2s",
			initial: latency(2 * time.Second),
			timeout: 10 * time.Second,
			run:     func(r *run) error { return r.invokeN(8, steady) },
		},
		{
			name:    "reset-mid-upload",
			initial: faultproxy.Fault{Kind: faultproxy.Reset, Every: 2},
			run:     func(r *run) error { return r.invokeN(12, steady) },
		},
		{
			// SHUTDOWN comes with batches pending; each upload takes 1.5 s
			// of the 2 s budget.
			name: "shutdown-during-upload",
			run: func(r *run) error {
				if err := r.invokeN(6, steady); err != nil {
					return err
				}
				if err := r.fault(latency(1500 * time.Millisecond)); err != nil {
					return err
				}
				return r.shutdown()
			},
		},
		{
			// The extension is stopped (as a freeze would) while its upload
			// is in flight, then continued. sluice uploads at the start of an
			// invocation what was sealed before it, so invocations run one
			// after another until one of them has an upload at the proxy.
			name:    "freeze-during-upload",
			timeout: 10 * time.Second,
			run: func(r *run) error {
				if err := r.invokeN(2, steady); err != nil {
					return err
				}
				if err := r.fault(latency(time.Second)); err != nil {
					return err
				}
				stop := make(chan struct{})
				done := make(chan error, 1)
				go func() {
					for {
						select {
						case <-stop:
							done <- nil
							return
						default:
						}
						if _, err := r.invoke(steady); err != nil {
							done <- err
							return
						}
					}
				}()
				err := r.waitInFlight(10 * time.Second)
				if err == nil {
					r.p.Signal(syscall.SIGSTOP)
					r.note("SIGSTOP to the extension with an upload in flight")
					err = r.wait(2 * time.Second)
					r.p.Signal(syscall.SIGCONT)
					r.note("SIGCONT")
				}
				close(stop)
				if ierr := <-done; ierr != nil {
					return ierr
				}
				if err != nil {
					return err
				}
				if err := r.fault(faultproxy.Fault{}); err != nil {
					return err
				}
				return r.invokeN(3, steady)
			},
		},
		{
			// Uploads never finish within the SHUTDOWN budget: sluice must
			// give up in time to write the fallback, or be SIGKILLed.
			name: "sigkill-at-deadline",
			run: func(r *run) error {
				if err := r.invokeN(6, steady); err != nil {
					return err
				}
				if err := r.fault(latency(3 * time.Second)); err != nil {
					return err
				}
				return r.shutdown()
			},
		},
		{
			// Lambda cuts a record larger than its buffer across two POSTs;
			// neither half parses and each must be archived as a
			// sluice.malformed row.
			name: "malformed-split",
			run: func(r *run) error {
				if err := r.invokeN(3, steady); err != nil {
					return err
				}
				body := functionBody("split", "sample id=split-0 "+strings.Repeat("x", 4000))
				half := len(body) / 2
				for _, part := range []string{body[:half], body[half:]} {
					r.ledger.postedMalformed(part)
					if err := r.post(part); err != nil {
						return err
					}
				}
				return r.invokeN(3, steady)
			},
		},
		{
			// One line of 1 MiB, the subscription's maxBytes: Lambda would
			// split it across POSTs; the local platform sends it whole.
			name:    "line-1mb",
			bigLine: 1 << 20,
			run: func(r *run) error {
				if _, err := r.invoke(request{Lines: 50, JSON: true, Big: 1 << 20}); err != nil {
					return err
				}
				return r.invokeN(2, steady)
			},
		},
		{
			// Lambda retries a POST it saw fail, so the same batch can
			// arrive twice: the line is emitted once.
			name: "duplicate-batch",
			run: func(r *run) error {
				if err := r.invokeN(3, steady); err != nil {
					return err
				}
				body := functionBody("dupbatch", "sample id=dupbatch-0 posted twice")
				r.ledger.posted("dupbatch-0")
				for range 2 {
					if err := r.post(body); err != nil {
						return err
					}
				}
				return r.invokeN(3, steady)
			},
		},
		managedInstances(),
		{
			// 2,000,000 lines (about 140 MB of output, 500 MB of NDJSON)
			// in 100 invocations, with sluice's default batch size: with
			// 64 KiB batches the storm is 7,700 PUTs and takes a minute.
			name: "log-storm",
			rss:  true,
			vars: []string{"SLUICE_BATCH_MAX_BYTES=8MiB"},
			run:  func(r *run) error { return r.invokeN(100, request{Lines: 20_000, JSON: true}) },
		},
		lateTelemetryAtShutdown(),
		slowEvictionDeadline(),
		badSpillEntries(),
		listenerFlood(),
		opensearch429Items(),
		opensearch503Storm(),
		opensearchDownThenUp(),
	}
}

// functionBody is a telemetry POST body with one function record in the
// JSON log format, as the platform sends it.
func functionBody(requestID, message string) string {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	return fmt.Sprintf(`[{"time":%q,"type":"function","record":{"timestamp":%q,"level":"INFO","requestId":%q,"message":%q}}]`,
		now, now, requestID, message)
}
