package buffer

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseLevelName(t *testing.T) {
	tests := []struct {
		in   string
		want Level
		ok   bool
	}{
		{"TRACE", LevelTrace, true},
		{"trace", LevelTrace, true},
		{"Verbose", LevelTrace, true},
		{"trce", LevelTrace, true},
		{"finest", LevelTrace, true},
		{"DEBUG", LevelDebug, true},
		{"dbug", LevelDebug, true},
		{"INFO", LevelInfo, true},
		{" info ", LevelInfo, true},
		{"Information", LevelInfo, true},
		{"notice", LevelInfo, true},
		{"WARN", LevelWarn, true},
		{"Warning", LevelWarn, true},
		{"ERROR", LevelError, true},
		{"err", LevelError, true},
		{"fail", LevelError, true},
		{"SEVERE", LevelError, true},
		{"dpanic", LevelError, true},
		{"FATAL", LevelFatal, true},
		{"CRITICAL", LevelFatal, true},
		{"crit", LevelFatal, true},
		{"panic", LevelFatal, true},
		{"emerg", LevelFatal, true},
		{"off", LevelOff, true},
		{"10", LevelTrace, true},
		{"20", LevelDebug, true},
		{"30", LevelInfo, true},
		{"40", LevelWarn, true},
		{"50", LevelError, true},
		{"60", LevelFatal, true},
		{"ERROR+2", LevelError, true},
		{"INFO-4", LevelInfo, true},
		{"70", 0, false},
		{"0", 0, false},
		{"3", 0, false},
		{"400", 0, false},
		{"", 0, false},
		{"ERROR+", 0, false},
		{"+2", 0, false},
		{"ERROR+x", 0, false},
		{"errors", 0, false},
		{"information-technology", 0, false},
		{"ÉRROR", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseLevelName(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseLevelName(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLevelString(t *testing.T) {
	for l := LevelTrace; l <= LevelOff; l++ {
		back, ok := ParseLevelName(l.String())
		if !ok || back != l {
			t.Errorf("ParseLevelName(%v.String()) = %v, %v", l, back, ok)
		}
		if !l.Valid() {
			t.Errorf("%v.Valid() = false", l)
		}
	}
	if s := Level(42).String(); s != "Level(42)" {
		t.Errorf("Level(42).String() = %q", s)
	}
	if Level(-1).Valid() || Level(7).Valid() {
		t.Error("out-of-range levels are valid")
	}
}

// detectCases are lines as runtimes and loggers write them. The ones that
// must stay INFO guard against reading a level into ordinary text.
var detectCases = []struct {
	name string
	r    Record
	want Level
}{
	{"decoder level", Record{Level: "ERROR", Message: "x"}, LevelError},
	{"decoder level lower", Record{Level: "warn"}, LevelWarn},
	{"decoder level WARNING", Record{Level: "WARNING"}, LevelWarn},
	{"decoder level wins over text", Record{Level: "DEBUG", Message: "[ERROR] x"}, LevelDebug},
	{"decoder level unknown falls to text", Record{Level: "NOTE", Message: "[ERROR] x"}, LevelError},
	{"decoder level off is no level", Record{Level: "off"}, LevelInfo},
	{"fields pino number", Record{Message: "m", Fields: json.RawMessage(`{"pid":1,"level":50,"hostname":"h"}`)}, LevelError},
	{"fields severity", Record{Fields: json.RawMessage(`{"severity":"WARNING"}`)}, LevelWarn},
	{"fields lvl", Record{Fields: json.RawMessage(`{"a":{"level":"debug"},"lvl":"crit"}`)}, LevelFatal},
	{"fields log.level ECS", Record{Fields: json.RawMessage(`{"log.level":"error","ecs.version":"1.6.0"}`)}, LevelError},
	{"fields levelname python", Record{Fields: json.RawMessage(`{"levelname": "CRITICAL"}`)}, LevelFatal},
	{"fields Monolog level_name", Record{Fields: json.RawMessage(`{"level":400,"level_name":"ERROR"}`)}, LevelError},
	{"fields serilog @l", Record{Fields: json.RawMessage(`{"@l":"Warning","@mt":"x"}`)}, LevelWarn},
	{"fields nested level ignored", Record{Fields: json.RawMessage(`{"ctx":{"level":"error"},"list":["level","error"]}`)}, LevelInfo},
	{"fields level string in value", Record{Fields: json.RawMessage(`{"msg":"level: error"}`)}, LevelInfo},
	{"fields then text", Record{Message: "[WARN] x", Fields: json.RawMessage(`{"a":1}`)}, LevelWarn},
	{"fields invalid", Record{Message: "x", Fields: json.RawMessage(`{"level":`)}, LevelInfo},
	{"lambda node tab", Record{Message: "2024-01-01T00:00:00.000Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tERROR\tInvoke Error"}, LevelError},
	{"lambda node init undefined", Record{Message: "2024-01-01T00:00:00.000Z\tundefined\tWARN\tx"}, LevelWarn},
	{"lambda dotnet fail", Record{Message: "2024-01-01T00:00:00.000Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tfail\tboom"}, LevelError},
	{"lambda dotnet info", Record{Message: "2024-01-01T00:00:00.000Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tinfo\tok"}, LevelInfo},
	{"lambda node trace", Record{Message: "2024-01-01T00:00:00.000Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tTRACE\tx\ty"}, LevelTrace},
	{"zap console", Record{Message: "2024-01-01T00:00:00.000Z\terror\tmain.go:12\tboom"}, LevelError},
	{"tab message is not a level", Record{Message: "2024-01-01T00:00:00.000Z\tid\terror"}, LevelInfo},
	{"python runtime tab", Record{Message: "[ERROR]\t2024-03-01T10:00:00.124Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tKeyError: 'id'\n"}, LevelError},
	{"python runtime space", Record{Message: "[WARNING] 2024-03-01T10:00:00.124Z x"}, LevelWarn},
	{"bracket lower", Record{Message: "[debug] cache miss"}, LevelDebug},
	{"bracket colon", Record{Message: "[error: boom"}, LevelError},
	{"angle", Record{Message: "<warn> x"}, LevelWarn},
	{"bracket thread then level", Record{Message: "[main] ERROR Foo - x"}, LevelError},
	{"python logging default", Record{Message: "ERROR:root:something failed"}, LevelError},
	{"python logging warning", Record{Message: "WARNING:botocore.credentials:Refreshing"}, LevelWarn},
	{"word colon", Record{Message: "error: connection refused"}, LevelError},
	{"uvicorn", Record{Message: "INFO:     127.0.0.1:5000 - \"GET / HTTP/1.1\" 200"}, LevelInfo},
	{"log4j level first", Record{Message: "2024-01-01 00:00:00,000 ERROR [main] com.example.Foo - failed"}, LevelError},
	{"logback thread first", Record{Message: "2024-01-01 00:00:00.000 [main] WARN  c.e.Foo - slow"}, LevelWarn},
	{"lambda java log4j2", Record{Message: "2024-01-01 00:00:00 6d68ca91-49c9-448d-89b8-7ca3e6dc66aa ERROR Handler - x"}, LevelError},
	{"lambda java no request id", Record{Message: "2024-01-01 00:00:00  FATAL Handler - x"}, LevelFatal},
	{"go log", Record{Message: "2024/01/01 00:00:00 ERROR could not connect"}, LevelError},
	{"go log file", Record{Message: "2024/01/01 00:00:00 main.go:12: WARN disk"}, LevelWarn},
	{"bare upper word", Record{Message: "ERROR something"}, LevelError},
	{"bare upper word comma", Record{Message: "WARN, retrying"}, LevelWarn},
	{"pino pretty", Record{Message: "[12:00:00.000] ERROR (123): boom"}, LevelError},
	{"glog", Record{Message: "E0101 12:00:00.000000 1 main.go:12] boom"}, LevelError},
	{"glog warn", Record{Message: "W0101 12:00:00.000000 1 main.go:12] hm"}, LevelWarn},
	{"slog text", Record{Message: "time=2024-01-01T00:00:00.000Z level=ERROR msg=\"boom\" err=x"}, LevelError},
	{"slog text offset", Record{Message: "time=2024-01-01T00:00:00.000Z level=WARN+2 msg=x"}, LevelWarn},
	{"logfmt quoted", Record{Message: "ts=1 level=\"debug\" msg=x"}, LevelDebug},
	{"logfmt lvl", Record{Message: "lvl=eror msg=x lvl=crit"}, LevelFatal},
	{"logfmt key suffix is not a key", Record{Message: "a=1 nolevel=error"}, LevelInfo},
	{"logfmt severity", Record{Message: "msg=x severity=warning"}, LevelWarn},
	{"json in text", Record{Message: `{"time":"2024","level":"error","msg":"x"}`}, LevelError},
	{"json in text pino", Record{Message: `  {"level":50,"time":1704067200000,"pid":8,"msg":"x"}`}, LevelError},
	{"json in text late key", Record{Message: `{"msg":"` + strings.Repeat("a", 1000) + `","severity":"WARNING"}`}, LevelWarn},
	{"json in text no level", Record{Message: `{"msg":"ERROR"}`}, LevelInfo},
	{"json in text bad", Record{Message: `{"level"`}, LevelInfo},
	{"plain text", Record{Message: "processing order 42"}, LevelInfo},
	{"title case word", Record{Message: "Error handling is enabled"}, LevelInfo},
	{"debug mode", Record{Message: "Debug mode on"}, LevelInfo},
	{"upper non level", Record{Message: "START RequestId: x"}, LevelInfo},
	{"level late in text", Record{Message: "order 42 failed with ERROR"}, LevelInfo},
	{"empty", Record{}, LevelInfo},
	{"spaces", Record{Message: "   \t "}, LevelInfo},
	{"level past prefix", Record{Message: strings.Repeat("1 ", 200) + "ERROR x"}, LevelInfo},
	{"traceback", Record{Message: "Traceback (most recent call last):"}, LevelInfo},
}

func TestDetectLevel(t *testing.T) {
	for _, tt := range detectCases {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if got := DetectLevel(&r); got != tt.want {
				t.Errorf("DetectLevel(%q, level %q, fields %s) = %v, want %v", r.Message, r.Level, r.Fields, got, tt.want)
			}
		})
	}
}

func TestDetectLevelDoesNotAllocate(t *testing.T) {
	for _, tt := range detectCases {
		r := tt.r
		if n := testing.AllocsPerRun(20, func() { DetectLevel(&r) }); n != 0 {
			t.Errorf("DetectLevel(%q) allocates %v times", r.Message, n)
		}
	}
}

func FuzzDetectLevel(f *testing.F) {
	for _, tt := range detectCases {
		f.Add(tt.r.Level, tt.r.Message, []byte(tt.r.Fields))
	}
	f.Fuzz(func(t *testing.T, level, msg string, fields []byte) {
		r := Record{Level: level, Message: msg, Fields: fields}
		l := DetectLevel(&r)
		if l < LevelTrace || l > LevelFatal {
			t.Fatalf("DetectLevel(%q, %q, %q) = %v, not a line level", level, msg, fields, l)
		}
		if r.Level != level || r.Message != msg {
			t.Fatal("DetectLevel modified the record")
		}
	})
}

func BenchmarkDetectLevel(b *testing.B) {
	recs := benchCorpus(2000)
	total := 0
	for i := range recs {
		total += len(recs[i].Message) + len(recs[i].Fields)
	}
	b.SetBytes(int64(total / len(recs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		DetectLevel(&recs[i])
		if i++; i == len(recs) {
			i = 0
		}
	}
}
