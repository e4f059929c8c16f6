package athena

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-logs/sluice/buffer"
	"github.com/sluice-logs/sluice/extension/telemetry"
	"github.com/sluice-logs/sluice/sinks"
)

// The test stands DuckDB in for Athena: it derives the table from
// logs_ndjson.sql or logs_parquet.sql, writes an archive in each format with
// the extension's own decoder, batcher and directory sink, and runs
// queries.sql and compaction.sql over it.

const (
	prefix    = "logs/sluice" // the path of SLUICE_SINK for the test archive
	dtFrom    = "2026-11-30"
	dtTo      = "2026-12-01"
	timeShape = "2006-01-02T15:04:05.000Z"
)

// now is Athena's clock for the test's queries.
var now = time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC)

// formats are the archive formats the proof runs for, and ddlFiles the
// table each is read through.
var (
	formats  = []buffer.Format{buffer.FormatNDJSONZstd, buffer.FormatNDJSONGzip, buffer.FormatParquet}
	ddlFiles = map[buffer.Format]string{
		buffer.FormatNDJSONZstd: "logs_ndjson.sql",
		buffer.FormatNDJSONGzip: "logs_ndjson.sql", // Athena takes the codec from the extension
		buffer.FormatParquet:    "logs_parquet.sql",
	}
	// viewQuery names the statement of queries.sql that defines sluice_logs_v
	// over each format's table.
	viewQuery = map[buffer.Format]string{
		buffer.FormatNDJSONZstd: "sluice_logs_v",
		buffer.FormatNDJSONGzip: "sluice_logs_v",
		buffer.FormatParquet:    "sluice_logs_v_parquet",
	}
)

// servedByPartition lists the columns AppendRow writes that the table takes
// from a partition key instead: Athena forbids a data column and a partition
// key of one name, and the row's value always equals its object's partition.
var servedByPartition = map[string]bool{"function": true}

// duckTypes maps the Athena types the DDL may use to DuckDB's.
var duckTypes = map[string]string{
	"string":    "VARCHAR",
	"varchar":   "VARCHAR",
	"double":    "DOUBLE",
	"float":     "FLOAT",
	"bigint":    "BIGINT",
	"int":       "INTEGER",
	"integer":   "INTEGER",
	"smallint":  "SMALLINT",
	"tinyint":   "TINYINT",
	"boolean":   "BOOLEAN",
	"timestamp": "TIMESTAMP",
	"date":      "DATE",
}

// rewrite is one difference between Athena's SQL and DuckDB's that the test
// papers over. Each must be used by some query (checked), so the list holds
// nothing stale.
type rewrite struct {
	athena string // text in queries.sql
	duckdb string // what DuckDB runs instead
	why    string
}

var rewrites = []rewrite{
	{"current_timestamp", "TIMESTAMPTZ '2026-12-01 00:30:00+00'", "Athena's clock, pinned to the test's now"},
}

// macros define Athena functions DuckDB lacks under the same name, with the
// same meaning for the arguments the queries pass.
var macros = []struct{ athena, duckdb string }{
	{"from_iso8601_timestamp(s)", "CAST(s AS TIMESTAMPTZ)"},
	{"date_format(ts, f)", "strftime(ts, f)"},
	{"regexp_like(s, p)", "regexp_matches(s, p)"},
	{"json_extract_scalar(j, p)", "json_extract_string(j, p)"},
}

// label says what the test knows about a telemetry event, independently of
// the SQL: the invocation it belongs to, whether it is an error, and whether
// its line carries no trace of its request id.
type label struct {
	req    string
	err    bool
	hidden bool
}

// ev is one telemetry event as Lambda POSTs it, with its label.
type ev struct {
	body map[string]any
	label
}

// item is one step of an execution environment's run: a Telemetry API POST
// (or a raw body that is not one), or a row sluice writes about itself.
type item struct {
	recv   time.Time
	events []ev
	raw    string // a POST body that does not parse, labelled rawLbl
	rawLbl label
	rec    *buffer.Record
}

