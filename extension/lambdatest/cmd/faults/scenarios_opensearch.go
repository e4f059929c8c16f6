package main

// OpenSearch scenarios: sluice archives to S3 (through the S3 fault proxy,
// left healthy) and indexes into a real OpenSearch node (sinks/ostest)
// through the OpenSearch proxy, which checks SigV4 signatures and injects
// the faults. Every line is accounted for in both: the row's usual columns
// for S3, then
//
//	indexed=<N> os_fallback=<N> os_lost=<N> os_duplicates=<N>
//
// indexed counts the distinct lines found in the index (read back with a
// search over every document), os_fallback the lines found only in the
// fallback rows, os_lost the lines in neither, os_duplicates the extra
// documents of a line. A scenario fails if either sink lost a line.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/sinks/ostest"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// opensearch429Items: 10% of the items answered 429 inside a 200 on their
// first try; only those are sent again. Each invocation works 150 ms, so
// its telemetry (buffered up to 100 ms) arrives while functions run, as it
// does for functions that do something: invocations of a few ms leave it
// all to SHUTDOWN, where a sink slowed by retries hands its share to the
// fallback.
func opensearch429Items() scenario {
	st := &osScenario{faults: ostest.Faults{ItemRejectPercent: 10}}
	working := steady
	working.SleepMs = 150
	return scenario{
		name: "opensearch-429-items",
		os:   st,
		run:  func(r *run) error { return r.invokeN(20, working) },
	}
}

// opensearch503Storm: 25 whole requests answered 503 in a row while the
// function runs, then a healthy cluster.
func opensearch503Storm() scenario {
	st := &osScenario{}
	return scenario{
		name: "opensearch-503-storm",
		os:   st,
		run: func(r *run) error {
			if err := r.invokeN(3, steady); err != nil {
				return err
			}
			st.fault(r, ostest.Faults{FailRequests: 25, FailStatus: 503})
			if err := r.invokeFor(5*time.Second, 200*time.Millisecond, steady); err != nil {
				return err
			}
			st.fault(r, ostest.Faults{})
			return r.invokeFor(3*time.Second, 200*time.Millisecond, steady)
		},
	}
}

// opensearchDownThenUp: every connection to the cluster reset for 8 s
// (batches wait, spill and are replayed), then a healthy cluster; the
// archive is never held back.
func opensearchDownThenUp() scenario {
	st := &osScenario{}
	return scenario{
		name: "opensearch-down-then-up",
		os:   st,
		run: func(r *run) error {
			if err := r.invokeFor(2*time.Second, 200*time.Millisecond, steady); err != nil {
				return err
			}
			st.fault(r, ostest.Faults{ResetRequests: 1 << 30})
			if err := r.invokeFor(8*time.Second, 200*time.Millisecond, steady); err != nil {
				return err
			}
			st.fault(r, ostest.Faults{})
			return r.invokeFor(5*time.Second, 200*time.Millisecond, steady)
		},
	}
}

// osNode is the OpenSearch node of a faults run, started by the first
// OpenSearch scenario and stopped when the run ends.
type osNode struct {
	dir  string
	node *ostest.Node
	err  error
}

// get starts the node at the first call.
func (n *osNode) get(ctx context.Context) (*ostest.Node, error) {
	if n.node != nil || n.err != nil {
		return n.node, n.err
	}
	n.dir, n.err = os.MkdirTemp("", "sluice-faults-opensearch-")
	if n.err != nil {
		return nil, n.err
	}
	n.node, n.err = ostest.Run(ctx, n.dir)
	if n.err != nil {
		n.err = fmt.Errorf("start the OpenSearch node: %w", n.err)
		return nil, n.err
	}
	fmt.Fprintf(os.Stderr, "  opensearch %s node started in %s\n", ostest.Version, n.node.Started.Round(100*time.Millisecond))
	return n.node, nil
}

func (n *osNode) stop() {
	if n.node != nil {
		n.node.Stop()
	}
	if n.dir != "" {
		os.RemoveAll(n.dir)
	}
}

