package buffer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// TypeTruncated is the Type of the record that reports the lines of one
// invocation dropped over Policy.MaxLinesPerInvoke.
const TypeTruncated = "sluice.truncated"

// Defaults of the staging bounds, used for zero or negative Policy fields.
const (
	DefaultMaxStagedLines = 2000
	DefaultMaxStagedBytes = 4 << 20
)

// Internal bounds on what a Stager remembers about invocations.
const (
	// maxActive bounds the invocations whose outcome is awaited. Past it the
	// oldest is finished as if SHUTDOWN had come: with Lambda's on-demand
	// model one is active at a time, and an id whose platform records were
	// lost must not be remembered forever.
	maxActive = 1024
	// recentFinished is how many finished invocations keep their decision
	// for lines that arrive after their platform.runtimeDone or report.
	recentFinished = 256
)

// Policy says which lines a Stager keeps. Start from DefaultPolicy: the zero
// Policy is valid but keeps every invocation that logs anything, because
// its KeepLevel is LevelTrace.
type Policy struct {
	// SampleRate is the share of ordinary invocations kept, 0 to 1. An
	// invocation is kept whole or dropped whole, decided by SampleKeep.
	SampleRate float64
	// KeepLevel keeps the whole invocation of any line at or above it, even
	// one dropped over MaxLinesPerInvoke. LevelOff disables it.
	KeepLevel Level
	// MinLevel drops every line below it, before anything else looks at
	// the line.
	MinLevel Level
	// MaxLinesPerInvoke caps the lines kept of one invocation; 0 means no
	// cap. Lines past it are dropped and, when the invocation is kept, one
	// TypeTruncated record says how many.
	MaxLinesPerInvoke int
	// MaxStagedLines bounds the lines held for one invocation while its
	// outcome is unknown (default DefaultMaxStagedLines).
	MaxStagedLines int
	// MaxStagedBytes bounds the memory held for all invocations whose
	// outcome is unknown (default DefaultMaxStagedBytes).
	MaxStagedBytes int
	// Concurrent says invocations overlap (Lambda Managed Instances): a
	// line without a requestId cannot be told apart, so it is attributed to
	// no invocation and decided on its own, instead of belonging to the
	// invocation between platform.start and its end.
	Concurrent bool
}

// DefaultPolicy returns the policy of an unconfigured extension: keep
// everything, stage within the default bounds.
func DefaultPolicy() Policy {
	return Policy{
		SampleRate:     1,
		KeepLevel:      LevelError,
		MinLevel:       LevelTrace,
		MaxStagedLines: DefaultMaxStagedLines,
		MaxStagedBytes: DefaultMaxStagedBytes,
	}
}

// Validate reports every field out of its range, naming the field. Config
// loading checks the variables itself; this guards other callers.
func (p Policy) Validate() error {
	var errs []error
	if !(p.SampleRate >= 0 && p.SampleRate <= 1) {
		errs = append(errs, fmt.Errorf("policy: SampleRate %v is not between 0 and 1", p.SampleRate))
	}
	if !p.KeepLevel.Valid() {
		errs = append(errs, fmt.Errorf("policy: KeepLevel %v is not a level", p.KeepLevel))
	}
	if !p.MinLevel.Valid() {
		errs = append(errs, fmt.Errorf("policy: MinLevel %v is not a level", p.MinLevel))
	}
	if p.MaxLinesPerInvoke < 0 {
		errs = append(errs, fmt.Errorf("policy: MaxLinesPerInvoke %d is negative", p.MaxLinesPerInvoke))
	}
	return errors.Join(errs...)
}

// Count is a number of log lines and their bytes (Message plus Fields, as
// received, before redaction).
type Count struct {
	Lines int64
	Bytes int64
}

func (c *Count) add(bytes int) {
	c.Lines++
	c.Bytes += int64(bytes)
}