// written is one row as the extension archived it.
type written struct {
	fn  string
	rec buffer.Record
	row buffer.Row
	label
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func event(t time.Time, typ string, record any) map[string]any {
	return map[string]any{"time": t.Format(timeShape), "type": typ, "record": record}
}

// jsonLine is a function record in Lambda's JSON log format.
func jsonLine(t time.Time, level, req string, msg any, extra map[string]any) map[string]any {
	rec := map[string]any{"timestamp": t.Format(timeShape), "level": level, "requestId": req, "message": msg}
	for k, v := range extra {
		rec[k] = v
	}
	return event(t, "function", rec)
}

func textLine(t time.Time, line string) map[string]any { return event(t, "function", line) }

func start(t time.Time, req string) map[string]any {
	return event(t, "platform.start", map[string]any{"requestId": req, "version": "$LATEST"})
}

func runtimeDone(t time.Time, req, status, errType string, durMs float64, produced int) map[string]any {
	rec := map[string]any{"requestId": req, "status": status,
		"metrics": map[string]any{"durationMs": durMs, "producedBytes": produced}}
	if errType != "" {
		rec["errorType"] = errType
	}
	return event(t, "platform.runtimeDone", rec)
}

func report(t time.Time, req, status string, durMs, billedMs float64, mem, maxMem int, initMs float64) map[string]any {
	m := map[string]any{"durationMs": durMs, "billedDurationMs": billedMs, "memorySizeMB": mem, "maxMemoryUsedMB": maxMem}
	if initMs > 0 {
		m["initDurationMs"] = initMs
	}
	return event(t, "platform.report", map[string]any{"requestId": req, "status": status, "metrics": m,
		"tracing": map[string]any{"type": "X-Amzn-Trace-Id", "value": "Root=1-6747a3c0-5f1d2e3c4b5a69788796a5b4;Sampled=1"}})
}

// initEvents are the three events of an init phase.
func initEvents(t time.Time, initType, status string, durMs float64) []ev {
	return []ev{
		{body: event(t, "platform.initStart", map[string]any{"initializationType": initType, "phase": "init",
			"runtimeVersion": "python:3.13.v20", "runtimeVersionArn": "arn:aws:lambda:us-east-1::runtime:abc"})},
		{body: event(t.Add(time.Duration(durMs*float64(time.Millisecond))), "platform.initRuntimeDone",
			map[string]any{"initializationType": initType, "phase": "init", "status": status}),
			label: label{err: status != "success"}},
		{body: event(t.Add(time.Duration(durMs*float64(time.Millisecond))), "platform.initReport",
			map[string]any{"initializationType": initType, "phase": "init", "status": status,
				"metrics": map[string]any{"durationMs": durMs}}),
			label: label{err: status != "success"}},
	}
}

const (
	reqA1 = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
	reqA2 = "79b4f56e-95b1-4643-9700-2807f4e68189"
	reqA3 = "0f4c5e6b-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
	reqB1 = "c3a1f0de-8e2b-4d6c-a5f7-19b2e4d6c8a0"
	reqT1 = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
	reqT2 = "f9e8d7c6-b5a4-4938-8271-605f4e3d2c1b"
)

// environment is one execution environment's telemetry, in arrival order.
type environment struct {
	fn, env string
	items   []item
}

func post(recv time.Time, evs ...ev) item { return item{recv: recv, events: evs} }

// stats is a sluice.stats row the extension writes about itself.
func stats(at time.Time, fields string) item {
	return item{recv: at, rec: &buffer.Record{Time: at, Type: "sluice.stats", Fields: json.RawMessage(fields)}}
}

func in(req string, body map[string]any) ev { return ev{body: body, label: label{req: req}} }
func inErr(req string, body map[string]any) ev {
	return ev{body: body, label: label{req: req, err: true}}
}

// scenario is two functions, three environments, rows on both sides of a
// UTC day boundary: orders-api logs in JSON format, thumbnailer in text.
func scenario() []environment {
	t := ts
	big := strings.Repeat("0123456789abcdef", 100<<10/16) // one 100 KiB line: a batch of its own
	ordersA := environment{fn: "orders-api", env: "2026-11-30T22-15-00Z-a1b2", items: []item{
		post(t("2026-11-30T22:15:01Z"), initEvents(t("2026-11-30T22:15:00.100Z"), "on-demand", "success", 180.5)...),
		post(t("2026-11-30T22:15:02Z"),
			in(reqA1, start(t("2026-11-30T22:15:00.300Z"), reqA1)),
			in(reqA1, jsonLine(t("2026-11-30T22:15:00.310Z"), "INFO", reqA1, "order received",
				map[string]any{"orderId": 42, "customer": map[string]any{"id": "c-7", "tier": "gold"}, "tags": []string{"a", "b"}})),
			inErr(reqA1, jsonLine(t("2026-11-30T22:15:00.320Z"), "ERROR", reqA1, "inventory lookup failed",
				map[string]any{"errorType": "TimeoutError", "stackTrace": []string{"at lookup (/var/task/inv.js:10:5)"}})),
			in(reqA1, runtimeDone(t("2026-11-30T22:15:00.550Z"), reqA1, "success", "", 249.1, 512)),
			in(reqA1, report(t("2026-11-30T22:15:00.560Z"), reqA1, "success", 249.1, 250, 512, 90, 170.2)),
		),
		post(t("2026-11-30T23:40:03Z"),
			in(reqA2, start(t("2026-11-30T23:40:00.000Z"), reqA2)),
			in(reqA2, jsonLine(t("2026-11-30T23:40:00.010Z"), "warn", reqA2, map[string]any{"event": "retry", "attempt": 2}, nil)),
			inErr(reqA2, jsonLine(t("2026-11-30T23:40:00.020Z"), "ERROR", reqA2, "payment declined",
				map[string]any{"code": "card_declined", "amount": 12.5})),
			in(reqA2, jsonLine(t("2026-11-30T23:40:00.030Z"), "INFO", reqA2,
				"café ☃ 😀 \"quoted\" back\\slash\ttab\nnew line \u2028 sep", map[string]any{"path": "C:\\tmp"})),
			inErr(reqA2, runtimeDone(t("2026-11-30T23:40:01.000Z"), reqA2, "failure", "Runtime.ExitError", 990, 0)),
			inErr(reqA2, report(t("2026-11-30T23:40:01.010Z"), reqA2, "failure", 990.02, 1000, 512, 120, 0)),
		),
		post(t("2026-12-01T00:10:02Z"),
			in(reqA3, start(t("2026-12-01T00:10:00.000Z"), reqA3)),
			in(reqA3, jsonLine(t("2026-12-01T00:10:00.005Z"), "INFO", reqA3, big, nil)),
			in(reqA3, jsonLine(t("2026-12-01T00:10:00.006Z"), "DEBUG", reqA3, "cache miss", map[string]any{"key": "user:42", "hit": false})),
			in(reqA3, runtimeDone(t("2026-12-01T00:10:00.011Z"), reqA3, "success", "", 11.3, 2)),
			in(reqA3, report(t("2026-12-01T00:10:00.012Z"), reqA3, "success", 11.3, 12, 512, 95, 0)),
		),
		stats(t("2026-11-30T23:41:00Z"), `{"interval_s":60,"lines_seen":1250000,"bytes_seen":312500000,"lines_kept":1250000,"bytes_kept":312500000,"lines_sampled_out":0,"objects_written":40,"stored_bytes":39062500,"upload_ms":2400.5,"added_ms":120.25,"memory_mb":512,"arch":"x86_64"}`),
		stats(t("2026-11-30T23:42:00Z"), `{"lines_seen":80000,"bytes_seen":20000000,"lines_kept":8000,"bytes_kept":2000000,"lines_sampled_out":72000,"objects_written":1,"stored_bytes":250000,"upload_ms":48,"added_ms":0,"memory_mb":512,"arch":"x86_64"}`),
		stats(t("2026-12-01T00:11:00Z"), `{"lines_seen":2,"bytes_seen":102420,"lines_kept":2,"bytes_kept":102420,"objects_written":2,"stored_bytes":9000,"upload_ms":80,"added_ms":41.5,"memory_mb":512,"arch":"x86_64"}`),
		post(t("2026-12-01T00:12:00Z"), ev{body: event(t("2026-12-01T00:12:00Z"), "platform.logsDropped", map[string]any{
			"droppedBytes": 4096, "droppedRecords": 12,
			"reason": "Some logs were dropped because the downstream consumer is slower than the logs production rate"}),
			label: label{err: true}}),
		// The first half of a record Lambda cut across two POSTs.
		{recv: t("2026-12-01T00:13:00Z"), raw: `[{"time":"2026-12-01T00:12:59.000Z","type":"function","record":{"timestamp":"2026-12-01T00:12:59.000Z","level":"INFO","message":"abcdef`,
			rawLbl: label{err: true}},
	}}
	ordersB := environment{fn: "orders-api", env: "2026-11-30T23-50-00Z-c3d4", items: []item{
		post(t("2026-11-30T23:50:01Z"), initEvents(t("2026-11-30T23:50:00.000Z"), "provisioned-concurrency", "success", 310)...),
		post(t("2026-11-30T23:59:59.999Z"),
			in(reqB1, start(t("2026-11-30T23:59:58.000Z"), reqB1)),
			in(reqB1, jsonLine(t("2026-11-30T23:59:59.999Z"), "INFO", reqB1, "last line of the day", nil)),
		),
		post(t("2026-12-01T00:00:03.100Z"),
			in(reqB1, jsonLine(t("2026-12-01T00:00:00.000Z"), "INFO", reqB1, "first line of the day", nil)),
			inErr(reqB1, runtimeDone(t("2026-12-01T00:00:03.000Z"), reqB1, "timeout", "Sandbox.Timedout", 3000, 0)),
			inErr(reqB1, report(t("2026-12-01T00:00:03.050Z"), reqB1, "timeout", 3000, 3000, 512, 200, 0)),
		),
		{recv: t("2026-12-01T00:20:00Z"), rec: &buffer.Record{Time: t("2026-12-01T00:20:00Z"), Type: "sluice.stats",
			Fields: json.RawMessage(`{"records":9,"batches":3,"uploaded":3,"upload_errors":0,"fallback":0}`)}},
		stats(t("2026-12-01T00:21:00Z"), `{"lines_seen":2,"bytes_seen":41,"lines_kept":2,"bytes_kept":41,"objects_written":1,"stored_bytes":700,"upload_ms":35,"added_ms":3,"memory_mb":512,"arch":"x86_64"}`),
	}}
	thumbs := environment{fn: "thumbnailer", env: "2026-11-30T23-35-00Z-e5f6", items: []item{
		post(t("2026-11-30T23:35:01Z"), initEvents(t("2026-11-30T23:35:00.000Z"), "on-demand", "success", 95.25)...),
		post(t("2026-11-30T23:35:03Z"),
			in(reqT1, start(t("2026-11-30T23:35:01.000Z"), reqT1)),
			in(reqT1, textLine(t("2026-11-30T23:35:01.100Z"), "2026-11-30T23:35:01.100Z\t"+reqT1+"\tINFO\tresizing img-9.png\n")),
			ev{body: textLine(t("2026-11-30T23:35:01.200Z"), "plain print without an id"), label: label{req: reqT1, hidden: true}},
			inErr(reqT1, textLine(t("2026-11-30T23:35:01.300Z"), "[ERROR]\t2026-11-30T23:35:01.300Z\t"+reqT1+"\tKeyError: 'width'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 3, in handler\n")),
			inErr(reqT1, textLine(t("2026-11-30T23:35:01.400Z"), "2026-11-30T23:35:01.400Z\t"+reqT1+"\tERROR\tInvoke Error {\"errorType\":\"Error\"}\n")),
			ev{body: textLine(t("2026-11-30T23:35:01.500Z"), "[INFO] an ERRORS_TOTAL metric that is not an error"), label: label{req: reqT1, hidden: true}},
			in(reqT1, runtimeDone(t("2026-11-30T23:35:02.000Z"), reqT1, "success", "", 1000.5, 100)),
			in(reqT1, report(t("2026-11-30T23:35:02.010Z"), reqT1, "success", 1000.5, 1001, 1024, 300, 80.4)),
		),
		stats(t("2026-11-30T23:36:00Z"), `{"lines_seen":5,"bytes_seen":300,"lines_kept":5,"bytes_kept":300,"objects_written":1,"stored_bytes":400,"upload_ms":60,"added_ms":12.5,"memory_mb":1024,"arch":"arm64"}`),
		post(t("2026-12-01T00:05:02Z"),
			in(reqT2, start(t("2026-12-01T00:05:00.000Z"), reqT2)),
			in(reqT2, textLine(t("2026-12-01T00:05:00.100Z"), "[INFO] ok")),
			ev{body: textLine(t("2026-12-01T00:05:00.200Z"), "ERROR: disk full"), label: label{req: reqT2, err: true, hidden: true}},
			in(reqT2, textLine(t("2026-12-01T00:05:00.300Z"), "")),
			in(reqT2, runtimeDone(t("2026-12-01T00:05:01.000Z"), reqT2, "success", "", 100, 5)),
			in(reqT2, report(t("2026-12-01T00:05:01.010Z"), reqT2, "success", 99.9, 100, 1024, 310, 0)),
		),
	}}
	return []environment{ordersA, ordersB, thumbs}
}

// writeArchive runs each environment's telemetry through the decoder, the
// batcher and the directory sink, as the extension does, writing batches in
// format f, and returns the rows in the order they were written.
func writeArchive(t *testing.T, root string, envs []environment, f buffer.Format) []written {
	t.Helper()
	ctx := context.Background()
	var all []written
	for _, e := range envs {
		meta := buffer.Meta{Function: e.fn, Version: "$LATEST"}
		// Small batches, so that partitions hold several objects.
		b := buffer.NewBatcher(meta, buffer.Limits{MaxBytes: 16 << 10, MaxAge: time.Hour, Format: f}, func() time.Time { return now })
		sink := sinks.NewDir(root, sinks.Layout{Prefix: prefix, Function: e.fn, Env: e.env})
		var dec telemetry.Decoder
		var batches []*buffer.Batch
		var rows []written
		for _, it := range e.items {
			var recs []buffer.Record
			var labels []label
			switch {
			case it.rec != nil:
				recs, labels = []buffer.Record{*it.rec}, []label{{}}
			case it.raw != "":
				var malformed bool
				recs, malformed = dec.Decode([]byte(it.raw), it.recv)
				if !malformed {
					t.Fatalf("%s: Decode(cut body) malformed = false, want true", e.env)
				}
				labels = []label{it.rawLbl}
			default:
				bodies := make([]map[string]any, len(it.events))
				for i, x := range it.events {
					bodies[i] = x.body
					labels = append(labels, x.label)
				}
				body, err := json.Marshal(bodies)
				if err != nil {
					t.Fatal(err)
				}
				var malformed bool
				if recs, malformed = dec.Decode(body, it.recv); malformed {
					t.Fatalf("%s: Decode(%s) malformed", e.env, body)
				}
			}
			if len(recs) != len(labels) {
				t.Fatalf("%s: Decode returned %d records for %d events", e.env, len(recs), len(labels))
			}
			for i := range recs {
				line := buffer.AppendRow(nil, meta, &recs[i])
				row, err := buffer.ParseRow(line)
				if err != nil {
					t.Fatalf("ParseRow(%s): %v", line, err)
				}
				rows = append(rows, written{fn: e.fn, rec: recs[i], row: row, label: labels[i]})
				batches = append(batches, b.Add(&recs[i])...)
			}
		}
		if s := b.Seal(); s != nil {
			batches = append(batches, s)
		}
		// The batches must hold exactly the rows AppendRow writes, in order
		// (Parquet ones once decoded back to rows).
		var want, got []byte
		for i := range rows {
			want = buffer.AppendRow(want, meta, &rows[i].rec)
		}
		for _, bt := range batches {
			if bt.Ext != f.Ext() || buffer.DetectFormat(bt.Data) != f {
				t.Fatalf("batch %d: Ext %q, data %v; want %v", bt.Seq, bt.Ext, buffer.DetectFormat(bt.Data), f)
			}
			lines, err := buffer.DecodeBatch(bt.Data)
			if err != nil {
				t.Fatalf("batch %d: %v", bt.Seq, err)
			}
			for _, l := range lines {
				got = append(append(got, l...), '\n')
			}
			if err := sink.Write(ctx, bt); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: batches hold other rows than AppendRow writes", e.env)
		}
		all = append(all, rows...)
	}
	return all
}

// duckColumns renders the columns={...} argument of read_json.
func duckColumns(t *testing.T, cols []column) string {
	t.Helper()
	var parts []string
	for _, c := range cols {
		dt, ok := duckTypes[c.Type]
		if !ok {
			t.Fatalf("column %s: no DuckDB type for Athena type %q", c.Name, c.Type)
		}
		parts = append(parts, fmt.Sprintf("'%s': '%s'", c.Name, dt))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func readDDL(t *testing.T, name string) *table {
	t.Helper()
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := parseTable(string(src))
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func readQueries(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("queries.sql")
	if err != nil {
		t.Fatal(err)
	}
	qs, err := parseQueries(string(src))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, q := range qs {
		if _, dup := m[q.Name]; dup {
			t.Fatalf("queries.sql: %s defined twice", q.Name)
		}
		m[q.Name] = q.SQL
	}
	return m
}

// rowTags returns buffer.Row's JSON keys in field order, with the Go kind
// of each field.
func rowTags() (names []string, kinds map[string]reflect.Type) {
	kinds = map[string]reflect.Type{}
	rt := reflect.TypeFor[buffer.Row]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
		kinds[name] = f.Type
	}
	return names, kinds
}

// ddlTimeType is the Athena type each table declares "time" as: the NDJSON
// table keeps the writer's string (see README), the Parquet file stores a
// TIMESTAMP.
var ddlTimeType = map[string]string{"logs_ndjson.sql": "string", "logs_parquet.sql": "timestamp"}

// TestDDLMatchesWriter fails when AppendRow writes a column a table lacks,
// or a table declares one AppendRow never writes, or the types disagree.
func TestDDLMatchesWriter(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(ddlTimeType)) {
		t.Run(name, func(t *testing.T) { testDDLMatchesWriter(t, name) })
	}
}

func testDDLMatchesWriter(t *testing.T, ddl string) {
	tbl := readDDL(t, ddl)
	names, kinds := rowTags()

	var wantCols []string
	for _, n := range names {
		if !servedByPartition[n] {
			wantCols = append(wantCols, n)
		}
	}
	var gotCols []string
	for _, c := range tbl.Columns {
		gotCols = append(gotCols, c.Name)
	}
	if diff := cmp.Diff(wantCols, gotCols); diff != "" {
		t.Errorf("DDL data columns differ from buffer.Row's keys less %v (-row +ddl):\n%s", servedByPartition, diff)
	}
	parts := map[string]string{}
	for _, p := range tbl.Partitions {
		parts[p.Name] = p.Type
	}
	for n := range servedByPartition {
		if _, ok := parts[n]; !ok {
			t.Errorf("column %s is left out of the data columns but is no partition key", n)
		}
	}

	// The keys AppendRow actually emits, in order, for a row with every
	// column set.
	full := buffer.Record{Time: now, Type: "platform.report", RequestID: "r", Level: "ERROR", Message: "m",
		Status: "failure", ErrorType: "E", Fields: json.RawMessage(`{"a":1}`),
		Metrics: &buffer.Metrics{DurationMs: 1.5, BilledDurationMs: 2, InitDurationMs: 3.25, RestoreDurationMs: 4,
			MemorySizeMB: 128, MaxMemoryUsedMB: 64, ProducedBytes: 7}}
	line := buffer.AppendRow(nil, buffer.Meta{Function: "f", Version: "1"}, &full)
	dec := json.NewDecoder(bytes.NewReader(line))
	var emitted []string
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		emitted = append(emitted, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(names, emitted); diff != "" {
		t.Errorf("AppendRow keys differ from buffer.Row's (-row +emitted):\n%s", diff)
	}

	// Go type of the written value -> Athena types that read it.
	fits := map[reflect.Type][]string{
		reflect.TypeFor[string]():    {"string", "varchar"},
		reflect.TypeFor[float64]():   {"double"},
		reflect.TypeFor[int64]():     {"bigint"},
		reflect.TypeFor[time.Time](): {ddlTimeType[ddl]},
	}
	for _, c := range append(slices.Clone(tbl.Columns), tbl.Partitions...) {
		k, ok := kinds[c.Name]
		if !ok {
			continue // dt, hour: path only
		}
		if !slices.Contains(fits[k], c.Type) {
			t.Errorf("column %s: Athena type %s cannot hold what AppendRow writes (Go %s); want one of %v",
				c.Name, c.Type, k, fits[k])
		}
	}
}

// TestProjectionMatchesKeys renders each table's storage.location.template
// with the projection's own formats and checks it against sinks.Layout.Key
// for the batches the table reads.
func TestProjectionMatchesKeys(t *testing.T) {
	for _, f := range []buffer.Format{buffer.FormatNDJSONZstd, buffer.FormatNDJSONGzip, buffer.FormatParquet} {
		t.Run(f.String(), func(t *testing.T) { testProjectionMatchesKeys(t, f) })
	}
}

func testProjectionMatchesKeys(t *testing.T, f buffer.Format) {
	tbl := readDDL(t, ddlFiles[f])
	switch {
	case f == buffer.FormatParquet && (tbl.StoredAs != "parquet" || tbl.SerDe != ""):
		t.Errorf("STORED AS %q, SerDe %q; want STORED AS PARQUET", tbl.StoredAs, tbl.SerDe)
	case f != buffer.FormatParquet && (tbl.SerDe != "org.apache.hive.hcatalog.data.JsonSerDe" || tbl.StoredAs != ""):
		t.Errorf("SerDe = %q, STORED AS %q; want the Hive JSON SerDe", tbl.SerDe, tbl.StoredAs)
	}
	p := tbl.Props
	if p["projection.enabled"] != "true" {
		t.Fatalf("projection.enabled = %q, want true", p["projection.enabled"])
	}
	tmpl := p["storage.location.template"]
	if !strings.HasPrefix(tmpl, tbl.Location) {
		t.Errorf("storage.location.template %q is not under LOCATION %q", tmpl, tbl.Location)
	}
	base, ok := strings.CutPrefix(tmpl, "s3://<BUCKET>/<PREFIX>/")
	if !ok {
		t.Fatalf("storage.location.template %q does not start with s3://<BUCKET>/<PREFIX>/", tmpl)
	}
	for _, c := range tbl.Partitions {
		if c.Type != "string" {
			t.Errorf("partition %s is %s; projected Hive partitions here are strings", c.Name, c.Type)
		}
		if typ := p["projection."+c.Name+".type"]; typ == "" {
			t.Errorf("partition %s has no projection.%s.type", c.Name, c.Name)
		}
		if !strings.Contains(base, "${"+c.Name+"}") {
			t.Errorf("storage.location.template lacks ${%s}", c.Name)
		}
	}
	if p["projection.dt.type"] != "date" || p["projection.hour.type"] != "integer" {
		t.Fatalf("projection types dt=%q hour=%q, want date and integer", p["projection.dt.type"], p["projection.hour.type"])
	}
	layout := javaToGoLayout(t, p["projection.dt.format"])
	digits, err := strconv.Atoi(p["projection.hour.digits"])
	if err != nil {
		t.Fatalf("projection.hour.digits: %v", err)
	}
	lo, hi := intRange(t, p["projection.hour.range"])
	dtLo, dtHi, _ := strings.Cut(p["projection.dt.range"], ",")
	first, err := time.Parse(layout, dtLo)
	if err != nil {
		t.Fatalf("projection.dt.range %q: %v", p["projection.dt.range"], err)
	}
	if dtHi != "NOW" {
		t.Errorf("projection.dt.range ends at %q; want NOW so new days need no DDL change", dtHi)
	}

	for _, start := range []time.Time{
		time.Date(2026, 11, 30, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 1, 1, 9, 5, 0, 0, time.UTC),
	} {
		t.Run(start.Format(time.RFC3339Nano), func(t *testing.T) {
			if start.Before(first) || start.Hour() < lo || start.Hour() > hi {
				t.Fatalf("%v is outside the projected range", start)
			}
			r := strings.NewReplacer(
				"${function}", "orders-api",
				"${dt}", start.Format(layout),
				"${hour}", fmt.Sprintf("%0*d", digits, start.Hour()))
			dir := prefix + "/" + r.Replace(base)
			key := sinks.Layout{Prefix: prefix, Function: "orders-api", Env: "e"}.Key(&buffer.Batch{Seq: 1, Start: start, Ext: f.Ext()})
			if !strings.HasPrefix(key, dir) || strings.Contains(key[len(dir):], "/") {
				t.Errorf("Key() = %q, not an object directly in projected partition %q", key, dir)
			}
		})
	}
}

// javaToGoLayout converts the date patterns partition projection takes
// (java.text.SimpleDateFormat) to a Go layout; only what a day needs.
func javaToGoLayout(t *testing.T, f string) string {
	t.Helper()
	r := strings.NewReplacer("yyyy", "2006", "MM", "01", "dd", "02")
	l := r.Replace(f)
	if strings.ContainsAny(l, "yMdHhmsS") {
		t.Fatalf("projection.dt.format %q: pattern not supported by the test", f)
	}
	return l
}

func intRange(t *testing.T, s string) (int, int) {
	t.Helper()
	a, b, ok := strings.Cut(s, ",")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("range %q: want lo,hi", s)
	}
	return lo, hi
}

// archive is the written archive opened in DuckDB with the table the DDL
// of its format declares, as a view of the table's name.
type archive struct {
	db     *sql.DB
	format buffer.Format
	tbl    *table
	rows   []written
	root   string
	// compacted is set for Parquet files that compaction.sql wrote: they
	// lack the "function" column, as Athena's INSERT INTO leaves partition
	// keys to the path.
	compacted bool
}

// glob matches the archive's objects.
func (a *archive) glob() string {
	return filepath.ToSlash(filepath.Join(a.root, prefix)) + "/**/*" + a.format.Ext()
}

func openArchive(t *testing.T, f buffer.Format) *archive {
	t.Helper()
	if f == buffer.FormatParquet && !buffer.ParquetBuilt {
		t.Skip("sluice's Parquet writer is built only with -tags parquet (make athena sets it)")
	}
	a := &archive{format: f, tbl: readDDL(t, ddlFiles[f]), root: t.TempDir()}
	a.rows = writeArchive(t, a.root, scenario(), f)
	a.db = openDuckDB(t)
	a.createTable(t, a.tbl, a.glob())
	return a
}

// openDuckDB opens a DuckDB set up as the queries expect Athena to be.
func openDuckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // one connection: SET and the macros must hold for every query
	mustExec(t, db, "SET TimeZone = 'UTC'")
	for _, m := range macros {
		mustExec(t, db, fmt.Sprintf("CREATE MACRO %s AS %s", m.athena, m.duckdb))
	}
	return db
}

// createTable creates tbl as a view over the objects glob matches: the
// data columns the DDL declares, with its types, and the partition keys
// from the Hive-style path, as Athena reads them.
func (a *archive) createTable(t *testing.T, tbl *table, glob string) {
	t.Helper()
	hiveTypes := duckColumns(t, tbl.Partitions)
	if tbl.StoredAs != "parquet" {
		mustExec(t, a.db, fmt.Sprintf(`CREATE VIEW %s AS SELECT * FROM read_json('%s',
			format = 'newline_delimited', columns = %s,
			hive_partitioning = true, hive_types = %s)`,
			tbl.Name, glob, duckColumns(t, tbl.Columns), hiveTypes))
		return
	}
	// read_parquet takes the files' own schema. Athena maps Parquet columns
	// to the table's by name and fails on a type it cannot read, so every
	// declared column must be in the files with a type that reads as the
	// declared one; then the view casts to exactly that type.
	src := fmt.Sprintf("read_parquet('%s', hive_partitioning = true, hive_types = %s)", glob, hiveTypes)
	fileTypes := map[string]string{}
	for _, m := range queryAll(t, a.db, "DESCRIBE SELECT * FROM "+src) {
		fileTypes[m["column_name"].(string)] = m["column_type"].(string)
	}
	var sel []string
	for _, c := range tbl.Columns {
		got, ok := fileTypes[c.Name]
		if !ok {
			t.Fatalf("%s: column %s is in no Parquet file", tbl.Name, c.Name)
		}
		if !slices.Contains(parquetReads[c.Type], got) {
			t.Errorf("%s: column %s is %s in the files; Athena type %s reads %v", tbl.Name, c.Name, got, c.Type, parquetReads[c.Type])
		}
		sel = append(sel, fmt.Sprintf(`CAST("%s" AS %s) AS "%s"`, c.Name, duckTypes[c.Type], c.Name))
	}
	for _, c := range tbl.Partitions {
		sel = append(sel, `"`+c.Name+`"`) // from the path: DuckDB, like Athena, prefers it to a file column
	}
	mustExec(t, a.db, fmt.Sprintf("CREATE VIEW %s AS SELECT %s FROM %s", tbl.Name, strings.Join(sel, ", "), src))
}

// parquetReads maps the Athena types the Parquet DDL may use to the DuckDB
// types of the Parquet columns that Athena reads as them.
var parquetReads = map[string][]string{
	"string":    {"VARCHAR"},
	"double":    {"DOUBLE"},
	"bigint":    {"BIGINT"},
	"timestamp": {"TIMESTAMP WITH TIME ZONE", "TIMESTAMP"}, // INT64 TIMESTAMP, UTC-adjusted or not
}

func mustExec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// queryAll runs q and returns its rows as maps from column name to value.
func queryAll(t *testing.T, db *sql.DB, q string) []map[string]any {
	t.Helper()
	rs, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s\n: %v", q, err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for i, c := range cols {
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("%s\n: %v", q, err)
	}
	return out
}

