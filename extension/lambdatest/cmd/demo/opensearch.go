package main

// `make run-opensearch`: the demo with OpenSearch alongside S3. A real
// OpenSearch node (sinks/ostest, from Maven Central jars) runs behind the
// project's proxy, which checks SigV4 signatures as Amazon OpenSearch
// Service does; layer/opensearch's index template is installed first, as
// README says to. sluice archives every line to S3 and indexes every line
// in daily indices; the demo accounts for both and ends by answering a
// search over what was indexed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sluice-logs/sluice/sinks"
	"github.com/sluice-logs/sluice/sinks/ostest"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

// indexPattern is the index the demo writes: README's default, daily.
const indexPattern = sinks.DefaultIndexPattern

// osDemo is the OpenSearch side of the demo; nil when it is not asked for.
type osDemo struct {
	node     *ostest.Node
	proxy    *ostest.Proxy
	auth     sinks.OpenSearchAuth
	certFile string
}

// startOpenSearch starts the node (the first run fetches its jars, about
// 44 MB) and the proxy, and installs the index template.
func startOpenSearch(ctx context.Context, work, template string, srv *s3test.Server) (*osDemo, error) {
	tmpl, err := os.ReadFile(template)
	if err != nil {
		return nil, fmt.Errorf("index template: %w (run from the repository root, or pass -template)", err)
	}
	fmt.Printf("OpenSearch: starting a %s node (Java, from Maven Central jars)...\n", ostest.Version)
	dir := filepath.Join(work, "opensearch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	node, err := ostest.Run(ctx, dir)
	if err != nil {
		return nil, err
	}
	d := &osDemo{node: node, certFile: filepath.Join(work, "opensearch-proxy.pem")}
	// sluice signs with the function's role: here, versitygw's keys.
	d.proxy, err = ostest.StartProxy(node.URL, ostest.ProxyConfig{Service: "es", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		d.close()
		return nil, err
	}
	if err := os.WriteFile(d.certFile, d.proxy.CertPEM(), 0o644); err != nil {
		d.close()
		return nil, err
	}
	cfg := aws.Config{Region: srv.Region, Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, "")}
	if d.auth, err = sinks.NewSigV4Auth(cfg, "es", ""); err != nil {
		d.close()
		return nil, err
	}
	if err := node.InstallTemplate(ctx, "sluice-logs", tmpl); err != nil {
		d.close()
		return nil, err
	}
	fmt.Printf("OpenSearch: node started in %s; proxy at %s (TLS, SigV4 for es checked); index template %s installed\n",
		node.Started.Round(100*time.Millisecond), d.proxy.URL, template)
	return d, nil
}

func (d *osDemo) close() {
	if d == nil {
		return
	}
	if d.proxy != nil {
		d.proxy.Close()
	}
	d.node.Stop()
}

// vars point sluice at S3 and OpenSearch together (later entries win).
func (d *osDemo) vars(srv *s3test.Server) []string {
	if d == nil {
		return nil
	}
	return []string{
		"SLUICE_SINK=s3://" + srv.Bucket + "/logs," + d.proxy.URL + "/" + indexPattern,
		// Go on Linux takes its roots from SSL_CERT_FILE: the proxy's
		// certificate is verified as a domain's would be.
		"SSL_CERT_FILE=" + d.certFile,
	}
}

// indexed counts the function lines in the index, and those indexed
// more than once.
func (d *osDemo) indexed(ctx context.Context) (lines, duplicates int, err error) {
	d.proxy.Close() // waits for requests in flight
	srcs, err := d.node.Sources(ctx, "lambda-logs-*", "type", "message")
	if err != nil {
		return 0, 0, err
	}
	if ps := d.proxy.Stats(); len(srcs) > 0 {
		fmt.Printf("\nindex: %d documents in %d _bulk requests; %s of NDJSON sent as %s gzipped (%.1fx), %.0f bytes on the wire per document\n",
			len(srcs), ps.Bulks, size(ps.BulkBytes), size(ps.WireBytes), float64(ps.BulkBytes)/float64(max(ps.WireBytes, 1)), float64(ps.WireBytes)/float64(len(srcs)))
	}
	seen := map[string]bool{}
	for _, src := range srcs {
		var doc struct{ Type, Message string }
		if err := json.Unmarshal(src, &doc); err != nil {
			return 0, 0, err
		}
		if doc.Type != "function" {
			continue
		}
		lines++
		if id, ok := sampleID(doc.Message); ok {
			if seen[id] {
				duplicates++
			}
			seen[id] = true
		}
	}
	return lines, duplicates, nil
}

// search is the question the Athena query answers, asked of OpenSearch:
// which requests logged errors.
const search = `{"size":0,
   "query":{"bool":{"filter":[{"term":{"function":"` + function + `"}},{"term":{"level":"ERROR"}}]}},
   "aggs":{"requests":{"terms":{"field":"request_id","size":5},
     "aggs":{"first":{"top_hits":{"size":1,"sort":[{"@timestamp":"asc"}],"_source":["message","type","error_type"]}}}}}}`

// answer runs the search as a user would against a domain: signed, over
// TLS, through the front end (the proxy, started again on a new port since
// indexed closed it), and prints the hits.
func (d *osDemo) answer(ctx context.Context, srv *s3test.Server) error {
	proxy, err := ostest.StartProxy(d.node.URL, ostest.ProxyConfig{Service: "es", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		return err
	}
	defer proxy.Close()
	q := strings.Join(strings.Fields(search), "")
	fmt.Printf("\nsearch (OpenSearch, signed with SigV4, over the documents just indexed):\n  POST /lambda-logs-*/_search\n  %s\n", q)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, proxy.URL+"/lambda-logs-*/_search", strings.NewReader(q))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := d.auth.Authorize(req); err != nil {
		return err
	}
	resp, err := proxy.Client.Do(req)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			Requests struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int    `json:"doc_count"`
					First    struct {
						Hits struct {
							Hits []struct {
								Source struct {
									Message   string `json:"message"`
									Type      string `json:"type"`
									ErrorType string `json:"error_type"`
								} `json:"_source"`
							} `json:"hits"`
						} `json:"hits"`
					} `json:"first"`
				} `json:"buckets"`
			} `json:"requests"`
		} `json:"aggregations"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("search: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return fmt.Errorf("search: %w", err)
	}
	fmt.Printf("  %d documents at ERROR; by request:\n  %-36s %6s  %s\n", ans.Hits.Total.Value, "request_id", "errors", "first error")
	// Terms buckets come ordered by count, most errors first.
	buckets := ans.Aggregations.Requests.Buckets
	for _, b := range buckets {
		first := ""
		if h := b.First.Hits.Hits; len(h) > 0 {
			first = h[0].Source.Message
			if first == "" { // a platform row: the invocation failed
				first = h[0].Source.Type + " " + h[0].Source.ErrorType
			}
		}
		if len(first) > 70 {
			first = first[:70] + "..."
		}
		fmt.Printf("  %-36s %6d  %s\n", b.Key, b.DocCount, first)
	}
	return nil
}