// Stats are a Stager's counters. Lines are function and extension log
// lines; every line seen is, once Flush has run, either kept or counted
// under exactly one drop reason:
//
//	Seen = Kept + SampledOut + BelowLevel + OverCap + (StagedLines before Flush)
type Stats struct {
	Seen       Count // lines added
	Kept       Count // lines emitted
	SampledOut Count // dropped with their invocation (or alone) by the sample rate
	BelowLevel Count // dropped below MinLevel
	OverCap    Count // dropped past MaxLinesPerInvoke

	// DecidedEarly counts invocations decided before their outcome was
	// known because they passed MaxStagedLines or were the oldest when the
	// staged bytes passed MaxStagedBytes (or too many were awaited).
	DecidedEarly int64
	// PartialKept counts invocations decided "drop" early that a later
	// keep-level line or failed outcome switched to "keep": their lines
	// from then on are kept, the earlier ones are gone.
	PartialKept int64
	// Truncated counts the TypeTruncated records emitted.
	Truncated int64

	StagedLines int // lines held now
	StagedBytes int // their estimated memory

	Redactions []RuleCount // replacements per redaction rule
}

// Dropped returns the lines dropped for any reason.
func (s Stats) Dropped() Count {
	return Count{
		Lines: s.SampledOut.Lines + s.BelowLevel.Lines + s.OverCap.Lines,
		Bytes: s.SampledOut.Bytes + s.BelowLevel.Bytes + s.OverCap.Bytes,
	}
}

// Stager applies a Policy to the record stream: it detects each line's
// level, drops lines below the minimum level, holds an invocation's lines
// until its outcome is known, keeps or drops them together (tail-based
// sampling), caps the lines per invocation and redacts what it keeps.
//
// An invocation is kept whole when it failed, errored or timed out
// (platform.runtimeDone's status, or platform.report's when no runtimeDone
// came), or when any of its lines is at or above KeepLevel; otherwise it is
// kept when SampleKeep(requestId, SampleRate) says so. With SampleRate 1
// nothing is held: every line streams through at once.
//
// Lines are attributed to an invocation by their requestId. Lambda's text
// log format gives function lines none: such a line belongs to the
// invocation between its platform.start and platform.runtimeDone (or
// report), and gets that requestId, unless Policy.Concurrent says
// invocations overlap, where it belongs to none. Lines outside any
// invocation (init, after runtimeDone, text lines of concurrent
// invocations) and extension lines are decided one by one: kept at or
// above KeepLevel, else when a hash of their time and message falls under
// SampleRate, so reruns agree on them too.
//
// Where no platform.runtimeDone comes (Managed Instances), platform.report's
// status decides; an invocation whose report never comes is decided at
// Flush.
//
// Memory is bounded. An invocation holding MaxStagedLines lines, or the
// oldest held one when all of them hold more than MaxStagedBytes, is
// decided early on what is known: kept when a keep-level line was seen,
// else by SampleKeep. Its later lines stream through under that decision,
// except that a later keep-level line or a failed outcome turns "drop" into
// "keep" from that line on (counted in PartialKept). Lines that arrive after
// their invocation finished follow its decision the same way.
//
// A Stager is plain data owned by one goroutine: no locks, no goroutines, no
// clock. Records that leave it go to the emit function passed to each call,
// in order within an invocation, and are valid only during that call.
type Stager struct {
	p   Policy
	red *Redactor

	invs    map[string]*invocation
	order   []*invocation // unfinished invocations, oldest first; finished ones are removed lazily
	active  int           // unfinished invocations
	recent  [recentFinished]*invocation
	recentN int
	last    *invocation // the invocation of the previous line
	current string      // requestId between platform.start and its end

	stagedLines, stagedBytes int
	spare                    [][]Record // line slices to reuse

	st Stats
}

type invState uint8

const (
	staged invState = iota // lines held, undecided
	keep                   // decided keep: lines stream through
	drop                   // decided drop: lines are counted and dropped
)

