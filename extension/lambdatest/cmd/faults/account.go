package main

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-logs/sluice/buffer"
)

// typeMalformed is the row type sluice archives a body that does not parse as.
const typeMalformed = "sluice.malformed"

// fallbackPrefix starts every row sluice writes to stdout instead of the
// archive.
const fallbackPrefix = `{"sluice":"fallback",`

// tally counts the copies of each line found in one place (the archive or
// the fallback). Lines named "<prefix>-<i>" (the sample's ids) are counted
// in a slice per prefix so that millions of lines stay small.
type tally struct {
	seq   map[string][]uint16
	other map[string]int
}

func newTally() *tally {
	return &tally{seq: map[string][]uint16{}, other: map[string]int{}}
}

// add counts one copy of the line named key.
func (t *tally) add(key string) {
	if prefix, i, ok := splitSeq(key); ok {
		s, found := t.seq[prefix]
		if !found {
			prefix = strings.Clone(prefix) // key may point into a large message
		}
		if len(s) <= i {
			s = slices.Grow(s, i+1-len(s))[:i+1]
		}
		if s[i] < ^uint16(0) {
			s[i]++
		}
		t.seq[prefix] = s
		return
	}
	t.other[strings.Clone(key)]++
}

// count returns the copies of key.
func (t *tally) count(key string) int {
	if prefix, i, ok := splitSeq(key); ok {
		if s := t.seq[prefix]; i < len(s) {
			return int(s[i])
		}
		return 0
	}
	return t.other[key]
}

// each calls f for every line counted at least once.
func (t *tally) each(f func(key string, n int)) {
	for prefix, s := range t.seq {
		for i, n := range s {
			if n > 0 {
				f(prefix+"-"+strconv.Itoa(i), int(n))
			}
		}
	}
	for k, n := range t.other {
		f(k, n)
	}
}

// splitSeq splits "<prefix>-<i>".
func splitSeq(key string) (string, int, bool) {
	j := strings.LastIndexByte(key, '-')
	if j <= 0 || j == len(key)-1 {
		return "", 0, false
	}
	i, err := strconv.Atoi(key[j+1:])
	if err != nil || i < 0 || i >= 1<<22 || key[j+1] == '+' {
		return "", 0, false
	}
	return key[:j], i, true
}

// sampleID extracts the "<requestId>-<i>" the sample function puts in
// every line (and "<requestId>-big" in its long line).
func sampleID(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, "sample id=")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(rest, " ")
	id, _, _ = strings.Cut(id, `"`)
	return id, id != ""
}

// bigLine is the sample function's long line (see sample/main.go).
func bigLine(requestID string, n int) string {
	b := []byte("sample id=" + requestID + "-big ")
	for i := 0; len(b) < n; i++ {
		b = append(b, byte('a'+i%26))
	}
	return string(b[:max(n, 0)])
}

// expect is what the scenario made the function (or the platform) emit
// beyond the platform's own count of function lines. It is filled while
// the scenario runs, through the ledger's methods, and read when rows are
// classified, fallback rows included, which arrive during the run.
type expect struct {
	written   []written // what each invocation wrote, for the cross-check
	bigSize   int       // the size of the sample's long lines; fixed before the run
	injected  []string  // keys of function lines posted with PostTelemetry
	malformed []string  // raw bodies posted that must become sluice.malformed rows
	bodies    []posted  // bodies posted straight to sluice's listener
}

// answer is what sluice's listener said to a body posted straight to it.
type answer int

const (
	// acked: a 2xx answer; sluice took the lines.
	acked answer = iota
	// refused: another status; the lines stay with the sender, and sluice
	// must not deliver them (Lambda would send them again).
	refused
	// unsure: no answer (the connection failed or timed out); sluice may
	// or may not have taken the lines.
	unsure
)

func (a answer) String() string {
	switch a {
	case acked:
		return "acked"
	case refused:
		return "refused"
	}
	return "unsure"
}

// posted is a body of function lines "<Prefix>-0".."<Prefix>-<N-1>" a
// scenario posted straight to sluice's listener, or planted where sluice
// finds it, and how it was answered. Only acked lines are emitted; an
// unsure line counts as emitted if it was delivered, and a refused line
// that was delivered anyway is counted in Refused.
type posted struct {
	Prefix string
	N      int
	Answer answer
}

// written is what one invocation of the sample wrote: lines
// "<RequestID>-0".."<RequestID>-<Lines-1>", and "<RequestID>-big" if Big > 0.
type written struct {
	RequestID string
	Lines     int
	Big       int
}

// ledger accounts for every line: where it ended and how many times.
type ledger struct {
	mu       sync.Mutex
	exp      *expect
	archive  *tally
	fallback *tally
	corrupt  int // long lines that arrived altered (not counted as delivered)
	strange  int // sluice.malformed rows nobody posted
	badRows  int // fallback rows that do not parse (cut by a kill, say)
	fbErrors int // sluice.fallback_error rows
}

func newLedger(exp *expect) *ledger {
	return &ledger{exp: exp, archive: newTally(), fallback: newTally()}
}

// verdict is what a row is to the accounting.
type verdict int

const (
	notLine     verdict = iota // a platform event, sluice's own row...
	line                       // a line, named by its key
	corrupt                    // a long line that arrived altered
	strange                    // a sluice.malformed row nobody posted
	fallbackErr                // a sluice.fallback_error row
)

