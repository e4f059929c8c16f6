package buffer

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var stageT0 = time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)

// Builders of the records a Stager sees, each one millisecond after the
// previous within a test.
type stream struct {
	recs []Record
	at   time.Time
}

func (s *stream) add(r Record) *stream {
	if s.at.IsZero() {
		s.at = stageT0
	}
	s.at = s.at.Add(time.Millisecond)
	r.Time = s.at
	s.recs = append(s.recs, r)
	return s
}

func (s *stream) line(id, msg string) *stream {
	return s.add(Record{Type: "function", RequestID: id, Message: msg})
}
func (s *stream) ext(msg string) *stream { return s.add(Record{Type: "extension", Message: msg}) }
func (s *stream) start(id string) *stream {
	return s.add(Record{Type: "platform.start", RequestID: id})
}
func (s *stream) done(id, status string) *stream {
	return s.add(Record{Type: "platform.runtimeDone", RequestID: id, Status: status})
}
func (s *stream) report(id, status string) *stream {
	return s.add(Record{Type: "platform.report", RequestID: id, Status: status})
}

// feed adds recs to st and returns what it emitted, Flush included when
// flush is set.
func feed(st *Stager, recs []Record, flush bool) []Record {
	var out []Record
	emit := func(r *Record) { out = append(out, *r) }
	for i := range recs {
		r := recs[i]
		st.Add(&r, emit)
	}
	if flush {
		st.Flush(emit)
	}
	return out
}

// show renders records as "type id level message" for diffs.
func show(rs []Record) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		s := strings.TrimPrefix(r.Type, "platform.") + " " + r.RequestID
		if r.Level != "" {
			s += " " + r.Level
		}
		if r.Message != "" {
			s += " " + r.Message
		}
		if r.Status != "" {
			s += " " + r.Status
		}
		if r.Type == TypeTruncated {
			s += " " + string(r.Fields)
		}
		out = append(out, s)
	}
	return out
}

func policy(rate float64, edit func(*Policy)) Policy {
	p := DefaultPolicy()
	p.SampleRate = rate
	if edit != nil {
		edit(&p)
	}
	return p
}

// Request ids with a known fate at rate 0.5, so that tests can show the
// hash deciding both ways (TestSampleKeepPinned pins them).
const (
	idKept    = "req-1"
	idDropped = "req-2"
)

func TestSampleKeepPinned(t *testing.T) {
	// The hash is part of the archive's contract: a rerun over the same
	// telemetry, by any version, keeps the same invocations.
	tests := []struct {
		id   string
		rate float64
		want bool
	}{
		{idKept, 0.5, true},
		{idDropped, 0.5, false},
		{"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", 0.1, true},
		{"anything", 1, true},
		{"anything", 1.5, true},
		{"anything", 0, false},
		{"anything", -1, false},
		{"anything", math.NaN(), false},
		{"", 1, true},
	}
	for _, tt := range tests {
		if got := SampleKeep(tt.id, tt.rate); got != tt.want {
			t.Errorf("SampleKeep(%q, %v) = %v, want %v", tt.id, tt.rate, got, tt.want)
		}
	}
	if got := unitFloat(0x1234); got != 0.6488675067070484 {
		t.Errorf("unitFloat(0x1234) = %v: the hash changed, and with it every past sampling decision", got)
	}
}

func TestSampleKeepRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	for _, rate := range []float64{0.01, 0.1, 0.5, 0.9} {
		kept := 0
		for range n {
			id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
				rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
			if SampleKeep(id, rate) {
				kept++
				if !SampleKeep(id, min(rate*1.5, 1)) {
					t.Fatalf("SampleKeep(%q) kept at %v but not at a higher rate", id, rate)
				}
			}
		}
		// 5 standard deviations.
		if got, tol := float64(kept)/n, 5*math.Sqrt(rate*(1-rate)/n); math.Abs(got-rate) > tol {
			t.Errorf("SampleKeep at rate %v kept %.4f", rate, got)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Errorf("DefaultPolicy().Validate() = %v", err)
	}
	bad := Policy{SampleRate: math.NaN(), KeepLevel: 9, MinLevel: -1, MaxLinesPerInvoke: -1}
	err := bad.Validate()
	for _, want := range []string{"SampleRate NaN", "KeepLevel Level(9)", "MinLevel Level(-1)", "MaxLinesPerInvoke -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := (Policy{SampleRate: 1.01}).Validate(); err == nil {
		t.Error("Validate accepted SampleRate 1.01")
	}
}