type invocation struct {
	id        string
	state     invState
	finished  bool // the outcome came (or Flush, or a forced end)
	keepLevel bool // a line at or above KeepLevel was seen
	lines     []Record
	bytes     int
	accepted  int // lines within MaxLinesPerInvoke
	overCap   int
	reported  int       // overCap lines already in a TypeTruncated record
	lastOver  time.Time // time of the last line over the cap
}

// recordSize is the memory of a held line besides its strings' bytes.
const recordSize = int(unsafe.Sizeof(Record{}))

// NewStager returns a Stager applying p, redacting what it keeps with red
// (nil for none). Zero staging bounds take their defaults; SampleRate is
// clamped to [0, 1] (NaN is 0): Validate is the place to reject them.
func NewStager(p Policy, red *Redactor) *Stager {
	if p.MaxStagedLines <= 0 {
		p.MaxStagedLines = DefaultMaxStagedLines
	}
	if p.MaxStagedBytes <= 0 {
		p.MaxStagedBytes = DefaultMaxStagedBytes
	}
	if !(p.SampleRate > 0) {
		p.SampleRate = 0
	}
	p.SampleRate = min(p.SampleRate, 1)
	return &Stager{p: p, red: red, invs: make(map[string]*invocation)}
}

// Add takes one record and passes whatever is decided by it to emit:
//
//   - function and extension lines get their level (DetectLevel) written to
//     Level as its canonical name, then are dropped, held or emitted by the
//     policy; a held line is copied, so r may be reused once Add returns;
//   - platform.start marks the running invocation; platform.runtimeDone and
//     platform.report decide their invocation, whose lines are emitted
//     before the record itself; these and other platform records pass
//     through unchanged;
//   - any other record (sluice.malformed, ...) is redacted and passes
//     through.
//
// Add may modify *r: level, requestId, redaction.
func (s *Stager) Add(r *Record, emit func(*Record)) {
	switch r.Type {
	case "function":
		s.addLine(r, true, emit)
	case "extension":
		s.addLine(r, false, emit)
	case "platform.start":
		if r.RequestID != "" && !s.p.Concurrent {
			s.current = r.RequestID
		}
		emit(r)
	case "platform.runtimeDone", "platform.report":
		s.finish(r.RequestID, r.Status, emit)
		if r.RequestID == s.current {
			s.current = ""
		}
		emit(r)
	default:
		if !strings.HasPrefix(r.Type, "platform.") {
			s.red.RedactRecord(r)
		}
		emit(r)
	}
}

// Flush decides every held invocation, as at SHUTDOWN: their outcome will
// not come, so each is kept when it has a keep-level line, else by
// SampleKeep. It also emits the TypeTruncated records still owed. The
// Stager stays usable, and remembers the decisions for late lines.
func (s *Stager) Flush(emit func(*Record)) {
	order := s.order
	s.order = nil // end trims s.order as it goes
	for _, inv := range order {
		if !inv.finished {
			s.end(inv, false, emit)
		}
	}
	s.active = 0
	s.current = ""
	for _, inv := range s.recent {
		if inv != nil {
			s.summarize(inv, emit)
		}
	}
}

// Stats returns the counters so far.
func (s *Stager) Stats() Stats {
	st := s.st
	st.StagedLines, st.StagedBytes = s.stagedLines, s.stagedBytes
	st.Redactions = s.red.Counts()
	return st
}