// num converts any numeric result to float64 for comparison.
func num(t *testing.T, v any) float64 {
	t.Helper()
	switch x := v.(type) {
	case nil:
		return math.NaN()
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case float64:
		return x
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f
	case duckdb.Decimal:
		return x.Float64()
	}
	t.Fatalf("num(%T %v): not a number", v, v)
	return 0
}

func dtOf(r written) string   { return r.rec.Time.UTC().Format("2006-01-02") }
func hourOf(r written) string { return r.rec.Time.UTC().Format("15") }

// expectedValue is the value a column of Athena type typ must read as: what
// ParseRow reads back from the written line, with an absent key as NULL.
func expectedValue(r written, col, typ string) any {
	rv := reflect.ValueOf(r.row)
	rt := rv.Type()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != col {
			continue
		}
		v := rv.Field(i)
		if v.IsZero() {
			// A log line's message is never NULL, even when empty.
			if col == "message" && (r.row.Type == "function" || r.row.Type == "extension") {
				return ""
			}
			return nil
		}
		if tm, ok := v.Interface().(time.Time); ok {
			if typ == "timestamp" {
				return tm.UTC()
			}
			return tm.UTC().Format(timeShape)
		}
		return v.Interface()
	}
	return nil
}

// TestArchiveReads reads every row back through the derived table and
// compares each column, the partitions and the per-partition counts, for
// each format.
func TestArchiveReads(t *testing.T) {
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) { testArchiveReads(t, openArchive(t, f)) })
	}
}

