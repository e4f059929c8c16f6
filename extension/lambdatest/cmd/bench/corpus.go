package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// corpus is a seeded mix of function log lines, as a function writes them
// to stdout: the same seed gives the same lines on every machine.
type corpus struct {
	lines []string
	bytes int // sum of len(line)
	kinds map[string]int
}

var (
	words = strings.Fields(`order orders customer payment processed received invalid retry cache hit miss
		user session token request response upstream timeout latency queue message batch item items
		inventory shipping warehouse price discount checkout cart product sku region eu-west-1 us-east-1
		success failure started finished validated rejected accepted pending stored loaded`)
	levels = []string{"INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"}
)

// Line kinds, in per mille of lines. A stack trace is one record of
// several lines: a JSON record with the trace in one field, or (text) one
// line per frame as a runtime prints it.
const (
	pmPlain   = 380 // "processed item 12 of batch 7 in 3 ms"
	pmLambda  = 200 // "<time>\t<requestId>\tINFO\t..." as Lambda's Node/Python runtimes print
	pmJSON    = 360 // structured record with nested objects
	pmStack   = 55  // an exception with its stack trace
	pmBig     = 5   // a 10-100 KB payload dump
	corpusT0  = 1796076000
	maxFrames = 12
)

// newCorpus returns n lines generated from seed.
func newCorpus(seed uint64, n int) *corpus {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	c := &corpus{kinds: map[string]int{}}
	w := func(k int) string {
		s := make([]string, k)
		for i := range s {
			s[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(s, " ")
	}
	reqID := func() string {
		return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
			rng.Uint32()&0xfff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
	}
	at := time.Unix(corpusT0, 0).UTC()
	id := reqID()
	add := func(kind, line string) {
		c.lines = append(c.lines, line)
		c.bytes += len(line)
		c.kinds[kind]++
	}
	for len(c.lines) < n {
		at = at.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
		if rng.IntN(50) == 0 {
			id = reqID()
		}
		ts := at.Format("2006-01-02T15:04:05.000Z")
		switch p := rng.IntN(1000); {
		case p < pmPlain:
			add("plain", fmt.Sprintf("processed %s %d of %s %d in %d ms", w(1), rng.IntN(1000), w(1), rng.IntN(100), rng.IntN(300)))
		case p < pmPlain+pmLambda:
			add("lambda-text", fmt.Sprintf("%s\t%s\t%s\t%s %d in %.1f ms (%s)", ts, id, levels[rng.IntN(len(levels))],
				w(4), rng.IntN(100000), rng.Float64()*200, w(2)))
		case p < pmPlain+pmLambda+pmJSON:
			rec := map[string]any{
				"timestamp": ts,
				"level":     levels[rng.IntN(len(levels))],
				"requestId": id,
				"message":   w(3 + rng.IntN(6)),
				"logger":    "app." + words[rng.IntN(len(words))],
				"http": map[string]any{
					"method": []string{"GET", "POST", "PUT"}[rng.IntN(3)],
					"path":   fmt.Sprintf("/api/v1/%s/%d", words[rng.IntN(len(words))], rng.IntN(100000)),
					"status": []int{200, 200, 200, 201, 404, 500}[rng.IntN(6)],
					"headers": map[string]string{
						"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
						"x-trace-id": fmt.Sprintf("1-%08x-%024x", rng.Uint32(), rng.Uint64()),
					},
				},
				"user":      map[string]any{"id": fmt.Sprintf("u-%x", rng.Uint32()), "tier": []string{"free", "pro"}[rng.IntN(2)]},
				"latencyMs": float64(rng.IntN(50000)) / 100,
				"items":     []int{rng.IntN(9), rng.IntN(99), rng.IntN(999)},
			}
			b, _ := json.Marshal(rec)
			add("json", string(b))
		case p < pmPlain+pmLambda+pmJSON+pmStack:
			frames := make([]string, 3+rng.IntN(maxFrames-3))
			for i := range frames {
				frames[i] = fmt.Sprintf("    at %s.%s (/var/task/src/%s.js:%d:%d)", w(1), w(1), w(1), rng.IntN(900), rng.IntN(80))
			}
			msg := fmt.Sprintf("Error: %s %s failed: %s", w(1), w(1), w(3))
			if rng.IntN(2) == 0 {
				b, _ := json.Marshal(map[string]any{
					"timestamp": ts, "level": "ERROR", "requestId": id, "message": msg,
					"errorType": "Error", "stackTrace": frames,
				})
				add("stack-json", string(b))
				continue
			}
			add("stack-text", fmt.Sprintf("%s\t%s\tERROR\t%s", ts, id, msg))
			for _, f := range frames {
				add("stack-text", f)
			}
		default:
			size := 10_000 + rng.IntN(90_001)
			var sb strings.Builder
			for sb.Len() < size {
				sb.WriteString(w(1))
				sb.WriteByte(' ')
				sb.WriteString(strconv.Itoa(rng.IntN(1 << 20)))
				sb.WriteByte(' ')
			}
			body := sb.String()[:size]
			if rng.IntN(2) == 0 {
				b, _ := json.Marshal(map[string]any{"timestamp": ts, "level": "DEBUG", "requestId": id, "message": "payload dump", "payload": body})
				add("big", string(b))
				continue
			}
			add("big", "payload dump: "+body)
		}
	}
	c.lines = c.lines[:n]
	return c
}

// event is one Telemetry API event as Lambda POSTs it.
type event struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

// bodies turns the corpus into Telemetry API POST bodies the way Lambda
// batches them: invocations of perInvoke lines between their
// platform.start and their platform.runtimeDone and report, cut at
// maxBytes. Even invocations use the text log format (a record is the
// line as a JSON string), odd ones the JSON format (a line that is a JSON
// object is the record; any other is wrapped as {timestamp, level,
// requestId, message}), as lambdatest does.
func (c *corpus) bodies(perInvoke, maxBytes int) [][]byte {
	var out [][]byte
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			out = append(out, append(cur, ']'))
			cur = nil
		}
	}
	at := time.Unix(corpusT0, 0).UTC()
	emit := func(typ string, rec []byte) {
		b, _ := json.Marshal(event{Time: at.Format("2006-01-02T15:04:05.000Z"), Type: typ, Record: rec})
		if len(cur) > 0 && len(cur)+len(b)+2 > maxBytes {
			flush()
		}
		if len(cur) == 0 {
			cur = append(cur, '[')
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, b...)
		at = at.Add(time.Millisecond)
	}
	for inv := 0; inv*perInvoke < len(c.lines); inv++ {
		id := fmt.Sprintf("bench%03d-0000-4000-8000-%012d", inv%1000, inv)
		emit("platform.start", fmt.Appendf(nil, `{"requestId":%q,"version":"$LATEST"}`, id))
		for _, line := range c.lines[inv*perInvoke : min((inv+1)*perInvoke, len(c.lines))] {
			switch {
			case inv%2 == 0:
				b, _ := json.Marshal(line)
				emit("function", b)
			case strings.HasPrefix(line, "{") && json.Valid([]byte(line)):
				emit("function", []byte(line))
			default:
				b, _ := json.Marshal(map[string]string{"timestamp": at.Format(time.RFC3339Nano), "level": "INFO", "requestId": id, "message": line})
				emit("function", b)
			}
		}
		emit("platform.runtimeDone", fmt.Appendf(nil, `{"requestId":%q,"status":"success","metrics":{"durationMs":12.5,"producedBytes":2048}}`, id))
		emit("platform.report", fmt.Appendf(nil, `{"requestId":%q,"status":"success","metrics":{"durationMs":13.1,"billedDurationMs":14,"memorySizeMB":128,"maxMemoryUsedMB":61}}`, id))
	}
	flush()
	return out
}
