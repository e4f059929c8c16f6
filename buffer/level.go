package buffer

import (
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-logs/sluice/buffer/jsonscan"
)

// Level is the severity of a log line, ordered from LevelTrace to
// LevelFatal. LevelOff is above every line's level: it is a threshold only
// (a keep level that no line reaches, a minimum level that drops all), and
// DetectLevel never returns it.
type Level int8

// The levels, least severe first. Lambda's own names (TRACE, DEBUG, INFO,
// WARN, ERROR, FATAL) are the canonical ones; ParseLevelName maps the other
// loggers' names onto them.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
	LevelFatal
	LevelOff
)

var levelNames = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"}

// String returns the level's upper-case name, the value of the archive's
// level column.
func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// Valid reports whether l is one of the named levels, LevelOff included.
func (l Level) Valid() bool { return l >= LevelTrace && l <= LevelOff }

// ParseLevelName returns the level that a logger's level name stands for,
// ignoring case and surrounding spaces. Beside the six canonical names it
// accepts the names other runtimes and loggers write:
//
//	TRACE  trc trce (.NET) verbose (Serilog, Android) finest finer (java.util.logging)
//	DEBUG  dbg dbug (.NET) fine (java.util.logging)
//	INFO   inf information informational (.NET, syslog) notice (syslog)
//	WARN   warning wrn
//	ERROR  err fail (.NET) severe (java.util.logging) dpanic (zap)
//	FATAL  critical crit (Python, .NET) panic (zap, logrus) emerg emergency alert (syslog) ftl
//	OFF    off (a threshold, log4j's name for it)
//
// pino's and bunyan's numeric levels 10, 20, 30, 40, 50 and 60 map to TRACE
// through FATAL. Other numbers are rejected: syslog severities run the other
// way and Monolog's 100..600 are ambiguous. A Go slog offset such as
// "ERROR+2" or "INFO-4" counts as its base name, as slog's own output gives
// no other meaning to it.
func ParseLevelName(s string) (Level, bool) {
	return parseLevel(strings.TrimSpace(s))
}

// parseLevel is ParseLevelName without the trimming, for strings and byte
// slices alike. It does not allocate.
func parseLevel[S ~string | ~[]byte](s S) (Level, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	if s[0] >= '0' && s[0] <= '9' {
		if len(s) == 2 && s[1] == '0' && s[0] >= '1' && s[0] <= '6' {
			return Level(s[0] - '1'), true
		}
		return 0, false
	}
	// Cut a slog offset: letters, then '+' or '-' and digits.
	n := 0
	for n < len(s) && isLetter(s[n]) {
		n++
	}
	if n < len(s) {
		if n == 0 || (s[n] != '+' && s[n] != '-') || n+1 == len(s) {
			return 0, false
		}
		for i := n + 1; i < len(s); i++ {
			if !isDigit(s[i]) {
				return 0, false
			}
		}
		s = s[:n]
	}
	var buf [16]byte
	for i := range n {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:n]) {
	case "trace", "trc", "trce", "verbose", "finest", "finer":
		return LevelTrace, true
	case "debug", "dbg", "dbug", "fine":
		return LevelDebug, true
	case "info", "inf", "information", "informational", "notice":
		return LevelInfo, true
	case "warn", "warning", "wrn":
		return LevelWarn, true
	case "error", "err", "fail", "severe", "dpanic":
		return LevelError, true
	case "fatal", "critical", "crit", "panic", "emerg", "emergency", "alert", "ftl":
		return LevelFatal, true
	case "off":
		return LevelOff, true
	}
	return 0, false
}

// lineLevel is parseLevel for a level found in a log line: "off" there is
// not a level.
func lineLevel[S ~string | ~[]byte](s S) (Level, bool) {
	l, ok := parseLevel(s)
	return l, ok && l < LevelOff
}

func isLetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// Bounds of DetectLevel's work on one record: text formats put the level
// near the start, so only a prefix of a text line is read; JSON puts it
// anywhere, so JSON is scanned further, but not without end.
const (
	levelTextPrefix = 256
	levelJSONScan   = 64 << 10
	// levelScratch is how much of an escaped JSON line is decoded on the
	// stack: a longer one is decoded on the heap, unless its level shows
	// within that much.
	levelScratch = 2 << 10
)