func testArchiveReads(t *testing.T, a *archive) {
	if len(a.rows) < 40 {
		t.Fatalf("scenario wrote %d rows; the test expects a realistic set", len(a.rows))
	}

	var cols []string
	for _, c := range a.tbl.Columns {
		cols = append(cols, c.Name)
	}
	for _, c := range a.tbl.Partitions {
		cols = append(cols, c.Name)
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + c + `"`
	}
	got := queryAll(t, a.db, "SELECT "+strings.Join(quoted, ", ")+" FROM "+a.tbl.Name)

	var want []map[string]any
	for _, r := range a.rows {
		m := map[string]any{}
		for _, c := range a.tbl.Columns {
			m[c.Name] = expectedValue(r, c.Name, c.Type)
		}
		m["function"], m["dt"], m["hour"] = r.fn, dtOf(r), hourOf(r)
		want = append(want, m)
	}
	key := func(m map[string]any) string {
		return fmt.Sprint(m["function"], m["time"], m["type"], m["message"], m["fields"])
	}
	sortRows := cmpopts.SortSlices(func(x, y map[string]any) bool { return key(x) < key(y) })
	if diff := cmp.Diff(want, got, sortRows); diff != "" {
		t.Errorf("rows read through the table differ from the rows written (-written +read):\n%s", diff)
	}

	// Rows per partition.
	wantCount := map[string]int64{}
	for _, r := range a.rows {
		wantCount[r.fn+"/"+dtOf(r)+"/"+hourOf(r)]++
	}
	gotCount := map[string]int64{}
	for _, m := range queryAll(t, a.db, `SELECT "function", dt, hour, count(*) AS n FROM `+a.tbl.Name+` GROUP BY ALL`) {
		gotCount[fmt.Sprint(m["function"], "/", m["dt"], "/", m["hour"])] = int64(num(t, m["n"]))
	}
	if diff := cmp.Diff(wantCount, gotCount); diff != "" {
		t.Errorf("rows per partition (-written +read):\n%s", diff)
	}
	if len(wantCount) < 5 {
		t.Errorf("scenario spans %d partitions; want several functions, days and hours", len(wantCount))
	}

	// The time strings parse as the instants written.
	if a.format != buffer.FormatParquet {
		for _, m := range queryAll(t, a.db, `SELECT "time" AS s, from_iso8601_timestamp("time") AS t FROM `+a.tbl.Name) {
			s, _ := m["s"].(string)
			tm, ok := m["t"].(time.Time)
			if !ok || tm.UTC().Format(timeShape) != s {
				t.Errorf("time %q parses as %v", s, m["t"])
			}
		}
	}

	if a.compacted {
		return
	}
	// Every row's own function key equals its object's function= partition.
	src := fmt.Sprintf(`read_json('%s', format = 'newline_delimited', columns = {'function': 'VARCHAR'},
		hive_partitioning = false, filename = true)`, a.glob())
	if a.format == buffer.FormatParquet {
		src = fmt.Sprintf(`read_parquet('%s', hive_partitioning = false, filename = true)`, a.glob())
	}
	raw := queryAll(t, a.db, `SELECT "function" AS f, filename FROM `+src)
	if len(raw) != len(a.rows) {
		t.Errorf("read %d rows without partitioning, want %d", len(raw), len(a.rows))
	}
	for _, m := range raw {
		if f := m["f"].(string); !strings.Contains(m["filename"].(string), "/function="+f+"/") {
			t.Errorf("row with function %q lies in %s", f, m["filename"])
		}
	}
}

