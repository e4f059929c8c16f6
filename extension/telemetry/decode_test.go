package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-logs/sluice/buffer"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asText compares records by their text, whichever form Decode kept the
// message in: the tables and the reference spell messages as text.
// TestDecodePassthrough checks the form.
var asText = cmp.Transformer("Text", func(r buffer.Record) buffer.Record {
	r.Message, r.Escaped = r.Text(), false
	return r
})

// fieldsAsValues compares Fields as JSON values, for the reference, whose
// maps lose member order. (A Comparer, not a Transformer: cmp walks a
// transformed value level by level, which never ends on 10,000-deep input.)
var fieldsAsValues = cmp.Comparer(func(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	va, errA := jsonValue(a)
	vb, errB := jsonValue(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
})

// jsonValue decodes with numbers kept as text: 1e999 is valid JSON.
func jsonValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

const (
	rid  = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
	rid2 = "79b4f56e-95b1-4643-9700-2807f4e68189"
	trc  = `"tracing":{"spanId":"54565fb41ac79632","type":"X-Amzn-Trace-Id","value":"Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}`
)

func TestDecodeGolden(t *testing.T) {
	malformed := func(name string) []buffer.Record {
		b := golden(t, name)
		return []buffer.Record{{Time: now, Type: TypeMalformed, Message: string(b), Fields: raw(fmt.Sprintf(`{"bytes":%d}`, len(b)))}}
	}
	tests := []struct {
		file          string
		want          []buffer.Record
		wantMalformed bool
	}{
		{file: "platform-2025-01-29.json", want: []buffer.Record{
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.initStart",
				Fields: raw(`{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn","functionName":"myFunction","functionVersion":"$LATEST","instanceId":"82561ce0-53dd-47d1-90e0-c8f5e063e62e","instanceMaxMemory":256}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.telemetrySubscription",
				Fields: raw(`{"name":"my-telemetry-extension","state":"Subscribed","types":["platform","function"]}`)},
			{Time: ts("2022-10-12T00:02:15Z"), Type: "platform.extension",
				Fields: raw(`{"events":["INVOKE","SHUTDOWN"],"name":"my-telemetry-extension","state":"Ready"}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.initRuntimeDone", Status: "success",
				Fields: raw(`{"initializationType":"on-demand","phase":"init","spans":[{"name":"someTimeSpan","start":"2022-06-02T12:02:33.913Z","durationMs":70.5}]}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.initReport", Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 125.33},
				Fields:  raw(`{"initializationType":"on-demand","phase":"init","spans":[{"name":"someTimeSpan","start":"2022-06-02T12:02:33.913Z","durationMs":90.1}]}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.start", RequestID: rid,
				Fields: raw(`{"version":"$LATEST",` + trc + `}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.runtimeDone", RequestID: rid, Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 140, ProducedBytes: 16},
				Fields:  raw(`{` + trc + `,"spans":[{"name":"responseLatency","start":"2022-08-02T12:01:23.521Z","durationMs":23.02},{"name":"responseDuration","start":"2022-08-02T12:01:23.544Z","durationMs":0.12}]}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.report", RequestID: rid, Status: "success",
				Metrics: &buffer.Metrics{BilledDurationMs: 694, DurationMs: 693.92, InitDurationMs: 397.68, MaxMemoryUsedMB: 84, MemorySizeMB: 128}},
			{Time: ts("2022-10-12T00:01:16Z"), Type: "platform.runtimeDone", RequestID: rid2, Level: "ERROR", Status: "timeout", ErrorType: "Sandbox.Timedout",
				Metrics: &buffer.Metrics{DurationMs: 3000}},
			{Time: ts("2022-10-12T00:01:16.1Z"), Type: "platform.report", RequestID: rid2, Level: "ERROR", Status: "timeout", ErrorType: "Sandbox.Timedout",
				Metrics: &buffer.Metrics{BilledDurationMs: 3000, DurationMs: 3000, MaxMemoryUsedMB: 90, MemorySizeMB: 128},
				Fields:  raw(`{"spans":[{"name":"extensionOverhead","start":"2022-10-12T00:01:16.000Z","durationMs":12.5}]}`)},
			{Time: ts("2022-10-12T00:01:17Z"), Type: "platform.report", RequestID: "0f4c5e6b-1d2e-4f3a-9b8c-7d6e5f4a3b2c", Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 12.34},
				Fields:  raw(`{"spans":[{"name":"responseLatency","start":"2022-10-12T00:01:16.990Z","durationMs":5.1},{"name":"responseDuration","start":"2022-10-12T00:01:16.995Z","durationMs":0.2}]}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.restoreStart",
				Fields: raw(`{"runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn","functionName":"myFunction","functionVersion":"$LATEST","instanceId":"82561ce0-53dd-47d1-90e0-c8f5e063e62e","instanceMaxMemory":256}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.restoreRuntimeDone", Status: "success",
				Fields: raw(`{"spans":[{"name":"someTimeSpan","start":"2022-08-02T12:01:23:521Z","durationMs":80.0}]}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.restoreReport", Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 15.19},
				Fields:  raw(`{"spans":[{"name":"someTimeSpan","start":"2022-08-02T12:01:23:521Z","durationMs":30.0}]}`)},
			{Time: ts("2022-10-12T00:02:35Z"), Type: "platform.logsDropped",
				Message: "Some logs were dropped because the downstream consumer is slower than the logs production rate",
				Fields:  raw(`{"droppedBytes":12345,"droppedRecords":123,"reason":"Some logs were dropped because the downstream consumer is slower than the logs production rate"}`)},
		}},
		{file: "platform-2022-12-13.json", want: []buffer.Record{
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.initStart",
				Fields: raw(`{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn"}`)},
			// Only runtimeDone and report set Level: the buffer's keep
			// decision is per invocation, and init has none.
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.initRuntimeDone", Status: "error", ErrorType: "Runtime.ImportModuleError",
				Fields: raw(`{"initializationType":"on-demand","phase":"init"}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.initReport", Status: "error", ErrorType: "Runtime.ImportModuleError",
				Metrics: &buffer.Metrics{DurationMs: 247.88},
				Fields:  raw(`{"initializationType":"provisioned-concurrency","phase":"invoke"}`)},
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.start", RequestID: rid, Fields: raw(`{"version":"$LATEST"}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.runtimeDone", RequestID: rid, Level: "ERROR", Status: "failure", ErrorType: "Runtime.ExitError",
				Metrics: &buffer.Metrics{DurationMs: 200, ProducedBytes: 15}},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.report", RequestID: rid, Level: "ERROR", Status: "failure", ErrorType: "Runtime.ExitError",
				Metrics: &buffer.Metrics{BilledDurationMs: 200, DurationMs: 199.6, RestoreDurationMs: 310.2, MaxMemoryUsedMB: 84, MemorySizeMB: 128},
				Fields:  raw(`{` + trc + `}`)},
			{Time: ts("2022-10-12T00:02:35Z"), Type: "platform.logsDropped",
				Message: "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.",
				Fields:  raw(`{"droppedBytes":12345,"droppedRecords":123,"reason":"Consumer seems to have fallen behind as it has not acknowledged receipt of logs."}`)},
		}},
		{file: "function-text.json", want: []buffer.Record{
			{Time: ts("2022-10-12T00:03:50Z"), Type: "function", Message: "[INFO] Hello world, I am a function!"},
			{Time: ts("2024-03-01T10:00:00.123Z"), Type: "function", Message: "2024-03-01T10:00:00.123Z\t" + rid + "\tINFO\tprocessing order 42\n"},
			{Time: ts("2024-03-01T10:00:00.124Z"), Type: "function", Message: "[ERROR]\t2024-03-01T10:00:00.124Z\t" + rid + "\tKeyError: 'id'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 3, in handler\n"},
			{Time: ts("2024-03-01T10:00:00.125Z"), Type: "function", Message: "café ☃ 😀 \"quoted\" back\\slash"},
			{Time: ts("2024-03-01T10:00:00.126Z"), Type: "function", Message: ""},
			{Time: ts("2022-10-12T00:03:50Z"), Type: "extension", Message: "[INFO] Hello world, I am an extension!"},
		}},
		{file: "function-json.json", want: []buffer.Record{
			{Time: ts("2022-10-12T00:03:50Z"), Type: "function", RequestID: rid2, Level: "INFO", Message: "Hello world, I am a function!"},
			{Time: ts("2024-03-01T10:00:00.2Z"), Type: "function", RequestID: rid, Level: "ERROR", Message: "order failed",
				Fields: raw(`{"logger":"root","stackTrace":["  File \"/var/task/app.py\", line 3, in handler\n"],"errorType":"KeyError"}`)},
			{Time: ts("2024-03-01T10:00:00.201Z"), Type: "function", RequestID: rid, Level: "WARN", Message: `{"event":"retry","attempt":2}`},
			{Time: ts("2024-03-01T10:00:00.202Z"), Type: "function", RequestID: rid, Level: "DEBUG", Message: "cache miss",
				Fields: raw(`{"key":"user:42","hit":false,"ms":0.35}`)},
			// No event time: the line's own timestamp stands in.
			{Time: ts("2024-03-01T10:00:00.203Z"), Type: "function", RequestID: rid, Level: "INFO", Message: "event time missing"},
			{Time: ts("2022-10-12T00:03:50Z"), Type: "extension", RequestID: rid2, Level: "INFO", Message: "Hello world, I am an extension!"},
		}},
		{file: "docs-pretty.json", want: []buffer.Record{
			{Time: ts("2022-10-12T00:00:15.064Z"), Type: "platform.initStart",
				Fields: raw(`{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn","functionName":"myFunction","functionVersion":"$LATEST","instanceId":"82561ce0-53dd-47d1-90e0-c8f5e063e62e","instanceMaxMemory":256}`)},
			{Time: ts("2022-10-12T00:01:15Z"), Type: "platform.runtimeDone", RequestID: rid, Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 140, ProducedBytes: 16},
				Fields:  raw(`{` + trc + `,"spans":[{"name":"responseLatency","start":"2022-08-02T12:01:23.521Z","durationMs":23.02},{"name":"responseDuration","start":"2022-08-02T12:01:23.544Z","durationMs":0.12}]}`)},
			{Time: ts("2022-10-12T00:03:50Z"), Type: "function", RequestID: rid2, Level: "INFO", Message: "Hello world, I am a function!"},
			{Time: ts("2022-10-12T00:03:50Z"), Type: "function", Message: "[INFO] Hello world, I am a function!"},
		}},
		{file: "split-1.json", want: malformed("split-1.json"), wantMalformed: true},
		{file: "split-2.json", want: malformed("split-2.json"), wantMalformed: true},
	}
	var d Decoder // one decoder for all: reuse must not leak state
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := golden(t, tt.file)
			got, malformed := d.Decode(body, now)
			if malformed != tt.wantMalformed {
				t.Errorf("Decode(%s) malformed = %v, want %v", tt.file, malformed, tt.wantMalformed)
			}
			if diff := cmp.Diff(tt.want, got, asText); diff != "" {
				t.Errorf("Decode(%s) records (-want +got):\n%s", tt.file, diff)
			}
			ref, refMalformed := refDecode(body, now)
			if refMalformed != malformed {
				t.Errorf("reference malformed = %v, Decode %v", refMalformed, malformed)
			}
			if diff := cmp.Diff(ref, got, fieldsAsValues, asText); diff != "" {
				t.Errorf("Decode(%s) differs from the reference (-ref +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestDecodeCases(t *testing.T) {
	deep := func(n int) string {
		return `[{"type":"x","record":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}]`
	}
	tests := []struct {
		name          string
		body          string
		want          []buffer.Record
		wantMalformed bool
	}{
		{name: "empty array", body: `[]`},
		{name: "empty array with space", body: " \n[ \t]\r\n"},
		{name: "empty body", body: ``, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Fields: raw(`{"bytes":0}`)}}},
		{name: "null", body: `null`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: "null", Fields: raw(`{"bytes":4}`)}}},
		{name: "object, not array", body: `{"type":"function"}`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `{"type":"function"}`, Fields: raw(`{"bytes":19}`)}}},
		{name: "element not an object", body: `[1]`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `[1]`, Fields: raw(`{"bytes":3}`)}}},
		{name: "no type", body: `[{"record":"x"}]`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `[{"record":"x"}]`, Fields: raw(`{"bytes":16}`)}}},
		{name: "type not a string", body: `[{"type":null}]`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `[{"type":null}]`, Fields: raw(`{"bytes":15}`)}}},
		{name: "trailing garbage", body: `[]x`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `[]x`, Fields: raw(`{"bytes":3}`)}}},
		{name: "trailing comma", body: `[{"type":"function"},]`, wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: `[{"type":"function"},]`, Fields: raw(`{"bytes":22}`)}}},
		{name: "binary body is base64", body: "\xff\x00[", wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: "/wBb", Fields: raw(`{"encoding":"base64","bytes":3}`)}}},
		{name: "too deep", body: deep(9999), wantMalformed: true,
			want: []buffer.Record{{Time: now, Type: TypeMalformed, Message: deep(9999), Fields: raw(fmt.Sprintf(`{"bytes":%d}`, len(deep(9999))))}}},
		{name: "deep but within the limit", body: deep(9998),
			want: []buffer.Record{{Time: now, Type: "x", Fields: raw(strings.Repeat("[", 9998) + strings.Repeat("]", 9998))}}},
		{name: "escapes and surrogates",
			body: `[{"type":"function","record":"caf\u00e9 \ud83d\ude00 \ud800x \t\"\\\/\b\f\n\r"}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "café 😀 \uFFFDx \t\"\\/\b\f\n\r"}}},
		{name: "invalid UTF-8 in a string",
			body: "[{\"type\":\"function\",\"record\":\"a\xffb\"}]",
			want: []buffer.Record{{Time: now, Type: "function", Message: "a\uFFFDb"}}},
		{name: "escaped keys and duplicates, last wins",
			body: `[{"t\u0079pe":"extension","type":"function","record":"one","record":"two"}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "two"}}},
		{name: "unknown type keeps the record",
			body: `[{"time":"2024-01-01T00:00:00Z","type":"platform2.new","record":{ "a" : [ 1 , 2 ] , "n":12345678901234567890 }}]`,
			want: []buffer.Record{{Time: ts("2024-01-01T00:00:00Z"), Type: "platform2.new", Fields: raw(`{"a":[1,2],"n":12345678901234567890}`)}}},
		{name: "unknown type without record", body: `[{"type":"x"}]`,
			want: []buffer.Record{{Time: now, Type: "x"}}},
		{name: "function record of another shape", body: `[{"type":"function","record":42},{"type":"function","record":null}]`,
			want: []buffer.Record{{Time: now, Type: "function", Fields: raw(`42`)}, {Time: now, Type: "function", Fields: raw(`null`)}}},
		{name: "platform record of another shape", body: `[{"type":"platform.report","record":"oops"}]`,
			want: []buffer.Record{{Time: now, Type: "platform.report", Fields: raw(`"oops"`)}}},
		{name: "metrics with an unknown member are kept whole",
			body: `[{"type":"platform.report","record":{"requestId":"r","status":"success","metrics":{"durationMs":1.5,"newMetric":7}}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.report", RequestID: "r", Status: "success",
				Metrics: &buffer.Metrics{DurationMs: 1.5}, Fields: raw(`{"metrics":{"durationMs":1.5,"newMetric":7}}`)}}},
		{name: "metrics that are not numbers are kept",
			body: `[{"type":"platform.report","record":{"metrics":{"durationMs":"1.5","memorySizeMB":1e999}}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.report", Fields: raw(`{"metrics":{"durationMs":"1.5","memorySizeMB":1e999}}`)}}},
		{name: "empty metrics", body: `[{"type":"platform.report","record":{"metrics":{}}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.report"}}},
		{name: "platform values of the wrong type stay in Fields",
			body: `[{"type":"platform.runtimeDone","record":{"requestId":7,"status":"error","errorType":["x"],"metrics":[]}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.runtimeDone", Status: "error", Level: "ERROR",
				Fields: raw(`{"requestId":7,"errorType":["x"],"metrics":[]}`)}}},
		{name: "log values of the wrong type stay in Fields",
			body: `[{"type":"function","record":{"timestamp":1700000000,"level":3,"requestId":null,"message":[ 1, {"a" : "b c"} ]}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: `[1,{"a":"b c"}]`,
				Fields: raw(`{"timestamp":1700000000,"level":3,"requestId":null}`)}}},
		{name: "levels are upper-cased",
			body: `[{"type":"function","record":{"level":"Info"}},{"type":"function","record":{"level":"notice"}},{"type":"function","record":{"level":"w\u0061rn"}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Level: "INFO"}, {Time: now, Type: "function", Level: "NOTICE"}, {Time: now, Type: "function", Level: "WARN"}}},
		{name: "duplicate log keys, last wins",
			body: `[{"type":"function","record":{"level":"info","level":5,"message":"a","message":"b"}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "b", Fields: raw(`{"level":5}`)}}},
		{name: "times",
			body: `[{"type":"x","time":"yesterday"},{"type":"x","time":17},{"type":"x","time":"2024-01-01T01:00:00+01:00"},` +
				`{"type":"x","time":"2024-02-29T23:59:59.123456789Z"},{"type":"x","time":"2023-02-29T00:00:00Z"},` +
				`{"type":"x","time":"2024-01-01T00:00:00.1234567891Z"},{"type":"x","time":"2024-01-01T00:00:00\u005a"}]`,
			want: []buffer.Record{{Time: now, Type: "x"}, {Time: now, Type: "x"}, {Time: ts("2024-01-01T00:00:00Z"), Type: "x"},
				{Time: ts("2024-02-29T23:59:59.123456789Z"), Type: "x"}, {Time: now, Type: "x"},
				{Time: ts("2024-01-01T00:00:00.123456789Z"), Type: "x"}, {Time: ts("2024-01-01T00:00:00Z"), Type: "x"}}},
		{name: "logsDropped reason is the message",
			body: `[{"type":"platform.logsDropped","record":{"reason":"slow","droppedRecords":1}}]`,
			want: []buffer.Record{{Time: now, Type: "platform.logsDropped", Message: "slow", Fields: raw(`{"reason":"slow","droppedRecords":1}`)}}},
		{name: "extra event keys are ignored",
			body: `[{"type":"function","record":"x","extra":{"a":[1]}}]`,
			want: []buffer.Record{{Time: now, Type: "function", Message: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			got, malformed := d.Decode([]byte(tt.body), now)
			got = nilIfEmpty(got)
			if malformed != tt.wantMalformed {
				t.Errorf("Decode malformed = %v, want %v", malformed, tt.wantMalformed)
			}
			if diff := cmp.Diff(tt.want, got, asText); diff != "" {
				t.Errorf("Decode records (-want +got):\n%s", diff)
			}
			ref, refMalformed := refDecode([]byte(tt.body), now)
			ref = nilIfEmpty(ref)
			if refMalformed != malformed {
				t.Errorf("reference malformed = %v, Decode %v", refMalformed, malformed)
			}
			if diff := cmp.Diff(ref, got, fieldsAsValues, asText); diff != "" {
				t.Errorf("Decode differs from the reference (-ref +got):\n%s", diff)
			}
		})
	}
}

// nilIfEmpty lets "no records" compare equal however it is spelled.
func nilIfEmpty(recs []buffer.Record) []buffer.Record {
	if len(recs) == 0 {
		return nil
	}
	return recs
}

// TestDecodeOwnsItsMemory checks that records do not alias the body, which
// the listener reuses for the next POST.
func TestDecodeOwnsItsMemory(t *testing.T) {
	body := golden(t, "function-json.json")
	var d Decoder
	got, _ := d.Decode(body, now)
	want, _ := NewDecoder().Decode(bytes.Clone(body), now)
	for i := range body {
		body[i] = 'X'
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records changed with the body (-want +got):\n%s", diff)
	}
}

// checkDecode holds Decode to its contract on any input: the reference
// agrees, a malformed body is one record carrying every byte, and Fields
// are compact JSON.
func checkDecode(t *testing.T, body []byte) {
	t.Helper()
	var d Decoder
	got, malformed := d.Decode(body, now)
	ref, refMalformed := refDecode(body, now)
	got, ref = nilIfEmpty(got), nilIfEmpty(ref)
	if malformed != refMalformed {
		t.Fatalf("Decode malformed = %v, reference %v", malformed, refMalformed)
	}
	if diff := cmp.Diff(ref, got, fieldsAsValues, asText); diff != "" {
		t.Fatalf("Decode differs from the reference (-ref +got):\n%s", diff)
	}
	if malformed {
		if len(got) != 1 || got[0].Type != TypeMalformed {
			t.Fatalf("malformed body gave %d records, want one %s", len(got), TypeMalformed)
		}
		var f struct {
			Encoding string
			Bytes    int
		}
		if err := json.Unmarshal(got[0].Fields, &f); err != nil {
			t.Fatalf("malformed Fields %s: %v", got[0].Fields, err)
		}
		kept := []byte(got[0].Message)
		if f.Encoding == "base64" {
			var err error
			if kept, err = base64.StdEncoding.DecodeString(got[0].Message); err != nil {
				t.Fatalf("malformed Message is not base64: %v", err)
			}
		}
		if !bytes.Equal(kept, body) || f.Bytes != len(body) {
			t.Fatalf("malformed record keeps %d bytes (Fields says %d), want the %d of the body", len(kept), f.Bytes, len(body))
		}
		return
	}
	for _, r := range got {
		if r.Fields == nil {
			continue
		}
		var c bytes.Buffer
		if err := json.Compact(&c, r.Fields); err != nil {
			t.Fatalf("Fields %q is not JSON: %v", r.Fields, err)
		}
		if !bytes.Equal(c.Bytes(), r.Fields) {
			t.Fatalf("Fields %q is not compact", r.Fields)
		}
	}
}

// addGoldenSeeds seeds f with the golden bodies in testdata, and with their
// first halves (a body Lambda cut) when halves is set.
func addGoldenSeeds(f *testing.F, halves bool) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if halves {
			f.Add(b[:len(b)/2])
		}
	}
}

func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f, true)
	for _, s := range []string{``, `[]`, `[{"type":"function","record":"a\ud800b\u00e9"}]`, "[\"\xff\"]",
		`[{"type":"function","record":{"level":"warn","message":{"a":1},"x":[1,2]}}]`,
		`[{"type":"platform.report","record":{"metrics":{"durationMs":-0.5e3,"x":1}}}]`,
		`[{"type":"x","time":"2024-02-29T12:00:00.5+05:30"}]`} {
		f.Add([]byte(s))
	}
	for _, s := range containCases {
		f.Add([]byte(s))
	}
	red, err := buffer.NewRedactor([]string{"all"}, nil, buffer.DefaultRedactKeys()...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body)
		checkPlanted(t, red, body)
	})
}

func FuzzParseTimeUTC(f *testing.F) {
	for _, s := range []string{"2022-10-12T00:00:15.064Z", "2024-02-29T23:59:59.123456789Z", "0000-01-01T00:00:00Z", "2023-02-29T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTimeUTC([]byte(s))
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseTimeUTC(%q) = %v, time.Parse = %v, %v", s, got, want, err)
		}
	})
}

// mixedBody is a POST as a busy function produces it: mostly text lines,
// some JSON lines, the platform events of a few invocations.
func mixedBody(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		t := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		switch {
		case i%50 == 0:
			fmt.Fprintf(&b, `{"time":"%s","type":"platform.start","record":{"requestId":"%s","version":"$LATEST"}}`, t, rid)
		case i%50 == 49:
			fmt.Fprintf(&b, `{"time":"%s","type":"platform.report","record":{"requestId":"%s","status":"success","metrics":{"durationMs":12.5,"billedDurationMs":13,"memorySizeMB":128,"maxMemoryUsedMB":70}}}`, t, rid)
		case i%5 == 0:
			fmt.Fprintf(&b, `{"time":"%s","type":"function","record":{"timestamp":"%s","level":"INFO","requestId":"%s","message":"order %d shipped to warehouse \"east\"","orderId":%d,"items":3}}`, t, t, rid, i, i)
		default:
			fmt.Fprintf(&b, `{"time":"%s","type":"function","record":"%s\t%s\tINFO\tGET /api/orders/%d 200 12ms user-agent=Mozilla/5.0 (X11; Linux x86_64) trace=%08x\n"}`, t, t, rid, i, i*2654435761)
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

func BenchmarkDecode(b *testing.B) {
	body := mixedBody(1000)
	var d Decoder
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		recs, malformed := d.Decode(body, now)
		if malformed || len(recs) != 1000 {
			b.Fatalf("Decode = %d records, malformed %v", len(recs), malformed)
		}
	}
}

// BenchmarkDecodeReference measures the encoding/json version, for scale.
func BenchmarkDecodeReference(b *testing.B) {
	body := mixedBody(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		refDecode(body, now)
	}
}
