// Command demo is `make run`: the sample function in the local Lambda
// platform with the real sluice binary as its extension, archiving to a
// versitygw S3 server over TLS. It invokes the function, shuts the
// environment down, reads back what was archived and prints the account.
// Its last line is
//
//	sluice run: emitted=<N> archived=<M> lost=<K> objects=<O> ratio=<R>
//
// With -opensearch (`make run-opensearch`) sluice also indexes every line in
// a real OpenSearch node (see opensearch.go); the demo ends with a search
// over the index, and its last line adds indexed=<I> index_lost=<L>.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/lambdatest"
	"github.com/sluice-logs/sluice/extension/lambdatest/sample/applog"
	"github.com/sluice-logs/sluice/sinks/s3test"
)

func main() {
	ext := flag.String("extension", "", "the sluice binary")
	fn := flag.String("function", "", "the sample function's bootstrap binary")
	n := flag.Int("invocations", 60, "invocations to run")
	keep := flag.Bool("keep", false, "keep the work directory (the archive) after the run")
	pr := pricesFlags(flag.CommandLine)
	withOS := flag.Bool("opensearch", false, "index in a real OpenSearch node as well (Java 17 and Maven; see make opensearch)")
	template := flag.String("template", "layer/opensearch/index-template.json", "the index template installed on the node (with -opensearch)")
	flag.Parse()
	if *ext == "" || *fn == "" {
		fmt.Fprintln(os.Stderr, "usage: demo -extension PATH_TO_SLUICE -function BOOTSTRAP [-invocations N] [-keep]")
		os.Exit(2)
	}
	if !*withOS {
		*template = ""
	}
	if err := run(*ext, *fn, *n, *keep, pr, *template); err != nil {
		fmt.Fprintln(os.Stderr, "sluice run:", err)
		os.Exit(1)
	}
}

const function = "sluice-demo"

// dumpBytes is the size of the one request dump line.
const dumpBytes = 300_000

// userVars are the caller's SLUICE_* variables, passed on to the extension
// (`SLUICE_SAMPLE_RATE=0.1 make run`), except those that wire it to the
// local platform and S3 server.
func userVars(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case !strings.HasPrefix(k, "SLUICE_"), k == "SLUICE_SINK", k == "SLUICE_LISTEN_ADDR", k == "SLUICE_TEST_MEASURE":
			continue
		}
		out = append(out, kv)
	}
	slices.Sort(out)
	return out
}

// payload is the sample function's input for invocation i of n: lines
// like a real service's (applog), some plain text, one 300 KB request dump,
// one failing invocation and one that logs at ERROR.
func payload(i, n int) []byte {
	p := map[string]any{"lines": 20 + i%40, "app": true}
	if i%7 == 0 {
		// Some invocations write plain text only.
		p["lines"] = 5
		p["json"] = false
	}
	switch i {
	case n / 2:
		p["dump"] = dumpBytes
	case n / 3:
		p["fail"] = true
	case n - 2:
		p["level"] = "ERROR"
	}
	b, _ := json.Marshal(p)
	return b
}