func TestStagerRules(t *testing.T) {
	tests := []struct {
		name  string
		p     Policy
		in    *stream
		flush bool
		want  []string
		stats func(*Stats) // fields of interest; the rest is not compared
	}{
		{
			name: "success sampled out, platform passes",
			p:    policy(0, nil),
			in:   new(stream).start("a").line("a", "one").line("a", "two").done("a", "success").report("a", "success"),
			want: []string{"start a", "runtimeDone a success", "report a success"},
		},
		{
			name: "error line keeps the whole invocation, lines before runtimeDone",
			p:    policy(0, nil),
			in:   new(stream).start("a").line("a", "one").line("a", "[ERROR] two").line("a", "three").done("a", "success"),
			want: []string{"start a", "function a INFO one", "function a ERROR [ERROR] two", "function a INFO three", "runtimeDone a success"},
		},
		{
			name: "keep level WARN",
			p:    policy(0, func(p *Policy) { p.KeepLevel = LevelWarn }),
			in:   new(stream).line("a", "one").line("a", "WARNING: two").done("a", "success").line("b", "x").done("b", "success"),
			want: []string{"function a INFO one", "function a WARN WARNING: two", "runtimeDone a success", "runtimeDone b success"},
		},
		{
			name: "keep level off",
			p:    policy(0, func(p *Policy) { p.KeepLevel = LevelOff }),
			in:   new(stream).line("a", "FATAL x").done("a", "success"),
			want: []string{"runtimeDone a success"},
		},
		{
			name: "failed statuses keep",
			p:    policy(0, nil),
			in: new(stream).line("a", "1").done("a", "failure").line("b", "2").done("b", "error").
				line("c", "3").done("c", "timeout").line("d", "4").done("d", "success"),
			want: []string{"function a INFO 1", "runtimeDone a failure", "function b INFO 2", "runtimeDone b error",
				"function c INFO 3", "runtimeDone c timeout", "runtimeDone d success"},
		},
		{
			name: "report decides without runtimeDone",
			p:    policy(0, nil),
			in:   new(stream).line("a", "1").report("a", "timeout").line("b", "2").report("b", "success"),
			want: []string{"function a INFO 1", "report a timeout", "report b success"},
		},
		{
			name: "report after runtimeDone changes nothing",
			p:    policy(0, nil),
			in:   new(stream).line("a", "1").done("a", "success").report("a", "failure"),
			want: []string{"runtimeDone a success", "report a failure"},
		},
		{
			name: "hash decides ordinary invocations",
			p:    policy(0.5, nil),
			in:   new(stream).line(idKept, "1").line(idDropped, "2").done(idKept, "success").done(idDropped, "success"),
			want: []string{"function req-1 INFO 1", "runtimeDone req-1 success", "runtimeDone req-2 success"},
		},
		{
			name: "min level drops before the keep level and the cap",
			p: policy(0, func(p *Policy) {
				p.MinLevel = LevelWarn
				p.MaxLinesPerInvoke = 1
			}),
			in:   new(stream).line("a", "DEBUG x").line("a", "info").line("a", "ERROR y").done("a", "success"),
			want: []string{"function a ERROR ERROR y", "runtimeDone a success"},
			stats: func(s *Stats) {
				s.Seen, s.BelowLevel = Count{3, 18}, Count{2, 11}
			},
		},
		{
			name: "cap with a summary",
			p:    policy(1, func(p *Policy) { p.MaxLinesPerInvoke = 2 }),
			in:   new(stream).line("a", "1").line("a", "2").line("a", "3").line("a", "4").line("a", "5").done("a", "success"),
			want: []string{"function a INFO 1", "function a INFO 2",
				"sluice.truncated a WARN 3 lines over SLUICE_MAX_LINES_PER_INVOKE dropped {\"dropped_lines\":3}", "runtimeDone a success"},
			stats: func(s *Stats) { s.OverCap, s.Truncated = Count{3, 3}, 1 },
		},
		{
			name: "cap of a sampled out invocation: no summary",
			p:    policy(0, func(p *Policy) { p.MaxLinesPerInvoke = 1 }),
			in:   new(stream).line("a", "1").line("a", "2").done("a", "success"),
			want: []string{"runtimeDone a success"},
			stats: func(s *Stats) {
				s.OverCap, s.SampledOut = Count{1, 1}, Count{1, 1}
			},
		},
		{
			name: "error over the cap still keeps the invocation",
			p:    policy(0, func(p *Policy) { p.MaxLinesPerInvoke = 1 }),
			in:   new(stream).line("a", "1").line("a", "ERROR 2").done("a", "success"),
			want: []string{"function a INFO 1", "sluice.truncated a WARN 1 lines over SLUICE_MAX_LINES_PER_INVOKE dropped {\"dropped_lines\":1}", "runtimeDone a success"},
		},
		{
			name: "decided early as drop, then kept from an error on",
			p:    policy(0, func(p *Policy) { p.MaxStagedLines = 2 }),
			in:   new(stream).line("a", "1").line("a", "2").line("a", "3").line("a", "ERROR 4").line("a", "5").done("a", "success"),
			want: []string{"function a ERROR ERROR 4", "function a INFO 5", "runtimeDone a success"},
			stats: func(s *Stats) {
				s.DecidedEarly, s.PartialKept, s.SampledOut = 1, 1, Count{3, 3}
			},
		},
		{
			name:  "decided early as keep when an error came first",
			p:     policy(0, func(p *Policy) { p.MaxStagedLines = 2 }),
			in:    new(stream).line("a", "ERROR 1").line("a", "2").line("a", "3").done("a", "success"),
			want:  []string{"function a ERROR ERROR 1", "function a INFO 2", "function a INFO 3", "runtimeDone a success"},
			stats: func(s *Stats) { s.DecidedEarly = 1 },
		},
		{
			name:  "decided early as drop, failure switches to keep",
			p:     policy(0, func(p *Policy) { p.MaxStagedLines = 1 }),
			in:    new(stream).line("a", "1").done("a", "timeout").line("a", "late"),
			want:  []string{"runtimeDone a timeout", "function a INFO late"},
			stats: func(s *Stats) { s.DecidedEarly, s.PartialKept = 1, 1 },
		},
		{
			name: "staged bytes decide the oldest early",
			p: policy(0, func(p *Policy) {
				p.MaxStagedBytes = 2*recordSize + 2 // two one-byte lines
			}),
			in: new(stream).line("a", "1").line("b", "2").line("b", "3").line("b", "ERROR").done("b", "success").
				line("a", "4").done("a", "failure"),
			want: []string{"function b INFO 2", "function b INFO 3", "function b ERROR ERROR", "runtimeDone b success",
				"runtimeDone a failure"},
			stats: func(s *Stats) {
				// a is decided (drop) when b's second line comes, b when
				// its error makes three lines; a's failure keeps only what
				// comes after it.
				s.DecidedEarly, s.PartialKept = 2, 1
			},
		},
		{
			name: "text format lines belong to the running invocation",
			p:    policy(0, nil),
			in: new(stream).line("", "init line").start("a").line("", "1").line("", "[ERROR] 2").done("a", "success").
				line("", "after").start("b").line("", "3").done("b", "success"),
			want: []string{"start a", "function a INFO 1", "function a ERROR [ERROR] 2", "runtimeDone a success",
				"start b", "runtimeDone b success"},
		},
		{
			name: "lines outside invocations by level",
			p:    policy(0, nil),
			in:   new(stream).line("", "init INFO").line("", "ERROR init failed").ext("[INFO] ext").ext("[ERROR] ext"),
			want: []string{"function  ERROR ERROR init failed", "extension  ERROR [ERROR] ext"},
		},
		{
			name: "lines outside invocations at rate 1",
			p:    policy(1, func(p *Policy) { p.MinLevel = LevelInfo }),
			in:   new(stream).line("", "init").line("", "DEBUG x").ext("ext"),
			want: []string{"function  INFO init", "extension  INFO ext"},
		},
		{
			name: "late lines follow the decision",
			p:    policy(0, nil),
			in: new(stream).line("a", "1").done("a", "failure").line("a", "late a").
				line("b", "2").done("b", "success").line("b", "late b"),
			want: []string{"function a INFO 1", "runtimeDone a failure", "function a INFO late a", "runtimeDone b success"},
		},
		{
			name:  "runtimeDone before any line",
			p:     policy(0, nil),
			in:    new(stream).done("a", "error").line("a", "late").done("b", "success").line("b", "late").line("b", "ERROR x").line("b", "y"),
			want:  []string{"runtimeDone a error", "function a INFO late", "runtimeDone b success", "function b ERROR ERROR x", "function b INFO y"},
			stats: func(s *Stats) { s.PartialKept = 1 },
		},
		{
			name:  "flush keeps error invocations and samples the rest",
			p:     policy(0.5, nil),
			in:    new(stream).line("x", "ERROR x").line(idKept, "k").line(idDropped, "d"),
			flush: true,
			want:  []string{"function x ERROR ERROR x", "function req-1 INFO k"},
		},
		{
			name: "rate 1 streams at once",
			p:    policy(1, nil),
			in:   new(stream).line("a", "1"),
			want: []string{"function a INFO 1"},
		},
		{
			name: "levels are written canonically",
			p:    policy(1, nil),
			in: new(stream).add(Record{Type: "function", RequestID: "a", Level: "warning", Message: "w"}).
				add(Record{Type: "function", RequestID: "a", Fields: json.RawMessage(`{"level":60}`)}).line("a", "x"),
			want: []string{"function a WARN w", "function a FATAL", "function a INFO x"},
		},
		{
			name: "other records pass through",
			p:    policy(0, nil),
			in: new(stream).add(Record{Type: "sluice.malformed", Message: "[{"}).add(Record{Type: "platform.logsDropped", Message: "r"}).
				add(Record{Type: "platform.initStart"}),
			want: []string{"sluice.malformed  [{", "logsDropped  r", "initStart "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewStager(tt.p, nil)
			got := feed(st, tt.in.recs, tt.flush)
			if diff := cmp.Diff(tt.want, show(got)); diff != "" {
				t.Errorf("emitted (-want +got):\n%s", diff)
			}
			stats := st.Stats()
			checkAccounting(t, stats, got, tt.flush)
			if tt.stats != nil {
				want := stats
				tt.stats(&want)
				if diff := cmp.Diff(want, stats); diff != "" {
					t.Errorf("Stats() (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// checkAccounting checks the invariant of Stats against what was emitted.
func checkAccounting(t *testing.T, s Stats, emitted []Record, flushed bool) {
	t.Helper()
	var lines int64
	for _, r := range emitted {
		if r.Type == "function" || r.Type == "extension" {
			lines++
		}
	}
	if lines != s.Kept.Lines {
		t.Errorf("emitted %d lines, Stats().Kept.Lines = %d", lines, s.Kept.Lines)
	}
	staged := int64(s.StagedLines)
	if flushed && staged != 0 {
		t.Errorf("after Flush, %d lines still staged", staged)
	}
	d := s.Dropped()
	if s.Seen.Lines != s.Kept.Lines+d.Lines+staged {
		t.Errorf("seen %d lines != kept %d + dropped %d + staged %d", s.Seen.Lines, s.Kept.Lines, d.Lines, staged)
	}
	if flushed && s.Seen.Bytes != s.Kept.Bytes+d.Bytes {
		t.Errorf("seen %d bytes != kept %d + dropped %d", s.Seen.Bytes, s.Kept.Bytes, d.Bytes)
	}
}

func TestStagerRedacts(t *testing.T) {
	red := mustRedactor(t, []string{"email"})
	st := NewStager(policy(1, nil), red)
	in := new(stream).start("a").line("a", "to a@b.io").
		add(Record{Type: "function", RequestID: "a", Message: "m", Fields: json.RawMessage(`{"to":"c@d.io"}`)}).
		add(Record{Type: "sluice.malformed", Message: `[{"record":"e@f.io`}).
		add(Record{Type: "platform.report", RequestID: "a", Message: "g@h.io"})
	got := feed(st, in.recs, true)
	want := []string{"start a", "function a INFO to [REDACTED:email]", "function a INFO m",
		"sluice.malformed  [{\"record\":\"[REDACTED:email]", "report a g@h.io"}
	if diff := cmp.Diff(want, show(got)); diff != "" {
		t.Errorf("emitted (-want +got):\n%s", diff)
	}
	if f := string(got[2].Fields); f != `{"to":"[REDACTED:email]"}` {
		t.Errorf("Fields = %s", f)
	}
	if diff := cmp.Diff([]RuleCount{{"email", 3}}, st.Stats().Redactions); diff != "" {
		t.Errorf("Redactions (-want +got):\n%s", diff)
	}
}

func TestStagerCopiesHeldLines(t *testing.T) {
	st := NewStager(policy(0, nil), nil)
	var out []Record
	emit := func(r *Record) { out = append(out, *r) }
	r := Record{Type: "function", RequestID: "a", Message: "ERROR original"}
	st.Add(&r, emit)
	r.Message = "reused"
	st.Add(&Record{Type: "platform.runtimeDone", RequestID: "a", Status: "success"}, emit)
	if len(out) != 2 || out[0].Message != "ERROR original" {
		t.Errorf("emitted %v, want the held line as it was added", show(out))
	}
}

func TestStagerManyOpenInvocations(t *testing.T) {
	// Invocations whose outcome never comes are finished, oldest first,
	// once too many are awaited.
	st := NewStager(policy(0, nil), nil)
	in := new(stream)
	for i := range maxActive + 10 {
		in.line(fmt.Sprintf("r%d", i), "ERROR x")
	}
	got := feed(st, in.recs, false)
	if len(got) != 10 || got[0].RequestID != "r0" || got[9].RequestID != "r9" {
		t.Errorf("emitted %v, want r0..r9", show(got))
	}
	if s := st.Stats(); s.DecidedEarly != 10 || s.StagedLines != maxActive {
		t.Errorf("DecidedEarly = %d, StagedLines = %d", s.DecidedEarly, s.StagedLines)
	}
	got = feed(st, nil, true)
	if len(got) != maxActive {
		t.Errorf("Flush emitted %d lines, want %d", len(got), maxActive)
	}
}

// workload describes a synthetic invocation.
type workload struct {
	id     string
	status string
	errors bool // logs an ERROR line
	lines  int
}

func syntheticWorkload(seed uint64, n int) []workload {
	rng := rand.New(rand.NewPCG(seed, 99))
	ws := make([]workload, n)
	for i := range ws {
		w := &ws[i]
		w.id = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
			rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
		w.status = "success"
		switch p := rng.IntN(1000); {
		case p < 50:
			w.status = "failure"
		case p < 60:
			w.status = "timeout"
		case p < 90:
			w.errors = true
		}
		w.lines = 1 + rng.IntN(20)
	}
	return ws
}

func TestStagerSyntheticWorkload(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			ws := syntheticWorkload(5, 10_000)
			in := new(stream)
			for _, w := range ws {
				in.start(w.id)
				id := w.id
				if format == "text" {
					id = ""
				}
				for j := range w.lines {
					msg := fmt.Sprintf("%s line %d of %s", "INFO", j, w.id)
					if w.errors && j == w.lines/2 {
						msg = "ERROR " + msg
					}
					in.line(id, msg)
				}
				in.done(w.id, w.status).report(w.id, w.status)
			}
			st := NewStager(policy(0.1, nil), nil)
			got := feed(st, in.recs, true)
			checkAccounting(t, st.Stats(), got, true)

			kept := map[string]int{}
			for _, r := range got {
				if r.Type == "function" {
					kept[r.RequestID]++
				}
			}
			var others, othersKept int
			for _, w := range ws {
				n := kept[w.id]
				if n != 0 && n != w.lines {
					t.Fatalf("invocation %s kept %d of %d lines: not whole", w.id, n, w.lines)
				}
				if w.status != "success" || w.errors {
					if n != w.lines {
						t.Fatalf("invocation %s (status %s, errors %v) kept %d of %d lines", w.id, w.status, w.errors, n, w.lines)
					}
					continue
				}
				others++
				if n > 0 {
					othersKept++
				}
			}
			if share := float64(othersKept) / float64(others); share < 0.085 || share > 0.115 {
				t.Errorf("kept %.4f of %d ordinary invocations, want 0.1 +- 0.015", share, others)
			}
			// A rerun keeps the same lines.
			again := feed(NewStager(policy(0.1, nil), nil), in.recs, true)
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("rerun differs (-first +rerun):\n%s", diff)
			}
		})
	}
}

func TestStagerBoundedMemory(t *testing.T) {
	const maxBytes = 64 << 10
	p := policy(0.3, func(p *Policy) { p.MaxStagedBytes = maxBytes })
	st := NewStager(p, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	var emitted []Record
	emit := func(r *Record) {
		if r.Type == "function" {
			emitted = append(emitted, Record{Type: r.Type})
		}
	}
	// Interleaved invocations with lines up to 8 KiB, none finishing for a
	// while: a log storm.
	for i := range 5000 {
		id := fmt.Sprintf("r%d", rng.IntN(40)+i/500*40)
		r := Record{Type: "function", RequestID: id, Message: strings.Repeat("x", rng.IntN(8<<10))}
		st.Add(&r, emit)
		if s := st.Stats(); s.StagedBytes > maxBytes {
			t.Fatalf("after %d lines %d bytes staged, over %d", i+1, s.StagedBytes, maxBytes)
		}
		if i%97 == 0 {
			st.Add(&Record{Type: "platform.runtimeDone", RequestID: id, Status: "success"}, emit)
		}
	}
	st.Flush(emit)
	s := st.Stats()
	if s.DecidedEarly == 0 {
		t.Error("no invocation was decided early")
	}
	checkAccounting(t, s, emitted, true)
}

// TestStagerAccounting feeds random streams through random policies: every
// line is emitted once or counted as dropped, per-invocation order holds,
// and the staging bounds hold after every Add.
func TestStagerAccounting(t *testing.T) {
	statuses := []string{"success", "success", "failure", "error", "timeout", ""}
	msgs := []string{"INFO x", "DEBUG y", "ERROR z", "[WARN] w", "plain", "TRACE t"}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := Policy{
			SampleRate:        []float64{0, 0.1, 0.5, 1}[rng.IntN(4)],
			KeepLevel:         Level(rng.IntN(7)),
			MinLevel:          Level(rng.IntN(4)),
			MaxLinesPerInvoke: rng.IntN(6),
			MaxStagedLines:    1 + rng.IntN(10),
			MaxStagedBytes:    recordSize * (1 + rng.IntN(20)),
		}
		st := NewStager(p, nil)
		var emitted []Record
		emit := func(r *Record) { emitted = append(emitted, *r) }
		ids := []string{"a", "b", "c", "d", "e", "f", "g"}
		added := 0
		for i := range 300 {
			id := ids[rng.IntN(len(ids))]
			var r Record
			switch k := rng.IntN(20); {
			case k < 12:
				if rng.IntN(4) == 0 {
					id = ""
				}
				r = Record{Type: "function", RequestID: id, Message: fmt.Sprintf("%s #%d", msgs[rng.IntN(len(msgs))], i)}
				added++
			case k < 13:
				r = Record{Type: "extension", Message: fmt.Sprintf("%s #%d", msgs[rng.IntN(len(msgs))], i)}
				added++
			case k < 15:
				r = Record{Type: "platform.start", RequestID: id}
			case k < 17:
				r = Record{Type: "platform.runtimeDone", RequestID: id, Status: statuses[rng.IntN(len(statuses))]}
			case k < 19:
				r = Record{Type: "platform.report", RequestID: id, Status: statuses[rng.IntN(len(statuses))]}
			default:
				r = Record{Type: "sluice.malformed", Message: "x"}
			}
			r.Time = stageT0.Add(time.Duration(i) * time.Millisecond)
			st.Add(&r, emit)
			if s := st.Stats(); s.StagedBytes > p.MaxStagedBytes {
				t.Fatalf("seed %d: %d bytes staged, over %d", seed, s.StagedBytes, p.MaxStagedBytes)
			}
		}
		st.Flush(emit)
		s := st.Stats()
		if s.Seen.Lines != int64(added) {
			t.Fatalf("seed %d: Seen.Lines = %d, added %d", seed, s.Seen.Lines, added)
		}
		checkAccounting(t, s, emitted, true)
		seen := map[string]bool{}
		lastSeq := map[string]int{}
		for _, r := range emitted {
			if r.Type != "function" && r.Type != "extension" {
				continue
			}
			if seen[r.Message] {
				t.Fatalf("seed %d: %q emitted twice", seed, r.Message)
			}
			seen[r.Message] = true
			var seq int
			fmt.Sscanf(r.Message[strings.IndexByte(r.Message, '#')+1:], "%d", &seq)
			if r.RequestID != "" && seq < lastSeq[r.RequestID] {
				t.Fatalf("seed %d: %q emitted after line #%d of its invocation", seed, r.Message, lastSeq[r.RequestID])
			}
			lastSeq[r.RequestID] = seq
		}
		if t.Failed() {
			t.Fatalf("seed %d, policy %+v", seed, p)
		}
	}
}