func (s *Stager) addLine(r *Record, function bool, emit func(*Record)) {
	lvl := DetectLevel(r)
	r.Level = lvl.String()
	size := len(r.Message) + len(r.Fields)
	s.st.Seen.add(size)
	if lvl < s.p.MinLevel {
		s.st.BelowLevel.add(size)
		return
	}
	id := r.RequestID
	if function && id == "" {
		id = s.current
		r.RequestID = id
	}
	if !function || id == "" {
		if lvl >= s.p.KeepLevel || sampleLine(r, s.p.SampleRate) {
			s.emitLine(r, size, emit)
		} else {
			s.st.SampledOut.add(size)
		}
		return
	}
	inv := s.last
	if inv == nil || inv.id != id {
		if inv = s.invs[id]; inv == nil {
			inv = s.start(id, emit)
		}
		s.last = inv
	}
	atKeep := lvl >= s.p.KeepLevel
	if atKeep {
		inv.keepLevel = true
	}
	if c := s.p.MaxLinesPerInvoke; c > 0 && inv.accepted >= c {
		if atKeep && inv.state == drop {
			inv.state = keep
			s.st.PartialKept++
		}
		inv.overCap++
		inv.lastOver = r.Time
		s.st.OverCap.add(size)
		return
	}
	inv.accepted++
	switch inv.state {
	case keep:
		s.emitLine(r, size, emit)
	case drop:
		if atKeep {
			inv.state = keep
			s.st.PartialKept++
			s.emitLine(r, size, emit)
			return
		}
		s.st.SampledOut.add(size)
	case staged:
		inv.lines = append(inv.lines, *r)
		cost := recordSize + size
		inv.bytes += cost
		s.stagedBytes += cost
		s.stagedLines++
		if len(inv.lines) >= s.p.MaxStagedLines {
			s.decideEarly(inv, emit)
		}
		for s.stagedBytes > s.p.MaxStagedBytes {
			old := s.oldestStaged()
			if old == nil {
				break // cannot happen while stagedBytes > 0
			}
			s.decideEarly(old, emit)
		}
	}
}

// start begins tracking invocation id.
func (s *Stager) start(id string, emit func(*Record)) *invocation {
	inv := &invocation{id: id}
	if s.p.SampleRate >= 1 {
		inv.state = keep // kept whatever happens: nothing to wait for
	} else if n := len(s.spare); n > 0 {
		inv.lines = s.spare[n-1]
		s.spare = s.spare[:n-1]
	}
	s.invs[id] = inv
	s.order = append(s.order, inv)
	s.active++
	if s.active > maxActive {
		s.endOldest(emit)
	}
	return inv
}

// endOldest finishes the oldest unfinished invocation without its outcome.
func (s *Stager) endOldest(emit func(*Record)) {
	for _, inv := range s.order {
		if !inv.finished {
			if inv.state == staged {
				s.st.DecidedEarly++
			}
			s.end(inv, false, emit)
			return
		}
	}
}

// oldestStaged returns the oldest invocation holding lines. It is only
// called when some invocation does.
func (s *Stager) oldestStaged() *invocation {
	for _, inv := range s.order {
		if !inv.finished && inv.state == staged && len(inv.lines) > 0 {
			return inv
		}
	}
	return nil
}

// finish applies the outcome of invocation id.
func (s *Stager) finish(id, status string, emit func(*Record)) {
	if id == "" {
		return
	}
	failed := status != "" && status != "success"
	inv := s.invs[id]
	if inv == nil {
		// No line yet: remember the decision for lines still to come.
		inv = &invocation{id: id, state: drop, finished: true}
		if failed || SampleKeep(id, s.p.SampleRate) {
			inv.state = keep
		}
		s.invs[id] = inv
		s.remember(inv)
		return
	}
	if inv.finished {
		return // platform.report after platform.runtimeDone
	}
	s.end(inv, failed, emit)
}

// end decides inv if it is still held, emits its truncation record and
// marks it finished.
func (s *Stager) end(inv *invocation, failed bool, emit func(*Record)) {
	switch inv.state {
	case staged:
		s.release(inv, failed || inv.keepLevel || SampleKeep(inv.id, s.p.SampleRate), emit)
	case drop:
		if failed {
			inv.state = keep
			s.st.PartialKept++
		}
	}
	s.summarize(inv, emit)
	inv.finished = true
	s.active--
	if s.last == inv {
		s.last = nil
	}
	for len(s.order) > 0 && s.order[0].finished {
		s.order[0] = nil
		s.order = s.order[1:]
	}
	if len(s.order) > 2*s.active+32 {
		s.order = compact(s.order)
	}
	s.remember(inv)
}