// DetectLevel returns the level of a function or extension log line, or
// LevelInfo when it names none, as Lambda does. In order, it looks at:
//
//  1. r.Level, which the telemetry decoder sets from a JSON log record's
//     string "level" field;
//  2. the top-level members of r.Fields (the JSON record's other fields) named
//     level (pino's numbers stay there), severity, severityText, lvl,
//     levelname, level_name, loglevel, log.level or @l, keys in any case;
//  3. the text of r.Message, of which only the first 256 bytes are read,
//     except that a line holding one JSON object is scanned for the keys
//     of 2 over its first 64 KiB. A message held Escaped is read as the
//     text it stands for, and only as much of it is decoded.
//
// Text formats recognised, by example:
//
//	2024-01-01T00:00:00.000Z	<requestId>	ERROR	msg   Lambda's Node.js, .NET ("fail") and Go text format
//	2024-01-01T00:00:00.000Z	ERROR	msg               zap console
//	[ERROR]	2024-01-01T00:00:00.000Z	<requestId>	msg   Lambda's Python runtime
//	[ERROR] msg                                       any bracketed level, any case
//	ERROR:root:msg   WARNING: msg   error: msg        Python logging, "word:" prefixes
//	2024-01-01 00:00:00,000 ERROR [main] Foo - msg    log4j, logback
//	2024-01-01 00:00:00 [main] ERROR Foo - msg
//	2024/01/01 00:00:00 ERROR msg                     Go log with a level word
//	time=2024-01-01T00:00:00Z level=ERROR msg=x       logfmt, Go slog text ("lvl=", "severity=" too)
//	{"level":"error",...}  {"level":50,...}           JSON written as text (pino numbers)
//	E0101 12:00:00.000000 1 main.go:12] msg           glog
//
// In a text prefix a bare word counts only in upper case ("ERROR", not
// "Error handling the request"), unless it is bracketed, followed by ':' or
// sits in a tab-separated column; leading timestamps, request ids, thread
// names and other tokens holding digits or brackets are skipped, and the
// first other word ends the search. DetectLevel does not allocate.
func DetectLevel(r *Record) Level {
	if r.Level != "" {
		if l, ok := lineLevel(strings.TrimSpace(r.Level)); ok {
			return l
		}
	}
	if len(r.Fields) > 0 {
		if l, ok := jsonLevel(r.Fields); ok {
			return l
		}
	}
	textLevel := textLevel
	if r.Escaped {
		textLevel = escapedLevel
	}
	if l, ok := textLevel(r.Message); ok {
		return l
	}
	return LevelInfo
}

// escapedLevel is textLevel for a line held Escaped. It decodes only the
// prefix that textLevel reads, into a buffer on the stack, so that the
// common line costs no allocation: the leading spaces are skipped as they
// are decoded, then 256 bytes are decoded, or for a JSON object up to 64
// KiB. A prefix without a backslash is its own text and is read in place.
func escapedLevel(esc string) (Level, bool) {
	i := 0
	first := byte(0) // the first byte of the text after its leading spaces
	for i < len(esc) {
		c, n := esc[i], 1
		if c == '\\' {
			var r rune
			if r, n = jsonscan.DecodeEscape(esc, i); n == 0 || r >= utf8.RuneSelf {
				c = 0 // not a space, and not '{'
			} else {
				c = byte(r)
			}
		}
		if !isSpace(c) {
			first = c
			break
		}
		i += n
	}
	rest := esc[i:]
	if rest == "" {
		return 0, false
	}
	limit := levelTextPrefix
	if first == '{' {
		limit = levelJSONScan
	}
	if strings.IndexByte(rest[:min(len(rest), limit)], '\\') < 0 {
		return textLevel(rest)
	}
	var buf [levelScratch + utf8.UTFMax]byte
	if first != '{' {
		b, _ := unescapePrefix(buf[:0], rest, levelTextPrefix)
		return textLevel(bytesString(b))
	}
	b, cut := unescapePrefix(buf[:0], rest, levelScratch)
	l, ok, more := jsonLevelPrefix(b, cut)
	if !more {
		return l, ok
	}
	// A JSON line longer than the scratch with no level within it: this
	// is the one case that allocates.
	b, _ = unescapePrefix(make([]byte, 0, min(len(rest), levelJSONScan)+utf8.UTFMax), rest, levelJSONScan)
	return jsonLevel(b)
}