// run runs the demo; with a template it indexes in OpenSearch as well.
func run(ext, fn string, n int, keep bool, pr *prices, template string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "sluice-run-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("work directory kept: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	srv, stop, err := s3test.Run(ctx, filepath.Join(work, "s3"))
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	defer stop()
	fmt.Printf("S3: versitygw at %s (TLS, SigV4 and CRC32C checked), bucket %q\n", srv.Endpoint, srv.Bucket)

	env := append(srv.Env(),
		"SLUICE_SINK=s3://"+srv.Bucket+"/logs",
		"SLUICE_LISTEN_ADDR=127.0.0.1:0",
		"SLUICE_SPILL_DIR="+filepath.Join(work, "sluice-spill"),
		// Smaller objects than the default, so that a short run shows
		// uploads during invocations as well as at SHUTDOWN.
		"SLUICE_BATCH_MAX_BYTES=256KiB",
	)
	var osd *osDemo
	if template != "" {
		if osd, err = startOpenSearch(ctx, work, template, srv); err != nil {
			return fmt.Errorf("start OpenSearch: %w", err)
		}
		defer osd.close()
		env = append(env, osd.vars(srv)...)
	}
	// The caller's settings come last and win.
	user := userVars(os.Environ())
	env = append(env, user...)
	if len(user) > 0 {
		fmt.Printf("your settings, passed to sluice: %s\n", strings.Join(user, " "))
	}
	p, err := lambdatest.Start(ctx, lambdatest.Config{
		Extensions:   []string{ext},
		Runtime:      []string{fn},
		Env:          env,
		FunctionName: function,
		LogFormat:    "JSON",
		Timeout:      10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("start the local Lambda: %w", err)
	}
	defer p.Close()
	fmt.Printf("Lambda: local platform at %s, function %q (aws-lambda-go), extension %s\n", p.Addr(), function, ext)

	var post []time.Duration
	statuses := map[string]int{}
	for i := range n {
		res, err := p.Invoke(ctx, payload(i, n))
		if err != nil {
			return fmt.Errorf("invoke %d: %w", i, err)
		}
		statuses[res.Status]++
		post = append(post, res.PostRuntime)
	}
	rss, hwm := memory(p.PIDs()["sluice"])
	sd, err := p.Shutdown(ctx, "spindown")
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	stats := p.Stats()
	lines := p.ExtensionLines()

	objects, err := srv.ReadObjects()
	if err != nil {
		return err
	}
	a, err := readArchive(objects)
	if err != nil {
		return err
	}
	fallback := 0
	for _, l := range lines {
		if strings.HasPrefix(l, `{"sluice":"fallback"`) && strings.Contains(l, `"type":"function"`) {
			fallback++
		}
	}

	fmt.Printf("\ninvocations: %d (%s)\n", n, formatCounts(statuses))
	fmt.Printf("extension init (process start to ready): %s ms; RSS %s, peak %s\n", initMs(lines), rss, hwm)
	fmt.Printf("time added per invoke (runtime done -> environment idle): p50 %s, p99 %s, max %s\n",
		pct(post, 50), pct(post, 99), pct(post, 100))
	fmt.Printf("shutdown took %s; extensions killed at the deadline: %d\n", sd.Duration.Round(time.Millisecond), len(sd.Killed))
	fmt.Printf("telemetry: %d records delivered in %d POSTs, %d dropped by the platform\n", stats.RecordsDelivered, stats.Posts, stats.RecordsDropped)

	fmt.Printf("\narchive: %d objects, %d rows (%d function lines, %d platform), %s raw -> %s stored\n",
		len(a.keys), a.rows, a.lines, a.rows-a.lines, size(a.raw), size(a.stored))
	for i, k := range a.keys {
		if i == 5 {
			fmt.Printf("  ... %d more\n", len(a.keys)-5)
			break
		}
		fmt.Printf("  s3://%s/%s (%s)\n", srv.Bucket, k, size(len(objects[k])))
	}
	if a.duplicates > 0 || a.corrupt > 0 {
		fmt.Printf("WARNING: %d duplicated and %d corrupted sample lines in the archive\n", a.duplicates, a.corrupt)
	}

	printQuery(a)
	fmt.Println("\nThe same query runs in Athena over the table in layer/athena/ (see README.md).")

	printStats(a)
	var addedMs float64
	for _, d := range post {
		addedMs += float64(d.Microseconds()) / 1000
	}
	printSavings(a, pr, addedMs)
	emitted := int(stats.FunctionLines)
	lost := emitted - a.lines - fallback - a.dropped
	ratio := 0.0
	if a.stored > 0 {
		ratio = float64(a.raw) / float64(a.stored)
	}
	if fallback > 0 {
		fmt.Printf("fallback: %d lines written to stdout instead of the archive\n", fallback)
	}
	showLogs(ctx, ext, srv, a)
	if osd == nil {
		fmt.Printf("sluice run: emitted=%d archived=%d lost=%d objects=%d ratio=%.2f\n", emitted, a.lines, lost, len(a.keys), ratio)
	} else {
		indexed, dups, err := osd.indexed(ctx)
		if err != nil {
			return err
		}
		if err := osd.answer(ctx, srv); err != nil {
			return err
		}
		// Lines dropped by sampling or level are in neither place; the
		// fallback rows may be either path's.
		indexLost := emitted - (indexed - dups) - fallback - a.dropped
		fmt.Printf("sluice run: emitted=%d archived=%d lost=%d objects=%d ratio=%.2f indexed=%d index_lost=%d\n",
			emitted, a.lines, lost, len(a.keys), ratio, indexed-dups, indexLost)
		if indexLost != 0 || dups > 0 {
			return errors.New("the index does not hold every emitted line exactly once")
		}
	}
	if lost != 0 || a.duplicates > 0 || a.corrupt > 0 {
		return errors.New("the archive does not hold every emitted line exactly once")
	}
	return nil
}

// archive is what was read back from the bucket.
type archive struct {
	keys       []string
	rows       int
	lines      int // function rows
	raw        int // uncompressed NDJSON bytes
	stored     int // object bytes
	duplicates int
	corrupt    int
	byRequest  map[string]*reqStats
	// From the sluice.stats rows: lines dropped under a reason (sampling,
	// level, cap), which are accounted for, not lost.
	seen, dropped int
	stats         statsRow // their sum
}

type reqStats struct {
	lines, errors int
	status        string
	billedMs      float64
}

func readArchive(objects map[string][]byte) (*archive, error) {
	a := &archive{byRequest: map[string]*reqStats{}}
	seen := map[string]bool{}
	for k := range objects {
		a.keys = append(a.keys, k)
	}
	sort.Strings(a.keys)
	req := func(id string) *reqStats {
		r := a.byRequest[id]
		if r == nil {
			r = &reqStats{}
			a.byRequest[id] = r
		}
		return r
	}
	for _, k := range a.keys {
		data := objects[k]
		a.stored += len(data)
		rows, err := buffer.DecodeBatch(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		for _, line := range rows {
			a.raw += len(line) + 1
			row, err := buffer.ParseRow(line)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", k, err)
			}
			a.rows++
			switch row.Type {
			case "function":
				a.lines++
				r := req(row.RequestID)
				r.lines++
				if row.Level == "ERROR" {
					r.errors++
				}
				id, ok := sampleID(row.Message)
				if !ok {
					continue
				}
				if seen[id] {
					a.duplicates++
				}
				seen[id] = true
				if req, ok := strings.CutSuffix(id, "-dump"); ok && row.Message != string(applog.Dump(req, dumpBytes)) {
					a.corrupt++
				}
			case "platform.report":
				r := req(row.RequestID)
				r.status = row.Status
				r.billedMs = row.BilledDurationMs
			case "sluice.stats":
				var f statsRow
				if err := json.Unmarshal([]byte(row.Fields), &f); err != nil {
					return nil, fmt.Errorf("read %s: sluice.stats: %w", k, err)
				}
				a.stats.add(f)
				a.seen += int(f.LinesSeen)
				a.dropped += int(f.LinesSampledOut + f.LinesBelowLevel + f.LinesOverCap)
			}
		}
	}
	return a, nil
}

// sampleID extracts the "<requestId>-<i>" the sample function puts in
// every line.
func sampleID(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, "sample id=")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(rest, " ")
	return id, true
}

