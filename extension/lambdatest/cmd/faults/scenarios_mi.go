package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-logs/sluice/extension/lambdatest/faultproxy"
	"golang.org/x/sync/errgroup"
)

// managedInstances is the Lambda Managed Instances scenario: the platform
// runs up to 4 invocations at once (AWS_LAMBDA_MAX_CONCURRENCY selects the
// mode, as with AWS's emulator), sluice registers for SHUTDOWN only and
// uploads whenever a batch seals (no INVOKE opens a window). The sink goes
// down while concurrent invocations keep logging, comes back, and then
// answers so slowly that SHUTDOWN arrives with uploads in flight.
func managedInstances() scenario {
	const clients = 4
	spill := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-faults-mi-%d", os.Getpid()))
	return scenario{
		name: "managed-instances",
		// Its own spill directory: batches a killed run leaves in the
		// default one would be archived by the next scenario's process.
		vars:    []string{"AWS_LAMBDA_MAX_CONCURRENCY=4", "SLUICE_BATCH_MAX_AGE=1s", "SLUICE_SPILL_DIR=" + spill},
		timeout: 10 * time.Second,
		run: func(r *run) error {
			if err := r.invokeConcurrently(clients, 2*time.Second, steady); err != nil {
				return err
			}
			if err := r.fault(faultproxy.Fault{Kind: faultproxy.Down}); err != nil {
				return err
			}
			if err := r.invokeConcurrently(clients, 5*time.Second, steady); err != nil {
				return err
			}
			if err := r.fault(faultproxy.Fault{}); err != nil {
				return err
			}
			// Long enough for the backoff to end and the backlog to drain
			// with no INVOKE to open a window.
			if err := r.invokeConcurrently(clients, 6*time.Second, steady); err != nil {
				return err
			}
			if err := r.fault(latency(1500 * time.Millisecond)); err != nil {
				return err
			}
			if err := r.invokeConcurrently(clients, time.Second, steady); err != nil {
				return err
			}
			err := r.shutdown()
			// Whatever a killed process left there is already counted lost.
			os.RemoveAll(spill)
			return err
		},
	}
}

// invokeConcurrently keeps clients invocations going at once for d, each
// client pausing 100 ms between its invocations, and records what the
// function wrote. run's bookkeeping is shared, so it is updated under a
// lock here rather than through invoke.
func (r *run) invokeConcurrently(clients int, d time.Duration, req request) error {
	payload, _ := json.Marshal(req) // a struct of ints and bools always encodes
	end := time.Now().Add(d)
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(r.ctx)
	for range clients {
		g.Go(func() error {
			pause := time.NewTimer(0)
			defer pause.Stop()
			for time.Now().Before(end) {
				select {
				case <-pause.C:
				case <-ctx.Done():
					return ctx.Err()
				}
				start := time.Now()
				res, err := r.p.Invoke(ctx, payload)
				if err != nil {
					return fmt.Errorf("invoke: %w", err)
				}
				mu.Lock()
				r.durMax = max(r.durMax, time.Since(start))
				r.invokes++
				r.statuses[res.Status]++
				mu.Unlock()
				r.ledger.wrote(written{RequestID: res.RequestID, Lines: req.Lines, Big: req.Big})
				pause.Reset(100 * time.Millisecond)
			}
			return nil
		})
	}
	err := g.Wait()
	r.note("%d invocations so far, %d clients at once", r.invokes, clients)
	return err
}