// unescapePrefix appends the first max bytes of the text that the JSON
// string content s decodes to (it may end inside a rune, as a slice of the
// text would) to dst, which must be empty. cut reports that the text goes on
// beyond them. It decodes as jsonscan.AppendUnquoted does, and stops where
// that does at an invalid escape.
func unescapePrefix(dst []byte, s string, max int) (_ []byte, cut bool) {
	i := 0
	for i < len(s) && len(dst) < max {
		if s[i] != '\\' {
			j := strings.IndexByte(s[i:], '\\')
			if j < 0 {
				j = len(s) - i
			}
			j = min(j, max-len(dst))
			dst = append(dst, s[i:i+j]...)
			i += j
			continue
		}
		r, n := jsonscan.DecodeEscape(s, i)
		if n == 0 {
			return dst, false
		}
		dst = utf8.AppendRune(dst, r)
		i += n
	}
	if len(dst) > max {
		return dst[:max], true
	}
	return dst, i < len(s)
}

// bytesString views b as a string without copying; b must not change while
// the string is in use.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// textLevel finds the level of a text line, see DetectLevel.
func textLevel(msg string) (Level, bool) {
	i := 0
	for i < len(msg) && isSpace(msg[i]) {
		i++
	}
	if i < len(msg) && msg[i] == '{' {
		return jsonLevel(msg[i:])
	}
	p := msg[i:min(len(msg), i+levelTextPrefix)]
	if p == "" {
		return 0, false
	}
	if isDigit(p[0]) {
		if l, ok := tabLevel(p); ok {
			return l, true
		}
	}
	if l, ok, stop := tokenLevel(p); ok || stop {
		return l, ok
	}
	return logfmtLevel(p)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// tabLevel reads the tab-separated columns of a line that starts with a
// timestamp: Lambda's runtimes write time, request id, level; zap writes
// time, level. Columns are trusted in any case, which .NET's lower-case
// "info" and "fail" need.
func tabLevel(p string) (Level, bool) {
	t := strings.IndexByte(p, '\t')
	if t < 0 {
		return 0, false
	}
	for col := 1; col <= 2; col++ {
		p = p[t+1:]
		t = strings.IndexByte(p, '\t')
		if t < 0 {
			return 0, false // the last column is the message, not a level
		}
		if l, ok := lineLevel(p[:t]); ok {
			return l, true
		}
	}
	return 0, false
}

// tokenLevel scans the first space-separated tokens of p, see DetectLevel.
// stop reports that a token ended the search for good: the line is not
// logfmt either.
func tokenLevel(p string) (l Level, ok, stop bool) {
	const maxTokens = 8
	i := 0
	for n := 0; n < maxTokens; n++ {
		for i < len(p) && isSpace(p[i]) {
			i++
		}
		if i == len(p) {
			return 0, false, true
		}
		start := i
		for i < len(p) && !isSpace(p[i]) {
			i++
		}
		tok := p[start:i]
		switch tok[0] {
		case '[', '(', '<':
			if l, ok := bracketLevel(tok); ok {
				return l, true, true
			}
			continue
		}
		if n == 0 && len(tok) == 5 && strings.IndexByte("IWEF", tok[0]) >= 0 && allDigits(tok[1:]) {
			return glogLevels[strings.IndexByte("IWEF", tok[0])], true, true
		}
		if strings.IndexByte(tok, '=') >= 0 {
			return 0, false, false // logfmt: let logfmtLevel look
		}
		if hasDigit(tok) || tok == "-" || tok == "|" || tok == ":" {
			continue // a timestamp, an id, a file:line, a separator
		}
		w := 0
		for w < len(tok) && isLetter(tok[w]) {
			w++
		}
		word, rest := tok[:w], tok[w:]
		switch {
		case w == 0:
			continue // punctuation
		case rest == "" || rest == "," || rest == "]" || rest == "|":
			if isUpper(word) {
				l, ok := lineLevel(word)
				return l, ok, true
			}
		case rest[0] == ':':
			l, ok := lineLevel(word)
			return l, ok, true
		}
		return 0, false, true
	}
	return 0, false, false
}

var glogLevels = [...]Level{LevelInfo, LevelWarn, LevelError, LevelFatal}

// bracketLevel reads "[ERROR]", "[error]", "(WARN)", "<info>" and the like
// at the start of tok.
func bracketLevel(tok string) (Level, bool) {
	end := 1
	for end < len(tok) && isLetter(tok[end]) {
		end++
	}
	if end == len(tok) || end == 1 {
		return 0, false
	}
	switch tok[end] {
	case ']', ')', '>', ':':
		return lineLevel(tok[1:end])
	}
	return 0, false
}

// logfmtLevel finds level=, lvl= or severity= at a token start in p.
func logfmtLevel(p string) (Level, bool) {
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i:], '=')
		if j < 0 {
			return 0, false
		}
		eq := i + j
		k := eq
		for k > 0 && (isLetter(p[k-1]) || p[k-1] == '_' || p[k-1] == '.') {
			k--
		}
		i = eq + 1
		if k > 0 && !isSpace(p[k-1]) {
			continue
		}
		if !isLevelKey(p[k:eq]) {
			continue
		}
		v := p[eq+1:]
		if v != "" && v[0] == '"' {
			v = v[1:]
		}
		e := 0
		for e < len(v) && (isLetter(v[e]) || isDigit(v[e]) || v[e] == '+' || v[e] == '-') {
			e++
		}
		if l, ok := lineLevel(v[:e]); ok {
			return l, true
		}
	}
	return 0, false
}

