package lambdatest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binDir holds the sample function and the test extension, built once by
// TestMain for the whole package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lambdatest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct{ out, pkg string }{
		{"bootstrap", "./sample"},
		{"testext", "./internal/testext"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	// Extension names are file names: the same binary under other names.
	for _, name := range []string{"stubborn", "second"} {
		if err := os.Link(filepath.Join(dir, "testext"), filepath.Join(dir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

func bin(name string) string { return filepath.Join(binDir, name) }

// harness is one platform with test extensions writing to dir.
type harness struct {
	t   *testing.T
	p   *Platform
	dir string
}

// startPlatform starts a platform running the sample function and the named
// test extensions; cfg.Runtime and cfg.Extensions are filled in.
func startPlatform(t *testing.T, cfg Config, exts ...string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	if cfg.Runtime == nil {
		cfg.Runtime = []string{bin("bootstrap")}
	}
	for _, e := range exts {
		cfg.Extensions = append(cfg.Extensions, bin(e))
	}
	cfg.Env = append(cfg.Env, "TESTEXT_DIR="+h.dir)
	p, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	h.p = p
	return h
}

func (h *harness) invoke(payload string) *Result {
	h.t.Helper()
	res, err := h.p.Invoke(h.t.Context(), []byte(payload))
	if err != nil {
		h.t.Fatalf("Invoke(%s): %v", payload, err)
	}
	return res
}

func (h *harness) shutdown() *ShutdownResult {
	h.t.Helper()
	res, err := h.p.Shutdown(h.t.Context(), "spindown")
	if err != nil {
		h.t.Fatalf("Shutdown: %v", err)
	}
	return res
}

// event is one element of a telemetry batch.
type event struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

type post struct {
	Status int
	Body   []byte
}

// extLog is what one test extension recorded, across its instances.
type extLog struct {
	Starts    []map[string]any
	Registers []map[string]any
	Probes    []map[string]any
	Subscribe []map[string]any
	Events    []map[string]any
	Posts     []post
	Exits     []string
}

func (h *harness) log(name string) *extLog {
	h.t.Helper()
	f, err := os.Open(filepath.Join(h.dir, name+".jsonl"))
	if err != nil {
		h.t.Fatalf("read extension log: %v", err)
	}
	defer f.Close()
	l := &extLog{}
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var rec struct {
				Kind   string          `json:"kind"`
				Status int             `json:"status"`
				Body   json.RawMessage `json:"body"`
				Event  map[string]any  `json:"event"`
				Reason string          `json:"reason"`
			}
			if err := json.Unmarshal(line, &rec); err != nil {
				h.t.Fatalf("extension log line %.200q: %v", line, err)
			}
			var m map[string]any
			_ = json.Unmarshal(line, &m)
			switch rec.Kind {
			case "start":
				l.Starts = append(l.Starts, m)
			case "register":
				l.Registers = append(l.Registers, m)
			case "probe":
				l.Probes = append(l.Probes, m)
			case "subscribe":
				l.Subscribe = append(l.Subscribe, m)
			case "event":
				l.Events = append(l.Events, rec.Event)
			case "post":
				var body []byte
				if err := json.Unmarshal(rec.Body, &body); err != nil {
					h.t.Fatalf("post body: %v", err)
				}
				l.Posts = append(l.Posts, post{rec.Status, body})
			case "exit":
				l.Exits = append(l.Exits, rec.Reason)
			}
		}
		if err != nil {
			break
		}
	}
	return l
}

// telemetry decodes the batches the extension answered 200, in order.
func (l *extLog) telemetry(t *testing.T) []event {
	t.Helper()
	var out []event
	for _, p := range l.Posts {
		if p.Status != 200 {
			continue
		}
		var batch []event
		if err := json.Unmarshal(p.Body, &batch); err != nil {
			t.Fatalf("telemetry batch is not a JSON array of events: %v: %.200s", err, p.Body)
		}
		out = append(out, batch...)
	}
	return out
}

func ofType(evs []event, typ string) []event {
	var out []event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// platformRecord decodes a platform.* record.
type platformRecord struct {
	RequestID string         `json:"requestId"`
	Status    string         `json:"status"`
	ErrorType string         `json:"errorType"`
	Phase     string         `json:"phase"`
	Metrics   map[string]any `json:"metrics"`
	Reason    string         `json:"reason"`
	Dropped   int64          `json:"droppedRecords"`
	Name      string         `json:"name"`
	Version   string         `json:"version"`
}

func decodePlatform(t *testing.T, e event) platformRecord {
	t.Helper()
	var r platformRecord
	if err := json.Unmarshal(e.Record, &r); err != nil {
		t.Fatalf("%s record: %v", e.Type, err)
	}
	return r
}

// forRequest returns the platform events of one request, by type.
func forRequest(t *testing.T, evs []event, typ, reqID string) []platformRecord {
	t.Helper()
	var out []platformRecord
	for _, e := range ofType(evs, typ) {
		if r := decodePlatform(t, e); r.RequestID == reqID {
			out = append(out, r)
		}
	}
	return out
}

// lineText is the text of a function record in either log format.
func lineText(t *testing.T, rec json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(rec, &s) == nil {
		return s
	}
	var m struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatalf("function record %.200s: %v", rec, err)
	}
	return m.Message
}

// sampleIDs counts, per "sample id=REQ-I" token, how many function records carry it.
func sampleIDs(t *testing.T, evs []event, reqID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	prefix := "sample id=" + reqID + "-"
	for _, e := range ofType(evs, "function") {
		text := lineText(t, e.Record)
		if i := strings.Index(text, prefix); i >= 0 {
			rest := text[i+len(prefix):]
			if j := strings.IndexAny(rest, " \""); j >= 0 {
				rest = rest[:j]
			}
			out[rest]++
		}
	}
	return out
}

// bigLine mirrors the sample function's big line.
func bigLine(requestID string, n int) string {
	b := []byte(fmt.Sprintf("sample id=%s-big ", requestID))
	for i := 0; len(b) < n; i++ {
		b = append(b, byte('a'+i%26))
	}
	return string(b[:n])
}

func envOf(start map[string]any) map[string]string {
	out := map[string]string{}
	list, _ := start["env"].([]any)
	for _, kv := range list {
		s, _ := kv.(string)
		k, v, _ := strings.Cut(s, "=")
		out[k] = v
	}
	return out
}
