// Package jsonscan is the module's one JSON tokenizer and unquoter: a strict
// validating scanner that reports where values start and end (the telemetry
// decoder), a lenient one that only finds string and value ends (level
// detection, redaction), and one escape decoder behind every unquoting.
//
// It sits under buffer rather than in an internal directory because both
// buffer and extension/telemetry import it, and an internal package under
// buffer would be closed to extension/telemetry.
package jsonscan

import "encoding/binary"

// The strict scanner. The decoder needs only the spans of a few
// values, so instead of building a tree it walks the bytes once, checks the
// grammar strictly (the same language encoding/json accepts, including its
// nesting limit) and reports where each value starts and ends. It never
// recurses, so hostile nesting costs one byte of stack slice per level.

// Flags describe a scanned value, collected while skipping it.
type Flags uint8

// The flags.
const (
	Escape    Flags = 1 << iota // a string holds a backslash escape
	High                        // a string holds a byte >= 0x80
	Space                       // insignificant whitespace between tokens
	Surrogate                   // a string holds a \u escape of a UTF-16 surrogate, paired or not
)

// MaxDepth is encoding/json's nesting limit: a body it rejects for depth is
// rejected here too, so both agree on what is malformed.
const MaxDepth = 10000

// strPlain marks the bytes a string can hold without a closer look: printable
// ASCII other than the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// PlainRun returns the index of the first byte at or after i that is not
// strPlain, eight bytes at a time while it can.
func PlainRun(data []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(data) {
		x := binary.LittleEndian.Uint64(data[i:])
		// A byte's high bit ends up set if it is a quote, a backslash, a
		// control character or >= 0x80 (and sometimes, through a borrow,
		// next to one: a false alarm only sends us to the byte loop).
		if ((x-lo*0x20)|((x^(lo*'"'))-lo)|((x^(lo*'\\'))-lo)|x)&hi != 0 {
			break
		}
		i += 8
	}
	for i < len(data) && strPlain[data[i]] {
		i++
	}
	return i
}

// At returns data[i], or 0 past the end; 0 never matches a token, so callers
// need no separate bounds check.
func At(data []byte, i int) byte {
	if i < len(data) {
		return data[i]
	}
	return 0
}