// runQuery translates a named query of queries.sql for DuckDB with the given
// placeholder values and runs it.
func (a *archive) runQuery(t *testing.T, sqlText string, params map[string]string) []map[string]any {
	t.Helper()
	q := sqlText
	for k, v := range params {
		if !strings.Contains(q, k) {
			t.Fatalf("query has no placeholder %s", k)
		}
		q = strings.ReplaceAll(q, k, v)
	}
	for _, rw := range rewrites {
		q = strings.ReplaceAll(q, rw.athena, rw.duckdb)
	}
	if strings.Contains(q, "'<") {
		t.Fatalf("placeholder left in query:\n%s", q)
	}
	return queryAll(t, a.db, q)
}

func sqlList(vs ...string) string {
	return "'" + strings.Join(vs, "', '") + "'"
}

// TestQueries runs every query of queries.sql over the archive in each
// format, through the view that format's table gets.
func TestQueries(t *testing.T) {
	qs := readQueries(t)
	used := map[string]bool{}
	for _, q := range qs {
		for _, rw := range rewrites {
			if strings.Contains(q, rw.athena) {
				used[rw.athena] = true
			}
		}
		for _, m := range macros {
			name, _, _ := strings.Cut(m.athena, "(")
			if strings.Contains(q, name+"(") {
				used[name] = true
			}
		}
	}
	for _, rw := range rewrites {
		if !used[rw.athena] {
			t.Errorf("rewrite %q is used by no query: drop it", rw.athena)
		}
	}
	for _, m := range macros {
		if name, _, _ := strings.Cut(m.athena, "("); !used[name] {
			t.Errorf("macro %s is used by no query: drop it", name)
		}
	}
	want := []string{"sluice_logs_v", "sluice_logs_v_parquet", "errors_last_hour", "request_lines", "cold_starts", "init_phases", "cost_per_function_day", "lost_telemetry", "savings_per_function_day"}
	for _, n := range want {
		if _, ok := qs[n]; !ok {
			t.Errorf("queries.sql lacks %s", n)
		}
	}
	if len(qs) != len(want) {
		t.Errorf("queries.sql has %d queries, the test knows %d: test the new one", len(qs), len(want))
	}
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) { testQueries(t, openArchive(t, f), qs) })
	}
}