// classify names a row's line. It reads l.exp: call it with l.mu held
// while the scenario runs.
func (l *ledger) classify(r buffer.Row) (string, verdict) {
	switch r.Type {
	case "function":
		id, ok := sampleID(r.Message)
		if !ok {
			// A line without an id (the sample's init line): the same
			// record delivered twice has the same time and text.
			return "t=" + r.Time.UTC().Format(time.RFC3339Nano) + " " + r.Message, line
		}
		if req, big := strings.CutSuffix(id, "-big"); big {
			if size := l.exp.bigSize; len(r.Message) != size || r.Message != bigLine(req, size) {
				return "", corrupt
			}
		}
		return id, line
	case typeMalformed:
		if !slices.Contains(l.exp.malformed, r.Message) {
			return "", strange
		}
		return "malformed:" + r.Message, line
	case "sluice.fallback_error":
		return "", fallbackErr
	}
	return "", notLine
}

// wrote records what an invocation wrote.
func (l *ledger) wrote(w written) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exp.written = append(l.exp.written, w)
}

// posted records a function line posted directly, by its key.
func (l *ledger) posted(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exp.injected = append(l.exp.injected, key)
}

// postedBody records a body posted straight to the listener (or planted
// in the spill) and how sluice answered it.
func (l *ledger) postedBody(p posted) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exp.bodies = append(l.exp.bodies, p)
}

// postedMalformed records a raw body posted that does not parse.
func (l *ledger) postedMalformed(body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exp.malformed = append(l.exp.malformed, body)
}

// countLocked adds a classified row to t. l.mu must be held.
func (l *ledger) countLocked(t *tally, key string, v verdict) {
	switch v {
	case line:
		t.add(key)
	case corrupt:
		l.corrupt++
	case strange:
		l.strange++
	case fallbackErr:
		l.fbErrors++
	}
}

// addObject counts the rows of one archived object. Objects may be added
// concurrently, once the scenario has run (rows are classified without
// the lock, which is what makes this parallel).
func (l *ledger) addObject(name string, data []byte) error {
	rows, err := buffer.DecodeBatch(data)
	if err != nil {
		return fmt.Errorf("object %s: %w", name, err)
	}
	type classified struct {
		key string
		v   verdict
	}
	out := make([]classified, 0, len(rows))
	for _, raw := range rows {
		row, err := buffer.ParseRow(raw)
		if err != nil {
			return fmt.Errorf("object %s: row %.200q: %w", name, raw, err)
		}
		if k, v := l.classify(row); v != notLine {
			out = append(out, classified{k, v})
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range out {
		l.countLocked(l.archive, c.key, c.v)
	}
	return nil
}

// addOutputLine counts an extension output line if it is a fallback row.
func (l *ledger) addOutputLine(raw []byte) {
	rest, ok := bytes.CutPrefix(raw, []byte(fallbackPrefix))
	if !ok {
		return
	}
	row, err := buffer.ParseRow(append([]byte("{"), rest...))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.badRows++
		return
	}
	k, v := l.classify(row)
	l.countLocked(l.fallback, k, v)
}

// maxMissingKeys is how many of the lines found nowhere a result names.
const maxMissingKeys = 5

// counts is one scenario's result row.
type counts struct {
	Emitted, Archived, Fallback, Lost, Duplicates int
	Missing                                       int      // lines the scenario wrote or posted, found nowhere
	MissingKeys                                   []string // the first few of them, to look for in the output
	Refused                                       int      // lines of refused bodies that were delivered all the same
}

// result computes the row: emitted is what the platform counted plus what
// was posted directly.
func (l *ledger) result(functionLines int64) counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := counts{Emitted: int(functionLines) + len(l.exp.injected) + len(l.exp.malformed)}
	found := func(k string) bool { return l.archive.count(k) > 0 || l.fallback.count(k) > 0 }
	missing := func(k string) {
		c.Missing++
		if len(c.MissingKeys) < maxMissingKeys {
			c.MissingKeys = append(c.MissingKeys, k)
		}
	}
	for _, p := range l.exp.bodies {
		for i := range p.N {
			k := p.Prefix + "-" + strconv.Itoa(i)
			switch {
			case p.Answer == acked:
				c.Emitted++
				if !found(k) {
					missing(k)
				}
			case found(k):
				// Delivered though the sender could not know: emitted all
				// the same, and a fault when sluice had refused it.
				c.Emitted++
				if p.Answer == refused {
					c.Refused++
				}
			}
		}
	}
	copies := 0
	l.archive.each(func(_ string, n int) {
		c.Archived++
		copies += n
	})
	l.fallback.each(func(k string, n int) {
		copies += n
		if l.archive.count(k) == 0 {
			c.Fallback++
		}
	})
	c.Duplicates = copies - c.Archived - c.Fallback
	c.Lost = c.Emitted - c.Archived - c.Fallback
	for _, w := range l.exp.written {
		for i := range w.Lines {
			if k := w.RequestID + "-" + strconv.Itoa(i); !found(k) {
				missing(k)
			}
		}
		if k := w.RequestID + "-big"; w.Big > 0 && !found(k) {
			missing(k)
		}
	}
	for _, k := range l.exp.injected {
		if !found(k) {
			missing(k)
		}
	}
	return c
}