func compact(order []*invocation) []*invocation {
	out := make([]*invocation, 0, len(order)/2)
	for _, inv := range order {
		if !inv.finished {
			out = append(out, inv)
		}
	}
	return out
}

// remember keeps a finished invocation's decision for late lines, and
// forgets the oldest one remembered.
func (s *Stager) remember(inv *invocation) {
	slot := &s.recent[s.recentN%recentFinished]
	s.recentN++
	if old := *slot; old != nil && s.invs[old.id] == old {
		delete(s.invs, old.id)
	}
	*slot = inv
}

func (s *Stager) decideEarly(inv *invocation, emit func(*Record)) {
	s.st.DecidedEarly++
	s.release(inv, inv.keepLevel || SampleKeep(inv.id, s.p.SampleRate), emit)
}

// release ends the holding of inv's lines: emitted when keep, counted as
// sampled out otherwise.
func (s *Stager) release(inv *invocation, k bool, emit func(*Record)) {
	inv.state = drop
	if k {
		inv.state = keep
	}
	for i := range inv.lines {
		r := &inv.lines[i]
		size := len(r.Message) + len(r.Fields)
		if k {
			s.emitLine(r, size, emit)
		} else {
			s.st.SampledOut.add(size)
		}
	}
	s.stagedLines -= len(inv.lines)
	s.stagedBytes -= inv.bytes
	inv.bytes = 0
	lines := inv.lines
	inv.lines = nil
	if cap(lines) > 0 && cap(lines) <= 256 && len(s.spare) < 8 {
		clear(lines)
		s.spare = append(s.spare, lines[:0])
	}
}

// summarize emits the TypeTruncated record of a kept invocation that
// dropped lines over the cap since the last one.
func (s *Stager) summarize(inv *invocation, emit func(*Record)) {
	n := inv.overCap - inv.reported
	if n == 0 || inv.state != keep {
		return
	}
	inv.reported = inv.overCap
	s.st.Truncated++
	r := Record{
		Time:      inv.lastOver,
		Type:      TypeTruncated,
		RequestID: inv.id,
		Level:     LevelWarn.String(),
		Message:   strconv.Itoa(n) + " lines over SLUICE_MAX_LINES_PER_INVOKE dropped",
		Fields:    strconv.AppendInt([]byte(`{"dropped_lines":`), int64(n), 10),
	}
	r.Fields = append(r.Fields, '}')
	emit(&r)
}

func (s *Stager) emitLine(r *Record, size int, emit func(*Record)) {
	s.red.RedactRecord(r)
	s.st.Kept.add(size)
	emit(r)
}

// SampleKeep reports whether the invocation requestID is kept at rate: a
// pure function of its arguments, so every run over the same telemetry
// keeps the same invocations, and about rate of all ids are kept. rate 1
// (or more) keeps all, 0 (or less, or NaN) none. The id is hashed with
// FNV-1a (64 bit) and murmur3's fmix64 finaliser; the top 53 bits as a
// fraction of 2^53 are compared with rate.
func SampleKeep(requestID string, rate float64) bool {
	if rate >= 1 {
		return true
	}
	if !(rate > 0) {
		return false
	}
	h := uint64(fnvOffset)
	for i := range len(requestID) {
		h = (h ^ uint64(requestID[i])) * fnvPrime
	}
	return unitFloat(h) < rate
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// unitFloat spreads h over [0, 1).
func unitFloat(h uint64) float64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return float64(h>>11) / (1 << 53)
}

// sampleLine decides a line outside any invocation by a hash of its time
// and message, like SampleKeep does for ids.
func sampleLine(r *Record, rate float64) bool {
	if rate >= 1 {
		return true
	}
	if !(rate > 0) {
		return false
	}
	h := uint64(fnvOffset)
	t := uint64(r.Time.UnixNano())
	for range 8 {
		h = (h ^ t&0xff) * fnvPrime
		t >>= 8
	}
	h = hashText(h, r)
	return unitFloat(h) < rate
}