// printQuery shows the Athena query for "which requests logged errors" and
// its answer computed over the archive that was just written.
func printQuery(a *archive) {
	os.Stdout.WriteString(`
query (Athena SQL; answered here over the objects just written):
  SELECT request_id, count(*) AS lines, count_if(level = 'ERROR') AS errors,
         max_by(status, type = 'platform.report') AS status
  FROM sluice_logs
  WHERE function = '` + function + `' AND dt = date_format(current_date, '%Y-%m-%d')
  GROUP BY request_id ORDER BY errors DESC, lines DESC LIMIT 5;
`)
	type row struct {
		id string
		*reqStats
	}
	var rows []row
	for id, r := range a.byRequest {
		if id != "" && r.lines > 0 {
			rows = append(rows, row{id, r})
		}
	}
	slices.SortFunc(rows, func(x, y row) int {
		return cmp.Or(cmp.Compare(y.errors, x.errors), cmp.Compare(y.lines, x.lines), strings.Compare(x.id, y.id))
	})
	fmt.Printf("  %-36s %6s %6s  %s\n", "request_id", "lines", "errors", "status")
	for i, r := range rows {
		if i == 5 {
			break
		}
		fmt.Printf("  %-36s %6d %6d  %s\n", r.id, r.lines, r.errors, r.status)
	}
}

// memory reads the extension's resident and peak resident set sizes.
func memory(pid int) (rss, hwm string) {
	rss, hwm = "n/a", "n/a"
	if pid == 0 {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = size(kb << 10)
		case "VmHWM:":
			hwm = size(kb << 10)
		}
	}
	return
}

// initMs finds the extension's own measure of its init in its "ready" log line.
func initMs(lines []string) string {
	for _, l := range lines {
		// The extension logs in JSON when the function's log format is JSON.
		var rec struct {
			Msg    string  `json:"msg"`
			InitMs float64 `json:"init_ms"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "ready" {
			return strconv.FormatFloat(rec.InitMs, 'f', 1, 64)
		}
		if !strings.Contains(l, "msg=ready") {
			continue
		}
		for f := range strings.FieldsSeq(l) {
			if v, ok := strings.CutPrefix(f, "init_ms="); ok {
				return v
			}
		}
	}
	return "n/a"
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return fmt.Sprintf("%.1fms", float64(s[i].Microseconds())/1000)
}

func formatCounts(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func size(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// showLogs runs `sluice logs` (the extension binary itself) over the archive
// just written, for the request that logged the most errors, and prints the
// command and what it printed, as a person would read one request's lines.
func showLogs(ctx context.Context, ext string, srv *s3test.Server, a *archive) {
	id, best := "", &reqStats{}
	for k, r := range a.byRequest {
		if k != "" && cmp.Or(cmp.Compare(r.errors, best.errors), cmp.Compare(r.lines, best.lines), strings.Compare(id, k)) > 0 {
			id, best = k, r
		}
	}
	if id == "" {
		return
	}
	args := []string{"logs", "s3://" + srv.Bucket + "/logs", "--function", function, "--request-id", id, "--since", "1h"}
	cmd := exec.CommandContext(ctx, ext, args...)
	cmd.Env = append(os.Environ(), srv.Env()...)
	out, err := cmd.CombinedOutput()
	fmt.Printf("\none request's lines, read back with the same binary (like aws logs tail):\n  $ sluice %s\n", strings.Join(args, " "))
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	const maxLines, maxWidth = 25, 160
	for i, l := range lines {
		if i == maxLines {
			fmt.Printf("  ... %d more lines\n", len(lines)-maxLines)
			break
		}
		if len(l) > maxWidth {
			l = l[:maxWidth] + "..."
		}
		fmt.Printf("  %s\n", l)
	}
	if err != nil {
		fmt.Printf("  (sluice logs: %v)\n", err)
	}
}