// timeKey renders a time column's value, a timestamp or the writer's
// string, as the writer's string.
func timeKey(v any) string {
	if tm, ok := v.(time.Time); ok {
		return tm.UTC().Format(timeShape)
	}
	return fmt.Sprint(v)
}

func testQueries(t *testing.T, a *archive, qs map[string]string) {
	days := map[string]string{"'<DT_FROM>'": "'" + dtFrom + "'", "'<DT_TO>'": "'" + dtTo + "'"}
	both := sqlList("orders-api", "thumbnailer")
	withDays := func(m map[string]string) map[string]string {
		for k, v := range days {
			m[k] = v
		}
		return m
	}

	t.Run("sluice_logs_v", func(t *testing.T) {
		a.runQuery(t, qs[viewQuery[a.format]], nil)
		got := queryAll(t, a.db, `SELECT "time", type, message FROM sluice_logs_v WHERE "function" = 'orders-api'`)
		n := 0
		for _, r := range a.rows {
			if r.fn == "orders-api" {
				n++
			}
		}
		if len(got) != n {
			t.Fatalf("view has %d orders-api rows, want %d", len(got), n)
		}
		var gotTimes, wantTimes []time.Time
		for _, m := range got {
			tm, ok := m["time"].(time.Time)
			if !ok {
				t.Fatalf("view time is %T, want a timestamp", m["time"])
			}
			gotTimes = append(gotTimes, tm)
		}
		for _, r := range a.rows {
			if r.fn == "orders-api" {
				wantTimes = append(wantTimes, r.rec.Time.UTC().Truncate(time.Millisecond))
			}
		}
		less := func(x, y time.Time) int { return x.Compare(y) }
		slices.SortFunc(gotTimes, less)
		slices.SortFunc(wantTimes, less)
		if diff := cmp.Diff(wantTimes, gotTimes); diff != "" {
			t.Errorf("view times (-written +read):\n%s", diff)
		}
	})

	t.Run("errors_last_hour", func(t *testing.T) {
		for _, fn := range []string{"orders-api", "thumbnailer"} {
			got := a.runQuery(t, qs["errors_last_hour"], map[string]string{"'<FUNCTION>'": sqlList(fn)})
			var want []string
			for _, r := range a.rows {
				if r.fn == fn && r.err && !r.rec.Time.Before(now.Add(-time.Hour)) {
					want = append(want, r.rec.Time.UTC().Format(timeShape)+" "+r.rec.Type+" "+r.rec.Text())
				}
			}
			var gotKeys []string
			for _, m := range got {
				msg, _ := m["message"].(string)
				gotKeys = append(gotKeys, timeKey(m["time"])+fmt.Sprint(" ", m["type"], " ", msg))
			}
			if len(want) < 3 {
				t.Fatalf("%s: only %d errors in the last hour; the scenario should have more", fn, len(want))
			}
			if diff := cmp.Diff(want, gotKeys, cmpopts.SortSlices(func(x, y string) bool { return x < y })); diff != "" {
				t.Errorf("%s: errors in the last hour (-labelled +query):\n%s", fn, diff)
			}
		}
	})

	t.Run("request_lines", func(t *testing.T) {
		for _, tc := range []struct{ fn, req string }{{"orders-api", reqA2}, {"thumbnailer", reqT1}, {"orders-api", reqB1}} {
			got := a.runQuery(t, qs["request_lines"], withDays(map[string]string{
				"'<FUNCTION>'": sqlList(tc.fn), "'<REQUEST_ID>'": sqlList(tc.req)}))
			var want, gotKeys []string
			hidden := 0
			for _, r := range a.rows {
				if r.fn == tc.fn && r.req == tc.req {
					if r.hidden {
						hidden++
						continue
					}
					want = append(want, r.rec.Time.UTC().Format(timeShape)+" "+r.rec.Type+" "+r.rec.Text())
				}
			}
			for i, m := range got {
				msg, _ := m["message"].(string)
				gotKeys = append(gotKeys, timeKey(m["time"])+fmt.Sprint(" ", m["type"], " ", msg))
				if i > 0 && gotKeys[i] < gotKeys[i-1][:len(timeShape)] {
					t.Errorf("%s: rows out of time order at %d", tc.req, i)
				}
			}
			if diff := cmp.Diff(want, gotKeys, cmpopts.SortSlices(func(x, y string) bool { return x < y })); diff != "" {
				t.Errorf("%s: lines of the request (-labelled +query):\n%s", tc.req, diff)
			}
			if tc.req == reqT1 && hidden == 0 {
				t.Errorf("scenario should hold a text line without its request id")
			}
		}
	})

	type agg struct {
		n, k          int
		sum, max, sec float64
	}
	reports := map[string]*agg{} // function/dt
	for _, r := range a.rows {
		if r.rec.Type != "platform.report" {
			continue
		}
		g := reports[r.fn+"/"+dtOf(r)]
		if g == nil {
			g = &agg{}
			reports[r.fn+"/"+dtOf(r)] = g
		}
		g.n++
		m := r.rec.Metrics
		if m.InitDurationMs > 0 {
			g.k++
			g.sum += m.InitDurationMs
			g.max = max(g.max, m.InitDurationMs)
		}
		g.sec += m.BilledDurationMs / 1000 * float64(m.MemorySizeMB) / 1024
	}
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }

	t.Run("cold_starts", func(t *testing.T) {
		got := a.runQuery(t, qs["cold_starts"], withDays(map[string]string{"'<FUNCTION>'": both}))
		if len(got) != len(reports) {
			t.Fatalf("cold_starts returned %d groups, want %d: %v", len(got), len(reports), got)
		}
		for _, m := range got {
			k := fmt.Sprint(m["function"], "/", m["dt"])
			g := reports[k]
			if g == nil {
				t.Fatalf("unexpected group %s", k)
			}
			if num(t, m["invocations"]) != float64(g.n) || num(t, m["cold_starts"]) != float64(g.k) {
				t.Errorf("%s: invocations, cold starts = %v, %v; want %d, %d", k, m["invocations"], m["cold_starts"], g.n, g.k)
			}
			if g.k == 0 {
				if m["avg_init_ms"] != nil || m["max_init_ms"] != nil {
					t.Errorf("%s: init times %v/%v without cold starts", k, m["avg_init_ms"], m["max_init_ms"])
				}
				continue
			}
			if !near(num(t, m["avg_init_ms"]), g.sum/float64(g.k)) || !near(num(t, m["max_init_ms"]), g.max) {
				t.Errorf("%s: avg, max init = %v, %v; want %v, %v", k, m["avg_init_ms"], m["max_init_ms"], g.sum/float64(g.k), g.max)
			}
		}
	})

	t.Run("init_phases", func(t *testing.T) {
		type ia struct {
			n        int
			sum, max float64
		}
		want := map[string]*ia{}
		for _, r := range a.rows {
			if r.rec.Type != "platform.initReport" {
				continue
			}
			var f struct{ InitializationType string }
			if err := json.Unmarshal(r.rec.Fields, &f); err != nil {
				t.Fatal(err)
			}
			k := fmt.Sprint(r.fn, "/", dtOf(r), "/", r.rec.Status, "/", f.InitializationType)
			if want[k] == nil {
				want[k] = &ia{}
			}
			want[k].n++
			want[k].sum += r.rec.Metrics.DurationMs
			want[k].max = max(want[k].max, r.rec.Metrics.DurationMs)
		}
		got := a.runQuery(t, qs["init_phases"], withDays(map[string]string{"'<FUNCTION>'": both}))
		if len(got) != len(want) || len(want) < 2 {
			t.Fatalf("init_phases returned %d groups, want %d: %v", len(got), len(want), got)
		}
		for _, m := range got {
			k := fmt.Sprint(m["function"], "/", m["dt"], "/", m["status"], "/", m["initialization_type"])
			w := want[k]
			if w == nil {
				t.Fatalf("unexpected group %s", k)
			}
			if num(t, m["inits"]) != float64(w.n) || !near(num(t, m["avg_init_ms"]), w.sum/float64(w.n)) || !near(num(t, m["max_init_ms"]), w.max) {
				t.Errorf("%s: got %v, want %+v", k, m, *w)
			}
		}
	})

	t.Run("cost_per_function_day", func(t *testing.T) {
		for _, arch := range []struct {
			name  string
			price float64
		}{{"x86_64", 0.0000166667}, {"arm64", 0.0000133334}} {
			q := strings.Replace(qs["cost_per_function_day"], "'x86_64' AS architecture", "'"+arch.name+"' AS architecture", 1)
			if arch.name != "x86_64" && q == qs["cost_per_function_day"] {
				t.Fatal("cost_per_function_day has no 'x86_64' AS architecture parameter")
			}
			got := a.runQuery(t, q, withDays(map[string]string{"'<FUNCTION>'": both}))
			if len(got) != len(reports) {
				t.Fatalf("%s: %d groups, want %d", arch.name, len(got), len(reports))
			}
			for _, m := range got {
				k := fmt.Sprint(m["function"], "/", m["dt"])
				g := reports[k]
				if g == nil {
					t.Fatalf("unexpected group %s", k)
				}
				compute, requests := g.sec*arch.price, float64(g.n)*0.20/1e6
				if num(t, m["requests"]) != float64(g.n) || !near(num(t, m["gb_seconds"]), g.sec) ||
					!near(num(t, m["compute_usd"]), compute) || !near(num(t, m["request_usd"]), requests) ||
					!near(num(t, m["total_usd"]), compute+requests) {
					t.Errorf("%s %s: got %v; want requests %d, GB-s %v, compute $%v, requests $%v",
						arch.name, k, m, g.n, g.sec, compute, requests)
				}
			}
		}
	})

	t.Run("savings_per_function_day", func(t *testing.T) {
		type savings struct{ seen, archived, cw, put, storage, gbs, lambda float64 }
		want := map[string]*savings{}
		for _, r := range a.rows {
			if r.rec.Type != "sluice.stats" {
				continue
			}
			var f struct {
				LinesSeen, BytesSeen, ObjectsWritten, StoredBytes, MemoryMB, AddedMs float64
				Arch                                                                 string
			}
			var m map[string]any
			if err := json.Unmarshal(r.rec.Fields, &m); err != nil {
				t.Fatal(err)
			}
			get := func(k string) float64 { v, _ := m[k].(float64); return v }
			f.LinesSeen, f.BytesSeen, f.ObjectsWritten, f.StoredBytes = get("lines_seen"), get("bytes_seen"), get("objects_written"), get("stored_bytes")
			f.MemoryMB, f.AddedMs = get("memory_mb"), get("added_ms")
			f.Arch, _ = m["arch"].(string)
			price := 0.0000166667
			if f.Arch == "arm64" {
				price = 0.0000133334
			}
			k := r.fn + "/" + dtOf(r)
			s := want[k]
			if s == nil {
				s = &savings{}
				want[k] = s
			}
			const gb = 1 << 30
			gbs := f.AddedMs / 1000 * f.MemoryMB / 1024
			s.seen += f.BytesSeen / gb
			s.archived += f.StoredBytes / gb
			s.cw += (f.BytesSeen + 26*f.LinesSeen) / gb * 0.50
			s.put += f.ObjectsWritten * 0.005 / 1000
			s.storage += f.StoredBytes / gb * 0.023
			s.gbs += gbs
			s.lambda += gbs * price
		}
		got := a.runQuery(t, qs["savings_per_function_day"], withDays(map[string]string{"'<FUNCTION>'": both}))
		if len(got) != len(want) || len(want) < 3 {
			t.Fatalf("%d groups, want %d (at least 3): %v", len(got), len(want), got)
		}
		for _, m := range got {
			k := fmt.Sprint(m["function"], "/", m["dt"])
			w := want[k]
			if w == nil {
				t.Fatalf("unexpected group %s", k)
			}
			net := w.cw - w.put - w.storage - w.lambda
			for _, c := range []struct {
				col  string
				want float64
			}{
				{"gb_seen", w.seen}, {"gb_archived", w.archived}, {"cloudwatch_usd_avoided", w.cw}, {"s3_put_usd", w.put},
				{"s3_storage_usd_month", w.storage}, {"lambda_gb_seconds_added", w.gbs}, {"lambda_usd_added", w.lambda}, {"net_saving_usd", net},
			} {
				if g := num(t, m[c.col]); !near(g, c.want) {
					t.Errorf("%s %s = %v, want %v", k, c.col, g, c.want)
				}
			}
		}
		// The big day: $0.1486 of CloudWatch ingestion for 0.3 GB, of
		// which sluice keeps ~99%.
		if w := want["orders-api/2026-11-30"]; w == nil || w.cw-w.put-w.storage-w.lambda < 0.9*w.cw {
			t.Errorf("orders-api/2026-11-30 savings %+v: want a net saving above 90%% of the CloudWatch cost", w)
		}
	})

	t.Run("lost_telemetry", func(t *testing.T) {
		type lost struct{ records, bytes, malformed float64 }
		want := map[string]lost{}
		for _, r := range a.rows {
			k := r.fn + "/" + dtOf(r)
			l := want[k]
			switch r.rec.Type {
			case "platform.logsDropped":
				var f struct{ DroppedRecords, DroppedBytes float64 }
				if err := json.Unmarshal(r.rec.Fields, &f); err != nil {
					t.Fatal(err)
				}
				l.records += f.DroppedRecords
				l.bytes += f.DroppedBytes
			case telemetry.TypeMalformed:
				l.malformed++
			default:
				continue
			}
			want[k] = l
		}
		got := a.runQuery(t, qs["lost_telemetry"], withDays(map[string]string{"'<FUNCTION>'": both}))
		gotm := map[string]lost{}
		for _, m := range got {
			nz := func(v any) float64 {
				if v == nil {
					return 0
				}
				return num(t, v)
			}
			gotm[fmt.Sprint(m["function"], "/", m["dt"])] = lost{nz(m["dropped_records"]), nz(m["dropped_bytes"]), nz(m["malformed_bodies"])}
		}
		if len(want) == 0 {
			t.Fatal("scenario has no lost telemetry")
		}
		if diff := cmp.Diff(want, gotm, cmp.AllowUnexported(lost{})); diff != "" {
			t.Errorf("lost telemetry (-written +query):\n%s", diff)
		}
	})
}