// IsLevelKey reports whether key names a level in logfmt or JSON, in any
// case: level, lvl, severity, severityText, levelname, level_name,
// loglevel, log.level or @l. The telemetry decoder reads these keys in its
// one pass over a JSON log record.
func IsLevelKey[S ~string | ~[]byte](key S) bool { return isLevelKey(key) }

// LineLevel is ParseLevelName for a level value found in a log record,
// without trimming: "off" is not a line's level, pino's numbers are.
func LineLevel[S ~string | ~[]byte](s S) (Level, bool) { return lineLevel(s) }

func isLevelKey[S ~string | ~[]byte](key S) bool {
	if len(key) < 2 || len(key) > 16 {
		return false
	}
	var buf [16]byte
	for i := range len(key) {
		c := key[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(key)]) {
	case "level", "lvl", "severity", "severitytext", "levelname", "level_name", "loglevel", "log.level", "@l":
		return true
	}
	return false
}

func isUpper(w string) bool {
	for i := range len(w) {
		if w[i] < 'A' || w[i] > 'Z' {
			return false
		}
	}
	return true
}

func hasDigit(s string) bool {
	for i := range len(s) {
		if isDigit(s[i]) {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// jsonLevel looks through the top-level members of the JSON object at the
// start of s, within its first levelJSONScan bytes, for a level key whose
// value (a string or a number) ParseLevelName accepts. Values of other keys
// are skipped without being parsed; anything that is not JSON ends the
// search.
func jsonLevel[S ~string | ~[]byte](s S) (Level, bool) {
	l, ok, _ := jsonLevelPrefix(s, false)
	return l, ok
}

// jsonLevelPrefix is jsonLevel over s, which is only the start of the text
// when cut. Then a level counts only when its value ends before s does (a
// number could go on), and more reports that the rest of the text could
// change the answer: the search ran into the end of s.
func jsonLevelPrefix[S ~string | ~[]byte](s S, cut bool) (l Level, ok, more bool) {
	if len(s) > levelJSONScan {
		s, cut = s[:levelJSONScan], false
	}
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return 0, false, cut && i >= len(s)
	}
	i++
	for {
		i = skipWS(s, i)
		if i >= len(s) || s[i] != '"' {
			return 0, false, cut && i >= len(s)
		}
		kend, esc := jsonscan.StringEnd(s, i)
		if kend < 0 {
			return 0, false, cut
		}
		isKey := !esc && isLevelKey(s[i+1:kend-1])
		i = skipWS(s, kend)
		if i >= len(s) || s[i] != ':' {
			return 0, false, cut && i >= len(s)
		}
		i = skipWS(s, i+1)
		vstart := i
		if i = jsonscan.SkipLoose(s, i); i < 0 {
			return 0, false, cut
		}
		if isKey {
			v := s[vstart:i]
			if len(v) >= 2 && v[0] == '"' {
				v = v[1 : len(v)-1]
			}
			if l, ok := lineLevel(v); ok {
				if cut && i >= len(s) {
					return 0, false, true
				}
				return l, true, false
			}
		}
		i = skipWS(s, i)
		if i >= len(s) || s[i] != ',' {
			return 0, false, cut && i >= len(s)
		}
		i++
	}
}

func skipWS[S ~string | ~[]byte](s S, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}