// osScenario is what an OpenSearch scenario adds to the harness: its
// initial faults, and the proxy of the run in progress.
type osScenario struct {
	faults ostest.Faults
	tries  int
	proxy  *ostest.Proxy
}

// fault replaces the proxy's faults.
func (s *osScenario) fault(r *run, f ostest.Faults) {
	s.proxy.SetFaults(f)
	r.note("opensearch proxy: %+v", f)
}

// osRun is one run of an OpenSearch scenario; nil for the others.
type osRun struct {
	node     *ostest.Node
	proxy    *ostest.Proxy
	index    string
	certFile string
}

// start starts the proxy to the node (started at the first call) for one
// run of the scenario; s nil (not an OpenSearch scenario) returns nil.
func (s *osScenario) start(ctx context.Context, nodes *osNode, srv *s3test.Server, work string) (*osRun, error) {
	if s == nil {
		return nil, nil
	}
	node, err := nodes.get(ctx)
	if err != nil {
		return nil, err
	}
	// The extension signs every request with one set of credentials:
	// versitygw's.
	proxy, err := ostest.StartProxy(node.URL, ostest.ProxyConfig{Service: "es", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		return nil, err
	}
	proxy.SetFaults(s.faults)
	s.proxy = proxy
	s.tries++
	o := &osRun{node: node, proxy: proxy, index: fmt.Sprintf("faults-%d-%d", time.Now().UnixNano(), s.tries),
		certFile: filepath.Join(work, "opensearch-proxy.pem")}
	if err := os.WriteFile(o.certFile, proxy.CertPEM(), 0o644); err != nil {
		proxy.Close()
		return nil, err
	}
	return o, nil
}

// vars are the extension's variables for OpenSearch alongside S3: the
// sink list, and the proxy's certificate as the roots Go trusts.
func (o *osRun) vars(srv *s3test.Server) []string {
	if o == nil {
		return nil
	}
	return []string{
		"SLUICE_SINK=s3://" + srv.Bucket + "/archive," + o.proxy.URL + "/" + o.index,
		"SSL_CERT_FILE=" + o.certFile,
	}
}

func (o *osRun) close() {
	if o != nil {
		o.proxy.Close()
	}
}

// account reads every document of the run's index and accounts for the
// lines as the S3 columns do, returning the row's OpenSearch columns and
// the lines lost to OpenSearch.
func (o *osRun) account(ctx context.Context, l *ledger, emitted int) (string, int, error) {
	if o == nil {
		return "", 0, nil
	}
	o.proxy.Close() // waits for the requests in flight
	srcs, err := o.node.Sources(ctx, o.index, "time", "type", "message")
	if err != nil {
		return "", 0, fmt.Errorf("read the index: %w", err)
	}
	t := newTally()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, src := range srcs {
		var d struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Message string    `json:"message"`
		}
		if err := json.Unmarshal(src, &d); err != nil {
			return "", 0, fmt.Errorf("document %.200s: %w", src, err)
		}
		if k, v := l.classify(buffer.Row{Time: d.Time, Type: d.Type, Message: d.Message}); v == line {
			t.add(k)
		}
	}
	indexed, copies, fallback := 0, 0, 0
	t.each(func(_ string, n int) {
		indexed++
		copies += n
	})
	l.fallback.each(func(k string, _ int) {
		if t.count(k) == 0 {
			fallback++
		}
	})
	lost := emitted - indexed - fallback
	ps := o.proxy.Stats()
	fmt.Fprintf(os.Stderr, "  opensearch proxy: %d requests, %d bulks, %d items, %d items answered 429, %d requests failed, %d reset, %d bad signatures; index: %d documents\n",
		ps.Requests, ps.Bulks, ps.Items, ps.ItemsRejected, ps.Failed, ps.Resets, ps.BadSignatures, len(srcs))
	return fmt.Sprintf(" indexed=%d os_fallback=%d os_lost=%d os_duplicates=%d", indexed, fallback, lost, copies-indexed), lost, nil
}