// TestTimeLooksLikeWriter pins the one time shape the DDL, the view and the
// string comparisons in queries.sql rely on.
func TestTimeLooksLikeWriter(t *testing.T) {
	shape := regexp.MustCompile(`^"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$`)
	for _, tm := range []time.Time{now, now.Add(123456789 * time.Nanosecond), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))} {
		line := buffer.AppendRow(nil, buffer.Meta{}, &buffer.Record{Time: tm, Type: "function"})
		head, _, _ := strings.Cut(string(line[1:]), ",")
		if !shape.MatchString(head) {
			t.Errorf("AppendRow writes %s for %v; the table expects RFC 3339 UTC with milliseconds", head, tm)
		}
	}
}

// TestDDLsAgree keeps the two tables interchangeable: the same columns in
// the same order (types differ only where the file format says so), the
// same partitions, projection and location template.
func TestDDLsAgree(t *testing.T) {
	nd, pq := readDDL(t, "logs_ndjson.sql"), readDDL(t, "logs_parquet.sql")
	names := func(cs []column) (out []string) {
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if diff := cmp.Diff(names(nd.Columns), names(pq.Columns)); diff != "" {
		t.Errorf("data columns differ (-ndjson +parquet):\n%s", diff)
	}
	for i, c := range nd.Columns {
		if p := pq.Columns[min(i, len(pq.Columns)-1)]; c.Type != p.Type && c.Name != "time" {
			t.Errorf("column %s: %s in NDJSON, %s in Parquet", c.Name, c.Type, p.Type)
		}
	}
	if diff := cmp.Diff(nd.Partitions, pq.Partitions); diff != "" {
		t.Errorf("partitions differ (-ndjson +parquet):\n%s", diff)
	}
	projection := func(p map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range p {
			if strings.HasPrefix(k, "projection.") || k == "storage.location.template" {
				out[k] = v
			}
		}
		return out
	}
	if diff := cmp.Diff(projection(nd.Props), projection(pq.Props)); diff != "" {
		t.Errorf("projection differs (-ndjson +parquet):\n%s", diff)
	}
	if nd.Location != pq.Location {
		t.Errorf("LOCATION %q vs %q: the placeholders should read alike", nd.Location, pq.Location)
	}
	if pq.Props["parquet.compression"] != "ZSTD" {
		t.Errorf("parquet.compression = %q, want ZSTD: what compaction writes", pq.Props["parquet.compression"])
	}
}

// TestCompaction runs compaction.sql for every function and day of the
// NDJSON archive and reads the result through logs_parquet.sql: every row,
// every column, and every query of queries.sql. DuckDB cannot INSERT INTO a
// Hive-partitioned table, so the INSERT becomes COPY ... PARTITION_BY, which
// writes the Hive-style function=/dt=/hour= paths Athena's INSERT INTO
// writes under the table's LOCATION.
func TestCompaction(t *testing.T) {
	src, err := os.ReadFile("compaction.sql")
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := parseQueries(string(src))
	if err != nil || len(stmts) != 1 || stmts[0].Name != "compact_day" {
		t.Fatalf("compaction.sql: want one statement named compact_day; got %v, %v", stmts, err)
	}
	pqTbl := readDDL(t, "logs_parquet.sql")
	head, sel, _ := strings.Cut(stmts[0].SQL, "\n")
	if want := "INSERT INTO " + pqTbl.Name; strings.TrimSpace(head) != want {
		t.Fatalf("compact_day starts %q, want %q", head, want)
	}

	a := openArchive(t, buffer.FormatNDJSONZstd)
	out := &archive{db: a.db, format: buffer.FormatParquet, tbl: pqTbl, rows: a.rows, root: t.TempDir(), compacted: true}
	dir := filepath.Join(out.root, prefix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	days := map[[2]string]bool{}
	for _, r := range a.rows {
		days[[2]string{r.fn, dtOf(r)}] = true
	}
	for day := range days {
		q := strings.NewReplacer("'<FUNCTION>'", sqlList(day[0]), "'<DT>'", sqlList(day[1])).Replace(sel)
		for _, rw := range rewrites {
			q = strings.ReplaceAll(q, rw.athena, rw.duckdb)
		}
		if strings.Contains(q, "'<") {
			t.Fatalf("placeholder left in compact_day:\n%s", q)
		}
		mustExec(t, a.db, fmt.Sprintf(`COPY (%s) TO '%s'
			(FORMAT parquet, COMPRESSION zstd, PARTITION_BY ("function", dt, hour), APPEND true)`, q, filepath.ToSlash(dir)))
	}
	out.createTable(t, pqTbl, out.glob())
	t.Run("rows", func(t *testing.T) { testArchiveReads(t, out) })
	t.Run("queries", func(t *testing.T) { testQueries(t, out, readQueries(t)) })
}

// TestSavingsOverRunArchive runs the savings query over an archive `make
// run` left behind (`go run ./extension/lambdatest/cmd/demo -keep ...`), to
// compare with the savings `make run` printed:
//
//	mkdir -p /tmp/r/logs && ln -s /tmp/sluice-run-.../s3/data/sluice-test/logs /tmp/r/logs/sluice
//	SLUICE_RUN_ARCHIVE=/tmp/r go test -run TestSavingsOverRunArchive -v ./layer/athena
func TestSavingsOverRunArchive(t *testing.T) {
	root := os.Getenv("SLUICE_RUN_ARCHIVE")
	if root == "" {
		t.Skip("set SLUICE_RUN_ARCHIVE to a directory whose logs/sluice is a make run archive's logs/")
	}
	f := buffer.FormatNDJSONZstd
	a := &archive{format: f, tbl: readDDL(t, ddlFiles[f]), root: root}
	a.db = openDuckDB(t)
	a.createTable(t, a.tbl, a.glob())
	qs := readQueries(t)
	a.runQuery(t, qs[viewQuery[f]], nil)
	day := time.Now().UTC().Format("2006-01-02")
	rows := a.runQuery(t, qs["savings_per_function_day"], map[string]string{
		"'<FUNCTION>'": "'sluice-demo'", "'<DT_FROM>'": "'" + day + "'", "'<DT_TO>'": "'" + day + "'"})
	if len(rows) == 0 {
		t.Fatal("no savings rows: no sluice.stats rows in the archive?")
	}
	for _, r := range rows {
		t.Logf("%v", r)
	}
}