// IsSpace reports JSON whitespace.
func IsSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// SkipSpace returns the index of the first non-space byte at or after i.
func SkipSpace(data []byte, i int) int {
	for i < len(data) && IsSpace(data[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// SkipString scans the string whose opening quote is at data[i] and returns
// the index after its closing quote.
func SkipString(data []byte, i int) (end int, fl Flags, ok bool) {
	i++
	for {
		i = PlainRun(data, i)
		if i >= len(data) {
			return 0, 0, false
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, fl, true
		case c == '\\':
			fl |= Escape
			switch At(data, i+1) {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return 0, 0, false
				}
				// \uD800-\uDFFF: noted here, where it costs two compares,
				// so that Verbatim looks for a lone one only when it must.
				if d := data[i+3]; data[i+2]|0x20 == 'd' && d >= '8' && (d <= '9' || d >= 'A') {
					fl |= Surrogate
				}
				i += 6
			default:
				return 0, 0, false
			}
		case c < 0x20:
			return 0, 0, false
		default: // >= 0x80; validity is settled when the string is decoded
			fl |= High
			i++
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// SkipNumber scans a JSON number starting at data[i].
func SkipNumber(data []byte, i int) (int, bool) {
	if At(data, i) == '-' {
		i++
	}
	switch c := At(data, i); {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for i++; isDigit(At(data, i)); i++ {
		}
	default:
		return 0, false
	}
	if At(data, i) == '.' {
		i++
		if !isDigit(At(data, i)) {
			return 0, false
		}
		for i++; isDigit(At(data, i)); i++ {
		}
	}
	if c := At(data, i); c == 'e' || c == 'E' {
		i++
		if c := At(data, i); c == '+' || c == '-' {
			i++
		}
		if !isDigit(At(data, i)) {
			return 0, false
		}
		for i++; isDigit(At(data, i)); i++ {
		}
	}
	return i, true
}

func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// SkipValue scans the value starting at data[i] (no leading space) and
// returns the index after it. depth is the nesting of the value's container.
// stack is scratch space, returned for reuse.
func SkipValue(data []byte, i, depth int, stack []byte) (end int, fl Flags, ok bool, _ []byte) {
	stack = stack[:0]
	for {
		// A value starts at i.
		switch c := At(data, i); c {
		case '"':
			j, f, ok := SkipString(data, i)
			if !ok {
				return 0, 0, false, stack
			}
			fl |= f
			i = j
		case '{', '[':
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			stack = append(stack, closer)
			if depth+len(stack) > MaxDepth {
				return 0, 0, false, stack
			}
			j := SkipSpace(data, i+1)
			if j != i+1 {
				fl |= Space
			}
			i = j
			if At(data, i) == closer {
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if closer == '}' {
				var f Flags
				if i, f, ok = skipKey(data, i); !ok {
					return 0, 0, false, stack
				}
				fl |= f
			}
			continue // the first element or member value
		case 't':
			if !hasLiteral(data, i, "true") {
				return 0, 0, false, stack
			}
			i += 4
		case 'f':
			if !hasLiteral(data, i, "false") {
				return 0, 0, false, stack
			}
			i += 5
		case 'n':
			if !hasLiteral(data, i, "null") {
				return 0, 0, false, stack
			}
			i += 4
		default:
			var ok bool
			if i, ok = SkipNumber(data, i); !ok {
				return 0, 0, false, stack
			}
		}
		// A value ended at i: close containers until another value is due.
		for {
			if len(stack) == 0 {
				return i, fl, true, stack
			}
			j := SkipSpace(data, i)
			if j != i {
				fl |= Space
			}
			i = j
			closer := stack[len(stack)-1]
			c := At(data, i)
			if c == closer {
				i++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				return 0, 0, false, stack
			}
			j = SkipSpace(data, i+1)
			if j != i+1 {
				fl |= Space
			}
			i = j
			if closer == '}' {
				var f Flags
				if i, f, ok = skipKey(data, i); !ok {
					return 0, 0, false, stack
				}
				fl |= f
			}
			break
		}
	}
}

// skipKey scans `"key" :` and the space after the colon, returning where the
// member's value starts.
func skipKey(data []byte, i int) (int, Flags, bool) {
	if At(data, i) != '"' {
		return 0, 0, false
	}
	j, fl, ok := SkipString(data, i)
	if !ok {
		return 0, 0, false
	}
	k := SkipSpace(data, j)
	if At(data, k) != ':' {
		return 0, 0, false
	}
	m := SkipSpace(data, k+1)
	if k != j || m != k+1 {
		fl |= Space
	}
	return m, fl, true
}

// Member is one member of a scanned object: the key with its quotes and the
// raw value.
type Member struct {
	Key, Val     Span
	KeyFl, ValFl Flags
	Kind         uint8 // the caller's name for the key; Members leaves it 0
}

// Span is the bytes [Start, End) of a scanned text; an empty one is absent.
type Span struct{ Start, End int }

// Of returns the bytes of s in b.
func (s Span) Of(b []byte) []byte { return b[s.Start:s.End] }

// Absent reports whether s is empty.
func (s Span) Absent() bool { return s.End <= s.Start }

// Members appends the Members of the valid object obj to ms. It reports
// false when obj is not a valid object, which cannot happen for a value that
// SkipValue accepted but is checked anyway: the decoder must never panic.
func Members(obj []byte, ms []Member, stack []byte) ([]Member, []byte, bool) {
	if At(obj, 0) != '{' {
		return ms, stack, false
	}
	i := SkipSpace(obj, 1)
	if At(obj, i) == '}' {
		return ms, stack, SkipSpace(obj, i+1) == len(obj)
	}
	for {
		var m Member
		m.Key.Start = i
		if At(obj, i) != '"' {
			return ms, stack, false
		}
		j, f, ok := SkipString(obj, i)
		if !ok {
			return ms, stack, false
		}
		m.Key.End, m.KeyFl = j, f
		i = SkipSpace(obj, j)
		if At(obj, i) != ':' {
			return ms, stack, false
		}
		i = SkipSpace(obj, i+1)
		m.Val.Start = i
		// The object itself is at depth 0 here; the absolute depth was
		// checked when the whole body was scanned.
		if i, m.ValFl, ok, stack = SkipValue(obj, i, 1, stack); !ok {
			return ms, stack, false
		}
		m.Val.End = i
		ms = append(ms, m)
		i = SkipSpace(obj, i)
		switch At(obj, i) {
		case ',':
			i = SkipSpace(obj, i+1)
		case '}':
			return ms, stack, SkipSpace(obj, i+1) == len(obj)
		default:
			return ms, stack, false
		}
	}
}

// AppendCompact appends the valid JSON value raw without its insignificant
// whitespace, so a value copied into Fields never carries a newline into an
// NDJSON row.
func AppendCompact(dst, raw []byte, fl Flags) []byte {
	if fl&Space == 0 {
		return append(dst, raw...)
	}
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '"':
			j, _, ok := SkipString(raw, i)
			if !ok {
				return append(dst, raw[i:]...) // unreachable for scanned input
			}
			dst = append(dst, raw[i:j]...)
			i = j
		case IsSpace(c):
			i++
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}
